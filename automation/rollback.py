"""Rollback: Pulumi has none, so restore an earlier good release (and optionally the program) from history.

Two steps, so promotion's automatic rollback can reuse them:

* `plan_rollback(history, current_release, …)` — pure: picks the target update and says what will happen,
  or raises RollbackRefused with the reason.
* `execute_rollback(engine, plan, …)` — restores `stageline:release`, and with `code` runs `up` from a
  temporary git worktree at the target's recorded commit; otherwise `up` from the current checkout.

Target rules: the newest *succeeded* `update` whose `stageline:release` differs from the current one.
Failed updates, refreshes, previews, destroys and in-progress entries are never targets; earlier rollbacks
are (they are succeeded updates). With `to_version=N`, N must be a succeeded update that recorded a release.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automation.errors import USAGE, StagelineError
from automation.stacks import Engine, ProgressFn, Release, UpdateRecord
from automation.updates import RetryPolicy, check_pending, run_update

ROLLBACK_PREFIX = "rollback to v"
WORKTREES_DIR = Path(".stageline") / "worktrees"


class RollbackRefused(StagelineError):
    """No rollback is possible as asked (exit 1): nothing earlier to go back to, or the commit is gone."""


class RollbackTargetInvalid(RollbackRefused):
    """`--to-version N` does not name a usable update (exit 2: a bad argument)."""

    exit_code = USAGE


@dataclass(frozen=True)
class RollbackPlan:
    stack: str
    target: UpdateRecord  # the update whose release (and maybe program) is restored
    current_release: Release | None
    release: Release
    commit: str | None  # the target's recorded git commit
    code: bool  # run the program as it was at `commit`

    @property
    def message(self) -> str:
        return rollback_message(self.target)

    @property
    def release_changes(self) -> bool:
        return self.release != (self.current_release or None)

    def describe(self) -> str:
        current = (self.current_release or {}).get("version", "(none)")
        target = self.release.get("version", "?")
        program = (
            f"the program at commit {self.commit[:7]} (temporary git worktree)"
            if self.code and self.commit
            else "the program as it is in this checkout"
        )
        when = self.target.end or self.target.start
        return (
            f"roll back {self.stack} to v{self.target.version} ({when:%Y-%m-%d %H:%M} UTC): "
            f"release {current} -> {target}, running {program}; message {self.message!r}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "targetVersion": self.target.version,
            "commit": self.commit,
            "code": self.code,
            "currentRelease": self.current_release,
            "release": self.release,
            "message": self.message,
        }


def rollback_message(target: UpdateRecord) -> str:
    short = target.short_commit
    return f"{ROLLBACK_PREFIX}{target.version} ({short})" if short else f"{ROLLBACK_PREFIX}{target.version}"


def is_rollback(record: UpdateRecord) -> bool:
    return record.kind == "update" and record.message.startswith(ROLLBACK_PREFIX)


def _good(record: UpdateRecord) -> bool:
    return record.kind == "update" and record.succeeded and record.release is not None


def plan_rollback(
    history: Sequence[UpdateRecord],
    current_release: Mapping[str, Any] | None,
    *,
    stack: str,
    to_version: int | None = None,
    code: bool = False,
    commit_exists: Callable[[str], bool] = lambda sha: True,
) -> RollbackPlan:
    """Choose what to roll back to. `history` in any order; `current_release` is the stack file's now."""
    current = dict(current_release) if current_release is not None else None
    newest_first = sorted(history, key=lambda r: r.version, reverse=True)
    target: UpdateRecord | None = None
    if to_version is not None:
        found = next((r for r in newest_first if r.version == to_version), None)
        good = [r.version for r in newest_first if _good(r)][:5]
        hint = f" (succeeded updates: {', '.join(f'v{v}' for v in good)})" if good else ""
        if found is None:
            raise RollbackTargetInvalid(f"{stack} has no v{to_version} in its history{hint}")
        if found.kind != "update" or not found.succeeded:
            raise RollbackTargetInvalid(
                f"v{to_version} of {stack} is a {found.result} {found.kind}, not a succeeded update{hint}"
            )
        if found.release is None:
            raise RollbackTargetInvalid(f"v{to_version} of {stack} recorded no stageline:release{hint}")
        target = found
    else:
        for record in newest_first:
            if _good(record) and record.release != current:
                target = record
                break
        if target is None:
            current_version = (current or {}).get("version", "(none)")
            raise RollbackRefused(
                f"{stack} has no earlier succeeded update with a release other than the current one "
                f"({current_version}); nothing to roll back to"
            )
    release = target.release
    assert release is not None
    commit = target.commit
    if code:
        if not commit:
            raise RollbackRefused(
                f"v{target.version} of {stack} recorded no git commit (it ran outside a git checkout); "
                "roll back without --code"
            )
        if not commit_exists(commit):
            raise RollbackRefused(
                f"commit {commit[:7]} of v{target.version} is not in this repository; "
                f"fetch it (git fetch origin {commit}) or roll back without --code"
            )
    return RollbackPlan(
        stack=stack, target=target, current_release=current, release=release, commit=commit, code=code
    )


@dataclass(frozen=True)
class RollbackResult:
    plan: RollbackPlan
    record: UpdateRecord | None  # None for a dry run
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "plan": self.plan.to_json(),
            "update": self.record.to_json() if self.record is not None else None,
        }


def prepare(engine: Engine, stack: str, *, to_version: int | None = None, code: bool = False) -> RollbackPlan:
    """Read the stack's history and current release from the engine, and plan."""
    from automation.gitinfo import commit_exists

    engine.ensure_stack(stack)
    history = engine.history(stack)
    current = engine.get_release(stack)
    return plan_rollback(
        history,
        current,
        stack=stack,
        to_version=to_version,
        code=code,
        commit_exists=lambda sha: commit_exists(engine.project_dir, sha),
    )


def execute_rollback(
    engine: Engine,
    plan: RollbackPlan,
    *,
    policy: RetryPolicy,
    dry_run: bool = False,
    clear_pending: bool = False,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RollbackResult:
    """Carry out `plan`. Dry run: change nothing. Otherwise refuse on pending operations (unless
    `clear_pending`), write the release into Pulumi.<stack>.yaml, and `up` with the rollback message —
    from a temporary worktree at the target commit when `plan.code`, removed afterwards.
    """
    if dry_run:
        return RollbackResult(plan=plan, record=None, dry_run=True)
    check_pending(engine, plan.stack, clear=clear_pending, progress=progress)
    # The main checkout's stack file gets the release too, so a later plain `up` keeps the rollback.
    engine.set_release(plan.stack, plan.release)
    if plan.code and plan.commit:
        from automation.gitinfo import worktree

        where = engine.project_dir / WORKTREES_DIR / f"{plan.stack}-v{plan.target.version}"
        if progress is not None:
            progress(f"{plan.stack}: checking out {plan.commit[:7]} in {where} …")
        with worktree(engine.project_dir, plan.commit, where) as checkout:
            engine.set_release(plan.stack, plan.release, work_dir=checkout)
            record = run_update(
                engine,
                plan.stack,
                message=plan.message,
                policy=policy,
                work_dir=checkout,
                progress=progress,
                sleep=sleep,
            )
    else:
        record = run_update(
            engine, plan.stack, message=plan.message, policy=policy, progress=progress, sleep=sleep
        )
    return RollbackResult(plan=plan, record=record)
