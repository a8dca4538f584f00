"""The GitHubEnvironment component: protection rules, variables, and secrets that stay secret."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pulumi
import pulumi_github as github
import pytest
from foundation_testkit import run, stack_values

from infra.config import DeploymentBranches, Reviewers, load, parse
from infra.github_env import GitHubEnvironment, GitHubEnvironmentArgs, branch_policy, preview_role_variable
from infra.simulate import Simulation, _invoke_result

ENV = "github:index/repositoryEnvironment:RepositoryEnvironment"
POLICY = "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy"
VARIABLE = "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable"
SECRET = "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret"
WEBHOOK = "https://hooks.slack.com/services/T0000/B0000/s3cr3t-w3bh00k"


def environment_program(**overrides: Any) -> Any:
    """A program building only the GitHub environment from the running stack's config."""

    def program() -> None:
        cfg = load()
        secrets: dict[str, pulumi.Input[str]] = {}
        if cfg.slack_webhook_url is not None:
            secrets["SLACK_WEBHOOK_URL"] = cfg.slack_webhook_url
        args = GitHubEnvironmentArgs.from_config(
            cfg, variables={"AWS_REGION": cfg.region, "PULUMI_STACK": cfg.stack}, secrets=secrets
        )
        args = dataclasses.replace(args, **overrides)
        provider = github.Provider("github", owner=cfg.github.owner)
        env = GitHubEnvironment("github", args, pulumi.ResourceOptions(providers={"github": provider}))
        pulumi.export("environment", env.environment_name)

    return program


def simulate_env(stack: str, *, secret: str | None = None, **overrides: Any) -> Simulation:
    values = stack_values(stack)
    kwargs: dict[str, Any] = {}
    if secret is not None:
        values["slackWebhookUrl"] = "ciphertext-the-engine-would-decrypt"
        kwargs["secret_values"] = {"slackWebhookUrl": secret}
    return run(values, stack=stack, program=environment_program(**overrides), **kwargs)


def mocked_id(kind: str, name: str) -> int:
    token = "github:index/getUser:getUser" if kind == "user" else "github:index/getTeam:getTeam"
    key = "username" if kind == "user" else "slug"
    return int(_invoke_result(token, {key: name}, "eu-west-1")["id"])


@pytest.fixture(scope="module")
def prod() -> Simulation:
    return simulate_env("prod", secret=WEBHOOK)


def test_prod_requires_named_reviewers_no_self_review_no_admin_bypass_and_waits(prod: Simulation) -> None:
    (env,) = prod.of_type(ENV)
    assert env.inputs["repository"] == "storefront"
    assert env.inputs["environment"] == "prod"
    assert env.inputs["reviewers"] == [
        {
            "users": [mocked_id("user", "maria-ops")],
            "teams": [mocked_id("team", "platform"), mocked_id("team", "release-managers")],
        }
    ]
    assert env.inputs["preventSelfReview"] is True
    assert env.inputs["canAdminsBypass"] is False
    assert env.inputs["waitTimer"] == 10
    assert env.inputs["deploymentBranchPolicy"] == {"protectedBranches": False, "customBranchPolicies": True}
    assert prod.outputs["environment"] == "prod"


def test_reviewer_ids_are_looked_up_by_login_and_slug(prod: Simulation) -> None:
    lookups = sorted(
        (token.split(":")[-1], args.get("username") or args.get("slug"), args.get("summaryOnly"))
        for token, args in prod.invokes
        if token.startswith("github:")
    )
    assert lookups == [
        ("getTeam", "platform", True),
        ("getTeam", "release-managers", True),
        ("getUser", "maria-ops", None),
    ]


def test_prod_deploys_only_from_main_and_version_tags(prod: Simulation) -> None:
    patterns = sorted(
        (p.inputs.get("branchPattern", ""), p.inputs.get("tagPattern", ""), p.inputs["environment"])
        for p in prod.of_type(POLICY)
    )
    assert patterns == [("", "v*", "prod"), ("main", "", "prod")]


def test_dev_deploys_from_main_only_without_reviewers() -> None:
    sim = simulate_env("dev")
    (env,) = sim.of_type(ENV)
    assert "reviewers" not in env.inputs
    assert env.inputs["canAdminsBypass"] is True
    assert env.inputs["preventSelfReview"] is False
    assert env.inputs["deploymentBranchPolicy"] == {"protectedBranches": False, "customBranchPolicies": True}
    assert [(p.inputs.get("branchPattern"), p.inputs.get("tagPattern")) for p in sim.of_type(POLICY)] == [
        ("main", None)
    ]


def test_protected_branches_need_no_policy_resources() -> None:
    from infra.config import DeploymentBranches

    sim = simulate_env("dev", deployment_branches=DeploymentBranches(protected_branches=True))
    (env,) = sim.of_type(ENV)
    assert env.inputs["deploymentBranchPolicy"] == {"protectedBranches": True, "customBranchPolicies": False}
    assert sim.of_type(POLICY) == []


def test_staging_needs_the_platform_team_and_admins_cannot_bypass() -> None:
    (env,) = simulate_env("staging").of_type(ENV)
    assert env.inputs["reviewers"] == [{"users": [], "teams": [mocked_id("team", "platform")]}]
    assert env.inputs["canAdminsBypass"] is False


