"""Preview: what `up` would change on each stack, as text, a PR-comment Markdown report, or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from automation.engine.model import CHANGE_OPS, PreviewSummary, ProgressFn, ResourceStep
from automation.engine.protocol import Engine
from automation.markdown import cell
from automation.operate.drift import map_in_order
from automation.operate.updates import RetryPolicy, with_lock_retry

_SYMBOL = {"create": "+", "update": "~", "replace": "+-", "delete": "-", "import": "=", "read": ">"}
_HEADING = {
    "create": "Creates",
    "update": "Updates",
    "replace": "Replaces",
    "delete": "Deletes",
    "import": "Imports",
}


def run_previews(
    engine: Engine,
    stacks: Sequence[str],
    *,
    parallel: int,
    policy: RetryPolicy,
    progress: ProgressFn | None = None,
    policy_packs: Sequence[Path] = (),
) -> list[PreviewSummary]:
    """One summary per stack, in the order given. An engine error on any stack propagates (exit 1), a
    mandatory violation of `policy_packs` too (PolicyViolationError, exit 3)."""

    def one(stack: str) -> PreviewSummary:
        if progress is not None:
            progress(f"{stack}: previewing …")
        summary = with_lock_retry(
            stack, lambda: engine.preview(stack, policy_packs=policy_packs), policy, progress=progress
        )
        if progress is not None:
            progress(f"{stack}: {counts_line(summary)}")
        return summary

    return map_in_order(stacks, one, parallel)


def counts_line(summary: PreviewSummary) -> str:
    parts = [f"{summary.counts.get(op, 0)} to {op}" for op in CHANGE_OPS if summary.counts.get(op)]
    same = summary.counts.get("same", 0)
    if not parts:
        return f"no changes ({same} unchanged)"
    return ", ".join(parts) + f", {same} unchanged"


def _flag(step: ResourceStep) -> str:
    if step.dangerous:
        return " [STATEFUL" + (", protected" if step.protected else "") + "]"
    return " [protected]" if step.protected else ""


def render_text(summaries: Sequence[PreviewSummary]) -> str:
    lines = []
    for summary in summaries:
        lines.append(f"{summary.stack}: {counts_line(summary)}")
        for step in summary.steps:
            if step.op not in CHANGE_OPS:
                continue
            changed = f" ({', '.join(step.changed)})" if step.changed else ""
            lines.append(
                f"  {_SYMBOL.get(step.op, '?'):>2} {step.op:<8} {step.type} {step.name}{changed}{_flag(step)}"
            )
        for step in summary.dangerous:
            lines.append(f"  WARNING: {step.op} of stateful resource {step.name} ({step.type}) may lose data")
        for result in summary.policy:
            lines.append(f"  POLICY: {result.describe()}")
    return "\n".join(lines)


def render_markdown(summaries: Sequence[PreviewSummary]) -> str:
    """A report for a pull-request comment: a table per stack, then the steps grouped by operation."""
    out = [
        "## Pulumi preview",
        "",
        "| Stack | Create | Update | Replace | Delete | Unchanged | Stateful at risk |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summaries:
        c = s.counts
        risk = f"⚠️ {len(s.dangerous)}" if s.dangerous else "none"
        out.append(
            f"| {s.stack} | {c.get('create', 0)} | {c.get('update', 0)} | {c.get('replace', 0)} | "
            f"{c.get('delete', 0)} | {c.get('same', 0)} | {risk} |"
        )
    for s in summaries:
        out += ["", f"### {s.stack}", "", *stack_details(s)]
    return "\n".join(out).rstrip("\n") + "\n"


def stack_details(s: PreviewSummary) -> list[str]:
    """One stack's steps as Markdown lines: a warning for stateful ones, then a table per operation."""
    out: list[str] = []
    if s.policy:
        out += ["**Policy** (advisory)", ""] + [
            f"- `{cell(r.rule)}` {cell(r.urn)}: {cell(r.message)}" for r in s.policy
        ]
        out.append("")
    if not s.has_changes:
        return [*out, "No changes."]
    if s.dangerous:
        out.append("> [!WARNING]")
        out.append("> This preview replaces or deletes stateful resources; their data would be lost:")
        for step in s.dangerous:
            why = " (protected: the update will fail until protection is removed)" if step.protected else ""
            out.append(f"> - **{step.op}** `{step.type}` **{cell(step.name)}**{why}")
        out.append("")
    for op in ("replace", "delete", "create", "update", "import"):
        steps = s.by_op(op)
        if not steps:
            continue
        out += [
            f"**{_HEADING[op]}** ({len(steps)})",
            "",
            "| Resource | Type | Changed properties | |",
            "| --- | --- | --- | --- |",
        ]
        for step in steps:
            changed = ", ".join(f"`{cell(k)}`" for k in step.changed) or "—"
            mark = "⚠️ stateful" if step.dangerous else ("protected" if step.protected else "")
            out.append(f"| {cell(step.name)} | `{step.type}` | {changed} | {mark} |")
        out.append("")
    return out


def to_json(summaries: Sequence[PreviewSummary]) -> dict[str, Any]:
    return {
        "hasChanges": any(s.has_changes for s in summaries),
        "dangerous": any(s.dangerous for s in summaries),
        "stacks": [s.to_json() for s in summaries],
    }
