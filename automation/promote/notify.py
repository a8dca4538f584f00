"""Slack notifications for everything that needs a human: a promotion (start, success, failure,
rollback), a manual rollback, drift found, a failed `up`, rollback or drift check.

The webhook URL comes from an environment variable (SLACK_WEBHOOK_URL unless `--slack-webhook-env`
names another). In CI that variable is the GitHub environment secret the stack publishes from its
`slackWebhookUrl` stack secret. The URL is a credential: it is never printed, and a notification
that cannot be delivered is logged to stderr as one line and never fails the deployment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from automation.redact import redact

DEFAULT_ENV = "SLACK_WEBHOOK_URL"
TIMEOUT_SECONDS = 5.0

EVENTS = ("start", "success", "failure", "rollback", "drift")
_ICONS = {
    "start": ":rocket:",
    "success": ":white_check_mark:",
    "failure": ":x:",
    "rollback": ":rewind:",
    "drift": ":warning:",
}


def run_link(env: Mapping[str, str] | None = None) -> str | None:
    """The GitHub Actions run this promotion belongs to, when there is one."""
    env = os.environ if env is None else env
    server, repo, run = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    if server and repo and run:
        return f"{server}/{repo}/actions/runs/{run}"
    return None


def payload(
    event: str, text: str, details: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The JSON a Slack incoming webhook receives: `text` for notifications, blocks for the channel."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}")
    headline = f"{_ICONS[event]} {text}"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": headline}}]
    context = [f"*{k}:* {v}" for k, v in (details or {}).items() if v not in (None, "")]
    link = run_link(env)
    if link:
        context.append(f"<{link}|workflow run>")
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": c} for c in context]})
    return {"text": headline, "blocks": blocks}


@dataclass
class Notifier:
    """Posts to one webhook; `url=None` turns notifications off."""

    url: str | None
    warn: Callable[[str], None]
    timeout: float = TIMEOUT_SECONDS
    sent: list[str] = field(default_factory=list)  # events delivered, for the promotion record
    failed: list[str] = field(default_factory=list)
    goes_on: str = "the promotion goes on"  # said when a message cannot be delivered

    @classmethod
    def from_env(
        cls,
        variable: str,
        warn: Callable[[str], None],
        env: Mapping[str, str] | None = None,
        goes_on: str = "the promotion goes on",
    ) -> Notifier:
        env = os.environ if env is None else env
        url = (env.get(variable) or "").strip() or None
        if url is not None and not url.startswith(("https://", "http://")):
            warn(f"warning: ${variable} is not an http(s) URL; Slack notifications are off")
            url = None
        return cls(url=url, warn=warn, goes_on=goes_on)

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def notify(self, event: str, text: str, details: Mapping[str, Any] | None = None) -> bool:
        """Deliver one message. Returns whether Slack accepted it; never raises for delivery problems."""
        if self.url is None:
            return False
        import httpx

        from automation.promote.verify import tls_context

        body = payload(event, text, details)
        try:
            response = httpx.post(self.url, json=body, timeout=self.timeout, verify=tls_context())
        except httpx.HTTPError as exc:
            problem = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            return self._failed(event, redact(problem, [self.url]))
        if not response.is_success:
            return self._failed(event, f"HTTP {response.status_code}")
        self.sent.append(event)
        return True

    def _failed(self, event: str, problem: str) -> bool:
        self.failed.append(event)
        self.warn(f"warning: Slack notification ({event}) not delivered: {problem}; {self.goes_on}")
        return False
