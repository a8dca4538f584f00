"""The gate rules themselves: pure functions over previews, drift reports and pending operations."""

from __future__ import annotations

from pathlib import Path

import pytest

from automation.engine.fake import step
from automation.engine.model import DriftReport, PendingOperation, PreviewSummary, ResourceDrift
from automation.promote.gates import (
    IAM_SENSITIVE,
    PROTECTIVE,
    drift_gate,
    iam_gate,
    pending_gate,
    replace_gate,
    widens_iam,
)

ROLE = "aws:iam/role:Role"
FUNCTION = "aws:lambda/function:Function"
ENVIRONMENT = "github:index/repositoryEnvironment:RepositoryEnvironment"
DEPLOYMENT_POLICY = "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy"


def _preview(*steps: object) -> PreviewSummary:
    return PreviewSummary(stack="prod", counts={}, steps=tuple(steps))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("op", "type_token", "changed", "widens"),
    [
        ("create", ROLE, (), True),  # a new role is new trust
        ("update", ROLE, ("assumeRolePolicy",), True),  # trust policy
        ("update", ROLE, ("inlinePolicies[0].policy",), True),
        ("update", ROLE, ("managedPolicyArns",), True),
        ("update", ROLE, ("tags", "tagsAll"), False),  # tags grant nothing
        ("update", ROLE, ("description",), False),
        ("update", ROLE, (), True),  # no diff detail: assume the worst
        ("delete", ROLE, (), False),  # removing permissions never widens them
        ("update", "aws:iam/policy:Policy", ("policy",), True),
        ("update", "aws:iam/rolePolicy:RolePolicy", ('["policy"]',), True),
        ("create", "aws:iam/rolePolicyAttachment:RolePolicyAttachment", (), True),
        ("replace", "aws:lambda/permission:Permission", ("sourceArn",), True),
        ("update", "aws:s3/bucketPolicy:BucketPolicy", ("policy",), True),
        ("update", "aws:ecr/repositoryPolicy:RepositoryPolicy", ("policy",), True),
        ("same", "aws:iam/policy:Policy", (), False),
        # a function given another role runs with that role's permissions
        ("update", FUNCTION, ("role",), True),
        ("update", FUNCTION, ("imageUri", "environment"), False),  # a release
        ("create", FUNCTION, (), False),  # a new function exposes nothing that existed
        # policies set inline on the resource they guard (the alert key and topic do this)
        ("update", "aws:kms/key:Key", ("policy",), True),
        ("update", "aws:kms/key:Key", ("description",), False),
        ("create", "aws:kms/key:Key", (), False),
        ("update", "aws:sns/topic:Topic", ("policy",), True),
        ("update", "aws:sns/topicPolicy:TopicPolicy", ("policy",), True),
        ("update", "aws:sns/topicPolicy:TopicPolicy", ("arn",), True),
        ("update", "aws:sqs/queue:Queue", ("policy",), True),
        # taking a protection away
        ("delete", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", (), True),
        ("update", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", ("blockPublicPolicy",), True),
        ("delete", "aws:s3/bucketPolicy:BucketPolicy", (), True),  # the deny-plain-HTTP policy goes
        ("delete", "aws:ecr/repositoryPolicy:RepositoryPolicy", (), True),
        ("delete", "aws:sns/topicPolicy:TopicPolicy", (), True),
        ("delete", "aws:kms/keyPolicy:KeyPolicy", (), True),
        ("delete", "aws:iam/rolePolicy:RolePolicy", (), False),  # removes a grant
        ("delete", "aws:kms/key:Key", (), False),
        # the GitHub environment's protection rules are CI's approval gate
        ("update", ENVIRONMENT, ("reviewers[0].users",), True),
        ("update", ENVIRONMENT, ("preventSelfReview",), True),
        ("update", ENVIRONMENT, ("canAdminsBypass",), True),
        ("update", ENVIRONMENT, ("deploymentBranchPolicy.protectedBranches",), True),
        ("update", ENVIRONMENT, ("waitTimer",), True),
        ("create", ENVIRONMENT, (), False),
        ("delete", ENVIRONMENT, (), True),
        ("update", DEPLOYMENT_POLICY, ("branchPattern",), True),
        ("replace", DEPLOYMENT_POLICY, ("tagPattern",), True),
        ("delete", DEPLOYMENT_POLICY, (), True),
    ],
)
def test_what_counts_as_widening_iam(
    op: str, type_token: str, changed: tuple[str, ...], widens: bool
) -> None:
    assert widens_iam(step("prod", op, type_token, "x", changed=changed)) is widens


def test_the_sensitive_lists_name_real_type_tokens() -> None:
    # every key must be a full token "pkg:module/resource:Resource", or the check silently never matches
    for token in [*IAM_SENSITIVE, *PROTECTIVE]:
        pkg, module, resource = token.split(":")
        assert pkg in ("aws", "github") and "/" in module and resource[0].isupper(), token
        assert module.split("/")[1].lower() == resource.lower(), token


def test_a_deleted_protection_is_listed_for_review() -> None:
    block = step("prod", "delete", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "site-block")
    role = step("prod", "delete", ROLE, "old-role")
    gate = iam_gate(_preview(block, role), approved=False)
    assert not gate.ok
    assert gate.items == (f"delete {block.urn} (removes a protection)",)


def test_iam_gate_refuses_then_passes_with_approval() -> None:
    preview = _preview(
        step("prod", "create", "aws:lambda/permission:Permission", "invoke"),
        step("prod", "update", ROLE, "role", changed=["tags"]),
    )
    refused = iam_gate(preview, approved=False)
    assert not refused.ok
    assert refused.items == ("create urn:pulumi:prod::stageline::aws:lambda/permission:Permission::invoke",)
    approved = iam_gate(preview, approved=True)
    assert approved.ok and approved.override == "--approve-iam"


def test_replace_gate_blocks_stateful_and_protected_and_honours_allowed_urns() -> None:
    bucket = step("prod", "replace", "aws:s3/bucketV2:BucketV2", "site", changed=["bucket"])
    protected_fn = step("prod", "delete", "aws:lambda/function:Function", "api", protected=True)
    harmless = step("prod", "replace", "aws:lambda/alias:Alias", "live", changed=["name"])
    gate = replace_gate(_preview(bucket, protected_fn, harmless), allowed=())
    assert not gate.ok
    assert gate.items == (f"replace {bucket.urn} (changed: bucket)", f"delete {protected_fn.urn}")
    assert gate.detail.startswith("the preview would delete/replace 2 protected or stateful resource(s)")
    partly = replace_gate(_preview(bucket, protected_fn), allowed=[bucket.urn])
    assert not partly.ok and partly.items == (f"delete {protected_fn.urn}",)
    allowed = replace_gate(_preview(bucket, protected_fn), allowed=[bucket.urn, protected_fn.urn])
    assert allowed.ok and allowed.override == "--allow-replace"
    assert replace_gate(_preview(harmless), allowed=()).ok


def test_drift_gate_refuses_drift_and_a_failed_check_unless_allowed() -> None:
    drifted = DriftReport(
        stack="prod", resources=(ResourceDrift(urn="urn:x", type=ROLE, name="r", kind="delete"),)
    )
    gate = drift_gate(drifted, allow=False)
    assert not gate.ok and gate.items == ("urn:x (delete)",)
    assert "python -m automation drift prod" in gate.detail
    assert drift_gate(drifted, allow=True).override == "--allow-drift"
    broken = DriftReport(stack="prod", error="AccessDenied: iam:GetRole")
    assert not drift_gate(broken, allow=False).ok
    assert drift_gate(broken, allow=False).detail.startswith(
        "the drift check failed: AccessDenied: iam:GetRole"
    )
    assert drift_gate(DriftReport(stack="prod"), allow=False).ok


def test_pending_gate_names_the_operations_and_the_fix() -> None:
    gate = pending_gate([PendingOperation(urn="urn:y", type=ROLE, kind="creating")], "prod")
    assert not gate.ok and gate.items == ("creating urn:y",)
    assert "python -m automation up prod --clear-pending" in gate.detail
    assert pending_gate([], "prod").ok


# Inputs that hand out access or guard it, wherever the program sets them.
_GRANTING_INPUTS = frozenset(
    {"policy", "assumeRolePolicy", "inlinePolicies", "managedPolicyArns", "role"}
    | {"reviewers", "preventSelfReview", "canAdminsBypass", "deploymentBranchPolicy"}  # GitHub environments
)


def test_every_access_granting_input_of_the_program_is_watched() -> None:
    """The program's own resources: a policy, trust or role set inline on any of them (the alert
    key's policy, the topic policy, a function's role) must be something the IAM gate looks at."""
    from infra.simulate import simulate_stack_file

    root = Path(__file__).resolve().parents[3]
    unwatched = set()
    seen = set()
    for stack in ("dev", "staging", "prod"):
        for resource in simulate_stack_file(root, stack).resources:
            granting = _GRANTING_INPUTS & set(resource.inputs)
            if resource.type in ("aws:ecr/lifecyclePolicy:LifecyclePolicy",) or not granting:
                continue  # an image expiry rule grants nothing
            seen.add(resource.type)
            sensitive = IAM_SENSITIVE.get(resource.type, frozenset())
            unwatched |= {
                f"{resource.type} {k}" for k in granting if sensitive is not None and k not in sensitive
            }
    assert unwatched == set()
    assert {"aws:kms/key:Key", "github:index/repositoryEnvironment:RepositoryEnvironment"} <= seen
