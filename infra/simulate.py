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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config.model import MASK, ConfigError, Secret
from infra.config.stack_file import StackFile, read_stack_file

ACCOUNT_ID = "123456789012"
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


# --- the simulated cloud: one simulation, two front doors ----------------------------------------
#
# What a provider computes for a resource (its physical ID and computed outputs) and what its
# functions return. The in-process mocks below and the stand-in provider plugins that the engine
# tests run under the real Pulumi CLI (tests/standin) both answer from here, so the program sees
# the same cloud either way. Inputs and outputs here are plain values: no secret wrappers, and
# assets reduced to something comparable (the stand-ins do that before calling).

MOCK_PUBLISHED_VERSION = "2"
"""A function's published version under the mocks, which have no history: as if one release had
been published before this one, so a canary has a stable "1" to keep."""

# Lambda function inputs whose change publishes no new version: tags and concurrency are not part
# of a version's code or configuration, and `publish` only says whether versions are published.
_FUNCTION_UNVERSIONED = frozenset(
    {
        "tags",
        "tagsAll",
        "publish",
        "reservedConcurrentExecutions",
        "skipDestroy",
        "replaceSecurityGroupsOnDestroy",
        "replacementSecurityGroupIds",
        "timeouts",
    }
)

AUTONAMED: Mapping[str, str] = {
    "aws:s3/bucket:Bucket": "bucket",
    "aws:s3/bucketV2:BucketV2": "bucket",
    "aws:lambda/function:Function": "name",
    "aws:iam/role:Role": "name",
    "aws:iam/policy:Policy": "name",
    "aws:cloudwatch/logGroup:LogGroup": "name",
    "aws:ecr/repository:Repository": "name",
    "aws:sns/topic:Topic": "name",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "name",
    "aws:apigatewayv2/api:Api": "name",
    "aws:cloudfront/originAccessControl:OriginAccessControl": "name",
    "aws:cloudfront/cachePolicy:CachePolicy": "name",
    "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy": "name",
    "aws:budgets/budget:Budget": "name",
}
"""Resource types the providers name themselves when the program gives no name, and the property."""

# Prefix properties that stand in for the name: the provider appends a unique suffix at create.
_NAME_PREFIXES = {"bucket": "bucketPrefix", "name": "namePrefix"}


def autoname(type_: str, name: str, inputs: Mapping[str, Any], seed: str | None = None) -> dict[str, str]:
    """What a provider's Check adds to `inputs`: `<logical name>-<7 hex>` where no name is given.

    Empty when the type is not autonamed, a name is set, or a prefix asks for a generated name
    (that one is computed at create). `seed` makes the suffix unique (a stand-in passes the URN
    and the engine's random seed); without it the suffix derives from the logical name.
    """
    prop = AUTONAMED.get(type_)
    if prop is None or inputs.get(prop) or inputs.get(_NAME_PREFIXES[prop]):
        return {}
    return {prop: f"{name}-{_digest(seed if seed is not None else name)[:7]}"}


def _arn(service: str, region: str, resource: str, *, global_: bool = False) -> str:
    return f"arn:aws:{service}:{'' if global_ else region}:{ACCOUNT_ID}:{resource}"


