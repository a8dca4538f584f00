"""Rollback: Pulumi has none, so restore an earlier good release (and optionally the program) from history.

Two steps, so promotion's automatic rollback can reuse them:

* `plan_rollback(history, current_release, …)` — pure: picks the target update and says what will happen,
  or raises RollbackRefused with the reason.
* `execute_rollback(engine, plan, …)` — restores `stageline:release`, and with `code` runs `up` from a
  temporary git worktree at the target's recorded commit; otherwise `up` from the current checkout.

Target rules. The candidates are the stack's *lineage* (see `lineage`): its succeeded `update`s, minus
every update an earlier rollback rolled away from — a succeeded `rollback to vN` at vR puts the stack
back to what it was right after vN, so vN+1 … vR-1 are not candidates any more (a second rollback goes
on below vN instead of bringing back the bad release). Walking that lineage newest first, the target is
the first update whose release is a different release from the current one: releases are compared by
identity (version and image digests), so the canary phase of the current release is not "another
release"; and an update that ran a release as a canary (`canary` key) is never a target. Failed
updates, refreshes, previews, destroys and in-progress entries are never targets; earlier rollbacks
are (they are succeeded updates). With `to_version=N`, N must be a succeeded update that recorded a
release and did not run it as a canary. The release restored never carries `canary`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automation.engine.model import PreviewSummary, ProgressFn, Release, UpdateRecord
from automation.engine.protocol import Engine
from automation.errors import USAGE, StagelineError
from automation.operate.updates import RetryPolicy, check_pending, run_update, with_actor, with_lock_retry

ROLLBACK_PREFIX = "rollback to v"
WORKTREES_DIR = Path(".stageline") / "worktrees"
_ROLLBACK_RE = re.compile(r"^rollback to v(\d+)\b")


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
    release: Release  # the target's release, without `canary`
    commit: str | None  # the target's recorded git commit
    code: bool  # run the program as it was at `commit`
    warnings: tuple[str, ...] = ()  # said before anything changes (e.g. the target ran uncommitted code)

    @property
    def message(self) -> str:
        return rollback_message(self.target)

    @property
    def release_changes(self) -> bool:
        return not same_release(self.release, self.current_release)

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
            "warnings": list(self.warnings),
        }


def rollback_message(target: UpdateRecord) -> str:
    short = target.short_commit
    return f"{ROLLBACK_PREFIX}{target.version} ({short})" if short else f"{ROLLBACK_PREFIX}{target.version}"


def is_rollback(record: UpdateRecord) -> bool:
    return record.kind == "update" and record.message.startswith(ROLLBACK_PREFIX)


def rollback_target(record: UpdateRecord) -> int | None:
    """N of an update whose message is `rollback to vN …`; None for anything else."""
    if record.kind != "update":
        return None
    match = _ROLLBACK_RE.match(record.message)
    return int(match.group(1)) if match else None


# --- releases -----------------------------------------------------------------------------------


def release_identity(release: Mapping[str, Any] | None) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """What makes two releases the same release: the version, the image and package digests and the
    frontend release.

    Promotion adds keys that describe *how* a release runs (`canary`: a traffic split; `candidate`:
    what the test distribution serves); they do not make it another release.
    """
    if release is None:
        return None
    pairs: list[tuple[str, str]] = []
    for kind in ("images", "packages"):
        found = release.get(kind)
        if isinstance(found, Mapping):
            # Images keep their bare service names (identities recorded before packages existed).
            tag = "" if kind == "images" else "package:"
            pairs += [(f"{tag}{k}", str(v)) for k, v in found.items()]
    if release.get("frontend"):
        pairs.append(("frontend:", str(release["frontend"])))
    return str(release.get("version")), tuple(sorted(pairs))


def same_release(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return release_identity(a) == release_identity(b)


def is_canary(release: Mapping[str, Any] | None) -> bool:
    return bool(release) and release is not None and bool(release.get("canary"))


def without_canary(release: Mapping[str, Any]) -> Release:
    return {k: v for k, v in release.items() if k != "canary"}


# --- the lineage ----------------------------------------------------------------------------------

# A lineage as a linked list, newest first: (update, the lineage below it). Sharing tails keeps the
# snapshot "right after vN" for every N cheap.
_Node = tuple[UpdateRecord, Any]


def lineage(history: Iterable[UpdateRecord]) -> list[UpdateRecord]:
    """The succeeded updates that still stand, oldest first.

    Replays the history: each succeeded update goes on top; a succeeded `rollback to vN` first
    returns to what stood right after vN (dropping everything after it), then goes on top itself. A
    rollback whose vN is unknown (outside the history read) drops everything from vN on.
    """
    top: _Node | None = None
    after: dict[int, _Node] = {}  # version -> the lineage right after it
    for record in sorted(history, key=lambda r: r.version):
        if record.kind != "update" or not record.succeeded:
            continue
        target = rollback_target(record)
        if target is not None:
            if target in after:
                top = after[target]
            else:
                while top is not None and top[0].version >= target:
                    top = top[1]
        top = (record, top)
        after[record.version] = top
    standing: list[UpdateRecord] = []
    while top is not None:
        standing.append(top[0])
        top = top[1]
    return standing[::-1]


def rolled_back(history: Iterable[UpdateRecord]) -> set[int]:
    """Versions of the succeeded updates a later rollback rolled away from (rollbacks excluded)."""
    history = list(history)
    standing = {r.version for r in lineage(history)}
    return {
        r.version
        for r in history
        if r.kind == "update" and r.succeeded and r.version not in standing and not is_rollback(r)
    }


def running_canary(history: Iterable[UpdateRecord]) -> UpdateRecord | None:
    """The update that left the stack on a canary split, when that is what runs (the newest update
    still standing ran a canary): a promotion stopped before it moved the release to 100 %."""
    standing = lineage(history)
    top = standing[-1] if standing else None
    return top if top is not None and is_canary(top.release) else None


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
    not_after_version: int | None = None,
) -> RollbackPlan:
    """Choose what to roll back to. `history` in any order; `current_release` is the stack file's now.

    `not_after_version`: only consider updates up to that version (promotion: what stood before it).
    """
    current = dict(current_release) if current_release is not None else None
    canary = running_canary(history)
    if canary is not None and not_after_version is None:
        # What runs is the canary's release, whatever this checkout's stack file says: reverting the
        # canary goes back to the release before it.
        current = dict(canary.release or {})
    newest_first = sorted(history, key=lambda r: r.version, reverse=True)
    target: UpdateRecord | None = None
    release: Mapping[str, Any] | None = None  # the target's release, once one is chosen
    if to_version is not None:
        found = next((r for r in newest_first if r.version == to_version), None)
        good = [r.version for r in newest_first if _good(r) and not is_canary(r.release)][:5]
        hint = f" (succeeded updates: {', '.join(f'v{v}' for v in good)})" if good else ""
        if found is None:
            raise RollbackTargetInvalid(f"{stack} has no v{to_version} in its history{hint}")
        if found.kind != "update" or not found.succeeded:
            raise RollbackTargetInvalid(
                f"v{to_version} of {stack} is a {found.result} {found.kind}, not a succeeded update{hint}"
            )
        if found.release is None:
            raise RollbackTargetInvalid(f"v{to_version} of {stack} recorded no stageline:release{hint}")
        if is_canary(found.release):
            raise RollbackTargetInvalid(
                f"v{to_version} of {stack} ran release {found.release_version} as a canary (part of the "
                f"traffic only); pick the update that ran a release in full{hint}"
            )
        target, release = found, found.release
    else:
        current_id = release_identity(current)
        for record in reversed(lineage(history)):
            if not_after_version is not None and record.version > not_after_version:
                continue
            if (
                _good(record)
                and record.release is not None
                and not is_canary(record.release)
                and release_identity(record.release) != current_id
            ):
                target, release = record, record.release
                break
        if target is None or release is None:
            current_version = (current or {}).get("version", "(none)")
            raise RollbackRefused(
                f"{stack} has no earlier succeeded update with a release other than the current one "
                f"({current_version}) that was not itself rolled back; nothing to roll back to"
            )
    commit = target.commit
    warnings: list[str] = []
    if canary is not None and not_after_version is None:
        weight = float((canary.release or {}).get("canary", {}).get("weight") or 0)
        warnings.append(
            f"{stack} runs an unfinished canary: release {canary.release_version} on {weight:.0%} of the "
            f"traffic since v{canary.version} (a promotion stopped before it finished); this rollback "
            f"reverts it to release {release.get('version')} in full"
        )
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
        if str(target.environment.get("git.dirty", "")).lower() == "true":
            warnings.append(
                f"v{target.version} ran from a checkout with uncommitted changes (git.dirty): the program "
                f"at commit {commit[:7]} may not be the program that ran"
            )
    return RollbackPlan(
        stack=stack,
        target=target,
        current_release=current,
        release=without_canary(release),
        commit=commit,
        code=code,
        warnings=tuple(warnings),
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
    """Read the stack's history and current release from the engine, and plan. Creates nothing: a stack
    not in the backend yet raises StackNotDeployed."""
    from automation.gitinfo import commit_exists

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


def _stack_file(engine: Engine, stack: str) -> Path:
    return engine.project_dir / f"Pulumi.{stack}.yaml"


def execute_rollback(
    engine: Engine,
    plan: RollbackPlan,
    *,
    policy: RetryPolicy,
    dry_run: bool = False,
    clear_pending: bool = False,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], None] = time.sleep,
    actor: str | None = None,
    gate: Callable[[PreviewSummary], None] | None = None,
    check_artifacts: bool = False,
) -> RollbackResult:
    """Carry out `plan`. Dry run: change nothing. Otherwise refuse on pending operations (unless
    `clear_pending`), write the release into Pulumi.<stack>.yaml, and `up` with the rollback message —
    from a temporary worktree at the target commit when `plan.code`, removed afterwards.

    With `check_artifacts` (the `rollback` command; a dry run too), first make sure the images, packages
    and frontend files the target release names still exist in the stack's registry and buckets, and
    refuse, naming each missing one, before anything changes.

    When the update fails or is interrupted, Pulumi.<stack>.yaml gets its previous bytes back (so the
    file keeps saying what was deployed before) and the error says so. `gate`, given, sees the preview
    of the rollback (of the program it runs: the worktree's with `code`) and raises to refuse it; the
    file is then put back the same way.
    """
    if check_artifacts:
        artifacts_present(engine, plan, progress)
    if dry_run:
        return RollbackResult(plan=plan, record=None, dry_run=True)
    check_pending(engine, plan.stack, clear=clear_pending, progress=progress)
    path = _stack_file(engine, plan.stack)
    before = _read(path)
    previous = engine.get_release(plan.stack)
    # The main checkout's stack file gets the release too, so a later plain `up` keeps the rollback.
    engine.set_release(plan.stack, plan.release)
    try:
        record = _roll(engine, plan, policy=policy, progress=progress, sleep=sleep, actor=actor, gate=gate)
    except StagelineError as exc:
        said = f"{exc.format_message()}; {_restore(engine, plan.stack, path, before, previous)}"
        raise _same_kind(exc, said) from None
    except KeyboardInterrupt:
        _restore(engine, plan.stack, path, before, previous)
        raise
    return RollbackResult(plan=plan, record=record)


def artifacts_present(engine: Engine, plan: RollbackPlan, progress: ProgressFn | None = None) -> None:
    """Refuse the rollback (RollbackRefused, exit 1) when an artifact of its target release is gone."""
    from automation.operate.artifacts import check_artifacts

    found = check_artifacts(plan.release, engine.outputs(plan.stack).values)
    if found.missing:
        raise RollbackRefused(
            f"cannot roll back {plan.stack} to v{plan.target.version}: release "
            f"{plan.release.get('version', '?')} names artifacts that no longer exist: "
            + "; ".join(found.missing)
        )
    if progress is not None and found.checked:
        progress(
            f"{plan.stack}: the {found.checked} artifact(s) of release {plan.release.get('version')} exist"
        )


def _same_kind(exc: StagelineError, message: str) -> StagelineError:
    """`exc` again (same class, so the same exit code) with another message."""
    try:
        return type(exc)(message)
    except TypeError:  # a subclass with another constructor: keep the message, exit 1
        return StagelineError(message)


def _roll(
    engine: Engine,
    plan: RollbackPlan,
    *,
    policy: RetryPolicy,
    progress: ProgressFn | None,
    sleep: Callable[[float], None],
    actor: str | None = None,
    gate: Callable[[PreviewSummary], None] | None = None,
) -> UpdateRecord:
    message = with_actor(plan.message, actor)

    def check(work_dir: Path | None) -> None:
        if gate is not None:
            gate(with_lock_retry(plan.stack, lambda: engine.preview(plan.stack, work_dir=work_dir), policy))

    if not (plan.code and plan.commit):
        check(None)
        return run_update(engine, plan.stack, message=message, policy=policy, progress=progress, sleep=sleep)
    from automation.gitinfo import worktree

    where = engine.project_dir / WORKTREES_DIR / f"{plan.stack}-v{plan.target.version}"
    if progress is not None:
        progress(f"{plan.stack}: checking out {plan.commit[:7]} in {where} …")
    with worktree(engine.project_dir, plan.commit, where) as checkout:
        engine.set_release(plan.stack, plan.release, work_dir=checkout)
        check(checkout)
        return run_update(
            engine,
            plan.stack,
            message=message,
            policy=policy,
            work_dir=checkout,
            progress=progress,
            sleep=sleep,
        )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _restore(engine: Engine, stack: str, path: Path, before: bytes | None, previous: Release | None) -> str:
    """Put Pulumi.<stack>.yaml back as it was before the rollback wrote to it; say what it now holds."""
    name = path.name
    was = (previous or {}).get("version", "(none)")
    try:
        if before is not None and _read(path) != before:
            path.write_bytes(before)  # byte for byte: comments and layout come back too
        elif previous is not None:
            engine.set_release(stack, previous)
        else:
            return f"{name} still holds the rollback's release: restore it with git if that is not wanted"
    except (OSError, StagelineError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) else exc.format_message()
        return (
            f"{name} still holds the rollback's release (putting back release {was} failed: {detail}); "
            "restore it with git if that is not wanted"
        )
    return f"{name} is back to release {was}, as before the rollback"
