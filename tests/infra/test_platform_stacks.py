"""The whole program, once per shipped stack file: the application platform as each stack declares it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from infra import outputs
from infra.config import DIGEST_RE, parse_stack_file, read_stack_file
from infra.simulate import SimResource, Simulation, simulate, simulate_stack_file

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod")
MOCK_PUBLISHED_VERSION = "2"  # what infra.simulate returns as a function's published version

PLATFORM_OUTPUTS = (
    outputs.API_URL,
    outputs.FUNCTION_NAMES,
    outputs.ALIAS_ARNS,
    outputs.LIVE_VERSIONS,
    outputs.PUBLISHED_VERSIONS,
    outputs.HEALTH_PATHS,
    outputs.FRONTEND_BUCKET,
    outputs.APP_DISTRIBUTION_ID,
    outputs.APP_DOMAIN,
    outputs.TEST_DISTRIBUTION_ID,
    outputs.TEST_DOMAIN,
    outputs.ALERT_TOPIC_ARN,
    outputs.ALARM_NAMES,
    outputs.DASHBOARD_NAME,
)
VARIABLE_TYPE = "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable"


@pytest.fixture(scope="module")
def sims() -> dict[str, Simulation]:
    return {stack: simulate_stack_file(ROOT, stack) for stack in STACKS}


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def config(stack: str) -> Any:
    return parse_stack_file(read_stack_file(ROOT, stack))


def functions(sim: Simulation) -> dict[str, SimResource]:
    return {f.inputs["name"]: f for f in sim.of_type("aws:lambda/function:Function")}


def distributions(sim: Simulation) -> dict[str, SimResource]:
    return {
        d.name.removeprefix("frontend-"): d for d in sim.of_type("aws:cloudfront/distribution:Distribution")
    }


# --- per stack ------------------------------------------------------------------------------------


def test_every_function_runs_the_stacks_release_package_named_by_its_hash(
    sims: dict[str, Simulation], stack: str
) -> None:
    cfg = config(stack)
    (bucket,) = [b for b in sims[stack].of_type("aws:s3/bucket:Bucket") if b.name == "artifacts-bucket"]
    fns = functions(sims[stack])
    assert set(fns) == {f"stageline-{stack}-{s.name}" for s in cfg.services}
    for svc in cfg.services:
        fn = fns[f"stageline-{stack}-{svc.name}"]
        digest = cfg.release.packages[svc.name]  # the shipped stacks run the example app's packages
        assert DIGEST_RE.match(digest)
        assert fn.inputs["packageType"] == "Zip"
        assert fn.inputs["s3Bucket"] == bucket.outputs["bucket"]
        assert fn.inputs["s3Key"] == f"packages/{svc.name}/{digest.removeprefix('sha256:')}.zip"
        assert fn.inputs["publish"] is True
        assert fn.inputs["memorySize"] == svc.memory_mb


def test_execution_roles_carry_the_stacks_permissions_boundary(
    sims: dict[str, Simulation], stack: str
) -> None:
    sim = sims[stack]
    boundaries = [
        p
        for p in sim.of_type("aws:iam/policy:Policy")
        if p.inputs.get("name") == f"stageline-{stack}-boundary"
    ]
    assert len(boundaries) == 1
    exec_roles = [r for r in sim.of_type("aws:iam/role:Role") if r.inputs["name"].endswith("-exec")]
    assert len(exec_roles) == len(config(stack).services)
    for role in exec_roles:
        assert role.inputs["permissionsBoundary"] == boundaries[0].outputs["arn"]


def test_every_function_has_a_live_alias_and_no_canary_as_shipped(
    sims: dict[str, Simulation], stack: str
) -> None:
    sim = sims[stack]
    aliases = {a.inputs["functionName"]: a for a in sim.of_type("aws:lambda/alias:Alias")}
    assert set(aliases) == set(functions(sim))
    for alias in aliases.values():
        assert alias.inputs["name"] == "live"
        assert alias.inputs["functionVersion"] == MOCK_PUBLISHED_VERSION
        assert "routingConfig" not in alias.inputs


def test_the_api_integrates_and_is_allowed_to_invoke_live_aliases_only(
    sims: dict[str, Simulation], stack: str
) -> None:
    sim = sims[stack]
    alias_invoke_arns = {a.outputs["invokeArn"] for a in sim.of_type("aws:lambda/alias:Alias")}
    integrations = sim.of_type("aws:apigatewayv2/integration:Integration")
    assert {i.inputs["integrationUri"] for i in integrations} == alias_invoke_arns
    permissions = sim.of_type("aws:lambda/permission:Permission")
    assert len(permissions) == len(functions(sim))
    assert {p.inputs["qualifier"] for p in permissions} == {"live"}
    (stage,) = sim.of_type("aws:apigatewayv2/stage:Stage")
    cfg = config(stack)
    assert stage.inputs["defaultRouteSettings"] == {
        "throttlingBurstLimit": cfg.api.burst_limit,
        "throttlingRateLimit": cfg.api.rate_limit,
    }


def test_both_distributions_use_oac_and_https(sims: dict[str, Simulation], stack: str) -> None:
    sim = sims[stack]
    (oac,) = sim.of_type("aws:cloudfront/originAccessControl:OriginAccessControl")
    dists = distributions(sim)
    assert set(dists) == {"app", "test"}
    for dist in dists.values():
        assert dist.inputs["origins"][0]["originAccessControlId"] == oac.id
        assert dist.inputs["defaultCacheBehavior"]["viewerProtocolPolicy"] == "redirect-to-https"
        assert dist.inputs["priceClass"] == config(stack).frontend.price_class


def test_origin_paths_follow_the_release(sims: dict[str, Simulation], stack: str) -> None:
    release = config(stack).release
    paths = {role: d.inputs["origins"][0]["originPath"] for role, d in distributions(sims[stack]).items()}
    assert release.frontend is not None  # the shipped stacks serve the example app's frontend release
    assert paths == {"app": f"/releases/{release.frontend}", "test": f"/releases/{release.candidate_version}"}


def test_every_function_has_an_error_alarm_and_all_alarms_are_exported(
    sims: dict[str, Simulation], stack: str
) -> None:
    sim = sims[stack]
    alarms = {a.inputs["name"]: a for a in sim.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    for fn in functions(sim):
        errors = alarms[f"{fn}-errors"]
        assert errors.inputs["metricName"] == "Errors"
        assert errors.inputs["dimensions"]["FunctionName"] == fn
        assert errors.inputs["threshold"] == config(stack).alarms.error_threshold
    assert alarms[f"stageline-{stack}-http-5xx"].inputs["metricName"] == "5xx"
    assert sorted(sim.outputs[outputs.ALARM_NAMES]) == sorted(alarms)


def test_a_budget_with_the_stacks_limit_and_thresholds(sims: dict[str, Simulation], stack: str) -> None:
    cfg = config(stack)
    (budget,) = sims[stack].of_type("aws:budgets/budget:Budget")
    assert budget.inputs["name"] == f"stageline-{stack}-monthly"
    assert float(budget.inputs["limitAmount"]) == cfg.budget.monthly_limit_usd
    assert [n["threshold"] for n in budget.inputs["notifications"]] == list(cfg.budget.thresholds)


def test_platform_outputs_are_exported_from_resource_outputs(sims: dict[str, Simulation], stack: str) -> None:
    sim = sims[stack]
    exported = sim.outputs
    assert set(PLATFORM_OUTPUTS) <= set(exported)
    (api,) = sim.of_type("aws:apigatewayv2/api:Api")
    assert exported[outputs.API_URL] == api.outputs["apiEndpoint"]
    assert exported[outputs.FUNCTION_NAMES] == {
        s.name: f"stageline-{stack}-{s.name}" for s in config(stack).services
    }
    assert exported[outputs.ALIAS_ARNS] == {
        s.name: sim.named(f"service-{s.name}-live").outputs["arn"] for s in config(stack).services
    }
    # Without a canary, `live` serves what the deployment published.
    assert exported[outputs.LIVE_VERSIONS] == {s.name: MOCK_PUBLISHED_VERSION for s in config(stack).services}
    assert exported[outputs.PUBLISHED_VERSIONS] == exported[outputs.LIVE_VERSIONS]
    assert exported[outputs.HEALTH_PATHS] == {s.name: s.health_path for s in config(stack).services}
    dists = distributions(sim)
    assert exported[outputs.APP_DISTRIBUTION_ID] == dists["app"].id
    assert exported[outputs.TEST_DISTRIBUTION_ID] == dists["test"].id
    assert exported[outputs.APP_DOMAIN] == dists["app"].outputs["domainName"]
    assert exported[outputs.TEST_DOMAIN] == dists["test"].outputs["domainName"]
    (bucket,) = [b for b in sim.of_type("aws:s3/bucket:Bucket") if b.name == "frontend-bucket"]
    assert exported[outputs.FRONTEND_BUCKET] == bucket.outputs["bucket"]
    assert exported[outputs.ALERT_TOPIC_ARN] == sim.of_type("aws:sns/topic:Topic")[0].outputs["arn"]
    assert exported[outputs.DASHBOARD_NAME] == f"stageline-{stack}"


def test_during_a_canary_live_versions_are_what_live_serves_not_the_canary() -> None:
    # Promotion copies liveVersions into the next canary's stableVersions: it must never be the
    # unbaked canary version, which only gets the canary's share of the traffic.
    values = copy.deepcopy(read_stack_file(ROOT, "prod").values)
    values["release"]["canary"] = {"weight": 0.1, "stableVersions": {"api": "1", "worker": "1"}}
    sim = simulate(values, stack="prod", region="eu-west-1")
    assert sim.outputs[outputs.LIVE_VERSIONS] == {"api": "1", "worker": "1"}
    assert sim.outputs[outputs.PUBLISHED_VERSIONS] == {
        "api": MOCK_PUBLISHED_VERSION,
        "worker": MOCK_PUBLISHED_VERSION,
    }
    for name in ("api", "worker"):
        alias = sim.named(f"service-{name}-live")
        assert alias.inputs["functionVersion"] == sim.outputs[outputs.LIVE_VERSIONS][name]
        assert alias.inputs["routingConfig"] == {"additionalVersionWeights": {MOCK_PUBLISHED_VERSION: 0.1}}


def test_workflow_variables_carry_the_platform_outputs(sims: dict[str, Simulation], stack: str) -> None:
    sim = sims[stack]
    variables = {v.inputs["variableName"]: v.inputs["value"] for v in sim.of_type(VARIABLE_TYPE)}
    if stack == "dev":  # github.manage: false — an unreviewed job holds no GitHub token
        assert variables == {}
        return
    exported = sim.outputs
    assert variables["API_URL"] == exported[outputs.API_URL]
    assert variables["FRONTEND_BUCKET"] == exported[outputs.FRONTEND_BUCKET]
    assert variables["APP_DISTRIBUTION_ID"] == exported[outputs.APP_DISTRIBUTION_ID]
    assert variables["TEST_DISTRIBUTION_ID"] == exported[outputs.TEST_DISTRIBUTION_ID]
    assert variables["APP_DOMAIN"] == exported[outputs.APP_DOMAIN]
    assert variables["TEST_DOMAIN"] == exported[outputs.TEST_DOMAIN]


# --- across stacks --------------------------------------------------------------------------------


def test_all_stacks_declare_the_same_resource_types(sims: dict[str, Simulation]) -> None:
    # The AWS side is the same everywhere; the GitHub side differs by design (dev's unreviewed
    # job holds no GitHub token, only prod declares protection rules).
    types = {
        stack: {t for t in sim.types() if not t.startswith(("github:", "pulumi:providers:github"))}
        - {"stageline:infra:GitHubEnvironment"}
        for stack, sim in sims.items()
    }
    assert types["dev"] == types["staging"] == types["prod"]


def test_log_retention_grows_from_dev_to_prod(sims: dict[str, Simulation]) -> None:
    retention = {}
    for stack, sim in sims.items():
        days = {g.inputs["retentionInDays"] for g in sim.of_type("aws:cloudwatch/logGroup:LogGroup")}
        assert len(days) == 1, f"{stack}: every log group keeps logs equally long"
        retention[stack] = days.pop()
    assert retention["prod"] >= retention["staging"] >= retention["dev"]
    assert retention["prod"] > retention["dev"]


def test_dev_is_small_and_prod_is_larger(sims: dict[str, Simulation]) -> None:
    dev, prod = functions(sims["dev"]), functions(sims["prod"])
    for name, fn in dev.items():
        twin = prod[name.replace("stageline-dev-", "stageline-prod-")]
        assert twin.inputs["memorySize"] > fn.inputs["memorySize"]
        assert twin.inputs.get("reservedConcurrentExecutions", 0) > fn.inputs.get(
            "reservedConcurrentExecutions", 0
        )
    budgets = {
        s: float(sims[s].of_type("aws:budgets/budget:Budget")[0].inputs["limitAmount"]) for s in STACKS
    }
    assert budgets["dev"] < budgets["staging"] < budgets["prod"]


def test_no_component_branches_on_the_stack_name(sims: dict[str, Simulation]) -> None:
    # The same config under another stack name yields the same resources, renamed: sizing comes
    # from config, never from `if stack == "prod"`.
    values = copy.deepcopy(read_stack_file(ROOT, "prod").values)
    renamed = simulate(values, stack="qa", region="eu-west-1", secret_values={})

    def shape(sim: Simulation, stack: str) -> list[tuple[str, str, str]]:
        rows = []
        for r in sim.resources:
            if r.type.startswith("github:") or r.type == "stageline:infra:GitHubEnvironment":
                continue  # GitHub environments are named after the stack by design
            body = json.dumps(r.inputs, sort_keys=True).replace(f"stageline-{stack}", "stageline-STACK")
            body = body.replace(f'"environment": "{stack}"', '"environment": "STACK"')
            body = body.replace(f"user:environment${stack}", "user:environment$STACK")
            body = body.replace(f'"STAGELINE_ENVIRONMENT": "{stack}"', '"STAGELINE_ENVIRONMENT": "STACK"')
            rows.append((r.type, r.name, body))
        return sorted(rows)

    prod_rows = {(t, n): b for t, n, b in shape(sims["prod"], "prod")}
    qa_rows = {(t, n): b for t, n, b in shape(renamed, "qa")}
    assert set(prod_rows) == set(qa_rows)
    differing = sorted(
        key
        for key in prod_rows
        if prod_rows[key] != qa_rows[key]
        and key[0].startswith(
            ("aws:lambda", "aws:cloudfront", "aws:cloudwatch", "aws:budgets", "aws:apigatewayv2", "aws:sns")
        )
    )
    assert differing == []


def test_a_canary_on_a_shipped_stack_routes_its_weight_to_the_new_version() -> None:
    values = copy.deepcopy(read_stack_file(ROOT, "prod").values)
    values["release"]["canary"] = {"weight": 0.1, "stableVersions": {"api": "1", "worker": "1"}}
    sim = simulate(values, stack="prod", region="eu-west-1", secret_values={})
    for alias in sim.of_type("aws:lambda/alias:Alias"):
        assert alias.inputs["functionVersion"] == "1"
        assert alias.inputs["routingConfig"] == {"additionalVersionWeights": {MOCK_PUBLISHED_VERSION: 0.1}}
    names = set(sim.outputs[outputs.ALARM_NAMES])
    assert {"stageline-prod-api-canary-errors", "stageline-prod-worker-canary-errors"} <= names
