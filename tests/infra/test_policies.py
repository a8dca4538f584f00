"""The trust layer's policy documents, called directly: what each role may and may not do."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from foundation_testkit import ACCOUNT, allowed, is_read_only, stack_values, violations

from infra.config import ConfigError, Grant, parse
from infra.iam import as_list, statements
from infra.oidc import GitHubTrustArgs
from infra.policies import (
    DEPLOY_POLICY_PARTS,
    MANAGED_POLICY_MAX_CHARS,
    OIDC_HOST,
    STAR_ONLY_ACTIONS,
    Scope,
    boundary_policy,
    check_subject,
    deploy_policies,
    deploy_policy_parts,
    oidc_trust_policy,
    policy_size,
    preview_policies,
    preview_policy_parts,
    state_key_policy,
    tls_only_bucket_policy,
)

PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC_HOST}"
STATE_KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def scope(env: str = "dev", **changes: Any) -> Scope:
    base = Scope(
        partition="aws",
        account_id=ACCOUNT,
        region="eu-west-1",
        prefix=f"stageline-{env}",
        environment=env,
        project="stageline",
        stack=env,
        oidc_provider_arn=PROVIDER,
        boundary_policy_arn=f"arn:aws:iam::{ACCOUNT}:policy/stageline-{env}-boundary",
        state_bucket="acme-pulumi-state",
        state_kms_key_arn=STATE_KEY,
    )
    return replace(base, **changes)


def deploy_docs(env: str = "dev", **changes: Any) -> list[dict[str, Any]]:
    return list(deploy_policies(scope(env, **changes)).values())


def preview_docs(env: str = "dev", **changes: Any) -> list[dict[str, Any]]:
    return list(preview_policies(scope(env, **changes)).values())


def iam(resource: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:{resource}"


def claims(sub: str, aud: str = "sts.amazonaws.com") -> dict[str, str]:
    return {f"{OIDC_HOST}:sub": sub, f"{OIDC_HOST}:aud": aud}


# --- trust ------------------------------------------------------------------------------


def test_the_deploy_trust_requires_the_exact_environment_subject_and_the_sts_audience() -> None:
    subject = "repo:acme-shop/storefront:environment:prod"
    document = oidc_trust_policy(PROVIDER, subject)
    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GitHubActions",
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                        "token.actions.githubusercontent.com:sub": subject,
                    }
                },
            }
        ],
    }


@pytest.mark.parametrize(
    "sub",
    [
        "repo:acme-shop/storefront:environment:staging",
        "repo:acme-shop/storefront:ref:refs/heads/main",
        "repo:acme-shop/storefront:pull_request",
        "repo:acme-shop/storefront-fork:environment:prod",
        "repo:evil/storefront:environment:prod",
    ],
)
def test_the_prod_deploy_trust_refuses_every_other_subject(sub: str) -> None:
    document = oidc_trust_policy(PROVIDER, "repo:acme-shop/storefront:environment:prod")
    assert allowed(
        [document], "sts:AssumeRoleWithWebIdentity", "*", claims("repo:acme-shop/storefront:environment:prod")
    )
    assert not allowed([document], "sts:AssumeRoleWithWebIdentity", "*", claims(sub))


def test_the_preview_trust_admits_pull_requests_and_the_read_only_environment_only() -> None:
    subjects = [
        "repo:acme-shop/storefront:pull_request",
        "repo:acme-shop/storefront:environment:prod-readonly",
    ]
    document = oidc_trust_policy(PROVIDER, subjects)
    for sub in subjects:
        assert allowed([document], "sts:AssumeRoleWithWebIdentity", "*", claims(sub))
    for sub in (
        "repo:acme-shop/storefront:environment:prod",
        "repo:acme-shop/storefront:ref:refs/heads/main",
    ):
        assert not allowed([document], "sts:AssumeRoleWithWebIdentity", "*", claims(sub))
    with pytest.raises(ValueError, match="at least one OIDC subject"):
        oidc_trust_policy(PROVIDER, [])


def test_a_token_for_another_audience_is_refused() -> None:
    document = oidc_trust_policy(PROVIDER, "repo:acme-shop/storefront:environment:prod")
    assert not allowed(
        [document],
        "sts:AssumeRoleWithWebIdentity",
        "*",
        claims("repo:acme-shop/storefront:environment:prod", aud="https://github.com/acme-shop"),
    )


@pytest.mark.parametrize(
    "subject",
    [
        "repo:acme-shop/storefront:*",
        "repo:acme-shop/*:environment:prod",
        "repo:acme-shop/storefront:environment:pro?",
        "acme-shop/storefront:environment:prod",
        "repo:acme-shop/storefront",
    ],
)
def test_a_wildcard_or_malformed_subject_is_refused(subject: str) -> None:
    with pytest.raises(ValueError, match="OIDC subject"):
        oidc_trust_policy(PROVIDER, subject)
    with pytest.raises(ValueError, match="OIDC subject"):
        check_subject(subject)


def test_immutable_ids_in_config_make_the_trust_use_the_immutable_subject() -> None:
    values = stack_values("prod")
    values["github"].update(ownerId=1234567, repositoryId=89012345)
    args = GitHubTrustArgs.from_config(parse(values, stack="prod", region="eu-west-1"))
    assert args.deploy_subject == "repo:acme-shop@1234567/storefront@89012345:environment:prod"
    # prod admits no pull request: its preview role trusts only the read-only environment.
    assert args.preview_subject is None
    assert args.preview_subjects == ("repo:acme-shop@1234567/storefront@89012345:environment:prod-readonly",)
    values["github"]["pullRequestPreviews"] = True
    args = GitHubTrustArgs.from_config(parse(values, stack="prod", region="eu-west-1"))
    assert args.preview_subject == "repo:acme-shop@1234567/storefront@89012345:pull_request"


# --- the checker itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ({"Action": "*", "Resource": "*"}, "allows every action of every service"),
        ({"Action": "iam:*", "Resource": iam("role/x")}, "allows every action of iam"),
        ({"Action": ["s3:*"], "Resource": "arn:aws:s3:::b"}, "allows every action of s3"),
        ({"Action": "iam:Put*", "Resource": iam("role/x")}, "IAM actions must be named"),
        ({"Action": "s3:GetObject", "Resource": "*"}, "allows s3:GetObject on every resource"),
        ({"Action": "s3:GetObject", "Resource": "arn:aws:s3:::*"}, "allows s3:GetObject on every resource"),
        (
            {
                "Action": "iam:PassRole",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
            },
            "iam:PassRole on roles outside stageline-dev-*",
        ),
        ({"Action": "iam:PassRole", "Resource": iam("role/x")}, "without an iam:PassedToService condition"),
        ({"NotAction": "iam:*", "Resource": iam("role/x")}, "NotAction/NotResource"),
    ],
)
def test_the_checker_reports_each_forbidden_statement(statement: dict[str, Any], problem: str) -> None:
    document = {"Version": "2012-10-17", "Statement": [{"Sid": "Bad", "Effect": "Allow", **statement}]}
    found = violations(document)
    assert any(problem in line for line in found), found


def test_the_checker_ignores_denies_and_accepts_star_only_actions() -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Action": "*", "Resource": "*"},
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        ],
    }
    assert violations(document) == []


# --- deploy ------------------------------------------------------------------------------


@pytest.mark.parametrize("with_state", [True, False])
def test_the_deploy_documents_contain_no_forbidden_statement(with_state: bool) -> None:
    changes = {} if with_state else {"state_bucket": None, "state_kms_key_arn": None}
    docs = deploy_policies(scope("prod", **changes))
    assert tuple(docs) == deploy_policy_parts(has_state=with_state)
    for part, document in docs.items():
        assert violations(document, "prod") == [], part


def test_resource_star_is_used_only_for_actions_aws_authorizes_nowhere_else() -> None:
    for document in deploy_docs() + preview_docs():
        for st in statements(document):
            if st["Effect"] == "Allow" and "*" in as_list(st["Resource"]):
                assert set(as_list(st["Action"])) <= STAR_ONLY_ACTIONS, st["Sid"]


def test_no_statement_grants_all_of_iam_or_iam_by_pattern() -> None:
    for document in deploy_docs() + preview_docs():
        for st in statements(document):
            for action in as_list(st["Action"]):
                if action.startswith("iam:"):
                    assert "*" not in action and "?" not in action, (st["Sid"], action)


def test_the_deploy_role_works_on_its_own_environment_and_not_on_another() -> None:
    docs = deploy_docs("dev")
    own_and_other = [
        ("lambda:UpdateFunctionCode", "arn:aws:lambda:eu-west-1:{a}:function:stageline-{e}-api"),
        ("lambda:UpdateAlias", "arn:aws:lambda:eu-west-1:{a}:function:stageline-{e}-api:live"),
        ("s3:PutObject", "arn:aws:s3:::stageline-{e}-artifacts-0a1b2c/builds/app.zip"),
        ("s3:PutBucketPolicy", "arn:aws:s3:::stageline-{e}-frontend-0a1b2c"),
        ("ecr:PutImage", "arn:aws:ecr:eu-west-1:{a}:repository/stageline-{e}-app"),
        ("logs:PutRetentionPolicy", "arn:aws:logs:eu-west-1:{a}:log-group:/aws/lambda/stageline-{e}-api"),
        ("sns:Subscribe", "arn:aws:sns:eu-west-1:{a}:stageline-{e}-alerts"),
        ("cloudwatch:PutMetricAlarm", "arn:aws:cloudwatch:eu-west-1:{a}:alarm:stageline-{e}-api-errors"),
        ("cloudwatch:PutDashboard", "arn:aws:cloudwatch::{a}:dashboard/stageline-{e}"),
        ("budgets:ModifyBudget", "arn:aws:budgets::{a}:budget/stageline-{e}-monthly"),
        ("kms:CreateAlias", "arn:aws:kms:eu-west-1:{a}:alias/stageline-{e}-alerts"),
    ]
    for action, pattern in own_and_other:
        assert allowed(docs, action, pattern.format(a=ACCOUNT, e="dev")), action
        assert not allowed(docs, action, pattern.format(a=ACCOUNT, e="prod")), action


def test_resources_without_names_are_scoped_by_the_environment_tag() -> None:
    docs = deploy_docs("dev")
    distribution = f"arn:aws:cloudfront::{ACCOUNT}:distribution/E2QWRUHAPOMQZL"
    api = "arn:aws:apigateway:eu-west-1::/apis/a1b2c3"
    key = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0f0e0d0c-1111-2222-3333-444455556666"
    for action, resource in [
        ("cloudfront:UpdateDistribution", distribution),
        ("apigateway:PATCH", api),
        ("kms:PutKeyPolicy", key),
        ("kms:ScheduleKeyDeletion", key),
    ]:
        assert allowed(docs, action, resource, {"aws:ResourceTag/environment": "dev"}), action
        assert not allowed(docs, action, resource, {"aws:ResourceTag/environment": "prod"}), action
        assert not allowed(docs, action, resource), action
    for action, resource in [
        ("cloudfront:CreateDistribution", "*"),
        ("kms:CreateKey", "*"),
        ("apigateway:POST", "arn:aws:apigateway:eu-west-1::/apis"),
    ]:
        assert allowed(docs, action, resource, {"aws:RequestTag/environment": "dev"}), action
        assert not allowed(docs, action, resource, {"aws:RequestTag/environment": "prod"}), action


def test_the_frontend_cache_policy_is_managed_by_deploy_and_read_by_preview() -> None:
    policy = f"arn:aws:cloudfront::{ACCOUNT}:cache-policy/0f0e0d0c-1111-2222-3333-444455556666"
    deploy, preview = deploy_docs("dev"), preview_docs("dev")
    assert allowed(deploy, "cloudfront:CreateCachePolicy", "*")
    for action in (
        "cloudfront:GetCachePolicy",
        "cloudfront:GetCachePolicyConfig",
        "cloudfront:UpdateCachePolicy",
        "cloudfront:DeleteCachePolicy",
    ):
        assert allowed(deploy, action, policy), action
    assert allowed(preview, "cloudfront:GetCachePolicy", policy)
    assert allowed(preview, "cloudfront:GetCachePolicyConfig", policy)
    for action in (
        "cloudfront:CreateCachePolicy",
        "cloudfront:UpdateCachePolicy",
        "cloudfront:DeleteCachePolicy",
    ):
        assert not allowed(preview, action, policy if action != "cloudfront:CreateCachePolicy" else "*"), (
            action
        )


def test_another_environments_distribution_cannot_be_retagged_as_ours() -> None:
    docs = deploy_docs("dev")
    distribution = f"arn:aws:cloudfront::{ACCOUNT}:distribution/E2QWRUHAPOMQZL"
    takeover = {"aws:RequestTag/environment": "dev", "aws:ResourceTag/environment": "prod"}
    assert not allowed(docs, "cloudfront:TagResource", distribution, takeover)
    # A new distribution is tagged by the create call itself.
    assert allowed(docs, "cloudfront:CreateDistribution", "*", {"aws:RequestTag/environment": "dev"})
    assert not allowed(docs, "cloudfront:CreateDistribution", "*", {"aws:RequestTag/environment": "prod"})


TAG_SCOPED = [
    (f"arn:aws:cloudfront::{ACCOUNT}:distribution/E2QWRUHAPOMQZL", "cloudfront"),
    (f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0b1c2d3e-0000-1111-2222-333344445555", "kms"),
]


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
@pytest.mark.parametrize(("resource", "service"), TAG_SCOPED)
def test_an_untagged_resource_cannot_be_taken_over_by_tagging_it(
    env: str, resource: str, service: str
) -> None:
    """Tag it as ours, then change or delete it: every step is refused for what is not already ours."""
    docs = deploy_docs(env)
    untagged = {"aws:RequestTag/environment": env, "aws:TagKeys": "environment"}
    assert not allowed(docs, f"{service}:TagResource", resource, untagged)
    assert not allowed(docs, f"{service}:UntagResource", resource, {})
    for action in (
        ["cloudfront:UpdateDistribution", "cloudfront:DeleteDistribution"]
        if service == "cloudfront"
        else ["kms:ScheduleKeyDeletion", "kms:PutKeyPolicy", "kms:UpdateKeyDescription"]
    ):
        assert not allowed(docs, action, resource, {}), action
        other = {"aws:ResourceTag/environment": "prod" if env != "prod" else "dev"}
        assert not allowed(docs, action, resource, other), action
        assert allowed(docs, action, resource, {"aws:ResourceTag/environment": env}), action


def test_no_allow_grants_tagging_of_a_tag_scoped_resource_that_is_not_already_ours() -> None:
    # Where rights follow the environment tag, any tagging right without that condition would let a
    # role adopt a resource by tagging it. Name-scoped resources (prefix patterns) are not at risk.
    for env in ("dev", "prod"):
        for document in deploy_docs(env):
            for st in statements(document):
                if st["Effect"] != "Allow":
                    continue
                tagging = [a for a in as_list(st["Action"]) if a.endswith((":TagResource", ":UntagResource"))]
                resources = as_list(st["Resource"])
                by_id = [r for r in resources if r.endswith((":distribution/*", ":key/*")) or r == "*"]
                if tagging and by_id:
                    condition = st.get("Condition", {}).get("StringEquals", {})
                    assert condition.get("aws:ResourceTag/environment") == env, st["Sid"]


# --- promotion: reading the source stage's release ----------------------------------------------

OTHER_ACCOUNT = "210987654321"
SOURCE_REPOSITORY = f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/stageline-dev-app"
SOURCE_FRONTEND = "arn:aws:s3:::stageline-dev-frontend-0a1b2c3d4e5f"


def test_a_promotion_target_may_read_the_release_from_its_source_in_any_account() -> None:
    docs = deploy_docs("staging", source_prefix="stageline-dev")
    for repository in (
        SOURCE_REPOSITORY,
        f"arn:aws:ecr:us-east-1:{OTHER_ACCOUNT}:repository/stageline-dev-app",
    ):
        for action in (
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchCheckLayerAvailability",
            "ecr:DescribeImages",
        ):
            assert allowed(docs, action, repository), (action, repository)
    releases = {"s3:prefix": "releases/4f9c2d1/"}
    assert allowed(docs, "s3:ListBucket", SOURCE_FRONTEND, releases)
    assert allowed(docs, "s3:GetObject", f"{SOURCE_FRONTEND}/releases/4f9c2d1/index.html")


def test_a_promotion_target_can_neither_change_the_source_nor_read_beyond_its_releases() -> None:
    docs = deploy_docs("staging", source_prefix="stageline-dev")
    for action in (
        "ecr:PutImage",
        "ecr:InitiateLayerUpload",
        "ecr:CompleteLayerUpload",
        "ecr:SetRepositoryPolicy",
        "ecr:DeleteRepository",
        "ecr:BatchDeleteImage",
    ):
        assert not allowed(docs, action, SOURCE_REPOSITORY), action
    # Only the source's image repository, not other repositories of the source stage or of prod.
    assert not allowed(
        docs, "ecr:BatchGetImage", f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/stageline-dev-x"
    )
    assert not allowed(
        docs, "ecr:BatchGetImage", f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/stageline-prod-app"
    )
    # Listing only under releases/, reading only releases, writing nothing.
    assert not allowed(docs, "s3:ListBucket", SOURCE_FRONTEND)
    assert not allowed(docs, "s3:ListBucket", SOURCE_FRONTEND, {"s3:prefix": "private/"})
    assert not allowed(docs, "s3:GetObject", f"{SOURCE_FRONTEND}/drafts/index.html")
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:PutBucketPolicy"):
        assert not allowed(docs, action, f"{SOURCE_FRONTEND}/releases/4f9c2d1/index.html"), action
        assert not allowed(docs, action, SOURCE_FRONTEND), action
    # Nothing of the source's artifact bucket, nor of any other stage's frontend.
    artifacts = "arn:aws:s3:::stageline-dev-artifacts-0a1b2c3d4e5f"
    assert not allowed(docs, "s3:ListBucket", artifacts, {"s3:prefix": "releases/4f9c2d1/"})
    assert not allowed(docs, "s3:GetObject", f"{artifacts}/releases/4f9c2d1/app.zip")
    assert not allowed(
        docs, "s3:GetObject", "arn:aws:s3:::stageline-prod-frontend-0a1b2c/releases/x/index.html"
    )


def test_the_first_stage_gets_no_access_to_any_other_stage() -> None:
    docs = deploy_docs("dev")
    sids = {st.get("Sid") for d in docs for st in statements(d)}
    assert sids.isdisjoint({"PullSourceImages", "ListSourceReleases", "ReadSourceReleases"})
    assert not allowed(docs, "ecr:BatchGetImage", SOURCE_REPOSITORY.replace("-dev-", "-staging-"))
    with_source = deploy_docs("staging", source_prefix="stageline-dev")
    for document in with_source:
        assert violations(document, "staging") == []


def test_the_source_patterns_name_what_the_source_stack_creates() -> None:
    from infra.artifacts import repository_name
    from infra.frontend import bucket_prefix

    s = scope("staging", source_prefix="stageline-dev")
    assert s.source_repository == f"arn:aws:ecr:*:*:repository/{repository_name('stageline-dev')}"
    assert s.source_frontend_buckets == f"arn:aws:s3:::{bucket_prefix('stageline-dev')}*"


def test_the_promotion_source_comes_from_the_stack_file() -> None:
    cfg = parse(stack_values("staging"), stack="staging", region="eu-west-1")
    assert GitHubTrustArgs.from_config(cfg).source_prefix == "stageline-dev"
    cfg = parse(stack_values("dev"), stack="dev", region="eu-west-1")
    assert GitHubTrustArgs.from_config(cfg).source_prefix is None


def test_invoke_permissions_can_only_be_granted_to_api_gateway() -> None:
    docs = deploy_docs("dev")
    fn = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:stageline-dev-api:live"
    assert allowed(docs, "lambda:AddPermission", fn, {"lambda:Principal": "apigateway.amazonaws.com"})
    assert not allowed(docs, "lambda:AddPermission", fn, {"lambda:Principal": "*"})
    assert not allowed(docs, "lambda:AddPermission", fn, {"lambda:Principal": "210987654321"})


def test_service_roles_can_only_be_created_and_changed_with_the_boundary() -> None:
    s = scope("dev")
    docs = deploy_docs("dev")
    role = iam("role/stageline-dev-api-exec")
    ours = {"iam:PermissionsBoundary": s.boundary_policy_arn}
    for action in (
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:UpdateAssumeRolePolicy",
        "iam:DeleteRole",
        "iam:PutRolePermissionsBoundary",
    ):
        assert allowed(docs, action, role, ours), action
        assert not allowed(docs, action, role), action
        assert not allowed(
            docs, action, role, {"iam:PermissionsBoundary": iam("policy/stageline-prod-boundary")}
        )
        assert not allowed(docs, action, iam("role/stageline-prod-api-exec"), ours), action
        assert not allowed(docs, action, iam("role/ci-admin"), ours), action
    assert not allowed(docs, "iam:DeleteRolePermissionsBoundary", role, ours)


def test_the_deploy_role_cannot_touch_its_own_or_the_preview_role() -> None:
    s = scope("dev")
    docs = deploy_docs("dev")
    with_boundary = {"iam:PermissionsBoundary": s.boundary_policy_arn}
    for role in ("stageline-dev-deploy", "stageline-dev-preview"):
        for action in (
            "iam:UpdateAssumeRolePolicy",
            "iam:PutRolePolicy",
            "iam:AttachRolePolicy",
            "iam:DetachRolePolicy",
            "iam:DeleteRole",
            "iam:PutRolePermissionsBoundary",
            "iam:TagRole",
        ):
            assert not allowed(docs, action, iam(f"role/{role}"), with_boundary), (role, action)
        assert not allowed(
            docs, "iam:PassRole", iam(f"role/{role}"), {"iam:PassedToService": "lambda.amazonaws.com"}
        )
    # Reading them is what a refresh needs.
    assert allowed(docs, "iam:GetRole", iam("role/stageline-dev-deploy"))


def test_the_deploy_role_cannot_change_the_boundary_or_any_policy_of_its_prefix() -> None:
    s = scope("dev")
    docs = deploy_docs("dev")
    for policy in (s.boundary_policy_arn, iam("policy/stageline-dev-deploy-iam")):
        for action in (
            "iam:CreatePolicyVersion",
            "iam:SetDefaultPolicyVersion",
            "iam:DeletePolicy",
            "iam:DeletePolicyVersion",
        ):
            assert not allowed(docs, action, policy), (policy, action)
    assert not allowed(docs, "iam:CreatePolicy", iam("policy/stageline-dev-anything"))


def test_roles_are_passed_only_to_lambda_and_only_this_environments() -> None:
    docs = deploy_docs("dev")
    to_lambda = {"iam:PassedToService": "lambda.amazonaws.com"}
    assert allowed(docs, "iam:PassRole", iam("role/stageline-dev-api-exec"), to_lambda)
    assert not allowed(
        docs, "iam:PassRole", iam("role/stageline-dev-api-exec"), {"iam:PassedToService": "ec2.amazonaws.com"}
    )
    assert not allowed(docs, "iam:PassRole", iam("role/stageline-prod-api-exec"), to_lambda)
    assert not allowed(docs, "iam:PassRole", iam("role/OrganizationAccountAccessRole"), to_lambda)


@pytest.mark.parametrize("managed", ["AdministratorAccess", "PowerUserAccess", "IAMFullAccess"])
def test_no_broad_aws_managed_policy_can_be_attached(managed: str) -> None:
    s = scope("dev")
    docs = deploy_docs("dev")
    role = iam("role/stageline-dev-api-exec")
    context = {
        "iam:PermissionsBoundary": s.boundary_policy_arn,
        "iam:PolicyARN": f"arn:aws:iam::aws:policy/{managed}",
    }
    assert not allowed(docs, "iam:AttachRolePolicy", role, context)
    lambda_basic = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    assert allowed(docs, "iam:AttachRolePolicy", role, {**context, "iam:PolicyARN": lambda_basic})


def test_artifacts_and_release_uploads_cannot_be_destroyed_by_a_deploy_job() -> None:
    docs = deploy_docs("dev")
    obj = "arn:aws:s3:::stageline-dev-artifacts-0a1b2c/releases/4f9c2d1/index.html"
    assert not allowed(docs, "s3:DeleteObjectVersion", obj)
    assert not allowed(
        docs, "ecr:BatchDeleteImage", f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/stageline-dev-app"
    )


def test_the_deploy_role_writes_only_its_own_stack_state_and_never_history() -> None:
    docs = deploy_docs("staging", source_stack="dev")
    state = "arn:aws:s3:::acme-pulumi-state/.pulumi"
    assert allowed(docs, "s3:PutObject", f"{state}/stacks/stageline/staging.json")
    assert allowed(docs, "s3:PutObject", f"{state}/locks/organization/stageline/staging/0b1c.json")
    assert allowed(docs, "s3:PutObject", f"{state}/history/stageline/staging/staging-1700000000.history.json")
    assert not allowed(docs, "s3:PutObject", f"{state}/stacks/stageline/prod.json")
    assert not allowed(
        docs, "s3:DeleteObject", f"{state}/history/stageline/staging/staging-1700000000.history.json"
    )
    assert not allowed(docs, "s3:DeleteObject", f"{state}/backups/stageline/staging/staging.1700000000.json")
    # Promotion reads its source's outputs and history: read-only, that stack and project only.
    assert allowed(docs, "s3:GetObject", f"{state}/stacks/stageline/dev.json")
    assert allowed(docs, "s3:GetObject", f"{state}/history/stageline/dev/dev-1700000000.history.json")
    assert not allowed(docs, "s3:GetObject", f"{state}/locks/organization/stageline/dev/0b1c.json")
    assert not allowed(docs, "s3:GetObject", f"{state}/stacks/other-project/dev.json")
    assert allowed(docs, "kms:Decrypt", STATE_KEY)


STATE = "arn:aws:s3:::acme-pulumi-state/.pulumi"
STACK_NAMES = ("dev", "staging", "prod")
SOURCES = {"dev": None, "staging": "dev", "prod": "staging"}


def stack_objects(stack: str) -> list[str]:
    return [
        f"{STATE}/stacks/stageline/{stack}.json",
        f"{STATE}/stacks/stageline/{stack}.json.bak",
        f"{STATE}/history/stageline/{stack}/{stack}-1700000000.history.json",
        f"{STATE}/history/stageline/{stack}/{stack}-1700000000.checkpoint.json",
        f"{STATE}/backups/stageline/{stack}/{stack}.1700000000.json",
        f"{STATE}/locks/organization/stageline/{stack}/0b1c.json",
    ]


def role_docs(stack: str, kind: str) -> list[dict[str, Any]]:
    key = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{stack}-state"
    changes = {"source_stack": SOURCES[stack], "state_kms_key_arn": key}
    return deploy_docs(stack, **changes) if kind == "deploy" else preview_docs(stack, **changes)


@pytest.mark.parametrize("reader", STACK_NAMES)
@pytest.mark.parametrize("kind", ["deploy", "preview"])
def test_a_stacks_state_is_readable_only_by_its_own_roles_and_its_promotion_target(
    reader: str, kind: str
) -> None:
    docs = role_docs(reader, kind)
    for owner in STACK_NAMES:
        readable = [o for o in stack_objects(owner) if allowed(docs, "s3:GetObject", o)]
        if owner == reader:
            continue
        if kind == "deploy" and SOURCES[reader] == owner:
            # The stage promoted from: its checkpoint and history, never its lock or backups.
            assert readable == stack_objects(owner)[:4], (reader, owner)
        else:
            assert readable == [], (reader, kind, owner)
        # No other stack's secrets key, whatever the role.
        assert not allowed(docs, "kms:Decrypt", f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{owner}-state")
    # Nobody but prod's own roles reads prod's state.
    if reader != "prod":
        assert not any(allowed(docs, "s3:GetObject", o) for o in stack_objects("prod"))


def test_without_a_state_bucket_no_state_statement_exists() -> None:
    docs = deploy_policies(scope("dev", state_bucket=None, state_kms_key_arn=None))
    assert "state" not in docs
    assert not any(
        "acme-pulumi-state" in json.dumps(d) or "kms:Decrypt" in json.dumps(d) for d in docs.values()
    )


def test_every_document_fits_iams_managed_policy_limit_with_long_names() -> None:
    long_env = "abcdefghijklmnop"
    s = scope(
        long_env,
        partition="aws-us-gov",
        region="ap-southeast-2",
        state_bucket="acme-pulumi-state-with-a-long-bucket-name-for-teams",
        source_prefix="stageline-ponmlkjihgfedcba",
    )
    for name, document in {**deploy_policies(s), **preview_policies(s)}.items():
        assert policy_size(document) <= MANAGED_POLICY_MAX_CHARS, name


def test_deploy_parts_are_split_as_the_component_names_them() -> None:
    assert deploy_policy_parts(has_state=False) == DEPLOY_POLICY_PARTS
    assert deploy_policy_parts(has_state=True) == (*DEPLOY_POLICY_PARTS, "state")
    assert tuple(preview_policies(scope())) == preview_policy_parts(has_state=True)


# --- preview -----------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_preview_role_writes_nothing_not_even_its_stacks_lock(env: str) -> None:
    # A preview and a preview-only refresh on a DIY backend take no lock, so none is granted.
    docs = preview_docs(env)
    for document in docs:
        assert violations(document) == []
        for st in statements(document):
            assert st["Effect"] == "Allow"
            assert [a for a in as_list(st["Action"]) if not is_read_only(a)] == [], st["Sid"]
    for obj in stack_objects(env):
        assert not allowed(docs, "s3:PutObject", obj)
        assert not allowed(docs, "s3:DeleteObject", obj)
    assert not any(allowed(docs, "s3:GetObject", o) for o in stack_objects(env) if "/locks/" in o)


def test_the_preview_role_reads_its_environment_and_changes_nothing() -> None:
    docs = preview_docs("dev")
    fn = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:stageline-dev-api"
    assert allowed(docs, "lambda:GetFunction", fn)
    assert allowed(docs, "s3:GetObject", "arn:aws:s3:::acme-pulumi-state/.pulumi/stacks/stageline/dev.json")
    assert allowed(docs, "kms:Decrypt", STATE_KEY)
    for action, resource in [
        ("lambda:UpdateFunctionCode", fn),
        ("lambda:UpdateAlias", f"{fn}:live"),
        ("s3:PutObject", "arn:aws:s3:::acme-pulumi-state/.pulumi/stacks/stageline/dev.json"),
        ("s3:PutObject", "arn:aws:s3:::stageline-dev-artifacts-0a1b2c/x"),
        ("iam:PassRole", iam("role/stageline-dev-api-exec")),
        ("kms:Encrypt", STATE_KEY),
        ("ecr:PutImage", f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/stageline-dev-app"),
    ]:
        assert not allowed(docs, action, resource, {"iam:PassedToService": "lambda.amazonaws.com"}), action


def test_the_preview_role_cannot_read_another_stacks_state() -> None:
    docs = preview_docs("dev")
    assert not allowed(
        docs, "s3:GetObject", "arn:aws:s3:::acme-pulumi-state/.pulumi/stacks/stageline/prod.json"
    )


# --- the state's secrets key ----------------------------------------------------------------


def key_policy(env: str) -> dict[str, Any]:
    return state_key_policy(
        partition="aws",
        account_id=ACCOUNT,
        prefix=f"stageline-{env}",
        administrators=[iam("role/AWSReservedSSO_Admin_0123")],
    )


def key_allows(document: dict[str, Any], principal_arn: str, action: str) -> bool:
    """The key policy alone (no root-wide delegation to IAM): who may use the key."""
    for st in statements(document):
        if st["Effect"] != "Allow" or action not in as_list(st["Action"]):
            continue
        named = as_list(st["Principal"]["AWS"])
        if principal_arn in named:
            return True
        condition = st.get("Condition", {}).get("ArnEquals", {})
        if iam("root") in named and principal_arn in as_list(condition.get("aws:PrincipalArn")):
            return True
    return False


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_only_the_environments_own_roles_and_the_administrators_can_use_its_state_key(env: str) -> None:
    document = key_policy(env)
    deploy, preview = iam(f"role/stageline-{env}-deploy"), iam(f"role/stageline-{env}-preview")
    admin = iam("role/AWSReservedSSO_Admin_0123")
    assert key_allows(document, deploy, "kms:Decrypt") and key_allows(document, deploy, "kms:Encrypt")
    assert key_allows(document, preview, "kms:Decrypt")
    assert not key_allows(document, preview, "kms:Encrypt")
    assert key_allows(document, admin, "kms:Decrypt")
    for other in {"dev", "staging", "prod"} - {env}:
        for role in ("deploy", "preview"):
            assert not key_allows(document, iam(f"role/stageline-{other}-{role}"), "kms:Decrypt")
    # The account is never a principal on its own: no IAM policy can widen who decrypts.
    for st in statements(document):
        if iam("root") in as_list(st["Principal"]["AWS"]):
            assert st["Condition"]["ArnEquals"]["aws:PrincipalArn"] in (deploy, preview)
    # The deploy roles themselves cannot manage it (no key administration).
    assert not key_allows(document, deploy, "kms:PutKeyPolicy")
    assert not key_allows(document, deploy, "kms:ScheduleKeyDeletion")


# --- boundary ----------------------------------------------------------------------------


def test_the_boundary_allows_own_logs_and_configured_grants_only() -> None:
    grant = Grant(
        actions=("dynamodb:GetItem", "dynamodb:PutItem"),
        resources=(f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders",),
    )
    document = boundary_policy(
        partition="aws", account_id=ACCOUNT, region="eu-west-1", prefix="stageline-dev", grants=[grant, grant]
    )
    assert violations(document) == []
    actions = [a for st in statements(document) for a in as_list(st["Action"])]
    assert sorted(actions) == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    ]
    assert allowed(
        [document],
        "logs:PutLogEvents",
        f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/lambda/stageline-dev-api:log-stream:x",
    )
    assert not allowed(
        [document],
        "logs:PutLogEvents",
        f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/lambda/stageline-prod-api:log-stream:x",
    )
    assert not any(a.startswith(("iam:", "sts:")) for a in actions)


def test_grants_that_outgrow_the_boundarys_size_limit_are_a_config_error() -> None:
    values = stack_values("dev")
    values["services"][0]["grants"] = [
        {
            "actions": ["dynamodb:GetItem"],
            "resources": [
                f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders-{i:03d}-with-a-long-table-name"
            ],
        }
        for i in range(80)
    ]
    with pytest.raises(ConfigError) as caught:
        GitHubTrustArgs.from_config(parse(values, stack="dev", region="eu-west-1"))
    message = str(caught.value)
    assert message.startswith("stageline:services grants make the permissions boundary ")
    assert message.endswith("over IAM's limit of 6144; merge or narrow them")
    assert "\n" not in message


# --- buckets -----------------------------------------------------------------------------


def test_the_bucket_policy_denies_every_request_without_tls() -> None:
    document = tls_only_bucket_policy("arn:aws:s3:::stageline-dev-artifacts-0a1b2c")
    assert document["Statement"] == [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [
                "arn:aws:s3:::stageline-dev-artifacts-0a1b2c",
                "arn:aws:s3:::stageline-dev-artifacts-0a1b2c/*",
            ],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]


def test_every_resource_names_this_prefix_or_is_an_id_shape_fenced_by_the_environment_tag() -> None:
    # Name-scoped statements carry the environment's prefix. Resources with generated IDs use
    # their service's ARN shape, and every write on them is conditioned on the environment tag,
    # except HTTP API children, which carry no tags (see infra.policies).
    id_shapes = ("distribution/*", "key/*", "::/apis", "::/apis/*")
    untagged_shapes = (
        "origin-access-control/*",
        "response-headers-policy/*",
        "cache-policy/*",
        "::/apis/*/*",
    )
    for document in deploy_docs("dev") + preview_docs("dev"):
        for st in statements(document):
            if st["Effect"] != "Allow":
                continue
            writes = [a for a in as_list(st["Action"]) if not is_read_only(a)]
            for resource in as_list(st["Resource"]):
                if (
                    resource == "*"
                    or "stageline-dev" in resource
                    or resource.startswith(("arn:aws:s3:::acme-pulumi-state", PROVIDER, STATE_KEY))
                ):
                    continue
                if resource.endswith(untagged_shapes):
                    continue
                assert resource.endswith(id_shapes), resource
                if writes:
                    tags = json.dumps(st.get("Condition"))
                    assert "aws:ResourceTag/environment" in tags or "aws:RequestTag/environment" in tags, st[
                        "Sid"
                    ]
