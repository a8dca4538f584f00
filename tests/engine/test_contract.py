"""The `Engine` protocol's contract, run against `FakeEngine` and against `LocalEngine` over the real CLI.

Each scenario is written once, against a harness that hides only how trouble is made (drift, a slow
or killed update, an interrupt): with the fake through its setup helpers and fault injection, with
the real engine through the stand-in cloud and real signals (tests/engine/enginekit.py). So the fake
can never pass where the real engine fails; where they disagreed, the fake was changed.

The `local` variants are marked `engine` and need the Pulumi CLI on PATH; the `fake` ones always run.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from automation.engine.fake import FakeEngine, urn
from automation.engine.model import (
    RELEASE_KEY,
    ConcurrentUpdateError,
    EngineError,
    PropertyDrift,
    ResourceDrift,
    StackNotDeployed,
    StaleLockError,
    Terminated,
    UpdateRecord,
)
from automation.engine.protocol import Engine
from automation.errors import Interrupted
from automation.operate.updates import RetryPolicy, run_update
from tests.engine.enginekit import LOG_GROUP, Project, git, make_project, release

STACK = "dev"
# The SDK warns about the event log a killed CLI left unfinished.
pytestmark = pytest.mark.filterwarnings("ignore:Error in event stream:UserWarning")


class Harness:
    """One engine and the means to make trouble for it."""

    engine: Engine
    root: Path

    def other(self) -> Engine:
        """The engine as another driver process would see the same stack."""
        raise NotImplementedError

    def deploy(self, version: str, message: str | None = None, *, refresh: bool = False) -> UpdateRecord:
        self.engine.set_release(STACK, release(version))
        return self.engine.up(STACK, message=message or f"deploy {version}", refresh=refresh)

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD")

    def drift(self) -> None:
        """Someone changes the log group's retention in the console."""
        raise NotImplementedError

    def slow_next_update(self, seconds: float) -> None:
        raise NotImplementedError

    def wait_until_updating(self) -> None:
        raise NotImplementedError

    def killed_update(self) -> BaseException | None:
        raise NotImplementedError

    def interrupt_next_update(self) -> None:
        """SIGTERM reaches the driver once the next update is under way (a CI job cancelled)."""
        raise NotImplementedError


@dataclass
class FakeHarness(Harness):
    root: Path
    fake: FakeEngine = field(init=False)

    def __post_init__(self) -> None:
        self.fake = FakeEngine({STACK: {RELEASE_KEY: release("r0")}}, project_dir=self.root)
        self.fake.stack(STACK).resources = 2
        self.fake.add_stack("fresh", deployed=False)
        self.engine = self.fake

    def other(self) -> Engine:
        return self.fake

    def drift(self) -> None:
        self.fake.set_drift(
            STACK,
            [
                ResourceDrift(
                    urn=urn(STACK, LOG_GROUP, "logs"),
                    type=LOG_GROUP,
                    name="logs",
                    properties=(PropertyDrift("retentionInDays", "update", 7, 30),),
                )
            ],
        )

    def slow_next_update(self, seconds: float) -> None:
        self.fake.set_latency({"up": min(seconds, 2.0)})  # reads of the fake take no time

    def wait_until_updating(self) -> None:
        _wait(lambda: self.fake.is_running(STACK), "the update to start")
        self.fake.set_latency(0.0)  # only that one update is slow

    def killed_update(self) -> BaseException | None:
        self.fake.kill_up(STACK)
        try:
            self.deploy("killed", "killed mid-update")
        except EngineError as exc:
            return exc
        return None

    def interrupt_next_update(self) -> None:
        self.fake.interrupt_up(STACK, Terminated)


