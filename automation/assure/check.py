"""`check`: render each stack offline and run the guardrail rules of `policy.rules` over it.

This is the `check` adapter of the one rule implementation (the other is the CrossGuard pack in
policy/__main__.py): it turns the offline render into `policy.rules.Resource`s and a
`StackContext`, evaluates every rule, and applies the stack file's waivers.

Every stack file is parsed (and its waivers checked against the rule ids) before anything is
rendered, so a config error is reported at once, as one line, with exit 2.

Besides the rules, `check` reports what only the offline render can see: a secret config value
that reached a resource (or a stack output) without being marked secret. It is masked in every
output and counted as a critical violation (`secret-unmasked`) that no waiver silences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automation.errors import ConfigurationError, StagelineError
from automation.markdown import cell

if TYPE_CHECKING:
    from automation.assure.render import Program, Rendered
    from infra.config import StackConfig, Waiver
    from policy.rules import Outcome, StackContext, Violation

ProgressFn = Callable[[str], None]

SECRET_UNMASKED = "secret-unmasked"  # noqa: S105 - a rule id
SECRET_UNMASKED_RATIONALE = (
    "A secret config value reaching a resource unmarked is stored in plaintext in the state."  # noqa: S105
)


@dataclass(frozen=True)
class StackResult:
    stack: str
    resources: int
    outcome: Outcome
    leaks: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckReport:
    results: tuple[StackResult, ...]
    rule_count: int

    @property
    def violations(self) -> list[Violation]:
        return [v for r in self.results for v in r.outcome.violations]

    @property
    def waived(self) -> list[tuple[Violation, Waiver]]:
        return [w for r in self.results for w in r.outcome.waived]

    @property
    def clean(self) -> bool:
        return not self.violations


def context_for(rendered: Rendered, *, production: bool = False) -> StackContext:
    """The rules' view of an offline render: custom resources with inputs, outputs, options, provider.

    `production`: the stack is the last stage of the promotion chain (policy.rules.final_stages).
    """
    from policy.rules import ANY_PROPERTY, Resource, StackContext

    sim = rendered.simulation
    by_urn = {r.urn: r for r in sim.resources}
    resources = []
    for r in sim.resources:
        if not r.custom:
            continue
        provider = by_urn.get(r.provider.rsplit("::", 1)[0]) if r.provider else None
        resources.append(
            Resource(
                type=r.type,
                name=r.name,
                inputs=r.inputs,
                outputs=r.outputs,
                urn=r.urn,
                id=r.id,
                parent=r.parent,
                provider_inputs=provider.inputs if provider is not None else None,
                protect=r.protect,
                retain_on_delete=r.retain_on_delete,
                dependencies={ANY_PROPERTY: tuple(r.dependencies)},
            )
        )
    return StackContext.from_config(rendered.config, resources, production=production)


def leak_violations(rendered: Rendered) -> list[Violation]:
    """One critical violation per place a secret surfaced unmasked ("<resource>.<property>")."""
    from policy.rules import CRITICAL, Violation

    by_name = sorted(
        ((r.name, r.type, r.urn) for r in rendered.resources if r.custom), key=lambda n: -len(n[0])
    )
    found = []
    for leak in rendered.leaks:
        if leak.startswith("outputs."):
            name, type_, urn, where = (
                leak,
                "pulumi:pulumi:Stack",
                "",
                f"stack output {leak[len('outputs.') :]}",
            )
        else:
            match = next(
                (n for n in by_name if leak.startswith(n[0]) and leak[len(n[0]) : len(n[0]) + 1] in ".["),
                None,
            )
            name, type_, urn = match if match else (leak, "", "")
            where = leak[len(name) :].lstrip(".") or leak
        found.append(
            Violation(
                SECRET_UNMASKED,
                CRITICAL,
                rendered.stack,
                name,
                type_,
                f"a secret config value reaches {where} without being marked secret: the state would "
                "hold it in plaintext (masked in this report)",
                urn,
                SECRET_UNMASKED_RATIONALE,
            )
        )
    return found


def load_configs(root: Path, stacks: Sequence[str]) -> dict[str, StackConfig]:
    """Parse every stack file and check its waivers; the first problem is a ConfigurationError (exit 2)."""
    from automation.assure.render import load_config
    from infra.config import ConfigError
    from policy.rules import check_waivers

    configs = {}
    for stack in stacks:
        try:
            cfg = load_config(root, stack)
            check_waivers(cfg.waivers)
        except ConfigError as exc:
            raise ConfigurationError(f"{stack}: {exc}") from None
        configs[stack] = cfg
    return configs


def render(root: Path, stack: str, cfg: StackConfig, program: Program | None) -> Rendered:
    from automation.assure.render import render_stack
    from infra.config import ConfigError

    try:
        return render_stack(root, stack, program=program, config=cfg)
    except ConfigError as exc:
        raise ConfigurationError(f"{stack}: {exc}") from None
    except Exception as exc:  # the program itself failed under mocks: an operation failure, not config
        raise StagelineError(f"{stack}: the program failed while rendering: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


def check_stacks(
    root: Path, stacks: Sequence[str], *, program: Program | None = None, progress: ProgressFn | None = None
) -> CheckReport:
    from policy.rules import RULES, Outcome, apply_waivers, evaluate, final_stages, promotion_sources

    configs = load_configs(root, stacks)
    finals = final_stages(promotion_sources(root))
    results = []
    for stack in stacks:
        if progress:
            progress(f"rendering {stack} …")
        rendered = render(root, stack, configs[stack], program)
        ctx = context_for(rendered, production=stack in finals)
        outcome = apply_waivers(evaluate(ctx), configs[stack].waivers)
        leaks = leak_violations(rendered)
        if leaks:  # never waived: a waiver cannot make a plaintext secret safe
            outcome = Outcome((*outcome.violations, *leaks), outcome.waived, outcome.unused_waivers)
        results.append(
            StackResult(stack=stack, resources=len(ctx.resources), outcome=outcome, leaks=rendered.leaks)
        )
    return CheckReport(results=tuple(results), rule_count=len(RULES))


# --- reports --------------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _status(result: StackResult) -> str:
    parts = []
    if result.outcome.violations:
        parts.append(_plural(len(result.outcome.violations), "violation"))
    if result.outcome.waived:
        parts.append(f"{len(result.outcome.waived)} waived")
    return ", ".join(parts) if parts else "clean"


def summary_line(report: CheckReport) -> str:
    from policy.rules import SEVERITIES

    violations = report.violations
    head = (
        f"{_plural(len(report.results), 'stack')} checked against {report.rule_count} rules: "
        f"{_plural(len(violations), 'violation')}"
    )
    if violations:
        counts = [
            f"{sum(1 for v in violations if v.severity == s)} {s}"
            for s in SEVERITIES
            if any(v.severity == s for v in violations)
        ]
        head += f" ({', '.join(counts)})"
    head += f", {len(report.waived)} waived"
    return head + ("." if violations else " — clean.")


def render_text(report: CheckReport) -> str:
    width = max([len(r.stack) for r in report.results] + [5])
    lines = [f"{r.stack:<{width}}  {r.resources:>4} resources  {_status(r)}" for r in report.results]
    if report.violations:
        lines += ["", "Violations:"]
        for v in report.violations:
            lines.append(f"  {v.stack:<{width}}  {v.rule} ({v.severity})  {v.resource}  [{v.type}]")
            lines.append(f"  {'':<{width}}    {v.message}")
    if report.waived:
        lines += ["", "Waived:"]
        for v, w in report.waived:
            lines.append(f"  {v.stack:<{width}}  {v.rule}  {v.resource}: {w.reason}")
    unused = [(r.stack, w) for r in report.results for w in r.outcome.unused_waivers]
    if unused:
        lines += ["", "Waivers that matched nothing (remove them):"]
        lines += [f"  {stack:<{width}}  {w.rule}  {w.resource}" for stack, w in unused]
    lines += ["", summary_line(report)]
    return "\n".join(lines)


def render_markdown(report: CheckReport) -> str:
    lines = [
        "## Guardrail check",
        "",
        summary_line(report),
        "",
        "| stack | resources | result |",
        "| --- | ---: | --- |",
    ]
    lines += [f"| {r.stack} | {r.resources} | {_status(r)} |" for r in report.results]
    if report.violations:
        lines += ["", "| stack | rule | severity | resource | problem |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {v.stack} | `{v.rule}` | {v.severity} | `{v.resource}` | {cell(v.message)} |"
            for v in report.violations
        ]
    if report.waived:
        lines += ["", "Waived:", ""]
        lines += [f"- {v.stack}: `{v.rule}` on `{v.resource}` — {cell(w.reason)}" for v, w in report.waived]
    return "\n".join(lines)


def to_json(report: CheckReport) -> dict[str, Any]:
    return {
        "clean": report.clean,
        "rules": report.rule_count,
        "stacks": [
            {
                "stack": r.stack,
                "resources": r.resources,
                "violations": [v.to_dict() for v in r.outcome.violations],
                "waived": [{**v.to_dict(), "reason": w.reason} for v, w in r.outcome.waived],
                "unusedWaivers": [{"rule": w.rule, "resource": w.resource} for w in r.outcome.unused_waivers],
                "secretLeaks": list(r.leaks),
            }
            for r in report.results
        ],
        "summary": summary_line(report),
    }
