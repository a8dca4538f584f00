"""The GitHubTrust component under mocks: what it creates and how the documents are wired."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from foundation_testkit import (
    ACCOUNT,
    REPOSITORY,
    doc,
    role_documents,
    run,
    stack_values,
    trust_subjects,
    violations,
)

from infra.config import load, parse
from infra.oidc import GitHubTrust, GitHubTrustArgs
from infra.policies import OIDC_HOST, deploy_policies, preview_policies
from infra.simulate import Simulation

TRUST = "stageline:infra:GitHubTrust"
EXISTING = "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"


def trust_program() -> None:
    cfg = load()
    provider = aws.Provider("aws", region=cfg.region)
    trust = GitHubTrust(
        "trust", GitHubTrustArgs.from_config(cfg), pulumi.ResourceOptions(providers={"aws": provider})
    )
    pulumi.export("provider", trust.provider_arn)
    pulumi.export("deploy", trust.deploy_role_arn)
    pulumi.export("preview", trust.preview_role_arn)
    pulumi.export("boundary", trust.permissions_boundary_arn)


def simulate_trust(stack: str = "dev", **changes: Any) -> Simulation:
    values = stack_values(stack)
    values.update(changes)
    return run(values, stack=stack, program=trust_program)


def same(found: Iterable[dict[str, Any]], expected: Iterable[dict[str, Any]]) -> bool:
    """Equal as collections: the engine registers resources in no guaranteed order."""
    return sorted(json.dumps(d, sort_keys=True) for d in found) == sorted(
        json.dumps(d, sort_keys=True) for d in expected
    )


@pytest.fixture(scope="module")
def dev() -> Simulation:
    return simulate_trust("dev")


def test_the_stack_creates_githubs_provider_for_sts_without_thumbprints(dev: Simulation) -> None:
    (provider,) = dev.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs == {"url": f"https://{OIDC_HOST}", "clientIdLists": ["sts.amazonaws.com"]}
    assert dev.outputs["provider"] == provider.outputs["arn"]


def test_an_existing_provider_from_config_is_used_and_nothing_is_created() -> None:
    sim = simulate_trust("staging", oidc={"providerArn": EXISTING})
    assert sim.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    assert sim.outputs["provider"] == EXISTING
    for role in sim.of_type("aws:iam/role:Role"):
        (statement,) = doc(role, "assumeRolePolicy")["Statement"]
        assert statement["Principal"] == {"Federated": EXISTING}


def test_deploy_and_preview_roles_trust_exactly_their_subjects(dev: Simulation) -> None:
    deploy, preview = dev.named("trust-deploy"), dev.named("trust-preview")
    assert deploy.inputs["name"] == "stageline-dev-deploy"
    assert preview.inputs["name"] == "stageline-dev-preview"
    assert trust_subjects(doc(deploy, "assumeRolePolicy")) == [
        ("StringEquals", f"repo:{REPOSITORY}:environment:dev")
    ]
    assert trust_subjects(doc(preview, "assumeRolePolicy")) == [
        ("StringEquals", f"repo:{REPOSITORY}:pull_request"),
        ("StringEquals", f"repo:{REPOSITORY}:environment:dev-readonly"),
    ]
    assert dev.outputs["deploy"] == f"arn:aws:iam::{ACCOUNT}:role/stageline-dev-deploy"
    assert dev.outputs["preview"] == f"arn:aws:iam::{ACCOUNT}:role/stageline-dev-preview"


def test_the_immutable_subject_reaches_the_role_when_ids_are_configured() -> None:
    values = stack_values("prod")
    values["github"].update(ownerId=1234567, repositoryId=89012345)
    sim = run(values, stack="prod", program=trust_program)
    assert trust_subjects(doc(sim.named("trust-deploy"), "assumeRolePolicy")) == [
        ("StringEquals", "repo:acme-shop@1234567/storefront@89012345:environment:prod")
    ]


def test_the_roles_carry_exactly_the_documents_the_pure_functions_build(dev: Simulation) -> None:
    boundary = dev.named("trust-boundary")
    assert boundary.inputs["name"] == "stageline-dev-boundary"
    assert dev.outputs["boundary"] == boundary.outputs["arn"]
    args = GitHubTrustArgs.from_config(parse(stack_values("dev"), stack="dev", region="eu-west-1"))
    scope = args.scope("aws", ACCOUNT, dev.outputs["provider"], boundary.outputs["arn"])
    assert same(role_documents(dev, dev.named("trust-deploy")), deploy_policies(scope).values())
    assert same(role_documents(dev, dev.named("trust-preview")), preview_policies(scope).values())
    assert doc(boundary) == args.boundary_document("aws", ACCOUNT)


def test_only_customer_managed_policies_of_this_prefix_are_attached(dev: Simulation) -> None:
    attachments = dev.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert sorted(a.inputs["policyArn"] for a in attachments) == sorted(
        f"arn:aws:iam::{ACCOUNT}:policy/stageline-dev-{name}"
        for name in ("deploy-iam", "deploy-compute", "deploy-edge", "deploy-ops", "preview-read")
    )
    for role in dev.of_type("aws:iam/role:Role"):
        assert "managedPolicyArns" not in role.inputs
        assert "inlinePolicies" not in role.inputs
    for policy in dev.of_type("aws:iam/policy:Policy"):
        assert violations(doc(policy)) == [], policy.name


def test_a_configured_state_backend_adds_a_state_policy_to_both_roles() -> None:
    key = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    sim = simulate_trust("dev", state={"bucket": "acme-pulumi-state", "kmsKeyArn": key})
    deploy_state = doc(sim.named("trust-deploy-state"))
    preview_state = doc(sim.named("trust-preview-state"))
    lock = "arn:aws:s3:::acme-pulumi-state/.pulumi/locks/organization/stageline/dev/*"
    for document in (deploy_state, preview_state):
        assert key in json.dumps(document)
    # Only the deploy role takes the lock; a preview takes none.
    assert lock in json.dumps(deploy_state)
    assert lock not in json.dumps(preview_state)
    decrypt = {
        name: [st["Action"] for st in document["Statement"] if st["Resource"] == key]
        for name, document in (("deploy", deploy_state), ("preview", preview_state))
    }
    assert decrypt == {
        "deploy": [["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]],
        "preview": [["kms:Decrypt", "kms:DescribeKey"]],
    }
    attached = {
        a.inputs["policyArn"] for a in sim.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert f"arn:aws:iam::{ACCOUNT}:policy/stageline-dev-deploy-state" in attached
    assert f"arn:aws:iam::{ACCOUNT}:policy/stageline-dev-preview-state" in attached


def test_every_resource_is_a_child_of_the_component(dev: Simulation) -> None:
    aws_resources = [r for r in dev.resources if r.type.startswith("aws:")]
    assert aws_resources
    for resource in aws_resources:
        assert resource.parent_type == TRUST, resource.name
        assert resource.name.startswith("trust-")


def test_the_deploy_role_may_outlast_a_long_update(dev: Simulation) -> None:
    assert dev.named("trust-deploy").inputs["maxSessionDuration"] == 7200
    assert dev.named("trust-preview").inputs["maxSessionDuration"] == 3600
