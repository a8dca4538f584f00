"""An in-memory `Engine` for tests and benchmarks: stacks, config, outputs, history and trouble on demand.

It implements `automation.engine.protocol.Engine` exactly, so orchestration code cannot tell it from the real
thing; tests/engine/test_contract.py runs the same scenarios against it and against `LocalEngine` over
the real CLI, and the fake follows a self-managed (file://) backend where backends differ. Beyond the
protocol it offers setup helpers (`add_history`, `set_drift`, `set_preview`, `add_pending`,
`add_lock`, `set_outputs`), fault injection (`fail`, `lock`, `interrupt_up`, `kill_up`), simulated
latency, and a log of calls so tests can assert what happened (or did not)::

    fake = FakeEngine({"dev": {}, "prod": {}}, latency=0.0)
    fake.add_history("prod", release=make_release("v1"), commit="a" * 40)
    fake.lock("prod", times=2)             # the next two `up` calls meet a locked stack
    fake.fail("prod", "up", "boom")        # then one fails with an engine error
    ...
    assert fake.count("up", "prod") == 0   # "up was never called on prod"

Install it for the CLI with `monkeypatch.setattr(automation.engine.protocol, "engine_factory", lambda: fake)`.

What it models, as the real engine behaves:

* State vs cloud. `set_drift` says the cloud differs from the state. A plain `up` compares the program
  with the state, so it leaves drift alone; `up(refresh=True)` reads the cloud first and puts drifted
  resources back. `clear_pending` is a refresh: the state takes in the cloud (drift then shows in
  `preview` as updates, not in `preview_refresh`) and it adds a "refresh" history entry.
* Locks. An `up` holds the stack's lock while it runs: a second `up` (or `clear_pending`) meets
  ConcurrentUpdateError; reads never wait. A lock left by a killed update (`kill_up`, `add_lock`)
  fails every update with StaleLockError until `remove_stale_locks`.
* History. Versions count from 1; an update's entry appears when it ends (a self-managed backend
  writes it then), failed when it was interrupted and cancelled; a killed update writes none.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from automation.engine.model import (
    CHANGE_OPS,
    RELEASE_KEY,
    BackendInfo,
    ConcurrentUpdateError,
    DriftReport,
    EngineError,
    PendingOperation,
    PolicyResult,
    PolicyViolationError,
    PreviewSummary,
    ProgressFn,
    Release,
    ResourceDrift,
    ResourceStep,
    StackLock,
    StackOutputs,
    StaleLockError,
    UpdateRecord,
    all_secret_strings,
    is_stateful,
    not_deployed,
    parse_urn,
    unknown_stack,
)
from automation.engine.project import stale_lock_message
from automation.engine.protocol import Engine
from automation.redact import redact
from infra.config.model import MASK

# Operations that run the program or call providers: the ones `latency` slows down.
HEAVY_OPS = frozenset({"preview", "up", "preview_refresh"})
# The calls that may create a stack in the backend, and those that never need it there (they read the
# stack file, or have nothing to do); every other call needs the stack deployed.
_CREATING_OPS = frozenset({"ensure_stack", "up", "set_release"})
_ANYTIME_OPS = frozenset({"get_release", "cancel", "locks", "remove_stale_locks"})
# The calls that take the stack's lock, as their real counterparts do (`pulumi up`, `pulumi refresh`).
_LOCKING_OPS = frozenset({"up", "clear_pending"})
KILLED_PID = 999_999_999  # the pid a killed update's lock names: no process has it
_FUNCTION = "aws:lambda/function:Function"  # what the fake's updates have in flight
DEFAULT_HEAD = "0" * 40


def make_release(version: str, images: Mapping[str, str] | None = None, **extra: Any) -> Release:
    """A `stageline:release` object: {"version": …, "images": {service: digest}} plus any extra keys."""
    digest = "sha256:" + (version.encode().hex() * 64)[:64]
    return {"version": version, "images": dict(images) if images is not None else {"api": digest}, **extra}


def urn(stack: str, type_token: str, name: str, parent: str = "") -> str:
    """A URN as the engine writes it, for building drift and preview fixtures."""
    qualified = f"{parent}${type_token}" if parent else type_token
    return f"urn:pulumi:{stack}::stageline::{qualified}::{name}"


def step(
    stack: str, op: str, type_token: str, name: str, *, changed: Iterable[str] = (), protected: bool = False
) -> ResourceStep:
    """A ResourceStep with its stateful flag computed as the real engine's converter does."""
    return ResourceStep(
        urn=urn(stack, type_token, name),
        type=type_token,
        name=name,
        op=op,
        changed=tuple(changed),
        protected=protected,
        stateful=is_stateful(type_token, protected=protected),
    )


