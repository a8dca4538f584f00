"""Evaluate the Pulumi program in-process under mocks: no CLI, no credentials, no network.

This is what `python -m automation render/check/parity` and the infra tests run. It records,
for every resource the program registers, what the engine would receive: type, logical name,
parent, inputs (secrets masked), and the options that matter to review (protect,
retain_on_delete, provider). Stack exports are recorded with their secretness.

The mocks return plausible computed outputs (ARNs, URLs, domain names) so that values the
program derives from other resources — GitHub variables, IAM policies — can be asserted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import ConfigError, Secret, StackFile, read_stack_file

ACCOUNT_ID = "123456789012"
SECRET_MASK = "[secret]"  # noqa: S105 - the mask shown instead of a secret, not a secret
# The wire format marks a secret value with this signature key and value (pulumi/sdk rpc).
_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105
_SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
_lock = threading.Lock()


@dataclass(frozen=True)
class SimResource:
    urn: str
    type: str
    name: str
    parent: str  # parent URN; "" for resources at the stack's root
    inputs: Mapping[str, Any]  # secrets replaced by "[secret]"
    outputs: Mapping[str, Any]  # what the mocks returned (inputs plus computed values)
    secret_paths: frozenset[str]  # top-level input keys that held a secret
    protect: bool = False
    retain_on_delete: bool = False
    custom: bool = True
    provider: str = ""
    delete_before_replace: bool = False
    aliases: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()  # URNs of explicit and input dependencies, as the engine sees them
    id: str = ""  # the physical ID the mocks assigned (what `resource.id` resolves to)

    @property
    def parent_type(self) -> str:
        if not self.parent:
            return ""
        return self.parent.split("::")[-2].split("$")[-1]


@dataclass
class Simulation:
    stack: str
    resources: list[SimResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # stack exports, secrets masked
    secret_outputs: set[str] = field(default_factory=set)
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of_type(self, type_: str) -> list[SimResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> SimResource:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}")
        return found[0]

    def by_urn(self, urn: str) -> SimResource:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def types(self) -> set[str]:
        return {r.type for r in self.resources}


def _digest(text: str) -> str:
    """A stable hex string for mock identifiers: the same name gives the same ID in every run."""
    return hashlib.sha256(text.encode()).hexdigest()


# --- mock outputs -------------------------------------------------------------------------------


def _arn(service: str, region: str, resource: str, *, global_: bool = False) -> str:
    return f"arn:aws:{service}:{'' if global_ else region}:{ACCOUNT_ID}:{resource}"


def _computed(type_: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    """Plausible provider-computed outputs for the resource types the program uses."""
    physical = inputs.get("name") or f"{name}-{_digest(name)[:7]}"
    out: dict[str, Any] = {}
    if type_ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        out["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/token.actions.githubusercontent.com"
    elif type_ == "aws:iam/role:Role":
        out.update(name=physical, arn=f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}")
    elif type_ == "aws:iam/policy:Policy":
        out.update(name=physical, arn=f"arn:aws:iam::{ACCOUNT_ID}:policy/{physical}")
    elif type_ in {"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"}:
        bucket = inputs.get("bucket") or (
            f"{inputs['bucketPrefix']}{_digest(name)[:12]}" if inputs.get("bucketPrefix") else physical
        )
        out.update(
            bucket=bucket,
            arn=f"arn:aws:s3:::{bucket}",
            bucketRegionalDomainName=f"{bucket}.s3.{region}.amazonaws.com",
            bucketDomainName=f"{bucket}.s3.amazonaws.com",
        )
    elif type_ == "aws:ecr/repository:Repository":
        out.update(
            name=physical,
            arn=_arn("ecr", region, f"repository/{physical}"),
            repositoryUrl=f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{physical}",
            registryId=ACCOUNT_ID,
        )
    elif type_ == "aws:lambda/function:Function":
        out.update(
            name=physical,
            arn=_arn("lambda", region, f"function:{physical}"),
            version="2",
            invokeArn=f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/"
            f"{_arn('lambda', region, f'function:{physical}')}/invocations",
            qualifiedArn=_arn("lambda", region, f"function:{physical}:2"),
        )
    elif type_ == "aws:lambda/alias:Alias":
        fn = inputs.get("functionName", "fn")
        out.update(
            arn=_arn("lambda", region, f"function:{fn}:{physical}"),
            invokeArn=f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/"
            f"{_arn('lambda', region, f'function:{fn}:{physical}')}/invocations",
        )
    elif type_ == "aws:cloudwatch/logGroup:LogGroup":
        out.update(name=physical, arn=_arn("logs", region, f"log-group:{physical}"))
    elif type_ == "aws:apigatewayv2/api:Api":
        out.update(
            apiEndpoint=f"https://{name[:10]}.execute-api.{region}.amazonaws.com",
            executionArn=_arn("execute-api", region, name[:10]),
            arn=_arn("apigateway", region, f"/apis/{name}"),
        )
    elif type_ == "aws:apigatewayv2/stage:Stage":
        out.update(
            invokeUrl=f"https://{name[:10]}.execute-api.{region}.amazonaws.com/",
            arn=_arn("apigateway", region, f"/apis/x/stages/{physical}"),
        )
    elif type_ == "aws:cloudfront/distribution:Distribution":
        ident = "E" + _digest(name)[:12].upper()
        out.update(
            domainName=f"d{ident[1:9].lower()}.cloudfront.net",
            arn=_arn("cloudfront", region, f"distribution/{ident}", global_=True),
            hostedZoneId="Z2FDTNDATAQYW2",
        )
        return {**out, "_id": ident}
    elif type_ == "aws:sns/topic:Topic":
        out.update(name=physical, arn=_arn("sns", region, physical))
    elif type_ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        out.update(name=physical, arn=_arn("cloudwatch", region, f"alarm:{physical}"))
    elif type_ == "aws:kms/key:Key":
        key_id = str(uuid.UUID(_digest(name)[:32]))
        out.update(keyId=key_id, arn=_arn("kms", region, f"key/{key_id}"))
    elif type_ == "aws:kms/alias:Alias":
        out.update(
            arn=_arn("kms", region, str(inputs.get("name", physical))),
            targetKeyArn=_arn("kms", region, f"key/{inputs.get('targetKeyId', '')}"),
        )
    elif type_ == "aws:cloudwatch/dashboard:Dashboard":
        board = inputs.get("dashboardName", physical)
        out.update(dashboardArn=f"arn:aws:cloudwatch::{ACCOUNT_ID}:dashboard/{board}")
    elif type_ == "aws:budgets/budget:Budget":
        out.update(
            name=physical, accountId=ACCOUNT_ID, arn=f"arn:aws:budgets::{ACCOUNT_ID}:budget/{physical}"
        )
    elif type_ == "aws:cloudfront/originAccessControl:OriginAccessControl":
        ident = "E" + _digest(f"oac-{name}")[:12].upper()
        return {**out, "etag": "ETAG", "_id": ident}
    elif type_ == "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy":
        ident = str(uuid.UUID(_digest(f"rhp-{name}")[:32]))
        return {**out, "etag": "ETAG", "_id": ident}
    elif type_ == "aws:cloudfront/cachePolicy:CachePolicy":
        ident = str(uuid.UUID(_digest(f"cp-{name}")[:32]))
        return {**out, "etag": "ETAG", "_id": ident}
    elif type_.startswith("aws:"):
        out.setdefault("arn", _arn(type_.split(":")[1].split("/", maxsplit=1)[0], region, physical))
    elif type_ == "github:index/repositoryEnvironment:RepositoryEnvironment":
        out.update(environment=inputs.get("environment"))
    if "name" not in out and "name" in inputs:
        out["name"] = inputs["name"]
    return out


def _invoke_result(function: str, args: dict[str, Any], region: str) -> dict[str, Any]:
    if function == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "accountId": ACCOUNT_ID,
            "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/ci",
            "userId": "AIDA0000",
            "id": ACCOUNT_ID,
        }
    if function == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
    if function == "aws:index/getRegion:getRegion":
        return {"name": region, "region": region, "id": region}
    if function == "github:index/getUser:getUser":
        login = str(args.get("username", ""))
        return {
            "id": str(int(_digest(login)[:6], 16)),
            "login": login,
            "nodeId": f"U_{login}",
        }
    if function == "github:index/getTeam:getTeam":
        slug = str(args.get("slug", ""))
        return {
            "id": str(int(_digest(slug)[:6], 16)),
            "slug": slug,
            "nodeId": f"T_{slug}",
            "name": slug,
        }
    if function.startswith("aws:iam/getPolicyDocument"):
        return {"json": json.dumps({"Version": "2012-10-17", "Statement": []})}
    return {}


# --- secret handling ----------------------------------------------------------------------------


def _mask(value: Any) -> tuple[Any, bool]:
    """Replace secret-wrapped values in a decoded property struct by the mask."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) == _SECRET_VALUE:
            return SECRET_MASK, True
        found = False
        masked = {}
        for k, v in value.items():
            masked[k], s = _mask(v)
            found = found or s
        return masked, found
    if isinstance(value, list):
        items = [_mask(v) for v in value]
        return [m for m, _ in items], any(s for _, s in items)
    if value == _UNKNOWN:
        return "[unknown]", False
    return value, False


