"""Slack notifications: the JSON a webhook receives, and failures that never fail a deployment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from promote_testkit import Stub, closed_port_url, http_stub

from automation.promote.notify import Notifier, payload

HOOK = "/services/T000/B000/XXXXXXXX"


@pytest.fixture
def slack() -> Iterator[Stub]:
    with http_stub({HOOK: 200}) as stub:
        yield stub


def test_the_payload_has_a_fallback_text_and_blocks_with_details_and_the_run_link() -> None:
    env = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme-shop/storefront",
        "GITHUB_RUN_ID": "42",
    }
    body = payload(
        "rollback", "prod rolled back to release `4f9c2d1`", {"verification": "passed", "empty": ""}, env=env
    )
    assert body == {
        "text": ":rewind: prod rolled back to release `4f9c2d1`",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": ":rewind: prod rolled back to release `4f9c2d1`"},
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "*verification:* passed"},
                    {
                        "type": "mrkdwn",
                        "text": "<https://github.com/acme-shop/storefront/actions/runs/42|workflow run>",
                    },
                ],
            },
        ],
    }


def test_an_unknown_event_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown notification event 'party'"):
        payload("party", "x")


def test_a_delivered_notification_posts_that_json_to_the_webhook(slack: Stub) -> None:
    warnings: list[str] = []
    notifier = Notifier(url=slack.url + HOOK, warn=warnings.append)
    assert notifier.notify("start", "Promoting release `v1`: dev → staging", {"stages": "dev → staging"})
    assert slack.posts(HOOK) == [
        payload("start", "Promoting release `v1`: dev → staging", {"stages": "dev → staging"})
    ]
    assert notifier.sent == ["start"] and warnings == []


def test_a_rejected_notification_is_one_warning_without_the_url(slack: Stub) -> None:
    slack.routes[HOOK] = 500
    warnings: list[str] = []
    notifier = Notifier(url=slack.url + HOOK, warn=warnings.append)
    assert notifier.notify("failure", "it broke") is False
    assert warnings == [
        "warning: Slack notification (failure) not delivered: HTTP 500; the promotion goes on"
    ]
    assert notifier.failed == ["failure"]


def test_an_unreachable_webhook_is_one_warning_without_the_url() -> None:
    url = closed_port_url() + HOOK
    warnings: list[str] = []
    notifier = Notifier(url=url, warn=warnings.append, timeout=2)
    assert notifier.notify("success", "done") is False
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: Slack notification (success) not delivered: ConnectError")
    assert HOOK not in warnings[0] and url not in warnings[0]


def test_the_url_comes_from_the_named_variable_and_a_bad_value_is_not_echoed() -> None:
    warnings: list[str] = []
    assert Notifier.from_env("SLACK_WEBHOOK_URL", warnings.append, env={}).enabled is False
    custom = Notifier.from_env("TEAM_HOOK", warnings.append, env={"TEAM_HOOK": "https://hooks.example/x"})
    assert custom.url == "https://hooks.example/x"
    bad = Notifier.from_env(
        "TEAM_HOOK", warnings.append, env={"TEAM_HOOK": "hooks.slack.com/services/T/B/secret"}
    )
    assert bad.enabled is False
    assert warnings == ["warning: $TEAM_HOOK is not an http(s) URL; Slack notifications are off"]


def test_disabled_notifications_send_nothing(slack: Stub) -> None:
    notifier = Notifier(url=None, warn=lambda _: None)
    assert notifier.notify("start", "x") is False
    assert slack.requests == []
