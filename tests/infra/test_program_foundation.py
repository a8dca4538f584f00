"""The whole program, once per shipped stack file: the foundation's properties end to end.

These tests look only at the trust, artifact and GitHub layers and at properties every resource
must have (tags, providers, bucket hardening), so they hold whatever the platform adds.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from foundation_testkit import (
    ACCOUNT,
    REPOSITORY,
    ROOT,
    STACKS,
    allowed,
    doc,
    is_read_only,
    role_documents,
    run,
    shipped,
    stack_values,
    trust_subjects,
    violations,
)

from infra import outputs
from infra.config import parse_stack_file, read_stack_file
from infra.iam import FORBIDDEN_MANAGED_POLICIES, as_list, statements
from infra.simulate import SimResource, Simulation

VARIABLE = "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable"
SECRET = "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret"
ENVIRONMENT = "github:index/repositoryEnvironment:RepositoryEnvironment"
BUCKET = "aws:s3/bucket:Bucket"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
WEBHOOK = "https://hooks.slack.com/services/T0000/B0000/pr0d-w3bh00k"
# The stacks that publish their own GitHub variables (dev's unreviewed job holds no token).
MANAGED = ("staging", "prod")


def variables(sim: Simulation, environment: str) -> dict[str, Any]:
    return {
        v.inputs["variableName"]: v.inputs["value"]
        for v in sim.of_type(VARIABLE)
        if v.inputs["environment"] == environment
    }


def attached(sim: Simulation, bucket: SimResource, type_: str) -> list[SimResource]:
    return [r for r in sim.of_type(type_) if r.inputs.get("bucket") == bucket.id]


# --- trust ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_each_deploy_role_trusts_exactly_its_own_environment(stack: str) -> None:
    subjects = trust_subjects(doc(shipped(stack).named("trust-deploy"), "assumeRolePolicy"))
    assert subjects == [("StringEquals", f"repo:{REPOSITORY}:environment:{stack}")]
    for other in STACKS:
        if other != stack:
            assert ("StringEquals", f"repo:{REPOSITORY}:environment:{other}") not in subjects


def test_no_two_environments_share_a_deploy_subject() -> None:
    subjects = {
        s: trust_subjects(doc(shipped(s).named("trust-deploy"), "assumeRolePolicy"))[0][1] for s in STACKS
    }
    assert len(set(subjects.values())) == len(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_no_role_anywhere_trusts_a_wildcard_subject(stack: str) -> None:
    sim = shipped(stack)
    for role in sim.of_type("aws:iam/role:Role"):
        trust = doc(role, "assumeRolePolicy")
        for op, subject in trust_subjects(trust):
            assert op == "StringEquals", role.name
            assert "*" not in subject and "?" not in subject, role.name
        for st in statements(trust):
            if "Federated" in st.get("Principal", {}):
                # A federated trust without a subject would admit every repository on GitHub.
                assert trust_subjects({"Statement": [st]}), role.name


@pytest.mark.parametrize("stack", STACKS)
def test_the_preview_role_cannot_write(stack: str) -> None:
    sim = shipped(stack)
    preview = sim.named("trust-preview")
    # Only dev admits pull requests; staging's and prod's preview roles trust only the read-only
    # environment, whose jobs run from protected branches (drift checks, gated previews).
    expected = [("StringEquals", f"repo:{REPOSITORY}:environment:{stack}-readonly")]
    if stack == "dev":
        expected.insert(0, ("StringEquals", f"repo:{REPOSITORY}:pull_request"))
    assert trust_subjects(doc(preview, "assumeRolePolicy")) == expected
    documents = role_documents(sim, preview)
    assert documents
    for document in documents:
        for st in statements(document):
            assert st["Effect"] == "Allow"
            assert [a for a in as_list(st["Action"]) if not is_read_only(a)] == [], st["Sid"]


@pytest.mark.parametrize("stack", STACKS)
def test_no_permission_document_contains_a_forbidden_statement(stack: str) -> None:
    sim = shipped(stack)
    for role_name in ("trust-deploy", "trust-preview"):
        for document in role_documents(sim, sim.named(role_name)):
            assert violations(document, stack) == [], role_name
    for attachment in sim.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        assert not attachment.inputs["policyArn"].endswith(FORBIDDEN_MANAGED_POLICIES)
        assert attachment.inputs["policyArn"].startswith(f"arn:aws:iam::{ACCOUNT}:policy/stageline-{stack}-")
    for role in sim.of_type("aws:iam/role:Role"):
        assert not any(
            arn.endswith(FORBIDDEN_MANAGED_POLICIES) for arn in role.inputs.get("managedPolicyArns", [])
        )


@pytest.mark.parametrize("stack", STACKS)
def test_every_role_the_deploy_role_could_have_created_carries_the_boundary(stack: str) -> None:
    sim = shipped(stack)
    boundary = sim.named("trust-boundary").outputs["arn"]
    assert sim.outputs[outputs.DEPLOY_ROLE_ARN] == sim.named("trust-deploy").outputs["arn"]
    for role in sim.of_type("aws:iam/role:Role"):
        if role.name in ("trust-deploy", "trust-preview"):
            continue
        assert role.inputs["name"].startswith(f"stageline-{stack}-"), role.name
        assert role.inputs.get("permissionsBoundary") == boundary, role.name


# --- artifacts and buckets ------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_bucket_is_encrypted_versioned_private_and_tls_only(stack: str) -> None:
    sim = shipped(stack)
    buckets = sim.of_type(BUCKET)
    assert sim.named("artifacts-bucket") in buckets
    for bucket in buckets:
        (sse,) = attached(sim, bucket, SSE)
        algorithms = {r["applyServerSideEncryptionByDefault"]["sseAlgorithm"] for r in sse.inputs["rules"]}
        assert algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"} and algorithms, bucket.name
        (versioning,) = attached(sim, bucket, "aws:s3/bucketVersioning:BucketVersioning")
        assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled", bucket.name
        (block,) = attached(sim, bucket, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
            assert block.inputs[flag] is True, (bucket.name, flag)
        (policy,) = attached(sim, bucket, "aws:s3/bucketPolicy:BucketPolicy")
        arn = bucket.outputs["arn"]
        assert any(
            st["Effect"] == "Deny"
            and st.get("Principal") == "*"
            and as_list(st["Action"]) == ["s3:*"]
            and set(as_list(st["Resource"])) == {arn, f"{arn}/*"}
            and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for st in statements(json.loads(policy.inputs["policy"]))
        ), bucket.name


@pytest.mark.parametrize("stack", STACKS)
def test_the_registry_is_immutable_scanned_and_trimmed_as_configured(stack: str) -> None:
    sim = shipped(stack)
    keep = parse_stack_file(read_stack_file(ROOT, stack)).artifacts.keep_images
    for repository in sim.of_type("aws:ecr/repository:Repository"):
        assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
        assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        (lifecycle,) = [
            p
            for p in sim.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
            if p.inputs["repository"] == repository.outputs["name"]
        ]
        assert json.loads(lifecycle.inputs["policy"])["rules"][-1]["selection"]["countNumber"] == keep


@pytest.mark.parametrize(("stack", "protected"), [("dev", False), ("staging", False), ("prod", True)])
def test_stateful_artifacts_are_protected_where_the_stack_file_says(stack: str, protected: bool) -> None:
    sim = shipped(stack)
    for name in ("artifacts-bucket", "artifacts-repository"):
        resource = sim.named(name)
        assert (resource.protect, resource.retain_on_delete) == (protected, protected), name


# --- GitHub -----------------------------------------------------------------------------------


def test_prod_protection_rules_come_from_pulumi_prod_yaml() -> None:
    sim = shipped("prod")
    env = sim.named("github-environment")
    assert env.parent.endswith("::github")
    assert env.inputs["environment"] == "prod"
    (reviewers,) = env.inputs["reviewers"]
    assert len(reviewers["users"]) == 1 and len(reviewers["teams"]) == 2
    assert env.inputs["preventSelfReview"] is True
    assert env.inputs["canAdminsBypass"] is False
    assert env.inputs["waitTimer"] == 10
    assert env.inputs["deploymentBranchPolicy"] == {"protectedBranches": False, "customBranchPolicies": True}
    policies = [
        p
        for p in sim.of_type(
            "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy"
        )
        if p.inputs["environment"] == "prod"
    ]
    assert sorted(p.inputs.get("branchPattern") or f"tag:{p.inputs['tagPattern']}" for p in policies) == [
        "main",
        "tag:v*",
    ]


def test_only_prod_declares_protection_rules_and_it_declares_every_environments() -> None:
    # dev's job is unreviewed and holds no GitHub token; staging's publishes only its own values.
    declared = {s: {e.inputs["environment"] for e in shipped(s).of_type(ENVIRONMENT)} for s in STACKS}
    every = {name for s in STACKS for name in (s, f"{s}-readonly")}
    assert declared == {"dev": set(), "staging": set(), "prod": every}
    prod = shipped("prod")
    rules = {
        e.inputs["environment"]: (e.inputs.get("reviewers"), e.inputs["preventSelfReview"])
        for e in prod.of_type(ENVIRONMENT)
    }
    assert rules["dev"] == (None, False)
    assert rules["staging"][1] is True and rules["staging"][0]
    # staging's and dev's branch policies come from their own stack files.
    by_env = {
        (p.inputs["environment"], p.inputs.get("branchPattern"), p.inputs.get("tagPattern"))
        for p in prod.of_type(
            "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy"
        )
    }
    assert by_env == {
        ("dev", "main", None),
        ("staging", "main", None),
        ("prod", "main", None),
        ("prod", None, "v*"),
    }
    for stack in ("dev", "staging"):
        assert shipped(stack).of_type("github:index/repositoryRuleset:RepositoryRuleset") == []


def test_prods_tag_pattern_is_protected_by_a_ruleset_only_admins_bypass() -> None:
    (ruleset,) = shipped("prod").of_type("github:index/repositoryRuleset:RepositoryRuleset")
    assert ruleset.inputs["target"] == "tag"
    assert ruleset.inputs["enforcement"] == "active"
    assert ruleset.inputs["conditions"] == {"refName": {"includes": ["refs/tags/v*"], "excludes": []}}
    assert ruleset.inputs["rules"] == {"creation": True, "update": True, "deletion": True}
    assert ruleset.inputs["bypassActors"] == [
        {"actorType": "RepositoryRole", "actorId": 5, "bypassMode": "always"}
    ]


def test_a_github_token_in_the_programs_environment_never_becomes_a_provider_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The SDK's Provider class copies GITHUB_TOKEN from the environment into its inputs, which the
    # engine stores in the state: the program hides it while declaring the provider.
    token = "ghp_in0the0jobs0environment0000000000000"
    monkeypatch.setenv("GITHUB_TOKEN", token)
    sim = run(stack_values("staging"), stack="staging")
    (provider,) = sim.of_type("pulumi:providers:github")
    assert "token" not in provider.inputs
    dump = json.dumps([[r.inputs, r.outputs] for r in sim.resources]) + json.dumps(sim.outputs)
    assert token not in dump
    assert os.environ["GITHUB_TOKEN"] == token  # left as it was, for the provider plugin


def test_dev_holds_no_github_resource_and_no_github_provider() -> None:
    sim = shipped("dev")
    assert [r.name for r in sim.resources if r.type.startswith(("github:", "pulumi:providers:github"))] == []


@pytest.mark.parametrize("stack", MANAGED)
def test_workflow_variables_carry_the_resources_outputs(stack: str) -> None:
    sim = shipped(stack)
    found = variables(sim, stack)
    assert found["AWS_ROLE_ARN"] == sim.named("trust-deploy").outputs["arn"]
    assert found["ARTIFACT_BUCKET"] == sim.named("artifacts-bucket").outputs["bucket"]
    assert found["ECR_REPOSITORY"] == sim.named("artifacts-repository").outputs["repositoryUrl"]
    assert found["AWS_REGION"] == "eu-west-1"
    assert found["PULUMI_STACK"] == stack
    # The variables and the stack outputs the driver reads are the same values.
    assert sim.outputs[outputs.DEPLOY_ROLE_ARN] == found["AWS_ROLE_ARN"]
    assert sim.outputs[outputs.ARTIFACT_BUCKET] == found["ARTIFACT_BUCKET"]
    assert sim.outputs[outputs.ECR_REPOSITORY_URL] == found["ECR_REPOSITORY"]
    assert sim.outputs[outputs.GITHUB_ENVIRONMENT] == stack
    assert {v.inputs["environment"] for v in sim.of_type(VARIABLE)} == {stack, f"{stack}-readonly"}


@pytest.mark.parametrize("stack", MANAGED)
def test_drift_checks_get_a_reviewer_free_environment_with_only_the_read_only_role(stack: str) -> None:
    sim = shipped(stack)
    (env,) = [
        e for e in shipped("prod").of_type(ENVIRONMENT) if e.inputs["environment"] == f"{stack}-readonly"
    ]
    assert "reviewers" not in env.inputs
    assert env.inputs["waitTimer"] == 0
    assert env.inputs["deploymentBranchPolicy"] == {"protectedBranches": True, "customBranchPolicies": False}
    assert variables(sim, f"{stack}-readonly") == {
        "AWS_ROLE_ARN": sim.named("trust-preview").outputs["arn"],
        "AWS_REGION": "eu-west-1",
        "PULUMI_STACK": stack,
    }
    assert [s for s in sim.of_type(SECRET) if s.inputs["environment"] != stack] == []


def test_only_a_stack_admitting_pull_request_previews_publishes_its_preview_role() -> None:
    values = stack_values("staging")
    values["github"]["pullRequestPreviews"] = True
    sim = run(values, stack="staging")
    (variable,) = sim.of_type("github:index/actionsVariable:ActionsVariable")
    assert variable.inputs == {
        "repository": "storefront",
        "variableName": "PREVIEW_ROLE_ARN_STAGING",
        "value": sim.named("trust-preview").outputs["arn"],
    }
    for stack in MANAGED:  # the shipped staging and prod admit none
        assert shipped(stack).of_type("github:index/actionsVariable:ActionsVariable") == []


def test_the_webhook_url_reaches_github_as_a_secret_and_nowhere_in_plain_text() -> None:
    values = {**stack_values("prod"), "slackWebhookUrl": "v1:ciphertext"}
    sim = run(values, stack="prod", secret_values={"slackWebhookUrl": WEBHOOK})
    (secret,) = sim.of_type(SECRET)
    assert secret.inputs["secretName"] == "SLACK_WEBHOOK_URL"
    assert secret.inputs["value"] == "[secret]"
    assert "value" in secret.secret_paths
    dump = json.dumps([[r.inputs, r.outputs] for r in sim.resources]) + json.dumps(sim.outputs)
    assert WEBHOOK not in dump and "pr0d-w3bh00k" not in dump


def test_turning_github_management_off_leaves_the_aws_side_unchanged() -> None:
    values = stack_values("staging")
    values["github"]["manage"] = False
    off, on = run(values, stack="staging"), shipped("staging")

    def aws_side(sim: Simulation) -> dict[tuple[str, str], Any]:
        return {
            (r.type, r.name): (r.inputs, r.protect, r.parent)
            for r in sim.resources
            if r.type.startswith(("aws:", "pulumi:providers:aws"))
        }

    assert aws_side(off) == aws_side(on)
    assert [r for r in off.resources if r.type.startswith(("github:", "pulumi:providers:github"))] == []
    assert outputs.GITHUB_ENVIRONMENT not in off.outputs
    assert {k: v for k, v in off.outputs.items()} == {
        k: v for k, v in on.outputs.items() if k != outputs.GITHUB_ENVIRONMENT
    }


# --- tags, providers, outputs -------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_aws_resource_uses_the_provider_that_tags_it(stack: str) -> None:
    sim = shipped(stack)
    (provider,) = sim.of_type("pulumi:providers:aws")
    tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert tags["project"] == "stageline"
    assert tags["environment"] == stack
    assert tags["managed-by"] == "pulumi"
    assert tags["cost-center"] == "storefront"
    provider_ref = f"{provider.urn}::{provider.id}"
    for resource in sim.resources:
        if resource.type.startswith("aws:") and resource.custom:
            assert resource.provider == provider_ref, resource.name


@pytest.mark.parametrize("stack", MANAGED)
def test_github_resources_use_the_explicit_provider_for_the_configured_owner(stack: str) -> None:
    sim = shipped(stack)
    (provider,) = sim.of_type("pulumi:providers:github")
    # The token is never a provider input (it would be stored in the state): only the owner.
    assert provider.inputs["owner"] == "acme-shop"
    assert "token" not in provider.inputs
    for resource in sim.resources:
        if resource.type.startswith("github:"):
            assert resource.provider == f"{provider.urn}::{provider.id}", resource.name


@pytest.mark.parametrize("stack", STACKS)
def test_the_foundation_outputs_are_exported_under_their_constant_names(stack: str) -> None:
    sim = shipped(stack)
    expected = {
        outputs.REGION: "eu-west-1",
        outputs.ENVIRONMENT: stack,
        outputs.OIDC_PROVIDER_ARN: sim.named("trust-github").outputs["arn"],
        outputs.DEPLOY_ROLE_ARN: f"arn:aws:iam::{ACCOUNT}:role/stageline-{stack}-deploy",
        outputs.PREVIEW_ROLE_ARN: f"arn:aws:iam::{ACCOUNT}:role/stageline-{stack}-preview",
        outputs.ARTIFACT_BUCKET: sim.named("artifacts-bucket").outputs["bucket"],
        outputs.ECR_REPOSITORY_NAME: f"stageline-{stack}-app",
        outputs.ECR_REPOSITORY_URL: f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/stageline-{stack}-app",
    }
    assert {k: sim.outputs[k] for k in expected} == expected
    assert sim.secret_outputs.isdisjoint(expected)


# --- the deploy role can manage what the program declares --------------------------------------


def creation_requests(sim: Simulation, r: SimResource, stack: str) -> list[tuple[str, str, dict[str, str]]]:
    """The IAM requests that create `r`: (action, resource ARN, request context)."""
    region = sim.outputs[outputs.REGION]
    by_id = {x.id: x for x in sim.resources}
    tag = {"aws:RequestTag/environment": stack}
    own = {"aws:ResourceTag/environment": stack}
    apis = f"arn:aws:apigateway:{region}::/apis"

    def bucket_arn() -> str:
        return str(by_id[r.inputs["bucket"]].outputs["arn"])

    def function_arn(name: str) -> str:
        return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"

    t = r.type.removeprefix("aws:")
    if t == "iam/role:Role":
        return [
            ("iam:CreateRole", r.outputs["arn"], {"iam:PermissionsBoundary": r.inputs["permissionsBoundary"]})
        ]
    if t == "iam/rolePolicy:RolePolicy":
        role = by_id[r.inputs["role"]]
        boundary = {"iam:PermissionsBoundary": role.inputs["permissionsBoundary"]}
        return [("iam:PutRolePolicy", role.outputs["arn"], boundary)]
    if t == "lambda/function:Function":
        return [
            ("lambda:CreateFunction", r.outputs["arn"], {}),
            ("iam:PassRole", r.inputs["role"], {"iam:PassedToService": "lambda.amazonaws.com"}),
            ("ecr:BatchGetImage", sim.named("artifacts-repository").outputs["arn"], {}),
        ]
    if t == "lambda/alias:Alias":
        return [("lambda:CreateAlias", function_arn(r.inputs["functionName"]), {})]
    if t == "lambda/permission:Permission":
        return [
            (
                "lambda:AddPermission",
                function_arn(r.inputs["function"]),
                {"lambda:Principal": r.inputs["principal"]},
            )
        ]
    if t == "cloudwatch/logGroup:LogGroup":
        return [
            ("logs:CreateLogGroup", r.outputs["arn"], {}),
            ("logs:PutRetentionPolicy", r.outputs["arn"], {}),
        ]
    if t == "apigatewayv2/api:Api":
        return [("apigateway:POST", apis, tag)]
    if t in ("apigatewayv2/integration:Integration", "apigatewayv2/route:Route", "apigatewayv2/stage:Stage"):
        child = {"integration": "integrations", "route": "routes", "stage": "stages"}[
            t.split("/")[1].split(":")[0]
        ]
        access_logs: list[tuple[str, str, dict[str, str]]] = []
        if "accessLogSettings" in r.inputs:
            access_logs = [("logs:CreateLogDelivery", "*", {}), ("logs:PutResourcePolicy", "*", {})]
        return [("apigateway:POST", f"{apis}/{r.inputs['apiId']}/{child}", {}), *access_logs]
    if t == "cloudfront/distribution:Distribution":
        return [
            ("cloudfront:CreateDistribution", "*", tag),
            ("cloudfront:UpdateDistribution", r.outputs["arn"], own),
        ]
    if t == "cloudfront/originAccessControl:OriginAccessControl":
        return [("cloudfront:CreateOriginAccessControl", "*", {})]
    if t == "cloudfront/responseHeadersPolicy:ResponseHeadersPolicy":
        return [("cloudfront:CreateResponseHeadersPolicy", "*", {})]
    if t == "cloudfront/cachePolicy:CachePolicy":
        policy = f"arn:aws:cloudfront::{ACCOUNT}:cache-policy/{r.id}"
        return [
            ("cloudfront:CreateCachePolicy", "*", {}),
            ("cloudfront:UpdateCachePolicy", policy, {}),
            ("cloudfront:GetCachePolicy", policy, {}),
        ]
    if t == "s3/bucket:Bucket":
        return [("s3:CreateBucket", r.outputs["arn"], {}), ("s3:PutBucketTagging", r.outputs["arn"], {})]
    s3_actions = {
        "s3/bucketOwnershipControls:BucketOwnershipControls": "s3:PutBucketOwnershipControls",
        "s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
        SSE.removeprefix("aws:"): "s3:PutEncryptionConfiguration",
        "s3/bucketVersioning:BucketVersioning": "s3:PutBucketVersioning",
        "s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
        "s3/bucketPolicy:BucketPolicy": "s3:PutBucketPolicy",
    }
    if t in s3_actions:
        return [(s3_actions[t], bucket_arn(), {})]
    if t == "ecr/repository:Repository":
        return [("ecr:CreateRepository", r.outputs["arn"], {}), ("ecr:PutImage", r.outputs["arn"], {})]
    if t == "ecr/lifecyclePolicy:LifecyclePolicy":
        repo = f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{r.inputs['repository']}"
        return [("ecr:PutLifecyclePolicy", repo, {})]
    if t == "ecr/repositoryPolicy:RepositoryPolicy":
        repo = f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{r.inputs['repository']}"
        return [("ecr:SetRepositoryPolicy", repo, {})]
    if t == "kms/key:Key":
        key = r.outputs["arn"]
        return [
            ("kms:CreateKey", "*", tag),
            ("kms:EnableKeyRotation", key, own),
            ("kms:PutKeyPolicy", key, own),
        ]
    if t == "kms/alias:Alias":
        key = f"arn:aws:kms:{region}:{ACCOUNT}:key/{r.inputs['targetKeyId']}"
        return [("kms:CreateAlias", r.outputs["arn"], {}), ("kms:CreateAlias", key, own)]
    if t == "sns/topic:Topic":
        return [("sns:CreateTopic", r.outputs["arn"], {})]
    if t == "sns/topicPolicy:TopicPolicy":
        return [("sns:SetTopicAttributes", r.inputs["arn"], {})]
    if t == "sns/topicSubscription:TopicSubscription":
        return [("sns:Subscribe", r.inputs["topic"], {})]
    if t == "cloudwatch/metricAlarm:MetricAlarm":
        return [("cloudwatch:PutMetricAlarm", r.outputs["arn"], {})]
    if t == "cloudwatch/dashboard:Dashboard":
        return [
            (
                "cloudwatch:PutDashboard",
                f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{r.inputs['dashboardName']}",
                {},
            )
        ]
    if t == "budgets/budget:Budget":
        return [("budgets:ModifyBudget", r.outputs["arn"], {})]
    raise AssertionError(
        f"{r.type} ({r.name}) is new: add the requests that create it here, "
        "and the rights to make them to infra/policies.py"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_the_deploy_role_can_create_every_resource_outside_the_trust_layer(stack: str) -> None:
    sim = shipped(stack)
    documents = role_documents(sim, sim.named("trust-deploy"))
    checked = 0
    for resource in sim.resources:
        # The trust layer itself is an administrator's to change (see docs/config-foundation.md).
        if not resource.type.startswith("aws:") or resource.parent_type == "stageline:infra:GitHubTrust":
            continue
        for action, arn, context in creation_requests(sim, resource, stack):
            assert allowed(documents, action, arn, context), (resource.name, action, arn, context)
            checked += 1
    assert checked > 40


# --- promotion reads the source stage's release with the target's deploy role -------------------


@pytest.mark.parametrize(("target", "source"), [("staging", "dev"), ("prod", "staging")])
def test_a_promotion_target_can_read_its_sources_release_and_nothing_else_of_it(
    target: str, source: str
) -> None:
    # Promotion (automation/release.py) runs in the target's GitHub environment, with the
    # target's deploy role, and copies images and frontend files from the source stage.
    documents = role_documents(shipped(target), shipped(target).named("trust-deploy"))
    src = shipped(source)
    repository = src.named("artifacts-repository").outputs["arn"]
    frontend = src.named("frontend-bucket").outputs["arn"]
    artifacts = src.named("artifacts-bucket").outputs["arn"]
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
        assert allowed(documents, action, repository), action
    assert allowed(documents, "s3:ListBucket", frontend, {"s3:prefix": "releases/4f9c2d1/"})
    assert allowed(documents, "s3:GetObject", f"{frontend}/releases/4f9c2d1/index.html")

    for action in ("ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:SetRepositoryPolicy"):
        assert not allowed(documents, action, repository), action
    assert not allowed(documents, "s3:PutObject", f"{frontend}/releases/4f9c2d1/index.html")
    assert not allowed(documents, "s3:ListBucket", artifacts, {"s3:prefix": "releases/4f9c2d1/"})
    assert not allowed(documents, "s3:GetObject", f"{artifacts}/releases/4f9c2d1/index.html")


def test_the_first_stage_may_read_no_other_stages_release() -> None:
    documents = role_documents(shipped("dev"), shipped("dev").named("trust-deploy"))
    for other in ("staging", "prod"):
        sim = shipped(other)
        repository = sim.named("artifacts-repository").outputs["arn"]
        frontend = sim.named("frontend-bucket").outputs["arn"]
        assert not allowed(documents, "ecr:BatchGetImage", repository), other
        assert not allowed(documents, "s3:GetObject", f"{frontend}/releases/4f9c2d1/index.html"), other
    sids = {st.get("Sid") for d in documents for st in statements(d)}
    assert sids.isdisjoint({"PullSourceImages", "ListSourceReleases", "ReadSourceReleases"})


@pytest.mark.parametrize("stack", STACKS)
def test_the_deploy_role_cannot_create_the_trust_layer(stack: str) -> None:
    sim = shipped(stack)
    documents = role_documents(sim, sim.named("trust-deploy"))
    for role in ("trust-deploy", "trust-preview"):
        arn = sim.named(role).outputs["arn"]
        assert not allowed(documents, "iam:UpdateAssumeRolePolicy", arn)
        assert not allowed(documents, "iam:AttachRolePolicy", arn)
    assert not allowed(documents, "iam:CreatePolicyVersion", sim.named("trust-boundary").outputs["arn"])
    assert not allowed(documents, "iam:CreateOpenIDConnectProvider", sim.named("trust-github").outputs["arn"])
