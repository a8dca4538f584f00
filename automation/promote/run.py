"""Staged promotion: one release moves stage by stage, gated, verified, and rolled back on failure.

For each selected stage, in pipeline order:

1. Gates, before anything changes: the source stage's last update succeeded and the source passes
   its health checks and a one-off alarm check now (its release is what moves on; skipped when this
   run just verified it); no pending operations; no drift (or --allow-drift); then, with the
   incoming release written into the stack file, a preview that replaces/deletes no protected or
   stateful resource (unless its URN is passed with --allow-replace) and widens no IAM (unless
   --approve-iam); the stage's approval; its `pre` steps. A refused gate puts the stack file back
   byte for byte and stops: exit 3.
2. Release: the artifacts the release names are copied to the stage's registry and bucket.
   Then TEST before APP: when the release changes, it goes out first as the stage's candidate (the
   live release with `candidate`, so only the TEST distribution moves), its frontend is checked
   through TEST and the `post` steps run with TEST_DOMAIN; a failure rolls back (5) with APP untouched.
3. Up — skipped when the preview shows no changes: the stage is "unchanged", and gets the health
   checks and a one-off alarm check (no bake): an earlier run may have been stopped before it
   verified what the stage runs. A failure there fails the stage (exit 1) without a rollback.
4. Verify: health checks and bake (with a canary weight: canary first, then 100 % and again),
   then the `post` steps. After each `up`, the frontend distributions' caches are invalidated.
5. On failure after `up`: roll back to the release of the stage's last good update (the `rollback`
   logic), verify the rollback, stop: exit 1. Later stages are not touched. An `up` that never
   started (another update held the lock through every retry) deployed nothing: no rollback.

A stage left on a canary split by an interrupted promotion (no live update holds its lock) is
finished by promoting the same release (the canary is verified as it runs, then 100 %); another
release is refused until the canary is finished or reverted with `rollback`.

The source's release is read from its history (the last succeeded update), not from its stack
file: in CI each stage runs in a fresh checkout, where only the engine's record says what the
source stage actually runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from automation import errors
from automation.engine.model import (
    ConcurrentUpdateError,
    PolicyResult,
    PolicyViolationError,
    StackLock,
    StackOutputs,
    UpdateRecord,
)
from automation.engine.protocol import Engine
from automation.operate import frontend_cache
from automation.operate.artifacts import frontend_prefixes
from automation.operate.rollback import is_canary, same_release
from automation.operate.updates import RetryPolicy, run_update, update_message, with_lock_retry
from automation.promote import record as rec
from automation.promote.gates import Gate, drift_gate, iam_gate, pending_gate, replace_gate
from automation.promote.notify import Notifier
from automation.promote.pipeline import Stage
from automation.promote.record import PromotionRecord, RollbackRun, StageRecord, UpdateRun
from automation.promote.release import (
    checked,
    copy_images,
    copy_packages,
    copy_prefix,
    promoted,
    same_config,
    version_of,
    with_canary,
)
from automation.promote.steps import failure as step_failure
from automation.promote.steps import run_steps
from automation.promote.verify import (
    Clock,
    RealClock,
    Verification,
    alarm_names,
    verify_frontend,
    verify_stage,
)
from infra import outputs as out
from infra.config import LAMBDA_VERSION_RE, VerifyConfig, stack_file_path

Confirm = Callable[[str], bool]

# The clock `promote` waits with (retry backoff, bake). Tests replace it, as they replace
# automation.engine.protocol.engine_factory, so bakes and retries take no wall time.
clock_factory: Callable[[], Clock] = RealClock


@dataclass(frozen=True)
class PromoteOptions:
    release: str | None = None  # the version the promotion must carry
    yes: bool = False
    allow_drift: bool = False
    allow_replace: frozenset[str] = frozenset()
    approve_iam: bool = False
    policy_packs: tuple[Path, ...] = ()  # run by the engine with each stage's preview and up

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "yes": self.yes,
            "allowDrift": self.allow_drift,
            "allowReplace": sorted(self.allow_replace),
            "approveIam": self.approve_iam,
            "policyPacks": [str(p) for p in self.policy_packs],
        }


@dataclass
class Runtime:
    """What promotion talks to. Tests pass a fake engine, a fake clock and local endpoints."""

    engine: Engine
    root: Path
    notifier: Notifier
    progress: Callable[[str], None]
    confirm: Confirm | None = None  # None: no terminal to ask on
    clock: Clock = field(default_factory=RealClock)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    step_timeout: float = 1800.0
    echo_steps: bool = True
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    commit: str | None = None  # the git commit the program runs from, for update messages
    actor: str | None = None  # who runs the promotion, tagged onto update messages (`by NAME`)
    withheld_env: tuple[str, ...] = ()  # environment variables kept from pre/post steps (the webhook's)


class _Refused(Exception):
    def __init__(self, gate: Gate) -> None:
        super().__init__(gate.detail)
        self.gate = gate


class _Failed(Exception):
    """Promotion of a stage failed; `deployed` says whether a rollback is needed."""

    def __init__(self, reason: str, *, deployed: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.deployed = deployed


class _Interrupted(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def approval_refusal(selected: Sequence[Stage], opts: PromoteOptions, interactive: bool) -> str | None:
    """Why the run cannot start: a stage needs approval, nobody can be asked and --yes is absent."""
    needing = [s.stack for s in selected if s.approval]
    if not needing or opts.yes or interactive:
        return None
    verb = "needs" if len(needing) == 1 else "need"
    return (
        f"{', '.join(needing)} {verb} approval and there is no terminal to ask on (and no --yes). In CI, run "
        "each stage as its own job under its GitHub environment, whose required reviewers approve the job: "
        f"`python -m automation promote --only {needing[0]} --yes`"
    )


def promote(
    stages: Sequence[Stage], pipeline: Sequence[str], opts: PromoteOptions, rt: Runtime
) -> PromotionRecord:
    """Walk `stages` in order. Returns the record; its exit_code is what the command exits with."""
    record = PromotionRecord(
        pipeline=tuple(pipeline),
        stages=[StageRecord(s.stack, s.source) for s in stages],
        started=rt.now(),
        options=opts.to_json(),
    )
    refusal = approval_refusal(stages, opts, rt.confirm is not None)
    if refusal is not None:
        return _finish(record, rt, result="refused", code=errors.GATE, reason=refusal)
    names = " → ".join(s.stack for s in stages)
    verified: set[str] = set()  # stages this run deployed or checked: their health is known
    for stage, sr in zip(stages, record.stages, strict=True):
        t0 = time.monotonic()
        try:
            release = _incoming(stage, sr, opts, rt, verified)
            if record.release is None:
                record.release = release
                rt.notifier.notify(
                    "start", f"Promoting release `{version_of(release)}`: {names}", {"stages": names}
                )
            _run_stage(stage, sr, release, opts, rt)
        except _Refused as refused:
            sr.result, sr.reason = rec.REFUSED, refused.gate.detail
            outcome = ("refused", errors.GATE, f"{refused.gate.name} gate refused: {refused.gate.detail}")
        except _Failed as failed:
            sr.reason = failed.reason
            if failed.deployed:
                _rollback(stage, sr, rt)
            else:
                sr.result = rec.FAILED
            outcome = ("failed", errors.FAILED, failed.reason)
        except errors.ConfigurationError as exc:
            sr.result, sr.reason = rec.FAILED, exc.format_message()
            outcome = ("failed", errors.USAGE, sr.reason)
        except _Interrupted as interrupted:
            sr.result, sr.reason = rec.INTERRUPTED, interrupted.reason
            outcome = ("interrupted", errors.INTERRUPTED, interrupted.reason)
        except KeyboardInterrupt:
            sr.result, sr.reason = rec.INTERRUPTED, "interrupted"
            outcome = ("interrupted", errors.INTERRUPTED, "interrupted")
        else:
            verified.add(stage.stack)
            sr.add_time("total", time.monotonic() - t0)
            continue
        sr.add_time("total", time.monotonic() - t0)
        result, code, why = outcome
        if record.release is not None:  # the start message went out
            details = {"why": why, "rollback": _rollback_line(sr)}
            rt.notifier.notify(
                "failure", f"Promotion of `{version_of(record.release)}` {result} at {stage.stack}", details
            )
        return _finish(record, rt, result=result, code=code, reason=f"{stage.stack}: {why}")
    changed = any(s.result == rec.DEPLOYED for s in record.stages)
    summary = ", ".join(f"{s.stack} {s.result}" for s in record.stages)
    headline = "promoted" if changed else "already everywhere, nothing changed"
    rt.notifier.notify(
        "success", f"Release `{version_of(record.release)}` {headline}: {summary}", {"stages": names}
    )
    return _finish(record, rt, result="succeeded" if changed else "unchanged", code=errors.OK, reason=None)


def _finish(
    record: PromotionRecord, rt: Runtime, *, result: str, code: int, reason: str | None
) -> PromotionRecord:
    record.result, record.exit_code, record.reason = result, code, reason
    record.finished = rt.now()
    record.notifications = {"sent": list(rt.notifier.sent), "failed": list(rt.notifier.failed)}
    return record


def _rollback_line(stage: StageRecord) -> str:
    r = stage.rollback
    if r is None:
        return ""
    return f"{'done' if r.ok else 'FAILED'}: {r.detail}"


# --- one stage ------------------------------------------------------------------------------


def _gate(stage: StageRecord, gate: Gate) -> None:
    if not gate.ok:
        _refuse(stage, gate)
    stage.gates.append(gate)


def _refuse(stage: StageRecord, gate: Gate) -> NoReturn:
    """Record a failed gate and stop the stage there."""
    stage.gates.append(gate)
    raise _Refused(gate)


def _engine_call(what: str, call: Callable[[], Any]) -> Any:
    """An engine read inside the stage; its failure fails the stage before anything was deployed."""
    try:
        return call()
    except errors.StagelineError as exc:
        if isinstance(exc, errors.ConfigurationError):
            raise
        raise _Failed(f"{what}: {exc.format_message()}", deployed=False) from None


def _last_good(history: Sequence[UpdateRecord]) -> tuple[UpdateRecord | None, UpdateRecord | None]:
    """(the newest update of any result, the newest succeeded update that recorded a release)."""
    updates = sorted((r for r in history if r.kind == "update"), key=lambda r: r.version, reverse=True)
    latest = updates[0] if updates else None
    good = next((r for r in updates if r.succeeded and r.release is not None), None)
    return latest, good


def _incoming(
    stage: Stage, sr: StageRecord, opts: PromoteOptions, rt: Runtime, verified: set[str]
) -> dict[str, Any]:
    """The release this stage receives, checked (the "source" gate)."""
    engine = rt.engine
    if stage.source is None:
        release = checked(
            _engine_call("reading the release", lambda: engine.get_release(stage.stack)), stage.stack
        )
        detail = f"first stage: deploys release {release['version']} from Pulumi.{stage.stack}.yaml"
    else:
        source = stage.source
        history = _engine_call(f"reading the history of {source}", lambda: engine.history(source))
        latest, good = _last_good(history)
        if good is None:
            _refuse(
                sr,
                Gate(
                    "source",
                    False,
                    f"{source} has no succeeded update with a release: promote {source} first",
                ),
            )
        if latest is not None and not latest.succeeded:
            _gate(
                sr,
                Gate(
                    "source",
                    False,
                    f"the last update of {source} (v{latest.version}) {latest.result}; {source} must be "
                    f"healthy before its release moves on",
                ),
            )
        release = checked(good.release, source)
        detail = f"release {release['version']} from {source} v{good.version}"
        on_file = _engine_call(f"reading the release of {source}", lambda: engine.get_release(source))
        if on_file is not None and version_of(on_file) != release["version"]:
            sr.notes.append(
                f"Pulumi.{source}.yaml names release {version_of(on_file)}, but {source} runs "
                f"{release['version']} (v{good.version}); promoting what runs."
            )
    if opts.release is not None and release["version"] != opts.release:
        where = f"Pulumi.{stage.stack}.yaml holds" if stage.source is None else f"{stage.source} runs"
        _gate(
            sr,
            Gate(
                "source",
                False,
                f"--release {opts.release} was asked for, but {where} release {release['version']}",
            ),
        )
    extra: dict[str, Any] = {}
    if stage.source is not None and stage.source not in verified:
        # The source's update succeeding says nothing about its verification: a promotion stopped
        # while verifying (a cancelled job, a timeout), or one whose failure could not be rolled
        # back, leaves it running an unverified release. Check it now, before it moves on.
        source = stage.source
        rt.progress(f"{stage.stack}: checking that {source} is healthy before its release moves on …")
        check = _check_running(rt, source, stage.source_verify or stage.verify, phase="source")
        extra["verification"] = check.to_json()
        if not check.ok:
            _gate(
                sr,
                Gate(
                    "source",
                    False,
                    f"{source} runs release {release['version']} but fails its checks now: {check.reason}; "
                    f"fix {source} (or roll it back: `python -m automation rollback {source}`) before its "
                    "release moves on",
                    extra=extra,
                ),
            )
        detail += f"; {source} passes its checks ({_check_summary(check)})"
    sr.gates.append(Gate("source", True, detail, extra=extra))
    return release


def _check_summary(check: Verification) -> str:
    parts = [f"{len(check.health)} health check(s)"]
    if check.bake is not None:
        found = len(check.bake.watched) - len(check.bake.missing)
        parts.append(f"{found} alarm(s) not in ALARM")
        if check.bake.missing:
            parts.append(f"not found: {', '.join(check.bake.missing)}")
    return ", ".join(parts)


def _check_running(
    rt: Runtime, stack: str, v: VerifyConfig, *, phase: str, outputs: StackOutputs | None = None
) -> Verification:
    """Health checks and one look at the alarms (no bake) of what `stack` runs now."""
    outputs = outputs or _outputs(rt, stack)
    return verify_stage(
        outputs.values,
        phase=phase,
        frontend_path=v.frontend_path,
        timeout_seconds=v.timeout_seconds,
        interval_seconds=v.interval_seconds,
        bake_seconds=0,
        region=_region(outputs),
        clock=rt.clock,
    )


def _outputs(rt: Runtime, stack: str) -> StackOutputs:
    return _engine_call(f"reading the outputs of {stack}", lambda: rt.engine.outputs(stack))


def _live_versions(outputs: StackOutputs) -> dict[str, str] | None:
    value = outputs.get(out.LIVE_VERSIONS)
    if not isinstance(value, Mapping) or not value:
        return None
    live = {str(k): str(v) for k, v in value.items()}
    return live if all(LAMBDA_VERSION_RE.match(v) for v in live.values()) else None


def _run_stage(
    stage: Stage, sr: StageRecord, incoming: dict[str, Any], opts: PromoteOptions, rt: Runtime
) -> None:
    engine, stack = rt.engine, stage.stack
    say = rt.progress
    t = time.monotonic()
    say(f"{stack}: {sr.gates[-1].detail}; checking gates …")
    pending = _engine_call("reading pending operations", lambda: engine.pending_operations(stack))
    locks = _engine_call("reading the stack's locks", lambda: engine.locks(stack))
    _gate(sr, pending_gate(pending, stack, [lock for lock in locks if lock.stale]))
    drift = _drift(rt, stack)
    _gate(sr, drift_gate(drift, allow=opts.allow_drift))
    # Allowed drift is put back by this stage's update, which must then refresh first (a plain up
    # compares the program with the state, which drift leaves alone).
    refresh = drift.drifted

    # What the stage runs is what its last good update deployed; the stack file may lag behind it
    # (in CI every job starts from a fresh checkout, where the file holds the committed release).
    history = _engine_call("reading the history", lambda: engine.history(stack))
    sr.history_before = max((r.version for r in history), default=0)
    _, good = _last_good(history)
    on_file = _engine_call("reading the release", lambda: engine.get_release(stack))
    running = good.release if good is not None else on_file
    sr.release_before = running
    desired = promoted(incoming) if stage.source is not None else dict(incoming)
    changes_release = not same_config(running, desired)
    outputs: StackOutputs | None = None
    first = desired
    resuming = _unfinished_canary(rt, stage, sr, running=running, desired=desired, good=good, locks=locks)
    if resuming:
        outputs = _outputs(rt, stack)
        _verify(rt, stage, sr, "canary", outputs)  # failing: rolled back to what ran before the canary
    elif changes_release and stage.canary_weight:
        outputs = _outputs(rt, stack)
        live = _live_versions(outputs)
        if live is None:
            sr.notes.append(
                f"no canary: {stack} exports no {out.LIVE_VERSIONS} yet (first deployment), so the "
                "release goes to 100 % at once"
            )
        else:
            first = with_canary(desired, stage.canary_weight, live)
            sr.canary_weight = stage.canary_weight
    original = _stack_file_bytes(rt, stack)  # what a refusal puts back, byte for byte
    wrote = unchanged = False
    if not same_config(on_file, first):
        wrote = True
        _set_release(rt, stack, first)
    try:
        say(f"{stack}: previewing release {desired['version']} …")
        preview = with_lock_retry(
            stack, lambda: engine.preview(stack, policy_packs=opts.policy_packs), rt.retry, progress=say
        )
        sr.preview = preview
        if opts.policy_packs:
            advisory = f"; {len(preview.policy)} advisory result(s)" if preview.policy else ""
            sr.gates.append(
                Gate(
                    "policy",
                    True,
                    f"no mandatory policy violated{advisory}",
                    items=_policy_items(preview.policy),
                )
            )
        _gate(sr, replace_gate(preview, opts.allow_replace))
        _gate(sr, _iam(preview, opts, rt, stack))
        if not preview.has_changes:
            if sr.canary_weight is not None:  # nothing moves, so there is nothing to shift traffic for
                _set_release(rt, stack, desired)
                sr.canary_weight = None
            unchanged = True
        else:
            if stage.approval:
                _gate(sr, _approval(stage, preview.counts, desired, opts, rt))
            if stage.pre:
                outputs = outputs or _outputs(rt, stack)
                _pre_steps(rt, stage, sr, outputs)
            sr.add_time("gates", time.monotonic() - t)

            t = time.monotonic()
            if stage.source is not None:
                _copy_artifacts(rt, sr, stage.source, desired, outputs or _outputs(rt, stack))
            sr.add_time("release", time.monotonic() - t)
    except BaseException as exc:
        # Nothing was deployed: put the stack file back as it was, then report.
        if wrote:
            _restore_stack_file(rt, stack, on_file, original)
        if isinstance(exc, KeyboardInterrupt):
            raise _Interrupted("interrupted before any change; the stack file was restored") from None
        if isinstance(exc, PolicyViolationError):
            _refuse(sr, Gate("policy", False, exc.format_message(), items=_policy_items(exc.results)))
        if isinstance(exc, errors.StagelineError) and not isinstance(exc, errors.ConfigurationError):
            raise _Failed(exc.format_message(), deployed=False) from None
        raise

    if unchanged:
        _check_unchanged(rt, stage, sr, desired, outputs)
        sr.add_time("gates", time.monotonic() - t)
        return
    candidate = _candidate_release(running, desired) if changes_release and not resuming else None
    if candidate is not None:
        try:
            _candidate_phase(rt, stage, sr, candidate, refresh=refresh, policy_packs=opts.policy_packs)
        except _Failed as failed:
            if not failed.deployed and wrote:
                _restore_stack_file(rt, stack, on_file, original)
            raise
        refresh = False  # the candidate's update refreshed already
        _set_release(rt, stack, first, deployed=True)
    phase = "canary" if sr.canary_weight else "release"
    try:
        outputs = _up(rt, stage, sr, phase, desired, refresh=refresh, policy_packs=opts.policy_packs)
    except _Failed as failed:
        if not failed.deployed and wrote:  # the update never started: the file says what runs again
            _restore_stack_file(rt, stack, on_file, original)
        raise
    _verify(rt, stage, sr, phase, outputs)
    if sr.canary_weight:
        _set_release(rt, stack, desired, deployed=True)
        try:
            outputs = _up(rt, stage, sr, "full", desired, policy_packs=opts.policy_packs)
        except _Failed as failed:
            if not failed.deployed:
                _set_release(rt, stack, first, quiet=True)
            raise
        _verify(rt, stage, sr, "full", outputs)
    if stage.post:
        t = time.monotonic()
        results = run_steps(
            stage.post,
            phase="post",
            stack=stack,
            outputs=outputs.values,
            cwd=rt.root,
            timeout=rt.step_timeout,
            echo=say if rt.echo_steps else None,
            secrets=_secret_values(outputs),
            withhold=rt.withheld_env,
        )
        problem = step_failure(results)
        sr.verifications.append(
            Verification(phase="post", ok=problem is None, steps=tuple(results), reason=problem)
        )
        sr.add_time("verify", time.monotonic() - t)
        if problem is not None:
            raise _Failed(f"failed verification: {problem}", deployed=True)
    sr.release_after = desired
    sr.result = rec.DEPLOYED
    say(f"{stack}: deployed and verified release {desired['version']}")


def _policy_items(results: Sequence[PolicyResult]) -> tuple[str, ...]:
    return tuple(r.describe() for r in results)


def _candidate_release(
    running: Mapping[str, Any] | None, desired: Mapping[str, Any]
) -> dict[str, Any] | None:
    """What the stage runs now with TEST pointed at the incoming release's frontend: APP, the API and
    the functions stay as they are. None when there is nothing live to keep (a first deployment), the
    stage runs a canary, or the frontend release does not change."""
    if running is None or is_canary(running) or version_of(running) == desired["version"]:
        return None
    live = {k: v for k, v in running.items() if k != "candidate"}
    return {**live, "candidate": str(desired["version"])}


def _candidate_phase(
    rt: Runtime,
    stage: Stage,
    sr: StageRecord,
    candidate: Mapping[str, Any],
    *,
    refresh: bool,
    policy_packs: Sequence[Path] = (),
) -> None:
    """TEST before APP: deploy the release as the stage's candidate (only the TEST distribution moves to
    its frontend), check the frontend through TEST and run the stage's `post` (E2E) steps with
    TEST_DOMAIN, all before APP changes. A failure raises _Failed(deployed=True): the automatic
    rollback puts TEST back on the live release, and APP was never touched."""
    stack = stage.stack
    _set_release(rt, stack, candidate)
    rt.progress(
        f"{stack}: TEST first: the TEST distribution gets release {candidate['candidate']}, APP stays …"
    )
    outputs = _up(rt, stage, sr, "candidate", candidate, refresh=refresh, policy_packs=policy_packs)
    t = time.monotonic()
    try:
        v = stage.verify
        check = verify_frontend(
            outputs.values,
            phase="candidate",
            frontend_path=v.frontend_path,
            timeout_seconds=v.timeout_seconds,
            interval_seconds=v.interval_seconds,
            clock=rt.clock,
        )
    except KeyboardInterrupt:
        raise _Interrupted(
            f"interrupted while checking the candidate on TEST; APP is unchanged: roll TEST back with "
            f"`python -m automation rollback {stack}`, or promote again"
        ) from None
    results: list[Any] = []
    problem = check.reason if not check.ok else None
    if problem is None and stage.post:
        domain = outputs.get(out.TEST_DOMAIN)
        results = run_steps(
            stage.post,
            phase="candidate",
            stack=stack,
            outputs=outputs.values,
            cwd=rt.root,
            timeout=rt.step_timeout,
            echo=rt.progress if rt.echo_steps else None,
            secrets=_secret_values(outputs),
            withhold=rt.withheld_env,
            extra_env={"TEST_DOMAIN": str(domain or ""), "STAGELINE_PHASE": "candidate"},
        )
        problem = step_failure(results)
    sr.verifications.append(
        Verification(
            phase="candidate",
            ok=problem is None,
            health=check.health,
            bake=check.bake,
            steps=tuple(results),
            reason=problem,
        )
    )
    sr.add_time("verify", time.monotonic() - t)
    if problem is not None:
        rt.progress(f"{stack}: the candidate FAILED on TEST: {problem}")
        raise _Failed(f"the candidate failed on TEST: {problem}; APP was not changed", deployed=True)
    rt.progress(f"{stack}: the candidate passed on TEST; now APP")


def _unfinished_canary(
    rt: Runtime,
    stage: Stage,
    sr: StageRecord,
    *,
    running: Mapping[str, Any] | None,
    desired: Mapping[str, Any],
    good: UpdateRecord | None,
    locks: Sequence[StackLock],
) -> bool:
    """Whether this stage finishes a canary an earlier promotion left (stopped mid-bake).

    The stage runs a canary split and no live process holds its lock. Promoting the same release
    finishes it: the canary is verified as it runs (health checks, bake), then the release goes to
    100 % through the usual gates. Another release is refused: the canary is finished or reverted
    (`rollback`) first, so no release is stacked on a half-verified one.
    """
    if not is_canary(running) or running is None or any(not lock.stale for lock in locks):
        return False
    stack = stage.stack
    weight = float(running["canary"].get("weight") or 0)
    since = f" since v{good.version}" if good is not None else ""
    what = f"release {version_of(running)} on {weight:.0%} of the traffic{since}"
    if not same_release(running, desired):
        _refuse(
            sr,
            Gate(
                "canary",
                False,
                f"{stack} runs an unfinished canary: {what} (a promotion stopped before it finished); "
                f"finish it (`python -m automation promote --only {stack} --release {version_of(running)}`) "
                f"or revert it (`python -m automation rollback {stack}`) before promoting release "
                f"{desired['version']}",
            ),
        )
    detail = f"finishing the unfinished canary: {what}; verifying it as it runs, then 100 %"
    sr.gates.append(Gate("canary", True, detail))
    sr.notes.append(detail)
    rt.progress(f"{stack}: {detail}")
    return True


def _pre_steps(rt: Runtime, stage: Stage, sr: StageRecord, outputs: StackOutputs) -> None:
    results = run_steps(
        stage.pre,
        phase="pre",
        stack=stage.stack,
        outputs=outputs.values,
        cwd=rt.root,
        timeout=rt.step_timeout,
        echo=rt.progress if rt.echo_steps else None,
        secrets=_secret_values(outputs),
        withhold=rt.withheld_env,
    )
    sr.steps.extend(results)
    problem = step_failure(results)
    _gate(sr, Gate("pre", problem is None, problem or f"{len(results)} pre step(s) passed"))


def _check_unchanged(
    rt: Runtime, stage: Stage, sr: StageRecord, release: Mapping[str, Any], outputs: StackOutputs | None
) -> None:
    """An unchanged stage still gets health checks and one alarm check (no bake): a promotion stopped
    while verifying (a cancelled job, a bake timeout) leaves it on a release nobody verified."""
    stack = stage.stack
    rt.progress(f"{stack}: unchanged; checking what it runs (health checks, alarms once) …")
    try:
        check = _check_running(rt, stack, stage.verify, phase="check", outputs=outputs)
    except KeyboardInterrupt:
        raise _Interrupted(f"interrupted while checking {stack}; nothing was changed") from None
    sr.verifications.append(check)
    sr.release_after = release
    if not check.ok:
        rt.progress(f"{stack}: the check FAILED: {check.reason}")
        raise _Failed(
            f"{stack} already runs release {release['version']} but fails its checks: {check.reason}; "
            "nothing was deployed, so nothing was rolled back: fix it, or roll it back with "
            f"`python -m automation rollback {stack}`",
            deployed=False,
        )
    sr.result = rec.UNCHANGED
    rt.progress(f"{stack}: unchanged, checks passed")


def _stack_file_bytes(rt: Runtime, stack: str) -> bytes | None:
    try:
        return stack_file_path(rt.engine.project_dir, stack).read_bytes()
    except OSError:
        return None


def _restore_stack_file(
    rt: Runtime, stack: str, release: Mapping[str, Any] | None, original: bytes | None
) -> None:
    """Put Pulumi.<stack>.yaml back as it was before promotion wrote the incoming release into it.

    The engine writes config as values (the Pulumi CLI re-serialises the whole file: key order,
    quoting and comments change), so the value is restored through the engine and then the file's
    own bytes are written back over it.
    """
    if release is not None:
        _set_release(rt, stack, release, quiet=True)
    if original is None:
        return
    path = stack_file_path(rt.engine.project_dir, stack)
    try:
        if path.read_bytes() != original:
            path.write_bytes(original)
    except OSError as exc:
        rt.progress(f"warning: could not restore {path.name} byte for byte: {exc.strerror}")


def _secret_values(outputs: StackOutputs) -> list[str]:
    return outputs.secret_values()


def _set_release(
    rt: Runtime, stack: str, release: Mapping[str, Any], *, quiet: bool = False, deployed: bool = False
) -> None:
    try:
        rt.engine.set_release(stack, release)
    except errors.StagelineError as exc:
        if quiet:  # already failing: say so, keep the first reason
            rt.progress(
                f"warning: could not restore stageline:release in Pulumi.{stack}.yaml: {exc.format_message()}"
            )
            return
        raise _Failed(f"writing stageline:release: {exc.format_message()}", deployed=deployed) from None


def _drift(rt: Runtime, stack: str) -> Any:
    from automation.operate.drift import check_stacks, load_ignore

    rules = load_ignore(None, rt.root)
    return check_stacks(rt.engine, [stack], parallel=1, rules=rules, policy=rt.retry, progress=rt.progress)[0]


def _iam(preview: Any, opts: PromoteOptions, rt: Runtime, stack: str) -> Gate:
    gate = iam_gate(preview, approved=opts.approve_iam)
    if gate.ok or rt.confirm is None:
        return gate
    lines = "\n".join(f"  {item}" for item in gate.items)
    if rt.confirm(f"{stack}: these changes may widen IAM permissions or trust:\n{lines}\nApprove them?"):
        return Gate(
            "iam",
            True,
            f"{len(gate.items)} IAM-widening change(s) approved at the prompt",
            items=gate.items,
            override="prompt",
        )
    return gate


def _approval(
    stage: Stage, counts: Mapping[str, int], release: Mapping[str, Any], opts: PromoteOptions, rt: Runtime
) -> Gate:
    if opts.yes:
        return Gate("approval", True, "approved with --yes", override="--yes")
    if rt.confirm is None:  # pragma: no cover - refused before the first stage
        return Gate("approval", False, "needs approval and there is no terminal to ask on")
    changes = ", ".join(f"{n} {op}" for op, n in sorted(counts.items()) if op != "same" and n) or "no changes"
    if rt.confirm(f"Promote release {release['version']} to {stage.stack} ({changes})?"):
        return Gate("approval", True, "approved at the prompt", override="prompt")
    return Gate("approval", False, "declined at the prompt")


def _copy_artifacts(
    rt: Runtime, sr: StageRecord, source: str, release: Mapping[str, Any], target: StackOutputs
) -> None:
    stack = sr.stack
    src = _outputs(rt, source)
    src_registry, dst_registry = src.get(out.ECR_REPOSITORY_URL), target.get(out.ECR_REPOSITORY_URL)
    if not release.get("images"):
        pass  # a release of packages only: no registry to copy between
    elif isinstance(src_registry, str) and isinstance(dst_registry, str):
        rt.progress(f"{stack}: images of {release['version']}: {src_registry} → {dst_registry} …")
        copies = copy_images(release, src_registry, dst_registry)
        sr.images.extend(copies)
        done = {a: sum(1 for c in copies if c.action == a) for a in dict.fromkeys(c.action for c in copies)}
        rt.progress(f"{stack}: images: " + ", ".join(f"{n} {a}" for a, n in done.items()))
    else:
        sr.notes.append(
            f"images not copied: {out.ECR_REPOSITORY_URL} is missing from "
            f"{source if not isinstance(src_registry, str) else stack}'s outputs"
        )
    if release.get("packages"):
        src_store, dst_store = src.get(out.ARTIFACT_BUCKET), target.get(out.ARTIFACT_BUCKET)
        if isinstance(src_store, str) and isinstance(dst_store, str):
            rt.progress(f"{stack}: packages of {release['version']}: s3://{src_store} → s3://{dst_store} …")
            packages = copy_packages(
                release, src_store, dst_store, source_region=_region(src), target_region=_region(target)
            )
            sr.packages.extend(packages)
            done = {
                a: sum(1 for p in packages if p.action == a)
                for a in dict.fromkeys(p.action for p in packages)
            }
            rt.progress(f"{stack}: packages: " + ", ".join(f"{n} {a}" for a, n in done.items()))
        else:
            sr.notes.append(
                f"packages not copied: {out.ARTIFACT_BUCKET} is missing from "
                f"{source if not isinstance(src_store, str) else stack}'s outputs"
            )
    src_bucket, dst_bucket = src.get(out.FRONTEND_BUCKET), target.get(out.FRONTEND_BUCKET)
    if isinstance(src_bucket, str) and isinstance(dst_bucket, str):
        if src_bucket != dst_bucket:
            for prefix in frontend_prefixes(release):
                rt.progress(
                    f"{stack}: frontend files s3://{src_bucket}/{prefix} → s3://{dst_bucket}/{prefix} …"
                )
                copied = copy_prefix(
                    src_bucket, dst_bucket, prefix, source_region=_region(src), target_region=_region(target)
                )
                sr.frontend.append(copied)
                rt.progress(
                    f"{stack}: frontend files: {copied.copied} copied, {copied.present} already there"
                )
    else:
        sr.notes.append(
            f"frontend files not copied: {out.FRONTEND_BUCKET} is missing from "
            f"{source if not isinstance(src_bucket, str) else stack}'s outputs"
        )


def _region(outputs: StackOutputs) -> str | None:
    value = outputs.get(out.REGION)
    return value if isinstance(value, str) else None


def _up(
    rt: Runtime,
    stage: Stage,
    sr: StageRecord,
    phase: str,
    release: Mapping[str, Any],
    *,
    refresh: bool = False,
    policy_packs: Sequence[Path] = (),
) -> StackOutputs:
    """Run the update (refreshing first when `refresh`); then invalidate the frontend caches. Returns
    the outputs after it."""
    stack = stage.stack
    what = f"promote {release['version']}" + (f" from {stage.source}" if stage.source else "")
    if phase == "canary":
        what += f" (canary {stage.canary_weight:.0%})"
    elif phase == "candidate":
        what = f"candidate {release['candidate']} on TEST" + (f" from {stage.source}" if stage.source else "")
    rt.progress(f"{stack}: up ({phase}) …")
    t = time.monotonic()
    try:
        result = run_update(
            rt.engine,
            stack,
            message=update_message(what, rt.commit, rt.actor),
            policy=rt.retry,
            progress=rt.progress,
            refresh=refresh,
            policy_packs=policy_packs,
        )
    except errors.Interrupted as exc:
        sr.updates.append(UpdateRun(phase, None, "cancelled", time.monotonic() - t))
        sr.add_time("up", time.monotonic() - t)
        raise _Interrupted(exc.format_message()) from None
    except ConcurrentUpdateError as exc:
        # Our update never started: another one (a manual rollback, another promotion) held the lock
        # through every retry. Nothing of ours was deployed in this phase, so nothing is rolled back:
        # a rollback would only meet the same lock, or undo whoever holds it once it frees.
        sr.updates.append(UpdateRun(phase, None, "locked", time.monotonic() - t, exc.format_message()))
        sr.add_time("up", time.monotonic() - t)
        if phase == "full":
            now = (
                f"{stack} still runs the canary ({stage.canary_weight:.0%} on release {release['version']}): "
                f"rerun `python -m automation promote --only {stack}` to finish it, or "
                f"`python -m automation rollback {stack}` to revert it"
            )
        else:
            now = f"nothing was deployed to {stack}, so nothing was rolled back"
        raise _Failed(f"up ({phase}) never started: {exc.format_message()}; {now}", deployed=False) from None
    except errors.StagelineError as exc:
        sr.updates.append(UpdateRun(phase, None, "failed", time.monotonic() - t, exc.format_message()))
        sr.add_time("up", time.monotonic() - t)
        # A failed update may have applied part of its changes: roll back.
        raise _Failed(f"up failed: {exc.format_message()}", deployed=True) from None
    run = UpdateRun(phase, result.version, result.result, time.monotonic() - t)
    sr.updates.append(run)
    sr.add_time("up", time.monotonic() - t)
    outputs = _outputs_after(rt, stack)
    run.invalidations = frontend_cache.invalidate_stack(stack, outputs.values, rt.progress)
    return outputs


def _outputs_after(rt: Runtime, stack: str) -> StackOutputs:
    try:
        return rt.engine.outputs(stack)
    except errors.StagelineError as exc:
        raise _Failed(f"reading the outputs after up: {exc.format_message()}", deployed=True) from None


def _verify(rt: Runtime, stage: Stage, sr: StageRecord, phase: str, outputs: StackOutputs) -> None:
    t = time.monotonic()
    v = stage.verify
    if stage.bake_seconds and not alarm_names(outputs.values):
        warning = (
            f"{stage.stack} exports no {out.ALARM_NAMES}: its {stage.bake_seconds} s bake watches "
            "nothing, so only the health checks verify this release"
        )
        if warning not in sr.notes:
            sr.notes.append(warning)
            rt.progress(f"warning: {warning}")
    rt.progress(f"{stage.stack}: verifying ({phase}): health checks, then {stage.bake_seconds} s of bake …")
    try:
        result = verify_stage(
            outputs.values,
            phase=phase,
            frontend_path=v.frontend_path,
            timeout_seconds=v.timeout_seconds,
            interval_seconds=v.interval_seconds,
            bake_seconds=stage.bake_seconds,
            region=_region(outputs),
            clock=rt.clock,
            canary_weight=stage.canary_weight if phase == "canary" else None,
        )
    except KeyboardInterrupt:
        sr.add_time("verify", time.monotonic() - t)
        raise _Interrupted(
            f"interrupted while verifying; {stage.stack} runs the new release unverified: roll it back "
            f"with `python -m automation rollback {stage.stack}`, or promote it again (an unchanged "
            "stage is checked, and a later stage checks its source, before the release moves on)"
        ) from None
    sr.verifications.append(result)
    sr.add_time("verify", time.monotonic() - t)
    if not result.ok:
        rt.progress(f"{stage.stack}: verification ({phase}) FAILED: {result.reason}")
        raise _Failed(f"verification ({phase}) failed: {result.reason}", deployed=True)
    rt.progress(f"{stage.stack}: verification ({phase}) passed")


def _rollback(stage: Stage, sr: StageRecord, rt: Runtime) -> None:
    """Put the stage back on the release of its last good update before this promotion, and check it."""
    from automation.operate.rollback import RollbackRefused, execute_rollback, is_canary, plan_rollback

    stack = stage.stack
    t = time.monotonic()
    rollback = RollbackRun(ok=False)
    sr.rollback = rollback
    sr.result = rec.FAILED  # until the rollback is done and verified

    def stop(detail: str, said: str | None = None) -> None:
        rollback.detail = detail
        rollback.seconds = time.monotonic() - t
        sr.add_time("rollback", rollback.seconds)
        rt.progress(said or f"{stack}: {detail}")

    try:
        history = rt.engine.history(stack)
        current = rt.engine.get_release(stack)
        # Back to what ran before this promotion: the newest good update it found in the history.
        newest_first = sorted(history, key=lambda r: r.version, reverse=True)
        target = next(
            (
                r
                for r in newest_first
                if r.version <= sr.history_before
                and r.kind == "update"
                and r.succeeded
                and r.release is not None
                # A canary phase is half a release: go back to a release that ran in full.
                and not is_canary(r.release)
            ),
            None,
        )
        if target is None:
            raise RollbackRefused(
                f"{stack} had no succeeded update before this promotion; nothing to go back to"
            )
        plan = plan_rollback(history, current, stack=stack, to_version=target.version)
        rollback.to_version, rollback.release = plan.target.version, version_of(plan.release)
        rt.progress(f"{stack}: rolling back to v{plan.target.version} (release {rollback.release}) …")
        done = execute_rollback(rt.engine, plan, policy=rt.retry, progress=rt.progress, actor=rt.actor)
    except RollbackRefused as exc:
        return stop(f"no rollback possible: {exc.format_message()}")
    except errors.StagelineError as exc:
        return stop(f"the rollback itself failed: {exc.format_message()}")
    except KeyboardInterrupt:
        return stop("the rollback itself failed: interrupted")
    run = UpdateRun(
        "rollback",
        done.record.version if done.record else None,
        done.record.result if done.record else "succeeded",
        time.monotonic() - t,
        plan.message,
    )
    if done.record is not None:
        sr.updates.append(run)
    if plan.commit and rt.commit and plan.commit != rt.commit:
        sr.notes.append(
            f"the rollback restored the release only; v{plan.target.version} ran the program at "
            f"{plan.commit[:7]}, this checkout is {rt.commit[:7]}: `python -m automation rollback {stack} "
            f"--to-version {plan.target.version} --code` also restores the program"
        )
    # Verify the rollback with health checks only: alarms the bad release raised take a while to clear.
    rt.progress(f"{stack}: verifying the rollback (health checks) …")
    try:
        outputs = rt.engine.outputs(stack)
        run.invalidations = frontend_cache.invalidate_stack(stack, outputs.values, rt.progress)
        v = stage.verify
        check = verify_stage(
            outputs.values,
            phase="rollback",
            frontend_path=v.frontend_path,
            timeout_seconds=v.timeout_seconds,
            interval_seconds=v.interval_seconds,
            bake_seconds=None,
            region=_region(outputs),
            clock=rt.clock,
        )
    except errors.StagelineError as exc:
        check = Verification(phase="rollback", ok=False, reason=exc.format_message())
    rollback.verification, rollback.ok = check, check.ok
    restored = f"v{plan.target.version} restored" + (f" as v{done.record.version}" if done.record else "")
    detail = f"{stack} is back on release {rollback.release} ({restored})"
    if not check.ok:
        detail += f", but the rollback verification failed: {check.reason}"
    sr.result = rec.ROLLED_BACK if check.ok else rec.FAILED
    sr.release_after = plan.release
    stop(
        detail,
        f"{stack}: rolled back to release {rollback.release} ({restored}); the rollback verification "
        + ("passed" if check.ok else f"FAILED: {check.reason}"),
    )
    rt.notifier.notify(
        "rollback",
        f"{stack} rolled back to release `{rollback.release}`",
        {"verification": "passed" if check.ok else f"failed: {check.reason}"},
    )
    return None


# --- the command ------------------------------------------------------------------------------


# --- the approver's preview ----------------------------------------------------------------------


PREVIEWED = "previewed"


def preview_promotion(
    stages: Sequence[Stage], pipeline: Sequence[str], opts: PromoteOptions, rt: Runtime
) -> PromotionRecord:
    """What promoting each stage would do, for the person who approves it: the incoming release, every
    gate's verdict (none stops the others), the preview's changes and the policy pack's results.

    Read-only: the engine only previews and refreshes in preview mode (a job with the stack's read-only
    role can run it); the incoming release is written into the stack file for the preview and the file
    is put back byte for byte. No artifact is copied, nothing is deployed, nobody is notified.
    Exit code: 0 when every gate passes, 3 when one would refuse (an approval would be refused too).
    """
    record = PromotionRecord(
        pipeline=tuple(pipeline),
        stages=[StageRecord(s.stack, s.source) for s in stages],
        started=rt.now(),
        options={**opts.to_json(), "preview": True},
    )
    verified: set[str] = set()
    code = errors.OK
    for stage, sr in zip(stages, record.stages, strict=True):
        try:
            release = _incoming(stage, sr, opts, rt, verified)
            if record.release is None:
                record.release = release
            _preview_stage(stage, sr, release, opts, rt)
        except _Refused as stopped:
            sr.result, sr.reason = rec.REFUSED, stopped.gate.detail
            code = errors.GATE
            continue
        except _Failed as failed:
            sr.result, sr.reason = rec.FAILED, failed.reason
            return _finish(
                record, rt, result="failed", code=errors.FAILED, reason=f"{stage.stack}: {failed.reason}"
            )
        refusing = [g for g in sr.gates if not g.ok]
        sr.result = rec.REFUSED if refusing else PREVIEWED
        if refusing:
            sr.reason = "; ".join(f"{g.name} gate would refuse: {g.detail}" for g in refusing)
            code = errors.GATE
    reason = next((f"{s.stack}: {s.reason}" for s in record.stages if s.reason), None)
    return _finish(record, rt, result=PREVIEWED if code == errors.OK else "refused", code=code, reason=reason)


def _preview_stage(
    stage: Stage, sr: StageRecord, incoming: dict[str, Any], opts: PromoteOptions, rt: Runtime
) -> None:
    engine, stack = rt.engine, stage.stack
    pending = _engine_call("reading pending operations", lambda: engine.pending_operations(stack))
    locks = _engine_call("reading the stack's locks", lambda: engine.locks(stack))
    sr.gates.append(pending_gate(pending, stack, [lock for lock in locks if lock.stale]))
    sr.gates.append(drift_gate(_drift(rt, stack), allow=opts.allow_drift))
    history = _engine_call("reading the history", lambda: engine.history(stack))
    _, good = _last_good(history)
    on_file = _engine_call("reading the release", lambda: engine.get_release(stack))
    sr.release_before = good.release if good is not None else on_file
    desired = promoted(incoming) if stage.source is not None else dict(incoming)
    sr.release_after = desired
    original = _stack_file_bytes(rt, stack)
    wrote = not same_config(on_file, desired)
    try:
        if wrote:
            _set_release(rt, stack, desired)
        rt.progress(f"{stack}: previewing release {desired['version']} (read-only) …")
        try:
            preview = with_lock_retry(
                stack,
                lambda: engine.preview(stack, policy_packs=opts.policy_packs),
                rt.retry,
                progress=rt.progress,
            )
        except PolicyViolationError as exc:
            sr.gates.append(Gate("policy", False, exc.format_message(), items=_policy_items(exc.results)))
            return
        except errors.StagelineError as exc:
            if isinstance(exc, errors.ConfigurationError):
                raise
            raise _Failed(f"preview: {exc.format_message()}", deployed=False) from None
    finally:
        if wrote:
            _restore_stack_file(rt, stack, on_file, original)
    sr.preview = preview
    if opts.policy_packs:
        advisory = f"; {len(preview.policy)} advisory result(s)" if preview.policy else ""
        sr.gates.append(
            Gate(
                "policy", True, f"no mandatory policy violated{advisory}", items=_policy_items(preview.policy)
            )
        )
    sr.gates.append(replace_gate(preview, opts.allow_replace))
    sr.gates.append(iam_gate(preview, approved=opts.approve_iam))
    if stage.approval:
        sr.gates.append(Gate("approval", True, "needs approval: this preview is what the approver approves"))


def approver_markdown(record: PromotionRecord) -> str:
    """The run summary an approver reads: per stage, the release, the gates and what would change."""
    from automation.markdown import cell
    from automation.operate.preview import counts_line, stack_details

    version = version_of(record.release) or "?"
    out = [f"## Approver's preview: release `{version}`", ""]
    for sr in record.stages:
        before = version_of(sr.release_before) or "(none)"
        verdict = "every gate passes" if sr.result == PREVIEWED else f"**{sr.result}**"
        out += [f"### {sr.stack}: {before} → {version} — {verdict}", ""]
        if sr.preview is not None:
            out += [f"Changes: {counts_line(sr.preview)}", ""]
        out += ["| Gate | Verdict | Detail |", "| --- | --- | --- |"]
        for gate in sr.gates:
            mark = "✅" if gate.ok else "❌"
            out.append(f"| {cell(gate.name)} | {mark} | {cell(gate.detail)} |")
        items = [(g.name, item) for g in sr.gates for item in g.items]
        if items:
            out += ["", *(f"- {cell(name)}: `{cell(item)}`" for name, item in items)]
        if sr.preview is not None:
            out += [
                "",
                "<details><summary>Resources</summary>",
                "",
                *stack_details(sr.preview),
                "",
                "</details>",
            ]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
