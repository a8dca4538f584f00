"""The application platform: services, HTTP API, frontend, observability.

Built by `build_platform` from the stack config and the artifact store; returns what the
program exports and what the GitHub environment publishes as variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pulumi

from infra import outputs
from infra.api import ApiTarget, HttpApi, HttpApiArgs
from infra.frontend import Frontend, FrontendArgs
from infra.observability import MonitoredFunction, Observability, ObservabilityArgs
from infra.services import LambdaService, LambdaServiceArgs

if TYPE_CHECKING:
    from infra.artifacts import ArtifactStore
    from infra.config.model import StackConfig


@dataclass
class Platform:
    exports: dict[str, pulumi.Input[object]] = field(default_factory=dict)
    variables: dict[str, pulumi.Input[str]] = field(default_factory=dict)


def build_platform(
    cfg: StackConfig,
    aws_opts: pulumi.ResourceOptions,
    artifacts: ArtifactStore,
    permissions_boundary_arn: pulumi.Input[str],
) -> Platform:
    services: dict[str, LambdaService] = {}
    service_args: dict[str, LambdaServiceArgs] = {}
    for svc in cfg.services:
        args = LambdaServiceArgs.from_config(
            cfg,
            svc,
            repository_url=artifacts.repository_url,
            permissions_boundary_arn=permissions_boundary_arn,
            artifact_bucket=artifacts.bucket_name,
        )
        service_args[svc.name] = args
        services[svc.name] = LambdaService(f"service-{svc.name}", args, aws_opts)

    api_args = HttpApiArgs.from_config(
        cfg,
        [
            ApiTarget(
                service=svc.name,
                function_name=services[svc.name].function_name,
                alias_name=services[svc.name].alias_name,
                alias_invoke_arn=services[svc.name].alias_invoke_arn,
                routes=svc.routes,
            )
            for svc in cfg.services
        ],
    )
    api = HttpApi("http-api", api_args, aws_opts)

    frontend = Frontend("frontend", FrontendArgs.from_config(cfg, api_endpoint=api.api_endpoint), aws_opts)

    monitored = [
        MonitoredFunction(
            service=name,
            function_name=args.function_name,
            # During a canary the new version is the one to watch on its own.
            canary_version=services[name].published_version if cfg.release.canary else None,
        )
        for name, args in service_args.items()
    ]
    observability = Observability(
        "observability",
        ObservabilityArgs.from_config(
            cfg, functions=monitored, api_name=api_args.api_name, api_id=api.api_id
        ),
        aws_opts,
    )

    exports: dict[str, pulumi.Input[object]] = {
        outputs.API_URL: api.api_endpoint,
        outputs.FUNCTION_NAMES: {name: s.function_name for name, s in services.items()},
        outputs.ALIAS_ARNS: {name: s.alias_arn for name, s in services.items()},
        # What `live` serves (the stable version during a canary): the next canary's stableVersions.
        outputs.LIVE_VERSIONS: {name: s.live_version for name, s in services.items()},
        outputs.PUBLISHED_VERSIONS: {name: s.published_version for name, s in services.items()},
        outputs.HEALTH_PATHS: {svc.name: svc.health_path for svc in cfg.services},
        outputs.FRONTEND_BUCKET: frontend.bucket_name,
        outputs.APP_DISTRIBUTION_ID: frontend.app_distribution_id,
        outputs.APP_DOMAIN: frontend.app_domain,
        outputs.TEST_DISTRIBUTION_ID: frontend.test_distribution_id,
        outputs.TEST_DOMAIN: frontend.test_domain,
        outputs.ALERT_TOPIC_ARN: observability.topic_arn,
        outputs.ALARM_NAMES: observability.alarm_names,
        outputs.DASHBOARD_NAME: observability.dashboard_name,
    }
    # What workflows need, taken from resource outputs so they cannot drift from what exists.
    variables: dict[str, pulumi.Input[str]] = {
        "API_URL": api.api_endpoint,
        "FRONTEND_BUCKET": frontend.bucket_name,
        "APP_DISTRIBUTION_ID": frontend.app_distribution_id,
        "APP_DOMAIN": frontend.app_domain,
        "TEST_DISTRIBUTION_ID": frontend.test_distribution_id,
        "TEST_DOMAIN": frontend.test_domain,
    }
    return Platform(exports=exports, variables=variables)
