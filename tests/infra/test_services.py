"""Services: digest-pinned Lambda functions behind a `live` alias, with canary routing from config."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError, Grant, load, parse, read_stack_file
from infra.services import (
    LambdaService,
    LambdaServiceArgs,
    execution_policy,
    image_uri,
    lambda_trust_policy,
    live_routing,
)
from infra.simulate import Simulation, simulate

ROOT = Path(__file__).resolve().parents[2]
REPO_URL = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/stageline-dev"
BOUNDARY = "arn:aws:iam::123456789012:policy/stageline-dev-boundary"
DIGEST = "sha256:" + "ab" * 32
MOCK_PUBLISHED_VERSION = "2"  # what infra.simulate returns as a function's published version


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


def run_services(values: dict[str, Any], stack: str = "dev") -> Simulation:
    def program() -> None:
        cfg = load()
        for svc in cfg.services:
            LambdaService(
                f"service-{svc.name}",
                LambdaServiceArgs.from_config(
                    cfg, svc, repository_url=REPO_URL, permissions_boundary_arn=BOUNDARY
                ),
            )

    return simulate(values, stack=stack, program=program)


def config_error(values: dict[str, Any], stack: str = "dev") -> str:
    with pytest.raises(ConfigError) as info:
        parse(values, stack=stack, region="eu-west-1")
    message = str(info.value)
    assert "\n" not in message
    return message


def with_canary(values: dict[str, Any], weight: Any, stable: dict[str, str]) -> dict[str, Any]:
    values = copy.deepcopy(values)
    values["release"]["canary"] = {"weight": weight, "stableVersions": stable}
    return values


@pytest.fixture(scope="module")
def dev() -> Simulation:
    values = stack_values("dev")
    values["services"][0]["grants"] = [
        {
            "actions": ["dynamodb:GetItem", "dynamodb:PutItem"],
            "resources": ["arn:aws:dynamodb:eu-west-1:123456789012:table/orders"],
        }
    ]
    return run_services(values)


# --- pure rules ---------------------------------------------------------------------------------


def test_image_uri_pins_the_digest() -> None:
    assert image_uri(REPO_URL, DIGEST) == f"{REPO_URL}@{DIGEST}"


@pytest.mark.parametrize("digest", ["latest", "v1.2.3", "sha256:abc", "sha256:" + "AB" * 32])
def test_image_uri_refuses_anything_but_a_sha256_digest(digest: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        image_uri(REPO_URL, digest)


def test_image_uri_refuses_a_repository_that_already_names_an_image() -> None:
    with pytest.raises(ValueError, match="repository URL"):
        image_uri(f"{REPO_URL}:latest", DIGEST)


def test_without_a_canary_live_moves_to_the_new_version() -> None:
    assert live_routing("8") == live_routing("8", canary_weight=None)
    routing = live_routing("8")
    assert routing.function_version == "8"
    assert routing.additional_version_weights == {}


def test_with_a_canary_live_keeps_the_stable_version_and_weights_the_new_one() -> None:
    routing = live_routing("8", canary_weight=0.1, stable_version="7")
    assert routing.function_version == "7"
    assert routing.additional_version_weights == {"8": 0.1}


def test_a_canary_never_splits_traffic_between_a_version_and_itself() -> None:
    routing = live_routing("7", canary_weight=0.1, stable_version="7")
    assert routing.function_version == "7"
    assert routing.additional_version_weights == {}


@pytest.mark.parametrize(("weight", "stable"), [(0.0, "7"), (1.0, "7"), (0.1, None), (0.1, "$LATEST")])
def test_an_invalid_canary_is_refused(weight: float, stable: str | None) -> None:
    with pytest.raises(ValueError):
        live_routing("8", canary_weight=weight, stable_version=stable)


def test_execution_policy_writes_only_to_its_own_log_group() -> None:
    arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/stageline-dev-api"
    policy = execution_policy(arn)
    assert policy["Statement"] == [
        {
            "Sid": "OwnLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [arn, f"{arn}:log-stream:*"],
        }
    ]
    # The ":*" form some ARNs carry is normalised rather than widened.
    assert execution_policy(arn + ":*") == policy


def test_execution_policy_adds_exactly_the_configured_grants() -> None:
    arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/stageline-dev-api"
    grant = Grant(actions=("sqs:SendMessage",), resources=("arn:aws:sqs:eu-west-1:123456789012:jobs",))
    statements = execution_policy(arn, (grant,))["Statement"]
    assert len(statements) == 2
    assert statements[1] == {
        "Sid": "Grant0",
        "Effect": "Allow",
        "Action": ["sqs:SendMessage"],
        "Resource": ["arn:aws:sqs:eu-west-1:123456789012:jobs"],
    }


def test_only_lambda_can_assume_an_execution_role() -> None:
    (statement,) = lambda_trust_policy()["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }


# --- the component under mocks ------------------------------------------------------------------


def test_every_function_runs_its_release_image_pinned_by_digest(dev: Simulation) -> None:
    images = stack_values("dev")["release"]["images"]
    functions = dev.of_type("aws:lambda/function:Function")
    assert {f.inputs["name"] for f in functions} == {f"stageline-dev-{s}" for s in images}
    for fn in functions:
        service = fn.inputs["name"].removeprefix("stageline-dev-")
        assert fn.inputs["packageType"] == "Image"
        assert fn.inputs["imageUri"] == f"{REPO_URL}@{images[service]}"
        assert fn.inputs["publish"] is True


def test_function_sizing_and_environment_come_from_the_service_config(dev: Simulation) -> None:
    for svc in stack_values("dev")["services"]:
        fn = dev.named(f"service-{svc['name']}-function")
        assert fn.inputs["memorySize"] == svc["memory"]
        assert fn.inputs["timeout"] == svc["timeout"]
        assert "reservedConcurrentExecutions" not in fn.inputs  # dev reserves none
        assert fn.inputs["environment"]["variables"] == {
            **svc["environment"],
            "STAGELINE_RELEASE": "4f9c2d1",
            "STAGELINE_ENVIRONMENT": "dev",
        }


def test_reserved_concurrency_is_set_when_configured() -> None:
    values = stack_values("dev")
    values["services"][1]["reservedConcurrency"] = 7
    sim = run_services(values)
    assert sim.named("service-worker-function").inputs["reservedConcurrentExecutions"] == 7
    assert "reservedConcurrentExecutions" not in sim.named("service-api-function").inputs


def test_log_group_exists_before_its_function_with_the_configured_retention(dev: Simulation) -> None:
    for fn in dev.of_type("aws:lambda/function:Function"):
        service = fn.name.removesuffix("-function")
        group = dev.named(f"{service}-logs")
        assert group.inputs["name"] == f"/aws/lambda/{fn.inputs['name']}"
        assert group.inputs["retentionInDays"] == 7
        assert fn.inputs["loggingConfig"]["logGroup"] == group.inputs["name"]
        assert group.urn in fn.dependencies


def test_execution_role_carries_the_boundary_and_may_only_log_plus_its_grants(dev: Simulation) -> None:
    for fn in dev.of_type("aws:lambda/function:Function"):
        service = fn.name.removesuffix("-function")
        role = dev.named(f"{service}-exec")
        assert role.inputs["name"] == f"{fn.inputs['name']}-exec"
        assert role.inputs["permissionsBoundary"] == BOUNDARY
        assert fn.inputs["role"] == role.outputs["arn"]
        policy = json.loads(dev.named(f"{service}-exec-policy").inputs["policy"])
        group_arn = dev.named(f"{service}-logs").outputs["arn"]
        assert policy["Statement"][0]["Resource"] == [group_arn, f"{group_arn}:log-stream:*"]
        assert dev.named(f"{service}-exec-policy").urn in fn.dependencies
    api_grants = json.loads(dev.named("service-api-exec-policy").inputs["policy"])["Statement"][1:]
    assert api_grants == [
        {
            "Sid": "Grant0",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
            "Resource": ["arn:aws:dynamodb:eu-west-1:123456789012:table/orders"],
        }
    ]
    assert len(json.loads(dev.named("service-worker-exec-policy").inputs["policy"])["Statement"]) == 1


def test_every_function_has_a_live_alias_on_its_published_version(dev: Simulation) -> None:
    aliases = dev.of_type("aws:lambda/alias:Alias")
    functions = dev.of_type("aws:lambda/function:Function")
    assert sorted(a.inputs["functionName"] for a in aliases) == sorted(f.inputs["name"] for f in functions)
    for alias in aliases:
        assert alias.inputs["name"] == "live"
        assert alias.inputs["functionVersion"] == MOCK_PUBLISHED_VERSION
        assert "routingConfig" not in alias.inputs


def test_a_configured_canary_keeps_stable_and_routes_its_weight_to_the_new_version() -> None:
    sim = run_services(with_canary(stack_values("dev"), 0.25, {"api": "1", "worker": "1"}))
    for alias in sim.of_type("aws:lambda/alias:Alias"):
        assert alias.inputs["functionVersion"] == "1"
        assert alias.inputs["routingConfig"] == {"additionalVersionWeights": {MOCK_PUBLISHED_VERSION: 0.25}}


def test_a_canary_on_an_unchanged_function_routes_everything_to_it() -> None:
    sim = run_services(with_canary(stack_values("dev"), 0.5, {"api": MOCK_PUBLISHED_VERSION, "worker": "1"}))
    api = sim.named("service-api-live").inputs
    assert api["functionVersion"] == MOCK_PUBLISHED_VERSION
    # Nothing to split: no routing config at all, not an empty weights map.
    assert "routingConfig" not in api
    worker = sim.named("service-worker-live").inputs
    assert worker["functionVersion"] == "1"
    assert worker["routingConfig"] == {"additionalVersionWeights": {MOCK_PUBLISHED_VERSION: 0.5}}


def test_the_routing_config_exists_only_when_traffic_is_split() -> None:
    assert live_routing("5").routing_config() is None
    assert live_routing("5", canary_weight=0.5, stable_version="5").routing_config() is None
    assert live_routing("5", canary_weight=0.1, stable_version="4").routing_config() == {
        "additional_version_weights": {"5": 0.1}
    }


# --- config errors --------------------------------------------------------------------------------


def test_duplicate_service_names_are_a_config_error() -> None:
    values = stack_values()
    values["services"][1]["name"] = "api"
    assert config_error(values) == 'stageline:services[1].name duplicates services[0]: "api"'


def test_an_unknown_service_key_is_a_config_error_with_a_suggestion() -> None:
    values = stack_values()
    values["services"][0]["memorySize"] = 512
    assert (
        config_error(values) == 'stageline:services[0].memorySize is not a known key (did you mean "memory"?)'
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("memory", 64, "stageline:services[0].memory must be between 128 and 10240, got 64"),
        ("memory", 20480, "stageline:services[0].memory must be between 128 and 10240, got 20480"),
        ("memory", "lots", 'stageline:services[0].memory must be a whole number, got "lots"'),
        ("timeout", 0, "stageline:services[0].timeout must be between 1 and 900, got 0"),
        ("timeout", 901, "stageline:services[0].timeout must be between 1 and 900, got 901"),
        (
            "reservedConcurrency",
            -1,
            "stageline:services[0].reservedConcurrency must be between 0 and 1000, got -1",
        ),
        (
            "healthPath",
            "health",
            'stageline:services[0].healthPath must look like a path starting with "/", got "health"',
        ),
        (
            "name",
            "Api",
            "stageline:services[0].name must look like a lower-case name (letters, digits, -; up to 30), "
            'got "Api"',
        ),
    ],
)
def test_out_of_range_service_values_are_config_errors(key: str, value: Any, expected: str) -> None:
    values = stack_values()
    values["services"][0][key] = value
    assert config_error(values) == expected


def test_a_reserved_lambda_variable_is_a_config_error() -> None:
    values = stack_values()
    values["services"][0]["environment"]["AWS_REGION"] = "us-east-1"
    assert config_error(values) == "stageline:services[0].environment.AWS_REGION is reserved by Lambda"


def test_a_stack_name_too_long_for_the_physical_names_is_a_config_error() -> None:
    # "stageline-<stack>-frontend-" must fit S3's 37-character bucket prefix; every other name
    # (function, execution role) then fits its own limit too.
    assert config_error(stack_values(), stack="feature-checkout-v2") == (
        'stack name "feature-checkout-v2" is too long for project "stageline": the frontend bucket prefix '
        '"stageline-feature-checkout-v2-frontend-" has 39 characters, S3 allows 37'
    )


def test_an_image_given_by_tag_is_a_config_error() -> None:
    values = stack_values()
    values["release"]["images"]["api"] = "latest"
    assert config_error(values) == (
        'stageline:release.images.api must look like "sha256:" and 64 hex digits, got "latest"'
    )


def test_a_service_without_an_image_is_a_config_error() -> None:
    values = stack_values()
    del values["release"]["images"]["worker"]
    assert config_error(values) == (
        "stageline:release.images.worker (or release.packages.worker) is required: "
        'service "worker" has no image and no package'
    )


def test_an_image_for_an_unknown_service_is_a_config_error() -> None:
    values = stack_values()
    values["release"]["images"]["wroker"] = DIGEST
    assert config_error(values) == (
        'stageline:release.images.wroker names an unknown service (did you mean "worker"?)'
    )


def test_a_malformed_release_version_is_a_config_error() -> None:
    values = stack_values()
    values["release"]["version"] = "release 1"
    assert config_error(values).startswith("stageline:release.version must look like a version or git SHA")


@pytest.mark.parametrize("weight", [0, 1, 1.5, -0.1])
def test_a_canary_weight_outside_zero_and_one_is_a_config_error(weight: float) -> None:
    values = with_canary(stack_values(), weight, {"api": "1", "worker": "1"})
    assert (
        config_error(values)
        == f"stageline:release.canary.weight must be strictly between 0.0 and 1.0, got {weight}"
    )


def test_a_canary_without_a_stable_version_per_service_is_a_config_error() -> None:
    values = with_canary(stack_values(), 0.1, {"api": "1"})
    assert config_error(values) == "stageline:release.canary.stableVersions.worker is required"
    values = with_canary(stack_values(), 0.1, {"api": "1", "worker": "$LATEST"})
    assert config_error(values) == (
        "stageline:release.canary.stableVersions.worker must be a published Lambda "
        'version number, got "$LATEST"'
    )


def test_the_program_fails_with_the_config_error_not_a_traceback() -> None:
    values = stack_values()
    values["services"][0]["memory"] = 64
    with pytest.raises(ConfigError, match=r"^stageline:services\[0\]\.memory must be between 128 and 10240"):
        run_services(values)


@pytest.mark.parametrize(
    ("action", "probe"),
    [
        ("iam:PassRole", "iam:PassRole"),
        ("sts:AssumeRole", "sts:AssumeRole"),
        ("i*:*", "identitystore:CreateUser"),
        ("organizations:LeaveOrganization", "organizations:LeaveOrganization"),
        ("organizations:*", "organizations:LeaveOrganization"),
        ("account:Put*", "account:PutAlternateContact"),
        ("cloudtrail:StopLogging", "cloudtrail:StopLogging"),
    ],
)
def test_a_service_may_not_be_granted_actions_that_administer_iam_the_account_or_the_organization(
    action: str, probe: str
) -> None:
    values = stack_values()
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"
    values["services"][0]["grants"] = [{"actions": [action], "resources": [table]}]
    with pytest.raises(ConfigError) as err:
        parse(values, stack="dev", region="eu-west-1")
    assert str(err.value) == (
        f'stageline:services[0].grants[0].actions[0] "{action}" covers {probe}: a service may not be '
        "granted actions that administer IAM, the account or the organization"
    )


@pytest.mark.parametrize(
    ("actions", "resource", "reach"),
    [
        (["s3:*"], "*", "every resource of the account"),
        (["s3:Put*"], "*", "every resource of the account"),
        (["s3:*"], "arn:aws:s3:::*", "every s3 resource"),  # every bucket, however it is spelt
        (["s3:GetObject"], "arn:aws:s3:::*", "every s3 resource"),
        (["s3:*"], "arn:*", "every resource of the account"),
        (["kms:Decrypt"], "arn:aws:kms:eu-west-1:123456789012:key/*", "every kms key"),
        (["kms:Decrypt"], "arn:aws:kms:*", "every resource"),
        (
            ["secretsmanager:GetSecretValue"],
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:*",
            "every secretsmanager secret",
        ),
        (
            ["lambda:UpdateFunctionCode"],
            "arn:aws:lambda:eu-west-1:123456789012:function:*",
            "every lambda function",
        ),
        (
            ["lambda:InvokeFunction"],
            "arn:aws:lambda:eu-west-1:123456789012:function:stageline-*",
            'every lambda function named "stageline-*"',
        ),
        (
            ["dynamodb:GetItem"],
            "arn:aws:dynamodb:*:123456789012:table/orders",
            "a pattern in the region or account",
        ),
        (
            ["dynamodb:GetItem"],
            "arn:aws:dynamodb:eu-west-1:*:table/orders",
            "a pattern in the region or account",
        ),
        (
            ["dynamodb:GetItem"],
            "arn:aws:*:eu-west-1:123456789012:table/orders",
            "a pattern in the partition or service",
        ),
    ],
)
def test_a_grant_whose_resources_reach_beyond_named_ones_is_refused(
    actions: list[str], resource: str, reach: str
) -> None:
    values = stack_values()
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"
    values["services"][0]["grants"] = [{"actions": actions, "resources": [table, resource]}]
    with pytest.raises(ConfigError) as err:
        parse(values, stack="dev", region="eu-west-1")
    assert str(err.value) == (
        f'stageline:services[0].grants[0].resources[1] "{resource}" reaches {reach}; name the resources '
        "(a pattern may follow a full name or stageline-dev-)"
    )


@pytest.mark.parametrize(
    "resource", ["orders", "arn:aws:dynamodb", "table/orders", "arn:aws:s3:::bucket name"]
)
def test_a_grant_resource_that_is_not_an_arn_is_refused(resource: str) -> None:
    values = stack_values()
    values["services"][0]["grants"] = [{"actions": ["dynamodb:GetItem"], "resources": [resource]}]
    with pytest.raises(ConfigError) as err:
        parse(values, stack="dev", region="eu-west-1")
    assert str(err.value) == (
        "stageline:services[0].grants[0].resources[0] must be an ARN "
        f'(arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE), got "{resource}"'
    )


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:dynamodb:eu-west-1:123456789012:table/orders",
        "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/index/*",
        "arn:aws:s3:::acme-uploads/*",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-??????",
        "arn:aws:lambda:eu-west-1:123456789012:function:stageline-dev-*",
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/stageline-dev-api:*",
        "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ],
)
def test_a_grant_on_named_resources_or_the_stacks_own_is_accepted(resource: str) -> None:
    values = stack_values()
    values["services"][0]["grants"] = [{"actions": ["dynamodb:GetItem"], "resources": [resource]}]
    cfg = parse(values, stack="dev", region="eu-west-1")
    assert cfg.services[0].grants[0].resources == (resource,)


def test_a_whole_service_on_named_resources_is_a_grant() -> None:
    values = stack_values()
    values["services"][0]["grants"] = [{"actions": ["s3:*"], "resources": ["arn:aws:s3:::orders-bucket/*"]}]
    cfg = parse(values, stack="dev", region="eu-west-1")
    assert cfg.services[0].grants[0].actions == ("s3:*",)


@pytest.mark.parametrize("var", ["STAGELINE_RELEASE", "STAGELINE_ENVIRONMENT"])
def test_stageline_variables_cannot_be_overridden_by_a_service(var: str) -> None:

    values = stack_values()
    values["services"][0]["environment"] = {var: "x"}
    with pytest.raises(ConfigError) as err:
        parse(values, stack="dev", region="eu-west-1")
    assert str(err.value) == f"stageline:services[0].environment.{var} is set by Stageline itself"


def test_environment_variables_beyond_lambdas_4kb_are_a_config_error() -> None:

    values = stack_values()
    values["services"][0]["environment"] = {"BIG": "x" * 4000}
    with pytest.raises(ConfigError) as err:
        parse(values, stack="dev", region="eu-west-1")
    assert "stageline:services[0].environment takes 4003 bytes; Lambda allows 3900" in str(err.value)


# --- zip packages ---------------------------------------------------------------------------------

PACKAGES = {"api": "sha256:" + "1f" * 32, "worker": "sha256:" + "2e" * 32}


def _packaged(values: dict[str, Any], version: str = "4f9c2d1") -> dict[str, Any]:
    values = copy.deepcopy(values)
    values["release"] = {"version": version, "packages": dict(PACKAGES), "frontend": "3d" * 32}
    values["services"][0]["runtime"] = "python3.13"
    values["services"][0]["handler"] = "app.main"
    return values


def test_a_packaged_service_runs_its_zip_from_the_artifact_bucket() -> None:
    import base64

    sim = simulate(_packaged(stack_values("dev")), stack="dev")
    bucket = sim.named("artifacts-bucket").outputs["bucket"]
    for service, digest in PACKAGES.items():
        fn = sim.named(f"service-{service}-function")
        hexdigest = digest.removeprefix("sha256:")
        assert fn.inputs["packageType"] == "Zip"
        assert "imageUri" not in fn.inputs
        assert fn.inputs["s3Bucket"] == bucket
        assert fn.inputs["s3Key"] == f"packages/{service}/{hexdigest}.zip"
        assert base64.b64decode(fn.inputs["sourceCodeHash"]).hex() == hexdigest
        assert fn.outputs["codeSha256"] == fn.inputs["sourceCodeHash"]
        # The function carries its package, not the release version: a new version alone changes nothing.
        variables = fn.inputs["environment"]["variables"]
        assert variables["STAGELINE_PACKAGE"] == digest and "STAGELINE_RELEASE" not in variables
        assert sim.named("artifacts-bucket").urn in fn.dependencies
    api, worker = sim.named("service-api-function"), sim.named("service-worker-function")
    assert (api.inputs["runtime"], api.inputs["handler"]) == ("python3.13", "app.main")
    assert (worker.inputs["runtime"], worker.inputs["handler"]) == ("python3.12", "handler.handler")
    # Both distributions serve the frontend release by its name.
    origins = {
        d.name: d.inputs["origins"][0]["originPath"]
        for d in sim.of_type("aws:cloudfront/distribution:Distribution")
    }
    assert set(origins.values()) == {"/releases/" + "3d" * 32}


def test_a_new_version_with_the_same_packages_leaves_every_function_as_it_was() -> None:
    before = simulate(_packaged(stack_values("dev")), stack="dev")
    after = simulate(_packaged(stack_values("dev"), version="9a8b7c6"), stack="dev")
    for service in PACKAGES:
        name = f"service-{service}-function"
        assert before.named(name).inputs == after.named(name).inputs


def test_a_service_runs_an_image_or_a_package_never_both() -> None:
    values = _packaged(stack_values("dev"))
    values["release"]["images"] = {"api": DIGEST}
    assert config_error(values) == (
        'stageline:release.packages.api: service "api" has an image too; a service runs either an image '
        "or a package"
    )
    values = _packaged(stack_values("dev"))
    values["release"]["frontend"] = "v1"
    assert "stageline:release.frontend must look like the 64 hex digits" in config_error(values)
    values = _packaged(stack_values("dev"))
    values["services"][0]["runtime"] = "nodejs20.x"
    assert 'stageline:services[0].runtime must look like "python3.N"' in config_error(values)
