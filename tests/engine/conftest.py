"""Fixtures for the real-engine tests: the Pulumi CLI, the stand-in plugins, an isolated Pulumi home.

The CLI comes from PATH (`scripts/build-engine.sh` prints the directory to put there). The stand-in
provider plugins (`tests/standin/bin`) always go first on PATH, so the engine loads them as ambient
plugins instead of downloading the real ones; the stand-in language host (`tests/standin/langhost`)
goes on PATH only when the engine build has no real `pulumi-language-python` beside the CLI. See
tests/standin/harness.py, which the benchmarks share.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standin.harness import CLEARED, REPO, STANDIN, cli, copy_repo, engine_path, environment, git

__all__ = ["REPO", "STANDIN", "engine_path", "git", "needs_cli"]

needs_cli = pytest.mark.skipif(cli() is None, reason="needs the Pulumi CLI on PATH (scripts/build-engine.sh)")


@pytest.fixture(scope="session")
def pulumi_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pulumi-home")


@pytest.fixture
def engine_env(
    monkeypatch: pytest.MonkeyPatch, pulumi_home: Path, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """The environment an engine test runs the CLI (and the driver) with, set in os.environ too."""
    if cli() is None:
        pytest.skip("needs the Pulumi CLI on PATH (scripts/build-engine.sh)")
    cloud = tmp_path / "cloud"
    cloud.mkdir()
    for key in CLEARED:
        monkeypatch.delenv(key, raising=False)
    for key, value in environment(pulumi_home, cloud).items():
        monkeypatch.setenv(key, value)
    yield dict(os.environ)


@pytest.fixture
def repo_copy(tmp_path: Path, engine_env: dict[str, str]) -> Path:
    """A git checkout of this repository's files (as they are on disk), as a user's clone would be."""
    return copy_repo(tmp_path / "repo")


@pytest.fixture(autouse=True)
def _no_orphans(tmp_path: Path) -> Iterator[None]:
    """After each test, stop what a killed CLI left running (its program, its plugins) in tmp_path.

    A CLI killed with SIGKILL cannot stop its children; without this they outlive the test run.
    """
    yield
    marker = f"{tmp_path}/"  # a path inside this test's directory, not a sibling whose name it prefixes
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in args:
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGKILL)
