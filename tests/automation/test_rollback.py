"""Rollback: target selection over realistic histories, execution, and the `rollback` command."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from driver_testkit import commit_file, git

from automation.errors import FAILED, USAGE
from automation.fake import FakeEngine, make_release
from automation.rollback import (
    RollbackRefused,
    RollbackTargetInvalid,
    execute_rollback,
    plan_rollback,
    rollback_message,
)
from automation.stacks import UpdateRecord
from automation.updates import PendingOperationsError, RetryPolicy

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)


def rec(
    version: int,
    *,
    kind: str = "update",
    result: str = "succeeded",
    release: str | None = None,
    commit: str | None = None,
    message: str = "",
) -> UpdateRecord:
    config = {"stageline:release": make_release(release)} if release else {}
    env = {"git.head": commit or f"{version:x}" * 40}
    start = T0 + timedelta(hours=version)
    return UpdateRecord(
        version=version,
        kind=kind,
        result=result,
        start=start,
        end=start + timedelta(minutes=2),
        message=message,
        environment=env,
        config=config,
    )


# A history as prod accumulates it: promotions, a failed one, refreshes, a rollback, a preview.
HISTORY = [
    rec(1, release="r1"),
    rec(2, release="r2"),
    rec(3, kind="refresh", release="r2"),
    rec(4, release="r3", result="failed"),
    rec(5, release="r3"),
    rec(6, release="r2", message="rollback to v2 (2222222)"),
    rec(7, release="r4"),
    rec(8, kind="preview", release="r5"),
    rec(9, release="r5", result="failed"),
]


def test_picks_the_newest_succeeded_update_with_another_release() -> None:
    # Current release r5 failed (v9); the previous good release is r4 from v7.
    plan = plan_rollback(HISTORY, make_release("r5"), stack="prod")
    assert plan.target.version == 7 and plan.release == make_release("r4")


def test_skips_updates_with_the_same_release_as_now() -> None:
    # After v7 deployed r4 successfully, rolling back means going before r4: v6, an earlier rollback.
    plan = plan_rollback(HISTORY[:7], make_release("r4"), stack="prod")
    assert plan.target.version == 6 and plan.release == make_release("r2")


def test_skips_failed_updates_refreshes_and_previews() -> None:
    history = [
        rec(1, release="r1"),
        rec(2, release="r2", result="failed"),
        rec(3, kind="refresh", release="r2"),
        rec(4, kind="preview", release="r2"),
        rec(5, kind="destroy", release="r0"),
        rec(6, release="r3"),
    ]
    plan = plan_rollback(history, make_release("r3"), stack="prod")
    assert plan.target.version == 1


def test_history_order_does_not_matter() -> None:
    plan = plan_rollback(list(reversed(HISTORY)), make_release("r5"), stack="prod")
    assert plan.target.version == 7


def test_refuses_when_there_is_no_earlier_good_release() -> None:
    history = [rec(1, release="r1"), rec(2, release="r2", result="failed"), rec(3, kind="refresh")]
    with pytest.raises(
        RollbackRefused,
        match="no earlier succeeded update with a release other than the "
        r"current one \(r1\)",
    ) as info:
        plan_rollback(history, make_release("r1"), stack="prod")
    assert info.value.exit_code == FAILED
    with pytest.raises(RollbackRefused):
        plan_rollback([], None, stack="prod")


def test_to_version_must_be_a_succeeded_update() -> None:
    assert plan_rollback(HISTORY, make_release("r5"), stack="prod", to_version=2).release == make_release(
        "r2"
    )
    with pytest.raises(
        RollbackTargetInvalid,
        match=r"v4 of prod is a failed update, not a succeeded update "
        r"\(succeeded updates: v7, v6, v5, v2, v1\)",
    ) as info:
        plan_rollback(HISTORY, make_release("r5"), stack="prod", to_version=4)
    assert info.value.exit_code == USAGE
    with pytest.raises(RollbackTargetInvalid, match="v3 of prod is a succeeded refresh"):
        plan_rollback(HISTORY, None, stack="prod", to_version=3)
    with pytest.raises(RollbackTargetInvalid, match="prod has no v42 in its history"):
        plan_rollback(HISTORY, None, stack="prod", to_version=42)
    with pytest.raises(RollbackTargetInvalid, match="recorded no stageline:release"):
        plan_rollback([rec(1)], None, stack="prod", to_version=1)


def test_code_needs_a_commit_that_exists_in_the_repository() -> None:
    plan = plan_rollback(HISTORY, make_release("r5"), stack="prod", code=True, commit_exists=lambda sha: True)
    assert plan.code and plan.commit == "7" * 40
    with pytest.raises(RollbackRefused, match=r"commit 7777777 of v7 is not in this repository; fetch it "):
        plan_rollback(HISTORY, make_release("r5"), stack="prod", code=True, commit_exists=lambda sha: False)
    no_commit = UpdateRecord(
        version=1,
        kind="update",
        result="succeeded",
        start=T0,
        config={"stageline:release": make_release("r1")},
    )
    with pytest.raises(RollbackRefused, match="recorded no git commit"):
        plan_rollback([no_commit, rec(2, release="r2")], make_release("r2"), stack="prod", code=True)


def test_rollback_message_names_version_and_short_commit() -> None:
    assert rollback_message(rec(7, commit="4f9c2d1" + "0" * 33)) == "rollback to v7 (4f9c2d1)"


def test_decision_over_a_long_history_looks_at_the_newest_entries() -> None:
    history = [rec(i, release=f"r{i}") for i in range(1, 501)]
    assert plan_rollback(history, make_release("r500"), stack="prod").target.version == 499


# --- execution ------------------------------------------------------------------------------------


def seeded(**kwargs: object) -> FakeEngine:
    fake = FakeEngine(("prod",), git_head="e" * 40, **kwargs)  # type: ignore[arg-type]
    fake.add_history("prod", release=make_release("r1"), commit="1" * 40)
    fake.add_history("prod", release=make_release("r2"), commit="2" * 40)
    return fake


def test_dry_run_changes_nothing() -> None:
    fake = seeded()
    plan = plan_rollback(fake.history("prod"), fake.get_release("prod"), stack="prod")
    calls = len(fake.calls)
    result = execute_rollback(fake, plan, policy=RetryPolicy(1), dry_run=True)
    assert result.record is None and result.dry_run
    assert len(fake.calls) == calls


def test_rollback_restores_the_release_and_updates_with_the_message() -> None:
    fake = seeded()
    plan = plan_rollback(fake.history("prod"), fake.get_release("prod"), stack="prod")
    result = execute_rollback(fake, plan, policy=RetryPolicy(1))
    assert fake.ops("prod")[-3:] == ["pending_operations", "set_release", "up"]
    assert result.record is not None and result.record.succeeded
    assert result.record.message == "rollback to v1 (1111111)"
    assert result.record.release == make_release("r1")
    assert fake.get_release("prod") == make_release("r1")


def test_rollback_refuses_pending_operations_unless_cleared() -> None:
    fake = seeded()
    fake.add_pending("prod", "aws:lambda/function:Function", "prod-api")
    plan = plan_rollback(fake.history("prod"), fake.get_release("prod"), stack="prod")
    with pytest.raises(PendingOperationsError):
        execute_rollback(fake, plan, policy=RetryPolicy(1))
    assert fake.count("up") == 0 and fake.get_release("prod") == make_release("r2")
    execute_rollback(fake, plan, policy=RetryPolicy(1), clear_pending=True)
    assert fake.count("up") == 1


def test_rollback_with_code_runs_from_a_worktree_at_the_commit_and_removes_it(repo: Path) -> None:
    old = commit_file(repo, "infra.txt", "program v1\n")
    commit_file(repo, "infra.txt", "program v2\n")
    fake = FakeEngine(("prod",), project_dir=repo)
    fake.add_history("prod", release=make_release("r1"), commit=old)
    fake.add_history("prod", release=make_release("r2"), commit=git(repo, "rev-parse", "HEAD"))
    seen: dict[str, str] = {}

    def look(stack: str, config: object) -> dict[str, str]:
        [up_call] = [c for c in fake.calls if c.op == "up"]
        work_dir = Path(str(up_call.args["work_dir"]))
        seen["program"] = (work_dir / "infra.txt").read_text()
        seen["work_dir"] = str(work_dir)
        return {}

    fake.on_up = look
    plan = plan_rollback(
        fake.history("prod"),
        fake.get_release("prod"),
        stack="prod",
        code=True,
        commit_exists=lambda sha: True,
    )
    result = execute_rollback(fake, plan, policy=RetryPolicy(1))

    assert seen["program"] == "program v1\n"  # the program as it was at v1's commit
    assert result.record is not None and result.record.commit == old  # Pulumi records the worktree's HEAD
    assert result.record.message == f"rollback to v1 ({old[:7]})"
    assert not Path(seen["work_dir"]).exists()
    assert "infra.txt" in git(repo, "ls-files") and git(repo, "worktree", "list").count("\n") == 0
    assert fake.get_release("prod") == make_release("r1")


# --- the command ----------------------------------------------------------------------------------


@pytest.fixture
def prod(cli_engine: Callable[[FakeEngine], FakeEngine], repo: Path) -> FakeEngine:
    fake = FakeEngine(("staging", "prod"), project_dir=repo)
    fake.add_history("prod", release=make_release("r1"), commit="1" * 40)
    fake.add_history("prod", release=make_release("r2"), commit="2" * 40)
    fake.add_history("prod", kind="refresh", commit="2" * 40)
    fake.add_history("prod", release=make_release("r3"), commit="3" * 40, result="failed", set_current=True)
    return cli_engine(fake)


def test_rollback_dry_run_prints_the_plan_and_changes_nothing(
    prod: FakeEngine, invoke: Callable[..., Result]
) -> None:
    result = invoke(["rollback", "prod", "--dry-run"])
    assert result.exit_code == 0
    assert result.stdout.startswith("dry run: would roll back prod to v2 (")
    assert "release r3 -> r2" in result.stdout and "'rollback to v2 (2222222)'" in result.stdout
    assert prod.count("up") == 0 and prod.count("set_release") == 0


def test_rollback_asks_for_confirmation(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    declined = invoke(["rollback", "prod"], input="n\n")
    assert declined.exit_code == 1 and prod.count("up") == 0
    accepted = invoke(["rollback", "prod"], input="y\n")
    assert accepted.exit_code == 0
    assert "Roll back prod to v2?" in accepted.stderr
    assert accepted.stdout.strip() == "prod: rolled back to v2 by update v5 (rollback to v2 (2222222))"


def test_rollback_json(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["rollback", "prod", "--to-version", "1", "--yes", "--json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["dryRun"] is False
    assert document["plan"]["targetVersion"] == 1 and document["plan"]["release"] == make_release("r1")
    assert document["plan"]["currentRelease"] == make_release("r3")
    assert document["update"]["message"] == "rollback to v1 (1111111)"
    assert document["update"]["release"]["version"] == "r1"


def test_rollback_to_a_failed_version_exits_2(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["rollback", "prod", "--to-version", "4", "--yes"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: v4 of prod is a failed update, not a succeeded update (succeeded updates: v2, v1)"
    )
    assert prod.count("up") == 0


def test_rollback_code_with_a_commit_missing_from_the_repository_exits_1(
    prod: FakeEngine, invoke: Callable[..., Result]
) -> None:
    result = invoke(["rollback", "prod", "--code", "--yes"])
    assert result.exit_code == 1
    assert "commit 2222222 of v2 is not in this repository" in result.stderr
    assert prod.count("up") == 0 and prod.count("set_release") == 0


def test_rollback_with_nothing_to_go_back_to_exits_1(
    cli_engine: Callable[[FakeEngine], FakeEngine], invoke: Callable[..., Result], repo: Path
) -> None:
    fake = cli_engine(FakeEngine(("prod",), project_dir=repo))
    fake.add_history("prod", release=make_release("r1"))
    result = invoke(["rollback", "prod", "--yes"])
    assert result.exit_code == 1
    assert "nothing to roll back to" in result.stderr


def test_rollback_of_an_unknown_stack_exits_2(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["rollback", "qa"])
    assert result.exit_code == 2
    assert "error: unknown stack 'qa' (known stacks: prod, staging)" in result.stderr


def test_rollback_reports_pending_operations_with_the_fix(
    prod: FakeEngine, invoke: Callable[..., Result]
) -> None:
    prod.add_pending("prod", "aws:lambda/function:Function", "prod-api", "updating")
    result = invoke(["rollback", "prod", "--yes"])
    assert result.exit_code == 1
    assert "updating aws:lambda/function:Function prod-api" in result.stderr
    assert "--clear-pending" in result.stderr
    assert invoke(["rollback", "prod", "--yes", "--clear-pending"]).exit_code == 0
