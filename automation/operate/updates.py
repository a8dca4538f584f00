"""Running an update safely: lock retries, Ctrl-C/SIGTERM cancellation, pending operations, messages.

Used by `up`, `drift --remediate`, `rollback` and promotion. Every function takes the engine, so tests
drive them with the fake.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TypeVar

from automation.engine.model import (
    ConcurrentUpdateError,
    PendingOperation,
    ProgressFn,
    StackLock,
    Terminated,
    UpdateRecord,
)
from automation.engine.protocol import Engine
from automation.errors import ConfigurationError, Interrupted, StagelineError

T = TypeVar("T")

BACKOFF_ENV = "STAGELINE_LOCK_BACKOFF"  # seconds before the first retry; doubles each time


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for another update's lock: `tries` attempts, delays base, 2x, 4x … (capped)."""

    tries: int = 5
    base_delay: float = 2.0
    max_delay: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return min(self.base_delay * (2 ** (attempt - 1)), self.max_delay)

    @classmethod
    def from_env(cls, tries: int = 5, environ: dict[str, str] | None = None) -> RetryPolicy:
        env = os.environ if environ is None else environ
        raw = env.get(BACKOFF_ENV, "").strip()
        if not raw:
            return cls(tries=tries)
        try:
            base = float(raw)
        except ValueError:
            raise ConfigurationError(f"{BACKOFF_ENV} must be a number of seconds, got {raw!r}") from None
        if base < 0:
            raise ConfigurationError(f"{BACKOFF_ENV} must not be negative, got {raw!r}")
        return cls(tries=tries, base_delay=base)


def with_lock_retry(
    stack: str,
    operation: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    progress: ProgressFn | None = None,
) -> T:
    """Run `operation`, retrying while the stack is locked by another update.

    After `policy.tries` attempts the last ConcurrentUpdateError is raised again with advice.
    """
    waited = 0.0
    for attempt in range(1, policy.tries + 1):
        try:
            return operation()
        except ConcurrentUpdateError:
            if attempt == policy.tries:
                break
            delay = policy.delay(attempt)
            if progress is not None:
                progress(
                    f"{stack} is locked by another update; retrying in {delay:g}s "
                    f"(attempt {attempt + 1} of {policy.tries})"
                )
            sleep(delay)
            waited += delay
    raise ConcurrentUpdateError(
        f"{stack} is still locked by another update after {policy.tries} attempts ({waited:g}s): wait for "
        f"it to finish; if it died, run `pulumi cancel -s {stack}` (Pulumi Cloud), or rerun with "
        "--clear-pending, which removes a self-managed backend's lock once its process is provably gone"
    )


def not_locked(engine: Engine, stack: str) -> None:
    """Raise ConcurrentUpdateError while a live process holds the stack's lock (for `with_lock_retry`);
    a stale lock is left to the pending-operations check. Backends whose locks cannot be read pass."""
    live = [lock for lock in engine.locks(stack) if not lock.stale]
    if live:
        raise ConcurrentUpdateError(f"{stack} is locked by another update: {live[0].describe()}")


# --- pending operations ---------------------------------------------------------------------------


class PendingOperationsError(StagelineError):
    """An interrupted update left operations pending; `up` would not be safe until they are handled."""


def describe_pending(
    stack: str, pending: list[PendingOperation], stale: list[StackLock] | None = None
) -> str:
    parts = []
    if stale:
        locks = "; ".join(lock.describe() for lock in stale)
        parts.append(
            f"{stack} is locked by a Pulumi process that no longer runs (killed mid-update): {locks}. "
            "Every update fails on that lock until --clear-pending removes it (it removes only a lock whose "
            "process is provably gone)."
        )
    if pending:
        listed = ", ".join(f"{p.kind} {p.type} {p.name}" for p in pending[:5])
        more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
        parts.append(
            f"{stack} has {len(pending)} pending operation(s) from an interrupted update: {listed}{more}. "
            "Check those resources in the cloud (a pending create may exist without being in the state), "
            "then rerun with --clear-pending"
        )
    else:
        parts.append("Rerun with --clear-pending")
    return " ".join(parts)


