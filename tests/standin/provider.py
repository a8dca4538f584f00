"""Stand-in provider plugins `pulumi-resource-aws` and `pulumi-resource-github`, for the engine tests.

Test equipment, not product. The real plugins cannot be built here, so `tests/standin/bin` holds two
wrappers that run this module (`python -m tests.standin.provider aws|github ENGINE_ADDRESS`). It
speaks Pulumi's ResourceProvider gRPC protocol as the real plugins do: it serves on a free port of
127.0.0.1, prints the port on stdout, checks the engine's health, stops on SIGINT, and answers
Check/Diff/Create/Read/Update/Delete/Invoke for the resource types the program declares.

What a resource computes (IDs, ARNs, Lambda's published version …) and what functions return come
from `infra.simulate`, the same simulation the in-process mocks use. What the plugins create lives
in the stand-in cloud (`tests.standin.cloud`), which Read answers from: editing it is drift.

Replacement follows a small table of the properties that force a new resource on AWS and GitHub
(REPLACES); a property missing from it is updated in place.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import uuid
from collections.abc import Mapping
from concurrent import futures
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

from infra import simulate
from policy.rules import TAGGABLE_TYPES  # the AWS types that take tags, checked against the SDK
from tests.standin.cloud import Cloud, CloudError, Record, is_secret, unwrap

PACKAGES = ("aws", "github")
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the wire's unknown value (pulumi/sdk rpc)
ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"
ARCHIVE_SIG = "0def7320c3a5731c473e5ecbe6d01bc7"
SIG_KEY = "4dabf18193072939515e22adb298388d"
HEALTH_INTERVAL_SECONDS = 2.0

# Properties whose change replaces the resource (ForceNew in the providers' schemas).
REPLACES: Mapping[str, frozenset[str]] = {
    t: frozenset(keys)
    for t, keys in {
        "aws:s3/bucket:Bucket": {"bucket", "bucketPrefix", "objectLockEnabled"},
        "aws:s3/bucketV2:BucketV2": {"bucket", "bucketPrefix", "objectLockEnabled"},
        "aws:s3/bucketPolicy:BucketPolicy": {"bucket"},
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls": {"bucket"},
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": {"bucket"},
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": {
            "bucket",
            "expectedBucketOwner",
        },
        "aws:s3/bucketVersioning:BucketVersioning": {"bucket", "expectedBucketOwner"},
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": {"bucket", "expectedBucketOwner"},
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider": {"url"},
        "aws:iam/role:Role": {"name", "namePrefix", "path"},
        "aws:iam/policy:Policy": {"name", "namePrefix", "path", "description"},
        "aws:iam/rolePolicy:RolePolicy": {"name", "namePrefix", "role"},
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment": {"role", "policyArn"},
        "aws:ecr/repository:Repository": {"name", "encryptionConfigurations"},
        "aws:ecr/lifecyclePolicy:LifecyclePolicy": {"repository"},
        "aws:ecr/repositoryPolicy:RepositoryPolicy": {"repository"},
        "aws:lambda/function:Function": {"name", "packageType"},
        "aws:lambda/alias:Alias": {"name", "functionName"},
        "aws:lambda/permission:Permission": {
            "action",
            "function",
            "principal",
            "qualifier",
            "sourceArn",
            "sourceAccount",
            "statementId",
            "statementIdPrefix",
            "eventSourceToken",
            "principalOrgId",
            "functionUrlAuthType",
        },
        "aws:cloudwatch/logGroup:LogGroup": {"name", "namePrefix", "logGroupClass"},
        "aws:cloudwatch/metricAlarm:MetricAlarm": {"name"},
        "aws:cloudwatch/dashboard:Dashboard": {"dashboardName"},
        "aws:apigatewayv2/api:Api": {"protocolType"},
        "aws:apigatewayv2/stage:Stage": {"apiId", "name"},
        "aws:apigatewayv2/integration:Integration": {"apiId", "integrationType"},
        "aws:apigatewayv2/route:Route": {"apiId"},
        "aws:sns/topic:Topic": {"name", "namePrefix", "fifoTopic"},
        "aws:sns/topicPolicy:TopicPolicy": {"arn"},
        "aws:sns/topicSubscription:TopicSubscription": {"topic", "protocol", "endpoint"},
        "aws:kms/key:Key": {"customerMasterKeySpec", "keyUsage", "multiRegion"},
        "aws:kms/alias:Alias": {"name", "namePrefix"},
        "aws:budgets/budget:Budget": {"name", "namePrefix", "accountId"},
        "github:index/repositoryEnvironment:RepositoryEnvironment": {"repository", "environment"},
        "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable": {
            "repository",
            "environment",
            "variableName",
        },
        "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret": {
            "repository",
            "environment",
            "secretName",
        },
        "github:index/actionsVariable:ActionsVariable": {"repository", "variableName"},
        "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy": {
            "repository",
            "environment",
        },
    }.items()
}

# Resource types whose ID is a name AWS or GitHub keeps unique: creating a second one fails.
_UNIQUE_IDS = frozenset(
    {
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketV2:BucketV2",
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "aws:iam/role:Role",
        "aws:iam/policy:Policy",
        "aws:ecr/repository:Repository",
        "aws:lambda/function:Function",
        "aws:lambda/alias:Alias",
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "aws:cloudwatch/dashboard:Dashboard",
        "aws:sns/topic:Topic",
        "aws:kms/alias:Alias",
        "aws:budgets/budget:Budget",
        "github:index/repositoryEnvironment:RepositoryEnvironment",
        "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable",
        "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret",
        "github:index/actionsVariable:ActionsVariable",
    }
)

_PHYSICAL_NAME_KEYS = ("bucket", "name", "dashboardName", "variableName", "secretName", "environment")


# --- the wire's values ----------------------------------------------------------------------------


def _ints(value: Any) -> Any:
    """Struct numbers are doubles: give integral ones back as ints, so the cloud reads naturally."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def from_struct(struct: struct_pb2.Struct | None) -> dict[str, Any]:
    if struct is None:
        return {}
    return dict(_ints(json_format.MessageToDict(struct)))


