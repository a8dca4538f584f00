"""The sticky PR comment against a local HTTP server standing in for GitHub's REST API (issue comments).

The stand-in keeps comments per issue and answers as GitHub does: the list is paginated by `per_page`
and `page` (oldest first), POST answers 201 with the comment, PATCH 200, an unknown comment 404, a
request without the bearer token 401. Tests assert the requests it received and the bodies it holds.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import Result

from automation.engine.fake import FakeEngine, step
from automation.operate.pr_comment import MARKER, compose, sections

TOKEN = "ghs_standin0token0for0pr0comments0000"  # a test token
REPO = "acme/shop"
FN = "aws:lambda/function:Function"


@dataclass
class GitHub:
    url: str = ""
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # issue -> comments
    requests: list[tuple[str, str, dict[str, list[str]], Any]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # method -> status to answer with
    next_id: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, issue: int, body: str, user: str = "someone") -> dict[str, Any]:
        with self.lock:
            self.next_id += 1
            comment = {
                "id": self.next_id,
                "body": body,
                "user": {"login": user},
                "html_url": f"https://github.com/{REPO}/pull/{issue}#issuecomment-{self.next_id}",
            }
            self.comments.setdefault(issue, []).append(comment)
            return comment

    def calls(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _, _ in self.requests]


@pytest.fixture
def github() -> Iterator[GitHub]:
    api = GitHub()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            api.requests.append((self.command, parts.path, parse_qs(parts.query), body))
            if self.headers.get("authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"message": "Bad credentials"})
            if self.command in api.fail:
                return self._send(api.fail[self.command], {"message": "Server Error"})
            listing = re.fullmatch(rf"/repos/{REPO}/issues/(\d+)/comments", parts.path)
            one = re.fullmatch(rf"/repos/{REPO}/issues/comments/(\d+)", parts.path)
            if listing and self.command == "GET":
                query = parse_qs(parts.query)
                per_page, page = int(query["per_page"][0]), int(query.get("page", ["1"])[0])
                everything = api.comments.get(int(listing.group(1)), [])
                return self._send(200, everything[(page - 1) * per_page : page * per_page])
            if listing and self.command == "POST":
                return self._send(201, api.add(int(listing.group(1)), body["body"], "github-actions[bot]"))
            if one and self.command == "PATCH":
                for comment in (c for cs in api.comments.values() for c in cs):
                    if comment["id"] == int(one.group(1)):
                        comment["body"] = body["body"]
                        return self._send(200, comment)
            return self._send(404, {"message": "Not Found"})

        def _send(self, status: int, document: Any) -> None:
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def engine(
    cli_engine: Callable[[FakeEngine], FakeEngine],
    repo: Path,
    github: GitHub,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> FakeEngine:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    monkeypatch.setenv("GITHUB_API_URL", github.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    fake = FakeEngine(("dev", "staging", "prod"), project_dir=repo)
    fake.set_preview("dev", [step("dev", "update", FN, "dev-api", changed=["memorySize"])])
    fake.set_preview("staging", [])
    fake.set_preview("prod", [step("prod", "delete", "aws:s3/bucket:Bucket", "prod-data")])
    return cli_engine(fake)


def body_of(github: GitHub, issue: int = 7) -> str:
    [ours] = [c for c in github.comments.get(issue, []) if MARKER in c["body"]]
    return str(ours["body"])


def test_the_first_push_creates_one_comment_with_a_line_per_stack_and_details_folded(
    engine: FakeEngine, github: GitHub, invoke: Callable[..., Result]
) -> None:
    github.add(7, "LGTM")  # someone else's comment is left alone
    result = invoke(["preview", "dev", "staging", "--pr-comment", "--json"])
    assert result.exit_code == 0, result.stderr
    assert github.calls() == [
        ("GET", f"/repos/{REPO}/issues/7/comments"),
        ("POST", f"/repos/{REPO}/issues/7/comments"),
    ]
    assert github.requests[0][2] == {"per_page": ["100"], "page": ["1"]}
    body = body_of(github)
    assert body.startswith(f"{MARKER}\n## Pulumi preview\n")
    assert "<details><summary>**dev**: 1 to update, 11 unchanged</summary>" in body
    assert "<details><summary>**staging**: no changes (12 unchanged)</summary>" in body
    assert "| dev-api | `aws:lambda/function:Function` | `memorySize` |  |" in body
    assert list(sections(body)) == ["dev", "staging"]
    assert json.loads(result.stdout)["prComment"]["action"] == "created"
    assert github.comments[7][0]["body"] == "LGTM"
    assert TOKEN not in result.output


def test_later_pushes_edit_the_same_comment_in_place_and_keep_other_stacks(
    engine: FakeEngine, github: GitHub, invoke: Callable[..., Result]
) -> None:
    assert invoke(["preview", "dev", "staging", "--pr-comment"]).exit_code == 0
    [created] = [c["id"] for c in github.comments[7]]
    engine.set_preview("dev", [])  # the next push: dev no longer changes
    again = invoke(["preview", "dev", "prod", "--pr-comment", "--json"])
    assert again.exit_code == 0, again.stderr
    assert github.calls()[-2:] == [
        ("GET", f"/repos/{REPO}/issues/7/comments"),
        ("PATCH", f"/repos/{REPO}/issues/comments/{created}"),
    ]
    assert len(github.comments[7]) == 1 and json.loads(again.stdout)["prComment"] == {
        "action": "updated",
        "id": created,
        "url": f"https://github.com/{REPO}/pull/7#issuecomment-{created}",
    }
    body = body_of(github)
    assert list(sections(body)) == ["dev", "staging", "prod"]  # staging kept from the first push
    assert "**dev**: no changes (12 unchanged)" in body and "1 to update" not in body
    assert "**prod**: 1 to delete, 11 unchanged — ⚠️ 1 stateful resource(s) replaced or deleted" in body
    assert body.count(MARKER) == 1


def test_the_marker_is_found_beyond_the_first_page(
    engine: FakeEngine, github: GitHub, invoke: Callable[..., Result]
) -> None:
    for i in range(100):
        github.add(7, f"comment {i}")
    ours = github.add(7, compose(None, [], None))
    result = invoke(["preview", "dev", "--pr-comment"])
    assert result.exit_code == 0, result.stderr
    assert [(m, q.get("page")) for m, _, q, _ in github.requests if m == "GET"] == [
        ("GET", ["1"]),
        ("GET", ["2"]),
    ]
    assert github.calls()[-1] == ("PATCH", f"/repos/{REPO}/issues/comments/{ours['id']}")
    assert "**dev**: 1 to update" in body_of(github)


def test_a_failing_api_is_a_warning_and_the_preview_stands(
    engine: FakeEngine, github: GitHub, invoke: Callable[..., Result]
) -> None:
    github.fail["POST"] = 403
    result = invoke(["preview", "dev", "--pr-comment", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["prComment"] == {
        "action": "failed",
        "error": "pull request comment: could not create the comment: HTTP 403 (the token needs "
        "pull-requests: write)",
    }
    assert "warning: pull request comment: could not create the comment: HTTP 403" in result.stderr
    assert 7 not in github.comments


def test_a_bad_token_never_shows(
    engine: FakeEngine, github: GitHub, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_wrong0token000000000000000000000000")
    result = invoke(["preview", "dev", "--pr-comment"])
    assert result.exit_code == 0
    assert "could not list the comments: HTTP 401" in result.stderr
    assert "ghs_wrong0token" not in result.output


@pytest.mark.parametrize(
    ("unset", "message"),
    [
        ("GITHUB_TOKEN", "--pr-comment: $GITHUB_TOKEN holds no token (--github-token-env names it)"),
        ("GITHUB_REPOSITORY", "--pr-comment: GITHUB_REPOSITORY (owner/name) is not set"),
        (
            "GITHUB_EVENT_PATH",
            "--pr-comment: no pull request number: pass --pr N, or run on a pull_request event",
        ),
    ],
)
def test_missing_context_is_a_usage_error_before_any_preview(
    engine: FakeEngine,
    invoke: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    unset: str,
    message: str,
) -> None:
    monkeypatch.delenv(unset)
    monkeypatch.delenv("GITHUB_REF", raising=False)
    result = invoke(["preview", "dev", "--pr-comment"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert engine.count("preview") == 0


def test_pr_number_from_the_option_and_pr_needs_pr_comment(
    engine: FakeEngine, github: GitHub, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_EVENT_PATH")
    assert invoke(["preview", "dev", "--pr-comment", "--pr", "12"]).exit_code == 0
    assert "**dev**" in body_of(github, 12)
    alone = invoke(["preview", "dev", "--pr", "12"])
    assert alone.exit_code == 2 and "error: --pr: only with --pr-comment" in alone.stderr
