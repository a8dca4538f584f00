"""IAM breadth: the one judgement of how far a policy statement reaches.

The guardrail rules (`policy/rules.py`: `iam-no-admin`, `iam-no-passrole-star`, `iam-no-iam-wildcard`)
and the tests that hold the program's own documents to a stricter standard (`tests/infra/`) both ask
the questions here; neither has a judgement of its own.

Breadth is decided by matching a statement's patterns against probes, with IAM's own glob semantics
(`*` and `?`, `*` spanning `:` and `/`, actions case-insensitive), never by comparing strings:
"arn:*", "arn:aws:*:*:*:*" and "*" are equally wide, as are "s3:*" and "s*:*" for S3. The probes
stand for what a stack must not reach: every action of a service or of every service, every resource
of an account or of a service, the account's administrator roles, other stacks' roles and policies.
Judging a new kind of breadth (a wildcard in another ARN segment, actions that administer the account
or the organization) is a new probe or question here, and every caller sees it.

Plain data in, plain answers out; no Pulumi SDK, so the driver and the policy pack load it cheaply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Protocol

Statement = Mapping[str, Any]

# AWS managed policies that hand over an account.
FORBIDDEN_MANAGED_POLICIES = ("AdministratorAccess", "PowerUserAccess", "IAMFullAccess")

# Actions of several services: a pattern covering all of them covers every service.
ACTION_PROBES = (
    "iam:CreateUser",
    "ec2:RunInstances",
    "s3:GetObject",
    "sts:AssumeRole",
    "kms:Decrypt",
    "organizations:LeaveOrganization",
)
# Names of actions of one service: a pattern covering all of them covers the whole service.
_ACTION_NAME_PROBES = ("CreateProbe", "DeleteProbe", "GetProbe", "ListProbe", "PutProbe", "UpdateProbe")
# Enough of IAM that a pattern covering all of them is iam:*.
IAM_PROBES = (
    "iam:CreateUser",
    "iam:AttachRolePolicy",
    "iam:DeleteRole",
    "iam:UpdateAccountPasswordPolicy",
    "iam:CreateOpenIDConnectProvider",
    "iam:PassRole",
)
# Actions that give an identity more rights than it has (policy writes, credentials, trust), with the
# kind of identity they act on.
ESCALATION_ACTIONS: Mapping[str, str] = {
    "iam:AttachRolePolicy": "role",
    "iam:PutRolePolicy": "role",
    "iam:UpdateAssumeRolePolicy": "role",
    "iam:PutRolePermissionsBoundary": "role",
    "iam:DeleteRolePermissionsBoundary": "role",
    "iam:CreatePolicyVersion": "policy",
    "iam:SetDefaultPolicyVersion": "policy",
    "iam:AttachUserPolicy": "user",
    "iam:PutUserPolicy": "user",
    "iam:CreateAccessKey": "user",
    "iam:CreateLoginProfile": "user",
    "iam:UpdateLoginProfile": "user",
    "iam:AttachGroupPolicy": "group",
    "iam:PutGroupPolicy": "group",
    "iam:AddUserToGroup": "group",
}

FOREIGN_ACCOUNT = "999999999999"  # stands for "an account this stack does not name"
PROBE_REGION = "us-east-1"  # stands for "a region this stack does not name"
_PROBE_NAME = "zz-not-a-stack-resource"
_ACCOUNT_RE = re.compile(r"^arn:[^:]*:[^:]*:[^:]*:(\d{12}):")
_PARTITION_RE = re.compile(r"^arn:(aws[a-z-]*):")
_REGION_RE = re.compile(r"^arn:[^:]*:[^:]*:([a-z]{2}(?:-[a-z]+)+-\d):")
IAM_ARN_RE = re.compile(r"^arn:[^:]*:iam::[^:]*:(role|policy|user|group)/(.*)$")


class Owner(Protocol):
    """Whose resources a statement may reach: the stack's own are named `<project>-<stack>-…`."""

    @property
    def project(self) -> str: ...

    @property
    def stack(self) -> str: ...

    @property
    def prefix(self) -> str: ...


