"""One application service: a Lambda function from a digest-pinned image or a content-named zip
package, behind a `live` alias.

A zip package lives in the stack's artifact bucket at `packages/<service>/<sha256>.zip`; the function
names that object and its `source_code_hash`, so it changes exactly when the package's bytes change.

Per service: a log group (created first, so the function never writes to an auto-created group
with unlimited retention), an execution role that may write only to that log group plus what
the service config grants, the function (`publish=True`, so every change is a new immutable
version), and the alias `live` that the HTTP API invokes. The alias is the release switch: it
points at the version this release published, or, during a canary, keeps the previous version
and sends a configured share of traffic to the new one.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from infra.config.model import DIGEST_RE, Grant
from infra.policies import package_key

if TYPE_CHECKING:
    from infra.config.model import Service, StackConfig

ALIAS_NAME = "live"

# Set by the platform on every function so a health endpoint can report which release and
# environment it serves; the driver's verification compares them with the stack config.
RELEASE_ENV_VAR = "STAGELINE_RELEASE"
ENVIRONMENT_ENV_VAR = "STAGELINE_ENVIRONMENT"
# A function deployed from a zip package carries the package's digest instead of the release version:
# a release that leaves a service's package as it was then leaves its function as it was too.
PACKAGE_ENV_VAR = "STAGELINE_PACKAGE"

_LAMBDA_VERSION_RE = re.compile(r"^[1-9][0-9]*$")


def function_name(prefix: str, service: str) -> str:
    return f"{prefix}-{service}"


def log_group_name(function: str) -> str:
    """The group Lambda writes to by default; creating it ourselves sets its retention."""
    return f"/aws/lambda/{function}"


def image_uri(repository_url: str, digest: str) -> str:
    """`<repository>@sha256:…`: a digest names one image forever, a tag can be moved."""
    if not DIGEST_RE.match(digest):
        raise ValueError(f'image digest must look like "sha256:" and 64 hex digits, got {digest!r}')
    if "@" in repository_url or ":" in repository_url.rsplit("/", 1)[-1]:
        raise ValueError(f"repository URL must not carry a tag or digest, got {repository_url!r}")
    return f"{repository_url}@{digest}"


def source_code_hash(digest: str) -> str:
    """Lambda's CodeSha256 of a package: its sha256 in base64 ("sha256:<hex>" in a release)."""
    if not DIGEST_RE.match(digest):
        raise ValueError(f'package digest must look like "sha256:" and 64 hex digits, got {digest!r}')
    return base64.b64encode(bytes.fromhex(digest.removeprefix("sha256:"))).decode()


@dataclass(frozen=True)
class Package:
    """A zip package in the artifact bucket, and how Lambda runs it."""

    bucket: pulumi.Input[str]
    digest: str  # "sha256:…"
    runtime: str = "python3.12"
    handler: str = "handler.handler"


@dataclass(frozen=True)
class LiveRouting:
    """Where the `live` alias sends traffic: a primary version plus weighted extras."""

    function_version: str
    additional_version_weights: dict[str, float] = field(default_factory=dict)

    def routing_config(self) -> dict[str, Any] | None:
        """The alias' `routing_config`: None unless traffic is really split.

        An empty weights map would still be sent to Lambda as a routing configuration; without
        extra versions there is nothing to configure.
        """
        if not self.additional_version_weights:
            return None
        return {"additional_version_weights": dict(self.additional_version_weights)}


def live_routing(
    published_version: str, *, canary_weight: float | None = None, stable_version: str | None = None
) -> LiveRouting:
    """Decide the `live` alias target for the version this release published.

    Without a canary, `live` moves to the new version. With one, `live` stays on the stable
    version and routes `canary_weight` of invocations to the new one. When the release did
    not change the function (the published version *is* the stable one) there is nothing to
    split, and Lambda would reject an alias whose extra version equals its primary.
    """
    if canary_weight is None:
        return LiveRouting(function_version=published_version)
    if not 0 < canary_weight < 1:
        raise ValueError(f"canary weight must be strictly between 0 and 1, got {canary_weight}")
    if stable_version is None or not _LAMBDA_VERSION_RE.match(stable_version):
        raise ValueError(f"a canary needs the stable published version, got {stable_version!r}")
    if stable_version == published_version:
        return LiveRouting(function_version=published_version)
    return LiveRouting(
        function_version=stable_version, additional_version_weights={published_version: canary_weight}
    )


