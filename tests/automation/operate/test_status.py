"""`status`: one row per stack, as text, Markdown and JSON, read from the (fake) engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result

from automation.engine.fake import FakeEngine, make_release
from automation.engine.model import ResourceDrift
from automation.operate.rollback import rollback_message
from automation.operate.status import deployed_by
from automation.operate.updates import current_actor, update_message

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SHA_A = "a1b2c3d" + "0" * 33
SHA_B = "b2c3d4e" + "0" * 33


@pytest.fixture
def engine(cli_engine: Callable[[FakeEngine], FakeEngine], repo: Path) -> FakeEngine:
    fake = FakeEngine(("dev", "staging", "prod"), project_dir=repo, clock=lambda: NOW)
    t0 = NOW - timedelta(days=3)
    fake.add_history(
        "dev", release=make_release("r2"), commit=SHA_B, start=t0, message="up dev @b2c3d4e by alice"
    )
    # prod: r1 by bob, then r2 as a 10 % canary that nobody finished
    fake.add_history("prod", release=make_release("r1"), commit=SHA_A, start=t0, message="promote r1 by bob")
    canary = {**make_release("r2"), "canary": {"weight": 0.1, "stableVersions": {"api": "3"}}}
    fake.add_history(
        "prod",
        release=canary,
        commit=SHA_B,
        start=t0 + timedelta(hours=1),
        message="promote r2 (canary 10%) by ci",
    )
    fake.add_pending("prod", "aws:lambda/function:Function", "prod-api")
    fake.add_stack("staging", deployed=False)
    return cli_engine(fake)


def test_status_text_has_one_row_per_stack(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["status"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "STACK", "RELEASE", "COMMIT", "UPDATE", "DEPLOYED", "(UTC)", "BY", "CANARY", "PENDING", "DRIFT",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert rows["dev"] == [
        "dev",
        "r2",
        "b2c3d4e",
        "v1",
        "2026-02-27",
        "12:00",
        "alice",
        "-",
        "-",
        "not",
        "checked",
    ]
    assert rows["prod"][:8] == ["prod", "r2", "b2c3d4e", "v2", "2026-02-27", "13:00", "ci", "10%"]
    assert "unfinished" in rows["prod"] and "1" in rows["prod"]
    assert rows["staging"][:3] == ["staging", "(not", "deployed)"]
    assert (
        "prod: unfinished canary (rerun promote to finish it, or rollback), 1 pending operation(s)"
        in result.stdout
    )


def test_status_json_is_the_document(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["status", "--json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["exitCode"] == 0
    by_stack = {s["stack"]: s for s in doc["stacks"]}
    assert [s["stack"] for s in doc["stacks"]] == ["dev", "prod", "staging"]
    prod = by_stack["prod"]
    assert prod["release"] == "r2" and prod["commit"] == SHA_B and prod["update"] == 2
    assert prod["deployedBy"] == "ci" and prod["deployedAt"] == "2026-02-27T13:00:42+00:00"
    assert prod["canaryWeight"] == 0.1 and prod["unfinishedCanary"] is True
    assert [p["kind"] for p in prod["pending"]] == ["creating"]
    assert prod["drift"] == {
        "result": "unknown",
        "checked": None,
        "resources": 0,
        "source": "recorded",
        "error": None,
    }
    assert by_stack["staging"]["deployed"] is False and by_stack["staging"]["release"] is None
    assert by_stack["dev"]["canaryWeight"] is None and by_stack["dev"]["attention"] == []


def test_status_of_named_stacks_only(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    doc = json.loads(invoke(["status", "dev", "--json"]).stdout)
    assert [s["stack"] for s in doc["stacks"]] == ["dev"]
    unknown = invoke(["status", "qa"])
    assert unknown.exit_code == 2 and "unknown stack 'qa'" in unknown.output


def test_a_running_update_is_not_an_unfinished_canary(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    engine.add_lock("prod", stale=False)
    prod = json.loads(invoke(["status", "prod", "--json"]).stdout)["stacks"][0]
    assert prod["canaryWeight"] == 0.1 and prod["unfinishedCanary"] is False
    assert "update running" in prod["attention"]


def test_failed_latest_update_and_rollback_are_shown(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    engine.add_history("dev", release=make_release("r3"), result="failed", message="up dev by alice")
    oldest = engine.history("dev")[-1]
    engine.add_history("dev", release=make_release("r2"), message=rollback_message(oldest) + " by carol")
    dev = json.loads(invoke(["status", "dev", "--json"]).stdout)["stacks"][0]
    assert dev["update"] == 3 and dev["release"] == "r2" and dev["deployedBy"] == "carol"
    assert dev["latestUpdate"]["result"] == "succeeded"
    engine.add_history("dev", release=make_release("r4"), result="failed")
    dev = json.loads(invoke(["status", "dev", "--json"]).stdout)["stacks"][0]
    assert dev["update"] == 3 and "last update v4 failed" in dev["attention"]


def test_markdown_goes_to_stdout_and_the_step_summary(
    engine: FakeEngine, invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = invoke(["status", "--format", "markdown"])
    assert result.exit_code == 0
    md = result.stdout
    assert md.startswith("## Where each release runs\n\n| STACK | RELEASE |")
    assert (
        "| prod | r2 | b2c3d4e | v2 | 2026-02-27 13:00 | ci | 10% unfinished | 1 op(s) | not checked |" in md
    )
    assert "- **prod**: unfinished canary" in md
    assert summary.read_text().strip() == md.strip()


def test_drift_records_its_result_for_status(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    engine.set_drift(
        "dev", [ResourceDrift(urn="urn:pulumi:dev::stageline::aws:s3/bucket:Bucket::b", type="t", name="b")]
    )
    assert invoke(["drift", "dev", "prod"]).exit_code == 3
    doc = json.loads(invoke(["status", "--json"]).stdout)
    drift = {s["stack"]: s["drift"] for s in doc["stacks"]}
    assert drift["dev"]["result"] == "drifted" and drift["dev"]["resources"] == 1
    assert drift["prod"]["result"] == "clean" and drift["prod"]["source"] == "recorded"
    assert drift["staging"]["result"] == "unknown"
    assert "drift check: drifted" in next(s for s in doc["stacks"] if s["stack"] == "dev")["attention"]


def test_status_drift_checks_now(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    engine.set_drift(
        "prod", [ResourceDrift(urn="urn:pulumi:prod::stageline::aws:s3/bucket:Bucket::b", type="t", name="b")]
    )
    doc = json.loads(invoke(["status", "--drift", "--json"]).stdout)
    drift = {s["stack"]: s["drift"] for s in doc["stacks"]}
    assert drift["prod"]["result"] == "drifted" and drift["prod"]["source"] == "checked"
    assert drift["staging"]["result"] == "unknown"  # not deployed: not checked
    assert engine.count("preview_refresh") == 2 and engine.count("up") == 0


def test_an_unreadable_stack_exits_1_and_others_still_show(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    engine.fail("dev", "history", "backend unreachable")
    result = invoke(["status", "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    by_stack = {s["stack"]: s for s in doc["stacks"]}
    assert by_stack["dev"]["error"] == "backend unreachable" and by_stack["prod"]["release"] == "r2"


def test_updates_carry_who_ran_them(
    engine: FakeEngine, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "dora")
    assert current_actor() == "dora"
    assert update_message("up dev", SHA_A, "dora") == "up dev @a1b2c3d by dora"
    assert invoke(["up", "dev", "--yes"]).exit_code == 0
    record = engine.history("dev")[0]
    assert record.message.endswith(" by dora") and deployed_by(record) == "dora"
    dev = json.loads(invoke(["status", "dev", "--json"]).stdout)["stacks"][0]
    assert dev["deployedBy"] == "dora" and dev["update"] == record.version
