"""requirements/lock.txt is current with pyproject.toml: every dependency pinned, in range, hashed.

Refresh it with the command in docs/development.md whenever pyproject.toml's dependencies change.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def pins() -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes)."""
    found: dict[str, tuple[Version, int]] = {}
    current: str | None = None
    for line in LOCK.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            found[current] = (Version(match.group(3)), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, count = found[current]
            found[current] = (version, count + 1)
    return found


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in (*project["dependencies"], *project["optional-dependencies"]["dev"])]


PINS = pins()


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_every_dependency_is_pinned_in_range(requirement: Requirement) -> None:
    name = canonicalize_name(requirement.name)
    assert name in PINS, f"{requirement.name} is not in requirements/lock.txt: refresh the lock"
    version, _ = PINS[name]
    assert requirement.specifier.contains(version, prereleases=True), (
        f"requirements/lock.txt pins {requirement.name}=={version}, outside {requirement.specifier}"
    )


def test_every_pinned_package_carries_a_hash() -> None:
    assert len(PINS) > 50
    unhashed = sorted(name for name, (_, count) in PINS.items() if count == 0)
    assert unhashed == []
    assert "-e " not in LOCK.read_text() and "stageline" not in PINS
