"""The HTTP API (API Gateway v2) in front of the services' `live` aliases.

Every integration targets a service's `live` alias and every invoke permission is granted on
that alias only (`qualifier="live"`): moving the alias is the release, so the API never needs
to change when a release ships, and nothing can reach `$LATEST` or an unreleased version.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

if TYPE_CHECKING:
    from infra.config.model import StackConfig

STAGE_NAME = "$default"


def api_name(prefix: str) -> str:
    return f"{prefix}-http"


def access_log_group_name(prefix: str) -> str:
    return f"/aws/apigateway/{api_name(prefix)}"


def access_log_format() -> dict[str, str]:
    """One JSON line per request; `integrationError` says why a 5xx came from the service side."""
    return {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "routeKey": "$context.routeKey",
        "path": "$context.path",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "responseLatency": "$context.responseLatency",
        "integrationLatency": "$context.integrationLatency",
        "integrationStatus": "$context.integrationStatus",
        "integrationError": "$context.integrationErrorMessage",
        "userAgent": "$context.identity.userAgent",
    }


def route_resource_name(api: str, route_key: str) -> str:
    """A route's logical name: letters, digits and dashes, unique per route key.

    "ANY /api/{proxy+}" becomes "<api>-route-any-api-proxy-<8 hex>". The slug keeps it readable;
    the hash of the exact key keeps keys apart that slug alike ("/a/{b}" and "/a/b", "/A" and "/a"),
    and depends on nothing but the key, so adding a route never renames another one.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", route_key.lower()).strip("-")
    digest = hashlib.sha256(route_key.encode()).hexdigest()[:8]
    return f"{api}-route-{slug}-{digest}"


def invoke_source_arn(execution_arn: str) -> str:
    """Any stage, method and route of this API, and of no other API."""
    return f"{execution_arn}/*/*"


@dataclass(frozen=True)
class ApiTarget:
    """A service as the API sees it: its `live` alias and the routes it answers."""

    service: str
    function_name: pulumi.Input[str]
    alias_name: pulumi.Input[str]
    alias_invoke_arn: pulumi.Input[str]
    routes: tuple[str, ...]


@dataclass(frozen=True)
class HttpApiArgs:
    api_name: str
    access_log_group_name: str
    log_retention_days: int
    targets: tuple[ApiTarget, ...]
    burst_limit: int = 50
    rate_limit: float = 100.0

    @classmethod
    def from_config(cls, cfg: StackConfig, targets: Sequence[ApiTarget]) -> HttpApiArgs:
        return cls(
            api_name=api_name(cfg.prefix),
            access_log_group_name=access_log_group_name(cfg.prefix),
            log_retention_days=cfg.log_retention_days,
            targets=tuple(targets),
            burst_limit=cfg.api.burst_limit,
            rate_limit=cfg.api.rate_limit,
        )


class HttpApi(pulumi.ComponentResource):
    api_id: pulumi.Output[str]
    api_endpoint: pulumi.Output[str]
    """Base URL of the `$default` stage, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com."""
    execution_arn: pulumi.Output[str]
    stage_name: pulumi.Output[str]

    def __init__(self, name: str, args: HttpApiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stageline:infra:HttpApi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        api = aws.apigatewayv2.Api(f"{name}-api", name=args.api_name, protocol_type="HTTP", opts=child)
        routes: list[pulumi.Resource] = []
        for target in args.targets:
            integration = aws.apigatewayv2.Integration(
                f"{name}-{target.service}-integration",
                api_id=api.id,
                integration_type="AWS_PROXY",
                integration_method="POST",
                integration_uri=target.alias_invoke_arn,
                payload_format_version="2.0",
                opts=child,
            )
            aws.lambda_.Permission(
                f"{name}-{target.service}-invoke",
                action="lambda:InvokeFunction",
                function=target.function_name,
                qualifier=target.alias_name,
                principal="apigateway.amazonaws.com",
                source_arn=api.execution_arn.apply(invoke_source_arn),
                opts=child,
            )
            for route_key in target.routes:
                routes.append(
                    aws.apigatewayv2.Route(
                        route_resource_name(name, route_key),
                        api_id=api.id,
                        route_key=route_key,
                        target=pulumi.Output.concat("integrations/", integration.id),
                        opts=child,
                    )
                )

        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=args.access_log_group_name,
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        stage = aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=api.id,
            name=STAGE_NAME,
            auto_deploy=True,
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn,
                format=json.dumps(access_log_format()),
            ),
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=args.burst_limit,
                throttling_rate_limit=args.rate_limit,
            ),
            # auto_deploy publishes whatever routes exist when the stage is created; create it
            # last so the first deployment already serves every route.
            opts=pulumi.ResourceOptions(parent=self, depends_on=routes),
        )

        self.api_id = api.id
        self.api_endpoint = api.api_endpoint
        self.execution_arn = api.execution_arn
        self.stage_name = stage.name
        self.register_outputs({"api_id": self.api_id, "api_endpoint": self.api_endpoint})