def _token(key: str, length: int) -> str:
    """A lower-case alphanumeric identifier derived from `key` (API Gateway IDs look like this)."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    number = int(_digest(key), 16)
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(alphabet))
        chars.append(alphabet[digit])
    return "".join(chars)


def _published_version(
    inputs: Mapping[str, Any], previous: Mapping[str, Any] | None, computed: set[str]
) -> str:
    """Lambda with publish=True: "1" on create, +1 when code or configuration changed, else unchanged."""
    if not inputs.get("publish"):
        return "$LATEST"
    if previous is None:
        return MOCK_PUBLISHED_VERSION
    before = previous.get("version")
    if not isinstance(before, str) or not before.isdigit():
        return "1"
    keys = (set(inputs) | set(previous)) - computed - _FUNCTION_UNVERSIONED
    changed = any(inputs.get(k) != previous.get(k) for k in keys)
    return str(int(before) + 1) if changed else before


def computed_outputs(
    type_: str,
    name: str,
    inputs: Mapping[str, Any],
    region: str,
    previous: Mapping[str, Any] | None = None,
    *,
    seed: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """A resource's physical ID and the outputs its provider computes, after a create or an update.

    `inputs` are the checked inputs (plain values). `previous` holds the resource's outputs before
    this operation: `{}` for a create, the old outputs for an update, and None under the mocks,
    which have no history (a published Lambda version then reads MOCK_PUBLISHED_VERSION).

    `seed` stands for what makes a cloud's generated identifiers unique (distribution and key IDs,
    API IDs, the suffix of a prefixed bucket name). A stand-in passes a fresh value per physical
    resource and the same value again for its updates; the mocks pass none, and everything derives
    from the logical name, the same in every run (IDs that AWS generates are then `<name>-id`).

    The returned outputs are the computed ones only: callers merge them over the inputs.
    """
    ins = dict(inputs)
    key = seed if seed is not None else name
    physical = str(ins.get("name") or f"{name}-{_digest(name)[:7]}")
    generated = f"{name}-id" if seed is None else f"{name}-{_digest(key)[:8]}"
    # None: an ID AWS generates. AWS names a bucket's settings, a repository's policies and a topic's
    # policy after their parent; here they get IDs of their own, so that an ID names one resource.
    ident: str | None = None
    out: dict[str, Any] = {}
    if type_ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        host = str(ins.get("url") or "token.actions.githubusercontent.com").removeprefix("https://")
        out["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{host}"
        ident = out["arn"]
    elif type_ == "aws:iam/role:Role":
        out.update(
            name=physical,
            arn=f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}",
            uniqueId=f"AROA{_digest(key)[:17].upper()}",
        )
        ident = physical
    elif type_ == "aws:iam/policy:Policy":
        out.update(
            name=physical,
            arn=f"arn:aws:iam::{ACCOUNT_ID}:policy/{physical}",
            policyId=f"ANPA{_digest(key)[:17].upper()}",
        )
        ident = out["arn"]
    elif type_ == "aws:iam/rolePolicy:RolePolicy":
        ident = f"{ins.get('role', '')}:{physical}"
    elif type_ in {"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"}:
        bucket = ins.get("bucket") or (
            f"{ins['bucketPrefix']}{_digest(key)[:12]}" if ins.get("bucketPrefix") else physical
        )
        out.update(
            bucket=bucket,
            arn=f"arn:aws:s3:::{bucket}",
            bucketRegionalDomainName=f"{bucket}.s3.{region}.amazonaws.com",
            bucketDomainName=f"{bucket}.s3.amazonaws.com",
            region=region,
        )
        ident = bucket
    elif type_ == "aws:ecr/repository:Repository":
        out.update(
            name=physical,
            arn=_arn("ecr", region, f"repository/{physical}"),
            repositoryUrl=f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{physical}",
            registryId=ACCOUNT_ID,
        )
        ident = physical
    elif type_ in {"aws:ecr/lifecyclePolicy:LifecyclePolicy", "aws:ecr/repositoryPolicy:RepositoryPolicy"}:
        out["registryId"] = ACCOUNT_ID
    elif type_ == "aws:lambda/function:Function":
        arn = _arn("lambda", region, f"function:{physical}")
        computed = {
            "name",
            "arn",
            "version",
            "invokeArn",
            "qualifiedArn",
            "qualifiedInvokeArn",
            "codeSha256",
        } - set(ins)
        version = _published_version(ins, previous, computed)
        out.update(
            name=physical,
            arn=arn,
            version=version,
            invokeArn=f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations",
            qualifiedArn=f"{arn}:{version}",
            qualifiedInvokeArn=f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/"
            f"{arn}:{version}/invocations",
        )
        if ins.get("packageType") == "Zip" and ins.get("sourceCodeHash"):
            # Lambda computes CodeSha256 from the bytes it fetched; a build names the same hash.
            out["codeSha256"] = ins["sourceCodeHash"]
        ident = physical
    elif type_ == "aws:lambda/alias:Alias":
        fn = ins.get("functionName", "fn")
        arn = _arn("lambda", region, f"function:{fn}:{physical}")
        out.update(
            arn=arn,
            invokeArn=f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations",
        )
        ident = arn
    elif type_ == "aws:lambda/permission:Permission":
        if ins.get("statementId"):
            ident = str(ins["statementId"])
        else:
            ident = generated if seed is None else f"terraform-{int(_digest(key)[:16], 16):020d}"
            out["statementId"] = ident
    elif type_ == "aws:cloudwatch/logGroup:LogGroup":
        out.update(name=physical, arn=_arn("logs", region, f"log-group:{physical}"))
        ident = physical
    elif type_ == "aws:apigatewayv2/api:Api":
        api_id = generated if seed is None else _token(key, 10)
        out.update(
            apiEndpoint=f"https://{api_id}.execute-api.{region}.amazonaws.com",
            executionArn=_arn("execute-api", region, api_id),
            arn=f"arn:aws:apigateway:{region}::/apis/{api_id}",
        )
        ident = api_id
    elif type_ == "aws:apigatewayv2/stage:Stage":
        api_id = ins.get("apiId", "x")
        out.update(
            invokeUrl=f"https://{api_id}.execute-api.{region}.amazonaws.com/",
            arn=f"arn:aws:apigateway:{region}::/apis/{api_id}/stages/{physical}",
            executionArn=_arn("execute-api", region, f"{api_id}/{physical}"),
        )
        ident = generated
    elif type_ in {"aws:apigatewayv2/integration:Integration", "aws:apigatewayv2/route:Route"}:
        ident = generated if seed is None else _token(key, 7)
    elif type_ == "aws:cloudfront/distribution:Distribution":
        ident = "E" + _digest(key)[:12].upper()
        out.update(
            domainName=f"d{_digest(key)[12:25]}.cloudfront.net"
            if seed is not None
            else f"d{ident[1:9].lower()}.cloudfront.net",
            arn=_arn("cloudfront", region, f"distribution/{ident}", global_=True),
            hostedZoneId="Z2FDTNDATAQYW2",
            etag=f"E{_digest(key + ':etag')[:12].upper()}",
            status="Deployed",
        )
    elif type_ == "aws:cloudfront/originAccessControl:OriginAccessControl":
        ident = "E" + _digest(f"oac-{key}")[:12].upper()
        out["etag"] = "ETAG"
    elif type_ == "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy":
        ident = str(uuid.UUID(_digest(f"rhp-{key}")[:32]))
        out["etag"] = "ETAG"
    elif type_ == "aws:cloudfront/cachePolicy:CachePolicy":
        ident = str(uuid.UUID(_digest(f"cp-{key}")[:32]))
        out["etag"] = "ETAG"
    elif type_ == "aws:sns/topic:Topic":
        out.update(name=physical, arn=_arn("sns", region, physical), owner=ACCOUNT_ID)
        ident = out["arn"]
    elif type_ == "aws:sns/topicPolicy:TopicPolicy":
        out["owner"] = ACCOUNT_ID
    elif type_ == "aws:sns/topicSubscription:TopicSubscription":
        topic = ins.get("topic") or _arn("sns", region, "topic")
        out.update(arn=f"{topic}:{uuid.UUID(_digest(f'sub-{key}')[:32])}", ownerId=ACCOUNT_ID)
        if ins.get("protocol") == "email":
            out["pendingConfirmation"] = True
        ident = out["arn"]
    elif type_ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        out.update(name=physical, arn=_arn("cloudwatch", region, f"alarm:{physical}"))
        ident = physical
    elif type_ == "aws:kms/key:Key":
        key_id = str(uuid.UUID(_digest(key)[:32]))
        out.update(keyId=key_id, arn=_arn("kms", region, f"key/{key_id}"))
        ident = key_id
    elif type_ == "aws:kms/alias:Alias":
        alias = str(ins.get("name", physical))
        out.update(
            arn=_arn("kms", region, alias),
            targetKeyArn=_arn("kms", region, f"key/{ins.get('targetKeyId', '')}"),
        )
        ident = alias
    elif type_ == "aws:cloudwatch/dashboard:Dashboard":
        board = ins.get("dashboardName", physical)
        out.update(dashboardArn=f"arn:aws:cloudwatch::{ACCOUNT_ID}:dashboard/{board}")
        ident = str(board)
    elif type_ == "aws:budgets/budget:Budget":
        out.update(
            name=physical, accountId=ACCOUNT_ID, arn=f"arn:aws:budgets::{ACCOUNT_ID}:budget/{physical}"
        )
        ident = f"{ACCOUNT_ID}:{physical}"
    elif type_.startswith("aws:"):
        out.setdefault("arn", _arn(type_.split(":")[1].split("/", maxsplit=1)[0], region, physical))
    elif type_ == "github:index/repositoryEnvironment:RepositoryEnvironment":
        out.update(environment=ins.get("environment"))
        ident = f"{ins.get('repository')}:{ins.get('environment')}"
    elif type_ == "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable":
        ident = f"{ins.get('repository')}:{ins.get('environment')}:{ins.get('variableName')}"
    elif type_ == "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret":
        ident = f"{ins.get('repository')}:{ins.get('environment')}:{ins.get('secretName')}"
    elif type_ == "github:index/actionsVariable:ActionsVariable":
        ident = f"{ins.get('repository')}:{ins.get('variableName')}"
    elif type_ == "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy":
        ident = f"{ins.get('repository')}:{ins.get('environment')}:{int(_digest(key)[:6], 16)}"
    elif type_ == "github:index/repositoryRuleset:RepositoryRuleset":
        ruleset_id = int(_digest(key)[:6], 16)
        out.update(rulesetId=ruleset_id, nodeId=f"RRS_{ruleset_id}")
        ident = str(ruleset_id)
    if "name" not in out and "name" in ins:
        out["name"] = ins["name"]
    return ident or generated, out


def invoke_result(function: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
    """What a provider function returns (`aws.get_caller_identity()` …), for the mocks and the stand-ins."""
    if function == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "accountId": ACCOUNT_ID,
            "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/ci",
            "userId": "AIDA0000",
            "id": ACCOUNT_ID,
        }
    if function == "aws:index/getPartition:getPartition":
        return {
            "partition": "aws",
            "dnsSuffix": "amazonaws.com",
            "reverseDnsPrefix": "com.amazonaws",
            "id": "aws",
        }
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
        return _policy_document(args)
    return {}


def _one_or_many(values: Any) -> Any:
    """IAM's form, as the provider renders it: a lone value stands alone, several make a sorted list."""
    items = list(values) if isinstance(values, list | tuple) else [values]
    return items[0] if len(items) == 1 else sorted(items)


