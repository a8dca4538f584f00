"""Running an update: lock retries with backoff, cancellation on interrupt, pending operations."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from automation.errors import INTERRUPTED, ConfigurationError, Interrupted
from automation.fake import FakeEngine
from automation.stacks import ConcurrentUpdateError
from automation.updates import (
    PendingOperationsError,
    RetryPolicy,
    check_pending,
    run_update,
    update_message,
    with_lock_retry,
)

ROOT = Path(__file__).resolve().parents[2]


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


def test_sigterm_forwarding_interrupts_the_engine_child_process() -> None:
    # In a separate interpreter, so only its child (a stand-in for the pulumi CLI) is signalled.
    code = (
        "import subprocess, sys\n"
        "from automation.updates import child_pids, interrupt_children\n"
        "import os\n"
        "child = subprocess.Popen(['sleep', '30'])\n"
        "assert child.pid in child_pids(os.getpid())\n"
        "interrupt_children()\n"
        "print(child.wait(timeout=10))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == -signal.SIGINT
