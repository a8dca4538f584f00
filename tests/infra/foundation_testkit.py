"""Helpers for the foundation tests: stack values, cached simulations, a small IAM evaluator, and
the standard the program's own permission documents are held to (`violations`).

The evaluator answers "would these documents allow this request?" the way IAM does for one
account: an explicit Deny wins, otherwise any matching Allow allows. It knows the condition
operators the trust layer uses and fails loudly on any other, so a policy change cannot slip
past a test by using an operator the evaluator would silently ignore.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import iam
from infra.config import read_stack_file
from infra.iam import as_list, statements
from infra.policies import STAR_ONLY_ACTIONS
from infra.simulate import SimResource, Simulation, simulate, simulate_stack_file

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod")
REPOSITORY = "acme-shop/storefront"
ACCOUNT = "123456789012"


def stack_values(stack: str = "dev") -> dict[str, Any]:
    """The `stageline:` values of a shipped stack file, as a fresh copy to modify."""
    return copy.deepcopy(read_stack_file(ROOT, stack).values)


def region_of(stack: str) -> str:
    region = read_stack_file(ROOT, stack).other["aws:region"]
    assert isinstance(region, str)
    return region


@functools.cache
def shipped(stack: str) -> Simulation:
    """The whole program for a shipped stack file, simulated once per test process."""
    return simulate_stack_file(ROOT, stack)


def run(values: Mapping[str, Any], *, stack: str = "dev", **kwargs: Any) -> Simulation:
    return simulate(
        values, stack=stack, region=region_of(stack) if stack in STACKS else "eu-west-1", **kwargs
    )


def doc(resource: SimResource, key: str = "policy") -> dict[str, Any]:
    value = resource.inputs[key]
    assert isinstance(value, str), f"{resource.name}.{key} is not rendered JSON: {value!r}"
    parsed = json.loads(value)
    assert isinstance(parsed, dict)
    return parsed


def role_documents(sim: Simulation, role: SimResource) -> list[dict[str, Any]]:
    """Every permission document attached to `role` in the simulation, managed or inline."""
    role_name = role.inputs["name"]
    policies = {r.outputs["arn"]: r for r in sim.of_type("aws:iam/policy:Policy")}
    docs = []
    for attachment in sim.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        if attachment.inputs["role"] == role_name:
            docs.append(doc(policies[attachment.inputs["policyArn"]]))
    for inline in sim.of_type("aws:iam/rolePolicy:RolePolicy"):
        if inline.inputs["role"] in (role_name, role.id):
            docs.append(doc(inline))
    return docs


def trust_subjects(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(operator, value) of every `:sub` condition in a trust policy."""
    found = []
    for st in statements(document):
        for op, block in (st.get("Condition") or {}).items():
            for key, value in block.items():
                if key.endswith(":sub"):
                    found += [(op, str(v)) for v in as_list(value)]
    return found


# --- a small IAM evaluator ---------------------------------------------------------------


def _like(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    for op, block in condition.items():
        for key, expected in block.items():
            wanted = [str(v) for v in as_list(expected)]
            present = key in context
            value = context.get(key, "")
            if op == "StringEquals":
                ok = present and value in wanted
            elif op == "StringNotEquals":
                ok = not present or value not in wanted  # IAM: a negated operator holds for a missing key
            elif op in ("StringLike", "ArnLike"):
                ok = present and any(_like(w, value) for w in wanted)
            elif op == "Null":
                ok = (not present) == (wanted == ["true"])
            elif op == "Bool":
                ok = present and value.lower() in wanted
            elif op == "BoolIfExists":
                ok = not present or value.lower() in wanted
            else:
                raise AssertionError(f"the test evaluator does not know condition operator {op}")
            if not ok:
                return False
    return True


def _statement_matches(st: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str]) -> bool:
    assert "NotAction" not in st and "NotResource" not in st, "the evaluator does not handle Not* elements"
    if not any(_like(str(a).lower(), action.lower()) for a in as_list(st.get("Action"))):
        return False
    # Trust policies name no Resource: they apply to the role they are attached to.
    if "Resource" in st and not any(_like(str(r), resource) for r in as_list(st["Resource"])):
        return False
    return _condition_holds(st.get("Condition") or {}, context)


