"""Stageline's guardrail rules: the one implementation behind `automation check` and the CrossGuard pack.

A rule is a plain function. A *resource rule* looks at one resource — its type, its input
properties and the stack context (stack name, the stack's GitHub repository, whether the stack
protects stateful resources) — and returns messages. A *stack rule* needs the whole stack, because
in pulumi-aws 7 one bucket is several resources (encryption, public-access block and policy are
their own resources pointing at the bucket) and tags come from the provider; it returns
(resource, message) pairs.

Two adapters run the same rules and nothing else:

* `automation/check.py` renders each stack offline (`infra.simulate`) and builds a StackContext
  from the stack file and the rendered resources;
* `policy/__main__.py` turns each resource rule into a ResourceValidationPolicy (CrossGuard hands it
  the resource's inputs) and each stack rule into a StackValidationPolicy (CrossGuard hands it
  every resource's outputs).

Properties are seen as the engine sees them: camelCase names, JSON documents as strings,
numbers possibly as floats, secrets as `infra.config.MASK` ("[secret]"), and values not known
yet (during a preview) as strings containing "[unknown]". A rule never reports what it cannot
know: an unknown value is checked again when the engine knows it.

This module imports no Pulumi SDK, so the driver and the pack can both load it cheaply.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra import iam
from infra.config import ConfigError, Waiver

if TYPE_CHECKING:
    from infra.config import GitHubConfig, StackConfig

CRITICAL = "critical"
HIGH = "high"
MEDIUM = "medium"
LOW = "low"
SEVERITIES = (CRITICAL, HIGH, MEDIUM, LOW)

UNKNOWN = "[unknown]"

REQUIRED_TAGS = ("project", "environment", "managed-by")
MANAGED_BY = "pulumi"
# GitHub environments treated as production by name: prod, production, prod-eu, production-us …
# (`<env>-readonly` environments never are: they hold read-only jobs). The last stage of the
# promotion chain is production too, whatever its name (StackContext.production).
PRODUCTION_RE = re.compile(r"^prod(uction)?(-|$)", re.IGNORECASE)
READ_ONLY_SUFFIX = "-readonly"
LIVE_ALIAS = "live"
ANY_PROPERTY = ""

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
OIDC_AUDIENCE = "sts.amazonaws.com"
_AUD_KEY = f"{GITHUB_OIDC_HOST}:aud"
_SUB_KEY = f"{GITHUB_OIDC_HOST}:sub"

# --- resource type tokens (pulumi-aws 7, pulumi-github 6) -------------------------------------

ROLE = "aws:iam/role:Role"
IAM_POLICY = "aws:iam/policy:Policy"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
USER_POLICY = "aws:iam/userPolicy:UserPolicy"
GROUP_POLICY = "aws:iam/groupPolicy:GroupPolicy"
ATTACHMENT_TYPES = frozenset(
    {
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/userPolicyAttachment:UserPolicyAttachment",
        "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
        "aws:iam/policyAttachment:PolicyAttachment",
    }
)
BUCKET_TYPES = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
BUCKET_ENCRYPTION_TYPES = frozenset(
    {
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    }
)
BUCKET_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
FUNCTION = "aws:lambda/function:Function"
ALIAS = "aws:lambda/alias:Alias"
PERMISSION = "aws:lambda/permission:Permission"
EVENT_SOURCE_MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
FUNCTION_URL = "aws:lambda/functionUrl:FunctionUrl"
API_INTEGRATION = "aws:apigatewayv2/integration:Integration"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
TOPIC_SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
GITHUB_ENVIRONMENT = "github:index/repositoryEnvironment:RepositoryEnvironment"
GITHUB_DEPLOYMENT_POLICY = (
    "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy"
)
GITHUB_RULESET = "github:index/repositoryRuleset:RepositoryRuleset"
AWS_PROVIDER = "pulumi:providers:aws"

# Resources the `stateful-protected` rule requires the program to protect: they hold data a redeploy
# cannot bring back. Narrower than automation.engine.model.STATEFUL_TYPES, the promotion gate's set of
# types whose replace or delete is dangerous (that one also counts log groups, keys, queues …, which
# the program may recreate, so it need not protect them).
PROTECTION_REQUIRED_TYPES = frozenset(
    {
        *BUCKET_TYPES,
        ECR_REPOSITORY,
        "aws:dynamodb/table:Table",
        "aws:rds/instance:Instance",
        "aws:rds/cluster:Cluster",
        "aws:efs/fileSystem:FileSystem",
    }
)

# AWS types that accept tags (checked against the installed SDK by tests/policy/test_rules.py).
# A resource whose properties carry `tags` or `tagsAll` counts as taggable whatever its type.
TAGGABLE_TYPES = frozenset(
    {
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        ROLE,
        IAM_POLICY,
        *BUCKET_TYPES,
        ECR_REPOSITORY,
        FUNCTION,
        LOG_GROUP,
        "aws:apigatewayv2/api:Api",
        "aws:apigatewayv2/stage:Stage",
        "aws:cloudfront/distribution:Distribution",
        "aws:sns/topic:Topic",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "aws:budgets/budget:Budget",
        "aws:kms/key:Key",
        "aws:dynamodb/table:Table",
        "aws:sqs/queue:Queue",
        "aws:cloudwatch/eventRule:EventRule",
    }
)

SSE_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})


# --- the model the rules see ------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One resource of a stack, as both adapters can describe it."""

    type: str
    name: str  # logical name: what waivers name
    inputs: Mapping[str, Any]  # what a resource rule sees (CrossGuard: ResourceValidationArgs.props)
    outputs: Mapping[str, Any]  # what a stack rule sees (CrossGuard: PolicyResource.props)
    urn: str = ""
    id: str = ""  # the physical ID, when the adapter knows it (S3: the bucket name)
    parent: str = ""
    provider_inputs: Mapping[str, Any] | None = None  # the resource's provider; None: default provider
    protect: bool | None = None  # None: not known to this adapter
    retain_on_delete: bool | None = None
    # property -> URNs it depends on; key ANY_PROPERTY when the adapter only knows the resource's
    # dependencies as a whole (the offline render).
    dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class StackContext:
    """What a rule may know besides one resource: the stack, its config, and (stack rules) its resources."""

    stack: str
    project: str = "stageline"
    github: GitHubConfig | None = None  # None: the repository is not known; subjects are checked by shape
    protect_stateful: bool | None = None  # stageline:artifacts.protect; None: not known
    waivers: tuple[Waiver, ...] = ()
    resources: tuple[Resource, ...] = ()
    # The stack is the last stage of the promotion chain (see final_stages): its GitHub
    # environment is production whatever its name.
    production: bool = False
    # Why the stack's config could not be read (the pack only: `check` stops at a config error).
    config_error: str | None = None
    # The stack this one receives releases from (stageline:promotion.source): its deploy role may
    # read that stage's releases, so names under that stage's prefix are within reach.
    source: str | None = None

    @classmethod
    def from_config(
        cls, cfg: StackConfig, resources: Iterable[Resource] = (), *, production: bool = False
    ) -> StackContext:
        return cls(
            stack=cfg.stack,
            project=cfg.project,
            github=cfg.github,
            protect_stateful=cfg.artifacts.protect,
            waivers=cfg.waivers,
            resources=tuple(resources),
            production=production,
            source=cfg.promotion.source,
        )

    @property
    def prefix(self) -> str:
        """`<project>-<stack>`: the name prefix of everything the stack owns (its IAM scope)."""
        return f"{self.project}-{self.stack}"

    @property
    def reachable_prefixes(self) -> tuple[str, ...]:
        """Name prefixes besides the stack's own that its documents may reach: its promotion source's."""
        return (f"{self.project}-{self.source}",) if self.source else ()

    def with_resources(self, resources: Iterable[Resource]) -> StackContext:
        return dataclasses.replace(self, resources=tuple(resources))

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]

    def deploy_subject(self) -> str | None:
        return self.github.subject(f"environment:{self.stack}") if self.github else None

    def read_only_subjects(self) -> tuple[str, ...]:
        """`<stack>-readonly` jobs (drift checks, gated previews) and, where the stack admits them,
        pull-request previews: the preview role."""
        if self.github is None:
            return ()
        read_only = self.github.subject(f"environment:{self.stack}-readonly")
        if not self.github.pull_request_previews:
            return (read_only,)
        return (self.github.subject("pull_request"), read_only)

    @property
    def is_production(self) -> bool:
        return bool(PRODUCTION_RE.match(self.stack)) or self.production


