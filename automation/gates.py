"""The gates a stage passes before promotion changes anything. Pure functions over engine data.

A gate either passes, passes because the operator overrode it (the override is recorded), or
refuses. A refused gate stops the promotion with exit 3 and nothing changed.

IAM widening follows CDK's "security-broadening" idea at resource granularity: a new or changed
resource that grants permissions or trust needs `--approve-iam`. `IAM_SENSITIVE` is the one list of
what counts; for each type it names the properties whose change matters (None: any change does),
so a tag-only update of a role does not stop a release.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from automation.stacks import DriftReport, PendingOperation, PreviewSummary, ResourceStep

# type token -> top-level properties whose change grants permissions or trust (None: any change)
IAM_SENSITIVE: Mapping[str, frozenset[str] | None] = {
    # identities and their trust
    "aws:iam/role:Role": frozenset(
        {"assumeRolePolicy", "inlinePolicies", "managedPolicyArns", "permissionsBoundary"}
    ),
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": frozenset(
        {"url", "clientIdLists", "thumbprintLists"}
    ),
    "aws:iam/user:User": None,
    "aws:iam/group:Group": None,
    "aws:iam/accessKey:AccessKey": None,
    "aws:iam/instanceProfile:InstanceProfile": frozenset({"role"}),
    # identity policies and their attachments
    "aws:iam/policy:Policy": frozenset({"policy"}),
    "aws:iam/rolePolicy:RolePolicy": frozenset({"policy", "role"}),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": None,
    "aws:iam/rolePoliciesExclusive:RolePoliciesExclusive": None,
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive": None,
    "aws:iam/policyAttachment:PolicyAttachment": None,
    "aws:iam/userPolicy:UserPolicy": None,
    "aws:iam/userPolicyAttachment:UserPolicyAttachment": None,
    "aws:iam/groupPolicy:GroupPolicy": None,
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment": None,
    # resource policies: who else may call or read
    "aws:lambda/permission:Permission": None,
    "aws:lambda/functionUrl:FunctionUrl": frozenset({"authorizationType", "cors"}),
    "aws:lambda/layerVersionPermission:LayerVersionPermission": None,
    "aws:s3/bucketPolicy:BucketPolicy": frozenset({"policy", "bucket"}),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": None,
    "aws:ecr/repositoryPolicy:RepositoryPolicy": frozenset({"policy", "repository"}),
    "aws:ecr/registryPolicy:RegistryPolicy": None,
    "aws:kms/keyPolicy:KeyPolicy": None,
    "aws:kms/grant:Grant": None,
    "aws:sns/topicPolicy:TopicPolicy": frozenset({"policy"}),
    "aws:sqs/queuePolicy:QueuePolicy": frozenset({"policy"}),
    "aws:secretsmanager/secretPolicy:SecretPolicy": frozenset({"policy"}),
}
# Ops that can add permissions. A delete only takes them away.
_WIDENING_OPS = frozenset({"create", "update", "replace", "import"})
_TOP = re.compile(r'^\["?([^"\]]+)"?\]|^([^.\[]+)')


@dataclass(frozen=True)
class Gate:
    name: str  # "approval", "source", "pending", "drift", "replace", "iam", "pre"
    ok: bool
    detail: str  # one line: why it passed or refused
    items: tuple[str, ...] = ()  # the URNs / alarms / operations behind a refusal or an override
    override: str | None = None  # the flag that let it pass ("--allow-drift" …)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "items": list(self.items),
            "override": self.override,
        }
        out.update(self.extra)
        return out


def _top(path: str) -> str:
    m = _TOP.match(path)
    return (m.group(1) or m.group(2)) if m else path


def widens_iam(step: ResourceStep) -> bool:
    """Whether this planned step may grant new permissions or trust."""
    if step.op not in _WIDENING_OPS or step.type not in IAM_SENSITIVE:
        return False
    if step.op in ("create", "replace", "import"):
        return True
    sensitive = IAM_SENSITIVE[step.type]
    if sensitive is None or not step.changed:
        # No diff detail from the engine: assume the worst.
        return True
    return any(_top(path) in sensitive for path in step.changed)


def iam_changes(preview: PreviewSummary) -> list[ResourceStep]:
    return [s for s in preview.steps if widens_iam(s)]


def pending_gate(operations: Sequence[PendingOperation], stack: str) -> Gate:
    if not operations:
        return Gate("pending", True, "no pending operations")
    return Gate(
        "pending",
        False,
        f"{len(operations)} pending operation(s) left by an interrupted update; check the resources named "
        f"in the cloud, clear them (`python -m automation up {stack} --clear-pending` drops them before its "
        "update), then promote again",
        items=tuple(f"{op.kind} {op.urn}" for op in operations),
    )


def drift_gate(report: DriftReport, *, allow: bool) -> Gate:
    if report.error:
        detail = f"the drift check failed: {report.error}"
        if allow:
            return Gate("drift", True, detail + " (allowed by --allow-drift)", override="--allow-drift")
        return Gate("drift", False, detail + "; pass --allow-drift to promote without it")
    if not report.drifted:
        return Gate("drift", True, "no drift")
    items = tuple(
        f"{r.urn}" + (f" ({', '.join(p.path for p in r.properties)})" if r.properties else f" ({r.kind})")
        for r in report.resources
    )
    n = len(report.resources)
    if allow:
        return Gate(
            "drift",
            True,
            f"{n} resource(s) drifted; promoting anyway (--allow-drift): up will put "
            "them back as the code says",
            items=items,
            override="--allow-drift",
        )
    return Gate(
        "drift",
        False,
        f"{n} resource(s) drifted from the recorded state; run `python -m automation drift {report.stack}` "
        "for the details, or pass --allow-drift to let this up overwrite the drift",
        items=items,
    )


def replace_gate(preview: PreviewSummary, allowed: Iterable[str]) -> Gate:
    allow = set(allowed)
    dangerous = list(preview.dangerous)
    if not dangerous:
        return Gate("replace", True, "no replace or delete of a protected or stateful resource")
    blocked = [s for s in dangerous if s.urn not in allow]
    if not blocked:
        return Gate(
            "replace",
            True,
            f"{len(dangerous)} replace/delete of stateful resources allowed by --allow-replace",
            items=tuple(f"{s.op} {s.urn}" for s in dangerous),
            override="--allow-replace",
        )
    return Gate(
        "replace",
        False,
        f"the preview would {'/'.join(sorted({s.op for s in blocked}))} {len(blocked)} protected or stateful "
        "resource(s), losing their data; pass --allow-replace URN for each one you mean",
        items=tuple(
            f"{s.op} {s.urn}" + (f" (changed: {', '.join(s.changed)})" if s.changed else "") for s in blocked
        ),
    )


def iam_gate(preview: PreviewSummary, *, approved: bool) -> Gate:
    changes = iam_changes(preview)
    if not changes:
        return Gate("iam", True, "no IAM-widening change")
    items = tuple(
        f"{s.op} {s.urn}" + (f" ({', '.join(s.changed)})" if s.changed and s.op == "update" else "")
        for s in changes
    )
    if approved:
        return Gate(
            "iam",
            True,
            f"{len(changes)} IAM-widening change(s) approved (--approve-iam)",
            items=items,
            override="--approve-iam",
        )
    return Gate(
        "iam",
        False,
        f"{len(changes)} change(s) may widen IAM permissions or trust; review them and pass --approve-iam",
        items=items,
    )


def refusal(gate: Gate, stack: str) -> str:
    """The one-line reason a refused gate prints (details follow on their own lines)."""
    return f"{stack}: {gate.name} gate refused: {gate.detail}"
