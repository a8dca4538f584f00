"""Rollback: target selection over realistic histories, execution, and the `rollback` command."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from driver_testkit import commit_file, git

from automation.engine.fake import FakeEngine, make_release, step, urn
from automation.engine.model import EngineError, UpdateRecord
from automation.errors import FAILED, INTERRUPTED, USAGE, Interrupted
from automation.operate.rollback import (
    RollbackRefused,
    RollbackTargetInvalid,
    execute_rollback,
    lineage,
    plan_rollback,
    rollback_message,
    rolled_back,
    running_canary,
    same_release,
)
from automation.operate.updates import PendingOperationsError, RetryPolicy

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
        r"current one \(r1\) that was not itself rolled back",
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


def test_a_second_rollback_goes_below_the_first_instead_of_bringing_back_the_bad_release() -> None:
    history = [
        rec(1, release="r1"),
        rec(2, release="r2"),
        rec(3, release="r3", result="failed"),
        rec(4, kind="refresh", release="r2"),
        rec(5, release="r3"),
        rec(6, release="r2", message="rollback to v2 (2222222)"),
    ]
    # Now on r2 again; r3 (v5) was rolled away from, so it is never a target.
    plan = plan_rollback(history, make_release("r2"), stack="prod")
    assert plan.target.version == 1 and plan.release == make_release("r1")
    assert rolled_back(history) == {5}


def test_after_rolling_back_several_releases_at_once_none_of_them_comes_back() -> None:
    history = [
        rec(1, release="r1"),
        rec(2, release="r2"),
        rec(3, release="r3"),
        rec(4, release="r1", message="rollback to v1 (1111111)"),
    ]
    with pytest.raises(RollbackRefused, match="that was not itself rolled back; nothing to roll back to"):
        plan_rollback(history, make_release("r1"), stack="prod")
    assert rolled_back(history) == {2, 3}
    # A new release on top: rolling it back goes to the rollback v4 (r1), never to r2 or r3.
    plan = plan_rollback([*history, rec(5, release="r4")], make_release("r4"), stack="prod")
    assert plan.target.version == 4 and plan.release == make_release("r1")


def test_rolling_forward_again_with_to_version_restores_that_lineage() -> None:
    history = [
        rec(1, release="r1"),
        rec(2, release="r2"),
        rec(3, release="r3"),
        rec(4, release="r1", message="rollback to v1 (1111111)"),
        rec(5, release="r3", message="rollback to v3 (3333333)"),  # --to-version 3: r3 was fine after all
    ]
    assert [r.version for r in lineage(history)] == [1, 2, 3, 5]
    assert plan_rollback(history, make_release("r3"), stack="prod").target.version == 2


def test_a_failed_rollback_does_not_count_so_retrying_picks_the_same_target() -> None:
    history = [
        rec(1, release="r1"),
        rec(2, release="r2"),
        rec(3, release="r3"),
        rec(4, release="r2", result="failed", message="rollback to v2 (2222222)"),
    ]
    assert plan_rollback(history, make_release("r3"), stack="prod").target.version == 2


def test_the_canary_phase_of_the_current_release_is_not_another_release() -> None:
    r2 = make_release("r2")
    history = [
        rec(1, release="r1"),
        UpdateRecord(
            version=2,
            kind="update",
            result="succeeded",
            start=T0,
            environment={"git.head": "2" * 40},
            config={"stageline:release": {**r2, "canary": {"weight": 0.1, "stableVersions": {"api": "r1"}}}},
        ),
        UpdateRecord(
            version=3,
            kind="update",
            result="succeeded",
            start=T0,
            environment={"git.head": "2" * 40},
            config={"stageline:release": {"images": r2["images"], "version": "r2", "candidate": "r2"}},
        ),
    ]
    plan = plan_rollback(history, r2, stack="prod")
    assert plan.target.version == 1 and plan.release == make_release("r1")
    assert "canary" not in plan.release
    # Interrupted mid-canary: the stack file holds r2 with a canary; still r2, so back to r1.
    canary_now = {**r2, "canary": {"weight": 0.1}}
    assert plan_rollback(history, canary_now, stack="prod").target.version == 1
    with pytest.raises(RollbackTargetInvalid, match="v2 of prod ran release r2 as a canary") as info:
        plan_rollback(history, make_release("r1"), stack="prod", to_version=2)
    assert info.value.exit_code == USAGE


def test_releases_are_the_same_release_when_version_and_images_match() -> None:
    a = {"version": "r2", "images": {"api": "sha256:" + "a" * 64, "web": "sha256:" + "b" * 64}}
    b = {"images": {"web": "sha256:" + "b" * 64, "api": "sha256:" + "a" * 64}, "version": "r2"}
    assert same_release(a, {**b, "candidate": "r3", "canary": {"weight": 0.5}})
    assert not same_release(a, {**b, "images": {"api": "sha256:" + "c" * 64}})
    assert not same_release(a, None)


def test_not_after_version_limits_the_choice_to_what_stood_before() -> None:
    history = [rec(1, release="r1"), rec(2, release="r2"), rec(3, release="r3"), rec(4, release="r4")]
    plan = plan_rollback(history, make_release("r4"), stack="prod", not_after_version=2)
    assert plan.target.version == 2


def test_code_warns_when_the_target_ran_uncommitted_changes() -> None:
    dirty = UpdateRecord(
        version=1,
        kind="update",
        result="succeeded",
        start=T0,
        environment={"git.head": "1" * 40, "git.dirty": "true"},
        config={"stageline:release": make_release("r1")},
    )
    history = [dirty, rec(2, release="r2")]
    plan = plan_rollback(history, make_release("r2"), stack="prod", code=True)
    assert plan.warnings == (
        "v1 ran from a checkout with uncommitted changes (git.dirty): the program at commit 1111111 "
        "may not be the program that ran",
    )
    assert plan_rollback(history, make_release("r2"), stack="prod").warnings == ()


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
    assert fake.ops("prod")[-5:] == ["pending_operations", "locks", "get_release", "set_release", "up"]
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


def test_a_failed_rollback_puts_the_stack_file_back_and_says_so(repo: Path) -> None:
    stack_file = repo / "Pulumi.prod.yaml"
    original = b"# prod: promoted by CI\nconfig:\n  stageline:release:\n    version: r2\n"
    stack_file.write_bytes(original)

    class FileWritingFake(FakeEngine):
        def set_release(
            self, stack: str, release: Mapping[str, Any], *, work_dir: Path | None = None
        ) -> None:
            super().set_release(stack, release, work_dir=work_dir)
            if work_dir is None:
                stack_file.write_text(f"config:\n  stageline:release: {json.dumps(dict(release))}\n")

    fake = FileWritingFake(("prod",), project_dir=repo, git_head="e" * 40)
    fake.add_history("prod", release=make_release("r1"), commit="1" * 40)
    fake.add_history("prod", release=make_release("r2"), commit="2" * 40)
    fake.fail("prod", "up", "creating Lambda Function: AccessDenied")
    plan = plan_rollback(fake.history("prod"), fake.get_release("prod"), stack="prod")
    with pytest.raises(EngineError) as info:
        execute_rollback(fake, plan, policy=RetryPolicy(1))
    assert info.value.format_message() == (
        "creating Lambda Function: AccessDenied; "
        "Pulumi.prod.yaml is back to release r2, as before the rollback"
    )
    assert stack_file.read_bytes() == original


def test_an_interrupted_rollback_restores_the_release_too() -> None:
    fake = seeded()
    fake.interrupt_up("prod")
    plan = plan_rollback(fake.history("prod"), fake.get_release("prod"), stack="prod")
    with pytest.raises(Interrupted, match="back to release r2, as before the rollback") as info:
        execute_rollback(fake, plan, policy=RetryPolicy(1))
    assert info.value.exit_code == INTERRUPTED
    assert fake.get_release("prod") == make_release("r2")


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
    assert document["update"]["message"] == "rollback to v1 (1111111) by ci-bot"
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


def test_a_rollback_invalidates_the_frontend_cache_so_the_switch_shows_at_once(
    prod: FakeEngine, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    import automation.operate.frontend_cache

    seen: list[dict[str, Any]] = []

    def invalidate(outputs: Mapping[str, Any], *, warn: Callable[[str], None] | None = None) -> list[str]:
        seen.append(dict(outputs))
        return ["I2J0I21PCUYOIK"]

    monkeypatch.setattr(automation.operate.frontend_cache, "invalidate_frontend", invalidate)
    prod.set_outputs("prod", {"appDistributionId": "E1ABCDEF"})
    assert invoke(["rollback", "prod", "--dry-run"]).exit_code == 0
    assert seen == []  # a dry run changes nothing, caches included
    result = invoke(["rollback", "prod", "--yes", "--json"])
    assert result.exit_code == 0
    assert seen[0]["appDistributionId"] == "E1ABCDEF" and seen[0]["releaseVersion"] == "r2"
    assert json.loads(result.stdout)["invalidations"] == ["I2J0I21PCUYOIK"]
    assert "prod: invalidated the frontend cache (I2J0I21PCUYOIK)" in result.stderr


def test_rollback_code_warns_when_the_target_ran_uncommitted_changes(
    cli_engine: Callable[[FakeEngine], FakeEngine], invoke: Callable[..., Result], repo: Path
) -> None:
    old = git(repo, "rev-parse", "HEAD")
    fake = cli_engine(FakeEngine(("prod",), project_dir=repo))
    fake.add_history("prod", release=make_release("r1"), commit=old, environment={"git.dirty": "true"})
    fake.add_history("prod", release=make_release("r2"), commit=old)
    result = invoke(["rollback", "prod", "--code", "--dry-run", "--json"])
    assert result.exit_code == 0
    warning = (
        f"v1 ran from a checkout with uncommitted changes (git.dirty): the program at commit {old[:7]} "
        "may not be the program that ran"
    )
    assert f"warning: {warning}" in result.stderr
    assert json.loads(result.stdout)["plan"]["warnings"] == [warning]


def test_rollback_of_a_stack_not_deployed_yet_exits_2_and_creates_nothing(
    prod: FakeEngine, invoke: Callable[..., Result]
) -> None:
    prod.add_stack("qa", deployed=False)
    result = invoke(["rollback", "qa", "--yes"])
    assert result.exit_code == 2
    assert "error: stack qa is not deployed yet (run `python -m automation up qa`)" in result.stderr
    assert prod.count("ensure_stack") == 0 and not prod.stack("qa").deployed


# --- the gates and an unfinished canary -----------------------------------------------------------

ROLE = "aws:iam/role:Role"


def test_rollback_code_applies_the_gates_to_the_programs_preview_in_its_worktree(
    cli_engine: Callable[[FakeEngine], FakeEngine], repo: Path, invoke: Callable[..., Result]
) -> None:
    old = commit_file(repo, "infra.txt", "program v1\n")
    commit_file(repo, "infra.txt", "program v2\n")
    fake = cli_engine(FakeEngine(("prod",), project_dir=repo))
    fake.add_history("prod", release=make_release("r1"), commit=old)
    fake.add_history("prod", release=make_release("r2"), commit=git(repo, "rev-parse", "HEAD"))
    before = (repo / "Pulumi.prod.yaml").read_bytes() if (repo / "Pulumi.prod.yaml").exists() else None
    fake.set_preview("prod", [step("prod", "update", ROLE, "prod-api-role", changed=["assumeRolePolicy"])])

    refused = invoke(["rollback", "prod", "--code", "--yes"])
    assert refused.exit_code == 3
    assert "error: prod: iam gate refused: 1 change(s) may widen IAM permissions or trust" in refused.stderr
    assert f"  update {urn('prod', ROLE, 'prod-api-role')} (assumeRolePolicy)" in refused.stderr
    assert fake.count("up") == 0
    [preview] = [c for c in fake.calls if c.op == "preview"]
    assert preview.args["work_dir"] and preview.args["work_dir"] != str(repo)  # the worktree's program
    assert fake.get_release("prod") == make_release("r2")  # the stack file says what runs, as before
    if before is not None:
        assert (repo / "Pulumi.prod.yaml").read_bytes() == before

    approved = invoke(["rollback", "prod", "--code", "--yes", "--approve-iam"])
    assert approved.exit_code == 0, approved.stderr
    assert fake.count("up", "prod") == 1 and fake.get_release("prod") == make_release("r1")


def test_plain_rollback_applies_the_replace_gate_too(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    bucket = urn("prod", "aws:s3/bucket:Bucket", "prod-data")
    prod.set_preview(
        "prod", [step("prod", "replace", "aws:s3/bucket:Bucket", "prod-data", changed=["bucket"])]
    )
    refused = invoke(["rollback", "prod", "--yes"])
    assert refused.exit_code == 3 and "replace gate refused" in refused.stderr and prod.count("up") == 0
    assert prod.get_release("prod") == make_release("r3")
    allowed = invoke(["rollback", "prod", "--yes", "--allow-replace", bucket])
    assert allowed.exit_code == 0 and prod.count("up") == 1


def test_rollback_detects_an_unfinished_canary_and_reverts_it_in_full(
    cli_engine: Callable[[FakeEngine], FakeEngine], repo: Path, invoke: Callable[..., Result]
) -> None:
    fake = cli_engine(FakeEngine(("prod",), project_dir=repo))
    fake.add_history("prod", release=make_release("r1"), commit="1" * 40)
    canary = {**make_release("r2"), "canary": {"weight": 0.25, "stableVersions": {"api": "3"}}}
    fake.add_history("prod", release=canary, commit="2" * 40)
    # A fresh checkout's stack file names the committed release, not the canary that runs.
    fake.set_config("prod", "stageline:release", make_release("r2"))
    result = invoke(["rollback", "prod", "--yes", "--json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["plan"]["targetVersion"] == 1 and document["plan"]["release"] == make_release("r1")
    assert document["plan"]["warnings"] == [
        "prod runs an unfinished canary: release r2 on 25% of the traffic since v2 (a promotion stopped "
        "before it finished); this rollback reverts it to release r1 in full"
    ]
    assert "warning: prod runs an unfinished canary" in result.stderr
    assert fake.get_release("prod") == make_release("r1")
    assert running_canary(fake.history("prod")) is None
