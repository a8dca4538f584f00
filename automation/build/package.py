"""Reproducible zip packages of a service: the same sources and requirements give the same bytes.

What goes in: every file under the service's folder (sorted, `__pycache__`, compiled files and
dot-files left out) plus its pinned requirements installed with pip into the package root
(`--target`, `--no-compile`, wheels only, for Lambda's platform and Python version). Every entry gets
the same timestamp (1980-01-01 00:00, the earliest a zip can hold) and mode (0644), and deflate at a
fixed level, so the archive depends only on the files' paths and bytes: its sha256 is the package's
identity, and a service whose sources did not change keeps it.

What pip writes that depends on the building machine (console scripts, whose shebang names its
interpreter, the RECORD that hashes them) is left out: Lambda imports packages, it runs no scripts.

Installed requirements are cached by the hash of the requirements file and the pip arguments, so a
second build does not run pip again.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from automation.errors import ConfigurationError, StagelineError

REQUIREMENTS = "requirements.txt"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # a regular file, rw-r--r--
COMPRESS_LEVEL = 9
LAMBDA_PLATFORM = "manylinux2014_x86_64"  # Lambda's default architecture (x86_64), glibc 2.17+
_SKIP_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
_SKIP_SUFFIXES = (".pyc", ".pyo")
# A pinned requirement: "name==1.2.3", optionally with extras, markers and --hash options.
_PINNED_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._ -]+\])?\s*===?\s*[^\s;,]+(\s*;.*)?$")


@dataclass(frozen=True)
class Package:
    service: str
    data: bytes
    files: int  # entries in the archive
    requirements: int  # pinned requirements installed into it

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


def requirement_lines(path: Path, *, what: str) -> list[str]:
    """The requirement lines of a requirements file (comments and blank lines dropped), each pinned."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"{what}: no {path.name} in {path.parent} (an empty file says the service needs no dependency)"
        ) from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement = line.split(" --hash", 1)[0].strip()
        if requirement.startswith("-") or not _PINNED_RE.match(requirement):
            raise ConfigurationError(
                f"{what}: {path.name} line {number} must pin one version (name==version), got {line!r}"
            )
        lines.append(line)
    return lines


def pip_arguments(runtime: str) -> list[str]:
    """What pip needs to install for Lambda from any machine: wheels only, for its platform and Python."""
    version = runtime.removeprefix("python")  # "3.12"
    abi = "cp" + version.replace(".", "")
    return [
        "--only-binary=:all:",
        "--platform",
        LAMBDA_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        version,
        "--abi",
        abi,
        "--no-compile",
        "--no-input",
        "--disable-pip-version-check",
        "--quiet",
    ]


def _source_files(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or name.endswith(_SKIP_SUFFIXES):
                continue
            path = Path(dirpath) / name
            yield path.relative_to(root).as_posix(), path


def _machine_specific(name: str) -> bool:
    """What pip writes that depends on the machine, not on the requirements: console scripts (their
    shebang names the building interpreter), the RECORD that hashes them, and a direct URL's path."""
    parts = name.split("/")
    if parts[0] == "bin":
        return True
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in ("RECORD", "direct_url.json")


def _install(requirements: list[str], runtime: str, cache: Path, what: str) -> Path:
    """Install `requirements` into a cached folder keyed by their text and pip's arguments; return it."""
    args = pip_arguments(runtime)
    key = hashlib.sha256("\n".join([*requirements, "--", *args]).encode()).hexdigest()[:32]
    target = cache / key
    if (target / ".complete").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=cache))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as spec:
        spec.write("\n".join(requirements) + "\n")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--target", str(work / "site"), *args, "-r", spec.name],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(spec.name)
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["(no output)"])[-1]
        raise StagelineError(f"{what}: pip could not install the requirements: {last}")
    (work / "site" / ".complete").touch()
    try:
        (work / "site").rename(target)
    except OSError:  # another build finished the same key first: use that one
        if not (target / ".complete").exists():
            raise
    shutil.rmtree(work, ignore_errors=True)
    return target


def build_package(
    service: str, source: Path, *, runtime: str, cache: Path, what: str | None = None
) -> Package:
    """Zip `source` and its installed requirements. `what` names the service in errors."""
    what = what or f"service {service!r}"
    if not source.is_dir():
        raise ConfigurationError(f"{what}: source folder {source} does not exist")
    requirements = requirement_lines(source / REQUIREMENTS, what=what)
    entries: dict[str, Path] = {}
    for name, path in _source_files(source):
        if name != REQUIREMENTS:
            entries[name] = path
    if not any(name.endswith(".py") for name in entries):
        raise ConfigurationError(f"{what}: source folder {source} holds no Python module")
    if requirements:
        site = _install(requirements, runtime, cache, what)
        for name, path in _source_files(site):
            if _machine_specific(name):
                continue
            if name in entries:
                raise StagelineError(f"{what}: {name} is both a source file and installed by a requirement")
            entries[name] = path
    buffer = io.BytesIO()
    with zipfile.ZipFile(
        buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL
    ) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.create_system = 3  # unix, so the mode below is what Lambda sees
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name].read_bytes(), compresslevel=COMPRESS_LEVEL)
    return Package(
        service=service, data=buffer.getvalue(), files=len(entries), requirements=len(requirements)
    )