@dataclass(frozen=True)
class Violation:
    rule: str
    severity: str
    stack: str
    resource: str  # logical name
    type: str
    message: str
    urn: str = ""
    rationale: str = ""  # the rule's one line: why it matters

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


ResourceCheck = Callable[[str, Mapping[str, Any], StackContext], Iterable[str]]
StackCheck = Callable[[StackContext], Iterable[tuple[Resource, str]]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    rationale: str  # one line: why the rule exists
    types: frozenset[str] = frozenset()  # the resource types a resource rule inspects
    check: ResourceCheck | None = None
    check_stack: StackCheck | None = None

    @property
    def scope(self) -> str:
        return "resource" if self.check is not None else "stack"


# --- helpers over engine-shaped values ----------------------------------------------------------


def is_unknown(value: Any) -> bool:
    """Whether the engine does not know (part of) the value yet."""
    if isinstance(value, str):
        return UNKNOWN in value
    if isinstance(value, Mapping):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_unknown(v) for v in value)
    return False


def _document(value: Any) -> Mapping[str, Any] | None:
    """A JSON document property (IAM policy, tags on a provider), or None when missing or unknown."""
    if value is None or is_unknown(value):
        return None
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, Mapping) else None
    return None


def _label(st: Mapping[str, Any], index: int) -> str:
    sid = st.get("Sid")
    return f'statement "{sid}"' if isinstance(sid, str) and sid else f"statement {index}"