def _policy_document(args: Mapping[str, Any]) -> dict[str, Any]:
    """`aws.iam.get_policy_document`: the statements' arguments rendered as an IAM policy document."""
    statements = []
    for st in args.get("statements") or []:
        out: dict[str, Any] = {}
        if st.get("sid"):
            out["Sid"] = st["sid"]
        out["Effect"] = st.get("effect") or "Allow"
        for key, field_ in (
            ("actions", "Action"),
            ("notActions", "NotAction"),
            ("resources", "Resource"),
            ("notResources", "NotResource"),
        ):
            if st.get(key):
                out[field_] = _one_or_many(st[key])
        for key, field_ in (("principals", "Principal"), ("notPrincipals", "NotPrincipal")):
            for principal in st.get(key) or []:
                if principal.get("type") == "*":
                    out[field_] = "*"
                else:
                    out.setdefault(field_, {})[principal["type"]] = _one_or_many(
                        principal.get("identifiers", [])
                    )
        for condition in st.get("conditions") or []:
            tests = out.setdefault("Condition", {}).setdefault(condition["test"], {})
            tests[condition["variable"]] = _one_or_many(condition.get("values", []))
        statements.append(out)
    doc: dict[str, Any] = {"Version": args.get("version") or "2012-10-17", "Statement": statements}
    if args.get("policyId"):
        doc["Id"] = args["policyId"]
    text = json.dumps(doc, indent=2)
    return {
        "json": text,
        "minifiedJson": json.dumps(doc, separators=(",", ":")),
        "id": str(int(_digest(text)[:8], 16)),
    }


