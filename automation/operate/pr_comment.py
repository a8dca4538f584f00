"""One sticky pull-request comment with every previewed stack, through GitHub's REST API.

The comment is found by a marker in its body (`<!-- stageline:preview -->`): created on the first
push, edited in place (PATCH) on every later one. Each stack has its own section between markers, so
a job that previews some stacks replaces their sections and keeps the others (the PR workflow may
preview stacks in separate jobs). A section is one summary line, with the details folded below it.

API calls (https://docs.github.com/en/rest/issues/comments):

* GET  /repos/{repo}/issues/{pr}/comments?per_page=100&page=N  (every page, until a short one)
* POST /repos/{repo}/issues/{pr}/comments                       {"body": …}
* PATCH /repos/{repo}/issues/comments/{id}                      {"body": …}

`GITHUB_API_URL` (set by GitHub Actions; https://api.github.com elsewhere) is the base URL; tests
point it at a local server. The token is sent as a bearer token and never printed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automation.engine.model import PreviewSummary
from automation.errors import ConfigurationError, StagelineError
from automation.operate.preview import counts_line, stack_details
from automation.redact import redact

MARKER = "<!-- stageline:preview -->"
DEFAULT_API = "https://api.github.com"
TIMEOUT_SECONDS = 10.0
PAGE = 100
MAX_PAGES = 50
_SECTION = re.compile(
    r"<!-- stageline:stack=([a-z][a-z0-9-]*) -->\n(.*?)\n<!-- /stageline:stack=\1 -->", re.S
)
_PR_REF = re.compile(r"^refs/pull/(\d+)/")


class CommentError(StagelineError):
    """The comment could not be read or written (the preview itself is unaffected)."""


@dataclass(frozen=True)
class Target:
    api: str
    repo: str  # owner/name
    pr: int
    token: str


def target_from_env(pr: int | None, token_env: str, env: Mapping[str, str] | None = None) -> Target:
    """Where the comment goes: the repository and pull request of this run, and the token.

    The PR number is `pr`, else the `pull_request.number` of the event GitHub Actions ran for
    (GITHUB_EVENT_PATH), else the number in GITHUB_REF (`refs/pull/N/merge`). Missing pieces are usage
    errors (exit 2), raised before anything is previewed.
    """
    env = os.environ if env is None else env
    repo = (env.get("GITHUB_REPOSITORY") or "").strip()
    if not re.match(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", repo):
        raise ConfigurationError("--pr-comment: GITHUB_REPOSITORY (owner/name) is not set")
    token = (env.get(token_env) or "").strip()
    if not token:
        raise ConfigurationError(f"--pr-comment: ${token_env} holds no token (--github-token-env names it)")
    number = pr if pr is not None else _event_pr(env)
    if number is None:
        raise ConfigurationError(
            "--pr-comment: no pull request number: pass --pr N, or run on a pull_request event"
        )
    api = (env.get("GITHUB_API_URL") or DEFAULT_API).rstrip("/")
    return Target(api=api, repo=repo, pr=number, token=token)


def _event_pr(env: Mapping[str, str]) -> int | None:
    path = env.get("GITHUB_EVENT_PATH")
    if path:
        try:
            event = json.loads(Path(path).read_text(encoding="utf-8"))
            number = (event.get("pull_request") or {}).get("number")
            if isinstance(number, int):
                return number
        except (OSError, ValueError, AttributeError):
            pass
    match = _PR_REF.match(env.get("GITHUB_REF") or "")
    return int(match.group(1)) if match else None


# --- the body --------------------------------------------------------------------------------------


def summary_line(s: PreviewSummary) -> str:
    risk = f" — ⚠️ {len(s.dangerous)} stateful resource(s) replaced or deleted" if s.dangerous else ""
    return f"**{s.stack}**: {counts_line(s)}{risk}"


def section(s: PreviewSummary) -> str:
    details = "\n".join(stack_details(s)).rstrip("\n")
    return "\n".join(
        [
            f"<!-- stageline:stack={s.stack} -->",
            f"<details><summary>{summary_line(s)}</summary>",
            "",
            details,
            "",
            "</details>",
            f"<!-- /stageline:stack={s.stack} -->",
        ]
    )


def sections(body: str | None) -> dict[str, str]:
    """The stack sections of an existing comment body, in their order."""
    return {m.group(1): m.group(0) for m in _SECTION.finditer(body or "")}


def compose(existing: str | None, summaries: Sequence[PreviewSummary], commit: str | None) -> str:
    """The comment body: the sections of `summaries` replacing theirs in `existing`, the rest kept."""
    kept = sections(existing)
    for s in summaries:
        kept[s.stack] = section(s)
    at = f" at `{commit[:7]}`" if commit else ""
    head = [
        MARKER,
        "## Pulumi preview",
        "",
        f"What merging this pull request would change in each stack (last previewed{at}); "
        "expand a stack for its resources.",
        "",
    ]
    return "\n".join(head) + "\n" + "\n\n".join(kept.values()) + "\n"


# --- the API ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommentResult:
    action: str  # created | updated
    id: int
    url: str | None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "id": self.id, "url": self.url}


def publish(target: Target, summaries: Sequence[PreviewSummary], commit: str | None) -> CommentResult:
    """Create the sticky comment, or edit it in place. Raises CommentError (message without the token)."""
    import httpx

    headers = {
        "Authorization": f"Bearer {target.token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "stageline",
    }
    base = f"{target.api}/repos/{target.repo}/issues"
    try:
        with httpx.Client(headers=headers, timeout=TIMEOUT_SECONDS) as client:
            found = _find(client, f"{base}/{target.pr}/comments")
            body = compose(found.get("body") if found else None, summaries, commit)
            if found is not None:
                response = client.patch(f"{base}/comments/{found['id']}", json={"body": body})
                action = "updated"
            else:
                response = client.post(f"{base}/{target.pr}/comments", json={"body": body})
                action = "created"
            _check(response, f"{action[:-1]} the comment")
            document = response.json()
    except httpx.HTTPError as exc:
        problem = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        raise CommentError(f"pull request comment: {redact(problem, [target.token])}") from None
    except ValueError:
        raise CommentError("pull request comment: GitHub answered with something that is not JSON") from None
    return CommentResult(action=action, id=int(document["id"]), url=document.get("html_url"))


def _find(client: Any, url: str) -> dict[str, Any] | None:
    for page in range(1, MAX_PAGES + 1):
        response = client.get(url, params={"per_page": PAGE, "page": page})
        _check(response, "list the comments")
        comments = response.json()
        for comment in comments:
            if MARKER in str(comment.get("body") or ""):
                return dict(comment)
        if len(comments) < PAGE:
            return None
    return None


def _check(response: Any, doing: str) -> None:
    if not response.is_success:
        hint = " (the token needs pull-requests: write)" if response.status_code in (401, 403, 404) else ""
        raise CommentError(f"pull request comment: could not {doing}: HTTP {response.status_code}{hint}")
