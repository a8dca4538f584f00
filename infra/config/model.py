"""The config model: the frozen dataclasses a stack file becomes, and the values they may hold.

Defaults live here and only here: a reader that finds no value returns the dataclass's default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

NAMESPACE = "stageline"
DEFAULT_STACKS = ("dev", "staging", "prod")

STACK_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
REPOSITORY_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,29}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
FRONTEND_RELEASE_RE = re.compile(r"^[0-9a-f]{64}$")  # the sha256 of a frontend release's manifest
RUNTIME_RE = re.compile(r"^python3\.[0-9]{1,2}$")
HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")
SOURCE_RE = re.compile(
    r"^(?!/)(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9_./-]+$"
)  # a relative path inside the repository
# ECR's scan severities, lowest first; a build refuses an image with a finding at or above the threshold.
SCAN_SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
ROUTE_RE = re.compile(r"^(ANY|GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /[A-Za-z0-9_{}+/.-]*$")
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ARN_RE = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$")
# An ARN a grant may name: partition, service, region, account (12 digits, "aws" for AWS-managed, or
# none) and a resource; wildcards are judged by infra.iam.reach_beyond, not by this shape.
GRANT_ARN_RE = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(?:\d{12}|aws)?:\S+$")
# A KMS key (or alias) named exactly: the state's secrets key, nothing wider.
KMS_KEY_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:kms:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:(?:key/[A-Za-z0-9-]{1,128}|alias/[A-Za-z0-9/_-]{1,250})$"
)
# Tags (AWS's limits for every taggable resource): letters, numbers and spaces of any script, and
# _ . : / = + - @; keys up to 128 characters, values up to 256; the aws: prefix is AWS's own.
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
TAG_PUNCTUATION = frozenset("_.:/=+-@")
# AWS allows 50 tags on a resource; the program adds RESERVED_TAGS and some resources carry a few of
# their own, so a stack file may set this many.
TAGS_MAX = 40
# Tags the program sets on every resource itself (as provider default tags).
RESERVED_TAGS = ("project", "environment", "managed-by")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LAMBDA_VERSION_RE = re.compile(r"^[1-9][0-9]*$")
ACCOUNT_ID_RE = re.compile(r"^[0-9]{12}$")

# The values CloudWatch Logs accepts for retention_in_days.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
PRICE_CLASSES = ("PriceClass_100", "PriceClass_200", "PriceClass_All")
# Lambda environment variables AWS reserves for its own runtime.
RESERVED_ENV_VARS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)

# Variables the platform sets on every function (release and environment, for health endpoints).
STAGELINE_ENV_VARS = frozenset({"STAGELINE_RELEASE", "STAGELINE_ENVIRONMENT", "STAGELINE_PACKAGE"})
# Lambda's limit is 4 KB for all variables; leave room for the two Stageline adds.
ENVIRONMENT_MAX_BYTES = 3900

# Keys read as secrets. A plain-text value for any of them is an error, so a webhook URL
# cannot end up readable in a committed stack file.
SECRET_KEYS = frozenset({"slackWebhookUrl"})

# Words that say a value is a secret, in a config key of any namespace (`github:token`,
# `aws:secretKey`) or an environment variable's name (`DB_PASSWORD`, `STRIPE_API_KEY`).
SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "privatekey",
        "credential",
        "credentials",
        "webhook",
        "signingkey",
        "secretkey",
        "accesskey",
        "sessiontoken",
        "clientsecret",
    }
)
SECRET_WORD_PAIRS = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("signing", "key"),
        ("secret", "key"),
        ("access", "key"),
        ("session", "token"),
        ("client", "secret"),
        ("auth", "key"),
        ("encryption", "key"),
    }
)
# A last word that makes the name a reference to a secret, or a setting about one, not its value:
# DB_PASSWORD_SECRET_ARN, TOKEN_PARAMETER_NAME, TOKEN_TTL_SECONDS.
SECRET_REFERENCE_WORDS = frozenset(
    {
        "arn",
        "name",
        "id",
        "path",
        "file",
        "files",
        "ref",
        "param",
        "parameter",
        "url",
        "uri",
        "endpoint",
        "host",
        "header",
        "ttl",
        "seconds",
        "minutes",
        "timeout",
        "type",
        "enabled",
        "validation",
        "version",
        "region",
        "length",
        "profile",
        "env",
        "var",
        "variable",
        "key_id",
        "kid",
    }
)


# What every secret value shows instead of itself: in the driver's output, offline renders, and the
# properties the guardrail rules see.
MASK = "[secret]"


class ConfigError(ValueError):
    """A stack configuration problem, as one line naming the key."""


class Secret:
    """A secret config value seen outside the engine (the driver reading a stack file).

    It never holds the plaintext: stack files store ciphertext, and only the engine decrypts.
    """

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__


# --- the dataclasses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reviewers:
    users: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.users or self.teams)


@dataclass(frozen=True)
class DeploymentBranches:
    """Which refs may deploy to the environment: protected branches, or named patterns."""

    protected_branches: bool = False
    branch_patterns: tuple[str, ...] = ()
    tag_patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnvironmentProtection:
    reviewers: Reviewers = field(default_factory=Reviewers)
    prevent_self_review: bool = False
    can_admins_bypass: bool = True
    wait_timer_minutes: int = 0
    deployment_branches: DeploymentBranches | None = None


@dataclass(frozen=True)
class GitHubConfig:
    repository: str  # "owner/name"
    manage: bool = True
    owner_id: int | None = None
    repository_id: int | None = None
    protection: EnvironmentProtection = field(default_factory=EnvironmentProtection)
    # Pull-request jobs may assume this stack's preview role (and so decrypt its secrets).
    pull_request_previews: bool = False
    # The stacks (this one included, if listed) whose GitHub environments and protection rules this
    # stack declares: only a stack deployed under review may hold the token that can change them.
    protects: tuple[str, ...] = ()

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]

    def subject(self, context: str) -> str:
        """The OIDC `sub` claim GitHub issues for `context` (e.g. "environment:prod").

        With both numeric IDs configured, the immutable format GitHub offers
        (`repo:OWNER@OWNER_ID/REPO@REPO_ID:…`) is used: it survives a repository rename and
        cannot be claimed by a new repository that takes over a deleted name.
        """
        if self.owner_id is not None and self.repository_id is not None:
            return f"repo:{self.owner}@{self.owner_id}/{self.name}@{self.repository_id}:{context}"
        return f"repo:{self.repository}:{context}"


@dataclass(frozen=True)
class OidcConfig:
    provider_arn: str | None = None  # an existing provider in the account; None: the stack creates it


@dataclass(frozen=True)
class StateConfig:
    """Where Pulumi keeps this stack's state and secrets, so CI roles can reach them."""

    bucket: str | None = None
    kms_key_arn: str | None = None