def to_struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(dict(value))
    return struct


def has_unknown(value: Any) -> bool:
    if value == UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return False


def _is_asset(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(SIG_KEY) in (ASSET_SIG, ARCHIVE_SIG)


def elide_assets(value: Any) -> Any:
    """Assets and archives reduced to their signature and hash: what the cloud keeps of them."""
    if _is_asset(value):
        return {SIG_KEY: value[SIG_KEY], "hash": value.get("hash", "")}
    if isinstance(value, Mapping):
        return {k: elide_assets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [elide_assets(v) for v in value]
    return value


def canonical(value: Any) -> Any:
    """A value as infra.simulate and Diff compare it: secrets unwrapped, assets by hash, null as absent."""
    value = elide_assets(unwrap(value))
    if isinstance(value, Mapping):
        return {k: canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def _wrap_like(template: Any, value: Any) -> Any:
    """`value`, wrapped as a secret when `template` (the input of the same name) is one."""
    if is_secret(template) and not is_secret(value):
        return {SIG_KEY: template[SIG_KEY], "value": value}
    return value


# STAGELINE_STANDIN_ENDPOINT (e.g. http://127.0.0.1:8080) points the HTTP API's and the CloudFront
# distributions' addresses at a local server, so health checks and promotion's verification reach
# something; the path keeps each endpoint apart (/api/<api id>, /cdn/<distribution id>).
ENDPOINT_ENV = "STAGELINE_STANDIN_ENDPOINT"


def local_endpoints(type_: str, ident: str, computed: dict[str, Any]) -> dict[str, Any]:
    base = os.environ.get(ENDPOINT_ENV, "").rstrip("/")
    if not base:
        return computed
    if type_ == "aws:apigatewayv2/api:Api":
        computed["apiEndpoint"] = f"{base}/api/{ident}"
    elif type_ == "aws:apigatewayv2/stage:Stage" and "invokeUrl" in computed:
        api = str(computed["invokeUrl"]).split("//", 1)[-1].split(".", 1)[0]
        computed["invokeUrl"] = f"{base}/api/{api}/"
    elif type_ == "aws:cloudfront/distribution:Distribution":
        computed["domainName"] = f"{base}/cdn/{ident}"
    return computed


# STAGELINE_STANDIN_LATENCY (seconds, e.g. 0.1) makes every call that reaches the cloud (Read, and
# Create/Update/Delete outside a preview) wait that long first, as a cloud API's round trip does, so a
# benchmark can measure what a refresh costs when it waits on the network (as against AWS) rather
# than on the CPU. Unset: the stand-in cloud answers at once.
LATENCY_ENV = "STAGELINE_STANDIN_LATENCY"


def round_trip_seconds() -> float:
    raw = os.environ.get(LATENCY_ENV, "")
    try:
        return max(0.0, float(raw)) if raw else 0.0
    except ValueError:
        raise SystemExit(f"error: {LATENCY_ENV} must be a number of seconds, got {raw!r}") from None


def plugin_version(package: str) -> str:
    """The version of the installed SDK's plugin (`pulumi-plugin.json`), so the engine sees a match."""
    spec = find_spec(f"pulumi_{package}")
    if spec is None or not spec.submodule_search_locations:
        return "0.0.0"
    meta = Path(next(iter(spec.submodule_search_locations))) / "pulumi-plugin.json"
    try:
        return str(json.loads(meta.read_text()).get("version", "0.0.0")).removeprefix("v")
    except (OSError, ValueError):
        return "0.0.0"


class ProviderError(Exception):
    """A failure to report to the engine as the provider's error (gRPC UNKNOWN, like the real ones)."""


# --- the provider ---------------------------------------------------------------------------------


class StandinProvider(provider_pb2_grpc.ResourceProviderServicer):
    def __init__(self, package: str, cloud: Cloud, stop: threading.Event) -> None:
        self.package = package
        self.cloud = cloud
        self.version = plugin_version(package)
        self.region = "us-east-1"
        self.configured: dict[str, Any] = {}
        self.env_token: str | None = None
        self.default_tags: dict[str, Any] = {}
        self.cancelled = threading.Event()
        self.stop = stop
        self.latency = round_trip_seconds()

    def _round_trip(self) -> None:
        if self.latency and self.cancelled.wait(self.latency):
            raise ProviderError("the operation was cancelled")

    # --- plugin lifecycle ------------------------------------------------------------------------

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=self.version)

    def Handshake(self, request: Any, context: Any) -> Any:
        return provider_pb2.ProviderHandshakeResponse(
            accept_secrets=True, accept_resources=False, accept_outputs=False
        )

    def GetSchema(self, request: Any, context: Any) -> Any:
        return provider_pb2.GetSchemaResponse(
            schema=json.dumps({"name": self.package, "version": self.version})
        )

    def CheckConfig(self, request: Any, context: Any) -> Any:
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request: Any, context: Any) -> Any:
        olds = from_struct(request.old_inputs) or from_struct(request.olds)
        news = from_struct(request.news)
        return self._diff(olds, news, replaces=frozenset(), ignore=set(request.ignoreChanges))

    def Configure(self, request: Any, context: Any) -> Any:
        args = unwrap(from_struct(request.args))
        variables = dict(request.variables)
        self.configured = args
        # Like the real pulumi-github provider: with no `token` input, the token comes from the
        # plugin's own environment, read here and kept in memory only (never an input or output).
        self.env_token = os.environ.get("GITHUB_TOKEN") if self.package == "github" else None
        defaults = args.get("defaultTags")
        if isinstance(defaults, str):  # provider inputs that are objects arrive as JSON
            defaults = json.loads(defaults or "{}")
        tags = defaults.get("tags") if isinstance(defaults, Mapping) else None
        self.default_tags = dict(tags) if isinstance(tags, Mapping) else {}
        if self.package == "aws":
            region = args.get("region") or variables.get("aws:config:region")
            if region:
                self.region = str(region)
        return provider_pb2.ConfigureResponse(
            acceptSecrets=True, supportsPreview=True, acceptResources=False, acceptOutputs=False
        )

    def Cancel(self, request: Any, context: Any) -> Any:
        self.cancelled.set()
        return empty_pb2.Empty()

    def GetMapping(self, request: Any, context: Any) -> Any:
        return provider_pb2.GetMappingResponse(provider="", data=b"")

    def GetMappings(self, request: Any, context: Any) -> Any:
        return provider_pb2.GetMappingsResponse(providers=[])

    # --- functions -------------------------------------------------------------------------------

    def Invoke(self, request: Any, context: Any) -> Any:
        args = canonical(from_struct(request.args))
        result = simulate.invoke_result(request.tok, args, self.region)
        if not result:
            return self._abort(
                context,
                f"the stand-in {self.package} provider simulates no function {request.tok} "
                "(add it to infra.simulate.invoke_result)",
                grpc.StatusCode.UNIMPLEMENTED,
            )
        return provider_pb2.InvokeResponse(**{"return": to_struct(result)})

    # --- resources -------------------------------------------------------------------------------

    def Check(self, request: Any, context: Any) -> Any:
        news = from_struct(request.news)
        olds = from_struct(request.olds)
        seed = f"{request.urn}:{bytes(request.randomSeed).hex()}"
        for prop, value in simulate.autoname(request.type, request.name, canonical(news), seed=seed).items():
            old = olds.get(prop)
            news[prop] = old if old and not has_unknown(old) else value  # a name once chosen stays
        return provider_pb2.CheckResponse(inputs=to_struct(news))

    def Diff(self, request: Any, context: Any) -> Any:
        olds = from_struct(request.old_inputs)
        if not olds:
            news_keys = set(request.news.fields.keys())
            olds = {k: v for k, v in from_struct(request.olds).items() if k in news_keys}
        news = from_struct(request.news)
        return self._diff(
            olds, news, replaces=REPLACES.get(request.type, frozenset()), ignore=set(request.ignoreChanges)
        )

    def _diff(
        self, olds: Mapping[str, Any], news: Mapping[str, Any], *, replaces: frozenset[str], ignore: set[str]
    ) -> Any:
        kinds = provider_pb2.PropertyDiff
        detailed: dict[str, Any] = {}
        replacing: list[str] = []
        for key in sorted(set(olds) | set(news)):
            if key in ignore or key == "__defaults":
                continue
            old, new = canonical(olds.get(key)), canonical(news.get(key))
            if old == new and not has_unknown(new):
                continue
            forces = key in replaces
            if old is None:
                kind = kinds.ADD_REPLACE if forces else kinds.ADD
            elif new is None:
                kind = kinds.DELETE_REPLACE if forces else kinds.DELETE
            else:
                kind = kinds.UPDATE_REPLACE if forces else kinds.UPDATE
            detailed[key] = kinds(kind=kind, inputDiff=True)
            if forces:
                replacing.append(key)
        changes = provider_pb2.DiffResponse.DIFF_SOME if detailed else provider_pb2.DiffResponse.DIFF_NONE
        return provider_pb2.DiffResponse(
            changes=changes,
            diffs=sorted(detailed),
            replaces=replacing,
            detailedDiff=detailed,
            hasDetailedDiff=True,
            deleteBeforeReplace=False,
        )

    def Create(self, request: Any, context: Any) -> Any:
        props = from_struct(request.properties)
        plain = canonical(props)
        if request.preview:
            _, computed = self._computed(request, plain, {}, seed="preview")
            outputs = {**props, **{k: UNKNOWN for k in computed if k not in props}}
            return provider_pb2.CreateResponse(id="", properties=to_struct(outputs))
        try:
            self._check_credentials()
            seed = uuid.uuid4().hex
            ident, computed = self._computed(request, plain, {}, seed=seed)
            record = self._record(
                urn=request.urn,
                type_=request.type,
                name=request.name,
                ident=ident,
                inputs=props,
                computed=computed,
                seed=seed,
            )
            self._round_trip()
            self._faults("create", record)
            self.cloud.put(record, "create", exclusive=request.type in _UNIQUE_IDS)
        except (ProviderError, CloudError) as exc:
            return self._abort(context, f"creating {request.type} {request.name!r}: {exc}")
        outputs = {**props, **{k: _wrap_like(props.get(k), v) for k, v in computed.items()}}
        return provider_pb2.CreateResponse(id=ident, properties=to_struct(outputs))

    def Read(self, request: Any, context: Any) -> Any:
        record = self.cloud.lookup(request.urn, request.type, request.id)
        try:
            self._round_trip()
            if record is not None:
                self._faults("read", record)
        except ProviderError as exc:
            return self._abort(context, f"reading {request.type} {request.id!r}: {exc}")
        if record is None:
            return provider_pb2.ReadResponse(id="")
        self.cloud.log("read", record)
        return provider_pb2.ReadResponse(
            id=record.id, properties=to_struct(record.outputs), inputs=to_struct(record.inputs)
        )

    def Update(self, request: Any, context: Any) -> Any:
        news = from_struct(request.news)
        olds = from_struct(request.olds)
        record = self.cloud.lookup(request.urn, request.type, request.id)
        previous = canonical(record.outputs if record is not None else olds)
        seed = record.seed if record is not None and record.seed else "preview"
        plain = canonical(news)
        if request.preview:
            _, fresh = self._computed(request, plain, previous, seed=seed)
            outputs = dict(news)
            for key, value in fresh.items():
                if key in news:
                    continue
                same = value == previous.get(key) and not has_unknown(value)
                outputs[key] = olds.get(key, value) if same else UNKNOWN
            return provider_pb2.UpdateResponse(properties=to_struct(outputs))
        try:
            self._check_credentials()
            if record is None:
                raise ProviderError(f"{request.type} {request.id!r} does not exist")
            _, computed = self._computed(request, plain, previous, seed=seed)
            updated = self._record(
                urn=request.urn,
                type_=request.type,
                name=request.name,
                ident=record.id,
                inputs=news,
                computed=computed,
                seed=seed,
            )
            self._round_trip()
            self._faults("update", updated)
            self.cloud.put(updated, "update")
        except (ProviderError, CloudError) as exc:
            return self._abort(context, f"updating {request.type} {request.name!r}: {exc}")
        outputs = {**news, **{k: _wrap_like(news.get(k), v) for k, v in computed.items()}}
        return provider_pb2.UpdateResponse(properties=to_struct(outputs))

    def Delete(self, request: Any, context: Any) -> Any:
        record = self.cloud.lookup(request.urn, request.type, request.id)
        if record is None:
            return empty_pb2.Empty()  # already gone: what the real providers do
        try:
            self._check_credentials()
            self._round_trip()
            self._faults("delete", record)
            self.cloud.remove(record, "delete")
        except (ProviderError, CloudError) as exc:
            return self._abort(context, f"deleting {request.type} {request.name!r}: {exc}")
        return empty_pb2.Empty()

    # --- helpers ---------------------------------------------------------------------------------

    def _computed(
        self, request: Any, plain: Mapping[str, Any], previous: Mapping[str, Any], *, seed: str
    ) -> tuple[str, dict[str, Any]]:
        """infra.simulate's ID and computed outputs, plus `tagsAll` (the provider's default tags and
        the resource's own) for the types that take tags."""
        ident, computed = simulate.computed_outputs(
            request.type, request.name, plain, self.region, previous, seed=seed
        )
        if request.type in TAGGABLE_TYPES:
            own = plain.get("tags")
            computed["tagsAll"] = {**self.default_tags, **(own if isinstance(own, Mapping) else {})}
        return ident, local_endpoints(request.type, ident, computed)

    def _record(
        self,
        *,
        urn: str,
        type_: str,
        name: str,
        ident: str,
        inputs: Mapping[str, Any],
        computed: Mapping[str, Any],
        seed: str,
    ) -> Record:
        stored_inputs = elide_assets(dict(inputs))
        outputs = {**stored_inputs, **{k: _wrap_like(inputs.get(k), v) for k, v in computed.items()}}
        plain = unwrap(outputs)
        physical = next((str(plain[k]) for k in _PHYSICAL_NAME_KEYS if plain.get(k)), ident)
        return Record(
            id=ident,
            urn=urn,
            type=type_,
            name=name,
            physical=physical,
            inputs=stored_inputs,
            outputs=outputs,
            seed=seed,
        )

    def _faults(self, op: str, record: Record) -> None:
        delay, message = self.cloud.take_faults(
            op, [record.name, record.physical, record.id, record.urn, record.type]
        )
        if delay and self.cancelled.wait(delay):
            raise ProviderError("the operation was cancelled")
        if message is not None:
            raise ProviderError(message)

    def _check_credentials(self) -> None:
        if self.package == "github" and not (self.configured.get("token") or self.env_token):
            raise ProviderError(
                "GET https://api.github.com/user: 401 Requires authentication (no github token)"
            )

    def _abort(self, context: Any, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> Any:
        context.abort(code, message)


# --- the plugin process ---------------------------------------------------------------------------


def _engine_address(args: list[str]) -> str | None:
    """The engine's address: the one positional argument after the engine's flags."""
    positional: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--tracing", "--root"):
            skip = True
            continue
        if arg.startswith("-"):
            continue
        positional.append(arg)
    return positional[-1] if positional else None


def _watch_engine(address: str, stop: threading.Event) -> None:
    """Stop when the engine no longer answers its health check (as the Go plugins do)."""
    channel = grpc.insecure_channel(address)
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda _: b"",
        response_deserializer=lambda data: data,
    )
    while not stop.wait(HEALTH_INTERVAL_SECONDS):
        try:
            check(None, timeout=5)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                stop.set()
    channel.close()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in PACKAGES:
        print(f"usage: python -m tests.standin.provider {'|'.join(PACKAGES)} ENGINE_ADDRESS", file=sys.stderr)
        return 2
    package, args = argv[0], argv[1:]
    try:
        cloud = Cloud.from_env()
    except CloudError as exc:
        print(f"pulumi-resource-{package} (stand-in): {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    provider = StandinProvider(package, cloud, stop)
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(provider, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()

    def on_signal(signum: int, frame: Any) -> None:
        provider.cancelled.set()
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    address = _engine_address(args)
    if address:
        threading.Thread(target=_watch_engine, args=(address, stop), daemon=True).start()
    stop.wait()
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
