"""IAM and bucket policy documents of the trust layer, as pure functions.

Everything here is plain data in, plain dicts out: the components render these documents
inside an `apply`, and the tests call the same functions directly, without mocks.

Scoping rules, in order of preference:

1. **Name patterns.** Every resource the program creates is named `<prefix>-…` where the
   prefix is `<project>-<stack>` (see `StackConfig.prefix`), so most rights are granted on ARN
   patterns such as `function:stageline-dev-*`.
2. **Tags.** CloudFront distributions and HTTP APIs get generated IDs, not names. They are
   scoped with `aws:RequestTag/environment` on create and `aws:ResourceTag/environment`
   afterwards (the provider's default tags set `environment` on every resource).
3. **The service's own ARN shape,** where a service supports neither (API Gateway v2 child
   resources, CloudFront origin access controls and response-headers policies).
4. **`"*"`** only for the few actions AWS authorizes on nothing else (`STAR_ONLY_ACTIONS`).

Privilege escalation is closed by a permissions boundary: the deploy role may create and change
roles under its prefix only when they carry the boundary, may not edit the boundary (or any
policy under its prefix), may not touch its own or the preview role, and may pass roles only to
Lambda. A deploy job therefore cannot grant itself more than the boundary allows, and changing
the trust layer itself needs an administrator.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra.config.model import Grant

Document = dict[str, Any]
Statement = dict[str, Any]

OIDC_HOST = "token.actions.githubusercontent.com"
OIDC_URL = f"https://{OIDC_HOST}"
OIDC_AUDIENCE = "sts.amazonaws.com"
ENVIRONMENT_TAG = "environment"
# IAM's limit for one managed policy, counted without whitespace.
MANAGED_POLICY_MAX_CHARS = 6144
DEPLOY_POLICY_PARTS = ("iam", "compute", "edge", "ops")
PREVIEW_POLICY_PARTS = ("read",)
STATE_PART = "state"
# The DIY backend keeps these prefixes under `.pulumi/` (project-scoped layout, the default
# for backends created since Pulumi 3.61).
STATE_ROOT = ".pulumi"

# Frontend builds live under `releases/<version>/` of a stack's frontend bucket.
RELEASES_PREFIX = "releases"
PACKAGES_PREFIX = "packages"  # zip packages in the artifact bucket: packages/<service>/<sha256 hex>.zip

# Actions AWS authorizes only on Resource "*" (the Service Authorization Reference lists no
# resource type for them). They are the only ones the program grants on "*" (tests/infra hold it to
# that, judging breadth with `infra.iam`).
STAR_ONLY_ACTIONS = frozenset(
    {
        "ecr:GetAuthorizationToken",
        "logs:DescribeLogGroups",
        # API Gateway writes HTTP API access logs through CloudWatch Logs' vended-log delivery,
        # which the caller of UpdateStage must be allowed to set up.
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "kms:CreateKey",
        "kms:ListAliases",
        "cloudfront:CreateDistribution",
        "cloudfront:CreateOriginAccessControl",
        "cloudfront:CreateResponseHeadersPolicy",
        "cloudfront:CreateCachePolicy",
        "sns:Unsubscribe",
        "sns:GetSubscriptionAttributes",
        "sns:SetSubscriptionAttributes",
    }
)

# Role changes that could widen what a role may do. All of them accept the
# iam:PermissionsBoundary condition key except tagging.
_ROLE_WRITE_ACTIONS = (
    "iam:CreateRole",
    "iam:DeleteRole",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:PutRolePermissionsBoundary",
)
_ROLE_ATTACH_ACTIONS = ("iam:AttachRolePolicy", "iam:DetachRolePolicy")
_ROLE_TAG_ACTIONS = ("iam:TagRole", "iam:UntagRole")
_ROLE_READ_ACTIONS = (
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRoleTags",
)
_POLICY_READ_ACTIONS = ("iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions")
_POLICY_WRITE_ACTIONS = (
    "iam:CreatePolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:TagPolicy",
    "iam:UntagPolicy",
)

_LAMBDA_READ_ACTIONS = (
    "lambda:GetFunction",
    "lambda:GetFunctionConfiguration",
    "lambda:GetFunctionCodeSigningConfig",
    "lambda:GetRuntimeManagementConfig",
    "lambda:GetFunctionConcurrency",
    "lambda:GetAlias",
    "lambda:ListAliases",
    "lambda:ListVersionsByFunction",
    "lambda:GetPolicy",
    "lambda:ListTags",
)
_LAMBDA_WRITE_ACTIONS = (
    "lambda:CreateFunction",
    "lambda:DeleteFunction",
    "lambda:UpdateFunctionCode",
    "lambda:UpdateFunctionConfiguration",
    "lambda:PublishVersion",
    "lambda:CreateAlias",
    "lambda:UpdateAlias",
    "lambda:DeleteAlias",
    "lambda:RemovePermission",
    "lambda:PutFunctionConcurrency",
    "lambda:DeleteFunctionConcurrency",
    "lambda:TagResource",
    "lambda:UntagResource",
)
_LOG_GROUP_READ_ACTIONS = ("logs:ListTagsForResource", "logs:ListTagsLogGroup")
_LOG_GROUP_WRITE_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:DeleteLogGroup",
    "logs:PutRetentionPolicy",
    "logs:DeleteRetentionPolicy",
    "logs:TagResource",
    "logs:UntagResource",
    "logs:TagLogGroup",
    "logs:UntagLogGroup",
)
_DISTRIBUTION_READ_ACTIONS = (
    "cloudfront:GetDistribution",
    "cloudfront:GetDistributionConfig",
    "cloudfront:GetInvalidation",
    "cloudfront:ListInvalidations",
    "cloudfront:ListTagsForResource",
)
_DISTRIBUTION_WRITE_ACTIONS = (
    "cloudfront:UpdateDistribution",
    "cloudfront:DeleteDistribution",
    "cloudfront:CreateInvalidation",
    "cloudfront:TagResource",
    "cloudfront:UntagResource",
)
_CLOUDFRONT_CONFIG_READ_ACTIONS = (
    "cloudfront:GetOriginAccessControl",
    "cloudfront:GetOriginAccessControlConfig",
    "cloudfront:GetResponseHeadersPolicy",
    "cloudfront:GetResponseHeadersPolicyConfig",
    "cloudfront:GetCachePolicy",
    "cloudfront:GetCachePolicyConfig",
)
_CLOUDFRONT_CONFIG_WRITE_ACTIONS = (
    "cloudfront:UpdateOriginAccessControl",
    "cloudfront:DeleteOriginAccessControl",
    "cloudfront:UpdateResponseHeadersPolicy",
    "cloudfront:DeleteResponseHeadersPolicy",
    "cloudfront:UpdateCachePolicy",
    "cloudfront:DeleteCachePolicy",
)
_BUCKET_READ_ACTIONS = (
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucket*",
    "s3:GetAccelerateConfiguration",
    "s3:GetEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:GetReplicationConfiguration",
)
# Deleting a bucket's sub-configuration is authorized by the matching Put action.
_BUCKET_WRITE_ACTIONS = (
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketOwnershipControls",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketTagging",
)
# No s3:DeleteObjectVersion: a delete only adds a delete marker to a versioned bucket, so a
# deploy job can never destroy an artifact or a release upload.
_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
)
_ECR_READ_ACTIONS = (
    "ecr:DescribeRepositories",
    "ecr:GetLifecyclePolicy",
    "ecr:GetRepositoryPolicy",
    "ecr:ListTagsForResource",
    "ecr:DescribeImages",
    "ecr:ListImages",
    "ecr:DescribeImageScanFindings",
)
# No ecr:BatchDeleteImage: only the lifecycle policy removes images.
_ECR_WRITE_ACTIONS = (
    "ecr:CreateRepository",
    "ecr:DeleteRepository",
    "ecr:PutImageTagMutability",
    "ecr:PutImageScanningConfiguration",
    "ecr:PutLifecyclePolicy",
    "ecr:DeleteLifecyclePolicy",
    "ecr:SetRepositoryPolicy",
    "ecr:DeleteRepositoryPolicy",
    "ecr:TagResource",
    "ecr:UntagResource",
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
)
_TOPIC_READ_ACTIONS = ("sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic", "sns:ListTagsForResource")
_TOPIC_WRITE_ACTIONS = (
    "sns:CreateTopic",
    "sns:DeleteTopic",
    "sns:SetTopicAttributes",
    "sns:Subscribe",
    "sns:TagResource",
    "sns:UntagResource",
)
_ALARM_READ_ACTIONS = ("cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource")
_ALARM_WRITE_ACTIONS = (
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:DeleteAlarms",
    "cloudwatch:TagResource",
    "cloudwatch:UntagResource",
)
_KEY_READ_ACTIONS = (
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListResourceTags",
)
# No kms:Decrypt/Encrypt: the deploy role manages the alert topic's key, the services that
# publish to the topic use it.
_KEY_WRITE_ACTIONS = (
    "kms:EnableKeyRotation",
    "kms:UpdateKeyDescription",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
)
# What promotion needs from the source stage's registry to copy an image by digest.
RELEASE_IMAGE_READ_ACTIONS = (
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
    "ecr:DescribeImages",
)
_ALIAS_ACTIONS = ("kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias")
# The state's secrets key (see `state_key_policy`).
STATE_KEY_USE_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey")
STATE_KEY_ADMIN_ACTIONS = (
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListResourceTags",
    "kms:ListAliases",
    "kms:PutKeyPolicy",
    "kms:EnableKeyRotation",
    "kms:DisableKey",
    "kms:EnableKey",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateKeyDescription",
)
_BUDGET_READ_ACTIONS = ("budgets:ViewBudget", "budgets:ListTagsForResource")
_BUDGET_WRITE_ACTIONS = ("budgets:ModifyBudget", "budgets:TagResource", "budgets:UntagResource")


# --- names shared by the components and the policies ----------------------------------------


def deploy_role_name(prefix: str) -> str:
    return f"{prefix}-deploy"


def preview_role_name(prefix: str) -> str:
    return f"{prefix}-preview"


def release_repository_name(prefix: str) -> str:
    """The stack's ECR repository (infra.artifacts.repository_name uses this)."""
    return f"{prefix}-app"


