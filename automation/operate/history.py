"""History: a stack's updates as a table, and delivery metrics over a window.

Metric definitions (docs/driver.md repeats them):

* deployment frequency — succeeded updates per day over the window, rollbacks not counted (they
  restore, they do not deliver).
* change failure rate — of the updates started in the window (rollbacks excluded), the share that
  failed, or succeeded but were rolled back: a later rollback restored an update from before them
  (`automation.operate.rollback.rolled_back`), or the very next update was a rollback.
* mean update duration — mean end - start of every finished update (rollbacks included) in the window.
* mean time to restore — for each failure episode in the window (a failed update, or an update later
  rolled back; consecutive failures form one episode), the time from the end of the first failing
  update to the end of the next succeeded update. Episodes not yet restored are counted apart.

Only `kind == "update"` entries count: previews, refreshes and destroys are not deployments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from automation.engine.model import UpdateRecord
from automation.markdown import cell
from automation.operate.rollback import is_rollback, rolled_back


@dataclass(frozen=True)
class Metrics:
    window_days: int
    since: datetime
    until: datetime
    updates: int  # updates started in the window, rollbacks excluded
    succeeded: int
    failed_changes: int  # failed, or succeeded and then rolled back
    rollbacks: int
    deployment_frequency: float  # succeeded updates per day
    change_failure_rate: float | None  # None without updates
    mean_duration: timedelta | None
    mean_time_to_restore: timedelta | None
    restores: int  # failure episodes restored in the window
    unrestored: int  # failure episodes with no later success yet

    def to_json(self) -> dict[str, Any]:
        def seconds(value: timedelta | None) -> float | None:
            return value.total_seconds() if value is not None else None

        return {
            "windowDays": self.window_days,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "updates": self.updates,
            "succeeded": self.succeeded,
            "failedChanges": self.failed_changes,
            "rollbacks": self.rollbacks,
            "deploymentFrequencyPerDay": round(self.deployment_frequency, 4),
            "changeFailureRate": round(self.change_failure_rate, 4)
            if self.change_failure_rate is not None
            else None,
            "meanUpdateDurationSeconds": seconds(self.mean_duration),
            "meanTimeToRestoreSeconds": seconds(self.mean_time_to_restore),
            "restores": self.restores,
            "unrestored": self.unrestored,
        }


def _mean(values: Sequence[timedelta]) -> timedelta | None:
    return sum(values, timedelta()) / len(values) if values else None


def compute_metrics(history: Sequence[UpdateRecord], *, now: datetime, window_days: int) -> Metrics:
    """Metrics over the `window_days` days ending at `now` (history in any order)."""
    since = now - timedelta(days=window_days)
    updates = sorted((r for r in history if r.kind == "update"), key=lambda r: r.version)
    finished = [r for r in updates if r.result in ("succeeded", "failed")]
    in_window = [r for r in finished if since <= r.start <= now]

    # Rolled back: a later rollback restored an update from before it (the same rule rollback uses to
    # never bring such an update back), or the very next update was a rollback attempt.
    rolled_away = rolled_back(history)

    def followed_by_rollback(index: int) -> bool:
        following = finished[index + 1] if index + 1 < len(finished) else None
        return following is not None and is_rollback(following)

    failing = set()
    for i, record in enumerate(finished):
        if is_rollback(record):
            continue
        if record.result == "failed" or record.version in rolled_away or followed_by_rollback(i):
            failing.add(record.version)

    changes = [r for r in in_window if not is_rollback(r)]
    succeeded = [r for r in changes if r.succeeded]
    failed_changes = [r for r in changes if r.version in failing]
    durations = [r.duration for r in in_window if r.duration is not None]

    restore_times: list[timedelta] = []
    unrestored = 0
    episode_start: datetime | None = None
    for record in finished:
        is_failure = record.result == "failed" or record.version in failing
        if is_failure:
            if episode_start is None and since <= record.start <= now:
                episode_start = record.end or record.start
            continue
        if episode_start is not None and record.succeeded:
            restore_times.append((record.end or record.start) - episode_start)
            episode_start = None
    if episode_start is not None:
        unrestored = 1

    return Metrics(
        window_days=window_days,
        since=since,
        until=now,
        updates=len(changes),
        succeeded=len(succeeded),
        failed_changes=len(failed_changes),
        rollbacks=sum(1 for r in in_window if is_rollback(r)),
        deployment_frequency=len(succeeded) / window_days,
        change_failure_rate=(len(failed_changes) / len(changes)) if changes else None,
        mean_duration=_mean(durations),
        mean_time_to_restore=_mean(restore_times),
        restores=len(restore_times),
        unrestored=unrestored,
    )


def format_duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = round(value.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


COLUMNS = ("VERSION", "KIND", "RESULT", "STARTED (UTC)", "DURATION", "COMMIT", "RELEASE", "MESSAGE")


def rows(history: Sequence[UpdateRecord]) -> list[tuple[str, ...]]:
    return [
        (
            f"v{r.version}",
            r.kind,
            r.result,
            f"{r.start:%Y-%m-%d %H:%M}",
            format_duration(r.duration),
            r.short_commit or "-",
            r.release_version or "-",
            r.message if len(r.message) <= 48 else r.message[:47] + "…",
        )
        for r in history
    ]


def render_table(history: Sequence[UpdateRecord]) -> str:
    table = [COLUMNS, *rows(history)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table
    )


def render_metrics(m: Metrics) -> str:
    cfr = f"{m.change_failure_rate:.0%}" if m.change_failure_rate is not None else "-"
    restored = f"{m.restores} restore(s)" + ("; 1 failure not yet restored" if m.unrestored else "")
    return "\n".join(
        [
            f"metrics over the last {m.window_days} days ({m.since:%Y-%m-%d} to {m.until:%Y-%m-%d}):",
            f"  deployment frequency   {m.deployment_frequency:.2f}/day ({m.succeeded} succeeded updates)",
            f"  change failure rate    {cfr} ({m.failed_changes} of {m.updates} updates; "
            f"{m.rollbacks} rollback(s))",
            f"  mean update duration   {format_duration(m.mean_duration)}",
            f"  mean time to restore   {format_duration(m.mean_time_to_restore)} ({restored})",
        ]
    )


def render_markdown(stack: str, history: Sequence[UpdateRecord], metrics: Metrics | None) -> str:
    out = [f"## History of {stack}", "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows(history)]
    if metrics is not None:
        out += ["", "```", render_metrics(metrics), "```"]
    return "\n".join(out) + "\n"