def lambda_trust_policy() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def execution_policy(log_group_arn: str, grants: tuple[Grant, ...] = ()) -> dict[str, Any]:
    """What a service may do: write to its own log group, plus what its config grants.

    No logs:CreateLogGroup: the group exists before the function, and without that right a
    misnamed logging config fails loudly instead of creating a group with no retention.
    """
    arn = log_group_arn.removesuffix(":*")
    statements: list[dict[str, Any]] = [
        {
            "Sid": "OwnLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [arn, f"{arn}:log-stream:*"],
        }
    ]
    for i, grant in enumerate(grants):
        statements.append(
            {
                "Sid": f"Grant{i}",
                "Effect": "Allow",
                "Action": list(grant.actions),
                "Resource": list(grant.resources),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass(frozen=True)
class LambdaServiceArgs:
    service: str
    function_name: str
    repository_url: pulumi.Input[str]  # the environment's ECR repository, without tag or digest
    image_digest: str | None  # "sha256:…" from the release; None for a service deployed from a package
    permissions_boundary_arn: pulumi.Input[str]
    log_retention_days: int
    memory_mb: int = 256
    timeout_seconds: int = 10
    reserved_concurrency: int | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    grants: tuple[Grant, ...] = ()
    canary_weight: float | None = None
    stable_version: str | None = None  # with a canary: the version `live` keeps
    package: Package | None = None  # instead of an image: a zip package from the artifact bucket

    def __post_init__(self) -> None:
        if (self.package is None) == (self.image_digest is None):
            raise ValueError(f"service {self.service!r} needs exactly one of an image digest and a package")

    @classmethod
    def from_config(
        cls,
        cfg: StackConfig,
        service: Service,
        *,
        repository_url: pulumi.Input[str],
        permissions_boundary_arn: pulumi.Input[str],
        artifact_bucket: pulumi.Input[str] | None = None,
    ) -> LambdaServiceArgs:
        canary = cfg.release.canary
        digest = cfg.release.packages.get(service.name)
        package = None
        identity = {RELEASE_ENV_VAR: cfg.release.version}
        if digest is not None:
            if artifact_bucket is None:
                raise ValueError(f"service {service.name!r} runs a package: pass the artifact bucket")
            package = Package(
                bucket=artifact_bucket, digest=digest, runtime=service.runtime, handler=service.handler
            )
            identity = {PACKAGE_ENV_VAR: digest}
        return cls(
            service=service.name,
            function_name=function_name(cfg.prefix, service.name),
            repository_url=repository_url,
            image_digest=cfg.release.images.get(service.name) if package is None else None,
            package=package,
            permissions_boundary_arn=permissions_boundary_arn,
            log_retention_days=cfg.log_retention_days,
            memory_mb=service.memory_mb,
            timeout_seconds=service.timeout_seconds,
            reserved_concurrency=service.reserved_concurrency,
            environment={**service.environment, **identity, ENVIRONMENT_ENV_VAR: cfg.environment},
            grants=service.grants,
            canary_weight=canary.weight if canary else None,
            stable_version=canary.stable_versions[service.name] if canary else None,
        )


class LambdaService(pulumi.ComponentResource):
    function_name: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    published_version: pulumi.Output[str]
    """The version this deployment published (during a canary: the one getting the canary weight)."""
    live_version: pulumi.Output[str]
    """The primary version of `live`: what it serves (during a canary, the rest of the traffic).
    The next canary keeps it as the stable one."""
    alias_name: pulumi.Output[str]
    alias_arn: pulumi.Output[str]
    alias_invoke_arn: pulumi.Output[str]
    """What API Gateway integrates with: the `live` alias, never the bare function or $LATEST."""
    log_group_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: LambdaServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("stageline:infra:LambdaService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=log_group_name(args.function_name),
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-exec",
            name=f"{args.function_name}-exec",
            assume_role_policy=json.dumps(lambda_trust_policy()),
            # The deploy role may only create roles that carry this boundary, so a service role
            # can never hold more than the boundary allows, whatever its grants say.
            permissions_boundary=args.permissions_boundary_arn,
            opts=child,
        )
        grants = args.grants
        role_policy = aws.iam.RolePolicy(
            f"{name}-exec-policy",
            role=role.id,
            name="service",
            policy=log_group.arn.apply(lambda arn: json.dumps(execution_policy(arn, grants))),
            opts=child,
        )
        code: dict[str, Any]
        if args.package is not None:
            package = args.package
            code = {
                "package_type": "Zip",
                "s3_bucket": package.bucket,
                "s3_key": package_key(args.service, package.digest),
                "source_code_hash": source_code_hash(package.digest),
                "runtime": package.runtime,
                "handler": package.handler,
            }
        else:
            digest = args.image_digest or ""
            code = {
                "package_type": "Image",
                "image_uri": pulumi.Output.from_input(args.repository_url).apply(
                    lambda url: image_uri(url, digest)
                ),
            }
        function = aws.lambda_.Function(
            f"{name}-function",
            name=args.function_name,
            **code,
            role=role.arn,
            publish=True,
            memory_size=args.memory_mb,
            timeout=args.timeout_seconds,
            reserved_concurrent_executions=args.reserved_concurrency,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(args.environment))
            if args.environment
            else None,
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=log_group.name),
            # The log group must exist (with its retention) before the first invocation, and the
            # role must already allow writing to it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group, role_policy]),
        )

        weight, stable = args.canary_weight, args.stable_version
        # Decide from the published version only once it is known: it is computed by the
        # engine, and a canary must not split traffic between a version and itself (a canary
        # on a function the release did not change has no routing config at all).
        routing = function.version.apply(
            lambda v: live_routing(v, canary_weight=weight, stable_version=stable)
        )
        # Without a canary there is never a routing config, known even before the version is.
        routing_config: pulumi.Output[Any] | None = (
            routing.apply(lambda r: r.routing_config()) if weight is not None else None
        )
        alias = aws.lambda_.Alias(
            f"{name}-live",
            name=ALIAS_NAME,
            function_name=function.name,
            function_version=routing.apply(lambda r: r.function_version),
            routing_config=routing_config,
            opts=child,
        )

        self.function_name = function.name
        self.function_arn = function.arn
        self.published_version = function.version
        self.live_version = alias.function_version
        self.alias_name = alias.name
        self.alias_arn = alias.arn
        self.alias_invoke_arn = alias.invoke_arn
        self.log_group_name = log_group.name
        self.role_arn = role.arn
        self.register_outputs(
            {
                "function_name": self.function_name,
                "published_version": self.published_version,
                "live_version": self.live_version,
                "alias_arn": self.alias_arn,
            }
        )