# Every image a release names carries a tag starting with this (`release-<service>-<version>`): `build
# --image` adds it in the first stage's registry, promotion when it copies the image to the next one.
# The registry's lifecycle policy never expires them (infra.artifacts.ecr_lifecycle_policy).
RELEASE_TAG_PREFIX = "release-"


def release_image_tag(service: str, version: str) -> str:
    return f"{RELEASE_TAG_PREFIX}{service}-{version}"


def package_key(service: str, digest: str) -> str:
    """Where a zip package lives in the artifact bucket: named by its content, so never overwritten."""
    return f"{PACKAGES_PREFIX}/{service}/{digest.removeprefix('sha256:')}.zip"


def artifact_bucket_prefix(prefix: str) -> str:
    """S3 appends a unique suffix to this (infra.artifacts.bucket_prefix uses this)."""
    return f"{prefix}-artifacts-"


def frontend_bucket_prefix(prefix: str) -> str:
    """S3 appends a unique suffix to this (infra.frontend.bucket_prefix uses this)."""
    return f"{prefix}-frontend-"


def read_only_environment(environment: str) -> str:
    """The GitHub environment of scheduled read-only jobs (drift checks) for `environment`.

    It has no reviewers (a scheduled job cannot wait for one) and admits protected branches
    only; the preview role trusts its subject besides `pull_request`.
    """
    return f"{environment}-readonly"


