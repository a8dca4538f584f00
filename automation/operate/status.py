"""`status`: one row per stack saying where each release runs, read from the engine.

For every stack, what runs is the newest update still standing (`automation.operate.rollback.lineage`:
succeeded, not rolled away): its release version, the git commit the program ran from, when it
finished and who ran it (the `by NAME` tag the driver adds to update messages; `-` for updates made
elsewhere, e.g. a bare `pulumi up`). Besides: the canary weight when the stack runs a canary split
(and whether a promotion is still running it: an unfinished canary is a split no live update holds),
the release the TEST distribution serves when it is not APP's, the newest update when it did not
succeed, pending operations and stale locks an interrupted update left, and the last drift result.

The last drift result is what `drift` recorded on this machine (`.stageline/drift/<stack>.json`, written
after every check, git-ignored), or, with `--drift`, a preview-only refresh made now.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from automation.engine.model import (
    DriftReport,
    PendingOperation,
    StackLock,
    StackNotDeployed,
    UpdateRecord,
)
from automation.engine.protocol import Engine
from automation.errors import ConfigurationError, StagelineError
from automation.markdown import cell
from automation.operate.drift import map_in_order
from automation.operate.rollback import lineage

DRIFT_RECORDS = Path(".stageline") / "drift"
_BY = re.compile(r" by (\S+)$")


def deployed_by(record: UpdateRecord) -> str | None:
    """Who ran an update: the `by NAME` tag at the end of its message (see updates.update_message)."""
    match = _BY.search(record.message)
    return match.group(1) if match else None


# --- the last drift result ------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftStatus:
    result: str  # clean | drifted | error | unknown
    checked: datetime | None = None
    resources: int = 0
    source: str = "recorded"  # recorded: the last `drift` on this machine; checked: by this status run
    error: str | None = None

    def describe(self) -> str:
        if self.result == "unknown":
            return "not checked"
        when = f" {self.checked:%Y-%m-%d %H:%M}" if self.checked else ""
        what = f"drifted ({self.resources})" if self.result == "drifted" else self.result
        return f"{what}{when}"

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "checked": self.checked.isoformat() if self.checked else None,
            "resources": self.resources,
            "source": self.source,
            "error": self.error,
        }


def _drift_status(report: DriftReport, checked: datetime, source: str) -> DriftStatus:
    if report.error:
        return DriftStatus("error", checked, 0, source, report.error)
    result = "drifted" if report.drifted else "clean"
    return DriftStatus(result, checked, len(report.resources), source)


def record_drift(project_dir: Path, reports: Sequence[DriftReport], checked: datetime) -> None:
    """Remember each stack's drift result for `status` (never fails the drift check)."""
    folder = project_dir / DRIFT_RECORDS
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for report in reports:
            document = _drift_status(report, checked, "recorded").to_json()
            (folder / f"{report.stack}.json").write_text(json.dumps(document) + "\n", encoding="utf-8")
    except OSError:
        return