_invoke_result = invoke_result  # the name the infra tests knew first


# --- secret handling ----------------------------------------------------------------------------


def _mask(value: Any) -> tuple[Any, bool]:
    """Replace secret-wrapped values in a decoded property struct by the mask."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) == _SECRET_VALUE:
            return MASK, True
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


_STACK_PARENT = "::pulumi:pulumi:Stack$"


def engine_urn(urn: str) -> str:
    """The URN the engine gives a resource: the SDK's mocks put the root stack's type into the type
    chain of the stack's direct children (`…::pulumi:pulumi:Stack$aws:iam/role:Role::x`); the engine
    does not (`…::aws:iam/role:Role::x`). Also applies to provider references (`URN::ID`)."""
    return urn.replace(_STACK_PARENT, "::")


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
            ident, computed = computed_outputs(args.typ, args.name, args.inputs, region_name)
            return ident, {**args.inputs, **computed}

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
            sim.invokes.append((args.token, dict(args.args)))
            return invoke_result(args.token, dict(args.args), region_name), []

    class _Monitor(pmocks.MockMonitor):
        # The SDK calls these on its worker threads, and the mock monitor gives each thread an event
        # loop of its own that nothing closes; each call here runs in a loop it then closes.
        def Invoke(self, request: Any) -> Any:
            with _thread_loop():
                return super().Invoke(request)

        def ReadResource(self, request: Any) -> Any:
            with _thread_loop():
                return super().ReadResource(request)

        def RegisterResource(self, request: Any) -> Any:
            with _thread_loop():
                response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                raw = _struct_to_python(request.object)
                masked, _ = _mask(raw)
                secret_keys = frozenset(k for k, v in raw.items() if _mask(v)[1])
                state = self.resources[response.urn].state if response.urn in self.resources else {}
                outputs, _ = _mask(state if isinstance(state, dict) else {})
                sim.resources.append(
                    SimResource(
                        urn=engine_urn(response.urn),
                        type=request.type,
                        name=request.name,
                        parent=engine_urn(request.parent),
                        inputs=masked,
                        outputs=outputs,
                        secret_paths=secret_keys,
                        protect=bool(request.protect),
                        retain_on_delete=bool(request.retainOnDelete),
                        custom=bool(request.custom),
                        provider=engine_urn(request.provider),
                        delete_before_replace=bool(request.deleteBeforeReplace),
                        aliases=tuple(engine_urn(str(a)) for a in request.aliasURNs),
                        dependencies=tuple(engine_urn(str(d)) for d in request.dependencies),
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


@contextmanager
def _thread_loop() -> Iterator[None]:
    """An event loop for this thread for the duration of the block, closed after it (unless the thread
    already had one, which its owner closes)."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
        owned = False
    except RuntimeError:
        owned = True
    if not owned:
        yield
        return
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


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
    from infra.program import stack_files_at

    # The stacks a stack protects (github.protects) are read from this checkout's stack files.
    with stack_files_at(root):
        return simulate(
            sf.values,
            stack=stack,
            region=region if isinstance(region, str) else None,
            secret_values=secrets,
            extra_config=extra,
            program=program,
        )