def boundary_policy_name(prefix: str) -> str:
    return f"{prefix}-boundary"


def deploy_policy_name(prefix: str, part: str) -> str:
    return f"{prefix}-deploy-{part}"


def preview_policy_name(prefix: str, part: str) -> str:
    return f"{prefix}-preview-{part}"


def deploy_policy_parts(*, has_state: bool) -> tuple[str, ...]:
    """Managed policies the deploy role gets: split by service so each stays under IAM's size limit."""
    return (*DEPLOY_POLICY_PARTS, STATE_PART) if has_state else DEPLOY_POLICY_PARTS


def preview_policy_parts(*, has_state: bool) -> tuple[str, ...]:
    return (*PREVIEW_POLICY_PARTS, STATE_PART) if has_state else PREVIEW_POLICY_PARTS


# --- trust ----------------------------------------------------------------------------------


def check_subject(subject: str) -> str:
    """Refuse any OIDC subject that is not one exact repository and context."""
    if any(c in subject for c in "*?"):
        raise ValueError(f"OIDC subject must be exact, without wildcards, got {subject!r}")
    if not subject.startswith("repo:") or subject.count(":") < 2:
        raise ValueError(f'OIDC subject must look like "repo:OWNER/REPO:CONTEXT", got {subject!r}')
    return subject


def oidc_trust_policy(provider_arn: str, subjects: str | Sequence[str]) -> Document:
    """Trust for GitHub Actions jobs whose token carries exactly one of `subjects` for AWS STS.

    StringEquals, never StringLike: a job that references the GitHub environment `prod` gets
    `…:environment:prod` and nothing else may match. Both claims are required; `aud` alone
    would let any repository on GitHub assume the role.
    """
    listed = [subjects] if isinstance(subjects, str) else list(subjects)
    if not listed:
        raise ValueError("a trust policy needs at least one OIDC subject")
    for subject in listed:
        check_subject(subject)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "GitHubActions",
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{OIDC_HOST}:aud": OIDC_AUDIENCE,
                        f"{OIDC_HOST}:sub": listed[0] if len(listed) == 1 else listed,
                    },
                },
            }
        ],
    }