def recorded_drift(project_dir: Path, stack: str) -> DriftStatus:
    try:
        document = json.loads((project_dir / DRIFT_RECORDS / f"{stack}.json").read_text(encoding="utf-8"))
        checked = datetime.fromisoformat(document["checked"]) if document.get("checked") else None
        return DriftStatus(
            str(document["result"]),
            checked,
            int(document.get("resources") or 0),
            "recorded",
            document.get("error"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return DriftStatus("unknown", source="recorded")


# --- one stack ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackStatus:
    stack: str
    deployed: bool = True
    current: UpdateRecord | None = None  # the newest standing update: what runs
    latest: UpdateRecord | None = None  # the newest update of any result
    pending: tuple[PendingOperation, ...] = ()
    locks: tuple[StackLock, ...] = ()
    drift: DriftStatus = field(default_factory=lambda: DriftStatus("unknown"))
    error: str | None = None

    @property
    def release(self) -> Mapping[str, Any] | None:
        return self.current.release if self.current is not None else None

    @property
    def canary_weight(self) -> float | None:
        canary = (self.release or {}).get("canary")
        if isinstance(canary, Mapping) and canary.get("weight") is not None:
            return float(canary["weight"])
        return None

    @property
    def candidate(self) -> str | None:
        """The release TEST serves when it differs from APP's (a promotion verifying it, or stopped)."""
        release = self.release or {}
        value = release.get("candidate")
        return str(value) if value and str(value) != str(release.get("version")) else None

    @property
    def running_update(self) -> bool:
        """A live process holds the stack's lock: an update (maybe a promotion) is under way."""
        return any(not lock.stale for lock in self.locks)

    @property
    def unfinished_canary(self) -> bool:
        return self.canary_weight is not None and not self.running_update

    @property
    def latest_failed(self) -> bool:
        return self.latest is not None and not self.latest.succeeded

    def attention(self) -> list[str]:
        """What needs a human, one short phrase each."""
        out: list[str] = []
        if self.error:
            out.append(f"status unreadable: {self.error}")
        if self.unfinished_canary:
            out.append("unfinished canary (rerun promote to finish it, or rollback)")
        if self.latest is not None and self.latest_failed:
            out.append(f"last update v{self.latest.version} {self.latest.result}")
        if self.pending:
            out.append(f"{len(self.pending)} pending operation(s)")
        stale = [lock for lock in self.locks if lock.stale]
        if stale:
            out.append(f"{len(stale)} stale lock(s)")
        if self.running_update:
            out.append("update running")
        if self.drift.result in ("drifted", "error"):
            out.append(f"drift check: {self.drift.result}")
        return out

    def to_json(self) -> dict[str, Any]:
        current = self.current
        return {
            "stack": self.stack,
            "deployed": self.deployed,
            "release": (self.release or {}).get("version"),
            "commit": current.commit if current else None,
            "update": current.version if current else None,
            "deployedAt": (current.end or current.start).isoformat() if current else None,
            "deployedBy": deployed_by(current) if current else None,
            "canaryWeight": self.canary_weight,
            "unfinishedCanary": self.unfinished_canary,
            "candidate": self.candidate,
            "latestUpdate": self.latest.to_json() if self.latest else None,
            "pending": [p.to_json() for p in self.pending],
            "locks": [lock.to_json() for lock in self.locks],
            "drift": self.drift.to_json(),
            "attention": self.attention(),
            "error": self.error,
        }


def stack_status(engine: Engine, stack: str, drift: DriftStatus) -> StackStatus:
    """Read one stack's status. A stack not in the backend yet is `deployed=False`; a read that fails is
    reported in `error` (the other stacks are still shown)."""
    try:
        history = engine.history(stack)
        pending = tuple(engine.pending_operations(stack))
        locks = tuple(engine.locks(stack))
    except StackNotDeployed:
        return StackStatus(stack, deployed=False, drift=drift)
    except ConfigurationError:
        raise
    except StagelineError as exc:
        return StackStatus(stack, drift=drift, error=exc.format_message())
    standing = lineage(history)
    updates = [r for r in history if r.kind == "update"]
    return StackStatus(
        stack,
        current=standing[-1] if standing else None,
        latest=max(updates, key=lambda r: r.version) if updates else None,
        pending=pending,
        locks=locks,
        drift=drift,
    )


def collect(
    engine: Engine,
    stacks: Sequence[str],
    *,
    parallel: int,
    fresh_drift: Mapping[str, DriftReport] | None = None,
    now: datetime,
) -> list[StackStatus]:
    """Every stack's status, in the order given; `fresh_drift` replaces the recorded drift results."""

    def one(stack: str) -> StackStatus:
        if fresh_drift is not None and stack in fresh_drift:
            drift = _drift_status(fresh_drift[stack], now, "checked")
        else:
            drift = recorded_drift(engine.project_dir, stack)
        return stack_status(engine, stack, drift)

    return list(map_in_order(stacks, one, parallel))


def exit_code(statuses: Sequence[StackStatus]) -> int:
    """1 when a stack's status could not be read; else 0 (status reports, it does not judge)."""
    return 1 if any(s.error for s in statuses) else 0


# --- rendering ------------------------------------------------------------------------------------

COLUMNS = ("STACK", "RELEASE", "COMMIT", "UPDATE", "DEPLOYED (UTC)", "BY", "CANARY", "PENDING", "DRIFT")


def _row(s: StackStatus) -> tuple[str, ...]:
    if not s.deployed:
        return (s.stack, "(not deployed)", "-", "-", "-", "-", "-", "-", s.drift.describe())
    if s.error:
        return (s.stack, "(unreadable)", "-", "-", "-", "-", "-", "-", s.drift.describe())
    current = s.current
    release = str((s.release or {}).get("version") or "-")
    if s.candidate:
        release += f" (TEST: {s.candidate})"
    canary = "-"
    if s.canary_weight is not None:
        canary = f"{s.canary_weight:.0%}" + (" unfinished" if s.unfinished_canary else "")
    pending = [f"{len(s.pending)} op(s)"] if s.pending else []
    stale = sum(1 for lock in s.locks if lock.stale)
    if stale:
        pending.append(f"{stale} stale lock(s)")
    if s.running_update:
        pending.append("update running")
    return (
        s.stack,
        release,
        current.short_commit or "-" if current else "-",
        f"v{current.version}" if current else "-",
        f"{(current.end or current.start):%Y-%m-%d %H:%M}" if current else "-",
        (deployed_by(current) or "-") if current else "-",
        canary,
        ", ".join(pending) or "-",
        s.drift.describe(),
    )


def render_text(statuses: Sequence[StackStatus]) -> str:
    table = [COLUMNS, *(_row(s) for s in statuses)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    notes = [f"{s.stack}: {', '.join(s.attention())}" for s in statuses if s.attention()]
    if notes:
        lines += ["", "needs attention:", *(f"  {n}" for n in notes)]
    return "\n".join(lines)


def render_markdown(statuses: Sequence[StackStatus]) -> str:
    out = ["## Where each release runs", "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    out += ["| " + " | ".join(cell(c) for c in _row(s)) + " |" for s in statuses]
    notes = [f"- **{cell(s.stack)}**: {cell(', '.join(s.attention()))}" for s in statuses if s.attention()]
    if notes:
        out += ["", "Needs attention:", "", *notes]
    return "\n".join(out) + "\n"


def to_json(statuses: Sequence[StackStatus]) -> dict[str, Any]:
    return {"exitCode": exit_code(statuses), "stacks": [s.to_json() for s in statuses]}
