"""The CrossGuard policy pack "stageline": policy/rules.py under the real Pulumi engine.

    pulumi preview -s dev --policy-pack policy

Each resource rule becomes a ResourceValidationPolicy (the engine hands it one resource's
inputs), each stack rule a StackValidationPolicy (the engine hands it every resource's outputs,
options and provider). Both call the same functions `python -m automation check` runs offline;
this module only translates the engine's arguments into `policy.rules.Resource`/`StackContext`.

The stack context (the repository the deploy role must trust, `artifacts.protect`, waivers) comes
from the stack's config as the engine passes it to the pack (PULUMI_CONFIG), or, when that is not
set, from `Pulumi.<stack>.yaml` next to this directory. Waived violations are not reported, as in
`check`. Whether the stack is the last stage of the promotion chain (production, whatever its name)
comes from the stack files next to this directory.

If that config cannot be read, the other policies still run on what they can check without it, and
`stack-config-readable` reports the config error once, against the stack.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

# The policy host runs this directory as a script, so only policy/ itself is on sys.path. Put
# the repository root first so `policy.rules` and `infra.config` resolve to this checkout.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    Policy,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy import proxy as _proxy  # noqa: E402

from policy import rules  # noqa: E402

PACK_NAME = "stageline"

SEVERITY = {
    rules.CRITICAL: Severity.CRITICAL,
    rules.HIGH: Severity.HIGH,
    rules.MEDIUM: Severity.MEDIUM,
    rules.LOW: Severity.LOW,
}

_UNKNOWN_SENTINELS = frozenset(
    {
        _proxy.UNKNOWN_STRING_VALUE,
        _proxy.UNKNOWN_NUMBER_VALUE,
        _proxy.UNKNOWN_BOOLEAN_VALUE,
        _proxy.UNKNOWN_ARRAY_VALUE,
        _proxy.UNKNOWN_OBJECT_VALUE,
        _proxy.UNKNOWN_ASSET_VALUE,
        _proxy.UNKNOWN_ARCHIVE_VALUE,
    }
)

ContextFactory = Callable[[str, str], rules.StackContext]


def plain(value: Any) -> Any:
    """The engine's property value as plain data: proxies unwrapped, unknowns as "[unknown]".

    CrossGuard wraps properties in proxies that raise when an unknown value is read; the rules
    instead see the unknown marker and skip what they cannot know yet.
    """
    if isinstance(value, _proxy._DictProxy | _proxy._ListProxy):
        value = value["__target"]
    if isinstance(value, Secret):
        value = value.value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str) and value in _UNKNOWN_SENTINELS:
        return rules.UNKNOWN
    return value


def stack_of(urn: str) -> tuple[str, str]:
    """(stack, project) from a URN: `urn:pulumi:STACK::PROJECT::TYPE::NAME`."""
    head, _, rest = urn.partition("::")
    project = rest.partition("::")[0]
    return head.rsplit(":", 1)[-1], project


def _engine_config() -> dict[str, Any]:
    from pulumi.runtime import config as runtime_config

    return runtime_config.get_config_env()


@cache
def engine_context(stack: str, project: str) -> rules.StackContext:
    """The config-derived context of `stack`: from the engine's config, else the stack file."""
    from infra import config as stack_config

    project = project or "stageline"
    prefix = f"{stack_config.NAMESPACE}:"
    engine = _engine_config()
    try:
        production = stack in rules.final_stages(rules.promotion_sources(ROOT))
    except OSError:
        production = False
    try:
        if any(k.startswith(prefix) for k in engine):
            values: dict[str, Any] = {}
            for key, raw in engine.items():
                if key.startswith(prefix):
                    value = raw
                    if isinstance(raw, str) and raw[:1] in ("{", "["):
                        try:
                            value = json.loads(raw)
                        except json.JSONDecodeError:
                            value = raw
                    values[key[len(prefix) :]] = value
            region = engine.get("aws:region")
            cfg = stack_config.parse(
                values,
                stack=stack,
                project=project,
                region=region if isinstance(region, str) else None,
                secret_keys=stack_config.SECRET_KEYS & set(values),
                read_secret=lambda _key: stack_config.Secret(),
            )
        else:
            stack_file = stack_config.read_stack_file(ROOT, stack)
            cfg = stack_config.parse_stack_file(stack_file, project=project)
        rules.check_waivers(cfg.waivers)
    except stack_config.ConfigError as exc:
        # The program itself fails on most such config before registering anything; check what
        # can be checked without it (subjects by shape, no protect expectation), and say why once.
        return rules.StackContext(stack=stack, project=project, production=production, config_error=str(exc))
    return rules.StackContext.from_config(cfg, production=production)


def _report(
    violations: list[rules.Violation], ctx: rules.StackContext, report: ReportViolation, *, with_urn: bool
) -> None:
    for violation in violations:
        if rules.waiver_for(violation, ctx.waivers) is None:
            urn = violation.urn if with_urn and violation.urn else None  # None: against the stack
            report(f"{violation.resource}: {violation.message}", urn)


def resource_policy(rule: rules.Rule, context: ContextFactory = engine_context) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type not in rule.types:
            return
        stack, project = stack_of(args.urn)
        ctx = context(stack, project)
        props = plain(args.props)
        res = rules.Resource(
            type=args.resource_type, name=args.name, inputs=props, outputs=props, urn=args.urn
        )
        _report(rules.resource_violations(rule, res, ctx), ctx, report, with_urn=False)

    return ResourceValidationPolicy(
        name=rule.id,
        description=rule.rationale,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=SEVERITY[rule.severity],
    )


def stack_resources(args: StackValidationArgs) -> list[rules.Resource]:
    found = []
    for r in args.resources:
        props = plain(r.props)
        dependencies = {k: tuple(d.urn for d in v) for k, v in r.property_dependencies.items()}
        dependencies[rules.ANY_PROPERTY] = tuple(d.urn for d in r.dependencies)
        found.append(
            rules.Resource(
                type=r.resource_type,
                name=r.name,
                inputs=props,
                outputs=props,
                urn=r.urn,
                parent=r.parent.urn if r.parent is not None else "",
                provider_inputs=plain(r.provider.props) if r.provider is not None else None,
                protect=bool(r.opts.protect),
                retain_on_delete=None,  # CrossGuard does not pass retainOnDelete
                dependencies=dependencies,
            )
        )
    return found


def stack_policy(rule: rules.Rule, context: ContextFactory = engine_context) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = stack_resources(args)
        if not resources:
            return
        stack, project = stack_of(resources[0].urn)
        ctx = context(stack, project).with_resources(resources)
        _report(rules.stack_violations(rule, ctx), ctx, report, with_urn=True)

    return StackValidationPolicy(
        name=rule.id,
        description=rule.rationale,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=SEVERITY[rule.severity],
    )


def policies(context: ContextFactory = engine_context) -> list[Policy]:
    """One policy per rule, in the rule table's order."""
    return [
        resource_policy(rule, context) if rule.scope == "resource" else stack_policy(rule, context)
        for rule in rules.RULES
    ]


if __name__ == "__main__":
    PolicyPack(
        name=PACK_NAME,
        policies=policies(),
        enforcement_level=EnforcementLevel.MANDATORY,
        description="Stageline's guardrails: exact OIDC trust, least-privilege IAM, private encrypted "
        "buckets, immutable images, live-alias releases, retention, reviewers, tags, protection.",
    )