# --- scope ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Everything an environment's permission documents are scoped by."""

    partition: str
    account_id: str
    region: str
    prefix: str  # "<project>-<stack>"
    environment: str
    project: str
    stack: str
    oidc_provider_arn: str
    boundary_policy_arn: str
    state_bucket: str | None = None
    state_kms_key_arn: str | None = None
    # "<project>-<promotion.source>": the stage this one receives releases from. Promotion runs
    # with this stage's deploy role and copies the release's images and frontend files from there.
    source_prefix: str | None = None
    # The promotion source's stack name: promotion reads its outputs and history (never its key).
    source_stack: str | None = None

    @property
    def has_state(self) -> bool:
        return self.state_bucket is not None or self.state_kms_key_arn is not None

    def arn(self, service: str, resource: str, *, regional: bool = True, account: bool = True) -> str:
        region = self.region if regional else ""
        account_id = self.account_id if account else ""
        return f"arn:{self.partition}:{service}:{region}:{account_id}:{resource}"

    def iam(self, resource: str) -> str:
        return self.arn("iam", resource, regional=False)

    @property
    def own_roles(self) -> str:
        return self.iam(f"role/{self.prefix}-*")

    @property
    def own_policies(self) -> str:
        return self.iam(f"policy/{self.prefix}-*")

    @property
    def trust_roles(self) -> list[str]:
        return [
            self.iam(f"role/{deploy_role_name(self.prefix)}"),
            self.iam(f"role/{preview_role_name(self.prefix)}"),
        ]

    @property
    def functions(self) -> str:
        # Also matches qualified ARNs (":live", ":7"): "*" spans the colon.
        return self.arn("lambda", f"function:{self.prefix}-*")

    @property
    def lambda_log_groups(self) -> str:
        return self.arn("logs", f"log-group:/aws/lambda/{self.prefix}-*")

    @property
    def log_groups(self) -> list[str]:
        return [self.lambda_log_groups, self.arn("logs", f"log-group:/aws/apigateway/{self.prefix}-*")]

    @property
    def buckets(self) -> list[str]:
        return [
            f"arn:{self.partition}:s3:::{self.prefix}-artifacts-*",
            f"arn:{self.partition}:s3:::{self.prefix}-frontend-*",
        ]

    @property
    def objects(self) -> list[str]:
        return [f"{bucket}/*" for bucket in self.buckets]

    @property
    def repositories(self) -> str:
        return self.arn("ecr", f"repository/{self.prefix}-*")

    @property
    def source_repository(self) -> str:
        """The promotion source's repository, in any account and region: the source may live elsewhere."""
        return f"arn:{self.partition}:ecr:*:*:repository/{release_repository_name(self._source())}"

    @property
    def source_frontend_buckets(self) -> str:
        return f"arn:{self.partition}:s3:::{frontend_bucket_prefix(self._source())}*"

    def _source(self) -> str:
        if self.source_prefix is None:
            raise ValueError(f"{self.prefix} has no promotion source: it is the first stage")
        return self.source_prefix

    @property
    def topics(self) -> str:
        return self.arn("sns", f"{self.prefix}-*")

    @property
    def alarms(self) -> str:
        return self.arn("cloudwatch", f"alarm:{self.prefix}-*")

    @property
    def dashboards(self) -> list[str]:
        return [
            self.arn("cloudwatch", f"dashboard/{self.prefix}", regional=False),
            self.arn("cloudwatch", f"dashboard/{self.prefix}-*", regional=False),
        ]

    @property
    def keys(self) -> str:
        return self.arn("kms", "key/*")

    @property
    def key_aliases(self) -> str:
        return self.arn("kms", f"alias/{self.prefix}-*")

    @property
    def budgets(self) -> str:
        return self.arn("budgets", f"budget/{self.prefix}-*", regional=False)

    @property
    def cloudfront_configs(self) -> list[str]:
        # Origin access controls, response-headers and cache policies: generated IDs, no tags.
        return [
            self.arn("cloudfront", f"{kind}/*", regional=False)
            for kind in ("origin-access-control", "response-headers-policy", "cache-policy")
        ]

    @property
    def distributions(self) -> str:
        return self.arn("cloudfront", "distribution/*", regional=False)

    def apigateway(self, path: str) -> str:
        # API Gateway ARNs carry no account: "arn:aws:apigateway:eu-west-1::/apis/abc".
        return self.arn("apigateway", path, account=False)

    @property
    def env_tag_is_ours(self) -> dict[str, dict[str, str]]:
        return {"StringEquals": {f"aws:ResourceTag/{ENVIRONMENT_TAG}": self.environment}}

    @property
    def env_tag_not_ours(self) -> dict[str, dict[str, str]]:
        """True for another environment's resource and for an untagged one (the key is then absent)."""
        return {"StringNotEquals": {f"aws:ResourceTag/{ENVIRONMENT_TAG}": self.environment}}

    @property
    def request_tags_ours(self) -> dict[str, dict[str, str]]:
        return {"StringEquals": {f"aws:RequestTag/{ENVIRONMENT_TAG}": self.environment}}

    def state_object(self, key: str) -> str:
        if self.state_bucket is None:
            raise ValueError(f"{self.prefix} names no state bucket (stageline:state.bucket)")
        return f"arn:{self.partition}:s3:::{self.state_bucket}/{STATE_ROOT}/{key}"


def _allow(
    sid: str,
    actions: Iterable[str],
    resources: str | Sequence[str],
    condition: Mapping[str, Any] | None = None,
) -> Statement:
    statement: Statement = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": list(actions),
        "Resource": resources if isinstance(resources, str) else list(resources),
    }
    if condition:
        statement["Condition"] = dict(condition)
    return statement


