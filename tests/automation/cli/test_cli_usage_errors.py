"""A usage error click finds (unknown command or option, a value of the wrong type, a missing
argument) is one line on stderr and exit 2, like every error of the driver; --help and --version
still exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def driver(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "automation", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["bogus"], "error: No such command 'bogus'. (see `python -m automation --help`)"),
        (["drift", "--bogus"], "error: No such option '--bogus'. (see `python -m automation drift --help`)"),
        (["rollback"], "error: Missing argument 'STACK'. (see `python -m automation rollback --help`)"),
        (
            ["rollback", "dev", "--to-version", "abc"],
            "error: Invalid value for '--to-version': 'abc' is not a valid integer range. "
            "(see `python -m automation rollback --help`)",
        ),
        (
            ["drift", "--format", "xml"],
            "error: Invalid value for '--format': 'xml' is not one of 'text', 'markdown', 'json'. "
            "(see `python -m automation drift --help`)",
        ),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], line: str) -> None:
    done = driver(*args)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [line]
    assert done.stdout == ""


def test_help_and_version_still_exit_0() -> None:
    assert driver("--help").returncode == 0
    assert driver("rollback", "--help").stdout.startswith("Usage: python -m automation rollback")
    version = driver("--version")
    assert version.returncode == 0 and version.stdout.startswith("stageline, version ")
