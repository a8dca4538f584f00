"""The few git facts the driver needs: the current commit, whether a commit exists, worktrees, and a
`git status` that leaves one file out.

Plain `git` subprocesses with argument lists (no shell). Every failure is a one-line
ConfigurationError/StagelineError, never a CalledProcessError traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from automation.errors import ConfigurationError, StagelineError

_SHA = re.compile(r"^[0-9a-f]{4,64}$")


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None:
        raise ConfigurationError("git is not on PATH: install git to record and restore commits")
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise StagelineError(
            f"git {args[0]} failed: {detail[-1] if detail else 'exit ' + str(result.returncode)}"
        )
    return result


def head_commit(path: Path) -> str | None:
    """The full SHA of HEAD in the repository containing `path`, or None outside a git repository."""
    if shutil.which("git") is None:
        return None
    result = subprocess.run(
        ["git", "rev-parse", "--verify", "HEAD"], cwd=path, capture_output=True, text=True, check=False
    )
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and _SHA.match(sha) else None


def commit_time(root: Path, sha: str) -> datetime | None:
    """When `sha` was committed (committer time, UTC), or None when it is not in this repository."""
    if not _SHA.match(sha) or shutil.which("git") is None:
        return None
    result = _git(root, "show", "-s", "--format=%cI", f"{sha}^{{commit}}", check=False)
    if result.returncode != 0:
        return None
    try:
        return datetime.fromisoformat(result.stdout.strip()).astimezone(UTC)
    except ValueError:
        return None


def short(sha: str | None) -> str:
    return (sha or "")[:7]


def commit_exists(root: Path, sha: str) -> bool:
    """Whether `sha` names a commit object in the repository at `root`."""
    if not _SHA.match(sha):
        return False
    result = _git(root, "cat-file", "-e", f"{sha}^{{commit}}", check=False)
    return result.returncode == 0


@contextmanager
def worktree(root: Path, sha: str, where: Path) -> Iterator[Path]:
    """A detached `git worktree` of `sha` at `where`, removed (with its admin entry) afterwards.

    The project's virtualenv is not in git; Pulumi.yaml points the runtime at `.venv`, so the
    worktree gets a symlink to the main checkout's `.venv` when there is one.
    """
    where.parent.mkdir(parents=True, exist_ok=True)
    if where.exists():
        _git(root, "worktree", "remove", "--force", str(where), check=False)
        if where.exists():
            shutil.rmtree(where)
    _git(root, "worktree", "add", "--detach", str(where), sha)
    try:
        venv = root / ".venv"
        if venv.is_dir() and not (where / ".venv").exists():
            (where / ".venv").symlink_to(venv, target_is_directory=True)
        yield where
    finally:
        _git(root, "worktree", "remove", "--force", str(where), check=False)
        if where.exists():
            shutil.rmtree(where, ignore_errors=True)
        _git(root, "worktree", "prune", check=False)


def committed_file(checkout: Path, path: Path) -> bytes | None:
    """The bytes of `path` (a file in `checkout`) as committed at HEAD; None when not committed."""
    if shutil.which("git") is None:
        return None
    try:
        relative = path.resolve().relative_to(checkout.resolve())
    except ValueError:
        return None
    done = subprocess.run(
        ["git", "show", f"HEAD:./{relative.as_posix()}"], cwd=checkout, capture_output=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


@contextmanager
def hidden_from_status(checkout: Path, path: Path) -> Iterator[dict[str, str]]:
    """Environment under which `git status` in `checkout` does not look at `path`; {} when it cannot.

    A throwaway copy of the checkout's index with `path` marked assume-unchanged, named by
    GIT_INDEX_FILE: the real index, and so what the user's own `git status` shows, is never changed.
    """
    if shutil.which("git") is None:
        yield {}
        return
    found = _git(checkout, "rev-parse", "--path-format=absolute", "--git-path", "index", check=False)
    index = Path(found.stdout.strip()) if found.returncode == 0 else None
    if index is None or not index.is_file():
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="stageline-index-") as tmp:
        copy = Path(tmp) / "index"
        shutil.copyfile(index, copy)
        env = {"GIT_INDEX_FILE": str(copy)}
        marked = subprocess.run(
            ["git", "update-index", "--assume-unchanged", "--", str(path)],
            cwd=checkout,
            env={**os.environ, **env},
            capture_output=True,
            check=False,
        )
        yield env if marked.returncode == 0 else {}


def untracked_not_shown() -> dict[str, str]:
    """Environment under which `git status` lists no untracked files (`status.showUntrackedFiles=no`,
    added to any GIT_CONFIG_* settings already in the environment)."""
    try:
        count = int(os.environ.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        count = 0
    return {
        "GIT_CONFIG_COUNT": str(count + 1),
        f"GIT_CONFIG_KEY_{count}": "status.showUntrackedFiles",
        f"GIT_CONFIG_VALUE_{count}": "no",
    }
