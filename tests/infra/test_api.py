"""HTTP API: every integration and invoke permission targets a service's `live` alias, never $LATEST."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.api import (
    ApiTarget,
    HttpApi,
    HttpApiArgs,
    access_log_format,
    invoke_source_arn,
    route_resource_name,
)
from infra.config import ConfigError, load, parse, read_stack_file
from infra.services import LambdaService, LambdaServiceArgs
from infra.simulate import Simulation, simulate

ROOT = Path(__file__).resolve().parents[2]
REPO_URL = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/stageline-dev"
BOUNDARY = "arn:aws:iam::123456789012:policy/stageline-dev-boundary"


# The release the image-based tests were written for: the shipped stack files now run the example
# app's zip packages, and images keep working the same.
IMAGE_RELEASE = {
    "version": "4f9c2d1",
    "images": {
        "api": "sha256:b3fe26efe42b5022a03a801d1f17d84b6bf4a2efa0442a5ad177f59ab403c48a",
        "worker": "sha256:3256822ca844d9280bfa16718ca6a8b203da9ada525fd1ff80b5ce3dbb4ab67d",
    },
}


def stack_values(stack: str = "dev") -> dict[str, Any]:
    values = copy.deepcopy(read_stack_file(ROOT, stack).values)
    values["release"] = copy.deepcopy(IMAGE_RELEASE)
    return values


def run_api(values: dict[str, Any], stack: str = "dev") -> Simulation:
    """The services and the API in front of them, wired as the platform wires them."""

    def program() -> None:
        cfg = load()
        targets = []
        for svc in cfg.services:
            service = LambdaService(
                f"service-{svc.name}",
                LambdaServiceArgs.from_config(
                    cfg, svc, repository_url=REPO_URL, permissions_boundary_arn=BOUNDARY
                ),
            )
            targets.append(
                ApiTarget(
                    service=svc.name,
                    function_name=service.function_name,
                    alias_name=service.alias_name,
                    alias_invoke_arn=service.alias_invoke_arn,
                    routes=svc.routes,
                )
            )
        HttpApi("http-api", HttpApiArgs.from_config(cfg, targets))

    return simulate(values, stack=stack, program=program)


def config_error(values: dict[str, Any], stack: str = "dev") -> str:
    with pytest.raises(ConfigError) as info:
        parse(values, stack=stack, region="eu-west-1")
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.fixture(scope="module")
def dev() -> Simulation:
    return run_api(stack_values("dev"))


SERVICES = ("api", "worker")


def test_the_api_is_an_http_api_named_after_the_environment(dev: Simulation) -> None:
    (api,) = dev.of_type("aws:apigatewayv2/api:Api")
    assert api.inputs["name"] == "stageline-dev-http"
    assert api.inputs["protocolType"] == "HTTP"


def test_every_integration_targets_the_live_alias_of_its_service(dev: Simulation) -> None:
    integrations = dev.of_type("aws:apigatewayv2/integration:Integration")
    assert len(integrations) == len(SERVICES)
    for service in SERVICES:
        integration = dev.named(f"http-api-{service}-integration")
        alias = dev.named(f"service-{service}-live")
        function = dev.named(f"service-{service}-function")
        assert integration.inputs["integrationUri"] == alias.outputs["invokeArn"]
        assert f"function:stageline-dev-{service}:live/invocations" in integration.inputs["integrationUri"]
        assert integration.inputs["integrationUri"] != function.outputs["invokeArn"]
        assert "$LATEST" not in integration.inputs["integrationUri"]
        assert integration.inputs["integrationType"] == "AWS_PROXY"
        assert integration.inputs["payloadFormatVersion"] == "2.0"


def test_every_invoke_permission_is_on_the_live_alias_and_this_api_only(dev: Simulation) -> None:
    (api,) = dev.of_type("aws:apigatewayv2/api:Api")
    permissions = dev.of_type("aws:lambda/permission:Permission")
    assert sorted(p.inputs["function"] for p in permissions) == [f"stageline-dev-{s}" for s in SERVICES]
    for permission in permissions:
        assert permission.inputs["qualifier"] == "live"
        assert permission.inputs["principal"] == "apigateway.amazonaws.com"
        assert permission.inputs["action"] == "lambda:InvokeFunction"
        assert permission.inputs["sourceArn"] == f"{api.outputs['executionArn']}/*/*"


def test_every_configured_route_reaches_its_own_service(dev: Simulation) -> None:
    routes = {r.inputs["routeKey"]: r.inputs["target"] for r in dev.of_type("aws:apigatewayv2/route:Route")}
    expected = {
        "ANY /api": "integrations/http-api-api-integration-id",
        "ANY /api/{proxy+}": "integrations/http-api-api-integration-id",
        "ANY /jobs/{proxy+}": "integrations/http-api-worker-integration-id",
    }
    assert routes == expected


def test_route_logical_names_are_plain_and_one_per_route_key(dev: Simulation) -> None:
    names = {r.inputs["routeKey"]: r.name for r in dev.of_type("aws:apigatewayv2/route:Route")}
    for key, name in names.items():
        assert re.fullmatch(r"http-api-route-[a-z0-9-]+-[0-9a-f]{8}", name), name
        assert name == route_resource_name("http-api", key)
    assert names["ANY /api/{proxy+}"].startswith("http-api-route-any-api-proxy-")
    # Keys that slug alike still get their own resources, whatever else the API has.
    alike = ["ANY /a/{b}", "ANY /a/b", "ANY /A/b", "GET /a/b"]
    assert len({route_resource_name("http-api", k) for k in alike}) == len(alike)


def test_the_default_stage_logs_access_and_throttles_from_config(dev: Simulation) -> None:
    (stage,) = dev.of_type("aws:apigatewayv2/stage:Stage")
    logs = dev.named("http-api-access-logs")
    assert stage.inputs["name"] == "$default"
    assert stage.inputs["autoDeploy"] is True
    assert stage.inputs["accessLogSettings"]["destinationArn"] == logs.outputs["arn"]
    assert json.loads(stage.inputs["accessLogSettings"]["format"]) == access_log_format()
    assert logs.inputs["name"] == "/aws/apigateway/stageline-dev-http"
    assert logs.inputs["retentionInDays"] == 7
    assert stage.inputs["defaultRouteSettings"] == {"throttlingBurstLimit": 20, "throttlingRateLimit": 10}


def test_the_stage_is_created_after_every_route(dev: Simulation) -> None:
    (stage,) = dev.of_type("aws:apigatewayv2/stage:Stage")
    for route in dev.of_type("aws:apigatewayv2/route:Route"):
        assert route.urn in stage.dependencies


def test_throttling_follows_the_stack_config() -> None:
    values = stack_values("dev")
    values["api"] = {"burstLimit": 321, "rateLimit": 12.5}
    (stage,) = run_api(values).of_type("aws:apigatewayv2/stage:Stage")
    assert stage.inputs["defaultRouteSettings"] == {"throttlingBurstLimit": 321, "throttlingRateLimit": 12.5}


def test_services_without_routes_get_their_name_as_prefix() -> None:
    values = stack_values("dev")
    del values["services"][1]["routes"]
    del values["services"][1]["healthPath"]  # the default, /worker/health, is under the default routes
    routes = {r.inputs["routeKey"] for r in run_api(values).of_type("aws:apigatewayv2/route:Route")}
    assert {"ANY /worker", "ANY /worker/{proxy+}"} <= routes


def test_access_log_format_records_request_status_and_integration_error() -> None:
    fmt = access_log_format()
    assert fmt["requestId"] == "$context.requestId"
    assert fmt["status"] == "$context.status"
    assert fmt["integrationError"] == "$context.integrationErrorMessage"


def test_invoke_source_arn_covers_every_stage_and_route_of_one_api() -> None:
    arn = "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3"
    assert invoke_source_arn(arn) == f"{arn}/*/*"


# --- config errors --------------------------------------------------------------------------------


def test_an_unknown_api_key_is_a_config_error_with_a_suggestion() -> None:
    values = stack_values()
    values["api"] = {"burstlimit": 10}
    assert config_error(values) == 'stageline:api.burstlimit is not a known key (did you mean "burstLimit"?)'


def test_negative_throttling_is_a_config_error() -> None:
    values = stack_values()
    values["api"] = {"rateLimit": -1}
    assert config_error(values) == "stageline:api.rateLimit must be between 0.0 and 100000.0, got -1"


def test_a_malformed_route_is_a_config_error() -> None:
    values = stack_values()
    values["services"][0]["routes"] = ["FETCH /api"]
    assert config_error(values) == (
        'stageline:services[0].routes[0] must look like "METHOD /path", '
        'e.g. "GET /orders/{id}", got "FETCH /api"'
    )


def test_a_route_claimed_by_two_services_is_a_config_error() -> None:
    values = stack_values()
    values["services"][1]["routes"] = ["ANY /api"]
    values["services"][1]["healthPath"] = "/api"
    assert config_error(values) == 'stageline:services route "ANY /api" is claimed by both "api" and "worker"'


def test_a_health_path_no_route_of_the_service_reaches_is_a_config_error() -> None:
    values = stack_values()
    values["services"][0]["routes"] = ["GET /orders", "POST /orders/{id}"]
    assert config_error(values) == (
        'stageline:services[0].healthPath "/api/health" is not reached by any of the service\'s routes '
        "(GET /orders, POST /orders/{id}): verification would get a 404 from the API"
    )


@pytest.mark.parametrize(
    ("route", "path", "matches"),
    [
        ("ANY /api/{proxy+}", "/api/health", True),
        ("ANY /api/{proxy+}", "/api", False),
        ("ANY /api", "/api", True),
        ("GET /orders/{id}", "/orders/7", True),
        ("GET /orders/{id}", "/orders/7/items", False),
        ("POST /health", "/health", False),
        ("GET /health", "/health?deep=1", True),
    ],
)
def test_route_matching_follows_api_gateway(route: str, path: str, matches: bool) -> None:
    from infra.config import route_matches

    assert route_matches(route, path) is matches
