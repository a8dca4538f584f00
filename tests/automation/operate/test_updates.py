"""Running an update: lock retries with backoff, cancellation on interrupt, pending operations."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from automation.engine.fake import FakeEngine
from automation.engine.model import ConcurrentUpdateError, Terminated
from automation.errors import INTERRUPTED, ConfigurationError, Interrupted
from automation.operate.updates import (
    PendingOperationsError,
    RetryPolicy,
    check_pending,
    run_update,
    update_message,
    with_lock_retry,
)

ROOT = Path(__file__).resolve().parents[3]


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(tries=6, base_delay=2.0, max_delay=10.0)
    assert [policy.delay(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_base_comes_from_the_environment() -> None:
    assert RetryPolicy.from_env(tries=3, environ={"STAGELINE_LOCK_BACKOFF": "0.5"}) == RetryPolicy(3, 0.5)
    assert RetryPolicy.from_env(environ={}) == RetryPolicy()
    with pytest.raises(ConfigurationError, match="STAGELINE_LOCK_BACKOFF must be a number"):
        RetryPolicy.from_env(environ={"STAGELINE_LOCK_BACKOFF": "soon"})


def test_contention_is_retried_with_backoff_until_the_lock_is_free() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.lock("prod", times=3)
    slept: list[float] = []
    messages: list[str] = []
    record = run_update(
        fake,
        "prod",
        message="m",
        policy=RetryPolicy(tries=5, base_delay=1.0),
        sleep=slept.append,
        progress=messages.append,
    )
    assert record.succeeded
    assert slept == [1.0, 2.0, 4.0]
    assert fake.count("up", "prod") == 4
    assert "retrying in 1s (attempt 2 of 5)" in messages[0]


def test_contention_beyond_the_limit_fails_with_advice() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.lock("prod", times=10)
    slept: list[float] = []
    with pytest.raises(
        ConcurrentUpdateError, match=r"prod is still locked by another update after 3 attempts \(3s\)"
    ):
        with_lock_retry(
            "prod",
            lambda: fake.up("prod", message="m"),
            RetryPolicy(tries=3, base_delay=1.0),
            sleep=slept.append,
        )
    assert fake.count("up", "prod") == 3 and slept == [1.0, 2.0]
    assert fake.history("prod") == []


def test_interrupt_during_an_update_cancels_it_and_exits_130() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.interrupt_up("prod")
    with pytest.raises(Interrupted, match="interrupted and cancelled") as info:
        run_update(fake, "prod", message="m", policy=RetryPolicy(tries=1))
    assert info.value.exit_code == INTERRUPTED
    assert fake.ops("prod") == ["up", "cancel"]
    assert fake.history("prod")[0].result == "failed"


def test_pending_operations_block_until_cleared() -> None:
    fake = FakeEngine(("prod",))
    fake.add_pending("prod", "aws:lambda/function:Function", "prod-api", "creating")
    with pytest.raises(
        PendingOperationsError,
        match=r"1 pending operation\(s\).*creating aws:lambda/function:Function "
        r"prod-api.*--clear-pending",
    ):
        check_pending(fake, "prod", clear=False)
    assert fake.count("clear_pending") == 0
    cleared = check_pending(fake, "prod", clear=True)
    assert [p.name for p in cleared] == ["prod-api"]
    assert fake.pending_operations("prod") == []
    assert check_pending(fake, "prod", clear=False) == []


def test_update_message_carries_the_short_commit() -> None:
    assert update_message("up prod", "4f9c2d1e" + "0" * 32) == "up prod @4f9c2d1"
    assert update_message("up prod", None) == "up prod @(no git commit)"


def test_the_pulumi_child_process_is_found_and_interrupted() -> None:
    # In a separate interpreter, so only its children (stand-ins for the pulumi CLI) are signalled.
    code = (
        "import os, pathlib, signal, subprocess, sys, tempfile\n"
        "from automation.engine.process import child_pids, is_pulumi_process, signal_processes\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        "(d / 'pulumi').write_text('import time\\ntime.sleep(30)\\n')\n"
        "other = subprocess.Popen(['sleep', '30'])\n"
        "child = subprocess.Popen([sys.executable, str(d / 'pulumi')])\n"
        "import time; time.sleep(0.2)\n"
        "mine = [p for p in child_pids(os.getpid()) if is_pulumi_process(p)]\n"
        "assert mine == [child.pid], (mine, child.pid)\n"
        "signal_processes(mine, signal.SIGINT)\n"
        "print(child.wait(timeout=10))\n"
        "other.kill()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        # A job a non-interactive shell started in the background inherits SIGINT ignored, and so
        # would the pretend CLI: give it the default disposition, as a terminal's processes have.
        preexec_fn=interruptible,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) in (-signal.SIGINT, 130)


def interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupt_while_waiting_for_another_updates_lock_cancels_nothing() -> None:
    # Someone else's update holds the lock; Ctrl-C during our backoff must not touch their update.
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.lock("prod", times=1)

    def interrupted_sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="interrupted while waiting for the lock on prod") as info:
        run_update(fake, "prod", message="m", policy=RetryPolicy(tries=3), sleep=interrupted_sleep)
    assert info.value.exit_code == INTERRUPTED
    assert "nothing was changed" in info.value.format_message()
    assert fake.ops("prod") == ["up"] and fake.count("cancel") == 0
    assert fake.history("prod") == []


def test_sigterm_during_the_backoff_cancels_nothing_either() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.lock("prod", times=1)

    def terminated_sleep(seconds: float) -> None:
        raise Terminated

    with pytest.raises(Interrupted, match="never started"):
        run_update(fake, "prod", message="m", policy=RetryPolicy(tries=3), sleep=terminated_sleep)
    assert fake.count("cancel") == 0


def test_an_interrupt_after_our_update_started_stops_only_ours() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.lock("prod", times=1)  # first attempt meets someone else's lock, the second one runs
    fake.interrupt_up("prod")
    with pytest.raises(Interrupted, match="interrupted and cancelled"):
        run_update(fake, "prod", message="m", policy=RetryPolicy(tries=3), sleep=lambda s: None)
    assert fake.ops("prod") == ["up", "up", "cancel"]
    assert [r.result for r in fake.history("prod")] == ["failed"]


def test_sigterm_is_an_interrupt_the_engine_must_pass_on() -> None:
    assert issubclass(Terminated, KeyboardInterrupt)


def test_a_stale_lock_is_reported_and_only_it_is_removed_by_clear() -> None:
    fake = FakeEngine(("prod",))
    stale = fake.add_lock("prod", stale=True)
    with pytest.raises(
        PendingOperationsError, match=r"prod is locked by a Pulumi process that no longer"
    ) as refused:
        check_pending(fake, "prod", clear=False)
    assert stale.describe() in str(refused.value) and str(refused.value).endswith(
        "Rerun with --clear-pending"
    )
    assert fake.locks("prod") == [stale]  # reporting removes nothing

    said: list[str] = []
    live = fake.add_lock("prod", stale=False)
    fake.add_pending("prod", "aws:lambda/function:Function", "prod-api", "creating")
    with pytest.raises(ConcurrentUpdateError):  # the live lock stays, and clearing needs the lock
        check_pending(fake, "prod", clear=True, progress=said.append)
    assert fake.locks("prod") == [live]
    assert said == [f"prod: removed the stale lock {stale.describe()}"]