def _struct_to_python(struct: Any) -> Any:
    from google.protobuf import json_format  # type: ignore[import-untyped]

    return json_format.MessageToDict(struct, preserving_proto_field_name=True)


# --- running the program ------------------------------------------------------------------------


def _config_map(
    values: Mapping[str, Any], region: str | None, secret_values: Mapping[str, str], extra: Mapping[str, Any]
) -> tuple[dict[str, str], list[str]]:
    config: dict[str, str] = {}
    secrets: list[str] = []
    for key, value in values.items():
        full = f"stageline:{key}"
        if key in secret_values:
            config[full] = secret_values[key]
            secrets.append(full)
        elif isinstance(value, str):
            config[full] = value
        else:
            config[full] = json.dumps(value)
    for key, value in extra.items():
        config[key] = value if isinstance(value, str) else json.dumps(value)
    if region:
        config["aws:region"] = region
    return config, secrets


def simulate(
    values: Mapping[str, Any],
    *,
    stack: str,
    region: str | None = "eu-west-1",
    project: str = "stageline",
    secret_values: Mapping[str, str] | None = None,
    extra_config: Mapping[str, Any] | None = None,
    program: Callable[[], None] | None = None,
) -> Simulation:
    """Run `program` (default: `infra.program.deploy`) for one stack's config under mocks.

    `values` are the `stageline:` keys without namespace; `secret_values` gives the plaintext the
    engine would decrypt for secret keys (render passes a placeholder). Raises ConfigError for
    invalid config exactly as `pulumi up` would fail.
    """
    import pulumi
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import settings as psettings
    from pulumi.runtime.stack import run_in_stack

    if program is None:
        from infra.program import deploy

        program = deploy
    run: Callable[[], None] = program

    sim = Simulation(stack=stack)
    secret_values = dict(secret_values or {})
    region_name = region or "eu-west-1"

    class _Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
            computed = _computed(args.typ, args.name, args.inputs, region_name)
            ident = computed.pop("_id", None) or f"{args.name}-id"
            return ident, {**args.inputs, **computed}

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
            sim.invokes.append((args.token, dict(args.args)))
            return _invoke_result(args.token, dict(args.args), region_name), []

    class _Monitor(pmocks.MockMonitor):
        def RegisterResource(self, request: Any) -> Any:
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                raw = _struct_to_python(request.object)
                masked, _ = _mask(raw)
                secret_keys = frozenset(k for k, v in raw.items() if _mask(v)[1])
                state = self.resources[response.urn].state if response.urn in self.resources else {}
                outputs, _ = _mask(state if isinstance(state, dict) else {})
                sim.resources.append(
                    SimResource(
                        urn=response.urn,
                        type=request.type,
                        name=request.name,
                        parent=request.parent,
                        inputs=masked,
                        outputs=outputs,
                        secret_paths=secret_keys,
                        protect=bool(request.protect),
                        retain_on_delete=bool(request.retainOnDelete),
                        custom=bool(request.custom),
                        provider=request.provider,
                        delete_before_replace=bool(request.deleteBeforeReplace),
                        aliases=tuple(str(a) for a in request.aliasURNs),
                        dependencies=tuple(str(d) for d in request.dependencies),
                        id=str(response.id),
                    )
                )
            return response

        def RegisterResourceOutputs(self, request: Any) -> Any:
            if request.urn.endswith(f"pulumi:pulumi:Stack::{project}-{stack}"):
                raw = _struct_to_python(request.outputs)
                for key, value in raw.items():
                    masked, secret = _mask(value)
                    sim.outputs[key] = masked
                    if secret:
                        sim.secret_outputs.add(key)
            return super().RegisterResourceOutputs(request)

    config, secret_keys = _config_map(values, region, secret_values, extra_config or {})
    # The Pulumi runtime keeps its settings in process-wide state: one simulation at a time.
    with _lock:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            mocks = _Mocks()
            pulumi.runtime.set_mocks(
                mocks, project=project, stack=stack, preview=False, monitor=_Monitor(mocks)
            )
            pulumi.runtime.set_all_config(config, secret_keys)
            psettings.SETTINGS.rpc_manager.clear()
            psettings.SETTINGS.outputs.clear()
            # set_mocks registers a root stack of its own; run_in_stack makes the real one, which
            # records the program's exports.
            psettings.set_root_resource(None)  # type: ignore[arg-type]
            loop.run_until_complete(run_in_stack(run))
        except pulumi.RunError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ConfigError):
                raise cause from None
            raise
        finally:
            pulumi.runtime.set_all_config({}, [])
            loop.close()
            asyncio.set_event_loop(None)
    return sim


PLACEHOLDER_SECRET = "placeholder-secret-value"  # noqa: S105 - stands in for ciphertext we cannot decrypt


def simulate_stack_file(
    root: Path,
    stack: str,
    *,
    secret_placeholder: str = PLACEHOLDER_SECRET,
    program: Callable[[], None] | None = None,
) -> Simulation:
    """Simulate a shipped `Pulumi.<stack>.yaml`. Secret keys get a placeholder plaintext."""
    sf: StackFile = read_stack_file(root, stack)
    region = sf.other.get("aws:region")
    secrets = {k: secret_placeholder for k in sf.secret_keys}
    # Other namespaces' plain values (e.g. github:owner) pass through; their secrets stay out.
    extra = {k: v for k, v in sf.other.items() if k != "aws:region" and not isinstance(v, Secret)}
    return simulate(
        sf.values,
        stack=stack,
        region=region if isinstance(region, str) else None,
        secret_values=secrets,
        extra_config=extra,
        program=program,
    )