def _deny(
    sid: str,
    actions: Iterable[str],
    resources: str | Sequence[str],
    condition: Mapping[str, Any] | None = None,
) -> Statement:
    statement = _allow(sid, actions, resources, condition)
    statement["Effect"] = "Deny"
    return statement


def _document(statements: Iterable[Statement]) -> Document:
    return {"Version": "2012-10-17", "Statement": list(statements)}


# --- the permissions boundary -----------------------------------------------------------------


def boundary_policy(
    *, partition: str, account_id: str, region: str, prefix: str, grants: Iterable[Grant] = ()
) -> Document:
    """The most any role the deploy role creates may ever do.

    Service execution roles write their own log groups and use what `services[].grants` in
    the stack file allow (config already refuses `iam:` grants). Nothing else: no IAM, no STS,
    so code running in a function cannot reach beyond what the stack file says.
    """
    log_groups = f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/lambda/{prefix}-*"
    statements = [
        _allow(
            "OwnLogGroups",
            ("logs:CreateLogStream", "logs:PutLogEvents"),
            [log_groups, f"{log_groups}:log-stream:*"],
        )
    ]
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    for grant in grants:
        key = (tuple(sorted(grant.actions)), tuple(sorted(grant.resources)))
        if key in seen:
            continue
        seen.add(key)
        statements.append(_allow(f"ServiceGrant{len(seen)}", key[0], list(key[1])))
    return _document(statements)


# --- deploy ---------------------------------------------------------------------------------


