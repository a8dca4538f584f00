"""The gates a stage passes before promotion changes anything. Pure functions over engine data.

A gate either passes, passes because the operator overrode it (the override is recorded), or
refuses. A refused gate stops the promotion with exit 3 and nothing changed.

IAM widening follows CDK's "security-broadening" idea at resource granularity: a new or changed
resource that grants permissions or trust needs `--approve-iam`. `IAM_SENSITIVE` is the one list of
what counts; for each type it names the properties whose change matters (None: any change does),
so a tag-only update of a role does not stop a release. `PROTECTIVE` lists the resources whose
*deletion* widens access: a public access block, a resource policy (it may hold the Deny statements
that keep access narrow, and without it the service's default policy applies), the GitHub
environment's protection rules (its reviewers are the CI approval gate itself).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from automation.engine.model import DriftReport, PendingOperation, PreviewSummary, ResourceStep, StackLock

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
    # what runs with which identity: a function given another role gets that role's permissions
    "aws:lambda/function:Function": frozenset({"role"}),
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
    "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock": None,
    "aws:s3/bucketAclV2:BucketAclV2": None,
    "aws:ecr/repositoryPolicy:RepositoryPolicy": frozenset({"policy", "repository"}),
    "aws:ecr/registryPolicy:RegistryPolicy": None,
    # a key's policy is set inline on the key (infra/observability.py) or as its own resource
    "aws:kms/key:Key": frozenset({"policy", "bypassPolicyLockoutSafetyCheck"}),
    "aws:kms/keyPolicy:KeyPolicy": None,
    "aws:kms/grant:Grant": None,
    "aws:sns/topic:Topic": frozenset({"policy"}),
    "aws:sns/topicPolicy:TopicPolicy": None,
    "aws:sqs/queue:Queue": frozenset({"policy"}),
    "aws:sqs/queuePolicy:QueuePolicy": None,
    "aws:secretsmanager/secretPolicy:SecretPolicy": None,
    # GitHub: the environment's protection rules are the approval gate of every CI deployment,
    # and its name is the OIDC subject the stage's deploy role trusts
    "github:index/repositoryEnvironment:RepositoryEnvironment": frozenset(
        {
            "environment",
            "reviewers",
            "preventSelfReview",
            "canAdminsBypass",
            "deploymentBranchPolicy",
            "waitTimer",
        }
    ),
    "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy": None,
    "github:index/branchProtection:BranchProtection": None,
}
# Deleting one of these takes a protection away rather than a grant.
PROTECTIVE: frozenset[str] = frozenset(
    {
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock",
        "aws:s3/bucketPolicy:BucketPolicy",  # the program's bucket policies deny plain HTTP
        "aws:ecr/repositoryPolicy:RepositoryPolicy",
        "aws:ecr/registryPolicy:RegistryPolicy",
        "aws:kms/keyPolicy:KeyPolicy",  # without it the key's default policy (the whole account) applies
        "aws:sns/topicPolicy:TopicPolicy",
        "aws:sqs/queuePolicy:QueuePolicy",
        "aws:secretsmanager/secretPolicy:SecretPolicy",
        # a job naming a deleted environment re-creates it, unprotected
        "github:index/repositoryEnvironment:RepositoryEnvironment",
        "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy",
        "github:index/branchProtection:BranchProtection",
    }
)
# Types that are not grants themselves but carry one in a property: creating one exposes nothing that
# existed, changing that property does.
_CARRIERS = frozenset(
    {
        "aws:lambda/function:Function",
        "aws:kms/key:Key",
        "aws:sns/topic:Topic",
        "aws:sqs/queue:Queue",
        "github:index/repositoryEnvironment:RepositoryEnvironment",
    }
)
# Ops that can add permissions. A delete only takes them away, unless the resource is PROTECTIVE.
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
    """Whether this planned step may grant new permissions or trust, or take a protection away."""
    if step.op == "delete":
        return step.type in PROTECTIVE
    if step.op not in _WIDENING_OPS or step.type not in IAM_SENSITIVE:
        return False
    if step.type in _CARRIERS:
        if step.op in ("create", "import"):  # a new resource exposes nothing that existed
            return False
    elif step.op in ("create", "replace", "import"):  # a new grant
        return True
    sensitive = IAM_SENSITIVE[step.type]
    if sensitive is None or not step.changed:
        # No diff detail from the engine: assume the worst.
        return True
    return any(_top(path) in sensitive for path in step.changed)


def iam_changes(preview: PreviewSummary) -> list[ResourceStep]:
    return [s for s in preview.steps if widens_iam(s)]


def pending_gate(
    operations: Sequence[PendingOperation], stack: str, stale_locks: Sequence[StackLock] = ()
) -> Gate:
    """Refuse on pending operations, or on a lock whose Pulumi process is gone (a killed update): the
    stage's update would fail on that lock."""
    if not operations and not stale_locks:
        return Gate("pending", True, "no pending operations")
    problems = []
    if stale_locks:
        problems.append(f"{len(stale_locks)} stale lock(s) left by a killed update (its process is gone)")
    if operations:
        problems.append(f"{len(operations)} pending operation(s) left by an interrupted update")
    return Gate(
        "pending",
        False,
        f"{' and '.join(problems)}; check the resources named in the cloud, clear them (`python -m "
        f"automation up {stack} --clear-pending` removes the stale lock and the pending operations before "
        "its update), then promote again",
        items=tuple(f"stale lock {lock.describe()}" for lock in stale_locks)
        + tuple(f"{op.kind} {op.urn}" for op in operations),
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


def _iam_item(step: ResourceStep) -> str:
    if step.op == "delete":
        return f"delete {step.urn} (removes a protection)"
    if step.changed and step.op in ("update", "replace"):
        return f"{step.op} {step.urn} ({', '.join(step.changed)})"
    return f"{step.op} {step.urn}"


def iam_gate(preview: PreviewSummary, *, approved: bool) -> Gate:
    changes = iam_changes(preview)
    if not changes:
        return Gate("iam", True, "no IAM-widening change")
    items = tuple(_iam_item(s) for s in changes)
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
