"""Shared fixtures for the driver's tests: a fake engine installed as the CLI's engine, and a runner.

`cli_engine(fake)` installs a FakeEngine through `automation.engine.protocol.engine_factory` (the documented
mechanism, see docs/development.md); `invoke(args)` runs the CLI in-process with click's
CliRunner.
Lock-retry backoff is zero so contention tests do not sleep; `GITHUB_ACTOR` is `ci-bot`, the
`by NAME` the driver adds to its update messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from driver_testkit import commit_file, git

import automation.engine.protocol
from automation.cli import cli
from automation.engine.fake import FakeEngine

ACTOR = "ci-bot"


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGELINE_LOCK_BACKOFF", "0")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setenv("GITHUB_ACTOR", ACTOR)  # who the driver tags its update messages with
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)  # no test posts to a real channel


@pytest.fixture
def cli_engine(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeEngine], FakeEngine]:
    def install(fake: FakeEngine) -> FakeEngine:
        monkeypatch.setattr(automation.engine.protocol, "engine_factory", lambda: fake)
        return fake

    return install


@pytest.fixture
def invoke() -> Callable[..., Result]:
    def run(args: Sequence[str], input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return run


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding a Pulumi project, with one commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    commit_file(root, "Pulumi.yaml", "name: stageline\nruntime: python\n")
    return root