# --- reading statements -------------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def statements(document: Mapping[str, Any] | None) -> list[Statement]:
    if document is None:
        return []
    return [s for s in as_list(document.get("Statement")) if isinstance(s, Mapping)]


def allows(st: Statement) -> bool:
    return str(st.get("Effect", "")).lower() == "allow"


def resource_patterns(st: Statement) -> list[str]:
    return [str(r) for r in as_list(st.get("Resource"))]


@cache
def glob(pattern: str) -> re.Pattern[str]:
    """IAM's wildcard matching (`*`, `?`), case-insensitive as IAM actions are."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE)


def action_allowed(st: Statement, action: str) -> bool:
    """Whether the statement's Action (or NotAction) covers `action`."""
    if "NotAction" in st:
        return not any(glob(str(p)).match(action) for p in as_list(st["NotAction"]))
    return any(glob(str(p)).match(action) for p in as_list(st.get("Action")))


def covers(patterns: Sequence[str], arn: str) -> str | None:
    """The first pattern matching `arn`, if any."""
    return next((p for p in patterns if glob(p).match(arn)), None)


def scopes(patterns: Sequence[str]) -> list[tuple[str, str]]:
    """(partition, account) pairs to probe: those the patterns name, and a foreign account."""
    partitions = {m.group(1) for p in patterns if (m := _PARTITION_RE.match(p))} or {"aws"}
    accounts = {m.group(1) for p in patterns if (m := _ACCOUNT_RE.match(p))} | {FOREIGN_ACCOUNT}
    return sorted((p, a) for p in partitions for a in accounts)


def is_pattern(action: str) -> bool:
    """Whether an action is a pattern (`iam:Put*`) rather than one named action."""
    return "*" in action or "?" in action


# --- breadth ------------------------------------------------------------------------------------


def every_action(st: Statement) -> bool:
    """Whether the statement allows every action of every service (NotAction: everything else)."""
    if "NotAction" in st:
        return True
    return all(action_allowed(st, action) for action in ACTION_PROBES)


def every_action_of(action: str) -> str | None:
    """What an action pattern covers wholly: "every service", a service (`s3:*`), or None."""
    if all(glob(action).match(probe) for probe in ACTION_PROBES):
        return "every service"
    service = action.partition(":")[0]
    if all(glob(action).match(f"{service}:{name}") for name in _ACTION_NAME_PROBES):
        return service
    return None


def _account_probes(partition: str, account: str) -> tuple[str, ...]:
    """One resource of several services in one account: a pattern covering all of them covers the account."""
    return (
        f"arn:{partition}:iam::{account}:role/OrganizationAccountAccessRole",
        f"arn:{partition}:iam::{account}:user/admin",
        f"arn:{partition}:ec2:us-east-1:{account}:instance/i-0123456789abcdef0",
        f"arn:{partition}:dynamodb:ap-southeast-2:{account}:table/orders",
        f"arn:{partition}:kms:eu-central-1:{account}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        f"arn:{partition}:secretsmanager:us-west-2:{account}:secret:prod/db-AbCdEf",
    )


def every_resource(st: Statement) -> str | None:
    """How the statement reaches every resource of an account ("*", a pattern, NotResource), or None."""
    if "NotResource" in st:
        return "NotResource"
    patterns = resource_patterns(st)
    if "*" in patterns:
        return "*"
    for partition, account in scopes(patterns):
        probes = _account_probes(partition, account)
        if all(covers(patterns, arn) for arn in probes):
            return covers(patterns, probes[0])
    return None


