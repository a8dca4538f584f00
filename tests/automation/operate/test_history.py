"""History: the table, delivery metrics over a window, and the `history` command."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import Result

from automation.engine.fake import FakeEngine, make_release
from automation.engine.model import UpdateRecord
from automation.operate.history import compute_metrics, format_duration, render_table

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
    assert "deployment frequency   0.29/day (2 succeeded updates)" in text
    assert "change failure rate    33% (1 of 3 updates; 0 rollback(s))" in text
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
