"""The promotion record: what happened to each stage, as one JSON document and as a Markdown report.

Per stage: the gates and their verdicts, the release before and after, the planned changes, the
artifact copies, the updates, the verification results (health checks, bake, custom steps), any
rollback, and how long each part took. The JSON goes to `--out FILE` and, with `--json`, to
stdout; the Markdown goes to the terminal summary and to $GITHUB_STEP_SUMMARY.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from automation.engine.model import PreviewSummary
from automation.markdown import cell
from automation.promote.gates import Gate
from automation.promote.release import ImageCopy, PackageCopy, PrefixCopy, version_of
from automation.promote.steps import StepResult
from automation.promote.verify import Verification

SCHEMA = "stageline.promotion/v1"

# Stage results
DEPLOYED = "deployed"
UNCHANGED = "unchanged"
REFUSED = "refused"
FAILED = "failed"  # failed before anything was deployed, or the rollback itself failed
ROLLED_BACK = "rolled back"
INTERRUPTED = "interrupted"
NOT_RUN = "not run"

_ICON = {
    DEPLOYED: "✅",
    UNCHANGED: "⏸️",
    REFUSED: "⛔",
    FAILED: "❌",
    ROLLED_BACK: "⏪",
    INTERRUPTED: "⚠️",
    NOT_RUN: "·",
}


@dataclass
class UpdateRun:
    phase: str  # "release" | "canary" | "full" | "rollback"
    version: int | None
    result: str
    seconds: float
    message: str = ""
    invalidations: list[str] = field(default_factory=list)  # CloudFront invalidation IDs after it

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "version": self.version,
            "result": self.result,
            "seconds": round(self.seconds, 3),
            "message": self.message,
            "invalidations": list(self.invalidations),
        }


@dataclass
class RollbackRun:
    ok: bool
    to_version: int | None = None
    release: str | None = None  # version of the release restored
    detail: str = ""
    verification: Verification | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "toVersion": self.to_version,
            "release": self.release,
            "detail": self.detail,
            "verification": self.verification.to_json() if self.verification else None,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class StageRecord:
    stack: str
    source: str | None
    result: str = NOT_RUN
    reason: str | None = None
    release_before: Mapping[str, Any] | None = None
    release_after: Mapping[str, Any] | None = None
    canary_weight: float | None = None  # set when the release went out as a canary first
    history_before: int = 0  # the newest history version before this promotion changed anything
    gates: list[Gate] = field(default_factory=list)
    preview: PreviewSummary | None = None
    images: list[ImageCopy] = field(default_factory=list)
    frontend: list[PrefixCopy] = field(default_factory=list)
    packages: list[PackageCopy] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)  # pre steps; post steps live in verifications
    updates: list[UpdateRun] = field(default_factory=list)
    verifications: list[Verification] = field(default_factory=list)
    rollback: RollbackRun | None = None
    durations: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_time(self, part: str, seconds: float) -> None:
        self.durations[part] = self.durations.get(part, 0.0) + seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "source": self.source,
            "result": self.result,
            "reason": self.reason,
            "release": {
                "before": dict(self.release_before) if self.release_before else None,
                "after": dict(self.release_after) if self.release_after else None,
            },
            "canaryWeight": self.canary_weight,
            "historyBefore": self.history_before,
            "gates": [g.to_json() for g in self.gates],
            "changes": self.preview.to_json() if self.preview else None,
            "artifacts": {
                "images": [i.to_json() for i in self.images],
                "packages": [p.to_json() for p in self.packages],
                "frontend": [f.to_json() for f in self.frontend],
            },
            "steps": [s.to_json() for s in self.steps],
            "updates": [u.to_json() for u in self.updates],
            "verification": [v.to_json() for v in self.verifications],
            "rollback": self.rollback.to_json() if self.rollback else None,
            "durations": {k: round(v, 3) for k, v in self.durations.items()},
            "notes": list(self.notes),
        }


@dataclass
class PromotionRecord:
    pipeline: tuple[str, ...]
    stages: list[StageRecord]
    started: datetime
    options: Mapping[str, Any] = field(default_factory=dict)
    finished: datetime | None = None
    release: Mapping[str, Any] | None = None  # the release promoted
    result: str = "running"  # succeeded | unchanged | refused | failed | interrupted
    exit_code: int = 0
    reason: str | None = None
    notifications: dict[str, list[str]] = field(default_factory=lambda: {"sent": [], "failed": []})

    @property
    def seconds(self) -> float:
        return (self.finished - self.started).total_seconds() if self.finished else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "result": self.result,
            "exitCode": self.exit_code,
            "reason": self.reason,
            "release": dict(self.release) if self.release else None,
            "pipeline": list(self.pipeline),
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "durationSeconds": round(self.seconds, 3),
            "options": dict(self.options),
            "stages": [s.to_json() for s in self.stages],
            "notifications": {k: list(v) for k, v in self.notifications.items()},
        }


# --- Markdown ---------------------------------------------------------------------------------


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {int(value % 60)} s"


def _changes(preview: PreviewSummary | None) -> str:
    if preview is None:
        return "-"
    counts = {op: n for op, n in preview.counts.items() if op != "same" and n}
    return ", ".join(f"{n} {op}" for op, n in sorted(counts.items())) or "no changes"


def markdown(record: PromotionRecord) -> str:
    version = version_of(record.release) or "?"
    head = {
        "succeeded": "succeeded",
        "unchanged": "changed nothing (every stage was up to date)",
        "refused": "refused by a gate",
        "failed": "failed",
        "interrupted": "was interrupted",
    }
    lines = [f"## Promotion of release `{version}` {head.get(record.result, record.result)}", ""]
    if record.reason:
        lines += [f"> {record.reason}", ""]
    lines += [
        "| stage | result | source | release | changes | duration |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in record.stages:
        before, after = version_of(s.release_before), version_of(s.release_after)
        release = f"{before} → {after}" if before and after and before != after else (after or before or "-")
        lines.append(
            f"| {s.stack} | {_ICON.get(s.result, '')} {s.result} | {s.source or '-'} | "
            f"{cell(release)} | {cell(_changes(s.preview))} | {_secs(s.durations.get('total'))} |"
        )
    for s in record.stages:
        if s.result == NOT_RUN:
            continue
        lines += ["", f"### {s.stack}: {s.result}", ""]
        if s.reason:
            lines += [f"**Why:** {s.reason}", ""]
        if s.gates:
            lines.append("Gates:")
            for g in s.gates:
                mark = "✅" if g.ok else "⛔"
                lines.append(f"- {mark} **{g.name}**: {g.detail}")
                lines += [f"  - `{item}`" for item in g.items[:20]]
        if s.preview is not None and s.preview.steps:
            lines += ["", "Changes:"]
            for st in s.preview.steps[:50]:
                flag = " ⚠️ stateful" if st.dangerous else ""
                lines.append(f"- {st.op} `{st.type}` {st.name}{flag}")
            if len(s.preview.steps) > 50:
                lines.append(f"- … and {len(s.preview.steps) - 50} more")
        if s.images or s.packages or s.frontend:
            lines += ["", "Artifacts:"]
            lines += [f"- image {i.service} `{i.digest}`: {i.action}" for i in s.images]
            lines += [f"- package {p.service} `{p.digest}`: {p.action}" for p in s.packages]
            lines += [
                f"- s3://{f.target_bucket}/{f.prefix}: {f.copied} copied, {f.present} already there"
                for f in s.frontend
            ]
        if s.canary_weight:
            lines += ["", f"Canary: {s.canary_weight:.0%} of traffic first, then 100 %."]
        for step in s.steps:
            lines.append(f"- pre step `{step.command}`: {'passed' if step.ok else step.error}")
        if s.updates:
            lines += ["", "Updates:"]
            lines += [
                (
                    f"- {u.phase}: v{u.version} {u.result} in {_secs(u.seconds)}"
                    if u.version
                    else f"- {u.phase}: {u.result}" + (f" ({u.message})" if u.message else "")
                )
                + (f"; cache invalidated ({', '.join(u.invalidations)})" if u.invalidations else "")
                for u in s.updates
            ]
        for v in s.verifications:
            lines += ["", f"Verification ({v.phase}): {'passed' if v.ok else 'FAILED — ' + (v.reason or '')}"]
            lines += (
                ["", "| check | url | result | attempts |", "| --- | --- | --- | --- |"] if v.health else []
            )
            for c in v.health:
                lines.append(
                    f"| {c.name} | {cell(c.url)} | {c.status if c.ok else cell(c.error)} | {c.attempts} |"
                )
            if v.health and (v.bake is not None or v.steps):
                lines.append("")
            if v.bake is not None:
                b = v.bake
                alarms = f"{len(b.watched)} alarm(s)"
                if b.firing:
                    alarms += ", in ALARM: " + ", ".join(a.name for a in b.firing)
                lines.append(f"- bake {_secs(b.seconds)} of {_secs(b.planned_seconds)}: {alarms}")
            for step in v.steps:
                lines.append(f"- post step `{step.command}`: {'passed' if step.ok else step.error}")
        if s.rollback is not None:
            r = s.rollback
            target = f"v{r.to_version}" if r.to_version else "the previous release"
            lines += [
                "",
                f"Rollback to {target} (release `{r.release or '?'}`): "
                f"{'done' if r.ok else 'FAILED'} — {r.detail}",
            ]
            if r.verification is not None:
                lines.append(
                    f"- rollback verification: {'passed' if r.verification.ok else r.verification.reason}"
                )
        if s.notes:
            lines += [""] + [f"_{n}_" for n in s.notes]
    lines.append("")
    lines.append(f"Total {_secs(record.seconds)}; exit code {record.exit_code}.")
    return "\n".join(lines) + "\n"


def refused_gate(record: PromotionRecord) -> Gate | None:
    """The gate that stopped a refused promotion, if a stage's gate did."""
    for s in record.stages:
        if s.result == REFUSED and s.gates and not s.gates[-1].ok:
            return s.gates[-1]
    return None


def summary_lines(record: PromotionRecord) -> list[str]:
    """The short text result on stdout: one line per stage, then the verdict."""
    lines = []
    for s in record.stages:
        detail = f" — {s.reason}" if s.reason and s.result not in (DEPLOYED, UNCHANGED) else ""
        release = version_of(s.release_after) or version_of(s.release_before) or "-"
        lines.append(f"{s.stack:<12} {s.result:<12} {release}{detail}")
    verdict = {
        "succeeded": "promotion succeeded",
        "unchanged": "promotion succeeded: nothing to change",
        "refused": "promotion refused",
        "failed": "promotion failed",
        "interrupted": "promotion interrupted",
    }.get(record.result, record.result)
    if record.options.get("preview"):
        verdict = {
            "previewed": "approver's preview: every gate passes",
            "refused": "approver's preview: a gate would refuse",
        }.get(record.result, f"approver's preview {record.result}")
    lines.append(f"{verdict} (exit {record.exit_code}, {_secs(record.seconds)})")
    return lines
