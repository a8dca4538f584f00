"""Setting up a run against the real engine and the stand-ins, shared by tests/engine and benchmarks.

`environment()` gives the variables a CLI (or driver) process needs: PATH with the stand-in provider
plugins first (and the stand-in language host when the engine build has none), an isolated
PULUMI_HOME, the stand-in cloud's directory. `copy_repo()` makes a git checkout of the project's
files as they are on disk, as a user's clone would be.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "standin"
# Removed from the environment of every engine run: a user's own backend, passphrase or token.
CLEARED = (
    "PULUMI_BACKEND_URL",
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_CONFIG_PASSPHRASE_FILE",
    "PULUMI_ACCESS_TOKEN",
)
# Copied into a repository copy: what a user's clone holds that the program, pack and driver read.
SKIPPED_PREFIXES = ("tests/", "benchmarks/", ".github/")


def cli(path: str | None = None) -> str | None:
    return shutil.which("pulumi", path=path)


def engine_path(base: str | None = None) -> str:
    """PATH for an engine run: stand-in providers, (stand-in language host), then `base`."""
    base = os.environ.get("PATH", "") if base is None else base
    found = cli(base)
    parts = [str(STANDIN / "bin")]
    if found is not None and not (Path(found).parent / "pulumi-language-python").exists():
        parts.append(str(STANDIN / "langhost"))
    return os.pathsep.join([*parts, base])


def environment(pulumi_home: Path, cloud: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The full environment for a CLI or driver process (`base` defaults to os.environ)."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in CLEARED}
    env.update(
        {
            "PATH": engine_path(env.get("PATH", "")),
            "PULUMI_HOME": str(pulumi_home),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "STAGELINE_STANDIN_PYTHON": sys.executable,
            "STAGELINE_STANDIN_CLOUD": str(cloud),
        }
    )
    return env


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


def copy_repo(root: Path) -> Path:
    """A git checkout at `root` of this repository's files as they are on disk (one commit).

    `.venv` links to the running interpreter's environment, which Pulumi.yaml's `virtualenv: .venv`
    then names; the driver's default file:// backend lands in the copy's `.stageline/state`.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        relative = raw.decode()
        source = REPO / relative
        if not relative or not source.is_file() or relative.startswith(SKIPPED_PREFIXES):
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