def every_resource_of(resource: str, service: str) -> bool:
    """Whether a resource pattern reaches every resource of `service` (`*`, `arn:aws:s3:::*`,
    `arn:aws:logs:eu-west-1:123456789012:*` …): it matches resources no stack would name."""
    if every_resource({"Resource": resource}) is not None:
        return True
    named = _REGION_RE.match(resource)
    regions = {PROBE_REGION, named.group(1)} if named else {PROBE_REGION}
    for partition, account in scopes([resource]):
        # Global (S3: no region, no account), account-wide (IAM, CloudFront) and regional shapes.
        places = [("", ""), ("", account), *((region, account) for region in sorted(regions))]
        for region, owner_account in places:
            for name in (_PROBE_NAME, f"{_PROBE_NAME}/{_PROBE_NAME}"):
                if covers([resource], f"arn:{partition}:{service}:{region}:{owner_account}:{name}"):
                    return True
    return False


def _outside_roles(owner: Owner, partition: str, account: str) -> tuple[str, ...]:
    """Roles a stack's policies must not reach: the account's admin roles and other stages' roles."""
    iam = f"arn:{partition}:iam::{account}"
    return (
        f"{iam}:role/OrganizationAccountAccessRole",
        f"{iam}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_AdministratorAccess_0123456789abcdef",
        f"{iam}:role/{owner.project}-not-{owner.stack}-deploy",
    )


def _outside_identities(owner: Owner, kind: str, partition: str, account: str) -> tuple[str, ...]:
    iam = f"arn:{partition}:iam::{account}"
    if kind == "role":
        return _outside_roles(owner, partition, account)
    if kind == "policy":
        return (f"{iam}:policy/{owner.project}-not-{owner.stack}-policy", f"{iam}:policy/TeamAdmin")
    if kind == "user":
        return (f"{iam}:user/alice",)
    return (f"{iam}:group/Admins",)


def _names_foreign(pattern: str, kind: str, owner: Owner) -> bool:
    """Whether an IAM ARN pattern of `kind` names identities that are not the stack's own (`<prefix>-…`)."""
    match = IAM_ARN_RE.match(pattern)
    return match is not None and match.group(1) == kind and not match.group(2).startswith(f"{owner.prefix}-")


def passrole_beyond(st: Statement, owner: Owner) -> tuple[str, str] | None:
    """(pattern, role) when the statement lets iam:PassRole reach a role outside the stack's own:
    the pattern that reaches it and the role's name, or ("NotResource", "") for NotResource."""
    if not action_allowed(st, "iam:PassRole"):
        return None
    if "NotResource" in st:
        return ("NotResource", "")
    patterns = resource_patterns(st)
    for partition, account in scopes(patterns):
        for arn in _outside_roles(owner, partition, account):
            pattern = covers(patterns, arn)
            if pattern is not None:
                return (pattern, arn.rsplit("/", 1)[-1])
    return None


def every_iam_action(st: Statement, owner: Owner) -> bool:
    """Whether the statement allows all of IAM (iam:*) on IAM resources or NotResource."""
    if not all(action_allowed(st, a) for a in IAM_PROBES):
        return False
    if "NotResource" in st:
        return True
    patterns = resource_patterns(st)
    own_role = [f"arn:{p}:iam::{a}:role/{owner.prefix}-probe" for p, a in scopes(patterns)]
    return any(IAM_ARN_RE.match(p) for p in patterns) or any(covers(patterns, r) for r in own_role)


def escalations(st: Statement, owner: Owner) -> list[tuple[str, str]]:
    """(action, pattern) for each privilege-escalation action the statement allows on identities
    outside the stack's own (`<prefix>-…`); the pattern is "NotResource" for NotResource."""
    patterns = resource_patterns(st)
    found: list[tuple[str, str]] = []
    for action in ESCALATION_ACTIONS:
        if not action_allowed(st, action):
            continue
        kind = ESCALATION_ACTIONS[action]
        targets = [arn for p, a in scopes(patterns) for arn in _outside_identities(owner, kind, p, a)]
        pattern = (
            "NotResource"
            if "NotResource" in st
            else next((m for arn in targets if (m := covers(patterns, arn)) is not None), None)
            or next((p for p in patterns if _names_foreign(p, kind, owner)), None)
        )
        if pattern is not None:
            found.append((action, pattern))
    return found