@dataclass(frozen=True)
class Call:
    """One protocol call, as logged."""

    op: str
    stack: str | None
    args: Mapping[str, Any] = field(default_factory=dict)
    thread: str = ""


@dataclass
class FakeStack:
    name: str
    config: dict[str, Any] = field(default_factory=dict)  # full keys: "stageline:release", "aws:region"
    secret_keys: set[str] = field(default_factory=set)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    history: list[UpdateRecord] = field(default_factory=list)  # oldest first
    drift: list[ResourceDrift] = field(default_factory=list)
    preview_steps: list[ResourceStep] = field(default_factory=list)
    preview_counts: dict[str, int] | None = None
    pending: list[PendingOperation] = field(default_factory=list)
    locks: list[StackLock] = field(default_factory=list)  # held by processes other than a running up
    resources: int = 12
    worktree_releases: dict[str, Release] = field(default_factory=dict)  # str(work_dir) -> release
    deployed: bool = True  # False: has a stack file but is not in the backend yet (see add_stack)
    policy: list[PolicyResult] = field(default_factory=list)  # what a policy pack reports (set_policy)


class FakeEngine:
    """See the module docstring. Thread-safe: state changes under a lock, latency sleeps outside it."""

    def __init__(
        self,
        stacks: Iterable[str] | Mapping[str, Mapping[str, Any]] = ("dev", "staging", "prod"),
        *,
        project_dir: Path | None = None,
        latency: float | Mapping[str, float] = 0.0,
        git_head: str | None = None,
        clock: Callable[[], datetime] | None = None,
        update_duration: timedelta = timedelta(seconds=42),
        history_gap: timedelta = timedelta(minutes=30),
        backend_url: str = "file:///fake/.stageline/state",
        on_up: Callable[[str, Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ) -> None:
        """`stacks`: names, or name -> config (full keys, e.g. {"stageline:release": {...}}).

        `latency`: seconds slept by each heavy call (preview, up, preview_refresh), or op -> seconds.
        `git_head`: the commit `up` records as "git.head"; None (default) reads HEAD of the checkout
        `up` runs from (work_dir, else project_dir) with git, as Pulumi does.
        Time is virtual: entries added without `start` and updates are placed one after another from
        `clock() - 14 days`, `history_gap` apart, and never before `clock()` for updates.
        `on_up(stack, config)` returns outputs to merge after a successful up.
        """
        self._lock = threading.RLock()
        self._stacks: dict[str, FakeStack] = {}
        items: Iterable[tuple[str, Mapping[str, Any]]] = (
            stacks.items() if isinstance(stacks, Mapping) else ((name, {}) for name in stacks)
        )
        for name, config in items:
            self._stacks[name] = FakeStack(name=name, config=copy.deepcopy(dict(config)))
        self._project_dir = project_dir or Path.cwd()
        self._latency = latency
        self.git_head = git_head
        self._clock = clock or (lambda: datetime.now(UTC))
        self.update_duration = update_duration
        self.history_gap = history_gap
        self._cursor: datetime | None = None
        self._backend_url = backend_url
        self.on_up = on_up
        self.calls: list[Call] = []
        self._failures: dict[tuple[str, str], list[str]] = {}
        self._locks: dict[tuple[str, str], int] = {}
        self._interrupts: dict[str, tuple[type[BaseException], bool, bool]] = {}
        self._kills: set[str] = set()
        self._running: dict[str, UpdateRecord] = {}
        self._active = 0
        self.max_concurrent = 0  # the most calls that were inside the engine at once

    # --- construction helpers -------------------------------------------------------------------

    @classmethod
    def from_repo(cls, root: Path, **kwargs: Any) -> FakeEngine:
        """A fake whose stacks and config come from the Pulumi.<stack>.yaml files under `root`."""
        from infra.config.stack_file import known_stacks, read_stack_file

        configs: dict[str, dict[str, Any]] = {}
        secrets: dict[str, set[str]] = {}
        for name in known_stacks(root):
            sf = read_stack_file(root, name)
            cfg: dict[str, Any] = {f"stageline:{k}": v for k, v in sf.values.items()}
            cfg.update(sf.other)
            configs[name] = cfg
            secrets[name] = {f"stageline:{k}" for k in sf.secret_keys}
        fake = cls(configs, project_dir=root, **kwargs)
        for name, keys in secrets.items():
            fake.stack(name).secret_keys |= keys
        return fake

    def stack(self, name: str) -> FakeStack:
        """Direct access to a stack's state for test setup and assertions (not logged as a call)."""
        try:
            return self._stacks[name]
        except KeyError:
            raise unknown_stack(name, self._stacks) from None

    def add_stack(
        self, name: str, config: Mapping[str, Any] | None = None, *, deployed: bool = True
    ) -> FakeStack:
        """A new stack. `deployed=False`: it has a stack file but is not in the backend yet, so read-only
        calls raise StackNotDeployed until `ensure_stack` or `up` creates it, as with the real engine."""
        with self._lock:
            self._stacks[name] = FakeStack(
                name=name, config=copy.deepcopy(dict(config or {})), deployed=deployed
            )
            return self._stacks[name]

    def set_config(self, stack: str, key: str, value: Any, *, secret: bool = False) -> None:
        with self._lock:
            s = self.stack(stack)
            s.config[key] = copy.deepcopy(value)
            if secret:
                s.secret_keys.add(key)

    def add_history(
        self,
        stack: str,
        *,
        kind: str = "update",
        result: str = "succeeded",
        release: Release | None = None,
        commit: str | None = DEFAULT_HEAD,
        message: str = "",
        start: datetime | None = None,
        duration: timedelta | None = None,
        environment: Mapping[str, str] | None = None,
        resource_changes: Mapping[str, int] | None = None,
        set_current: bool | None = None,
    ) -> UpdateRecord:
        """Append one history entry (next version). A succeeded update with a release also makes that
        release the stack's current config unless `set_current=False` — as a real up would leave it."""
        with self._lock:
            s = self.stack(stack)
            config = self._snapshot(s)
            if release is not None:
                config[RELEASE_KEY] = copy.deepcopy(release)
            env = {
                "exec.kind": "auto.local",
                **({"git.head": commit} if commit else {}),
                **(environment or {}),
            }
            begin = start or self._next_start(duration or self.update_duration)
            record = UpdateRecord(
                version=len(s.history) + 1,
                kind=kind,
                result=result,
                start=begin,
                end=None if result == "in-progress" else begin + (duration or self.update_duration),
                message=message,
                environment=env,
                config=config,
                resource_changes=dict(resource_changes or {"same": s.resources}),
            )
            s.history.append(record)
            make_current = (
                set_current
                if set_current is not None
                else (kind == "update" and result == "succeeded" and release is not None)
            )
            if make_current and release is not None:
                s.config[RELEASE_KEY] = copy.deepcopy(release)
            return record

    def set_drift(self, stack: str, resources: Iterable[ResourceDrift]) -> None:
        with self._lock:
            self.stack(stack).drift = list(resources)

    def set_preview(
        self, stack: str, steps: Iterable[ResourceStep], counts: Mapping[str, int] | None = None
    ) -> None:
        """What `preview` returns. Without `counts`, counts are derived from the steps plus "same"."""
        with self._lock:
            s = self.stack(stack)
            s.preview_steps = list(steps)
            s.preview_counts = dict(counts) if counts is not None else None

    def set_policy(self, stack: str, results: Iterable[PolicyResult]) -> None:
        """What a policy pack reports on `stack` when `preview`/`up` run one (`policy_packs`)."""
        with self._lock:
            self.stack(stack).policy = list(results)

    def set_outputs(self, stack: str, values: Mapping[str, Any], *, secret: Iterable[str] = ()) -> None:
        with self._lock:
            s = self.stack(stack)
            s.outputs.update(copy.deepcopy(dict(values)))
            s.secret_outputs |= set(secret)

    def add_pending(self, stack: str, type_token: str, name: str, kind: str = "creating") -> PendingOperation:
        op = PendingOperation(urn=urn(stack, type_token, name), type=type_token, kind=kind)
        with self._lock:
            self.stack(stack).pending.append(op)
        return op

    def add_lock(
        self, stack: str, *, stale: bool = True, pid: int | None = None, host: str = ""
    ) -> StackLock:
        """A lock on `stack` held by another process: `stale` (its process is gone, as after a killed
        CLI) or live (a running update elsewhere, or one on another host)."""
        lock = StackLock(
            location=f"{self._backend_url}/.pulumi/locks/organization/stageline/{stack}/{len(self.calls)}.json",
            pid=pid if pid is not None else (KILLED_PID if stale else 1),
            user="runner",
            host=host or "this-host",
            created=self._clock(),
            stale=stale,
        )
        with self._lock:
            self.stack(stack).locks.append(lock)
        return lock

    # --- fault injection --------------------------------------------------------------------------

    def fail(self, stack: str, op: str, message: str, *, times: int = 1) -> None:
        """The next `times` calls of `op` on `stack` raise EngineError(message) (redacted as the real one)."""
        with self._lock:
            self._failures.setdefault((stack, op), []).extend([message] * times)

    def lock(self, stack: str, *, times: int = 1, op: str = "up") -> None:
        """The next `times` calls of `op` on `stack` meet a stack locked by another update."""
        with self._lock:
            self._locks[(stack, op)] = self._locks.get((stack, op), 0) + times

    def interrupt_up(
        self,
        stack: str,
        exc: type[BaseException] = KeyboardInterrupt,
        *,
        leave_pending: bool = False,
        started: bool = True,
    ) -> None:
        """The next `up` on `stack` starts (history shows it in progress) and then raises `exc`, as
        Ctrl-C or a SIGTERM handler would. `cancel` then marks it failed; `leave_pending` simulates an
        update killed mid-operation, which leaves a pending create behind. `started=False`: the
        interrupt comes before the update starts (while selecting the stack), so nothing is running."""
        with self._lock:
            self._interrupts[stack] = (exc, leave_pending, started)

    def kill_up(self, stack: str) -> None:
        """The next `up` on `stack` is killed mid-operation (SIGKILL of the CLI, a lost runner): it leaves
        a pending create and its lock behind (stale: its process is gone), writes no history entry (a
        self-managed backend writes one when the operation ends) and fails with EngineError, as the SDK
        reports a CLI that died."""
        with self._lock:
            self.stack(stack)
            self._kills.add(stack)

    def set_latency(self, latency: float | Mapping[str, float]) -> None:
        """Seconds each heavy call sleeps from now on (see the constructor's `latency`)."""
        with self._lock:
            self._latency = latency

    def is_running(self, stack: str) -> bool:
        """Whether an `up` of `stack` is running now (it holds the stack's lock)."""
        with self._lock:
            return stack in self._running

    # --- call log ---------------------------------------------------------------------------------

    def count(self, op: str, stack: str | None = None) -> int:
        """How many times `op` was called (on `stack`, if given)."""
        return sum(1 for c in self.calls if c.op == op and (stack is None or c.stack == stack))

    def ops(self, stack: str | None = None) -> list[str]:
        """The ops called, in order (on `stack`, if given)."""
        return [c.op for c in self.calls if stack is None or c.stack == stack]

    # --- internals ----------------------------------------------------------------------------------

    def _enter(self, op: str, stack: str, **args: Any) -> FakeStack:
        """Log the call and return the stack it works on, raising what the real engine would first."""
        with self._lock:
            self.calls.append(Call(op=op, stack=stack, args=args, thread=threading.current_thread().name))
            s = self.stack(stack)
            if not s.deployed and op not in _ANYTIME_OPS:
                if op not in _CREATING_OPS:
                    raise not_deployed(s.name)
                s.deployed = True
            if self._locks.get((stack, op), 0) > 0:
                self._locks[(stack, op)] -= 1
                raise ConcurrentUpdateError(
                    f"the stack is locked by another update: the stack is currently locked by 1 lock(s) "
                    f"(stack {stack}); run `pulumi cancel` if that update is gone"
                )
            if op in _LOCKING_OPS and op != "up":  # up takes the lock itself
                self._check_lock(s)
            return s

    def _check_lock(self, s: FakeStack) -> None:
        """What taking the stack's lock meets: a running update of ours, or another process's lock."""
        if s.name in self._running or any(not lock.stale for lock in s.locks):
            raise ConcurrentUpdateError(
                f"the stack is locked by another update: the stack is currently locked by "
                f"{1 + len(s.locks)} lock(s). Either wait for the other process(es) to end or delete the "
                "lock file with `pulumi cancel`."
            )
        if s.locks:
            raise StaleLockError(stale_lock_message(s.name, s.locks, removable=True))

    def _failure(self, stack: str, op: str) -> str | None:
        with self._lock:
            queue = self._failures.get((stack, op))
            if queue:
                return queue.pop(0)
            return None

    def _secrets(self, s: FakeStack) -> list[str]:
        return all_secret_strings([s.config[k] for k in s.secret_keys if k in s.config])

    def _sleep(self, op: str) -> None:
        seconds = (
            self._latency.get(op, 0.0)
            if isinstance(self._latency, Mapping)
            else (self._latency if op in HEAVY_OPS else 0.0)
        )
        with self._lock:
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)
        try:
            if seconds > 0:
                time.sleep(seconds)
        finally:
            with self._lock:
                self._active -= 1

    def _snapshot(self, s: FakeStack, work_dir: Path | None = None) -> dict[str, Any]:
        config = {k: (MASK if k in s.secret_keys else copy.deepcopy(v)) for k, v in s.config.items()}
        if work_dir is not None and str(work_dir) in s.worktree_releases:
            config[RELEASE_KEY] = copy.deepcopy(s.worktree_releases[str(work_dir)])
        return config

    def _next_start(self, duration: timedelta, *, not_before: datetime | None = None) -> datetime:
        with self._lock:
            if self._cursor is None:
                self._cursor = self._clock() - timedelta(days=14)
            begin = max(self._cursor, not_before) if not_before is not None else self._cursor
            self._cursor = begin + duration + self.history_gap
            return begin

    def _head(self, work_dir: Path | None) -> str | None:
        if self.git_head is not None:
            return self.git_head
        from automation.gitinfo import head_commit

        return head_commit(work_dir or self._project_dir)

    # --- the Engine protocol ------------------------------------------------------------------------

    @property
    def project_dir(self) -> Path:
        return self._project_dir

    def backend(self) -> BackendInfo:
        return BackendInfo(url=self._backend_url, source="default", secrets="fake")

    def stack_names(self) -> list[str]:
        return sorted(self._stacks)

    def ensure_stack(self, stack: str) -> None:
        self._enter("ensure_stack", stack)

    def preview(
        self,
        stack: str,
        *,
        progress: ProgressFn | None = None,
        work_dir: Path | None = None,
        policy_packs: Sequence[Path] = (),
    ) -> PreviewSummary:
        s = self._enter(
            "preview",
            stack,
            work_dir=str(work_dir) if work_dir else None,
            policy_packs=[str(p) for p in policy_packs],
        )
        self._sleep("preview")
        failure = self._failure(stack, "preview")
        if failure is not None:
            raise EngineError(redact(failure, self._secrets(s)))
        with self._lock:
            steps = tuple(s.preview_steps)
            if s.preview_counts is not None:
                counts = dict(s.preview_counts)
            else:
                counts = {"same": max(s.resources - len(steps), 0)}
                for st in steps:
                    counts[st.op] = counts.get(st.op, 0) + 1
        if progress is not None:
            for st in steps:
                progress(f"  {st.op:<8} {st.type} {st.name}")
        policy = tuple(s.policy) if policy_packs else ()
        if any(r.mandatory for r in policy):
            raise PolicyViolationError(stack, policy)
        return PreviewSummary(stack=stack, counts=counts, steps=steps, policy=policy)

    def up(
        self,
        stack: str,
        *,
        message: str,
        work_dir: Path | None = None,
        progress: ProgressFn | None = None,
        refresh: bool = False,
        policy_packs: Sequence[Path] = (),
    ) -> UpdateRecord:
        s = self._enter(
            "up",
            stack,
            message=message,
            work_dir=str(work_dir) if work_dir else None,
            refresh=refresh,
            policy_packs=[str(p) for p in policy_packs],
        )
        if policy_packs and any(r.mandatory for r in s.policy):
            raise PolicyViolationError(stack, s.policy)  # the engine runs the pack before any change
        head = self._head(work_dir)
        with self._lock:
            self._check_lock(s)  # and take it, in the same breath: `_running` is the lock
            start = self._next_start(self.update_duration, not_before=self._clock())
            env = {"exec.kind": "auto.local", **({"git.head": head} if head else {})}
            running = UpdateRecord(
                version=len(s.history) + 1,
                kind="update",
                result="in-progress",
                start=start,
                message=message,
                environment=env,
                config=self._snapshot(s, work_dir),
            )
            s.history.append(running)
            self._running[stack] = running
            interrupt = self._interrupts.pop(stack, None)
            if interrupt is not None and not interrupt[2]:
                s.history.pop()  # interrupted before the update started: nothing ran
                self._running.pop(stack, None)
        if interrupt is not None:
            exc, leave_pending, _ = interrupt
            if leave_pending:
                self.add_pending(stack, "aws:lambda/function:Function", f"{stack}-api", "creating")
            raise exc()
        self._sleep("up")
        failure = self._failure(stack, "up")
        with self._lock:
            self._running.pop(stack, None)
            end = start + self.update_duration
            if stack in self._kills:
                self._kills.discard(stack)
                s.history.remove(running)
                s.pending.append(
                    PendingOperation(
                        urn=urn(stack, _FUNCTION, f"{stack}-api"), type=_FUNCTION, kind="creating"
                    )
                )
                self.add_lock(stack, stale=True)
                raise EngineError("the Pulumi CLI was killed (signal 9) before the update finished")
            if failure is not None:
                final = _replace(running, result="failed", end=end, resource_changes={})
                s.history[-1] = final
                raise EngineError(redact(failure, self._secrets(s)))
            # The update applies what the program changes against the state; with refresh it reads
            # the cloud first, so drifted resources are changed back too. Without, drift stays.
            planned = [st for st in s.preview_steps if st.op in CHANGE_OPS]
            drifted = list(s.drift) if refresh else []
            changes: dict[str, int] = {}
            for st in planned:
                changes[st.op] = changes.get(st.op, 0) + 1
            planned_urns = {st.urn for st in planned}
            back = [d for d in drifted if d.urn not in planned_urns]
            if back:
                changes["update"] = changes.get("update", 0) + sum(1 for d in back if d.kind != "delete")
                changes["create"] = changes.get("create", 0) + sum(1 for d in back if d.kind == "delete")
            same = max(s.resources - sum(changes.values()), 0)
            changes = {"same": same, **{k: n for k, n in changes.items() if n}}
            final = _replace(running, result="succeeded", end=end, resource_changes=changes)
            s.history[-1] = final
            if refresh:
                s.drift = []
            s.preview_steps = []
            s.preview_counts = None
            release = final.release
            if release is not None:
                s.outputs["releaseVersion"] = release.get("version")
            if self.on_up is not None:
                s.outputs.update(self.on_up(stack, final.config))
        if progress is not None:
            progress(f"  update v{final.version} succeeded")
        return final

    def preview_refresh(self, stack: str, *, progress: ProgressFn | None = None) -> DriftReport:
        s = self._enter("preview_refresh", stack)
        self._sleep("preview_refresh")
        failure = self._failure(stack, "preview_refresh")
        if failure is not None:
            raise EngineError(redact(failure, self._secrets(s)))
        with self._lock:
            return DriftReport(stack=stack, resources=tuple(s.drift))

    def history(self, stack: str, *, limit: int | None = None) -> list[UpdateRecord]:
        s = self._enter("history", stack, limit=limit)
        self._sleep("history")
        failure = self._failure(stack, "history")
        if failure is not None:
            raise EngineError(redact(failure, self._secrets(s)))
        with self._lock:
            running = self._running.get(stack)
            newest_first = [r for r in reversed(s.history) if r is not running or not self._self_managed]
        return newest_first[:limit] if limit is not None else newest_first

    @property
    def _self_managed(self) -> bool:
        # A self-managed backend writes an update's history entry when it ends; Pulumi Cloud shows it
        # in progress.
        return not self._backend_url.startswith(("https://", "http://"))

    def outputs(self, stack: str) -> StackOutputs:
        s = self._enter("outputs", stack)
        self._sleep("outputs")
        with self._lock:
            return StackOutputs(
                stack=stack, values=copy.deepcopy(s.outputs), secret_keys=frozenset(s.secret_outputs)
            )

    def get_release(self, stack: str, *, work_dir: Path | None = None) -> Release | None:
        s = self._enter("get_release", stack, work_dir=str(work_dir) if work_dir else None)
        with self._lock:
            if work_dir is not None and str(work_dir) in s.worktree_releases:
                return copy.deepcopy(s.worktree_releases[str(work_dir)])
            value = s.config.get(RELEASE_KEY)
            return copy.deepcopy(dict(value)) if isinstance(value, Mapping) else None

    def set_release(self, stack: str, release: Mapping[str, Any], *, work_dir: Path | None = None) -> None:
        s = self._enter(
            "set_release",
            stack,
            release=copy.deepcopy(dict(release)),
            work_dir=str(work_dir) if work_dir else None,
        )
        failure = self._failure(stack, "set_release")
        if failure is not None:
            raise EngineError(redact(failure, self._secrets(s)))
        with self._lock:
            if work_dir is not None:
                s.worktree_releases[str(work_dir)] = copy.deepcopy(dict(release))
            else:
                s.config[RELEASE_KEY] = copy.deepcopy(dict(release))

    def pending_operations(self, stack: str) -> list[PendingOperation]:
        s = self._enter("pending_operations", stack)
        with self._lock:
            # An update in flight has its operation pending in the state until the operation ends.
            in_flight = (
                [PendingOperation(urn=urn(stack, _FUNCTION, f"{stack}-api"), type=_FUNCTION, kind="updating")]
                if stack in self._running
                else []
            )
            return list(s.pending) + in_flight

    def clear_pending(self, stack: str) -> int:
        s = self._enter("clear_pending", stack)
        with self._lock:
            n = len(s.pending)
            if not n:
                return 0
            s.pending = []
            # `pulumi refresh --clear-pending-creates`: a refresh, recorded in history, after which the
            # state holds what the cloud holds: drift becomes a change the next update makes.
            begin = self._next_start(self.update_duration, not_before=self._clock())
            s.history.append(
                UpdateRecord(
                    version=len(s.history) + 1,
                    kind="refresh",
                    result="succeeded",
                    start=begin,
                    end=begin + self.update_duration,
                    message="clear pending operations (stageline --clear-pending)",
                    environment={"exec.kind": "auto.local"},
                    config=self._snapshot(s),
                    resource_changes={"same": s.resources - len(s.drift), "update": len(s.drift)}
                    if s.drift
                    else {"same": s.resources},
                )
            )
            for d in s.drift:
                s.preview_steps.append(
                    ResourceStep(
                        urn=d.urn,
                        type=d.type,
                        name=d.name,
                        op="create" if d.kind == "delete" else "update",
                        changed=tuple(p.path for p in d.properties),
                        stateful=is_stateful(d.type),
                    )
                )
            s.drift = []
            return n

    def locks(self, stack: str) -> list[StackLock]:
        s = self._enter("locks", stack)
        with self._lock:
            running = self._running.get(stack)
            ours = (
                [
                    StackLock(
                        location=f"{self._backend_url}/.pulumi/locks/organization/stageline/{stack}/running.json",
                        pid=os.getpid(),
                        user="runner",
                        host=socket.gethostname(),
                        created=running.start,
                        stale=False,
                    )
                ]
                if running is not None
                else []
            )
            return ours + list(s.locks)

    def remove_stale_locks(self, stack: str) -> list[StackLock]:
        s = self._enter("remove_stale_locks", stack)
        with self._lock:
            removed = [lock for lock in s.locks if lock.stale]
            s.locks = [lock for lock in s.locks if not lock.stale]
            return removed

    def cancel(self, stack: str, *, progress: ProgressFn | None = None) -> None:
        s = self._enter("cancel", stack)
        with self._lock:
            running = self._running.pop(stack, None)
            if running is not None and s.history and s.history[-1].version == running.version:
                # As the CLI records an update it stopped on an interrupt: failed, message unchanged.
                s.history[-1] = _replace(running, result="failed", end=max(self._clock(), running.start))


def _replace(record: UpdateRecord, **changes: Any) -> UpdateRecord:
    return dataclasses.replace(record, **changes)


__all__ = ["Call", "FakeEngine", "FakeStack", "make_release", "parse_urn", "step", "urn"]


def _conforms(engine: FakeEngine) -> Engine:  # mypy checks FakeEngine against the protocol here
    return engine