@dataclass(frozen=True)
class ArtifactsConfig:
    noncurrent_version_days: int = 30
    abort_multipart_days: int = 7
    keep_images: int = 30
    protect: bool = False  # protect=True and retain on delete for the bucket and the registry
    # AWS accounts whose `<project>-*-deploy` roles may read this stack's releases (images and
    # frontend files): the accounts of the stages that promote from this one.
    reader_accounts: tuple[str, ...] = ()
    # `build --image` refuses an image whose scan found a vulnerability at or above this severity.
    scan_severity: str = "HIGH"


@dataclass(frozen=True)
class Canary:
    weight: float
    stable_versions: Mapping[str, str]  # service -> published Lambda version that keeps 1-weight


@dataclass(frozen=True)
class Release:
    version: str
    images: Mapping[str, str]  # service -> "sha256:…" (an image in the stack's registry)
    canary: Canary | None = None
    candidate: str | None = None  # frontend release the TEST distribution serves; default: the APP's
    packages: Mapping[str, str] = field(default_factory=dict)  # service -> "sha256:…" of its zip package
    frontend: str | None = None  # the frontend release (its manifest's sha256); default: version

    @property
    def frontend_version(self) -> str:
        """The frontend release the APP distribution serves: `releases/<this>/` in the frontend bucket."""
        return self.frontend or self.version

    @property
    def candidate_version(self) -> str:
        return self.candidate or self.frontend_version