def _deploy_iam(s: Scope) -> list[Statement]:
    boundary = {"StringEquals": {"iam:PermissionsBoundary": s.boundary_policy_arn}}
    return [
        _allow("ReadOwnRoles", _ROLE_READ_ACTIONS, s.own_roles),
        _allow("ReadOwnPolicies", _POLICY_READ_ACTIONS, s.own_policies),
        _allow("ReadOidcProvider", ("iam:GetOpenIDConnectProvider",), s.oidc_provider_arn),
        # Service execution roles: only ever with the boundary attached, so whatever their
        # inline policies say, they can do no more than the boundary allows.
        _allow("ServiceRolesWithBoundary", _ROLE_WRITE_ACTIONS, s.own_roles, boundary),
        _allow(
            "AttachAwsServiceRolePolicies",
            _ROLE_ATTACH_ACTIONS,
            s.own_roles,
            {
                **boundary,
                "ArnLike": {"iam:PolicyARN": f"arn:{s.partition}:iam::aws:policy/service-role/*"},
            },
        ),
        _allow("TagServiceRoles", _ROLE_TAG_ACTIONS, s.own_roles),
        _allow(
            "PassServiceRolesToLambda",
            ("iam:PassRole",),
            s.own_roles,
            {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
        ),
        # Explicit denies win over any allow, including ones added to the role by hand later.
        _deny(
            "NeverChangeTrustRoles",
            (
                *_ROLE_WRITE_ACTIONS,
                *_ROLE_ATTACH_ACTIONS,
                *_ROLE_TAG_ACTIONS,
                "iam:DeleteRolePermissionsBoundary",
                "iam:PassRole",
            ),
            s.trust_roles,
        ),
        _deny("NeverChangeOwnPolicies", _POLICY_WRITE_ACTIONS, s.own_policies),
        _deny("NeverDropBoundaries", ("iam:DeleteRolePermissionsBoundary",), s.own_roles),
    ]


def _deploy_compute(s: Scope) -> list[Statement]:
    return [
        _allow("Functions", (*_LAMBDA_READ_ACTIONS, *_LAMBDA_WRITE_ACTIONS), s.functions),
        # Invoke permissions only for API Gateway: a deploy job cannot open a function to
        # another account or to the public.
        _allow(
            "FunctionInvokeByApiGateway",
            ("lambda:AddPermission",),
            s.functions,
            {"StringEquals": {"lambda:Principal": "apigateway.amazonaws.com"}},
        ),
        _allow("LogGroups", (*_LOG_GROUP_READ_ACTIONS, *_LOG_GROUP_WRITE_ACTIONS), s.log_groups),
        _allow("DescribeLogGroups", ("logs:DescribeLogGroups",), "*"),
        _allow(
            "HttpApiAccessLogDelivery",
            (
                "logs:CreateLogDelivery",
                "logs:GetLogDelivery",
                "logs:UpdateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:DescribeResourcePolicies",
            ),
            "*",
        ),
        _allow("CreateTaggedHttpApi", ("apigateway:POST",), s.apigateway("/apis"), s.request_tags_ours),
        _allow(
            "ManageTaggedHttpApi",
            ("apigateway:GET", "apigateway:PATCH", "apigateway:DELETE"),
            s.apigateway("/apis/*"),
            s.env_tag_is_ours,
        ),
        # Routes, integrations, stages and deployments of an HTTP API do not inherit the API's
        # tags (only REST APIs do), so they can only be scoped to this region's APIs. Tag changes
        # are not granted at all: tags are set on create, and re-tagging someone else's API
        # would hand it to this environment.
        _allow(
            "ManageHttpApiChildren",
            ("apigateway:GET", "apigateway:POST", "apigateway:PATCH", "apigateway:DELETE"),
            s.apigateway("/apis/*/*"),
        ),
    ]


def _deploy_edge(s: Scope) -> list[Statement]:
    return [
        # Tags are set by the create call itself (authorized with aws:RequestTag); no statement
        # lets this role tag a distribution that is not already this environment's.
        _allow("CreateTaggedDistributions", ("cloudfront:CreateDistribution",), "*", s.request_tags_ours),
        _allow(
            "ManageTaggedDistributions",
            (*_DISTRIBUTION_READ_ACTIONS, *_DISTRIBUTION_WRITE_ACTIONS),
            s.distributions,
            s.env_tag_is_ours,
        ),
        # Explicit, so that no allow added later can hand over a distribution by tagging it: every
        # change to a distribution that is untagged or another environment's is refused.
        _deny(
            "NeverTouchDistributionsNotOurs",
            _DISTRIBUTION_WRITE_ACTIONS,
            s.distributions,
            s.env_tag_not_ours,
        ),
        _allow(
            "CreateCloudFrontConfigs",
            (
                "cloudfront:CreateOriginAccessControl",
                "cloudfront:CreateResponseHeadersPolicy",
                "cloudfront:CreateCachePolicy",
            ),
            "*",
        ),
        _allow(
            "ManageCloudFrontConfigs",
            (*_CLOUDFRONT_CONFIG_READ_ACTIONS, *_CLOUDFRONT_CONFIG_WRITE_ACTIONS),
            s.cloudfront_configs,
        ),
        _allow("OwnBuckets", (*_BUCKET_READ_ACTIONS, *_BUCKET_WRITE_ACTIONS), s.buckets),
        _allow("OwnObjects", _OBJECT_ACTIONS, s.objects),
        *_read_source_releases(s),
    ]


def _read_source_releases(s: Scope) -> list[Statement]:
    """Promotion copies `releases/<release>/` from the source stage's frontend bucket and the release's
    packages from its artifact bucket: read those only."""
    if s.source_prefix is None:
        return []
    return [
        _allow(
            "ListSourceReleases",
            ("s3:ListBucket",),
            s.source_frontend_buckets,
            {"StringLike": {"s3:prefix": f"{RELEASES_PREFIX}/*"}},
        ),
        _allow("ReadSourceReleases", ("s3:GetObject",), f"{s.source_frontend_buckets}/{RELEASES_PREFIX}/*"),
        # Zip packages are copied by key (packages/<service>/<sha256>.zip): no listing needed.
        _allow(
            "ReadSourcePackages",
            ("s3:GetObject",),
            f"arn:{s.partition}:s3:::{artifact_bucket_prefix(s.source_prefix)}*/{PACKAGES_PREFIX}/*",
        ),
    ]


def _deploy_ops(s: Scope) -> list[Statement]:
    return [
        _allow("Repository", (*_ECR_READ_ACTIONS, *_ECR_WRITE_ACTIONS), s.repositories),
        _allow("RegistryLogin", ("ecr:GetAuthorizationToken",), "*"),
        _allow("AlertTopics", (*_TOPIC_READ_ACTIONS, *_TOPIC_WRITE_ACTIONS), s.topics),
        _allow(
            "AlertSubscriptions",
            ("sns:GetSubscriptionAttributes", "sns:SetSubscriptionAttributes", "sns:Unsubscribe"),
            "*",
        ),
        _allow("Alarms", (*_ALARM_READ_ACTIONS, *_ALARM_WRITE_ACTIONS), s.alarms),
        _allow(
            "Dashboards",
            ("cloudwatch:GetDashboard", "cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards"),
            s.dashboards,
        ),
        _allow("Budgets", (*_BUDGET_READ_ACTIONS, *_BUDGET_WRITE_ACTIONS), s.budgets),
        # KMS keys have generated IDs: created with the environment tag, managed only while
        # they carry it. The key policy's lockout check always applies.
        _allow(
            "CreateTaggedKeys",
            ("kms:CreateKey",),
            "*",
            {**s.request_tags_ours, "BoolIfExists": {"kms:BypassPolicyLockoutSafetyCheck": "false"}},
        ),
        _allow("ManageTaggedKeys", (*_KEY_READ_ACTIONS, *_KEY_WRITE_ACTIONS), s.keys, s.env_tag_is_ours),
        # No key that is untagged or another environment's (the state's secrets key among them)
        # can be changed, tagged, or have its policy replaced, whatever allow comes later.
        _deny(
            "NeverTouchKeysNotOurs",
            (*_KEY_WRITE_ACTIONS, "kms:PutKeyPolicy"),
            s.keys,
            s.env_tag_not_ours,
        ),
        _allow(
            "SetTaggedKeyPolicies",
            ("kms:PutKeyPolicy",),
            s.keys,
            {**s.env_tag_is_ours, "BoolIfExists": {"kms:BypassPolicyLockoutSafetyCheck": "false"}},
        ),
        # An alias change is authorized on both the alias and the key it points at.
        _allow("OwnKeyAliases", _ALIAS_ACTIONS, s.key_aliases),
        _allow("ListKeyAliases", ("kms:ListAliases",), "*"),
        # Promotion copies the release's images by digest from the source stage's repository.
        *(
            [_allow("PullSourceImages", RELEASE_IMAGE_READ_ACTIONS, s.source_repository)]
            if s.source_prefix is not None
            else []
        ),
    ]


def _state(s: Scope, *, write: bool) -> list[Statement]:
    """The DIY backend's objects for this stack, and its secrets key.

    Only this stack's objects: `meta.yaml`, its checkpoint, history and backups. The deploy role
    writes its checkpoint, history, backups and lock, and deletes only its lock and checkpoint
    files, never history or backups. The preview role reads and writes nothing else: a preview or
    a preview-only refresh on a DIY backend takes no lock, so it needs none. A stage with a
    promotion source also reads that source's checkpoint and history (its outputs and last good
    release) — never its lock or its secrets key, so the source's secrets stay ciphertext.
    """
    statements: list[Statement] = []
    project, stack = s.project, s.stack
    if s.state_bucket is not None:
        checkpoint = s.state_object(f"stacks/{project}/{stack}.json*")
        history = s.state_object(f"history/{project}/{stack}/*")
        backups = s.state_object(f"backups/{project}/{stack}/*")
        # The DIY backend keys locks by the stack's fully qualified name, which for
        # project-scoped stacks is "organization/<project>/<stack>".
        lock = s.state_object(f"locks/organization/{project}/{stack}/*")
        statements.append(
            _allow(
                "StateBucket",
                ("s3:ListBucket", "s3:GetBucketLocation"),
                f"arn:{s.partition}:s3:::{s.state_bucket}",
            )
        )
        meta = s.state_object("meta.yaml")
        if write:
            statements += [
                _allow("ReadOwnState", ("s3:GetObject",), [meta, checkpoint, history, backups, lock]),
                _allow("WriteOwnState", ("s3:PutObject", "s3:DeleteObject"), [checkpoint, lock]),
                _allow("AppendOwnHistory", ("s3:PutObject",), [history, backups]),
            ]
            if s.source_stack is not None:
                statements.append(
                    _allow(
                        "ReadSourceState",
                        ("s3:GetObject",),
                        [
                            s.state_object(f"stacks/{project}/{s.source_stack}.json*"),
                            s.state_object(f"history/{project}/{s.source_stack}/*"),
                        ],
                    )
                )
        else:
            statements.append(_allow("ReadOwnState", ("s3:GetObject",), [meta, checkpoint, history]))
    if s.state_kms_key_arn is not None:
        actions = (
            ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")
            if write
            else ("kms:Decrypt", "kms:DescribeKey")
        )
        statements.append(_allow("StateSecretsKey", actions, s.state_kms_key_arn))
    return statements


def state_key_policy(
    *, partition: str, account_id: str, prefix: str, administrators: Sequence[str]
) -> Document:
    """The key policy of one environment's `awskms://` secrets key (created by the bootstrap).

    Administrators (the people who run the bootstrap and the trust layer's `pulumi up`) manage the
    key and may use it; of the roles GitHub jobs assume, only this environment's deploy role may
    encrypt and decrypt, and its preview role decrypt. The account itself is named as principal
    only together with an exact role ARN, so no other identity in the account — another
    environment's roles included — gets the key through an IAM policy.
    """
    if not administrators:
        raise ValueError("a state key policy needs at least one administrator")
    root = f"arn:{partition}:iam::{account_id}:root"

    def role(name: str) -> str:
        return f"arn:{partition}:iam::{account_id}:role/{name}"

    def for_role(sid: str, actions: Iterable[str], role_arn: str) -> Statement:
        return {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": list(actions),
            "Resource": "*",
            "Condition": {"ArnEquals": {"aws:PrincipalArn": role_arn}},
        }

    admins = {"AWS": list(administrators)}
    return _document(
        [
            {
                "Sid": "KeyAdministrators",
                "Effect": "Allow",
                "Principal": admins,
                "Action": list(STATE_KEY_ADMIN_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "AdministratorsUseTheKey",
                "Effect": "Allow",
                "Principal": admins,
                "Action": list(STATE_KEY_USE_ACTIONS),
                "Resource": "*",
            },
            for_role("DeployRoleUsesTheKey", STATE_KEY_USE_ACTIONS, role(deploy_role_name(prefix))),
            for_role(
                "PreviewRoleDecrypts", ("kms:Decrypt", "kms:DescribeKey"), role(preview_role_name(prefix))
            ),
        ]
    )


def deploy_policies(scope: Scope) -> dict[str, Document]:
    """The deploy role's managed policies, by part (see `deploy_policy_parts`)."""
    builders = {"iam": _deploy_iam, "compute": _deploy_compute, "edge": _deploy_edge, "ops": _deploy_ops}
    docs = {part: _document(builders[part](scope)) for part in DEPLOY_POLICY_PARTS}
    if scope.has_state:
        docs[STATE_PART] = _document(_state(scope, write=True))
    return docs


# --- preview --------------------------------------------------------------------------------


def _preview_read(s: Scope) -> list[Statement]:
    return [
        _allow("ReadOwnIam", (*_ROLE_READ_ACTIONS, *_POLICY_READ_ACTIONS), [s.own_roles, s.own_policies]),
        _allow("ReadOidcProvider", ("iam:GetOpenIDConnectProvider",), s.oidc_provider_arn),
        _allow("ReadFunctions", _LAMBDA_READ_ACTIONS, s.functions),
        _allow("ReadLogGroups", _LOG_GROUP_READ_ACTIONS, s.log_groups),
        _allow("DescribeLogGroups", ("logs:DescribeLogGroups",), "*"),
        _allow("ReadHttpApis", ("apigateway:GET",), s.apigateway("/apis/*")),
        _allow("ReadTaggedDistributions", _DISTRIBUTION_READ_ACTIONS, s.distributions, s.env_tag_is_ours),
        _allow(
            "ReadCloudFrontConfigs",
            _CLOUDFRONT_CONFIG_READ_ACTIONS,
            s.cloudfront_configs,
        ),
        _allow("ReadBuckets", _BUCKET_READ_ACTIONS, s.buckets),
        _allow("ReadRepository", _ECR_READ_ACTIONS, s.repositories),
        _allow("ReadTopics", _TOPIC_READ_ACTIONS, s.topics),
        _allow("ReadSubscriptions", ("sns:GetSubscriptionAttributes",), "*"),
        _allow("ReadAlarms", _ALARM_READ_ACTIONS, s.alarms),
        _allow("ReadDashboards", ("cloudwatch:GetDashboard",), s.dashboards),
        _allow("ReadBudgets", _BUDGET_READ_ACTIONS, s.budgets),
        _allow("ReadTaggedKeys", _KEY_READ_ACTIONS, s.keys, s.env_tag_is_ours),
        _allow("ListKeyAliases", ("kms:ListAliases",), "*"),
    ]


def preview_policies(scope: Scope) -> dict[str, Document]:
    """The preview role's managed policies: read what the stack owns, lock its state, nothing else."""
    docs = {"read": _document(_preview_read(scope))}
    if scope.has_state:
        docs[STATE_PART] = _document(_state(scope, write=False))
    return docs


# --- buckets --------------------------------------------------------------------------------


def tls_only_bucket_policy(bucket_arn: str) -> Document:
    """Refuse every request to the bucket and its objects that does not arrive over TLS."""
    return _document(
        [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    )


# --- releases other accounts may read ---------------------------------------------------------


def release_reader_statement(
    sid: str,
    actions: Sequence[str],
    *,
    partition: str,
    accounts: Sequence[str],
    project: str,
    resources: str | Sequence[str] | None = None,
    condition: Mapping[str, Any] | None = None,
) -> Statement:
    """A resource-policy statement letting the deploy roles of other accounts read releases.

    Promotion runs with the *target* stage's deploy role and reads the release from the source
    stage. Within one account the role's own policy is enough; from another account the source's
    resource policy must also allow it. The principal is the other account, narrowed to its roles
    named like deploy roles of this project (`<project>-<stack>-deploy`), so no user and no
    service role there can read the releases.
    """
    if not accounts:
        raise ValueError("a release reader statement needs at least one account")
    statement: Statement = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": [f"arn:{partition}:iam::{account}:root" for account in accounts]},
        "Action": list(actions),
    }
    if resources is not None:
        statement["Resource"] = resources if isinstance(resources, str) else list(resources)
    statement["Condition"] = {
        **(condition or {}),
        "ArnLike": {
            "aws:PrincipalArn": [
                f"arn:{partition}:iam::{account}:role/{deploy_role_name(f'{project}-*')}"
                for account in accounts
            ]
        },
    }
    return statement


# --- checks ---------------------------------------------------------------------------------


def policy_size(document: Mapping[str, Any]) -> int:
    """Characters IAM counts against a policy's size limit (it ignores whitespace)."""
    return len(json.dumps(document, separators=(",", ":")))
