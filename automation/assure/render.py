"""`render`: a stack's resources, evaluated offline — no Pulumi CLI, no credentials, no network.

`infra.program.deploy` runs in-process under Pulumi mocks (`infra.simulate`) with the stack's
`Pulumi.<stack>.yaml`. The result is the inventory the engine would be asked to create: type,
logical name, parent component, key properties, protection. `check` and `parity` build on the same
render.

Secrets: secret config gets a random placeholder plaintext for the run; the simulator masks
every value the program keeps secret as "[secret]", and anything still carrying the placeholder
(a secret that lost its secretness on the way) is masked here too and reported as a leak, so
no secret's plaintext can reach the output.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automation.errors import ConfigurationError
from infra.config.model import MASK

if TYPE_CHECKING:
    from infra.config import StackConfig
    from infra.simulate import SimResource, Simulation

Program = Callable[[], None]


def find_root(root: Path | None = None, *, start: Path | None = None) -> Path:
    """`root` if given (it must hold Pulumi.yaml), else the nearest one at or above `start` (the CWD)."""
    if root is not None:
        if not (root / "Pulumi.yaml").is_file():
            raise ConfigurationError(f"--root {root}: no Pulumi.yaml there")
        return root.resolve()
    from automation.engine.project import find_project_root

    return find_project_root(start or Path.cwd())


@dataclass(frozen=True)
class Rendered:
    stack: str
    config: StackConfig
    simulation: Simulation
    leaks: tuple[str, ...] = ()  # "<resource>.<property>" where a secret's placeholder surfaced unmasked

    @property
    def resources(self) -> list[SimResource]:
        return self.simulation.resources


def _scrub(value: Any, token: str, path: str, leaks: list[str]) -> Any:
    if isinstance(value, str) and token in value:
        leaks.append(path)
        return MASK
    if isinstance(value, Mapping):
        return {k: _scrub(v, token, f"{path}.{k}", leaks) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, token, f"{path}[{i}]", leaks) for i, v in enumerate(value)]
    return value


def load_config(root: Path, stack: str) -> StackConfig:
    """The stack file, parsed and validated (ConfigError on any problem)."""
    from infra.config import parse_stack_file, read_stack_file

    return parse_stack_file(read_stack_file(root, stack))


def render_stack(
    root: Path, stack: str, *, program: Program | None = None, config: StackConfig | None = None
) -> Rendered:
    """Evaluate the program for `stack` under mocks. Raises infra.config.ConfigError on bad config."""
    from infra.simulate import simulate_stack_file

    cfg = config if config is not None else load_config(root, stack)
    token = f"stageline-render-secret-{secrets.token_hex(12)}"
    sim = simulate_stack_file(root, stack, secret_placeholder=token, program=program)
    leaks: list[str] = []
    sim.resources = [
        dataclasses.replace(
            r,
            inputs=_scrub(r.inputs, token, r.name, leaks),
            outputs=_scrub(r.outputs, token, r.name, []),
        )
        for r in sim.resources
    ]
    sim.outputs = {k: _scrub(v, token, f"outputs.{k}", leaks) for k, v in sim.outputs.items()}
    return Rendered(stack=stack, config=cfg, simulation=sim, leaks=tuple(leaks))


# --- the inventory ------------------------------------------------------------------------------

# What is worth seeing per type at a glance (paths into the inputs); other types show their short
# scalar inputs.
KEY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "pulumi:providers:aws": ("region", "defaultTags"),
    "pulumi:providers:github": ("owner",),
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": ("url", "clientIdLists"),
    "aws:iam/role:Role": ("name", "permissionsBoundary"),
    "aws:iam/policy:Policy": ("name",),
    "aws:iam/rolePolicy:RolePolicy": ("name",),
    "aws:s3/bucket:Bucket": ("bucket", "bucketPrefix"),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "rules[0].applyServerSideEncryptionByDefault.sseAlgorithm",
    ),
    "aws:s3/bucketVersioning:BucketVersioning": ("versioningConfiguration.status",),
    "aws:ecr/repository:Repository": ("name", "imageTagMutability", "imageScanningConfiguration.scanOnPush"),
    "aws:lambda/function:Function": (
        "name",
        "memorySize",
        "timeout",
        "reservedConcurrentExecutions",
        "publish",
        "imageUri",
    ),
    "aws:lambda/alias:Alias": (
        "name",
        "functionName",
        "functionVersion",
        "routingConfig.additionalVersionWeights",
    ),
    "aws:lambda/permission:Permission": ("function", "qualifier", "principal"),
    "aws:cloudwatch/logGroup:LogGroup": ("name", "retentionInDays"),
    "aws:apigatewayv2/api:Api": ("name", "protocolType"),
    "aws:apigatewayv2/integration:Integration": ("integrationType", "integrationUri"),
    "aws:apigatewayv2/route:Route": ("routeKey",),
    "aws:apigatewayv2/stage:Stage": (
        "name",
        "defaultRouteSettings.throttlingBurstLimit",
        "defaultRouteSettings.throttlingRateLimit",
    ),
    "aws:cloudfront/distribution:Distribution": (
        "comment",
        "origins[0].originPath",
        "priceClass",
        "defaultRootObject",
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name", "metricName", "threshold"),
    "aws:budgets/budget:Budget": ("name", "limitAmount"),
    "aws:sns/topic:Topic": ("name",),
    "aws:sns/topicSubscription:TopicSubscription": ("protocol", "endpoint"),
    "github:index/repositoryEnvironment:RepositoryEnvironment": (
        "environment",
        "preventSelfReview",
        "canAdminsBypass",
        "waitTimer",
    ),
    "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable": ("variableName", "value"),
    "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret": (
        "secretName",
        "value",
        "plaintextValue",
    ),
}
_SHORT = 80


def _get(value: Any, path: str) -> Any:
    """`a.b[0].c` into nested inputs; None when absent."""
    current = value
    for part in path.replace("]", "").replace("[", ".").split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    return text


def _trust_subjects(inputs: Mapping[str, Any]) -> list[str]:
    try:
        doc = json.loads(inputs.get("assumeRolePolicy") or "{}")
    except (TypeError, json.JSONDecodeError):
        return []
    found: list[str] = []
    statements = doc.get("Statement", []) if isinstance(doc, dict) else []
    for st in statements if isinstance(statements, list) else [statements]:
        for clauses in (st.get("Condition") or {}).values() if isinstance(st, dict) else []:
            for key, value in clauses.items():
                if key.endswith(":sub"):
                    found += value if isinstance(value, list) else [value]
    return found


def key_properties(r: SimResource) -> dict[str, str]:
    out: dict[str, str] = {}
    paths = KEY_PROPERTIES.get(r.type)
    if paths is None:
        for key, value in r.inputs.items():
            if isinstance(value, str | int | float | bool) and len(_short(value)) <= _SHORT:
                out[key] = _short(value)
            if len(out) == 4:
                break
    else:
        for path in paths:
            value = _get(r.inputs, path)
            if value is not None:
                out[path] = _short(value)
    if r.type == "aws:iam/role:Role":
        subjects = _trust_subjects(r.inputs)
        if subjects:
            out["trusts"] = ", ".join(subjects)
    return out


def _parent_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else ""


def inventory(rendered: Rendered) -> dict[str, Any]:
    """The JSON document `render --json` prints."""
    sim = rendered.simulation
    by_urn = {r.urn: r for r in sim.resources}
    resources = []
    for r in sim.resources:
        parent = by_urn.get(r.parent)
        resources.append(
            {
                "type": r.type,
                "name": r.name,
                "parent": parent.name if parent else None,
                "parentType": parent.type if parent else None,
                "component": not r.custom,
                "protect": r.protect,
                "retainOnDelete": r.retain_on_delete,
                "keyProperties": key_properties(r),
                "secretInputs": sorted(r.secret_paths),
                "inputs": r.inputs,
                "urn": r.urn,
            }
        )
    return {
        "stack": rendered.stack,
        "region": rendered.config.region,
        "resourceCount": sum(1 for r in sim.resources if r.custom),
        "resources": resources,
        "outputs": {k: MASK if k in sim.secret_outputs else v for k, v in sim.outputs.items()},
        "secretLeaks": list(rendered.leaks),
    }


def render_text(rendered: Rendered) -> str:
    """The inventory as a tree: components, their children indented, key properties on the line."""
    sim = rendered.simulation
    children: dict[str, list[SimResource]] = {}
    urns = {r.urn for r in sim.resources}
    for r in sim.resources:
        children.setdefault(r.parent if r.parent in urns else "", []).append(r)
    custom = sum(1 for r in sim.resources if r.custom)
    lines = [f"stack {rendered.stack} ({rendered.config.region}): {custom} resources"]

    def walk(parent: str, depth: int) -> None:
        for r in children.get(parent, []):
            flags = [f for f, on in (("protect", r.protect), ("retainOnDelete", r.retain_on_delete)) if on]
            props = ", ".join(f"{k}={v}" for k, v in key_properties(r).items())
            line = "  " * depth + f"{r.type}  {r.name}"
            if flags:
                line += f"  [{', '.join(flags)}]"
            if props:
                line += f"  {props}"
            lines.append(line)
            walk(r.urn, depth + 1)

    walk("", 1)
    if sim.outputs:
        lines.append("outputs:")
        for key, value in sim.outputs.items():
            shown = MASK if key in sim.secret_outputs else _short(value)
            lines.append(f"  {key} = {shown}")
    return "\n".join(lines)


def default_stacks(root: Path) -> list[str]:
    """Every stack with a Pulumi.<stack>.yaml, in promotion order (a stack after its promotion.source).

    Files whose stack part is not a valid stack name (`Pulumi.old.dev.yaml`, a backup) are not
    stacks and are ignored.
    """
    from policy.rules import promotion_sources

    sources = promotion_sources(root)
    names = set(sources)
    source = {name: raw if raw in names else None for name, raw in sources.items()}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        parent = source.get(name)
        if parent is None or parent in seen:
            return 0
        return 1 + depth(parent, seen | {name})

    return sorted(names, key=lambda n: (depth(n), n))