@dataclass
class LocalHarness(Harness):
    project: Project

    def __post_init__(self) -> None:
        self.root = self.project.root
        self.engine = self.project.engine
        (self.root / "Pulumi.fresh.yaml").write_text("config:\n  aws:region: eu-west-1\n")
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", "a second stack")

    def other(self) -> Engine:
        return self.project.fresh_engine()

    def drift(self) -> None:
        self.project.cloud.set_property(f"enginetest-{STACK}-logs", "retentionInDays", 30)

    def slow_next_update(self, seconds: float) -> None:
        self.project.cloud.slow(f"enginetest-{STACK}-logs", "update", seconds, times=1)

    def wait_until_updating(self) -> None:
        _wait(lambda: not self.project.cloud.faults(), "the slow update to start")  # consumed on start

    def killed_update(self) -> BaseException | None:
        error = self.project.killed_update()
        self.engine = self.project.engine
        return error

    def interrupt_next_update(self) -> None:
        self.slow_next_update(3.0)

        def terminate() -> None:
            self.wait_until_updating()
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=terminate, daemon=True).start()


def _wait(condition: Any, what: str, timeout: float = 90.0) -> None:
    from tests.engine.enginekit import wait_for

    wait_for(condition, timeout, what)


def _git_repo(root: Path) -> Path:
    root.mkdir()
    (root / "Pulumi.yaml").write_text("name: enginetest\nruntime: python\n")
    for name in ("dev", "fresh"):
        (root / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture(params=["fake", pytest.param("local", marks=pytest.mark.engine)])
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    monkeypatch.setenv("STAGELINE_LOCK_BACKOFF", "0")
    if request.param == "fake":
        yield FakeHarness(root=_git_repo(tmp_path / "repo"))
        return
    request.getfixturevalue("engine_env")  # skips without a CLI
    yield LocalHarness(project=make_project(tmp_path, resources=True, version="r0"))


# --- history and what `up` returns -----------------------------------------------------------------


def test_history_is_newest_first_numbered_from_one_and_up_returns_its_entry(harness: Harness) -> None:
    engine = harness.engine
    records = [harness.deploy(v, f"deploy {v}") for v in ("r1", "r2", "r3")]
    assert [r.version for r in records] == [1, 2, 3]
    for record, version in zip(records, ("r1", "r2", "r3"), strict=True):
        assert (record.kind, record.result, record.message) == ("update", "succeeded", f"deploy {version}")
        assert record.release_version == version
        assert record.commit == harness.head()
        assert record.end is not None and record.end >= record.start
    history = harness.other().history(STACK)
    assert [r.version for r in history] == [3, 2, 1]
    shown = [(r.version, r.kind, r.result, r.message, r.release_version, r.commit) for r in history]
    made = [(r.version, r.kind, r.result, r.message, r.release_version, r.commit) for r in reversed(records)]
    assert shown == made
    assert [r.version for r in engine.history(STACK, limit=2)] == [3, 2]


def test_a_stack_not_deployed_is_never_created_by_a_read(harness: Harness) -> None:
    engine = harness.engine
    for read in (engine.history, engine.preview_refresh, engine.outputs, engine.pending_operations):
        with pytest.raises(StackNotDeployed):
            read("fresh")
    assert engine.locks("fresh") == []
    engine.cancel("fresh")  # nothing of ours is running: nothing to do, no error


# --- drift -------------------------------------------------------------------------------------------


def test_drift_stays_after_a_plain_up_and_is_put_back_by_up_with_refresh(harness: Harness) -> None:
    engine = harness.engine
    harness.deploy("r1")
    harness.drift()
    [drifted] = engine.preview_refresh(STACK).resources
    assert drifted.name == "logs" and [p.path for p in drifted.properties] == ["retentionInDays"]
    assert [(p.old, p.new) for p in drifted.properties] == [(7, 30)]

    plain = engine.up(STACK, message="plain up")
    assert plain.succeeded and "update" not in plain.resource_changes
    assert engine.preview_refresh(STACK).drifted  # an up compares the program with the state

    refreshed = engine.up(STACK, message="up --refresh", refresh=True)
    assert refreshed.succeeded and refreshed.resource_changes.get("update") == 1
    assert not harness.other().preview_refresh(STACK).drifted


# --- a killed update: pending operations and its stale lock -----------------------------------------


def test_a_killed_update_leaves_pending_operations_and_a_stale_lock(harness: Harness) -> None:
    harness.deploy("r1")
    error = harness.killed_update()
    assert isinstance(error, EngineError) and "killed" in str(error)
    engine = harness.engine
    assert [r.version for r in engine.history(STACK)] == [1]  # the killed update wrote no entry
    assert [p.kind for p in engine.pending_operations(STACK)] == ["creating"]
    [lock] = engine.locks(STACK)
    assert lock.stale and lock.pid is not None

    with pytest.raises(StaleLockError, match="no longer runs"):
        engine.up(STACK, message="blocked")
    with pytest.raises(StaleLockError):
        engine.clear_pending(STACK)  # clearing is an update too: it needs the lock

    assert engine.remove_stale_locks(STACK) == [lock] and engine.locks(STACK) == []
    assert engine.clear_pending(STACK) == 1
    assert engine.pending_operations(STACK) == []
    newest = engine.history(STACK)[0]
    assert (newest.version, newest.kind, newest.result) == (2, "refresh", "succeeded")
    assert engine.clear_pending(STACK) == 0
    assert engine.up(STACK, message="after").version == 3


# --- locks: reads during an update, a second update -------------------------------------------------


def test_reads_go_on_during_another_update_and_a_second_update_is_refused(harness: Harness) -> None:
    harness.deploy("r1")
    harness.slow_next_update(25.0)
    box: dict[str, Any] = {}

    def update() -> None:
        try:
            box["record"] = harness.deploy("r2", "the long one")
        except BaseException as exc:  # reported below
            box["error"] = exc

    thread = threading.Thread(target=update, daemon=True)
    thread.start()
    harness.wait_until_updating()

    other = harness.other()
    with pytest.raises(ConcurrentUpdateError, match="locked by another update"):
        other.up(STACK, message="second")
    with pytest.raises(ConcurrentUpdateError):
        run_update(other, STACK, message="second", policy=RetryPolicy(tries=2, base_delay=0))
    [lock] = other.locks(STACK)
    assert not lock.stale  # its process runs
    assert other.remove_stale_locks(STACK) == [] and len(other.locks(STACK)) == 1
    assert [r.version for r in other.history(STACK)] == [1]  # the running update has no entry yet
    assert other.outputs(STACK).get("releaseVersion") == "r1"
    # The operation in flight is pending in the state until it ends (what a killed CLI leaves behind).
    assert [p.kind for p in other.pending_operations(STACK)] == ["updating"]
    assert not other.preview_refresh(STACK).drifted
    assert thread.is_alive()  # all of that while the update ran

    thread.join(120)
    assert "error" not in box, box.get("error")
    assert box["record"].version == 2 and box["record"].succeeded
    assert [r.message for r in other.history(STACK)] == ["the long one", "deploy r1"]
    assert other.locks(STACK) == []


# --- an interrupted update -----------------------------------------------------------------------------


def test_an_interrupted_update_is_stopped_cleanly_and_recorded_failed(harness: Harness) -> None:
    harness.deploy("r1")
    harness.engine.set_release(STACK, release("r2"))
    harness.interrupt_next_update()
    with pytest.raises(Interrupted, match="interrupted and cancelled"):
        run_update(harness.engine, STACK, message="to be stopped", policy=RetryPolicy(tries=1))
    other = harness.other()
    newest = other.history(STACK)[0]
    # Pulumi records a stopped update as failed (it has no "cancelled" result), message unchanged.
    assert (newest.version, newest.message, newest.result) == (2, "to be stopped", "failed")
    assert other.pending_operations(STACK) == []  # a clean stop lets in-flight operations finish
    assert other.locks(STACK) == []
    assert harness.engine.up(STACK, message="again").version == 3