def allowed(
    documents: Iterable[Mapping[str, Any]],
    action: str,
    resource: str,
    context: Mapping[str, str] | None = None,
) -> bool:
    """Whether IAM would allow `action` on `resource` under these identity policies."""
    ctx = dict(context or {})
    matching = [
        st for d in documents for st in statements(d) if _statement_matches(st, action, resource, ctx)
    ]
    if any(st.get("Effect") == "Deny" for st in matching):
        return False
    return any(st.get("Effect") == "Allow" for st in matching)


# Verbs that only read. kms:Decrypt is listed as a write by AWS but changes nothing.
READ_PREFIXES = ("Get", "List", "Describe", "View", "BatchGet", "BatchCheck", "Head")


def is_read_only(action: str) -> bool:
    service, _, name = action.partition(":")
    if service == "apigateway":
        return name == "GET"
    return name.startswith(READ_PREFIXES) or action == "kms:Decrypt"


# --- the program's own standard for its permission documents ------------------------------------


@dataclass(frozen=True)
class Owner:
    """The stack whose documents are judged (an `infra.iam.Owner`)."""

    stack: str
    project: str = "stageline"

    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.stack}"


def violations(
    document: Mapping[str, Any], stack: str = "dev", *, star_only_actions: Iterable[str] = STAR_ONLY_ACTIONS
) -> list[str]:
    """What makes a document the program writes for `stack` unacceptable, one line per problem.

    Stricter than the guardrail rules (which the program passes too: every allow judged here also
    passes `iam-no-admin`, `iam-no-passrole-star` and `iam-no-iam-wildcard`), with the same judgement
    of breadth, `infra.iam`. Only Allow statements grant, so only they are judged: no
    `NotAction`/`NotResource`; no action pattern covering a whole service; IAM actions named one by
    one; nothing on every resource of a service except the actions AWS authorizes only on "*";
    `iam:PassRole` only on the stack's own roles and only to a named service; no privilege escalation
    beyond the stack's own roles and policies.
    """
    owner = Owner(stack)
    star_ok = frozenset(star_only_actions)
    found: list[str] = []
    for i, st in enumerate(statements(document)):
        if not iam.allows(st):
            continue
        where = f"statement {st.get('Sid') or i}"
        if "NotAction" in st or "NotResource" in st:
            found.append(f"{where}: NotAction/NotResource in an Allow grants everything else")
        if iam.every_action(st) and iam.every_resource(st) is not None:
            found.append(f"{where}: allows every action on every resource")
        resources = iam.resource_patterns(st)
        for action in (str(a) for a in as_list(st.get("Action"))):
            service = action.partition(":")[0]
            wholly = iam.every_action_of(action)
            if wholly is not None:
                found.append(f"{where}: allows every action of {wholly}")
            elif service == "iam" and iam.is_pattern(action):
                found.append(f"{where}: IAM actions must be named, got {action}")
            if action not in star_ok and any(iam.every_resource_of(r, service) for r in resources):
                found.append(f"{where}: allows {action} on every resource")
        if iam.action_allowed(st, "iam:PassRole"):
            condition = st.get("Condition") or {}
            if not any("iam:PassedToService" in (block or {}) for block in condition.values()):
                found.append(f"{where}: iam:PassRole without an iam:PassedToService condition")
            beyond = iam.passrole_beyond(st, owner)
            if beyond is not None:
                found.append(f"{where}: iam:PassRole on roles outside {owner.prefix}-* ({beyond[0]})")
        if iam.every_iam_action(st, owner):
            found.append(f"{where}: allows every IAM action (iam:*)")
        for action, pattern in iam.escalations(st, owner):
            found.append(f"{where}: allows {action} on {pattern}, beyond {owner.prefix}-*")
    return found
