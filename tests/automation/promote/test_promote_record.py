"""The promotion record: the JSON document's shape and the Markdown report's content."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from automation.engine.fake import step
from automation.engine.model import PreviewSummary
from automation.promote.gates import Gate
from automation.promote.record import (
    PromotionRecord,
    RollbackRun,
    StageRecord,
    UpdateRun,
    markdown,
    summary_lines,
)
from automation.promote.release import ImageCopy, PrefixCopy
from automation.promote.steps import StepResult
from automation.promote.verify import AlarmState, BakeResult, CheckResult, Verification

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OLD = {"version": "4f9c2d1", "images": {"api": "sha256:" + "a" * 64}}
NEW = {"version": "5e6f7a8", "images": {"api": "sha256:" + "c" * 64}}
DRIFT = "1 resource(s) drifted; promoting anyway (--allow-drift): up will put them back as the code says"


def _record() -> PromotionRecord:
    dev = StageRecord("dev", None, result="deployed", release_before=OLD, release_after=NEW)
    dev.gates = [Gate("source", True, "first stage: deploys release 5e6f7a8 from Pulumi.dev.yaml")]
    dev.updates = [UpdateRun("release", 7, "succeeded", 41.5)]
    dev.durations = {"gates": 3.2, "up": 41.5, "verify": 2.0, "total": 46.7}
    staging = StageRecord(
        "staging", "dev", result="rolled back", release_before=OLD, release_after=OLD, history_before=12
    )
    staging.reason = "verification (release) failed: alarm in ALARM during bake: staging-5xx (5XX above 1)"
    staging.gates = [
        Gate("source", True, "release 5e6f7a8 from dev v7"),
        Gate(
            "drift",
            True,
            DRIFT,
            items=("urn:pulumi:staging::stageline::aws:sqs/queue:Queue::jobs (tags)",),
            override="--allow-drift",
        ),
    ]
    staging.preview = PreviewSummary(
        stack="staging",
        counts={"update": 2, "same": 30},
        steps=(
            step("staging", "update", "aws:lambda/function:Function", "staging-api", changed=["imageUri"]),
            step(
                "staging", "update", "aws:lambda/alias:Alias", "staging-api-live", changed=["functionVersion"]
            ),
        ),
    )
    staging.images = [
        ImageCopy(
            "api",
            NEW["images"]["api"],
            "1.dkr.ecr.eu-west-1.amazonaws.com/d",
            "2.dkr.ecr.eu-west-1.amazonaws.com/s",
            "copied",
            3,
        )
    ]
    staging.frontend = [PrefixCopy("front-dev", "front-staging", "releases/5e6f7a8/", 12, 0)]
    staging.steps = [StepResult("pre", "python scripts/smoke.py --config-only", True, 0, 0.4, "ok")]
    staging.updates = [
        UpdateRun("release", 13, "succeeded", 52.0),
        UpdateRun("rollback", 14, "succeeded", 40.0, "rollback to v12 (abc1234)"),
    ]
    staging.verifications = [
        Verification(
            phase="release",
            ok=False,
            reason=staging.reason,
            health=(
                CheckResult("api", "https://api/staging/api/health", True, 200, 1, 0.1),
                CheckResult("frontend", "https://d1.cloudfront.net/", True, 200, 2, 2.1),
            ),
            bake=BakeResult(
                ok=False,
                seconds=120.0,
                planned_seconds=300,
                polls=5,
                watched=("staging-5xx",),
                firing=(AlarmState("staging-5xx", "ALARM", "5XX above 1"),),
            ),
        )
    ]
    staging.rollback = RollbackRun(
        ok=True,
        to_version=12,
        release="4f9c2d1",
        detail="staging is back on release 4f9c2d1 (v12 restored as v14)",
        verification=Verification(phase="rollback", ok=True),
        seconds=41.0,
    )
    staging.durations = {
        "gates": 5.0,
        "release": 3.0,
        "up": 52.0,
        "verify": 121.0,
        "rollback": 41.0,
        "total": 222.0,
    }
    prod = StageRecord("prod", "staging")
    return PromotionRecord(
        pipeline=("dev", "staging", "prod"),
        stages=[dev, staging, prod],
        started=START,
        finished=START + timedelta(seconds=270),
        release=NEW,
        result="failed",
        exit_code=1,
        reason="staging: " + staging.reason,
        options={"yes": True, "allowDrift": True},
        notifications={"sent": ["start", "rollback", "failure"], "failed": []},
    )


def test_the_json_document_has_one_entry_per_stage_with_every_part() -> None:
    document = json.loads(json.dumps(_record().to_json()))
    assert list(document) == [
        "schema",
        "result",
        "exitCode",
        "reason",
        "release",
        "pipeline",
        "started",
        "finished",
        "durationSeconds",
        "options",
        "stages",
        "notifications",
    ]
    assert document["schema"] == "stageline.promotion/v1"
    assert (document["result"], document["exitCode"], document["durationSeconds"]) == ("failed", 1, 270.0)
    assert document["started"] == "2026-03-02T09:00:00+00:00"
    assert [s["result"] for s in document["stages"]] == ["deployed", "rolled back", "not run"]
    staging = document["stages"][1]
    assert list(staging) == [
        "stack",
        "source",
        "result",
        "reason",
        "release",
        "canaryWeight",
        "historyBefore",
        "gates",
        "changes",
        "artifacts",
        "steps",
        "updates",
        "verification",
        "rollback",
        "durations",
        "notes",
    ]
    assert staging["release"] == {"before": OLD, "after": OLD}
    assert staging["gates"][1] == {
        "name": "drift",
        "ok": True,
        "override": "--allow-drift",
        "detail": DRIFT,
        "items": ["urn:pulumi:staging::stageline::aws:sqs/queue:Queue::jobs (tags)"],
    }
    assert staging["changes"]["counts"] == {"update": 2, "same": 30}
    assert staging["artifacts"]["images"][0]["layersCopied"] == 3
    assert staging["verification"][0]["bake"]["firing"] == [
        {"name": "staging-5xx", "state": "ALARM", "reason": "5XX above 1"}
    ]
    assert staging["rollback"]["toVersion"] == 12 and staging["rollback"]["verification"]["ok"] is True
    assert staging["durations"]["total"] == 222.0
    assert document["stages"][2]["gates"] == [] and document["stages"][2]["durations"] == {}


def test_the_markdown_report_tells_what_happened_stage_by_stage() -> None:
    text = markdown(_record())
    lines = text.splitlines()
    assert lines[0] == "## Promotion of release `5e6f7a8` failed"
    assert (
        "> staging: verification (release) failed: alarm in ALARM during bake: staging-5xx (5XX above 1)"
        in lines
    )
    assert "| dev | ✅ deployed | - | 4f9c2d1 → 5e6f7a8 | - | 46.7 s |" in lines
    assert "| staging | ⏪ rolled back | dev | 4f9c2d1 | 2 update | 3 min 42 s |" in lines
    assert "| prod | · not run | staging | - | - | - |" in lines
    assert "### staging: rolled back" in lines
    assert "### prod: not run" not in lines
    assert f"- ✅ **drift**: {DRIFT}" in lines
    assert "  - `urn:pulumi:staging::stageline::aws:sqs/queue:Queue::jobs (tags)`" in lines
    assert "- update `aws:lambda/function:Function` staging-api" in lines
    assert f"- image api `{NEW['images']['api']}`: copied" in lines
    assert "- s3://front-staging/releases/5e6f7a8/: 12 copied, 0 already there" in lines
    assert "- pre step `python scripts/smoke.py --config-only`: passed" in lines
    assert "- rollback: v14 succeeded in 40.0 s" in lines
    assert (
        "Verification (release): FAILED — verification (release) failed: alarm in ALARM during bake: "
        "staging-5xx (5XX above 1)" in lines
    )
    assert "| frontend | https://d1.cloudfront.net/ | 200 | 2 |" in lines
    assert "- bake 2 min 0 s of 5 min 0 s: 1 alarm(s), in ALARM: staging-5xx" in lines
    assert (
        "Rollback to v12 (release `4f9c2d1`): done — staging is back on release 4f9c2d1 (v12 restored as v14)"
        in lines
    )
    assert lines[-1] == "Total 4 min 30 s; exit code 1."


def test_the_text_summary_is_one_line_per_stage_and_a_verdict() -> None:
    assert summary_lines(_record()) == [
        "dev          deployed     5e6f7a8",
        "staging      rolled back  4f9c2d1 — verification (release) failed: alarm in ALARM during bake: "
        "staging-5xx (5XX above 1)",
        "prod         not run      -",
        "promotion failed (exit 1, 4 min 30 s)",
    ]