# --- reach: how far a resource pattern goes beyond the stack's own -----------------------------

# Services whose actions administer the account or the organization itself: a service's grant may
# never name one (nor may any document the program writes, except the deploy role's IAM on its own
# roles, which the IAM rules judge). Judged by probes, so `organizations:*`, `org*:Leave*`, `*:*`
# and `account:Put*` are all found.
ADMINISTRATION_PROBES = (
    "organizations:LeaveOrganization",
    "organizations:CreateAccount",
    "organizations:AttachPolicy",
    "account:CloseAccount",
    "account:PutAlternateContact",
    "account:EnableRegion",
    "sso:CreatePermissionSet",
    "identitystore:CreateUser",
    "controltower:DisableControl",
    "billing:UpdateBillingPreferences",
    "aws-portal:ModifyAccount",
    "cloudtrail:StopLogging",
    "cloudtrail:DeleteTrail",
    "config:DeleteConfigurationRecorder",
    "guardduty:DeleteDetector",
    "securityhub:DisableSecurityHub",
)
# IAM and STS: what a service's grant may never name (it would rewrite permissions or become another
# role, and the permissions boundary copies grants). The program's own documents are judged by the
# IAM rules instead, which allow the deploy role IAM on the stack's own roles.
IDENTITY_PROBES = (*IAM_PROBES, "sts:AssumeRole", "sts:GetFederationToken", "sts:AssumeRoleWithWebIdentity")

# Resource shapes with generated IDs that hold configuration, no data, and cannot be named or
# tagged per stack (the program's scoping rule 3 in infra/policies.py): reaching them is not reach.
CONFIGURATION_ID_SHAPES = (
    "arn:*:cloudfront::*:origin-access-control/*",
    "arn:*:cloudfront::*:response-headers-policy/*",
    "arn:*:cloudfront::*:cache-policy/*",
    "arn:*:apigateway:*::/apis",
    "arn:*:apigateway:*::/apis/*",
)
ENVIRONMENT_TAG_KEYS = ("aws:ResourceTag/environment", "aws:RequestTag/environment")
# Services whose names end at "/" (a bucket's objects, a table's indexes and streams) or ":" (a log
# group's streams, a function's qualifiers); every other service's names may hold "/" (secrets,
# parameters, roles with paths), so only ":" ends them.
_NAME_ENDS = {"s3": "/:", "dynamodb": "/:", "kinesis": "/:"}
_ARN_PARTS_RE = re.compile(r"^arn:([^:]*):([^:]*):([^:]*):([^:]*):(.*)$", re.DOTALL)
_RANDOM_SUFFIX = "-??????"  # Secrets Manager appends six random characters to a secret's ARN


def _wild(text: str) -> bool:
    return "*" in text or "?" in text


def administers(action: str, *, identity: bool = False) -> str | None:
    """The action administering the account or organization (a probe) that an action pattern covers,
    if any; `identity`: IAM and STS count too."""
    probes = (*ADMINISTRATION_PROBES, *IDENTITY_PROBES) if identity else ADMINISTRATION_PROBES
    return next((probe for probe in probes if glob(action).match(probe)), None)


def administration(st: Statement) -> str | None:
    """The account or organization administration action an Allow statement covers (NotAction too)."""
    if not allows(st):
        return None
    return next((probe for probe in ADMINISTRATION_PROBES if action_allowed(st, probe)), None)