def _identity_policies(type_: str, props: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The identity-policy documents a resource carries, with a label for messages."""
    if type_ in (IAM_POLICY, ROLE_POLICY, USER_POLICY, GROUP_POLICY):
        doc = _document(props.get("policy"))
        return [("policy", doc)] if doc is not None else []
    if type_ == ROLE:
        found = []
        for i, inline in enumerate(iam.as_list(props.get("inlinePolicies"))):
            if isinstance(inline, Mapping):
                doc = _document(inline.get("policy"))
                if doc is not None:
                    found.append((f"inline policy {inline.get('name') or i}", doc))
        return found
    return []


def _condition_values(st: Mapping[str, Any], key: str) -> list[tuple[str, list[str]]]:
    """(operator, values) for every condition on `key` (condition keys are case-insensitive)."""
    found: list[tuple[str, list[str]]] = []
    condition = st.get("Condition")
    if not isinstance(condition, Mapping):
        return found
    for operator, clauses in condition.items():
        if not isinstance(clauses, Mapping):
            continue
        for k, v in clauses.items():
            if str(k).lower() == key.lower():
                found.append((str(operator), [str(x) for x in iam.as_list(v)]))
    return found


def _trust_statements(props: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    """Allow statements of a role's trust policy."""
    doc = _document(props.get("assumeRolePolicy"))
    return [(i, st) for i, st in enumerate(iam.statements(doc)) if iam.allows(st)]


def _is_github(st: Mapping[str, Any]) -> bool:
    principal = st.get("Principal")
    federated = principal.get("Federated") if isinstance(principal, Mapping) else None
    return any(GITHUB_OIDC_HOST in str(f) for f in iam.as_list(federated))


def _github_trust_statements(props: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    """Allow statements of a role's trust policy whose principal is GitHub's OIDC provider."""
    return [(i, st) for i, st in _trust_statements(props) if _is_github(st)]


def _principal_text(st: Mapping[str, Any]) -> str:
    if "NotPrincipal" in st:
        return f"everyone but {json.dumps(st['NotPrincipal'], sort_keys=True)} (NotPrincipal)"
    return json.dumps(st.get("Principal"), sort_keys=True)


def _anyone(st: Mapping[str, Any]) -> bool:
    """Whether the statement's principal is everyone: "*", {"AWS": "*"}, a wildcard, or NotPrincipal."""
    if "NotPrincipal" in st:
        return True
    principal = st.get("Principal")
    if isinstance(principal, Mapping):
        values = [str(v) for v in principal.values() for v in iam.as_list(v)]
    else:
        values = [str(v) for v in iam.as_list(principal)]
    return any("*" in v for v in values if not is_unknown(v))


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


_LAMBDA_ARN_RE = re.compile(r"arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:([^:/]+)(?::([^:/]+))?")


def _lambda_target(value: Any) -> tuple[str, str | None] | None:
    """(function, qualifier) named by a Lambda ARN, invoke ARN, or `name[:qualifier]`."""
    if not isinstance(value, str) or not value or is_unknown(value):
        return None
    match = _LAMBDA_ARN_RE.search(value)
    if match:
        return match.group(1), match.group(2)
    if value.startswith("arn:"):
        return None
    name, _, qualifier = value.partition(":")
    return name, qualifier or None


def _refers_to(res: Resource, prop: str, target: Resource, *values: Any) -> bool:
    """Whether `res.<prop>` points at `target`: through the engine's property dependency, or by value."""
    if target.urn and (
        target.urn in res.dependencies.get(prop, ()) or target.urn in res.dependencies.get(ANY_PROPERTY, ())
    ):
        return True
    value = res.outputs.get(prop, res.inputs.get(prop))
    if not isinstance(value, str) or is_unknown(value):
        return False
    return value in {v for v in values if isinstance(v, str) and v and not is_unknown(v)}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value and not is_unknown(value) else None


# --- IAM ----------------------------------------------------------------------------------------

IAM_DOCUMENT_TYPES = frozenset({IAM_POLICY, ROLE_POLICY, USER_POLICY, GROUP_POLICY, ROLE})


def no_admin(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    messages = []
    for label, doc in _identity_policies(type_, props):
        for i, st in enumerate(iam.statements(doc)):
            if not (iam.allows(st) and iam.every_action(st)):
                continue
            how = iam.every_resource(st)
            if how is None:
                continue
            detail = "" if how == "*" else f" ({how if how == 'NotResource' else json.dumps(how)})"
            messages.append(f"{label}: {_label(st, i)} allows every action on every resource{detail}")
    arns = iam.as_list(props.get("managedPolicyArns")) if type_ == ROLE else [props.get("policyArn")]
    for arn in arns:
        if isinstance(arn, str) and arn.rsplit("/", 1)[-1] in iam.FORBIDDEN_MANAGED_POLICIES:
            messages.append(f"attaches {arn.rsplit('/', 1)[-1]}")
    return messages


def no_passrole_star(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    """iam:PassRole that reaches any role outside `<project>-<stack>-` (an admin role, another stage's)."""
    messages = []
    for label, doc in _identity_policies(type_, props):
        for i, st in enumerate(iam.statements(doc)):
            if not iam.allows(st):
                continue
            beyond = iam.passrole_beyond(st, ctx)
            if beyond is None:
                continue
            pattern, role = beyond
            if pattern == "NotResource":
                what = "every resource but those in NotResource"
            else:
                what = f'"{pattern}", which reaches roles outside {ctx.prefix}-* (e.g. {role})'
            messages.append(
                f"{label}: {_label(st, i)} allows iam:PassRole on {what}; "
                "name this environment's roles and condition on iam:PassedToService"
            )
    return messages


def no_iam_wildcard(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    """Every IAM action on IAM resources, or a privilege-escalation action outside the stack's own IAM.

    Decided by matching actions and resources (`iam:Attach*`, `iam:Put*`, NotAction, `arn:*` …), not
    by looking for the string "iam:*" (see `infra.iam`). The stack's own roles and policies
    (`<project>-<stack>-*`) are the deploy role's to manage; anything else — the account's admin roles,
    other stages' roles, users, "*" — is not.
    """
    messages = []
    for label, doc in _identity_policies(type_, props):
        for i, st in enumerate(iam.statements(doc)):
            if not iam.allows(st):
                continue
            if iam.every_iam_action(st, ctx):
                messages.append(f"{label}: {_label(st, i)} allows every IAM action (iam:*)")
                continue
            reached = iam.escalations(st, ctx)
            if reached:
                names = ", ".join(dict.fromkeys(a for a, _ in reached))
                where = reached[0][1]
                shown = "every resource but those in NotResource" if where == "NotResource" else f'"{where}"'
                messages.append(
                    f"{label}: {_label(st, i)} allows {names} on {shown}, beyond this stack's own "
                    f"roles and policies ({ctx.prefix}-*): privilege escalation"
                )
    return messages


def resource_scope(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    """Every Allow statement names only the stack's own resources (see `infra.iam.reach_beyond`).

    Judged by what a pattern reaches, in every ARN segment: `arn:aws:kms:*`, `key/*`,
    `arn:aws:s3:::*`, `function:*` and `arn:aws:lambda:*:*:function:x` all reach beyond the stack.
    Statements fenced by the stack's environment tag, and "*" with only the actions AWS authorizes
    nowhere else, do not.
    """
    messages = []
    for label, doc in _identity_policies(type_, props):
        for i, st in enumerate(iam.statements(doc)):
            if is_unknown(st) or (iam.every_action(st) and iam.every_resource(st) is not None):
                continue  # iam-no-admin reports that
            for pattern, why in iam.unscoped(st, ctx, ctx.reachable_prefixes):
                messages.append(
                    f"{label}: {_label(st, i)} allows {_actions_text(st)} on {json.dumps(pattern)}, "
                    f"which reaches {why}, beyond this stack's own ({ctx.prefix}-*)"
                )
    return messages


def no_account_admin(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    """No statement allows an action that administers the account or the organization."""
    messages = []
    for label, doc in _identity_policies(type_, props):
        for i, st in enumerate(iam.statements(doc)):
            if is_unknown(st) or (iam.every_action(st) and iam.every_resource(st) is not None):
                continue  # iam-no-admin reports that
            probe = iam.administration(st)
            if probe is not None:
                messages.append(
                    f"{label}: {_label(st, i)} allows {probe} (administers the account or the organization)"
                )
    return messages


def _actions_text(st: Mapping[str, Any]) -> str:
    if "NotAction" in st:
        return "every action but " + ", ".join(str(a) for a in iam.as_list(st["NotAction"]))
    actions = [str(a) for a in iam.as_list(st.get("Action"))]
    return ", ".join(actions[:3]) + (f" (+{len(actions) - 3} more)" if len(actions) > 3 else "")


# --- GitHub OIDC trust ----------------------------------------------------------------------------


def oidc_trust_exact(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    """aud pinned; every subject one of this stack's own; the deploy subject alone on its role.

    A stack's roles may trust three subjects: `environment:<stack>` (the deploy role: a job gets it
    only by referencing the GitHub environment and passing its protection rules), and, for the
    read-only preview role, `pull_request` and `environment:<stack>-readonly` (scheduled checks).
    A role trusting the deploy subject and anything else would hand deploy rights to pull requests.
    """
    messages = []
    github = _github_trust_statements(props)
    if github:
        # A role GitHub jobs assume trusts nothing else: another statement (an account root, a
        # service, "*") would reach the same rights without GitHub's environment protection.
        for i, st in _trust_statements(props):
            if not _is_github(st) and not is_unknown(st):
                messages.append(
                    f"{_label(st, i)} also lets {_principal_text(st)} assume this GitHub Actions role; "
                    "a role GitHub jobs assume must trust nothing else"
                )
    deploy, read_only = ctx.deploy_subject(), ctx.read_only_subjects()
    stack = re.escape(ctx.stack)
    shape = re.compile(rf"^repo:[^:*?]+:(environment:{stack}(-readonly)?|pull_request)$")
    trusted: list[str] = []
    for i, st in github:
        label = _label(st, i)
        aud = _condition_values(st, _AUD_KEY)
        if not any(op == "StringEquals" and values == [OIDC_AUDIENCE] for op, values in aud):
            messages.append(f'{label} does not pin {_AUD_KEY} to "{OIDC_AUDIENCE}" with StringEquals')
        sub = _condition_values(st, _SUB_KEY)
        if not sub or any(_has_wildcard(v) for _, values in sub for v in values):
            continue  # oidc-no-wildcard-subject reports these
        for op, values in sub:
            if op != "StringEquals":
                messages.append(f"{label} matches {_SUB_KEY} with {op}; use StringEquals")
            for value in values:
                trusted.append(value)
                if deploy is not None:
                    if value != deploy and value not in read_only:
                        allowed = ", ".join(f'"{s}"' for s in read_only)
                        messages.append(
                            f'{label} trusts subject "{value}"; a role of stack {ctx.stack} may trust only '
                            f'"{deploy}" (deploy) or {allowed} (read-only)'
                        )
                elif not shape.match(value):
                    messages.append(
                        f'{label} trusts subject "{value}"; a role of stack {ctx.stack} may trust only '
                        f'"repo:…:environment:{ctx.stack}" (deploy) or "repo:…:pull_request", '
                        f'"repo:…:environment:{ctx.stack}-readonly" (read-only)'
                    )
    deploys = {
        s for s in trusted if s == deploy or (deploy is None and s.endswith(f":environment:{ctx.stack}"))
    }
    others = sorted(set(trusted) - deploys)
    if deploys and others:
        also = ", ".join(f'"{s}"' for s in others)
        messages.append(
            f'trusts the deploy subject "{min(deploys)}" and also {also}: those jobs would get '
            "deploy rights; give them a separate read-only role"
        )
    return messages


def trust_not_public(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    """Any role: no Allow statement whose principal is everyone (conditions do not make it safe)."""
    return [
        f"{_label(st, i)} lets {_principal_text(st)} assume this role: anyone, from any AWS account"
        for i, st in _trust_statements(props)
        if _anyone(st)
    ]


def no_wildcard_subject(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    messages = []
    for i, st in _github_trust_statements(props):
        sub = _condition_values(st, _SUB_KEY)
        if not sub:
            messages.append(
                f"{_label(st, i)} does not constrain {_SUB_KEY}: any GitHub repository can assume this role"
            )
        for op, values in sub:
            for value in values:
                if _has_wildcard(value):
                    messages.append(f'{_label(st, i)} trusts subject pattern "{value}" ({op})')
    return messages


# --- S3 -----------------------------------------------------------------------------------------


def _bucket_name(bucket: Resource) -> str | None:
    return _str(bucket.outputs.get("bucket")) or _str(bucket.inputs.get("bucket"))


def _bucket_parts(ctx: StackContext, bucket: Resource, types: Iterable[str]) -> list[Resource]:
    name = _bucket_name(bucket)
    return [r for r in ctx.of_type(*types) if _refers_to(r, "bucket", bucket, name, bucket.id)]


def bucket_encrypted(ctx: StackContext) -> list[tuple[Resource, str]]:
    found = []
    for bucket in ctx.of_type(*BUCKET_TYPES):
        inline = bucket.outputs.get("serverSideEncryptionConfiguration")
        rules: list[Any] = []
        if isinstance(inline, Mapping):
            rules += iam.as_list(inline.get("rule")) + iam.as_list(inline.get("rules"))
        for part in _bucket_parts(ctx, bucket, BUCKET_ENCRYPTION_TYPES):
            rules += iam.as_list(part.outputs.get("rules"))
        algorithms = []
        for rule in rules:
            default = rule.get("applyServerSideEncryptionByDefault") if isinstance(rule, Mapping) else None
            if isinstance(default, Mapping):
                algorithms.append(default.get("sseAlgorithm"))
        if any(is_unknown(a) for a in algorithms):
            continue
        if not any(a in SSE_ALGORITHMS for a in algorithms):
            found.append((bucket, "no default server-side encryption (AES256 or aws:kms) for this bucket"))
    return found


_PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def bucket_public_access_blocked(ctx: StackContext) -> list[tuple[Resource, str]]:
    found = []
    for bucket in ctx.of_type(*BUCKET_TYPES):
        blocks = _bucket_parts(ctx, bucket, (BUCKET_PUBLIC_ACCESS_BLOCK,))
        if not blocks:
            found.append((bucket, "no public-access block for this bucket"))
            continue
        for block in blocks:
            values = {flag: block.outputs.get(flag) for flag in _PUBLIC_ACCESS_FLAGS}
            if any(is_unknown(v) for v in values.values()):
                continue
            off = [flag for flag, v in values.items() if v is not True]
            if off:
                found.append((bucket, f"public-access block {block.name} leaves {', '.join(off)} off"))
    return found


def _denies_insecure_transport(st: Mapping[str, Any], bucket_arn: str | None) -> bool:
    if str(st.get("Effect", "")).lower() != "deny":
        return False
    principal = st.get("Principal")
    anyone_aws = isinstance(principal, Mapping) and "*" in iam.as_list(principal.get("AWS"))
    everyone = principal == "*" or anyone_aws
    if not everyone:
        return False
    if not (iam.action_allowed(st, "s3:GetObject") and iam.action_allowed(st, "s3:PutObject")):
        return False
    secure = [
        v.lower()
        for op, values in _condition_values(st, "aws:SecureTransport")
        if op == "Bool"
        for v in values
    ]
    if secure != ["false"]:
        return False
    resources = [str(r) for r in iam.as_list(st.get("Resource"))]
    if bucket_arn is None:
        return any(r.endswith("/*") or r == "*" for r in resources)
    covers = [iam.glob(r) for r in resources]
    return any(p.match(bucket_arn) for p in covers) and any(p.match(f"{bucket_arn}/object") for p in covers)


def bucket_tls_only(ctx: StackContext) -> list[tuple[Resource, str]]:
    found = []
    for bucket in ctx.of_type(*BUCKET_TYPES):
        name = _bucket_name(bucket)
        arn = _str(bucket.outputs.get("arn")) or (f"arn:aws:s3:::{name}" if name else None)
        policies = _bucket_parts(ctx, bucket, (BUCKET_POLICY,))
        documents = [p.outputs.get("policy") for p in policies]
        if any(is_unknown(d) for d in documents):
            continue
        statements = [st for d in documents for st in iam.statements(_document(d))]
        if not any(_denies_insecure_transport(st, arn) for st in statements):
            found.append(
                (
                    bucket,
                    "no bucket policy denies s3:* without TLS (aws:SecureTransport false) "
                    "on the bucket and its objects",
                )
            )
    return found


# --- ECR ----------------------------------------------------------------------------------------


def ecr_immutable(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    value = props.get("imageTagMutability")
    if is_unknown(value) or value == "IMMUTABLE":
        return []
    shown = json.dumps(value or "MUTABLE")
    return [f"imageTagMutability is {shown}: a pushed tag can be moved to another image"]


def ecr_scan_on_push(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    scanning = props.get("imageScanningConfiguration")
    value = scanning.get("scanOnPush") if isinstance(scanning, Mapping) else None
    if is_unknown(value) or value is True:
        return []
    return ["imageScanningConfiguration.scanOnPush is not true"]


# --- Lambda: reached only through `live` --------------------------------------------------------

LIVE_ENTRY_TYPES = frozenset(
    {
        API_INTEGRATION,
        PERMISSION,
        EVENT_SOURCE_MAPPING,
        FUNCTION_URL,
        EVENT_TARGET,
        TOPIC_SUBSCRIPTION,
    }
)


def invoked_through_live(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    if type_ == API_INTEGRATION:
        prop, target = "integrationUri", _lambda_target(props.get("integrationUri"))
    elif type_ == PERMISSION:
        prop, target = "function", _lambda_target(props.get("function"))
        qualifier = props.get("qualifier")
        if target is not None and qualifier is not None:
            if is_unknown(qualifier):
                return []
            target = (target[0], str(qualifier))
    elif type_ == EVENT_SOURCE_MAPPING:
        prop, target = "functionName", _lambda_target(props.get("functionName"))
    elif type_ == FUNCTION_URL:
        prop, target = "functionName", _lambda_target(props.get("functionName"))
        if target is not None and props.get("qualifier") is not None:
            if is_unknown(props.get("qualifier")):
                return []
            target = (target[0], str(props.get("qualifier")))
    elif type_ == EVENT_TARGET:
        prop, target = "arn", _lambda_target(props.get("arn"))
    elif type_ == TOPIC_SUBSCRIPTION and props.get("protocol") == "lambda":
        prop, target = "endpoint", _lambda_target(props.get("endpoint"))
    else:
        return []
    if target is None:
        return []
    function, qualifier = target
    if qualifier == LIVE_ALIAS:
        return []
    at = "unqualified, i.e. $LATEST" if qualifier is None else f"at {qualifier}"
    return [f"{prop} reaches function {function} {at}; target the {LIVE_ALIAS} alias"]


# Where a function ARN is the function being configured, not a caller of it (those resources
# carry their own qualifier property, or are the function and its alias themselves).
_FUNCTION_SUBJECT_PROPERTIES = ("functionName", "function", "qualifier")
_LAMBDA_ARN_ALL_RE = re.compile(r"arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:([^:/\s\"]+)(?::([^:/\s\"]+))?")


def _arn_references(value: Any, path: str) -> Iterable[tuple[str, str, str | None]]:
    """(path, function, qualifier) for each Lambda function ARN inside a value (invoke ARNs too).

    Policy documents are skipped: a policy *grants* on a function's ARN, it does not invoke it.
    """
    if isinstance(value, str):
        if is_unknown(value):
            return
        doc = _document(value) if value[:1] == "{" else None
        if doc is not None and "Statement" in doc:
            return
        for match in _LAMBDA_ARN_ALL_RE.finditer(value):
            yield path, match.group(1), match.group(2)
    elif isinstance(value, Mapping):
        if "Statement" in value:
            return
        for k, v in value.items():
            yield from _arn_references(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _arn_references(v, f"{path}[{i}]")


def function_arns_through_live(ctx: StackContext) -> list[tuple[Resource, str]]:
    """Any resource holding one of the stack's function ARNs names its live alias.

    lambda-invoked-through-live knows the entry types it was written for; this catches the rest
    (REST API integrations, S3 notifications, schedules, Step Functions …) by value: an ARN of
    one of this stack's functions that is unqualified or qualified with anything but `live`.
    """
    functions = {name for fn in ctx.of_type(FUNCTION) if (name := _str(fn.outputs.get("name")))}
    if not functions:
        return []
    skipped = {FUNCTION, ALIAS, LOG_GROUP, *LIVE_ENTRY_TYPES, *IAM_DOCUMENT_TYPES}
    found = []
    for res in ctx.resources:
        if res.type in skipped or not res.type.startswith("aws:"):
            continue
        props = res.outputs or res.inputs
        for key, value in props.items():
            if res.type.startswith("aws:lambda/") and key in _FUNCTION_SUBJECT_PROPERTIES:
                continue
            for path, function, qualifier in _arn_references(value, key):
                if function not in functions or qualifier == LIVE_ALIAS:
                    continue
                at = "unqualified, i.e. $LATEST" if qualifier is None else f"at {qualifier}"
                found.append((res, f"{path} reaches function {function} {at}; target the {LIVE_ALIAS} alias"))
    return found


def live_alias(ctx: StackContext) -> list[tuple[Resource, str]]:
    found = []
    aliases = [a for a in ctx.of_type(ALIAS) if a.outputs.get("name") == LIVE_ALIAS]
    for fn in ctx.of_type(FUNCTION):
        publish = fn.outputs.get("publish")
        if not is_unknown(publish) and publish is not True:
            found.append((fn, f"publish is not true: the {LIVE_ALIAS} alias could only point at $LATEST"))
        name, arn = _str(fn.outputs.get("name")), _str(fn.outputs.get("arn"))
        mine = [a for a in aliases if _refers_to(a, "functionName", fn, name, arn, fn.id)]
        if not mine:
            if any(is_unknown(a.outputs.get("functionName")) for a in aliases):
                continue
            found.append((fn, f"has no {LIVE_ALIAS} alias: callers would have to name $LATEST or a version"))
        for alias in mine:
            if alias.outputs.get("functionVersion") == "$LATEST":
                found.append((fn, f"alias {alias.name} points at $LATEST instead of a published version"))
    return found


# --- logs ---------------------------------------------------------------------------------------


def log_retention(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    value = props.get("retentionInDays")
    if is_unknown(value):
        return []
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return ["retentionInDays is not set: CloudWatch keeps these logs (and bills for them) forever"]
    return []


def function_log_group(ctx: StackContext) -> list[tuple[Resource, str]]:
    found = []
    groups = {_str(g.outputs.get("name")) for g in ctx.of_type(LOG_GROUP)}
    if any(is_unknown(g.outputs.get("name")) for g in ctx.of_type(LOG_GROUP)):
        return []
    for fn in ctx.of_type(FUNCTION):
        name = _str(fn.outputs.get("name"))
        logging = fn.outputs.get("loggingConfig")
        configured = logging.get("logGroup") if isinstance(logging, Mapping) else None
        if is_unknown(configured) or name is None:
            continue
        target = _str(configured) or f"/aws/lambda/{name}"
        if target not in groups:
            found.append(
                (
                    fn,
                    f"writes to log group {target}, which this stack does not manage: Lambda would "
                    "create it on first use with no retention",
                )
            )
    return found


# --- GitHub environments --------------------------------------------------------------------------


def is_production_environment(environment: str, ctx: StackContext) -> bool:
    """prod, production, prod-eu …, or the deploy environment of the last stage of the promotion chain."""
    if environment.lower().endswith(READ_ONLY_SUFFIX):
        return False
    return bool(PRODUCTION_RE.match(environment)) or (ctx.production and environment == ctx.stack)


def final_stages(sources: Mapping[str, str | None]) -> frozenset[str]:
    """The ends of the promotion chain: stacks that receive releases and pass them to no other.

    `sources` maps each stack to its `promotion.source`. A lone stack (no source, no successor)
    is not a final stage: it is where releases start.
    """
    named = {source for source in sources.values() if source}
    return frozenset(stack for stack, source in sources.items() if source and stack not in named)


def promotion_sources(root: Path) -> dict[str, str | None]:
    """Each stack file's `promotion.source` (None when unset or unreadable), read without the engine."""
    from infra.config import STACK_NAME_RE, known_stacks, read_stack_file

    sources: dict[str, str | None] = {}
    for stack in known_stacks(root):
        if not STACK_NAME_RE.match(stack):
            continue  # Pulumi.old.dev.yaml and the like are not stack files
        try:
            promotion = read_stack_file(root, stack).values.get("promotion")
        except ConfigError:
            promotion = None
        raw = promotion.get("source") if isinstance(promotion, Mapping) else None
        sources[stack] = raw if isinstance(raw, str) and raw else None
    return sources


def _is_production(props: Mapping[str, Any], ctx: StackContext) -> bool:
    environment = props.get("environment")
    return isinstance(environment, str) and is_production_environment(environment, ctx)


def prod_reviewers(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    if not _is_production(props, ctx):
        return []
    reviewers = iam.as_list(props.get("reviewers"))
    if is_unknown(reviewers):
        return []
    count = sum(
        len(iam.as_list(r.get("users"))) + len(iam.as_list(r.get("teams")))
        for r in reviewers
        if isinstance(r, Mapping)
    )
    messages = []
    if count == 0:
        messages.append(f"environment {props.get('environment')} has no required reviewers")
    if props.get("preventSelfReview") is not True and not is_unknown(props.get("preventSelfReview")):
        messages.append("preventSelfReview is not true: whoever starts a deployment can approve it")
    return messages


def prod_no_admin_bypass(type_: str, props: Mapping[str, Any], ctx: StackContext) -> list[str]:
    if not _is_production(props, ctx):
        return []
    value = props.get("canAdminsBypass")
    if value is False or is_unknown(value):
        return []
    return ["canAdminsBypass is not false (GitHub's default is true): admins skip the reviewers"]


def _stack_resource(ctx: StackContext) -> Resource:
    """The stack itself, for what a rule finds in its config (the URN the engine gives it)."""
    name = f"{ctx.project}-{ctx.stack}"
    urn = f"urn:pulumi:{ctx.stack}::{ctx.project}::{STACK_TYPE}::{name}"
    return Resource(type=STACK_TYPE, name=name, inputs={}, outputs={}, urn=urn)


def github_token_reviewed(ctx: StackContext) -> list[tuple[Resource, str]]:
    """A stack managing GitHub runs with a token that can change every environment: only under review."""
    github = ctx.github
    if github is None or not github.manage:
        return []
    protection = github.protection
    if protection.reviewers and protection.prevent_self_review:
        return []
    return [
        (
            _stack_resource(ctx),
            "stageline:github.manage is true but the stack's environment has no required reviewer "
            "other than the starter (reviewers with preventSelfReview): its unreviewed job would hold "
            "a token that can change every environment's protection rules and secrets",
        )
    ]


def _is_catch_all(pattern: str) -> bool:
    return pattern.strip("*/") == ""


def _tag_rulesets(ctx: StackContext) -> set[str]:
    """Tag ref patterns protected by an active tag ruleset forbidding creation, update and deletion."""
    protected: set[str] = set()
    for res in ctx.of_type(GITHUB_RULESET):
        props = res.inputs
        raw_rules = props.get("rules")
        rules_: Mapping[str, Any] = raw_rules if isinstance(raw_rules, Mapping) else {}
        if props.get("target") != "tag" or props.get("enforcement") != "active":
            continue
        if not all(rules_.get(k) is True for k in ("creation", "update", "deletion")):
            continue
        conditions = props.get("conditions")
        ref_name = conditions.get("refName") if isinstance(conditions, Mapping) else None
        if isinstance(ref_name, Mapping):
            protected |= {str(p) for p in iam.as_list(ref_name.get("includes"))}
    return protected


def prod_deployment_refs(ctx: StackContext) -> list[tuple[Resource, str]]:
    """Production deploys only from named refs, declared by its own (reviewed) stack, tags protected."""
    if not ctx.is_production or ctx.github is None:
        return []
    found: list[tuple[Resource, str]] = []
    stack = _stack_resource(ctx)
    if not ctx.github.manage:
        return [
            (
                stack,
                "stageline:github.manage is false: production's environment, reviewers and branch policy "
                "are declared by no reviewed stack, so nothing keeps them as the stack file says",
            )
        ]
    if ctx.stack not in ctx.github.protects:
        found.append(
            (
                stack,
                f"stageline:github.protects does not list {ctx.stack}: production's own protection rules "
                "must be declared by its own stack, where only a reviewed job runs",
            )
        )
    environments = [e for e in ctx.of_type(GITHUB_ENVIRONMENT) if e.inputs.get("environment") == ctx.stack]
    for env in environments:
        policy = env.inputs.get("deploymentBranchPolicy")
        if not isinstance(policy, Mapping) and not is_unknown(policy):
            found.append(
                (env, f"environment {ctx.stack} has no deployment-branch policy: any branch may deploy")
            )
    protected = _tag_rulesets(ctx)
    for res in ctx.of_type(GITHUB_DEPLOYMENT_POLICY):
        if res.inputs.get("environment") != ctx.stack:
            continue
        for kind, key in (("branch", "branchPattern"), ("tag", "tagPattern")):
            pattern = res.inputs.get(key)
            if not isinstance(pattern, str):
                continue
            if _is_catch_all(pattern):
                found.append(
                    (res, f'{kind} pattern "{pattern}" admits every {kind}: name the ones that deploy')
                )
            elif kind == "tag" and f"refs/tags/{pattern}" not in protected:
                found.append(
                    (
                        res,
                        f'tag pattern "{pattern}" has no tag ruleset declared by the program: whoever can '
                        "push a matching tag could deploy it",
                    )
                )
    return found


def prod_no_pull_request_previews(ctx: StackContext) -> list[tuple[Resource, str]]:
    if not ctx.is_production or ctx.github is None or not ctx.github.pull_request_previews:
        return []
    return [
        (
            _stack_resource(ctx),
            "stageline:github.pullRequestPreviews is true: any pull request could assume production's "
            "preview role and decrypt its secrets; preview it in the promotion run instead",
        )
    ]


# --- tags and protection --------------------------------------------------------------------------


def _default_tags(provider_inputs: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if provider_inputs is None:
        return {}
    raw = provider_inputs.get("defaultTags")
    if raw is None:
        return {}
    doc = _document(raw)
    if doc is None:
        return None  # unknown
    tags = doc.get("tags")
    return tags if isinstance(tags, Mapping) else {}


def taggable(resource: Resource) -> bool:
    return resource.type in TAGGABLE_TYPES or "tags" in resource.inputs or "tagsAll" in resource.outputs


def required_tags(ctx: StackContext) -> list[tuple[Resource, str]]:
    expected = {"project": ctx.project, "environment": ctx.stack, "managed-by": MANAGED_BY}
    found = []
    for res in ctx.resources:
        if not res.type.startswith("aws:") or not taggable(res):
            continue
        tags_all = res.outputs.get("tagsAll")
        if isinstance(tags_all, Mapping) and tags_all and not is_unknown(tags_all):
            effective: dict[str, Any] = dict(tags_all)
        else:
            defaults = _default_tags(res.provider_inputs)
            if defaults is None:
                continue
            effective = dict(defaults)
        own = res.outputs.get("tags", res.inputs.get("tags"))
        if isinstance(own, Mapping):
            effective.update(own)
        if is_unknown(effective):
            continue
        missing = [k for k in REQUIRED_TAGS if not effective.get(k)]
        wrong = [
            f'{k} is "{effective[k]}", expected "{v}"'
            for k, v in expected.items()
            if effective.get(k) and effective[k] != v
        ]
        if missing:
            found.append((res, f"missing tags: {', '.join(missing)}"))
        if wrong:
            found.append((res, "; ".join(wrong)))
    return found


def stateful_protected(ctx: StackContext) -> list[tuple[Resource, str]]:
    if ctx.protect_stateful is not True:
        return []
    found = []
    for res in ctx.of_type(*PROTECTION_REQUIRED_TYPES):
        missing = []
        if res.protect is False:
            missing.append("protect")
        if res.retain_on_delete is False:
            missing.append("retainOnDelete")
        if missing:
            found.append(
                (res, f"stageline:artifacts.protect is true but the resource lacks {' and '.join(missing)}")
            )
    return found


# --- the stack's config ---------------------------------------------------------------------------

STACK_TYPE = "pulumi:pulumi:Stack"


def config_readable(ctx: StackContext) -> list[tuple[Resource, str]]:
    """The pack could not read the stack's config: say so once, instead of checking less in silence."""
    if ctx.config_error is None:
        return []
    stack = Resource(type=STACK_TYPE, name=f"{ctx.project}-{ctx.stack}", inputs={}, outputs={})
    return [
        (
            stack,
            f"the stack's config could not be read ({ctx.config_error}); trust subjects are checked "
            "by shape only, protection is not expected and waivers do not apply",
        )
    ]


# --- the rule table ---------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule(
        "oidc-trust-exact",
        CRITICAL,
        "A deploy role trusts exactly its own GitHub environment, aud pinned: no other job can deploy here.",
        frozenset({ROLE}),
        check=oidc_trust_exact,
    ),
    Rule(
        "iam-trust-not-public",
        CRITICAL,
        "A trust policy allowing Principal * (or NotPrincipal) lets any AWS account assume the role.",
        frozenset({ROLE}),
        check=trust_not_public,
    ),
    Rule(
        "oidc-no-wildcard-subject",
        CRITICAL,
        "A wildcard or missing OIDC subject lets any branch, fork or repository assume the role.",
        frozenset({ROLE}),
        check=no_wildcard_subject,
    ),
    Rule(
        "iam-no-admin",
        CRITICAL,
        "Allow * on * (or an admin managed policy) turns one leaked credential into the whole account.",
        IAM_DOCUMENT_TYPES | ATTACHMENT_TYPES,
        check=no_admin,
    ),
    Rule(
        "iam-no-passrole-star",
        CRITICAL,
        "iam:PassRole beyond the stack's own roles lets the holder hand an admin role to a service it runs.",
        IAM_DOCUMENT_TYPES,
        check=no_passrole_star,
    ),
    Rule(
        "iam-no-iam-wildcard",
        HIGH,
        "iam:*, or writing policies onto IAM outside the stack, is privilege escalation in one call.",
        IAM_DOCUMENT_TYPES,
        check=no_iam_wildcard,
    ),
    Rule(
        "iam-resource-scope",
        CRITICAL,
        "A pattern in any ARN segment (key/*, arn:aws:s3:::*, a region or account) reaches others' data.",
        IAM_DOCUMENT_TYPES,
        check=resource_scope,
    ),
    Rule(
        "iam-no-account-admin",
        CRITICAL,
        "Organizations, account, SSO, billing or audit-trail actions hand over the account itself.",
        IAM_DOCUMENT_TYPES,
        check=no_account_admin,
    ),
    Rule(
        "s3-encrypted",
        HIGH,
        "Every bucket declares default server-side encryption, so no object is stored in the clear.",
        check_stack=bucket_encrypted,
    ),
    Rule(
        "s3-public-access-blocked",
        CRITICAL,
        "All four public-access blocks keep a bucket private whatever a later ACL or policy says.",
        check_stack=bucket_public_access_blocked,
    ),
    Rule(
        "s3-tls-only",
        HIGH,
        "A bucket policy denying aws:SecureTransport=false keeps artifacts off plain HTTP.",
        check_stack=bucket_tls_only,
    ),
    Rule(
        "ecr-immutable-tags",
        HIGH,
        "Immutable tags: an image tag, once pushed, always names the same image.",
        frozenset({ECR_REPOSITORY}),
        check=ecr_immutable,
    ),
    Rule(
        "ecr-scan-on-push",
        MEDIUM,
        "Every pushed image is scanned for known vulnerabilities as it arrives in the registry.",
        frozenset({ECR_REPOSITORY}),
        check=ecr_scan_on_push,
    ),
    Rule(
        "lambda-live-alias",
        HIGH,
        "Functions publish versions behind a live alias: moving the alias is the release and the rollback.",
        check_stack=live_alias,
    ),
    Rule(
        "lambda-invoked-through-live",
        HIGH,
        "APIs, permissions and triggers reach a function only through live, never $LATEST or a version.",
        LIVE_ENTRY_TYPES,
        check=invoked_through_live,
    ),
    Rule(
        "lambda-arn-through-live",
        HIGH,
        "Any other resource naming one of the stack's functions by ARN names its live alias.",
        check_stack=function_arns_through_live,
    ),
    Rule(
        "log-retention",
        MEDIUM,
        "Log groups set a retention, so logs do not pile up (and cost) forever.",
        frozenset({LOG_GROUP}),
        check=log_retention,
    ),
    Rule(
        "lambda-log-group",
        MEDIUM,
        "A function writes to a log group the stack manages, not one Lambda creates with no retention.",
        check_stack=function_log_group,
    ),
    Rule(
        "prod-reviewers",
        CRITICAL,
        "Production deployments wait for a required reviewer who is not the person who started them.",
        frozenset({GITHUB_ENVIRONMENT}),
        check=prod_reviewers,
    ),
    Rule(
        "prod-no-admin-bypass",
        HIGH,
        "Repository admins cannot skip production's required reviewers.",
        frozenset({GITHUB_ENVIRONMENT}),
        check=prod_no_admin_bypass,
    ),
    Rule(
        "github-token-reviewed",
        CRITICAL,
        "Only a stack deployed under review holds the GitHub token that can change environments.",
        check_stack=github_token_reviewed,
    ),
    Rule(
        "prod-deployment-refs",
        CRITICAL,
        "Production deploys from named branches and protected tags, declared by its own reviewed stack.",
        check_stack=prod_deployment_refs,
    ),
    Rule(
        "prod-no-pull-request-previews",
        CRITICAL,
        "No pull request can assume production's preview role and decrypt its secrets.",
        check_stack=prod_no_pull_request_previews,
    ),
    Rule(
        "required-tags",
        MEDIUM,
        "Every AWS resource carries project, environment and managed-by tags for cost and ownership.",
        check_stack=required_tags,
    ),
    Rule(
        "stateful-protected",
        HIGH,
        "Where the stack says so, data stores are protected and retained: no update deletes them.",
        check_stack=stateful_protected,
    ),
    Rule(
        "stack-config-readable",
        HIGH,
        "The pack needs the stack's config (repository, protection, waivers); without it, it checks less.",
        check_stack=config_readable,
    ),
)

RULES_BY_ID: Mapping[str, Rule] = {rule.id: rule for rule in RULES}


# --- running the rules --------------------------------------------------------------------------


def resource_violations(rule: Rule, res: Resource, ctx: StackContext) -> list[Violation]:
    """A resource rule applied to one resource's inputs."""
    if rule.check is None or res.type not in rule.types:
        return []
    return [
        Violation(rule.id, rule.severity, ctx.stack, res.name, res.type, message, res.urn, rule.rationale)
        for message in rule.check(res.type, res.inputs, ctx)
    ]


def stack_violations(rule: Rule, ctx: StackContext) -> list[Violation]:
    if rule.check_stack is None:
        return []
    return [
        Violation(rule.id, rule.severity, ctx.stack, res.name, res.type, message, res.urn, rule.rationale)
        for res, message in rule.check_stack(ctx)
    ]


def evaluate(ctx: StackContext, rules: Sequence[Rule] = RULES) -> list[Violation]:
    """Every violation of `rules` in the stack, before waivers."""
    found: list[Violation] = []
    for rule in rules:
        if rule.check is not None:
            for res in ctx.resources:
                found.extend(resource_violations(rule, res, ctx))
        else:
            found.extend(stack_violations(rule, ctx))
    return found


def check_waivers(waivers: Sequence[Waiver], rules: Mapping[str, Rule] = RULES_BY_ID) -> None:
    """Reject a waiver naming a rule that does not exist (a typo would silently waive nothing)."""
    for i, waiver in enumerate(waivers):
        if waiver.rule not in rules:
            close = difflib.get_close_matches(waiver.rule, list(rules), n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (rules: {', '.join(rules)})"
            raise ConfigError(f'stageline:waivers[{i}].rule names an unknown rule "{waiver.rule}"{hint}')


def waiver_for(violation: Violation, waivers: Sequence[Waiver]) -> Waiver | None:
    for waiver in waivers:
        if waiver.rule == violation.rule and waiver.resource == violation.resource:
            return waiver
    return None


@dataclass(frozen=True)
class Outcome:
    """A stack's violations after its waivers."""

    violations: tuple[Violation, ...]
    waived: tuple[tuple[Violation, Waiver], ...]
    unused_waivers: tuple[Waiver, ...]


def apply_waivers(violations: Sequence[Violation], waivers: Sequence[Waiver]) -> Outcome:
    active: list[Violation] = []
    waived: list[tuple[Violation, Waiver]] = []
    used: set[Waiver] = set()
    for violation in violations:
        waiver = waiver_for(violation, waivers)
        if waiver is None:
            active.append(violation)
        else:
            waived.append((violation, waiver))
            used.add(waiver)
    return Outcome(tuple(active), tuple(waived), tuple(w for w in waivers if w not in used))
