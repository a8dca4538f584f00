"""The gate rules themselves: pure functions over previews, drift reports and pending operations."""

from __future__ import annotations

import pytest

from automation.fake import step
from automation.gates import IAM_SENSITIVE, drift_gate, iam_gate, pending_gate, replace_gate, widens_iam
from automation.stacks import DriftReport, PendingOperation, PreviewSummary, ResourceDrift

ROLE = "aws:iam/role:Role"


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
        ("update", "aws:lambda/function:Function", ("role",), False),  # not a permission-bearing resource
        ("same", "aws:iam/policy:Policy", (), False),
    ],
)
def test_what_counts_as_widening_iam(
    op: str, type_token: str, changed: tuple[str, ...], widens: bool
) -> None:
    assert widens_iam(step("prod", op, type_token, "x", changed=changed)) is widens


def test_the_sensitive_list_names_real_type_tokens() -> None:
    # every key must be a full token "pkg:module/resource:Resource", or the check silently never matches
    for token in IAM_SENSITIVE:
        pkg, module, resource = token.split(":")
        assert pkg == "aws" and "/" in module and resource[0].isupper(), token


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