def test_without_a_branch_policy_in_config_none_is_sent() -> None:
    assert branch_policy(None) is None
    (env,) = simulate_env("dev", deployment_branches=None).of_type(ENV)
    assert "deploymentBranchPolicy" not in env.inputs


def test_each_variable_is_one_resource_in_the_environment(prod: Simulation) -> None:
    variables = {v.inputs["variableName"]: v for v in prod.of_type(VARIABLE)}
    assert {k: v.inputs["value"] for k, v in variables.items()} == {
        "AWS_REGION": "eu-west-1",
        "PULUMI_STACK": "prod",
    }
    for variable in variables.values():
        assert variable.inputs["environment"] == "prod"
        assert variable.inputs["repository"] == "storefront"
        # Created only once the protected environment exists.
        assert prod.named("github-environment").urn in variable.dependencies


def test_the_webhook_secret_is_masked_marked_secret_and_never_in_plain_text(prod: Simulation) -> None:
    (secret,) = prod.of_type(SECRET)
    assert secret.inputs["secretName"] == "SLACK_WEBHOOK_URL"
    assert secret.inputs["value"] == "[secret]"
    assert "value" in secret.secret_paths
    assert "plaintextValue" not in secret.inputs
    everything = json.dumps([[r.inputs, r.outputs] for r in prod.resources]) + json.dumps(prod.outputs)
    assert WEBHOOK not in everything
    assert "s3cr3t" not in everything


def test_a_secret_passed_as_plain_text_is_still_sent_as_a_secret() -> None:
    plain = "not-wrapped-by-the-caller"

    def program() -> None:
        provider = github.Provider("github", owner="acme-shop")
        GitHubEnvironment(
            "github",
            GitHubEnvironmentArgs(repository="storefront", environment="dev", secrets={"TOKEN": plain}),
            pulumi.ResourceOptions(providers={"github": provider}),
        )

    sim = run(stack_values("dev"), program=program)
    (secret,) = sim.of_type(SECRET)
    assert secret.inputs["value"] == "[secret]"
    assert "value" in secret.secret_paths
    assert plain not in json.dumps([r.inputs for r in sim.resources])


def test_no_secret_resource_without_a_webhook_in_config() -> None:
    assert simulate_env("dev").of_type(SECRET) == []


def test_args_come_from_the_stack_config() -> None:
    cfg = parse(stack_values("prod"), stack="prod", region="eu-west-1")
    args = GitHubEnvironmentArgs.from_config(cfg, variables={"AWS_REGION": "eu-west-1"}, secrets={})
    assert args.repository == "storefront"
    assert args.environment == "prod"
    assert args.reviewers == Reviewers(users=("maria-ops",), teams=("platform", "release-managers"))
    assert args.deployment_branches == DeploymentBranches(branch_patterns=("main",), tag_patterns=("v*",))


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"repository": "acme-shop/storefront"}, "without its owner"),
        ({"variables": {"GITHUB_TOKEN": "x"}}, "GitHub variable name 'GITHUB_TOKEN'"),
        ({"variables": {"1ST": "x"}}, "GitHub variable name '1ST'"),
        ({"secrets": {"SLACK-URL": "x"}}, "GitHub secret name 'SLACK-URL'"),
    ],
)
def test_bad_names_are_refused_before_anything_is_created(kwargs: dict[str, Any], problem: str) -> None:
    base: dict[str, Any] = {"repository": "storefront", "environment": "dev"}
    with pytest.raises(ValueError, match=problem):
        GitHubEnvironmentArgs(**{**base, **kwargs})


def test_repository_variables_are_repository_wide_not_per_environment() -> None:
    def program() -> None:
        provider = github.Provider("github", owner="acme-shop")
        args = GitHubEnvironmentArgs(
            repository="storefront",
            environment="dev",
            repository_variables={
                "PREVIEW_ROLE_ARN_DEV": "arn:aws:iam::123456789012:role/stageline-dev-preview"
            },
        )
        GitHubEnvironment("github", args, pulumi.ResourceOptions(providers={"github": provider}))

    sim = run(stack_values("dev"), program=program)
    (variable,) = sim.of_type("github:index/actionsVariable:ActionsVariable")
    assert variable.inputs == {
        "repository": "storefront",
        "variableName": "PREVIEW_ROLE_ARN_DEV",
        "value": "arn:aws:iam::123456789012:role/stageline-dev-preview",
    }
    assert preview_role_variable("dev") == "PREVIEW_ROLE_ARN_DEV"
    assert preview_role_variable("eu-prod") == "PREVIEW_ROLE_ARN_EU_PROD"


def test_the_read_only_environment_has_no_reviewers_and_admits_protected_branches_only() -> None:
    cfg = parse(stack_values("prod"), stack="prod", region="eu-west-1")
    args = GitHubEnvironmentArgs.read_only_from_config(cfg, variables={"AWS_ROLE_ARN": "arn"})
    assert args.environment == "prod-readonly"
    assert args.reviewers == Reviewers()
    assert args.wait_timer_minutes == 0
    assert args.can_admins_bypass is False
    assert args.deployment_branches == DeploymentBranches(protected_branches=True)
    assert dict(args.secrets) == {}
