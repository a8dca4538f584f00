"""Shared by the rule and pack tests: the shipped stacks rendered offline, and ways to break them.

Failing cases are made by mutating a rendered stack (one property, one resource) so each test
shows exactly which change a rule catches, on resources shaped as the real program makes them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from automation.assure.check import context_for
from automation.assure.render import render_stack
from policy import rules
from policy.rules import Resource, StackContext, Violation

ROOT = Path(__file__).resolve().parents[2]
_DELETE = object()


@cache
def shipped(stack: str) -> StackContext:
    """The rules' view of a shipped stack file, rendered once per test session."""
    return context_for(render_stack(ROOT, stack))


def named(ctx: StackContext, name: str) -> Resource:
    found = [r for r in ctx.resources if r.name == name]
    assert len(found) == 1, f"{len(found)} resources named {name!r}"
    return found[0]


def _merge(props: Any, changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(props)
    for key, value in changes.items():
        if value is _DELETE:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def edit(ctx: StackContext, name: str, **changes: Any) -> StackContext:
    """`ctx` with resource `name`'s properties changed (inputs and outputs alike); DELETE removes one."""
    target = named(ctx, name)
    updated = dataclasses.replace(
        target, inputs=_merge(target.inputs, changes), outputs=_merge(target.outputs, changes)
    )
    return ctx.with_resources(updated if r is target else r for r in ctx.resources)


def edit_document(
    ctx: StackContext, name: str, prop: str, change: Callable[[dict[str, Any]], None]
) -> StackContext:
    """`ctx` with the JSON document in `name`.`prop` (a policy) changed in place by `change`."""
    doc = json.loads(named(ctx, name).inputs[prop])
    change(doc)
    return edit(ctx, name, **{prop: json.dumps(doc)})


def with_options(ctx: StackContext, name: str, **fields: Any) -> StackContext:
    target = named(ctx, name)
    updated = dataclasses.replace(target, **fields)
    return ctx.with_resources(updated if r is target else r for r in ctx.resources)


def drop(ctx: StackContext, name: str) -> StackContext:
    target = named(ctx, name)
    return ctx.with_resources(r for r in ctx.resources if r is not target)


def violations(ctx: StackContext, rule_id: str) -> list[Violation]:
    return [v for v in rules.evaluate(ctx, [rules.RULES_BY_ID[rule_id]])]


def found(ctx: StackContext, rule_id: str) -> list[tuple[str, str]]:
    """(resource, message) for each violation of one rule."""
    return [(v.resource, v.message) for v in violations(ctx, rule_id)]


DELETE = _DELETE
