"""History: a stack's updates as a table, and delivery (DORA) metrics over a window, per stack and
across the pipeline.

Metric definitions (docs/driver.md repeats them):

* a deployment — a finished `update` that is not a rollback; a canary phase and the update that
  completes it (the next one, with the same release) are one deployment, starting when the canary did.
* deployment frequency — succeeded deployments per day over the window.
* lead time for changes — for each release that arrived in the stack in the window (a succeeded
  deployment whose release differs from the one before it), the time from its commit (the committer
  time of the git commit recorded by the earliest update of that release in any stack read) to the
  end of that deployment. Mean and median; releases whose commit is unknown here are counted apart.
  In the last stack of the pipeline this is DORA's lead time (commit → production).
* change failure rate — of the deployments started in the window, the share that failed, or
  succeeded but were rolled back: a later rollback restored an update from before them
  (`automation.operate.rollback.rolled_back`), or the very next update was a rollback.
* mean update duration — mean end - start of every finished update (rollbacks included) in the window.
* mean time to restore — for each failure episode in the window (a failed deployment, or one later
  rolled back; consecutive failures form one episode), the time from the end of the first failing
  deployment to the end of the next succeeded update. Episodes not yet restored are counted apart.

Only `kind == "update"` entries count: previews, refreshes and destroys are not deployments.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from automation.engine.model import UpdateRecord
from automation.markdown import cell
from automation.operate.rollback import is_canary, is_rollback, release_identity, rolled_back

CommitTime = Callable[[str], datetime | None]
ReleaseKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Metrics:
    window_days: int
    since: datetime
    until: datetime
    updates: int  # deployments started in the window (a canary and its completion once), rollbacks excluded
    succeeded: int
    failed_changes: int  # failed, or succeeded and then rolled back
    rollbacks: int
    deployment_frequency: float  # succeeded deployments per day
    change_failure_rate: float | None  # None without deployments
    mean_duration: timedelta | None
    mean_time_to_restore: timedelta | None
    restores: int  # failure episodes restored in the window
    unrestored: int  # failure episodes with no later success yet
    canaries: int = 0  # deployments that went out as a canary first (counted once)
    lead_times: tuple[timedelta, ...] = ()  # one per release that arrived in the window, commit known
    lead_time_unknown: int = 0  # releases that arrived whose commit time is unknown here

    @property
    def mean_lead_time(self) -> timedelta | None:
        return _mean(self.lead_times)

    @property
    def median_lead_time(self) -> timedelta | None:
        if not self.lead_times:
            return None
        return timedelta(seconds=statistics.median(t.total_seconds() for t in self.lead_times))

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
            "canaries": self.canaries,
            "deploymentFrequencyPerDay": round(self.deployment_frequency, 4),
            "changeFailureRate": round(self.change_failure_rate, 4)
            if self.change_failure_rate is not None
            else None,
            "meanUpdateDurationSeconds": seconds(self.mean_duration),
            "meanTimeToRestoreSeconds": seconds(self.mean_time_to_restore),
            "restores": self.restores,
            "unrestored": self.unrestored,
            "leadTimeMeanSeconds": seconds(self.mean_lead_time),
            "leadTimeMedianSeconds": seconds(self.median_lead_time),
            "leadTimes": len(self.lead_times),
            "leadTimeUnknown": self.lead_time_unknown,
        }


def _mean(values: Sequence[timedelta]) -> timedelta | None:
    return sum(values, timedelta()) / len(values) if values else None


@dataclass(frozen=True)
class Deployment:
    """One deployment: an update, or a canary phase and the update that completed it."""

    record: UpdateRecord  # the last update of the deployment, its start moved to the first's
    versions: tuple[int, ...]

    @property
    def canary(self) -> bool:
        return len(self.versions) > 1


def deployments(history: Iterable[UpdateRecord]) -> list[Deployment]:
    """The finished updates oldest first, a canary phase folded into the update that completes it."""
    finished = sorted(
        (r for r in history if r.kind == "update" and r.result in ("succeeded", "failed")),
        key=lambda r: r.version,
    )
    out: list[Deployment] = []
    waiting: UpdateRecord | None = None  # a succeeded canary phase, until we see what follows it
    for record in finished:
        if waiting is not None:
            same = release_identity(waiting.release) == release_identity(record.release)
            if same and not is_rollback(record):
                out.append(
                    Deployment(replace(record, start=waiting.start), (waiting.version, record.version))
                )
                waiting = None
                continue
            out.append(Deployment(waiting, (waiting.version,)))
            waiting = None
        if record.succeeded and is_canary(record.release) and not is_rollback(record):
            waiting = record
            continue
        out.append(Deployment(record, (record.version,)))
    if waiting is not None:
        out.append(Deployment(waiting, (waiting.version,)))
    return out


def release_commits(histories: Iterable[Sequence[UpdateRecord]]) -> dict[ReleaseKey, UpdateRecord]:
    """For each release, the earliest update (by start) in any of the histories that recorded a commit."""
    first: dict[ReleaseKey, UpdateRecord] = {}
    for history in histories:
        for record in history:
            key = release_identity(record.release)
            if record.kind != "update" or key is None or not record.commit:
                continue
            if key not in first or record.start < first[key].start:
                first[key] = record
    return first


def compute_metrics(
    history: Sequence[UpdateRecord],
    *,
    now: datetime,
    window_days: int,
    origins: Mapping[ReleaseKey, UpdateRecord] | None = None,
    commit_time: CommitTime | None = None,
) -> Metrics:
    """Metrics over the `window_days` days ending at `now` (history in any order).

    Lead times need `commit_time` (sha -> committer time) and `origins` (release -> its earliest
    update, from `release_commits`; this history's own when not given).
    """
    since = now - timedelta(days=window_days)
    updates = [r for r in history if r.kind == "update"]
    deployed = deployments(updates)
    in_window = [d for d in deployed if since <= d.record.start <= now]

    # Rolled back: a later rollback restored an update from before it (the same rule rollback uses to
    # never bring such an update back), or the very next update was a rollback attempt.
    rolled_away = rolled_back(history)

    def followed_by_rollback(index: int) -> bool:
        following = deployed[index + 1] if index + 1 < len(deployed) else None
        return following is not None and is_rollback(following.record)

    failing: set[int] = set()  # indexes into `deployed`
    for i, d in enumerate(deployed):
        if is_rollback(d.record):
            continue
        if (
            d.record.result == "failed"
            or any(v in rolled_away for v in d.versions)
            or followed_by_rollback(i)
        ):
            failing.add(i)
    index = {id(d): i for i, d in enumerate(deployed)}

    changes = [d for d in in_window if not is_rollback(d.record)]
    succeeded = [d for d in changes if d.record.succeeded]
    failed_changes = [d for d in changes if index[id(d)] in failing]
    window_updates = [r for r in updates if r.result in ("succeeded", "failed") and since <= r.start <= now]
    durations = [r.duration for r in window_updates if r.duration is not None]

    restore_times: list[timedelta] = []
    unrestored = 0
    episode_start: datetime | None = None
    for i, d in enumerate(deployed):
        if i in failing:
            if episode_start is None and since <= d.record.start <= now:
                episode_start = d.record.end or d.record.start
            continue
        if episode_start is not None and d.record.succeeded:
            restore_times.append((d.record.end or d.record.start) - episode_start)
            episode_start = None
    if episode_start is not None:
        unrestored = 1

    lead_times, unknown = _lead_times(deployed, in_window, origins or release_commits([updates]), commit_time)
    return Metrics(
        window_days=window_days,
        since=since,
        until=now,
        updates=len(changes),
        succeeded=len(succeeded),
        failed_changes=len(failed_changes),
        rollbacks=sum(1 for d in in_window if is_rollback(d.record)),
        deployment_frequency=len(succeeded) / window_days,
        change_failure_rate=(len(failed_changes) / len(changes)) if changes else None,
        mean_duration=_mean(durations),
        mean_time_to_restore=_mean(restore_times),
        restores=len(restore_times),
        unrestored=unrestored,
        canaries=sum(1 for d in changes if d.canary),
        lead_times=tuple(lead_times),
        lead_time_unknown=unknown,
    )


def _lead_times(
    deployed: Sequence[Deployment],
    in_window: Sequence[Deployment],
    origins: Mapping[ReleaseKey, UpdateRecord],
    commit_time: CommitTime | None,
) -> tuple[list[timedelta], int]:
    """Commit -> arrival of each release that arrived (a succeeded, non-rollback deployment whose
    release differs from the release of the succeeded deployment before it) in the window."""
    window = {id(d) for d in in_window}
    times: list[timedelta] = []
    unknown = 0
    previous: ReleaseKey | None = None
    for d in deployed:
        if not d.record.succeeded:
            continue
        key = release_identity(d.record.release)
        arrived = key is not None and key != previous and not is_rollback(d.record)
        previous = key
        if not arrived or id(d) not in window or key is None:
            continue
        origin = origins.get(key)
        committed = commit_time(origin.commit) if commit_time and origin and origin.commit else None
        if committed is None or d.record.end is None:
            unknown += 1
            continue
        times.append(max(d.record.end - committed, timedelta()))
    return times, unknown


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
    canaries = f", {m.canaries} as a canary first" if m.canaries else ""
    return "\n".join(
        [
            f"metrics over the last {m.window_days} days ({m.since:%Y-%m-%d} to {m.until:%Y-%m-%d}):",
            f"  deployment frequency   {m.deployment_frequency:.2f}/day ({m.succeeded} succeeded "
            f"deployments{canaries})",
            f"  lead time for changes  {lead_time(m)}",
            f"  change failure rate    {cfr} ({m.failed_changes} of {m.updates} deployments; "
            f"{m.rollbacks} rollback(s))",
            f"  mean update duration   {format_duration(m.mean_duration)}",
            f"  mean time to restore   {format_duration(m.mean_time_to_restore)} ({restored})",
        ]
    )


def lead_time(m: Metrics) -> str:
    unknown = f"; {m.lead_time_unknown} without a known commit time" if m.lead_time_unknown else ""
    if not m.lead_times:
        return f"- (0 releases{unknown})"
    return (
        f"median {format_duration(m.median_lead_time)}, mean {format_duration(m.mean_lead_time)} "
        f"({len(m.lead_times)} release(s){unknown})"
    )


def render_markdown(stack: str, history: Sequence[UpdateRecord], metrics: Metrics | None) -> str:
    out = [f"## History of {stack}", "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows(history)]
    if metrics is not None:
        out += ["", "```", render_metrics(metrics), "```"]
    return "\n".join(out) + "\n"


# --- across stacks --------------------------------------------------------------------------------

SUMMARY_COLUMNS = (
    "STACK",
    "DEPLOYMENTS",
    "PER DAY",
    "LEAD TIME (MEDIAN)",
    "CHANGE FAILURE",
    "TIME TO RESTORE",
)


def summary_rows(metrics: Mapping[str, Metrics]) -> list[tuple[str, ...]]:
    rows_out: list[tuple[str, ...]] = []
    for stack, m in metrics.items():
        cfr = f"{m.change_failure_rate:.0%}" if m.change_failure_rate is not None else "-"
        rows_out.append(
            (
                stack,
                f"{m.succeeded}/{m.updates}",
                f"{m.deployment_frequency:.2f}",
                format_duration(m.median_lead_time),
                cfr,
                format_duration(m.mean_time_to_restore),
            )
        )
    return rows_out


def render_summary(metrics: Mapping[str, Metrics], last: str) -> str:
    """One row per stack; the last stack of the pipeline is the delivery (DORA) view."""
    table = [SUMMARY_COLUMNS, *summary_rows(metrics)]
    widths = [max(len(row[i]) for row in table) for i in range(len(SUMMARY_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    any_m = next(iter(metrics.values()))
    period = f"{any_m.since:%Y-%m-%d} to {any_m.until:%Y-%m-%d}"
    head = f"delivery metrics over the last {any_m.window_days} days ({period}):"
    return "\n".join(
        [head, *lines, "", f"{last} (the last stack) is delivery:", render_metrics(metrics[last])]
    )


def render_summary_markdown(metrics: Mapping[str, Metrics], last: str) -> str:
    out = [
        "## Delivery metrics",
        "",
        "| " + " | ".join(SUMMARY_COLUMNS) + " |",
        "|" + " --- |" * len(SUMMARY_COLUMNS),
    ]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in summary_rows(metrics)]
    out += [
        "",
        f"{cell(last)} (the last stack) is delivery:",
        "",
        "```",
        render_metrics(metrics[last]),
        "```",
    ]
    return "\n".join(out) + "\n"