def check_pending(
    engine: Engine, stack: str, *, clear: bool, progress: ProgressFn | None = None
) -> list[PendingOperation]:
    """Refuse (PendingOperationsError) when `stack` has pending operations or a stale lock (one whose
    process is provably gone, as after a killed CLI), unless `clear`: then remove the stale locks
    (never a live one) and clear the pending operations."""
    pending = engine.pending_operations(stack)
    locks = engine.locks(stack)
    stale = [lock for lock in locks if lock.stale]
    if not pending and not stale:
        return []
    if not stale and any(not lock.stale for lock in locks):
        # An update is running: the pending operations are its own, in flight. Let this update meet
        # its lock (and retry) instead of calling them an interrupted update's.
        return []
    if not clear:
        raise PendingOperationsError(describe_pending(stack, pending, stale))
    for lock in engine.remove_stale_locks(stack):
        if progress is not None:
            progress(f"{stack}: removed the stale lock {lock.describe()}")
    if pending:
        dropped = engine.clear_pending(stack)
        if progress is not None:
            progress(f"{stack}: cleared {dropped} pending operation(s) (refresh --clear-pending-creates)")
    return pending


# --- interruption -------------------------------------------------------------------------------


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises `Terminated` (a KeyboardInterrupt), like Ctrl-C.

    The engine passes it on to the Pulumi CLI when it stops the update (see `Engine.cancel`): SIGTERM
    reached only this process, while a terminal's Ctrl-C reaches the CLI by itself.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_update(
    engine: Engine,
    stack: str,
    *,
    message: str,
    policy: RetryPolicy,
    work_dir: Path | None = None,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], None] = time.sleep,
    refresh: bool = False,
    policy_packs: Sequence[Path] = (),
) -> UpdateRecord:
    """`engine.up` with lock retries (and `policy_packs` run by the engine); Ctrl-C or SIGTERM stops
    our update and raises Interrupted (130).

    `refresh=True` refreshes first (`up --refresh`), so drifted resources are put back: remediation.

    Only an update this call started is ever stopped: an interrupt while waiting for another update's
    lock (the backoff sleep, or an attempt that met the lock) leaves that other update alone.
    """
    running = False

    def attempt() -> UpdateRecord:
        nonlocal running
        running = True
        try:
            record = engine.up(
                stack,
                message=message,
                work_dir=work_dir,
                progress=progress,
                refresh=refresh,
                policy_packs=policy_packs,
            )
        except ConcurrentUpdateError:
            running = False  # the stack was locked by someone else: nothing of ours is running
            raise
        running = False
        return record

    with sigterm_as_interrupt():
        try:
            return with_lock_retry(stack, attempt, policy, sleep=sleep, progress=progress)
        except KeyboardInterrupt:
            if not running:
                raise Interrupted(
                    f"interrupted while waiting for the lock on {stack}; our update never started and "
                    "nothing was changed"
                ) from None
            if progress is not None:
                progress(f"interrupted: stopping the update of {stack} …")
            try:
                engine.cancel(stack, progress=progress)
            except StagelineError as exc:
                raise Interrupted(
                    f"update of {stack} interrupted; stopping it failed: {exc.format_message()}"
                ) from None
            raise Interrupted(
                f"update of {stack} interrupted and cancelled; check `python -m automation history {stack}` "
                "and rerun (with --clear-pending if it reports pending operations)"
            ) from None


def update_message(text: str, commit: str | None, actor: str | None = None) -> str:
    """The message recorded with an update: `text`, tagged with the short commit the program ran from
    and, given `actor`, `by NAME` (Pulumi records no user for an update; `status` reads it from here)."""
    tag = f"@{commit[:7]}" if commit else "@(no git commit)"
    message = f"{text} {tag}" if tag not in text else text
    return with_actor(message, actor)


def with_actor(message: str, actor: str | None) -> str:
    """`message` ending in ` by NAME` (once)."""
    if not actor or message.endswith(f" by {actor}"):
        return message
    return f"{message} by {actor}"


def current_actor(environ: Mapping[str, str] | None = None) -> str | None:
    """Who runs this driver: $GITHUB_ACTOR under GitHub Actions, else the login name; one word."""
    import getpass

    env = os.environ if environ is None else environ
    name = (env.get("GITHUB_ACTOR") or "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):
            return None
    name = re.sub(r"\s+", "-", name)
    return name or None
