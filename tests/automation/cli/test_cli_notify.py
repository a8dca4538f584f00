"""Slack notifications from `up`, `rollback` and `drift`, received by a local HTTP server on 127.0.0.1.

What reaches the server is asserted (the JSON bodies); a webhook that fails or cannot be reached is a
warning on stderr and never changes the command's exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from promote_testkit import Stub, closed_port_url, http_stub

from automation.engine.fake import FakeEngine, make_release, step, urn
from automation.engine.model import ResourceDrift

HOOK = "/services/T0/B0/s3cr3tHookToken"


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stub]:
    with http_stub({HOOK: 200}) as server:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", server.url + HOOK)
        yield server


@pytest.fixture
def engine(cli_engine: Callable[[FakeEngine], FakeEngine], repo: Path) -> FakeEngine:
    fake = FakeEngine(("dev", "prod"), project_dir=repo)
    fake.add_history("prod", release=make_release("r1"), commit="1" * 40)
    fake.add_history("prod", release=make_release("r2"), commit="2" * 40)
    return cli_engine(fake)


def texts(slack: Stub) -> list[str]:
    return [body["text"] for body in slack.posts(HOOK)]


def context(slack: Stub, index: int = -1) -> list[str]:
    blocks = slack.posts(HOOK)[index]["blocks"]
    return [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]


def test_a_failed_up_is_announced_and_still_exits_1(
    engine: FakeEngine, slack: Stub, invoke: Callable[..., Result]
) -> None:
    engine.fail("dev", "up", "dev-api: creating Lambda Function: AccessDenied")
    result = invoke(["up", "dev", "--yes"])
    assert result.exit_code == 1
    assert texts(slack) == [":x: `up` of dev failed"]
    assert context(slack) == ["*by:* ci-bot", "*why:* dev-api: creating Lambda Function: AccessDenied"]
    assert HOOK not in result.output  # the webhook URL is a credential


def test_a_successful_or_refused_up_tells_no_one(
    engine: FakeEngine, slack: Stub, invoke: Callable[..., Result]
) -> None:
    assert invoke(["up", "dev", "--yes"]).exit_code == 0
    engine.set_preview("dev", [step("dev", "delete", "aws:s3/bucket:Bucket", "dev-data")])
    assert invoke(["up", "dev", "--yes"]).exit_code == 3  # a gate refusal: nothing changed, said at once
    assert slack.posts(HOOK) == []


def test_a_manual_rollback_is_announced(
    engine: FakeEngine, slack: Stub, invoke: Callable[..., Result]
) -> None:
    assert invoke(["rollback", "prod", "--dry-run"]).exit_code == 0
    assert slack.posts(HOOK) == []  # a dry run changes nothing and tells no one
    result = invoke(["rollback", "prod", "--yes"])
    assert result.exit_code == 0
    assert texts(slack) == [":rewind: prod rolled back to release `r1` (manual rollback to v1)"]
    assert context(slack) == ["*by:* ci-bot", "*target:* v1 (release r1)", "*update:* v3"]


def test_a_failed_rollback_is_announced(
    engine: FakeEngine, slack: Stub, invoke: Callable[..., Result]
) -> None:
    engine.fail("prod", "up", "the deploy role may not update the alias")
    result = invoke(["rollback", "prod", "--yes"])
    assert result.exit_code == 1
    assert texts(slack) == [":x: Rollback of prod failed"]
    why = context(slack)[-1]
    assert why.startswith("*why:* the deploy role may not update the alias; Pulumi.prod.yaml")


def test_drift_found_is_announced_with_the_fix(
    engine: FakeEngine, slack: Stub, invoke: Callable[..., Result]
) -> None:
    engine.set_drift(
        "prod",
        [ResourceDrift(urn=urn("prod", "aws:s3/bucket:Bucket", "b"), type="aws:s3/bucket:Bucket", name="b")],
    )
    result = invoke(["drift", "dev", "prod"])
    assert result.exit_code == 3
    assert texts(slack) == [":warning: Drift found: prod (1 resource(s))"]
    assert context(slack) == ["*fix:* `python -m automation drift prod --remediate`"]
    assert invoke(["drift", "dev"]).exit_code == 0 and len(slack.posts(HOOK)) == 1  # clean: nothing


def test_a_failed_drift_check_is_announced(
    engine: FakeEngine, slack: Stub, invoke: Callable[..., Result]
) -> None:
    engine.fail("prod", "preview_refresh", "cannot assume the read-only role")
    assert invoke(["drift", "prod"]).exit_code == 1
    assert texts(slack) == [":x: Drift check failed for prod"]
    assert context(slack) == ["*why:* cannot assume the read-only role"]


def test_a_failing_webhook_is_reported_and_never_changes_the_outcome(
    engine: FakeEngine, slack: Stub, invoke: Callable[..., Result]
) -> None:
    slack.routes[HOOK] = 500
    done = invoke(["rollback", "prod", "--yes"])
    assert done.exit_code == 0
    assert (
        "warning: Slack notification (rollback) not delivered: HTTP 500; the command's outcome stands"
        in done.stderr
    )
    engine.fail("dev", "up", "boom")
    failed = invoke(["up", "dev", "--yes"])
    assert failed.exit_code == 1 and failed.stderr.strip().splitlines()[-1] == "error: boom"
    assert "Slack notification (failure) not delivered: HTTP 500" in failed.stderr
    assert len(slack.posts(HOOK)) == 2  # both were attempted


def test_an_unreachable_webhook_is_a_warning_without_its_url(
    engine: FakeEngine, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = closed_port_url() + HOOK
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
    result = invoke(["rollback", "prod", "--yes"])
    assert result.exit_code == 0
    [warning] = [line for line in result.stderr.splitlines() if "Slack notification" in line]
    assert warning.startswith("warning: Slack notification (rollback) not delivered: ConnectError")
    assert url not in result.output and "s3cr3tHookToken" not in result.output


def test_another_variable_can_hold_the_webhook(
    engine: FakeEngine, slack: Stub, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_HOOK", slack.url + HOOK)
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    assert invoke(["rollback", "prod", "--yes", "--slack-webhook-env", "OPS_HOOK"]).exit_code == 0
    assert len(slack.posts(HOOK)) == 1
    bad = invoke(["up", "dev", "--slack-webhook-env", "not-a-name"])
    assert bad.exit_code == 2 and "'not-a-name' is not an environment variable name" in bad.stderr
