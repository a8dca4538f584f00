"""Fixtures for the real-engine tests: the Pulumi CLI, the stand-in plugins, an isolated Pulumi home.

The CLI comes from PATH (`scripts/build-engine.sh` prints the directory to put there). The stand-in
provider plugins (`tests/standin/bin`) always go first on PATH, so the engine loads them as ambient
plugins instead of downloading the real ones; the stand-in language host (`tests/standin/langhost`)
goes on PATH only when the engine build has no real `pulumi-language-python` beside the CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "standin"


def cli() -> str | None:
    return shutil.which("pulumi")


def engine_path(base: str | None = None) -> str:
    """PATH for an engine test: stand-in providers, (stand-in language host), the CLI, the rest."""
    base = os.environ.get("PATH", "") if base is None else base
    found = shutil.which("pulumi", path=base)
    parts = [str(STANDIN / "bin")]
    if found is not None and not (Path(found).parent / "pulumi-language-python").exists():
        parts.append(str(STANDIN / "langhost"))
    return os.pathsep.join([*parts, base])


needs_cli = pytest.mark.skipif(cli() is None, reason="needs the Pulumi CLI on PATH (scripts/build-engine.sh)")


@pytest.fixture(scope="session")
def pulumi_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pulumi-home")


@pytest.fixture
def engine_env(
    monkeypatch: pytest.MonkeyPatch, pulumi_home: Path, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """The environment an engine test runs the CLI (and the driver) with; returned as a dict too."""
    if cli() is None:
        pytest.skip("needs the Pulumi CLI on PATH (scripts/build-engine.sh)")
    cloud = tmp_path / "cloud"
    cloud.mkdir()
    values = {
        "PATH": engine_path(),
        "PULUMI_HOME": str(pulumi_home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "STAGELINE_STANDIN_PYTHON": sys.executable,
        "STAGELINE_STANDIN_CLOUD": str(cloud),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in (
        "PULUMI_BACKEND_URL",
        "PULUMI_CONFIG_PASSPHRASE",
        "PULUMI_CONFIG_PASSPHRASE_FILE",
        "PULUMI_ACCESS_TOKEN",
    ):
        monkeypatch.delenv(key, raising=False)
    yield dict(os.environ)


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Stageline Test",
        "GIT_AUTHOR_EMAIL": "test@stageline.invalid",
        "GIT_COMMITTER_NAME": "Stageline Test",
        "GIT_COMMITTER_EMAIL": "test@stageline.invalid",
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo_copy(tmp_path: Path, engine_env: dict[str, str]) -> Path:
    """A git checkout of this repository's files (as they are on disk), as a user's clone would be.

    `.venv` links to the running interpreter's environment, which Pulumi.yaml's `virtualenv: .venv`
    then names; the default file:// backend lands in the copy's `.stageline/state`.
    """
    root = tmp_path / "repo"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        relative = raw.decode()
        source = REPO / relative
        if not source.is_file() or relative.startswith(("tests/", "benchmarks/", ".github/")):
            continue
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (root / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    git(root, "init", "-q", "-b", "main")
    # `.venv/` in .gitignore matches directories only, and this one is a link.
    (root / ".git" / "info" / "exclude").write_text(".venv\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root