@dataclass(frozen=True)
class Grant:
    actions: tuple[str, ...]
    resources: tuple[str, ...]


@dataclass(frozen=True)
class Service:
    name: str
    memory_mb: int = 256
    timeout_seconds: int = 10
    reserved_concurrency: int | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    health_path: str = ""  # empty: "/<name>/health"
    routes: tuple[str, ...] = ()
    grants: tuple[Grant, ...] = ()
    # For a service deployed from a zip package (release.packages): the Lambda runtime and handler,
    # and the folder `build` packages (relative to the repository root).
    runtime: str = "python3.12"
    handler: str = "handler.handler"
    source: str = ""  # empty: "app/services/<name>"

    def __post_init__(self) -> None:
        if not self.health_path:
            object.__setattr__(self, "health_path", f"/{self.name}/health")
        if not self.source:
            object.__setattr__(self, "source", f"app/services/{self.name}")


@dataclass(frozen=True)
class ApiConfig:
    burst_limit: int = 50
    rate_limit: float = 100.0


@dataclass(frozen=True)
class FrontendConfig:
    price_class: str = "PriceClass_100"
    source: str = "app/frontend"  # the folder `build` uploads as a frontend release


@dataclass(frozen=True)
class AlarmsConfig:
    email: str | None = None
    error_threshold: int = 1
    throttle_threshold: int = 1
    p95_duration_ms: int = 3000
    api_5xx_threshold: int = 1
    period_seconds: int = 60
    evaluation_periods: int = 1


@dataclass(frozen=True)
class BudgetConfig:
    monthly_limit_usd: float
    thresholds: tuple[int, ...] = (80, 100)
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifyConfig:
    timeout_seconds: int = 120
    interval_seconds: float = 2.0
    frontend_path: str = "/"


@dataclass(frozen=True)
class PromotionConfig:
    source: str | None = None  # the stack whose release this one receives; None: the first stage
    approval: bool = False
    bake_seconds: int = 0
    canary_weight: float | None = None
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()


@dataclass(frozen=True)
class Waiver:
    rule: str
    resource: str
    reason: str


@dataclass(frozen=True)
class StackConfig:
    stack: str  # also the environment name: GitHub environment, tags, name prefixes
    project: str
    region: str
    github: GitHubConfig
    release: Release
    services: tuple[Service, ...]
    budget: BudgetConfig
    oidc: OidcConfig = field(default_factory=OidcConfig)
    state: StateConfig = field(default_factory=StateConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    log_retention_days: int = 14
    api: ApiConfig = field(default_factory=ApiConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    tags: Mapping[str, str] = field(default_factory=dict)
    waivers: tuple[Waiver, ...] = ()
    slack_webhook_url: Any = None  # a secret: pulumi.Output[str] in the engine, Secret outside it

    @property
    def environment(self) -> str:
        return self.stack

    @property
    def prefix(self) -> str:
        """Name prefix of every resource this stack owns; IAM scopes deploy rights with it."""
        return f"{self.project}-{self.stack}"


# Physical names are "<project>-<stack>-…" (see StackConfig.prefix) and AWS caps their length.
# The bucket prefixes are the tightest cap (the artifact bucket's by one character): within it,
# every other name fits (a function "<prefix>-<service>" and its role "<prefix>-<service>-exec"
# stay under 64 for any service name).
BUCKET_PREFIX_MAX = 37


def field_default(cls: type, name: str) -> Any:
    """The default a dataclass gives field `name`, for readers of a class that has required fields."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
            raise TypeError(f"{cls.__name__}.{name} has no default")
    raise TypeError(f"{cls.__name__} has no field {name}")