def tag_fenced(st: Statement, owner: Owner) -> bool:
    """Whether every resource the statement reaches must carry this stack's environment tag."""
    condition = st.get("Condition")
    clauses = condition.get("StringEquals") if isinstance(condition, Mapping) else None
    if not isinstance(clauses, Mapping):
        return False
    return any(
        str(key).lower() == tag.lower() and as_list(value) == [owner.stack]
        for key, value in clauses.items()
        for tag in ENVIRONMENT_TAG_KEYS
    )


def _owned(name: str, prefixes: Sequence[str]) -> bool:
    """Whether a name (or its last path segment: `/aws/lambda/<prefix>-…`) starts with an owned prefix."""
    last = name.rsplit("/", 1)[-1]
    return any(part.startswith(f"{prefix}-") for part in (name, last) for prefix in prefixes)


def reach_beyond(pattern: str, owner: Owner, also: Sequence[str] = ()) -> str | None:
    """Why a resource pattern reaches resources that are not the stack's own, or None when it does not.

    A pattern stays within the stack when its wildcards come only after a name the stack owns
    (`<prefix>-…`, or one of the `also` prefixes: the stage it receives releases from), or after a
    complete resource name (a bucket's objects, a table's indexes, a log group's streams, a secret's
    random suffix). A wildcard in the partition, service, region or account, or before the name is
    fixed (`key/*`, `function:*`, `arn:aws:s3:::*`), reaches every such resource of the account.
    """
    if _wild(pattern) and every_resource({"Resource": pattern}) is not None:
        return "every resource of the account"
    match = _ARN_PARTS_RE.match(pattern)
    if match is None:
        return "every resource" if _wild(pattern) else None
    partition, service, region, account, resource = match.groups()
    if not _wild(pattern):
        return None
    if any(glob(shape).match(pattern) for shape in CONFIGURATION_ID_SHAPES):
        return None
    if _wild(partition) or _wild(service):
        return "a pattern in the partition or service"
    if (
        resource.endswith(_RANDOM_SUFFIX)
        and not _wild(resource[: -len(_RANDOM_SUFFIX)])
        and service == ("secretsmanager")
    ):
        resource = resource[: -len(_RANDOM_SUFFIX)]
    cut = min((i for i, c in enumerate(resource) if c in "*?"), default=len(resource))
    literal = resource[:cut]
    typed = re.match(r"^[A-Za-z0-9-]+[/:]", literal) if service not in ("s3", "sns", "sqs") else None
    name = literal[typed.end() :] if typed else literal
    if _owned(name, (owner.prefix, *also)):
        return None
    ends = _NAME_ENDS.get(service, ":")
    named = cut == len(resource) or (any(c in name[1:] for c in ends) and name[:1] not in ends)
    if not named:
        kind = typed.group(0)[:-1] if typed else "resource"
        return f"every {service} {kind} named {json_text(name + '*')}" if name else f"every {service} {kind}"
    if _wild(region) or _wild(account):
        return "a pattern in the region or account"
    return None


def json_text(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def star_only(actions: Sequence[str]) -> bool:
    """Whether every action is one AWS authorizes only on Resource "*" (named, not a pattern)."""
    from infra.policies import STAR_ONLY_ACTIONS

    return bool(actions) and all(a in STAR_ONLY_ACTIONS for a in actions)


def unscoped(st: Statement, owner: Owner, also: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(pattern, why) for each resource of an Allow statement that reaches beyond the stack's own.

    A statement fenced by the stack's environment tag reaches only what carries it; "*" with only
    the actions AWS authorizes nowhere else reaches nothing more.
    """
    if not allows(st):
        return []
    if "NotResource" in st:
        return [("NotResource", "every resource but those listed")]
    if tag_fenced(st, owner):
        return []
    actions = [str(a) for a in as_list(st.get("Action"))]
    found = []
    for pattern in resource_patterns(st):
        if pattern == "*" and "NotAction" not in st and star_only(actions):
            continue
        why = reach_beyond(pattern, owner, also)
        if why is not None:
            found.append((pattern, why))
    return found
