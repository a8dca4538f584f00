"""The guardrail rules: each one passes on the shipped stacks and catches the change it exists for.

Failing cases mutate the rendered shipped stacks (policy_testkit) or come from small programs run
through the simulator, so properties are shaped exactly as pulumi-aws / pulumi-github send them.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_github as github
import pytest
from policy_testkit import (
    DELETE,
    ROOT,
    drop,
    edit,
    edit_document,
    found,
    named,
    shipped,
    with_options,
)

from automation.assure.check import context_for
from automation.assure.render import Rendered, load_config
from infra import iam
from infra.config import ConfigError, GitHubConfig, Waiver
from infra.simulate import simulate
from policy import rules
from policy.rules import RULES, RULES_BY_ID, StackContext

DEV_SUBJECT = "repo:acme-shop/storefront:environment:dev"
OIDC_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def dev() -> StackContext:
    return shipped("dev")


@pytest.fixture(scope="module")
def prod() -> StackContext:
    return shipped("prod")


def trust(
    sub: Any = DEV_SUBJECT,
    *,
    operator: str = "StringEquals",
    aud: Any = "sts.amazonaws.com",
    aud_operator: str = "StringEquals",
) -> str:
    condition: dict[str, dict[str, Any]] = {}
    if aud is not None:
        condition.setdefault(aud_operator, {})["token.actions.githubusercontent.com:aud"] = aud
    if sub is not None:
        condition.setdefault(operator, {})["token.actions.githubusercontent.com:sub"] = sub
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "GitHubActions",
                    "Effect": "Allow",
                    "Principal": {"Federated": OIDC_PROVIDER},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": condition,
                }
            ],
        }
    )


def add_statement(statement: dict[str, Any]) -> Any:
    return lambda doc: doc["Statement"].append(statement)


# --- the rule table -------------------------------------------------------------------------------


def test_every_rule_has_an_id_a_one_line_rationale_a_severity_and_one_check() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for rule in RULES:
        assert rule.severity in rules.SEVERITIES, rule.id
        assert rule.rationale and "\n" not in rule.rationale and len(rule.rationale) <= 110, rule.id
        assert (rule.check is None) != (rule.check_stack is None), rule.id
        assert bool(rule.types) == (rule.check is not None), rule.id


def test_the_rules_named_by_the_issue_exist() -> None:
    assert {
        "oidc-trust-exact",
        "oidc-no-wildcard-subject",
        "iam-no-admin",
        "iam-no-passrole-star",
        "s3-encrypted",
        "s3-public-access-blocked",
        "s3-tls-only",
        "ecr-immutable-tags",
        "ecr-scan-on-push",
        "lambda-invoked-through-live",
        "log-retention",
        "prod-reviewers",
        "required-tags",
        "stateful-protected",
    } <= set(RULES_BY_ID)


# What each rule looks at, so "the shipped stacks pass" is not vacuous.
_SUBJECTS = {
    "s3-encrypted": rules.BUCKET_TYPES,
    "s3-public-access-blocked": rules.BUCKET_TYPES,
    "s3-tls-only": rules.BUCKET_TYPES,
    "lambda-live-alias": {rules.FUNCTION},
    "lambda-log-group": {rules.FUNCTION},
    "required-tags": rules.TAGGABLE_TYPES,
    "stateful-protected": rules.PROTECTION_REQUIRED_TYPES,
    "lambda-arn-through-live": {rules.FUNCTION},
}
# The pack's alone: `check` stops at a config error (exit 2) before there is anything to check.
_PACK_ONLY = {"stack-config-readable"}
# Rules that judge the stack's config (always there to check).
_CONFIG_RULES = {"github-token-reviewed", "prod-deployment-refs", "prod-no-pull-request-previews"}
# Rules on GitHub environments: only prod's stack declares any (github.protects).
_GITHUB_ENVIRONMENT_RULES = {"prod-reviewers", "prod-no-admin-bypass"}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_shipped_stacks_break_no_rule_and_every_rule_had_resources_to_check(stack: str) -> None:
    ctx = shipped(stack)
    assert rules.evaluate(ctx) == []
    for rule in RULES:
        if rule.id in _PACK_ONLY | _CONFIG_RULES:
            continue
        if rule.id in _GITHUB_ENVIRONMENT_RULES and stack != "prod":
            assert not ctx.of_type(rules.GITHUB_ENVIRONMENT)
            continue
        subjects = rule.types or _SUBJECTS[rule.id]
        assert any(r.type in subjects for r in ctx.resources), f"{rule.id} has nothing to check in {stack}"


# --- GitHub OIDC trust ----------------------------------------------------------------------------


def test_deploy_role_trusting_another_environment_is_a_violation(dev: StackContext) -> None:
    ctx = edit(dev, "trust-deploy", assumeRolePolicy=trust("repo:acme-shop/storefront:environment:staging"))
    [(resource, message)] = found(ctx, "oidc-trust-exact")
    assert resource == "trust-deploy"
    assert '"repo:acme-shop/storefront:environment:staging"' in message
    assert f'"{DEV_SUBJECT}" (deploy)' in message


def test_a_branch_subject_is_not_an_environment(dev: StackContext) -> None:
    ctx = edit(dev, "trust-deploy", assumeRolePolicy=trust("repo:acme-shop/storefront:ref:refs/heads/main"))
    assert [r for r, _ in found(ctx, "oidc-trust-exact")] == ["trust-deploy"]


def test_trust_without_pinned_audience_is_a_violation(dev: StackContext) -> None:
    for policy in (
        trust(aud=None),
        trust(aud="sts.amazonaws.com", aud_operator="StringLike"),
        trust(aud=["sts.amazonaws.com", "other"]),
    ):
        [(_, message)] = found(edit(dev, "trust-deploy", assumeRolePolicy=policy), "oidc-trust-exact")
        assert 'does not pin token.actions.githubusercontent.com:aud to "sts.amazonaws.com"' in message


def test_subject_matched_with_string_like_is_a_violation_even_without_wildcards(dev: StackContext) -> None:
    ctx = edit(dev, "trust-deploy", assumeRolePolicy=trust(DEV_SUBJECT, operator="StringLike"))
    assert [m for _, m in found(ctx, "oidc-trust-exact")] == [
        'statement "GitHubActions" matches token.actions.githubusercontent.com:sub with StringLike; '
        "use StringEquals"
    ]


def test_the_preview_role_may_trust_pull_requests_and_its_readonly_environment(dev: StackContext) -> None:
    subjects = {
        r.name: iam.as_list(
            json.loads(r.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]["StringEquals"][
                "token.actions.githubusercontent.com:sub"
            ]
        )
        for r in dev.of_type(rules.ROLE)
        if "GitHubActions" in r.inputs["assumeRolePolicy"]
    }
    assert subjects["trust-deploy"] == [DEV_SUBJECT]
    assert set(subjects["trust-preview"]) <= {
        "repo:acme-shop/storefront:pull_request",
        "repo:acme-shop/storefront:environment:dev-readonly",
    }
    assert found(dev, "oidc-trust-exact") == []


def test_another_stacks_readonly_environment_is_a_violation(dev: StackContext) -> None:
    ctx = edit(
        dev, "trust-preview", assumeRolePolicy=trust("repo:acme-shop/storefront:environment:prod-readonly")
    )
    [(_, message)] = found(ctx, "oidc-trust-exact")
    assert message == (
        'statement "GitHubActions" trusts subject "repo:acme-shop/storefront:environment:prod-readonly"; '
        f'a role of stack dev may trust only "{DEV_SUBJECT}" (deploy) or '
        '"repo:acme-shop/storefront:pull_request", "repo:acme-shop/storefront:environment:dev-readonly" '
        "(read-only)"
    )


def test_the_deploy_subject_must_be_alone_on_its_role(dev: StackContext) -> None:
    both = trust([DEV_SUBJECT, "repo:acme-shop/storefront:pull_request"])
    assert found(edit(dev, "trust-deploy", assumeRolePolicy=both), "oidc-trust-exact") == [
        (
            "trust-deploy",
            f'trusts the deploy subject "{DEV_SUBJECT}" and also "repo:acme-shop/storefront:pull_request": '
            "those jobs would get deploy rights; give them a separate read-only role",
        )
    ]


def test_without_the_stack_config_subjects_are_checked_by_shape(dev: StackContext) -> None:
    bare = StackContext(stack="dev", resources=dev.resources)
    assert found(bare, "oidc-trust-exact") == []
    ctx = edit(bare, "trust-deploy", assumeRolePolicy=trust("repo:someone/else:environment:prod"))
    assert len(found(ctx, "oidc-trust-exact")) == 1


def test_immutable_subjects_are_exact_too(dev: StackContext) -> None:
    gh = GitHubConfig(
        repository="acme-shop/storefront", owner_id=11, repository_id=22, pull_request_previews=True
    )
    ctx = StackContext(stack="dev", github=gh, resources=dev.resources)
    immutable = "repo:acme-shop@11/storefront@22:environment:dev"
    ok = edit(
        edit(ctx, "trust-deploy", assumeRolePolicy=trust(immutable)),
        "trust-preview",
        assumeRolePolicy=trust("repo:acme-shop@11/storefront@22:pull_request"),
    )
    assert found(ok, "oidc-trust-exact") == []
    assert [
        r for r, _ in found(edit(ok, "trust-deploy", assumeRolePolicy=trust(DEV_SUBJECT)), "oidc-trust-exact")
    ] == ["trust-deploy"]


def test_wildcard_subject_is_reported_once_by_the_wildcard_rule(dev: StackContext) -> None:
    ctx = edit(
        dev, "trust-deploy", assumeRolePolicy=trust("repo:acme-shop/storefront:*", operator="StringLike")
    )
    assert found(ctx, "oidc-no-wildcard-subject") == [
        (
            "trust-deploy",
            'statement "GitHubActions" trusts subject pattern "repo:acme-shop/storefront:*" (StringLike)',
        )
    ]
    assert found(ctx, "oidc-trust-exact") == []


def test_trust_without_any_subject_lets_every_repository_in(dev: StackContext) -> None:
    [(_, message)] = found(
        edit(dev, "trust-preview", assumeRolePolicy=trust(sub=None)), "oidc-no-wildcard-subject"
    )
    assert "any GitHub repository can assume this role" in message


@pytest.mark.parametrize(
    "principal",
    [
        "*",
        {"AWS": "*"},
        {"AWS": ["arn:aws:iam::123456789012:root", "*"]},
        {"AWS": "arn:aws:iam::210987654321:root"},  # a foreign account
        {"Service": "ec2.amazonaws.com"},
    ],
)
def test_a_github_role_trusts_nothing_but_github(dev: StackContext, principal: Any) -> None:
    extra = {"Sid": "Extra", "Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    ctx = edit_document(dev, "trust-deploy", "assumeRolePolicy", add_statement(extra))
    assert found(ctx, "oidc-trust-exact") == [
        (
            "trust-deploy",
            f'statement "Extra" also lets {json.dumps(principal, sort_keys=True)} assume this GitHub '
            "Actions role; a role GitHub jobs assume must trust nothing else",
        )
    ]


def test_a_deny_beside_the_github_statement_is_fine(dev: StackContext) -> None:
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}
    ctx = edit_document(dev, "trust-deploy", "assumeRolePolicy", add_statement(deny))
    assert found(ctx, "oidc-trust-exact") == found(ctx, "iam-trust-not-public") == []


@pytest.mark.parametrize("role", ["trust-deploy", "service-api-exec"])
@pytest.mark.parametrize(
    ("statement", "who"),
    [
        ({"Principal": "*"}, '"*"'),
        ({"Principal": {"AWS": "*"}}, '{"AWS": "*"}'),
        ({"Principal": {"AWS": ["*"]}, "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}}, None),
        ({"NotPrincipal": {"AWS": "arn:aws:iam::123456789012:root"}}, "everyone but"),
    ],
)
def test_no_role_trusts_everyone(
    dev: StackContext, role: str, statement: dict[str, Any], who: str | None
) -> None:
    extra = {"Sid": "Anyone", "Effect": "Allow", "Action": "sts:AssumeRole", **statement}
    ctx = edit_document(dev, role, "assumeRolePolicy", add_statement(extra))
    [(name, message)] = found(ctx, "iam-trust-not-public")
    assert name == role
    assert message.startswith('statement "Anyone" lets ')
    assert message.endswith(" assume this role: anyone, from any AWS account")
    if who is not None:
        assert who in message


def test_the_shipped_trust_policies_trust_no_one_at_large(dev: StackContext) -> None:
    assert dev.of_type(rules.ROLE)
    assert found(dev, "iam-trust-not-public") == []


def test_roles_trusting_aws_services_are_not_oidc_roles(dev: StackContext) -> None:
    assert named(dev, "service-api-exec").inputs["assumeRolePolicy"]
    assert found(dev, "oidc-no-wildcard-subject") == []


# --- IAM ------------------------------------------------------------------------------------------


def test_allow_star_on_star_is_a_violation_in_any_form(dev: StackContext) -> None:
    for statement in (
        {"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Sid": "Everything", "Effect": "Allow", "Action": ["*:*"], "Resource": ["*"]},
        {"Sid": "Everything", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
    ):
        ctx = edit_document(dev, "trust-deploy-compute", "policy", add_statement(statement))
        assert found(ctx, "iam-no-admin") == [
            ("trust-deploy-compute", 'policy: statement "Everything" allows every action on every resource')
        ]


@pytest.mark.parametrize(
    "resource",
    ["arn:*", "arn:aws:*:*:*:*", "arn:aws:*:*:123456789012:*", ["arn:aws:s3:::x", "arn:*:*"], "*:*"],
)
def test_every_resource_is_every_resource_however_it_is_spelled(dev: StackContext, resource: Any) -> None:
    statement = {"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": resource}
    ctx = edit_document(dev, "trust-deploy-compute", "policy", add_statement(statement))
    [(name, message)] = found(ctx, "iam-no-admin")
    assert name == "trust-deploy-compute"
    assert message.startswith('policy: statement "Everything" allows every action on every resource (')


@pytest.mark.parametrize(
    "resource",
    ["arn:aws:s3:::stageline-dev-*", "arn:aws:lambda:eu-west-1:123456789012:function:stageline-dev-*"],
)
def test_every_action_on_the_stacks_own_resources_is_not_admin(dev: StackContext, resource: str) -> None:
    statement = {"Effect": "Allow", "Action": "*", "Resource": resource}
    ctx = edit_document(dev, "trust-deploy-compute", "policy", add_statement(statement))
    assert found(ctx, "iam-no-admin") == []


def test_deny_star_on_star_is_fine(dev: StackContext) -> None:
    ctx = edit_document(
        dev,
        "trust-deploy-compute",
        "policy",
        add_statement({"Effect": "Deny", "Action": "*", "Resource": "*"}),
    )
    assert found(ctx, "iam-no-admin") == []


def test_admin_managed_policies_are_violations(dev: StackContext) -> None:
    ctx = edit(
        dev, "trust-deploy-compute-attachment", policyArn="arn:aws:iam::aws:policy/AdministratorAccess"
    )
    assert found(ctx, "iam-no-admin") == [("trust-deploy-compute-attachment", "attaches AdministratorAccess")]
    ctx = edit(dev, "trust-preview", managedPolicyArns=["arn:aws:iam::aws:policy/PowerUserAccess"])
    assert found(ctx, "iam-no-admin") == [("trust-preview", "attaches PowerUserAccess")]


def test_inline_role_policies_are_checked_too(dev: StackContext) -> None:
    inline = [
        {
            "name": "wide",
            "policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        }
    ]
    assert found(edit(dev, "service-api-exec", inlinePolicies=inline), "iam-no-admin") == [
        ("service-api-exec", "inline policy wide: statement 0 allows every action on every resource")
    ]


@pytest.mark.parametrize(
    ("actions", "resource", "reach"),
    [
        (["kms:Decrypt"], "arn:aws:kms:*", "every resource"),
        (["kms:Decrypt"], "arn:aws:kms:eu-west-1:123456789012:key/*", "every kms key"),
        (["s3:Put*"], "*", "every resource of the account"),
        (["s3:GetObject"], "arn:aws:s3:::*", "every s3 resource"),
        (
            ["lambda:UpdateFunctionCode"],
            "arn:aws:lambda:eu-west-1:123456789012:function:*",
            "every lambda function",
        ),
        (
            ["secretsmanager:GetSecretValue"],
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:*",
            "every secretsmanager secret",
        ),
        (["dynamodb:GetItem"], "arn:aws:dynamodb:*:*:table/orders", "a pattern in the region or account"),
        (
            ["lambda:InvokeFunction"],
            "arn:aws:lambda:eu-west-1:123456789012:function:stageline-*",
            'every lambda function named "stageline-*"',
        ),  # other stages' functions
    ],
)
@pytest.mark.parametrize("resource_name", ["trust-deploy-compute", "trust-boundary"])
def test_a_pattern_in_any_arn_segment_beyond_the_stack_is_a_violation(
    dev: StackContext, actions: list[str], resource: str, reach: str, resource_name: str
) -> None:
    ctx = edit_document(
        dev,
        resource_name,
        "policy",
        add_statement({"Sid": "Wide", "Effect": "Allow", "Action": actions, "Resource": resource}),
    )
    [(name, message)] = found(ctx, "iam-resource-scope")
    assert name == resource_name
    assert message == (
        f'policy: statement "Wide" allows {", ".join(actions)} on "{resource}", which reaches {reach}, '
        "beyond this stack's own (stageline-dev-*)"
    )


def test_a_service_grant_reaching_beyond_the_stack_is_a_violation_in_its_role(dev: StackContext) -> None:
    inline = [
        {
            "name": "grants",
            "policy": json.dumps(
                {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*"}]}
            ),
        }
    ]
    assert found(edit(dev, "service-api-exec", inlinePolicies=inline), "iam-resource-scope") == [
        (
            "service-api-exec",
            'inline policy grants: statement 0 allows s3:GetObject on "arn:aws:s3:::*", which reaches '
            "every s3 resource, beyond this stack's own (stageline-dev-*)",
        )
    ]


@pytest.mark.parametrize(
    "statement",
    [
        # fenced by the stack's environment tag
        {
            "Effect": "Allow",
            "Action": "kms:DescribeKey",
            "Resource": "arn:aws:kms:eu-west-1:123456789012:key/*",
            "Condition": {"StringEquals": {"aws:ResourceTag/environment": "dev"}},
        },
        # AWS authorizes these on "*" only
        {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        # a complete name, then its objects; a secret's random suffix; the stack's own names
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::acme-uploads/*"},
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-??????",
        },
        {
            "Effect": "Allow",
            "Action": "lambda:GetFunction",
            "Resource": "arn:aws:lambda:eu-west-1:123456789012:function:stageline-dev-*",
        },
        {"Effect": "Deny", "Action": "*", "Resource": "*"},
    ],
)
def test_scoped_statements_are_not_reach(dev: StackContext, statement: dict[str, Any]) -> None:
    ctx = edit_document(dev, "trust-deploy-compute", "policy", add_statement(statement))
    assert found(ctx, "iam-resource-scope") == []


def test_a_tag_fence_for_another_environment_does_not_count(dev: StackContext) -> None:
    statement = {
        "Sid": "Keys",
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": "arn:aws:kms:eu-west-1:123456789012:key/*",
        "Condition": {"StringEquals": {"aws:ResourceTag/environment": "prod"}},
    }
    ctx = edit_document(dev, "trust-deploy-compute", "policy", add_statement(statement))
    assert len(found(ctx, "iam-resource-scope")) == 1


@pytest.mark.parametrize(
    ("action", "probe"),
    [
        ("organizations:LeaveOrganization", "organizations:LeaveOrganization"),
        ("organizations:*", "organizations:LeaveOrganization"),
        ("org*:Leave*", "organizations:LeaveOrganization"),
        ("account:*", "account:CloseAccount"),
        ("cloudtrail:Stop*", "cloudtrail:StopLogging"),
    ],
)
def test_administering_the_account_or_organization_is_a_violation_on_any_resource(
    dev: StackContext, action: str, probe: str
) -> None:
    statement = {
        "Sid": "Admin",
        "Effect": "Allow",
        "Action": action,
        "Resource": "arn:aws:lambda:eu-west-1:123456789012:function:stageline-dev-api",
    }
    for name in ("trust-deploy-ops", "trust-boundary"):
        ctx = edit_document(dev, name, "policy", add_statement(statement))
        assert found(ctx, "iam-no-account-admin") == [
            (name, f'policy: statement "Admin" allows {probe} (administers the account or the organization)')
        ]


def test_not_action_is_found_to_administer_the_account(dev: StackContext) -> None:
    statement = {"Sid": "Most", "Effect": "Allow", "NotAction": "s3:*", "Resource": "arn:aws:s3:::x"}
    ctx = edit_document(dev, "trust-deploy-ops", "policy", add_statement(statement))
    assert len(found(ctx, "iam-no-account-admin")) == 1


def test_the_state_key_wildcard_reaches_every_key_for_the_deploy_and_preview_roles() -> None:
    from infra.policies import Scope, deploy_policies, preview_policies

    scope = Scope(
        partition="aws",
        account_id="123456789012",
        region="eu-west-1",
        prefix="stageline-dev",
        environment="dev",
        project="stageline",
        stack="dev",
        oidc_provider_arn=OIDC_PROVIDER,
        boundary_policy_arn="arn:aws:iam::123456789012:policy/stageline-dev-boundary",
        state_bucket="acme-pulumi-state",
        state_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/*",
    )
    ctx = StackContext(stack="dev")
    for documents in (deploy_policies(scope), preview_policies(scope)):
        messages = rules.resource_scope(rules.IAM_POLICY, {"policy": json.dumps(documents["state"])}, ctx)
        assert len(messages) == 1
        assert messages[0].startswith('policy: statement "StateSecretsKey" allows kms:Decrypt')
        assert messages[0].endswith(
            'on "arn:aws:kms:eu-west-1:123456789012:key/*", which reaches every kms key, beyond this '
            "stack's own (stageline-dev-*)"
        )


def test_passrole_on_every_role_is_a_violation(dev: StackContext) -> None:
    for resource in ("*", "arn:aws:iam::123456789012:role/*"):
        ctx = edit_document(
            dev,
            "trust-deploy-iam",
            "policy",
            add_statement({"Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole", "Resource": resource}),
        )
        [(name, message)] = found(ctx, "iam-no-passrole-star")
        assert name == "trust-deploy-iam"
        assert f'statement "Pass" allows iam:PassRole on "{resource}"' in message


@pytest.mark.parametrize(
    ("resource", "reached"),
    [
        ("arn:aws:iam::123456789012:*", "OrganizationAccountAccessRole"),
        ("arn:*:iam::*:role/*", "OrganizationAccountAccessRole"),
        ("arn:aws:iam::123456789012:role*", "OrganizationAccountAccessRole"),
        ("arn:aws:iam::*:role/Organization*", "OrganizationAccountAccessRole"),
        ("arn:aws:iam::123456789012:role/stageline-*", "stageline-not-dev-deploy"),  # other stages' roles
        ("arn:aws:iam::*:role/aws-reserved/*", "AWSReservedSSO_AdministratorAccess_0123456789abcdef"),
    ],
)
def test_passrole_beyond_the_stacks_roles_is_a_violation(
    dev: StackContext, resource: str, reached: str
) -> None:
    ctx = edit_document(
        dev,
        "trust-deploy-iam",
        "policy",
        add_statement({"Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole", "Resource": resource}),
    )
    [(_, message)] = found(ctx, "iam-no-passrole-star")
    assert (
        f'statement "Pass" allows iam:PassRole on "{resource}", which reaches roles outside stageline-dev-* '
        f"(e.g. {reached})"
    ) in message


def test_passrole_hidden_in_a_wildcard_action_is_found(dev: StackContext) -> None:
    ctx = edit_document(
        dev,
        "trust-deploy-iam",
        "policy",
        add_statement({"Sid": "Pass", "Effect": "Allow", "Action": "iam:Pass*", "Resource": "*"}),
    )
    assert len(found(ctx, "iam-no-passrole-star")) == 1


def test_the_shipped_passrole_is_scoped_to_this_environment(dev: StackContext) -> None:
    statements = json.loads(named(dev, "trust-deploy-iam").inputs["policy"])["Statement"]
    passes = [s for s in statements if s["Effect"] == "Allow" and "iam:PassRole" in s["Action"]]
    assert [s["Resource"] for s in passes] == ["arn:aws:iam::123456789012:role/stageline-dev-*"]
    assert found(dev, "iam-no-passrole-star") == []


def test_iam_star_is_a_violation_even_on_named_resources(dev: StackContext) -> None:
    ctx = edit_document(
        dev,
        "trust-deploy-iam",
        "policy",
        add_statement(
            {
                "Sid": "AllIam",
                "Effect": "Allow",
                "Action": "iam:*",
                "Resource": "arn:aws:iam::123456789012:role/x",
            }
        ),
    )
    assert found(ctx, "iam-no-iam-wildcard") == [
        ("trust-deploy-iam", 'policy: statement "AllIam" allows every IAM action (iam:*)')
    ]


@pytest.mark.parametrize(
    ("statement", "actions", "where"),
    [
        (
            {"Action": "iam:Attach*", "Resource": "*"},
            "iam:AttachRolePolicy, iam:AttachUserPolicy, iam:AttachGroupPolicy",
            '"*"',
        ),
        (
            {
                "Action": ["iam:Put*"],
                "Resource": "arn:aws:iam::123456789012:role/OrganizationAccountAccessRole",
            },
            "iam:PutRolePolicy, iam:PutRolePermissionsBoundary",
            '"arn:aws:iam::123456789012:role/OrganizationAccountAccessRole"',
        ),
        (
            {"Action": "iam:CreatePolicyVersion", "Resource": "arn:aws:iam::123456789012:policy/*"},
            "iam:CreatePolicyVersion",
            '"arn:aws:iam::123456789012:policy/*"',
        ),
        (
            {"Action": "iam:*RolePolicy", "Resource": "arn:aws:iam::123456789012:role/stageline-*"},
            "iam:AttachRolePolicy, iam:PutRolePolicy, iam:UpdateAssumeRolePolicy",
            '"arn:aws:iam::123456789012:role/stageline-*"',
        ),
        (
            {"NotAction": ["iam:Create*", "s3:*"], "Resource": "arn:aws:iam::123456789012:role/*"},
            "iam:AttachRolePolicy, iam:PutRolePolicy, iam:UpdateAssumeRolePolicy, "
            "iam:PutRolePermissionsBoundary, iam:DeleteRolePermissionsBoundary",
            '"arn:aws:iam::123456789012:role/*"',
        ),
    ],
)
def test_privilege_escalation_is_found_by_what_a_statement_allows(
    dev: StackContext, statement: dict[str, Any], actions: str, where: str
) -> None:
    ctx = edit_document(
        dev, "trust-deploy-iam", "policy", add_statement({"Sid": "Escalate", "Effect": "Allow", **statement})
    )
    assert found(ctx, "iam-no-iam-wildcard") == [
        (
            "trust-deploy-iam",
            f'policy: statement "Escalate" allows {actions} on {where}, beyond this stack\'s own roles and '
            "policies (stageline-dev-*): privilege escalation",
        )
    ]


def test_escalation_on_a_named_role_of_someone_else_is_a_violation(dev: StackContext) -> None:
    statement = {
        "Sid": "Escalate",
        "Effect": "Allow",
        "Action": "iam:PutRolePolicy",
        "Resource": "arn:aws:iam::123456789012:role/billing-exporter",
    }
    ctx = edit_document(dev, "trust-deploy-iam", "policy", add_statement(statement))
    [(_, message)] = found(ctx, "iam-no-iam-wildcard")
    assert 'allows iam:PutRolePolicy on "arn:aws:iam::123456789012:role/billing-exporter"' in message


def test_managing_the_stacks_own_roles_is_not_escalation(dev: StackContext) -> None:
    # The shipped deploy role attaches and writes policies on stageline-dev-* roles (with a boundary).
    writes = [
        s
        for s in json.loads(named(dev, "trust-deploy-iam").inputs["policy"])["Statement"]
        if s["Effect"] == "Allow" and "iam:PutRolePolicy" in s["Action"]
    ]
    assert [s["Resource"] for s in writes] == ["arn:aws:iam::123456789012:role/stageline-dev-*"]
    assert found(dev, "iam-no-iam-wildcard") == []


# --- S3 -------------------------------------------------------------------------------------------


def test_a_bucket_without_encryption_is_a_violation(dev: StackContext) -> None:
    assert found(drop(dev, "artifacts-encryption"), "s3-encrypted") == [
        ("artifacts-bucket", "no default server-side encryption (AES256 or aws:kms) for this bucket")
    ]
    assert [r for r, _ in found(edit(dev, "frontend-encryption", rules=[]), "s3-encrypted")] == [
        "frontend-bucket"
    ]


def test_inline_bucket_encryption_counts(dev: StackContext) -> None:
    inline = {"rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}}
    ctx = edit(
        drop(dev, "artifacts-encryption"), "artifacts-bucket", serverSideEncryptionConfiguration=inline
    )
    assert found(ctx, "s3-encrypted") == []


def test_a_public_access_block_must_set_all_four_flags(dev: StackContext) -> None:
    assert found(
        edit(dev, "artifacts-public-access", restrictPublicBuckets=False, ignorePublicAcls=DELETE),
        "s3-public-access-blocked",
    ) == [
        (
            "artifacts-bucket",
            "public-access block artifacts-public-access leaves ignorePublicAcls, restrictPublicBuckets off",
        )
    ]
    assert found(drop(dev, "frontend-public-access"), "s3-public-access-blocked") == [
        ("frontend-bucket", "no public-access block for this bucket")
    ]


def test_companions_are_matched_to_their_own_bucket(dev: StackContext) -> None:
    # Two buckets, each with its own block: removing one bucket's block must not be hidden by the other's.
    assert len(dev.of_type(*rules.BUCKET_TYPES)) == 2
    assert [r for r, _ in found(drop(dev, "artifacts-public-access"), "s3-public-access-blocked")] == [
        "artifacts-bucket"
    ]


def test_a_bucket_policy_must_deny_plain_http_on_bucket_and_objects(dev: StackContext) -> None:
    message = (
        "no bucket policy denies s3:* without TLS (aws:SecureTransport false) on the bucket and its objects"
    )
    assert found(drop(dev, "artifacts-policy"), "s3-tls-only") == [("artifacts-bucket", message)]

    def secure_true(doc: dict[str, Any]) -> None:
        doc["Statement"][0]["Condition"]["Bool"]["aws:SecureTransport"] = "true"

    def bucket_only(doc: dict[str, Any]) -> None:
        doc["Statement"][0]["Resource"] = doc["Statement"][0]["Resource"][0]

    def allow(doc: dict[str, Any]) -> None:
        doc["Statement"][0]["Effect"] = "Allow"

    for change in (secure_true, bucket_only, allow):
        assert found(edit_document(dev, "frontend-policy", "policy", change), "s3-tls-only") == [
            ("frontend-bucket", message)
        ], change.__name__


# --- ECR ------------------------------------------------------------------------------------------


def test_mutable_tags_are_a_violation(dev: StackContext) -> None:
    assert found(edit(dev, "artifacts-repository", imageTagMutability="MUTABLE"), "ecr-immutable-tags") == [
        (
            "artifacts-repository",
            'imageTagMutability is "MUTABLE": a pushed tag can be moved to another image',
        )
    ]
    assert len(found(edit(dev, "artifacts-repository", imageTagMutability=DELETE), "ecr-immutable-tags")) == 1


def test_scan_on_push_must_be_on(dev: StackContext) -> None:
    for value in ({"scanOnPush": False}, DELETE):
        assert found(
            edit(dev, "artifacts-repository", imageScanningConfiguration=value), "ecr-scan-on-push"
        ) == [("artifacts-repository", "imageScanningConfiguration.scanOnPush is not true")]


# --- Lambda: live only ----------------------------------------------------------------------------

_FN = "arn:aws:lambda:eu-west-1:123456789012:function:stageline-dev-api"


def test_api_integrations_must_target_the_live_alias(dev: StackContext) -> None:
    uri = named(dev, "http-api-api-integration").inputs["integrationUri"]
    assert uri.endswith(f"{_FN}:live/invocations")
    latest = uri.replace(":live/", "/")
    assert found(
        edit(dev, "http-api-api-integration", integrationUri=latest), "lambda-invoked-through-live"
    ) == [
        (
            "http-api-api-integration",
            "integrationUri reaches function stageline-dev-api unqualified, i.e. "
            "$LATEST; target the live alias",
        )
    ]
    pinned = uri.replace(":live/", ":7/")
    [(_, message)] = found(
        edit(dev, "http-api-api-integration", integrationUri=pinned), "lambda-invoked-through-live"
    )
    assert "at 7;" in message


def test_invoke_permissions_must_be_qualified_with_live(dev: StackContext) -> None:
    assert named(dev, "http-api-api-invoke").inputs["qualifier"] == "live"
    assert found(edit(dev, "http-api-api-invoke", qualifier=DELETE), "lambda-invoked-through-live") == [
        (
            "http-api-api-invoke",
            "function reaches function stageline-dev-api unqualified, i.e. $LATEST; target the live alias",
        )
    ]
    qualified_arn = edit(dev, "http-api-api-invoke", qualifier=DELETE, function=f"{_FN}:live")
    assert found(qualified_arn, "lambda-invoked-through-live") == []


@pytest.mark.parametrize(
    ("type_", "bad", "good"),
    [
        (rules.EVENT_SOURCE_MAPPING, {"functionName": _FN}, {"functionName": f"{_FN}:live"}),
        (
            rules.FUNCTION_URL,
            {"functionName": "stageline-dev-api"},
            {"functionName": "x", "qualifier": "live"},
        ),
        (rules.EVENT_TARGET, {"arn": f"{_FN}:3"}, {"arn": f"{_FN}:live"}),
        (
            rules.TOPIC_SUBSCRIPTION,
            {"protocol": "lambda", "endpoint": _FN},
            {"protocol": "lambda", "endpoint": f"{_FN}:live"},
        ),
    ],
)
def test_every_other_way_in_must_use_live_too(
    dev: StackContext, type_: str, bad: dict[str, Any], good: dict[str, Any]
) -> None:
    rule = RULES_BY_ID["lambda-invoked-through-live"]
    assert rule.check is not None and type_ in rule.types
    [message] = rule.check(type_, bad, dev)
    assert message.endswith("; target the live alias")
    assert list(rule.check(type_, good, dev)) == []


def test_non_lambda_targets_are_not_this_rules_business(dev: StackContext) -> None:
    rule = RULES_BY_ID["lambda-invoked-through-live"]
    assert rule.check is not None
    assert (
        list(rule.check(rules.TOPIC_SUBSCRIPTION, {"protocol": "email", "endpoint": "a@b.example"}, dev))
        == []
    )
    assert list(rule.check(rules.EVENT_TARGET, {"arn": "arn:aws:sqs:eu-west-1:123456789012:q"}, dev)) == []


def _other_entries(qualifier: str | None) -> Any:
    """A function reached through entry types lambda-invoked-through-live has no list of."""

    def program() -> None:
        provider = aws.Provider("aws", region="eu-west-1")
        opts = pulumi.ResourceOptions(provider=provider)
        fn = aws.lambda_.Function(
            "fn",
            name="prod-fn",
            package_type="Image",
            image_uri="x@sha256:0",
            role="arn",
            publish=True,
            opts=opts,
        )
        live = aws.lambda_.Alias(
            "fn-live", name="live", function_name=fn.name, function_version=fn.version, opts=opts
        )
        if qualifier == "live":
            target = live.arn
        elif qualifier is None:
            target = fn.arn
        else:
            target = fn.arn.apply(lambda arn: f"{arn}:{qualifier}")
        rest = aws.apigateway.RestApi("rest", opts=opts)
        aws.apigateway.Integration(
            "rest-integration",
            rest_api=rest.id,
            resource_id=rest.root_resource_id,
            http_method="ANY",
            type="AWS_PROXY",
            integration_http_method="POST",
            uri=target.apply(
                lambda arn: f"arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/{arn}/invocations"
            ),
            opts=opts,
        )
        bucket = aws.s3.Bucket("uploads", opts=opts)
        aws.s3.BucketNotification(
            "uploads-notification",
            bucket=bucket.id,
            lambda_functions=[{"lambda_function_arn": target, "events": ["s3:ObjectCreated:*"]}],
            opts=opts,
        )
        aws.scheduler.Schedule(
            "nightly",
            schedule_expression="cron(0 3 * * ? *)",
            flexible_time_window={"mode": "OFF"},
            target={"arn": target, "role_arn": "arn:aws:iam::123456789012:role/prod-scheduler"},
            opts=opts,
        )
        # A policy granting on the unqualified ARN is not an invocation path.
        aws.iam.Policy(
            "deploy",
            policy=fn.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Statement": [
                            {"Effect": "Allow", "Action": "lambda:UpdateFunctionCode", "Resource": arn}
                        ]
                    }
                )
            ),
            opts=opts,
        )

    return program


@pytest.mark.parametrize(("qualifier", "at"), [(None, "unqualified, i.e. $LATEST"), ("3", "at 3")])
def test_any_resource_holding_a_function_arn_must_name_live(qualifier: str | None, at: str) -> None:
    ctx = _context(_other_entries(qualifier))
    assert sorted(found(ctx, "lambda-arn-through-live")) == [
        ("nightly", f"target.arn reaches function prod-fn {at}; target the live alias"),
        ("rest-integration", f"uri reaches function prod-fn {at}; target the live alias"),
        (
            "uploads-notification",
            f"lambdaFunctions[0].lambdaFunctionArn reaches function prod-fn {at}; target the live alias",
        ),
    ]


def test_resources_holding_the_live_alias_arn_pass() -> None:
    ctx = _context(_other_entries("live"))
    assert {r.type for r in ctx.resources} >= {
        "aws:apigateway/integration:Integration",
        "aws:s3/bucketNotification:BucketNotification",
        "aws:scheduler/schedule:Schedule",
    }
    assert found(ctx, "lambda-arn-through-live") == []


def test_the_entry_types_with_their_own_rule_are_not_reported_twice(dev: StackContext) -> None:
    uri = named(dev, "http-api-api-integration").inputs["integrationUri"]
    ctx = edit(dev, "http-api-api-integration", integrationUri=uri.replace(":live/", "/"))
    assert len(found(ctx, "lambda-invoked-through-live")) == 1
    assert found(ctx, "lambda-arn-through-live") == []


def test_functions_publish_behind_a_live_alias(dev: StackContext) -> None:
    assert found(drop(dev, "service-api-live"), "lambda-live-alias") == [
        ("service-api-function", "has no live alias: callers would have to name $LATEST or a version")
    ]
    assert found(edit(dev, "service-worker-live", functionVersion="$LATEST"), "lambda-live-alias") == [
        (
            "service-worker-function",
            "alias service-worker-live points at $LATEST instead of a published version",
        )
    ]
    assert found(edit(dev, "service-api-function", publish=False), "lambda-live-alias") == [
        ("service-api-function", "publish is not true: the live alias could only point at $LATEST")
    ]


# --- logs -----------------------------------------------------------------------------------------


def test_log_groups_need_a_retention(dev: StackContext) -> None:
    for value in (DELETE, 0):
        assert found(edit(dev, "service-api-logs", retentionInDays=value), "log-retention") == [
            (
                "service-api-logs",
                "retentionInDays is not set: CloudWatch keeps these logs (and bills for them) forever",
            )
        ]


def test_functions_log_to_a_group_the_stack_manages(dev: StackContext) -> None:
    assert found(drop(dev, "service-worker-logs"), "lambda-log-group") == [
        (
            "service-worker-function",
            "writes to log group /aws/lambda/stageline-dev-worker, which this stack does "
            "not manage: Lambda would create it on first use with no retention",
        )
    ]
    ctx = edit(dev, "service-api-function", loggingConfig={"logFormat": "Text", "logGroup": "/elsewhere"})
    assert [r for r, _ in found(ctx, "lambda-log-group")] == ["service-api-function"]


# --- GitHub environments --------------------------------------------------------------------------


def test_prod_requires_reviewers_and_blocks_self_review(prod: StackContext) -> None:
    assert found(
        edit(prod, "github-environment", reviewers=[{"users": [], "teams": []}]), "prod-reviewers"
    ) == [("github-environment", "environment prod has no required reviewers")]
    assert found(edit(prod, "github-environment", preventSelfReview=False), "prod-reviewers") == [
        ("github-environment", "preventSelfReview is not true: whoever starts a deployment can approve it")
    ]


def test_prod_admins_cannot_bypass(prod: StackContext) -> None:
    for value in (True, DELETE):
        assert [
            r
            for r, _ in found(edit(prod, "github-environment", canAdminsBypass=value), "prod-no-admin-bypass")
        ] == ["github-environment"]


@pytest.mark.parametrize("environment", ["prod", "production", "prod-eu", "Production-US"])
def test_production_is_recognised_by_its_name(prod: StackContext, environment: str) -> None:
    ctx = edit(
        prod, "github-environment", environment=environment, preventSelfReview=False, canAdminsBypass=True
    )
    assert found(ctx, "prod-reviewers") == [
        ("github-environment", "preventSelfReview is not true: whoever starts a deployment can approve it")
    ]
    assert [r for r, _ in found(ctx, "prod-no-admin-bypass")] == ["github-environment"]


@pytest.mark.parametrize(
    "environment", ["prod-readonly", "prod-eu-readonly", "prodigy", "preprod", "staging"]
)
def test_names_that_only_look_like_production_are_not(prod: StackContext, environment: str) -> None:
    ctx = edit(
        prod, "github-environment", environment=environment, preventSelfReview=False, canAdminsBypass=True
    )
    assert found(ctx, "prod-reviewers") == found(ctx, "prod-no-admin-bypass") == []


def test_the_last_stage_of_the_promotion_chain_is_production_whatever_its_name(prod: StackContext) -> None:
    live = dataclasses.replace(
        edit(prod, "github-environment", environment="live", reviewers=DELETE), stack="live"
    )
    assert found(live, "prod-reviewers") == []  # nothing says "live" is the last stage
    final = dataclasses.replace(live, production=True)
    assert found(final, "prod-reviewers") == [
        ("github-environment", "environment live has no required reviewers")
    ]
    # Its read-only environment (no reviewers, by design) is not production.
    readonly = edit(final, "github-readonly-environment", environment="live-readonly")
    assert named(readonly, "github-readonly-environment").inputs.get("reviewers") in (None, [])
    assert [r for r, _ in found(readonly, "prod-reviewers")] == ["github-environment"]


def test_the_final_stages_are_those_that_receive_releases_and_pass_them_on_to_no_one() -> None:
    assert rules.final_stages({"dev": None, "staging": "dev", "live": "staging"}) == {"live"}
    assert rules.final_stages({"dev": None, "eu": "dev", "us": "dev"}) == {"eu", "us"}
    assert rules.final_stages({"dev": None}) == frozenset()  # where releases start is not production
    assert rules.final_stages(rules.promotion_sources(ROOT)) == {"prod"}


def test_dev_needs_no_reviewers(prod: StackContext) -> None:
    # prod's stack declares dev's environment (github.protects): no reviewers, not production.
    (env,) = [r for r in prod.of_type(rules.GITHUB_ENVIRONMENT) if r.inputs["environment"] == "dev"]
    assert env.inputs.get("reviewers") in (None, [])
    assert found(prod, "prod-reviewers") == found(prod, "prod-no-admin-bypass") == []


# --- branch and tag policy, and who holds the GitHub token ----------------------------------------


def with_github(ctx: StackContext, **changes: Any) -> StackContext:
    assert ctx.github is not None
    return dataclasses.replace(ctx, github=dataclasses.replace(ctx.github, **changes))


def prod_policy(ctx: StackContext, kind: str) -> str:
    (res,) = [
        r
        for r in ctx.of_type(rules.GITHUB_DEPLOYMENT_POLICY)
        if r.inputs["environment"] == "prod" and f"{kind}Pattern" in r.inputs
    ]
    return res.name


def test_the_shipped_prod_declares_its_refs_and_protects_its_tags(prod: StackContext) -> None:
    assert found(prod, "prod-deployment-refs") == []
    assert rules._tag_rulesets(prod) == {"refs/tags/v*"}


def test_production_without_a_deployment_branch_policy_fails(prod: StackContext) -> None:
    ctx = edit(prod, "github-environment", deploymentBranchPolicy=DELETE)
    assert found(ctx, "prod-deployment-refs") == [
        ("github-environment", "environment prod has no deployment-branch policy: any branch may deploy")
    ]


@pytest.mark.parametrize(
    ("kind", "pattern"), [("branch", "*"), ("tag", "*"), ("branch", "**"), ("tag", "**/*")]
)
def test_a_catch_all_branch_or_tag_pattern_fails(prod: StackContext, kind: str, pattern: str) -> None:
    name = prod_policy(prod, kind)
    ctx = edit(prod, name, **{f"{kind}Pattern": pattern})
    messages = [m for r, m in found(ctx, "prod-deployment-refs") if r == name]
    assert messages[0] == f'{kind} pattern "{pattern}" admits every {kind}: name the ones that deploy'


@pytest.mark.parametrize(
    "weaken",
    [
        lambda ctx: drop(ctx, "github-tags"),
        lambda ctx: edit(ctx, "github-tags", enforcement="evaluate"),
        lambda ctx: edit(ctx, "github-tags", rules={"creation": True, "update": True}),
        lambda ctx: edit(
            ctx, "github-tags", conditions={"refName": {"includes": ["refs/tags/x*"], "excludes": []}}
        ),
        lambda ctx: edit(ctx, "github-tags", target="branch"),
    ],
    ids=["no-ruleset", "not-enforced", "deletion-allowed", "other-pattern", "branch-ruleset"],
)
def test_a_tag_pattern_without_tag_protection_fails(prod: StackContext, weaken: Any) -> None:
    name = prod_policy(prod, "tag")
    assert found(weaken(prod), "prod-deployment-refs") == [
        (
            name,
            'tag pattern "v*" has no tag ruleset declared by the program: whoever can push a matching '
            "tag could deploy it",
        )
    ]


def test_production_with_github_management_off_fails(prod: StackContext) -> None:
    ctx = with_github(prod, manage=False, protects=())
    [(resource, message)] = found(ctx, "prod-deployment-refs")
    assert resource == "stageline-prod"
    assert message.startswith("stageline:github.manage is false: production's environment")


def test_production_whose_rules_are_declared_by_no_stack_of_its_own_fails(prod: StackContext) -> None:
    ctx = with_github(prod, protects=("dev", "staging"))
    assert tuple(r for r, _ in found(ctx, "prod-deployment-refs"))[:1] == ("stageline-prod",)


def test_reviewers_the_starter_can_approve_fail(prod: StackContext) -> None:
    ctx = edit(prod, "github-environment", preventSelfReview=False)
    assert found(ctx, "prod-reviewers") == [
        ("github-environment", "preventSelfReview is not true: whoever starts a deployment can approve it")
    ]
    assert found(prod, "github-token-reviewed") == []
    protection = dataclasses.replace(prod.github.protection, prevent_self_review=False)
    weakened = with_github(prod, protection=protection)
    [(resource, message)] = found(weakened, "github-token-reviewed")
    assert resource == "stageline-prod" and "unreviewed job would hold a token" in message


def test_an_unreviewed_stack_managing_github_fails(dev: StackContext) -> None:
    assert found(dev, "github-token-reviewed") == []  # dev: manage false
    [(resource, message)] = found(with_github(dev, manage=True), "github-token-reviewed")
    assert resource == "stageline-dev"
    assert message.startswith("stageline:github.manage is true but the stack's environment has no required")


def test_production_admitting_pull_request_previews_fails(prod: StackContext, dev: StackContext) -> None:
    assert found(prod, "prod-no-pull-request-previews") == []
    assert found(dev, "prod-no-pull-request-previews") == []  # dev admits them: not production
    [(resource, message)] = found(
        with_github(prod, pull_request_previews=True), "prod-no-pull-request-previews"
    )
    assert resource == "stageline-prod" and "decrypt its secrets" in message


def test_a_production_preview_role_trusting_pull_requests_fails(prod: StackContext) -> None:
    pr = "repo:acme-shop/storefront:pull_request"
    ctx = edit(
        prod,
        "trust-preview",
        assumeRolePolicy=trust([pr, "repo:acme-shop/storefront:environment:prod-readonly"]),
    )
    [(resource, message)] = found(ctx, "oidc-trust-exact")
    assert resource == "trust-preview" and f'trusts subject "{pr}"' in message


# --- tags and protection --------------------------------------------------------------------------


def test_required_tags_come_from_provider_default_tags(dev: StackContext) -> None:
    tags = json.loads(named(dev, "aws").inputs["defaultTags"])["tags"]
    assert {k: tags[k] for k in rules.REQUIRED_TAGS} == {
        "project": "stageline",
        "environment": "dev",
        "managed-by": "pulumi",
    }
    del tags["managed-by"]
    tags["environment"] = "prod"
    broken = [
        r for r in dev.resources if r.provider_inputs is not None and "defaultTags" in r.provider_inputs
    ]
    provider = {**named(dev, "aws").inputs, "defaultTags": json.dumps({"tags": tags})}
    ctx = dev.with_resources(
        dataclasses.replace(r, provider_inputs=provider) if r in broken else r for r in dev.resources
    )
    reported = found(ctx, "required-tags")
    taggable = [r.name for r in broken if r.type.startswith("aws:") and rules.taggable(r)]
    assert sorted({name for name, _ in reported}) == sorted(taggable)
    assert ("artifacts-bucket", "missing tags: managed-by") in reported
    assert ("artifacts-bucket", 'environment is "prod", expected "dev"') in reported
    assert all(name not in {r.name for r in dev.of_type(rules.ROLE_POLICY)} for name, _ in reported)


def test_a_resource_on_a_provider_without_default_tags_needs_its_own(dev: StackContext) -> None:
    ctx = with_options(dev, "service-api-logs", provider_inputs=None)
    assert found(ctx, "required-tags") == [
        ("service-api-logs", "missing tags: project, environment, managed-by")
    ]
    tagged = edit(
        ctx, "service-api-logs", tags={"project": "stageline", "environment": "dev", "managed-by": "pulumi"}
    )
    assert found(tagged, "required-tags") == []


def test_prod_protects_and_retains_its_data(prod: StackContext) -> None:
    assert prod.protect_stateful is True
    assert found(
        with_options(prod, "artifacts-bucket", protect=False, retain_on_delete=False), "stateful-protected"
    ) == [
        (
            "artifacts-bucket",
            "stageline:artifacts.protect is true but the resource lacks protect and retainOnDelete",
        )
    ]
    assert [
        r
        for r, _ in found(
            with_options(prod, "artifacts-repository", retain_on_delete=False), "stateful-protected"
        )
    ] == ["artifacts-repository"]


def test_dev_says_nothing_needs_protection(dev: StackContext) -> None:
    assert dev.protect_stateful is False
    assert not named(dev, "artifacts-bucket").protect
    assert found(dev, "stateful-protected") == []


def test_unknown_protection_is_not_guessed(prod: StackContext) -> None:
    # CrossGuard does not pass retainOnDelete: None means "cannot tell", not "off".
    assert found(with_options(prod, "artifacts-bucket", retain_on_delete=None), "stateful-protected") == []


# --- values not known yet (preview) ----------------------------------------------------------------


def test_unknown_values_are_skipped_not_reported(dev: StackContext) -> None:
    ctx = edit(dev, "trust-deploy", assumeRolePolicy=rules.UNKNOWN)
    ctx = edit(ctx, "http-api-api-integration", integrationUri=rules.UNKNOWN)
    ctx = edit(ctx, "artifacts-policy", policy=rules.UNKNOWN)
    ctx = edit(ctx, "service-api-logs", retentionInDays=rules.UNKNOWN)
    assert rules.evaluate(ctx) == []


# --- waivers --------------------------------------------------------------------------------------


def test_a_waiver_naming_an_unknown_rule_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        rules.check_waivers([Waiver("log-retention", "a", "why"), Waiver("s3-encrypt", "b", "why")])
    assert str(err.value) == (
        'stageline:waivers[1].rule names an unknown rule "s3-encrypt" (did you mean "s3-encrypted"?)'
    )


def test_waivers_silence_one_rule_on_one_resource(dev: StackContext) -> None:
    ctx = edit(
        edit(dev, "service-api-logs", retentionInDays=DELETE), "service-worker-logs", retentionInDays=DELETE
    )
    waiver = Waiver("log-retention", "service-api-logs", "kept by the log archive")
    unused = Waiver("log-retention", "no-such-resource", "stale")
    outcome = rules.apply_waivers(rules.evaluate(ctx), [waiver, unused])
    assert [(v.rule, v.resource) for v in outcome.violations] == [("log-retention", "service-worker-logs")]
    assert [(v.resource, w.reason) for v, w in outcome.waived] == [
        ("service-api-logs", "kept by the log archive")
    ]
    assert outcome.unused_waivers == (unused,)


# --- the SDK agrees with the rule tables ------------------------------------------------------------


def _sdk_class(type_token: str) -> type:
    package, rest = type_token.split(":", 1)
    module_path, cls_name = rest.split(":")
    module = module_path.split("/")[0]
    root = {"aws": "pulumi_aws", "github": "pulumi_github"}[package]
    name = root if module == "index" else f"{root}.{'lambda_' if module == 'lambda' else module}"
    return getattr(importlib.import_module(name), cls_name)


def _accepts_tags(type_token: str) -> bool:
    cls = _sdk_class(type_token)
    return "tags" in inspect.signature(cls._internal_init).parameters  # type: ignore[attr-defined]


def test_every_type_listed_as_taggable_takes_tags_in_pulumi_aws() -> None:
    for type_token in rules.TAGGABLE_TYPES:
        assert _accepts_tags(type_token), type_token


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_taggable_aws_type_the_program_uses_is_listed(stack: str) -> None:
    used = {r.type for r in shipped(stack).resources if r.type.startswith("aws:")}
    missing = sorted(t for t in used if _accepts_tags(t) and t not in rules.TAGGABLE_TYPES)
    assert missing == []


# --- small programs through the simulator ---------------------------------------------------------


def _context(program: Any, stack: str = "prod") -> StackContext:
    sim = simulate({}, stack=stack, program=program)
    return context_for(Rendered(stack=stack, config=load_config(ROOT, stack), simulation=sim))


def _careless() -> None:
    provider = aws.Provider("aws", region="eu-west-1")  # no default tags
    opts = pulumi.ResourceOptions(provider=provider)
    aws.s3.Bucket("loose", opts=opts)
    aws.ecr.Repository("images", opts=opts)
    aws.cloudwatch.LogGroup("forever", name="/aws/lambda/prod-fn", opts=opts)
    fn = aws.lambda_.Function(
        "fn", name="prod-fn", package_type="Image", image_uri="x@sha256:0", role="arn", opts=opts
    )
    api = aws.apigatewayv2.Api("api", protocol_type="HTTP", opts=opts)
    aws.apigatewayv2.Integration(
        "latest", api_id=api.id, integration_type="AWS_PROXY", integration_uri=fn.invoke_arn, opts=opts
    )
    aws.iam.Role("ci", assume_role_policy=trust("repo:acme-shop/*", operator="StringLike"), opts=opts)
    aws.iam.Policy(
        "admin",
        policy=json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        opts=opts,
    )
    gh = github.Provider("github", owner="acme-shop")
    github.RepositoryEnvironment(
        "prod-env", repository="storefront", environment="prod", opts=pulumi.ResourceOptions(provider=gh)
    )


def test_a_careless_program_breaks_the_rules_where_expected() -> None:
    ctx = _context(_careless)
    got = sorted({(v.rule, v.resource) for v in rules.evaluate(ctx)})
    taggable = ["admin", "api", "ci", "fn", "forever", "images", "loose"]
    assert got == sorted(
        [
            ("ecr-immutable-tags", "images"),
            ("ecr-scan-on-push", "images"),
            ("iam-no-admin", "admin"),
            ("iam-no-passrole-star", "admin"),  # * includes iam:PassRole
            ("iam-no-iam-wildcard", "admin"),  # … and every IAM action
            ("lambda-invoked-through-live", "latest"),
            ("lambda-live-alias", "fn"),
            ("log-retention", "forever"),
            ("oidc-no-wildcard-subject", "ci"),
            ("prod-deployment-refs", "prod-env"),
            ("prod-no-admin-bypass", "prod-env"),
            ("prod-reviewers", "prod-env"),
            ("s3-encrypted", "loose"),
            ("s3-public-access-blocked", "loose"),
            ("s3-tls-only", "loose"),
            ("stateful-protected", "images"),
            ("stateful-protected", "loose"),
            *[("required-tags", name) for name in taggable],
        ]
    )


def _careful() -> None:
    tags = {"project": "stageline", "environment": "prod", "managed-by": "pulumi"}
    provider = aws.Provider("aws", region="eu-west-1", default_tags=aws.ProviderDefaultTagsArgs(tags=tags))
    opts = pulumi.ResourceOptions(provider=provider)
    keep = pulumi.ResourceOptions(provider=provider, protect=True, retain_on_delete=True)
    bucket = aws.s3.Bucket("data", opts=keep)
    aws.s3.BucketServerSideEncryptionConfiguration(
        "data-sse",
        bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}}],
        opts=opts,
    )
    aws.s3.BucketPublicAccessBlock(
        "data-pab",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    aws.s3.BucketPolicy(
        "data-tls",
        bucket=bucket.id,
        policy=bucket.arn.apply(
            lambda arn: json.dumps(
                {
                    "Statement": [
                        {
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [arn, f"{arn}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ]
                }
            )
        ),
        opts=opts,
    )
    aws.ecr.Repository(
        "images",
        image_tag_mutability="IMMUTABLE",
        image_scanning_configuration={"scan_on_push": True},
        opts=keep,
    )
    logs = aws.cloudwatch.LogGroup("logs", name="/aws/lambda/prod-fn", retention_in_days=30, opts=opts)
    fn = aws.lambda_.Function(
        "fn",
        name="prod-fn",
        package_type="Image",
        image_uri="x@sha256:0",
        role="arn",
        publish=True,
        opts=pulumi.ResourceOptions(provider=provider, depends_on=[logs]),
    )
    live = aws.lambda_.Alias(
        "fn-live", name="live", function_name=fn.name, function_version=fn.version, opts=opts
    )
    api = aws.apigatewayv2.Api("api", protocol_type="HTTP", opts=opts)
    aws.apigatewayv2.Integration(
        "live", api_id=api.id, integration_type="AWS_PROXY", integration_uri=live.invoke_arn, opts=opts
    )
    aws.lambda_.Permission(
        "invoke",
        action="lambda:InvokeFunction",
        function=fn.name,
        qualifier=live.name,
        principal="apigateway.amazonaws.com",
        opts=opts,
    )
    aws.iam.Role("ci", assume_role_policy=trust("repo:acme-shop/storefront:environment:prod"), opts=opts)
    gh = github.Provider("github", owner="acme-shop")
    github.RepositoryEnvironment(
        "prod-env",
        repository="storefront",
        environment="prod",
        prevent_self_review=True,
        can_admins_bypass=False,
        reviewers=[{"teams": [1]}],
        deployment_branch_policy={"protected_branches": True, "custom_branch_policies": False},
        opts=pulumi.ResourceOptions(provider=gh),
    )


def test_the_careful_twin_breaks_none() -> None:
    assert rules.evaluate(_context(_careful)) == []


def test_the_readme_lists_every_rule_with_its_severity_scope_and_rationale() -> None:
    readme = (ROOT / "docs" / "assurance.md").read_text()
    section = readme.split("### The rules", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows == [f"| `{r.id}` | {r.severity} | {r.scope} | {r.rationale} |" for r in RULES]
