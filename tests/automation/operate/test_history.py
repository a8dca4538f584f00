"""History: the table, delivery metrics over a window, and the `history` command."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from driver_testkit import git

from automation.engine.fake import FakeEngine, make_release
from automation.engine.model import UpdateRecord
from automation.operate.history import compute_metrics, format_duration, release_commits, render_table

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


def at(
    days_ago: float,
    *,
    result: str = "succeeded",
    kind: str = "update",
    minutes: float = 2,
    message: str = "",
    version: int = 0,
) -> UpdateRecord:
    start = NOW - timedelta(days=days_ago)
    return UpdateRecord(
        version=version,
        kind=kind,
        result=result,
        start=start,
        end=start + timedelta(minutes=minutes),
        message=message,
    )


def numbered(*records: UpdateRecord) -> list[UpdateRecord]:
    from dataclasses import replace

    return [replace(r, version=i + 1) for i, r in enumerate(records)]


def test_metrics_over_a_realistic_month() -> None:
    history = numbered(
        at(40),  # outside the window
        at(20),  # good
        at(15, result="failed", minutes=4),  # failure: restored by the next success
        at(15 - 1 / 24, minutes=2),  # restore, 1h after the failure started
        at(10),  # bad change, rolled back next
        at(10 - 0.5 / 24, message="rollback to v4 (aaaaaaa)"),  # restore 30 min later
        at(5, kind="refresh"),  # not a deployment
        at(2, kind="preview"),
        at(1),
    )
    m = compute_metrics(history, now=NOW, window_days=30)
    # changes in window: v2, v3 (failed), v4, v5 (rolled back), v9 -> 5; the rollback v6 is not a change
    assert m.updates == 5
    assert m.succeeded == 4
    assert m.deployment_frequency == pytest.approx(4 / 30)
    assert m.failed_changes == 2 and m.change_failure_rate == pytest.approx(0.4)
    assert m.rollbacks == 1
    # durations of every finished update in the window, rollbacks included: 2,4,2,2,2,2 minutes
    assert m.mean_duration == timedelta(minutes=14 / 6)
    # restores: failed v3 (ended 15d-4min... ) -> v4 end; rolled-back v5 end -> v6 end
    restore_1 = at(15 - 1 / 24).end - at(15, minutes=4).end  # type: ignore[operator]
    restore_2 = at(10 - 0.5 / 24).end - at(10).end  # type: ignore[operator]
    assert m.restores == 2
    assert m.mean_time_to_restore == (restore_1 + restore_2) / 2
    assert m.unrestored == 0


def test_consecutive_failures_are_one_episode_and_an_open_one_is_counted_apart() -> None:
    history = numbered(at(9), at(8, result="failed"), at(7, result="failed"), at(6), at(2, result="failed"))
    m = compute_metrics(history, now=NOW, window_days=30)
    assert m.restores == 1
    assert m.mean_time_to_restore == at(6).end - at(8).end  # type: ignore[operator]
    assert m.unrestored == 1
    assert m.change_failure_rate == pytest.approx(3 / 5)


def test_metrics_without_updates_are_undefined_not_zero() -> None:
    m = compute_metrics(numbered(at(3, kind="refresh")), now=NOW, window_days=7)
    assert m.updates == 0 and m.change_failure_rate is None and m.mean_duration is None
    assert m.mean_time_to_restore is None and m.deployment_frequency == 0


def test_durations_read_well() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (42, 150, 3720, 200000)] == [
        "42s",
        "2m30s",
        "1h02m",
        "2d07h",
    ]
    assert format_duration(None) == "-"


def test_table_columns() -> None:
    record = UpdateRecord(
        version=12,
        kind="update",
        result="succeeded",
        start=datetime(2025, 6, 1, 8, 30, tzinfo=UTC),
        end=datetime(2025, 6, 1, 8, 32, 5, tzinfo=UTC),
        message="up prod @4f9c2d1",
        environment={"git.head": "4f9c2d1" + "0" * 33},
        config={"stageline:release": make_release("4f9c2d1")},
    )
    lines = render_table([record]).splitlines()
    assert lines[0].split() == [
        "VERSION",
        "KIND",
        "RESULT",
        "STARTED",
        "(UTC)",
        "DURATION",
        "COMMIT",
        "RELEASE",
        "MESSAGE",
    ]
    assert lines[1].split() == [
        "v12",
        "update",
        "succeeded",
        "2025-06-01",
        "08:30",
        "2m05s",
        "4f9c2d1",
        "4f9c2d1",
        "up",
        "prod",
        "@4f9c2d1",
    ]


# --- the command ----------------------------------------------------------------------------------


@pytest.fixture
def prod(cli_engine: Callable[[FakeEngine], FakeEngine]) -> FakeEngine:
    fake = FakeEngine(("prod",), clock=lambda: datetime.now(UTC))
    now = datetime.now(UTC)
    fake.add_history("prod", release=make_release("r1"), commit="1" * 40, start=now - timedelta(days=6))
    fake.add_history(
        "prod",
        release=make_release("r2"),
        commit="2" * 40,
        result="failed",
        start=now - timedelta(days=4),
        set_current=False,
    )
    fake.add_history(
        "prod", release=make_release("r2"), commit="2" * 40, start=now - timedelta(days=4, hours=-1)
    )
    fake.add_history("prod", kind="refresh", start=now - timedelta(days=1))
    return cli_engine(fake)


def test_history_lists_newest_first(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["history", "prod"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["v4", "v3", "v2", "v1"]
    assert (
        lines[2].split()[:3] == ["v3", "update", "succeeded"] and "2222222" in lines[2] and " r2" in lines[2]
    )


def test_history_limit(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["history", "prod", "--limit", "2"])
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["v4", "v3"]


def test_history_metrics_text(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["history", "prod", "--metrics", "--window", "7"])
    assert result.exit_code == 0
    text = result.stdout
    assert "metrics over the last 7 days" in text
    assert "deployment frequency   0.29/day (2 succeeded deployments)" in text
    assert "change failure rate    33% (1 of 3 deployments; 0 rollback(s))" in text
    assert "mean time to restore   1h00m (1 restore(s))" in text


def test_history_json_shape(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["history", "prod", "--metrics", "--json", "--limit", "1"])
    document = json.loads(result.stdout)
    assert document["stack"] == "prod"
    assert [u["version"] for u in document["updates"]] == [4]
    assert set(document["updates"][0]) == {
        "version",
        "kind",
        "result",
        "start",
        "end",
        "durationSeconds",
        "message",
        "commit",
        "release",
        "resourceChanges",
    }
    metrics = document["metrics"]
    assert metrics["updates"] == 3 and metrics["changeFailureRate"] == pytest.approx(0.3333, abs=1e-4)
    assert metrics["meanTimeToRestoreSeconds"] == pytest.approx(3600)


def test_history_markdown(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["history", "prod", "--format", "markdown"])
    assert result.stdout.startswith("## History of prod\n")
    assert "| VERSION | KIND | RESULT |" in result.stdout


def test_history_engine_error_exits_1_redacted(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    prod.fail("prod", "history", "cannot read s3://state: token=abcd1234efgh denied")
    result = invoke(["history", "prod"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "error: cannot read s3://state: token=[secret] denied"


def test_history_of_a_stack_not_deployed_yet_exits_2(prod: FakeEngine, invoke: Callable[..., Result]) -> None:
    prod.add_stack("qa", deployed=False)
    result = invoke(["history", "qa"])
    assert result.exit_code == 2
    assert "error: stack qa is not deployed yet (run `python -m automation up qa`)" in result.stderr
    assert not prod.stack("qa").deployed


def test_every_update_a_rollback_rolled_away_from_is_a_failed_change() -> None:
    history = numbered(
        at(9),
        at(8),  # v2: rolled away from by v4 ("rollback to v1"), though not the very last before it
        at(7),  # v3
        at(6, message="rollback to v1 (aaaaaaa)"),
    )
    m = compute_metrics(history, now=NOW, window_days=30)
    assert m.updates == 3 and m.failed_changes == 2
    assert m.restores == 1 and m.mean_time_to_restore == at(6).end - at(8).end  # type: ignore[operator]


# --- DORA across stacks: a canary counted once, lead time from the commit ---------------------------


def with_release(
    record: UpdateRecord, version: str, *, canary: float | None = None, commit: str = ""
) -> UpdateRecord:
    from dataclasses import replace

    release = make_release(version)
    if canary is not None:
        release["canary"] = {"weight": canary, "stableVersions": {"api": "3"}}
    env = {"git.head": commit} if commit else {}
    return replace(record, config={"stageline:release": release}, environment=env)


def test_a_canary_and_its_completion_are_one_deployment() -> None:
    history = numbered(
        with_release(at(9), "r1"),
        with_release(at(8, minutes=10), "r2", canary=0.1),
        with_release(at(8 - 1 / 24), "r2"),  # the move to 100 %
        with_release(at(6), "r3", canary=0.1),
        with_release(at(6 - 1 / 24, result="failed"), "r3"),  # 100 % failed: one failed deployment
        with_release(at(5), "r4", canary=0.1),  # an unfinished canary: a deployment of its own
    )
    m = compute_metrics(history, now=NOW, window_days=30)
    assert (m.updates, m.succeeded, m.failed_changes, m.canaries) == (4, 3, 1, 2)
    assert m.deployment_frequency == pytest.approx(3 / 30)
    # the failure episode (r3) is restored by the next succeeded deployment (r4's canary)
    assert m.restores == 1 and m.mean_time_to_restore == at(5).end - at(6 - 1 / 24).end  # type: ignore[operator]


def test_a_rolled_back_canary_is_one_failed_deployment() -> None:
    history = numbered(
        with_release(at(9), "r1"),
        with_release(at(8), "r2", canary=0.1),
        with_release(at(8 - 1 / 24, message="rollback to v1 (aaaaaaa)"), "r1"),
    )
    m = compute_metrics(history, now=NOW, window_days=30)
    assert (m.updates, m.failed_changes, m.rollbacks, m.canaries) == (2, 1, 1, 0)


def test_lead_time_runs_from_the_releases_commit_to_its_arrival() -> None:
    committed = {"a" * 40: NOW - timedelta(days=10), "b" * 40: NOW - timedelta(days=3)}
    dev = numbered(with_release(at(9.5), "r1", commit="a" * 40), with_release(at(2.5), "r2", commit="b" * 40))
    prod = numbered(
        with_release(at(8, minutes=30), "r1", commit="f" * 40),  # promoted from another checkout
        with_release(at(7), "r1", commit="f" * 40),  # same release again: not an arrival
        with_release(at(2, minutes=10), "r2", canary=0.1, commit="f" * 40),
        with_release(at(2 - 1 / 24), "r2", commit="f" * 40),
        with_release(at(1), "r9", commit="9" * 40),  # its commit is not in this repository
    )
    origins = release_commits([dev, prod])
    m = compute_metrics(prod, now=NOW, window_days=30, origins=origins, commit_time=committed.get)
    r1 = at(8, minutes=30).end - committed["a" * 40]  # type: ignore[operator]
    r2 = at(2 - 1 / 24).end - committed["b" * 40]  # type: ignore[operator]
    assert m.lead_times == (r1, r2) and m.lead_time_unknown == 1
    assert m.median_lead_time == (r1 + r2) / 2 and m.mean_lead_time == (r1 + r2) / 2
    document = m.to_json()
    assert document["leadTimes"] == 2 and document["leadTimeUnknown"] == 1
    assert document["leadTimeMedianSeconds"] == ((r1 + r2) / 2).total_seconds()
    # without other stacks, prod's own recorded commit is the origin: unknown here
    alone = compute_metrics(prod, now=NOW, window_days=30, commit_time=committed.get)
    assert alone.lead_times == () and alone.lead_time_unknown == 3


def _commit_at(repo: Path, when: datetime) -> str:
    import os
    import subprocess

    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_AUTHOR_DATE": when.isoformat(),
        "GIT_COMMITTER_DATE": when.isoformat(),
    }
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "release"], cwd=repo, env=env, check=True)
    return git(repo, "rev-parse", "HEAD")


def test_history_all_metrics_reads_every_stack_and_the_last_is_delivery(
    cli_engine: Callable[[FakeEngine], FakeEngine], repo: Path, invoke: Callable[..., Result]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    sha = _commit_at(repo, now - timedelta(days=10))
    fake = cli_engine(FakeEngine(("dev", "staging", "prod"), project_dir=repo))
    r2 = make_release("r2")
    fake.add_history("dev", release=r2, commit=sha, start=now - timedelta(days=9))
    fake.add_history("staging", release=r2, commit="e" * 40, start=now - timedelta(days=8))
    canary = {**r2, "canary": {"weight": 0.1, "stableVersions": {"api": "3"}}}
    fake.add_history("prod", release=canary, commit="e" * 40, start=now - timedelta(days=7))
    full = fake.add_history("prod", release=r2, commit="e" * 40, start=now - timedelta(days=7, hours=-1))

    # this repository has no stack files to order the pipeline by: the stacks are taken as given
    result = invoke(["history", "dev", "staging", "prod", "--metrics", "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [s["stack"] for s in doc["stacks"]] == ["dev", "staging", "prod"] and doc["last"] == "prod"
    delivery = doc["delivery"]
    assert (delivery["updates"], delivery["succeeded"], delivery["canaries"]) == (1, 1, 1)
    assert delivery["leadTimes"] == 1
    assert delivery["leadTimeMedianSeconds"] == (full.end - (now - timedelta(days=10))).total_seconds()  # type: ignore[operator]
    by_stack = {s["stack"]: s["metrics"] for s in doc["stacks"]}
    assert by_stack["dev"]["leadTimeMedianSeconds"] == timedelta(days=1, seconds=42).total_seconds()

    single = json.loads(invoke(["history", "prod", "--metrics", "--json"]).stdout)
    same = {k: v for k, v in single["metrics"].items() if k not in ("since", "until")}
    assert single["stack"] == "prod"
    assert same == {k: v for k, v in delivery.items() if k not in ("since", "until")}  # the same lead time

    text = invoke(["history", "dev", "staging", "prod", "--metrics"]).stdout
    assert "== dev ==" in text and "== prod ==" in text
    row = next(line for line in text.splitlines() if line.startswith("prod "))
    assert row.split()[:3] == ["prod", "1/1", "0.03"] and "3d01h" in row
    assert "prod (the last stack) is delivery:" in text
    assert "lead time for changes  median 3d01h, mean 3d01h (1 release(s))" in text


def test_stacks_are_ordered_by_the_pipeline_so_the_last_is_production() -> None:
    from automation.cli.operate import _pipeline_order

    root = Path(__file__).resolve().parents[3]
    assert _pipeline_order(FakeEngine.from_repo(root), ["prod", "dev", "staging"]) == [
        "dev",
        "staging",
        "prod",
    ]
