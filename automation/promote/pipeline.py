"""The promotion pipeline, resolved from the stack files: stage order and each stage's gates.

Every `Pulumi.<stack>.yaml` may name the stack it receives releases from
(`stageline:promotion.source`). Following those links gives one chain, e.g.
dev → staging → prod; the stack files are the only place the order and the per-stage settings
(approval, bake time, canary weight, verification, pre/post steps) live.

Stacks that neither name a source nor are named as one (a personal sandbox stack, say) are not
part of the pipeline. Anything that is not a single chain — a cycle, an unknown source, two
stacks receiving from the same one — is a configuration error (exit 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automation.errors import ConfigurationError
from infra.config import (
    ConfigError,
    StackConfig,
    VerifyConfig,
    known_stacks,
    parse_stack_file,
    read_stack_file,
)

SOURCE_KEY = "stageline:promotion.source"


@dataclass(frozen=True)
class Stage:
    """One stack in the pipeline and the gates and checks its promotion runs."""

    stack: str
    source: str | None  # None: the first stage, which deploys the release its own stack file holds
    approval: bool
    bake_seconds: int
    canary_weight: float | None
    verify: VerifyConfig
    pre: tuple[str, ...]
    post: tuple[str, ...]
    config: StackConfig
    # the source stage's verification settings: its health is checked before its release moves on
    source_verify: VerifyConfig | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "source": self.source,
            "approval": self.approval,
            "bakeSeconds": self.bake_seconds,
            "canaryWeight": self.canary_weight,
            "verify": {
                "timeoutSeconds": self.verify.timeout_seconds,
                "intervalSeconds": self.verify.interval_seconds,
                "frontendPath": self.verify.frontend_path,
            },
            "pre": list(self.pre),
            "post": list(self.post),
        }


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[Stage, ...]
    outside: tuple[str, ...] = ()  # stacks with a stack file that take no part in promotion

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.stack for s in self.stages)

    def stage(self, stack: str) -> Stage:
        for s in self.stages:
            if s.stack == stack:
                return s
        raise ConfigurationError(self._not_in_pipeline(stack))

    def _not_in_pipeline(self, stack: str) -> str:
        where = " (it has a stack file but no promotion.source links it)" if stack in self.outside else ""
        chain = " → ".join(self.names)
        return f"stack {stack!r} is not in the promotion pipeline{where}; the pipeline is {chain}"

    def select(
        self, *, start: str | None = None, end: str | None = None, only: str | None = None
    ) -> tuple[Stage, ...]:
        """The stages `promote` walks: all of them, a contiguous part (--from/--to), or one (--only)."""
        if only is not None:
            if start is not None or end is not None:
                raise ConfigurationError("--only cannot be combined with --from or --to")
            return (self.stage(only),)
        names = self.names
        first = names.index(self.stage(start).stack) if start is not None else 0
        last = names.index(self.stage(end).stack) if end is not None else len(names) - 1
        if first > last:
            raise ConfigurationError(
                f"--from {start} comes after --to {end} in the pipeline ({' → '.join(names)})"
            )
        return self.stages[first : last + 1]

    def to_json(self, selected: Sequence[Stage] | None = None) -> dict[str, Any]:
        chosen = {s.stack for s in (selected if selected is not None else self.stages)}
        return {
            "stages": [{**s.to_json(), "selected": s.stack in chosen} for s in self.stages],
            "outside": list(self.outside),
        }


def planned_release_refusal(pipeline: Pipeline, selected: Sequence[Stage], release: str) -> str | None:
    """Why `--release` would be refused, as far as the stack files tell (None: it matches).

    The first selected stage receives its source's release (its own, when it is the first stage) and
    every later one passes it on, so only that one release is compared. A run compares again with
    what the source runs.
    """
    if not selected:
        return None
    first = selected[0]
    holder = first.stack if first.source is None else first.source
    version = pipeline.stage(holder).config.release.version
    if version == release:
        return None
    return (
        f"--release {release} was asked for, but Pulumi.{holder}.yaml holds release {version}, "
        f"which {first.stack} would receive"
    )


def _describe_config_error(stack: str, exc: ConfigError) -> str:
    return f"Pulumi.{stack}.yaml: {exc}"


def resolve(root: Path, project: str = "stageline") -> Pipeline:
    """Read every stack file under `root` and order the stacks by their promotion sources."""
    stacks = known_stacks(root)
    if not stacks:
        raise ConfigurationError(f"no Pulumi.<stack>.yaml in {root}: there is nothing to promote")
    configs: dict[str, StackConfig] = {}
    for name in stacks:
        try:
            configs[name] = parse_stack_file(read_stack_file(root, name), project=project)
        except ConfigError as exc:
            raise ConfigurationError(_describe_config_error(name, exc)) from None
    return order(configs)


def order(configs: dict[str, StackConfig]) -> Pipeline:
    """Pure: turn {stack: config} into the single chain the promotion.source links describe."""
    source_of = {name: cfg.promotion.source for name, cfg in configs.items()}
    for name in sorted(source_of):
        source = source_of[name]
        if source is not None and source not in configs:
            known = ", ".join(sorted(configs))
            raise ConfigurationError(
                f"Pulumi.{name}.yaml: {SOURCE_KEY} names unknown stack {source!r} (known stacks: {known})"
            )
    receivers: dict[str, list[str]] = {}
    for name, source in sorted(source_of.items()):
        if source is not None:
            receivers.setdefault(source, []).append(name)
    for source, names in sorted(receivers.items()):
        if len(names) > 1:
            raise ConfigurationError(
                f"{SOURCE_KEY}: {' and '.join(names)} both receive from {source!r}; "
                "the promotion pipeline must be one chain"
            )
    # A cycle has no first stage, so look for it before looking for the start.
    for name in sorted(source_of):
        seen = [name]
        current = source_of[name]
        while current is not None:
            if current in seen:
                loop = [*seen[seen.index(current) :], current]
                raise ConfigurationError(
                    f"{SOURCE_KEY} forms a cycle: {' ← '.join(loop)}; one stack must have no source"
                )
            seen.append(current)
            current = source_of[current]
    linked = {n for n, s in source_of.items() if s is not None} | set(receivers)
    starts = sorted(n for n in linked if source_of[n] is None)
    if not linked:
        # No stack names a source: a single stack is a pipeline of one; more is ambiguous.
        if len(configs) == 1:
            starts = list(configs)
        else:
            raise ConfigurationError(
                f"no stack sets {SOURCE_KEY}, so there is no promotion order among "
                f"{', '.join(sorted(configs))}; set it in each later stage's stack file"
            )
    if len(starts) != 1:  # pragma: no cover - one chain without cycles has exactly one start
        raise ConfigurationError(f"{SOURCE_KEY}: the pipeline has several first stages: {', '.join(starts)}")
    chain = [starts[0]]
    while chain[-1] in receivers:
        chain.append(receivers[chain[-1]][0])
    stages = tuple(_stage(configs[name], configs) for name in chain)
    outside = tuple(sorted(set(configs) - set(chain)))
    return Pipeline(stages=stages, outside=outside)


def _stage(cfg: StackConfig, configs: dict[str, StackConfig]) -> Stage:
    p = cfg.promotion
    return Stage(
        stack=cfg.stack,
        source=p.source,
        approval=p.approval,
        bake_seconds=p.bake_seconds,
        canary_weight=p.canary_weight,
        verify=p.verify,
        pre=p.pre,
        post=p.post,
        config=cfg,
        source_verify=configs[p.source].promotion.verify if p.source is not None else None,
    )


def render_plan(pipeline: Pipeline, selected: Sequence[Stage]) -> str:
    """The resolved pipeline as `promote --plan` prints it."""
    chosen = {s.stack for s in selected}
    lines = [f"Promotion pipeline: {' → '.join(pipeline.names)}"]
    if len(chosen) != len(pipeline.stages):
        lines.append(f"Selected: {' → '.join(s.stack for s in selected)}")
    lines.append("")
    for index, s in enumerate(pipeline.stages, start=1):
        mark = "" if s.stack in chosen else "  (not selected)"
        source = (
            f"release from {s.source}" if s.source else "first stage: deploys the release in its stack file"
        )
        lines.append(f"{index}. {s.stack} — {source}{mark}")
        lines.append(f"   approval:  {'required (asks locally unless --yes)' if s.approval else 'no'}")
        canary = f"{s.canary_weight:.0%} of traffic first, then 100 %" if s.canary_weight else "no"
        lines.append(f"   canary:    {canary}")
        bake = (
            f"{s.bake_seconds} s, polling the stack's alarms"
            if s.bake_seconds
            else "none (alarms checked once)"
        )
        lines.append(f"   bake:      {bake}")
        v = s.verify
        lines.append(
            f"   verify:    health checks within {v.timeout_seconds} s (retry every "
            f"{v.interval_seconds:g} s, backing off), frontend path {v.frontend_path}"
        )
        lines.append(f"   pre:       {'; '.join(s.pre) if s.pre else '-'}")
        lines.append(f"   post:      {'; '.join(s.post) if s.post else '-'}")
    if pipeline.outside:
        lines.append("")
        lines.append(f"Not in the pipeline: {', '.join(pipeline.outside)}")
    return "\n".join(lines)
