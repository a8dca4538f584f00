"""`preview` and `up` through the CLI against the fake engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from driver_testkit import git

from automation.engine.fake import FakeEngine, make_release, step, urn

BUCKET = "aws:s3/bucket:Bucket"
FN = "aws:lambda/function:Function"
LOGS = "aws:cloudwatch/logGroup:LogGroup"


@pytest.fixture
def engine(cli_engine: Callable[[FakeEngine], FakeEngine], repo: Path) -> FakeEngine:
    fake = FakeEngine(("dev", "staging", "prod"), project_dir=repo)
    fake.set_preview(
        "prod",
        [
            step("prod", "replace", BUCKET, "prod-artifacts", changed=["bucket"], protected=True),
            step("prod", "delete", LOGS, "prod-api-logs"),
            step("prod", "update", FN, "prod-api", changed=["memorySize", "environment"]),
            step("prod", "create", "aws:sns/topic:Topic", "prod-alerts"),
        ],
    )
    fake.set_preview("staging", [step("staging", "update", FN, "staging-api", changed=["memorySize"])])
    return cli_engine(fake)


def test_preview_text_lists_steps_and_warns_about_stateful_ones(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    result = invoke(["preview", "prod"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "prod: 1 to create, 1 to update, 1 to replace, 1 to delete, 8 unchanged",
        f"  +- replace  {BUCKET} prod-artifacts (bucket) [STATEFUL, protected]",
        f"   - delete   {LOGS} prod-api-logs [STATEFUL]",
        f"   ~ update   {FN} prod-api (memorySize, environment)",
        "   + create   aws:sns/topic:Topic prod-alerts",
        f"  WARNING: replace of stateful resource prod-artifacts ({BUCKET}) may lose data",
        f"  WARNING: delete of stateful resource prod-api-logs ({LOGS}) may lose data",
    ]
    assert engine.count("up") == 0


def test_preview_markdown_is_a_pr_comment(
    engine: FakeEngine, invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = invoke(["preview", "dev", "prod", "--format", "markdown"])
    assert result.exit_code == 0
    md = result.stdout
    assert "| dev | 0 | 0 | 0 | 0 | 12 | none |" in md
    assert "| prod | 1 | 1 | 1 | 1 | 8 | ⚠️ 2 |" in md
    assert "### dev\n\nNo changes." in md
    warning = md.split("> [!WARNING]")[1].split("\n\n")[0]
    assert f"> - **replace** `{BUCKET}` **prod-artifacts** (protected" in warning
    assert f"> - **delete** `{LOGS}` **prod-api-logs**" in warning
    assert "prod-api`" not in warning  # the function update is not a stateful risk
    # grouped by operation, replaces and deletes first
    order = [
        md.index(h) for h in ("**Replaces** (1)", "**Deletes** (1)", "**Creates** (1)", "**Updates** (1)")
    ]
    assert order == sorted(order)
    assert f"| prod-api | `{FN}` | `memorySize`, `environment` |  |" in md
    assert summary.read_text().strip() == md.strip()


def test_preview_json_shape(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["preview", "--all", "--json"])
    document = json.loads(result.stdout)
    assert document["hasChanges"] is True and document["dangerous"] is True
    assert [s["stack"] for s in document["stacks"]] == ["dev", "prod", "staging"]
    prod = document["stacks"][1]
    assert prod["counts"] == {"same": 8, "replace": 1, "delete": 1, "update": 1, "create": 1}
    assert prod["steps"][0] == {
        "urn": f"urn:pulumi:prod::stageline::{BUCKET}::prod-artifacts",
        "type": BUCKET,
        "name": "prod-artifacts",
        "op": "replace",
        "changed": ["bucket"],
        "protected": True,
        "stateful": True,
    }
    assert len(prod["dangerous"]) == 2


def test_preview_engine_failure_exits_1_with_the_engines_message(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    engine.set_config("prod", "stageline:slackWebhookUrl", "https://hooks.example.com/T1/abcdef", secret=True)
    engine.fail("prod", "preview", "program failed: could not post to https://hooks.example.com/T1/abcdef")
    result = invoke(["preview", "prod"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "error: program failed: could not post to [secret]"
    assert "Traceback" not in result.output


def test_up_previews_asks_and_records_the_commit(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    head = git(engine.project_dir, "rev-parse", "HEAD")
    result = invoke(["up", "staging"], input="y\n")
    assert result.exit_code == 0
    assert "staging: 1 to update" in result.stderr and "Update staging?" in result.stderr
    assert result.stdout.startswith("staging: update v1 succeeded in 42s")
    [record] = engine.history("staging")
    assert record.message == f"up staging @{head[:7]} by ci-bot"
    assert record.commit == head
    assert engine.ops("staging") == [
        "ensure_stack",
        "pending_operations",
        "locks",
        "locks",  # no live lock: preview now, not before another update ends
        "preview",
        "up",
        "history",
    ]


def test_up_waits_for_a_live_lock_before_previewing(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    engine.add_lock("dev", stale=False)
    result = invoke(["up", "dev", "--yes", "--lock-retries", "2"])
    assert result.exit_code == 1
    assert "error: dev is still locked by another update after 2 attempts" in result.stderr
    assert engine.count("locks", "dev") == 3 and engine.count("preview") == 0 and engine.count("up") == 0


def test_up_declined_changes_nothing(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["up", "staging"], input="n\n")
    assert result.exit_code == 1
    assert "not confirmed; nothing was changed" in result.stderr
    assert engine.count("up") == 0


def test_up_yes_skips_the_question_and_keeps_a_custom_message(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    head = git(engine.project_dir, "rev-parse", "HEAD")
    result = invoke(["up", "dev", "--yes", "-m", "hotfix: raise memory", "--json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["stack"] == "dev"
    assert document["update"]["message"] == f"hotfix: raise memory @{head[:7]} by ci-bot"
    assert document["update"]["commit"] == head
    assert engine.count("preview") == 1  # the gates' preview; no question
    assert "Update dev?" not in result.stderr


def test_up_applies_the_replace_gate_unless_each_urn_is_allowed(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    bucket = urn("prod", BUCKET, "prod-artifacts")
    logs = urn("prod", LOGS, "prod-api-logs")
    refused = invoke(["up", "prod", "--yes"])
    assert refused.exit_code == 3
    lines = refused.stderr.strip().splitlines()
    assert lines[-1] == (
        "error: prod: replace gate refused: the preview would delete/replace 2 protected or stateful "
        "resource(s), losing their data; pass --allow-replace URN for each one you mean; nothing was changed"
    )
    assert f"  replace {bucket} (changed: bucket)" in lines and f"  delete {logs}" in lines
    assert engine.count("up") == 0
    one = invoke(["up", "prod", "--yes", "--allow-replace", bucket])
    assert one.exit_code == 3 and engine.count("up") == 0
    both = invoke(["up", "prod", "--yes", "--allow-replace", bucket, "--allow-replace", logs])
    assert both.exit_code == 0, both.stderr
    assert "prod: 2 replace/delete of stateful resources allowed by --allow-replace" in both.stderr
    assert engine.count("up", "prod") == 1


def test_up_applies_the_iam_gate_unless_approved(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    engine.set_preview(
        "dev", [step("dev", "update", "aws:iam/role:Role", "dev-api-role", changed=["inlinePolicies"])]
    )
    refused = invoke(["up", "dev", "--yes"])
    assert refused.exit_code == 3
    assert "error: dev: iam gate refused: 1 change(s) may widen IAM permissions or trust" in refused.stderr
    assert f"  update {urn('dev', 'aws:iam/role:Role', 'dev-api-role')} (inlinePolicies)" in refused.stderr
    assert engine.count("up") == 0
    approved = invoke(["up", "dev", "--yes", "--approve-iam"])
    assert approved.exit_code == 0 and engine.count("up", "dev") == 1


def test_up_refuses_a_malformed_urn_naming_the_option(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    result = invoke(["up", "prod", "--yes", "--allow-replace", "prod-artifacts"])
    assert result.exit_code == 2
    assert "--allow-replace" in result.stderr and "'prod-artifacts' is not a resource URN" in result.stderr


def test_up_retries_a_locked_stack(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    engine.lock("dev", times=2)
    result = invoke(["up", "dev", "--yes"])
    assert result.exit_code == 0
    assert result.stderr.count("dev is locked by another update; retrying") == 2
    assert engine.count("up", "dev") == 3


def test_up_gives_up_on_a_lock_after_the_limit(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    engine.lock("dev", times=9)
    result = invoke(["up", "dev", "--yes", "--lock-retries", "3"])
    assert result.exit_code == 1
    assert "error: dev is still locked by another update after 3 attempts" in result.stderr
    assert engine.count("up", "dev") == 3


def test_up_refuses_pending_operations_then_clears_them(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    engine.add_pending("dev", FN, "dev-api", "creating")
    refused = invoke(["up", "dev", "--yes"])
    assert refused.exit_code == 1
    assert "dev has 1 pending operation(s) from an interrupted update: creating " in refused.stderr
    assert engine.count("up") == 0
    cleared = invoke(["up", "dev", "--yes", "--clear-pending"])
    assert cleared.exit_code == 0
    assert "dev: cleared 1 pending operation(s)" in cleared.stderr


def test_up_failure_exits_1_with_the_engines_message(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    engine.fail("dev", "up", "aws:lambda/function:Function dev-api: InvalidParameterValueException")
    result = invoke(["up", "dev", "--yes"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: aws:lambda/function:Function dev-api: InvalidParameterValueException"
    )
    assert engine.history("dev")[0].result == "failed"


def test_interrupted_up_is_cancelled_and_exits_130(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    engine.interrupt_up("dev")
    result = invoke(["up", "dev", "--yes"])
    assert result.exit_code == 130
    assert "update of dev interrupted and cancelled" in result.stderr
    assert engine.ops("dev")[-2:] == ["up", "cancel"]


def test_up_of_an_unknown_stack_exits_2_listing_known_ones(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    result = invoke(["up", "qa", "--yes"])
    assert result.exit_code == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: unknown stack 'qa' (known stacks: dev, prod, staging)"
    )


def test_step_summary_gets_the_update(
    engine: FakeEngine, invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    engine.set_release("dev", make_release("r9"))
    invoke(["up", "dev", "--yes"])
    assert summary.read_text().startswith("### up dev\n\ndev: update v1 succeeded")
