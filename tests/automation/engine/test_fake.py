"""The fake engine keeps the protocol's promises, so tests built on it mean something."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from automation.engine.fake import FakeEngine, make_release, urn
from automation.engine.model import (
    ConcurrentUpdateError,
    EngineError,
    ResourceDrift,
    StackNotDeployed,
    StaleLockError,
    UnknownStackError,
)
from automation.engine.protocol import Engine


def test_the_fake_is_an_engine() -> None:
    assert isinstance(FakeEngine(), Engine)


def test_up_records_a_new_version_with_commit_message_and_config_snapshot() -> None:
    fake = FakeEngine({"prod": {"aws:region": "eu-west-1"}}, git_head="c" * 40)
    fake.set_config("prod", "stageline:slackWebhookUrl", "https://hooks.example/secret-path", secret=True)
    fake.add_history("prod", release=make_release("v1"))
    fake.set_release("prod", make_release("v2"))

    record = fake.up("prod", message="up prod @ccccccc")

    assert record.version == 2 and record.succeeded and record.kind == "update"
    assert record.commit == "c" * 40 and record.message == "up prod @ccccccc"
    assert record.release_version == "v2"
    assert record.config["aws:region"] == "eu-west-1"
    assert record.config["stageline:slackWebhookUrl"] == "[secret]"
    assert [r.version for r in fake.history("prod")] == [2, 1]
    assert fake.history("prod", limit=1)[0].version == 2
    assert fake.outputs("prod").get("releaseVersion") == "v2"
    previous_end = fake.history("prod")[1].end
    assert previous_end is not None and fake.history("prod")[0].start >= previous_end  # time moves forward


def test_add_history_of_a_succeeded_update_makes_its_release_current() -> None:
    fake = FakeEngine(("prod",))
    fake.add_history("prod", release=make_release("v1"))
    fake.add_history("prod", result="failed", release=make_release("v2"))
    assert fake.get_release("prod") == make_release("v1")


def test_lock_contention_then_success() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.lock("prod", times=2)
    for _ in range(2):
        with pytest.raises(ConcurrentUpdateError):
            fake.up("prod", message="m")
    assert fake.up("prod", message="m").succeeded
    assert fake.count("up", "prod") == 3
    assert [r.result for r in fake.history("prod")] == ["succeeded"]  # a locked attempt never starts


def test_injected_failure_is_recorded_as_a_failed_update_and_redacted() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.set_config("prod", "stageline:slackWebhookUrl", "hook-secret-value", secret=True)
    fake.fail("prod", "up", "provider said hook-secret-value is wrong")
    with pytest.raises(EngineError, match=r"provider said \[secret\] is wrong"):
        fake.up("prod", message="m")
    assert fake.history("prod")[0].result == "failed"
    assert fake.up("prod", message="m").succeeded  # only once


def test_interrupted_up_is_marked_failed_by_cancel() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.interrupt_up("prod", leave_pending=True)
    with pytest.raises(KeyboardInterrupt):
        fake.up("prod", message="m")
    # A self-managed backend writes the entry when the update ends; until then it holds the lock.
    assert fake.history("prod") == []
    with pytest.raises(ConcurrentUpdateError):
        fake.up("prod", message="again")
    fake.cancel("prod")
    assert [(r.result, r.message) for r in fake.history("prod")] == [("failed", "m")]
    assert [p.kind for p in fake.pending_operations("prod")] == ["creating"]
    assert fake.clear_pending("prod") == 1 and fake.pending_operations("prod") == []
    assert fake.history("prod")[0].kind == "refresh"  # clearing them is a refresh


def test_on_pulumi_cloud_a_running_update_shows_in_progress() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40, backend_url="https://api.pulumi.com")
    fake.interrupt_up("prod")
    with pytest.raises(KeyboardInterrupt):
        fake.up("prod", message="m")
    assert fake.history("prod")[0].result == "in-progress"


def test_only_up_with_refresh_puts_drifted_resources_back() -> None:
    fake = FakeEngine(("dev",), git_head="a" * 40)
    fake.set_drift(
        "dev",
        [
            ResourceDrift(
                urn=urn("dev", "aws:s3/bucket:Bucket", "b"),
                type="aws:s3/bucket:Bucket",
                name="b",
                kind="delete",
            )
        ],
    )
    assert fake.preview_refresh("dev").drifted
    plain = fake.up("dev", message="m")
    assert plain.resource_changes == {"same": 12} and fake.preview_refresh("dev").drifted
    refreshed = fake.up("dev", message="m", refresh=True)
    assert refreshed.resource_changes == {"same": 11, "create": 1}
    assert not fake.preview_refresh("dev").drifted


def test_a_killed_up_leaves_a_stale_lock_and_a_pending_create_and_no_history() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.kill_up("prod")
    with pytest.raises(EngineError, match="killed"):
        fake.up("prod", message="m")
    assert fake.history("prod") == []
    [lock] = fake.locks("prod")
    assert lock.stale
    with pytest.raises(StaleLockError, match="no longer runs"):
        fake.up("prod", message="m")
    with pytest.raises(StaleLockError):
        fake.clear_pending("prod")
    live = fake.add_lock("prod", stale=False)
    assert fake.remove_stale_locks("prod") == [lock] and fake.locks("prod") == [live]
    with pytest.raises(ConcurrentUpdateError):
        fake.up("prod", message="m")


def test_release_in_a_worktree_does_not_touch_the_main_checkout(tmp_path: Path) -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.set_release("prod", make_release("main"))
    fake.set_release("prod", make_release("old"), work_dir=tmp_path)
    assert fake.get_release("prod") == make_release("main")
    assert fake.get_release("prod", work_dir=tmp_path) == make_release("old")


def test_unknown_stack_lists_known_ones() -> None:
    with pytest.raises(UnknownStackError, match="known stacks: dev, prod"):
        FakeEngine(("dev", "prod")).history("qa")


def test_latency_is_spent_outside_the_lock_so_stacks_run_concurrently() -> None:
    fake = FakeEngine([f"s{i}" for i in range(4)], latency=0.2)
    barrier = threading.Barrier(4)

    def check(name: str) -> None:
        barrier.wait()
        fake.preview_refresh(name)

    threads = [threading.Thread(target=check, args=(f"s{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.max_concurrent == 4


def test_explicit_start_times_are_kept() -> None:
    fake = FakeEngine(("prod",))
    start = datetime(2025, 1, 1, tzinfo=UTC)
    record = fake.add_history("prod", start=start, duration=timedelta(minutes=3))
    assert record.start == start and record.end == start + timedelta(minutes=3)


def test_from_repo_reads_the_projects_stack_files() -> None:
    from infra.config import known_stacks, read_stack_file

    root = Path(__file__).resolve().parents[3]
    fake = FakeEngine.from_repo(root)
    assert fake.stack_names() == known_stacks(root)
    for name in fake.stack_names():
        values = read_stack_file(root, name).values
        assert fake.get_release(name) == values.get("release")
        assert fake.stack(name).secret_keys == {
            f"stageline:{k}" for k in read_stack_file(root, name).secret_keys
        }
    assert fake.project_dir == root


def test_a_stack_not_deployed_yet_refuses_reads_until_up_creates_it() -> None:
    fake = FakeEngine(("dev",))
    fake.add_stack("qa", deployed=False)
    for read in (fake.history, fake.preview, fake.preview_refresh, fake.outputs, fake.pending_operations):
        with pytest.raises(StackNotDeployed, match="stack qa is not deployed yet"):
            read("qa")
    assert fake.get_release("qa") is None  # the stack file is there
    fake.up("qa", message="first")
    assert fake.stack("qa").deployed and len(fake.history("qa")) == 1


def test_an_interrupt_before_the_update_started_leaves_nothing_to_cancel() -> None:
    fake = FakeEngine(("prod",), git_head="a" * 40)
    fake.interrupt_up("prod", started=False)
    with pytest.raises(KeyboardInterrupt):
        fake.up("prod", message="m")
    fake.cancel("prod")
    assert fake.history("prod") == []
