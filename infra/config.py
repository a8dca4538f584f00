"""Typed, validated stack configuration.

A stack file (`Pulumi.<stack>.yaml`) is read once into frozen dataclasses. Every error names
the key and the problem on one line, e.g.::

    stageline:github.repository must look like "owner/name", got "shop"

The parser is a pure function over plain values (`parse`), so the same rules serve three callers:
the Pulumi program (`load`, reading the engine's config), the driver (`read_stack_file`, reading
the YAML file without an engine), and the tests.

This module imports no provider SDK: the driver's CLI uses it and must start fast.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

NAMESPACE = "stageline"
DEFAULT_STACKS = ("dev", "staging", "prod")

STACK_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
REPOSITORY_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,29}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
ROUTE_RE = re.compile(r"^(ANY|GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /[A-Za-z0-9_{}+/.-]*$")
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ARN_RE = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$")
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
STAGELINE_ENV_VARS = frozenset({"STAGELINE_RELEASE", "STAGELINE_ENVIRONMENT"})
# Lambda's limit is 4 KB for all variables; leave room for the two Stageline adds.
ENVIRONMENT_MAX_BYTES = 3900

# Keys read as secrets. A plain-text value for any of them is an error, so a webhook URL
# cannot end up readable in a committed stack file.
SECRET_KEYS = frozenset({"slackWebhookUrl"})


class ConfigError(ValueError):
    """A stack configuration problem, as one line naming the key."""


# Provider credentials that would be stored (encrypted, but decryptable) in every stack's state.
PROVIDER_TOKEN_KEYS = ("github:token",)


def refuse_provider_tokens(keys: Iterable[str]) -> None:
    for key in sorted(set(keys) & set(PROVIDER_TOKEN_KEYS)):
        raise ConfigError(
            f"{key} must not be set: the provider's token would be stored in the state; "
            "give the job GITHUB_TOKEN in its environment instead"
        )


class Secret:
    """A secret config value seen outside the engine (the driver reading a stack file).

    It never holds the plaintext: stack files store ciphertext, and only the engine decrypts.
    """

    def __repr__(self) -> str:
        return "[secret]"

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


@dataclass(frozen=True)
class Canary:
    weight: float
    stable_versions: Mapping[str, str]  # service -> published Lambda version that keeps 1-weight


@dataclass(frozen=True)
class Release:
    version: str
    images: Mapping[str, str]  # service -> "sha256:…"
    canary: Canary | None = None
    candidate: str | None = None  # frontend release the TEST distribution serves; default: version

    @property
    def candidate_version(self) -> str:
        return self.candidate or self.version


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
    health_path: str = ""
    routes: tuple[str, ...] = ()
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True)
class ApiConfig:
    burst_limit: int = 50
    rate_limit: float = 100.0


@dataclass(frozen=True)
class FrontendConfig:
    price_class: str = "PriceClass_100"


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


# --- parsing --------------------------------------------------------------------------------


def _key(path: str) -> str:
    return f"{NAMESPACE}:{path}"


def _suggest(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close and len(word) >= 3:
        # An abbreviation ("repo" for "repository") is too short for difflib's ratio.
        close = [c for c in options if c.lower().startswith(word.lower())][:1]
    return f' (did you mean "{close[0]}"?)' if close else ""


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


class _Obj:
    """Reads one config object, remembering which fields were used so leftovers are rejected."""

    def __init__(self, path: str, value: Any, fields: Iterable[str]) -> None:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_key(path)} must be an object, got {_fmt(value)}")
        self.path = path
        self.value = dict(value)
        allowed = list(fields)
        for name in self.value:
            if name not in allowed:
                raise ConfigError(f"{_key(path)}.{name} is not a known key{_suggest(str(name), allowed)}")

    def sub(self, name: str) -> str:
        return f"{self.path}.{name}"

    def has(self, name: str) -> bool:
        return self.value.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.value.get(name)

    @overload
    def string(
        self,
        name: str,
        *,
        required: Literal[True],
        pattern: re.Pattern[str] | None = None,
        expect: str = "",
    ) -> str: ...

    @overload
    def string(
        self, name: str, *, default: str, pattern: re.Pattern[str] | None = None, expect: str = ""
    ) -> str: ...

    @overload
    def string(
        self,
        name: str,
        *,
        required: bool = False,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        expect: str = "",
    ) -> str | None: ...

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        expect: str = "",
    ) -> str | None:
        value = self.value.get(name)
        if value is None:
            if required:
                raise ConfigError(f"{_key(self.sub(name))} is required")
            return default
        return _string(self.sub(name), value, pattern, expect)

    @overload
    def integer(self, name: str, default: int, lo: int, hi: int) -> int: ...

    @overload
    def integer(self, name: str, default: None, lo: int, hi: int) -> int | None: ...

    def integer(self, name: str, default: int | None, lo: int, hi: int) -> int | None:
        value = self.value.get(name)
        if value is None:
            return default
        return _integer(self.sub(name), value, lo, hi)

    @overload
    def number(
        self, name: str, default: float, lo: float, hi: float, *, open_range: bool = False
    ) -> float: ...

    @overload
    def number(
        self, name: str, default: None, lo: float, hi: float, *, open_range: bool = False
    ) -> float | None: ...

    def number(
        self, name: str, default: float | None, lo: float, hi: float, *, open_range: bool = False
    ) -> float | None:
        value = self.value.get(name)
        if value is None:
            return default
        return _number(self.sub(name), value, lo, hi, open_range=open_range)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.value.get(name)
        if value is None:
            return default
        return _boolean(self.sub(name), value)

    def strings(self, name: str, pattern: re.Pattern[str] | None = None, expect: str = "") -> tuple[str, ...]:
        value = self.value.get(name)
        if value is None:
            return ()
        return _strings(self.sub(name), value, pattern, expect)


def _string(path: str, value: Any, pattern: re.Pattern[str] | None = None, expect: str = "") -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{_key(path)} must be a non-empty string, got {_fmt(value)}")
    if pattern is not None and not pattern.match(value):
        raise ConfigError(f"{_key(path)} must look like {expect}, got {_fmt(value)}")
    return value


def _integer(path: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{_key(path)} must be a whole number, got {_fmt(value)}")
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)
    if not isinstance(value, int):
        raise ConfigError(f"{_key(path)} must be a whole number, got {_fmt(value)}")
    if not lo <= value <= hi:
        raise ConfigError(f"{_key(path)} must be between {lo} and {hi}, got {value}")
    return value


def _number(path: str, value: Any, lo: float, hi: float, *, open_range: bool = False) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{_key(path)} must be a number, got {_fmt(value)}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{_key(path)} must be a number, got {_fmt(value)}") from None
    if not isinstance(value, int | float):
        raise ConfigError(f"{_key(path)} must be a number, got {_fmt(value)}")
    inside = lo < value < hi if open_range else lo <= value <= hi
    if not inside:
        bounds = f"strictly between {lo} and {hi}" if open_range else f"between {lo} and {hi}"
        raise ConfigError(f"{_key(path)} must be {bounds}, got {value}")
    return float(value)


def _boolean(path: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{_key(path)} must be true or false, got {_fmt(value)}")


def _strings(
    path: str, value: Any, pattern: re.Pattern[str] | None = None, expect: str = ""
) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{_key(path)} must be a list of strings, got {_fmt(value)}")
    return tuple(_string(f"{path}[{i}]", item, pattern, expect) for i, item in enumerate(value))


def _string_map(path: str, value: Any, key_pattern: re.Pattern[str], key_expect: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_key(path)} must be an object of strings, got {_fmt(value)}")
    out: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not key_pattern.match(name):
            raise ConfigError(f"{_key(path)} key {_fmt(name)} must look like {key_expect}")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ConfigError(f"{_key(path)}.{name} must be a string, got {_fmt(item)}")
        out[name] = str(item)
    return out


TOP_LEVEL_KEYS = (
    "github",
    "oidc",
    "state",
    "artifacts",
    "release",
    "services",
    "logRetentionDays",
    "api",
    "frontend",
    "alarms",
    "budget",
    "promotion",
    "tags",
    "waivers",
    "slackWebhookUrl",
)
REQUIRED_KEYS = ("github", "release", "services", "budget")


def _github(value: Any, stack: str) -> GitHubConfig:
    o = _Obj(
        "github",
        value,
        ("repository", "manage", "ownerId", "repositoryId", "environment", "pullRequestPreviews", "protects"),
    )
    repository = o.string("repository", required=True, pattern=REPOSITORY_RE, expect='"owner/name"')
    owner_id = o.integer("ownerId", None, 1, 2**53)
    repository_id = o.integer("repositoryId", None, 1, 2**53)
    if (owner_id is None) != (repository_id is None):
        missing = "repositoryId" if repository_id is None else "ownerId"
        raise ConfigError(
            f"{_key('github.' + missing)} is required when the other immutable-subject ID is set"
        )
    protection = EnvironmentProtection()
    if o.has("environment"):
        e = _Obj(
            "github.environment",
            o.raw("environment"),
            ("reviewers", "preventSelfReview", "canAdminsBypass", "waitTimerMinutes", "deploymentBranches"),
        )
        reviewers = Reviewers()
        if e.has("reviewers"):
            r = _Obj("github.environment.reviewers", e.raw("reviewers"), ("users", "teams"))
            reviewers = Reviewers(
                users=r.strings("users", re.compile(r"^[A-Za-z0-9-]{1,39}$"), "a GitHub login"),
                teams=r.strings("teams", re.compile(r"^[A-Za-z0-9._-]{1,100}$"), "a team slug"),
            )
            if len(reviewers.users) + len(reviewers.teams) > 6:
                raise ConfigError(
                    f"{_key('github.environment.reviewers')} allows at most 6 users and teams "
                    f"in all (a GitHub limit), got {len(reviewers.users) + len(reviewers.teams)}"
                )
        branches = None
        if e.has("deploymentBranches"):
            b = _Obj(
                "github.environment.deploymentBranches",
                e.raw("deploymentBranches"),
                ("protectedBranches", "branches", "tags"),
            )
            branches = DeploymentBranches(
                protected_branches=b.boolean("protectedBranches", False),
                branch_patterns=b.strings("branches"),
                tag_patterns=b.strings("tags"),
            )
            if branches.protected_branches and (branches.branch_patterns or branches.tag_patterns):
                raise ConfigError(
                    f"{_key('github.environment.deploymentBranches')} takes either "
                    "protectedBranches: true or branches/tags patterns, not both"
                )
            if not (branches.protected_branches or branches.branch_patterns or branches.tag_patterns):
                raise ConfigError(
                    f"{_key('github.environment.deploymentBranches')} must set "
                    "protectedBranches: true or list branches/tags patterns"
                )
        prevent_self_review = e.boolean("preventSelfReview", False)
        if prevent_self_review and not reviewers:
            raise ConfigError(
                f"{_key('github.environment.preventSelfReview')} needs reviewers in "
                f"{_key('github.environment.reviewers')}"
            )
        protection = EnvironmentProtection(
            reviewers=reviewers,
            prevent_self_review=prevent_self_review,
            can_admins_bypass=e.boolean("canAdminsBypass", True),
            wait_timer_minutes=e.integer("waitTimerMinutes", 0, 0, 43200),
            deployment_branches=branches,
        )
    manage = o.boolean("manage", True)
    protects = o.strings("protects", STACK_NAME_RE, "a stack name")
    if protects and not manage:
        raise ConfigError(f"{_key('github.protects')} needs {_key('github.manage')}: true")
    return GitHubConfig(
        repository=repository,
        manage=manage,
        owner_id=owner_id,
        repository_id=repository_id,
        protection=protection,
        pull_request_previews=o.boolean("pullRequestPreviews", False),
        protects=protects,
    )


def _release(value: Any, service_names: tuple[str, ...]) -> Release:
    o = _Obj("release", value, ("version", "images", "canary", "candidate"))
    version = o.string(
        "version",
        required=True,
        pattern=VERSION_RE,
        expect="a version or git SHA (letters, digits, . _ -; up to 64)",
    )
    candidate = o.string(
        "candidate", pattern=VERSION_RE, expect="a version or git SHA (letters, digits, . _ -; up to 64)"
    )
    if not o.has("images"):
        raise ConfigError(f"{_key('release.images')} is required")
    images = _string_map("release.images", o.raw("images"), SERVICE_NAME_RE, "a service name")
    for name, digest in images.items():
        if not DIGEST_RE.match(digest):
            raise ConfigError(
                f'{_key("release.images." + name)} must look like "sha256:" and 64 hex digits, '
                f"got {_fmt(digest)}"
            )
        if name not in service_names:
            raise ConfigError(
                f"{_key('release.images.' + name)} names an unknown service{_suggest(name, service_names)}"
            )
    for name in service_names:
        if name not in images:
            raise ConfigError(
                f"{_key('release.images.' + name)} is required: service {_fmt(name)} has no image"
            )
    canary = None
    if o.has("canary"):
        c = _Obj("release.canary", o.raw("canary"), ("weight", "stableVersions"))
        weight = c.number("weight", None, 0.0, 1.0, open_range=True)
        if weight is None:
            raise ConfigError(f"{_key('release.canary.weight')} is required")
        if not c.has("stableVersions"):
            raise ConfigError(
                f"{_key('release.canary.stableVersions')} is required: the published version "
                "each service keeps for the rest of the traffic"
            )
        stable = _string_map(
            "release.canary.stableVersions", c.raw("stableVersions"), SERVICE_NAME_RE, "a service name"
        )
        for name, number in stable.items():
            if name not in service_names:
                raise ConfigError(
                    f"{_key('release.canary.stableVersions.' + name)} names an unknown service"
                    f"{_suggest(name, service_names)}"
                )
            if not LAMBDA_VERSION_RE.match(number):
                raise ConfigError(
                    f"{_key('release.canary.stableVersions.' + name)} must be a published "
                    f"Lambda version number, got {_fmt(number)}"
                )
        for name in service_names:
            if name not in stable:
                raise ConfigError(f"{_key('release.canary.stableVersions.' + name)} is required")
        canary = Canary(weight=weight, stable_versions=stable)
    return Release(version=version, images=images, canary=canary, candidate=candidate)


def _service(index: int, value: Any) -> Service:
    path = f"services[{index}]"
    o = _Obj(
        path,
        value,
        ("name", "memory", "timeout", "reservedConcurrency", "environment", "healthPath", "routes", "grants"),
    )
    name = o.string(
        "name",
        required=True,
        pattern=SERVICE_NAME_RE,
        expect="a lower-case name (letters, digits, -; up to 30)",
    )
    environment: dict[str, str] = {}
    if o.has("environment"):
        environment = _string_map(
            o.sub("environment"), o.raw("environment"), ENV_VAR_RE, "an environment variable name"
        )
        for var in environment:
            if var in RESERVED_ENV_VARS:
                raise ConfigError(f"{_key(o.sub('environment.' + var))} is reserved by Lambda")
            if var in STAGELINE_ENV_VARS:
                raise ConfigError(f"{_key(o.sub('environment.' + var))} is set by Stageline itself")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in environment.items())
        if size > ENVIRONMENT_MAX_BYTES:
            raise ConfigError(
                f"{_key(o.sub('environment'))} takes {size} bytes; Lambda allows {ENVIRONMENT_MAX_BYTES} "
                "for all variables together (Stageline adds its own two)"
            )
    health_path = o.string(
        "healthPath",
        default=f"/{name}/health",
        pattern=re.compile(r"^/[^\s]*$"),
        expect='a path starting with "/"',
    )
    routes = o.strings("routes", ROUTE_RE, '"METHOD /path", e.g. "GET /orders/{id}"') or (
        f"ANY /{name}",
        f"ANY /{name}/{{proxy+}}",
    )
    if not any(route_matches(route, health_path or "") for route in routes):
        raise ConfigError(
            f"{_key(o.sub('healthPath'))} {_fmt(health_path)} is not reached by any of the service's routes "
            f"({', '.join(routes)}): verification would get a 404 from the API"
        )
    grants: list[Grant] = []
    if o.has("grants"):
        raw = o.raw("grants")
        if not isinstance(raw, list):
            raise ConfigError(f"{_key(o.sub('grants'))} must be a list, got {_fmt(raw)}")
        for i, item in enumerate(raw):
            g = _Obj(o.sub(f"grants[{i}]"), item, ("actions", "resources"))
            actions = g.strings("actions", re.compile(r"^[a-z0-9-]+:[A-Za-z0-9*]+$"), '"service:Action"')
            resources = g.strings("resources")
            if not actions or not resources:
                raise ConfigError(f"{_key(g.path)} needs both actions and resources")
            if any(a == "*" or a.endswith(":*") for a in actions) and "*" in resources:
                raise ConfigError(
                    f"{_key(g.path)} grants every action of a service on every resource; "
                    "name the actions or the resources"
                )
            # iam: would let a service rewrite permissions; sts: would let it become another role
            # (the permissions boundary copies these grants, so it would allow them too).
            if any(a.split(":", 1)[0] in ("iam", "sts") for a in actions):
                raise ConfigError(f"{_key(g.path)} may not grant iam: or sts: actions to a service")
            grants.append(Grant(actions=actions, resources=resources))
    return Service(
        name=name,
        memory_mb=o.integer("memory", 256, 128, 10240),
        timeout_seconds=o.integer("timeout", 10, 1, 900),
        reserved_concurrency=o.integer("reservedConcurrency", None, 0, 1000),
        environment=environment,
        health_path=health_path or f"/{name}/health",
        routes=routes,
        grants=tuple(grants),
    )


def route_matches(route: str, path: str, method: str = "GET") -> bool:
    """Whether an HTTP API route key ("ANY /api/{proxy+}") matches a request for `path`.

    `{name}` matches one path segment and a final `{name+}` one or more, as API Gateway does.
    """
    route_method, _, route_path = route.partition(" ")
    if route_method not in ("ANY", method):
        return False
    want = [p for p in route_path.split("/") if p]
    have = [p for p in path.split("?", 1)[0].split("/") if p]
    for i, part in enumerate(want):
        if part.startswith("{") and part.endswith("+}"):
            return len(have) > i
        if i >= len(have):
            return False
        if not (part.startswith("{") and part.endswith("}")) and part != have[i]:
            return False
    return len(have) == len(want)


def _services(value: Any) -> tuple[Service, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{_key('services')} must be a non-empty list of services, got {_fmt(value)}")
    services = tuple(_service(i, item) for i, item in enumerate(value))
    seen: dict[str, int] = {}
    for i, svc in enumerate(services):
        if svc.name in seen:
            raise ConfigError(
                f"{_key(f'services[{i}].name')} duplicates services[{seen[svc.name]}]: {_fmt(svc.name)}"
            )
        seen[svc.name] = i
    routes: dict[str, str] = {}
    for svc in services:
        for route in svc.routes:
            if route in routes:
                raise ConfigError(
                    f"{_key('services')} route {_fmt(route)} is claimed by both "
                    f"{_fmt(routes[route])} and {_fmt(svc.name)}"
                )
            routes[route] = svc.name
    return services


def _alarms(value: Any) -> AlarmsConfig:
    o = _Obj(
        "alarms",
        value,
        (
            "email",
            "errorThreshold",
            "throttleThreshold",
            "p95DurationMs",
            "api5xxThreshold",
            "periodSeconds",
            "evaluationPeriods",
        ),
    )
    d = AlarmsConfig()
    period = o.integer("periodSeconds", d.period_seconds, 1, 86400)
    # Lambda and API Gateway publish these metrics once a minute: a shorter period would see
    # missing data, which the alarms treat as not breaching, and never fire.
    if period % 60:
        raise ConfigError(f"{_key('alarms.periodSeconds')} must be a multiple of 60, got {period}")
    evaluation_periods = o.integer("evaluationPeriods", d.evaluation_periods, 1, 100)
    if period * evaluation_periods > 86400:
        raise ConfigError(
            f"{_key('alarms.evaluationPeriods')} times periodSeconds must be at most one day (86400 s), "
            f"got {evaluation_periods} x {period}"
        )
    return AlarmsConfig(
        email=o.string("email", pattern=EMAIL_RE, expect="an e-mail address"),
        error_threshold=o.integer("errorThreshold", d.error_threshold, 1, 1_000_000),
        throttle_threshold=o.integer("throttleThreshold", d.throttle_threshold, 1, 1_000_000),
        p95_duration_ms=o.integer("p95DurationMs", d.p95_duration_ms, 1, 900_000),
        api_5xx_threshold=o.integer("api5xxThreshold", d.api_5xx_threshold, 1, 1_000_000),
        period_seconds=period,
        evaluation_periods=evaluation_periods,
    )


def _budget(value: Any) -> BudgetConfig:
    o = _Obj("budget", value, ("monthlyLimitUsd", "thresholds", "emails"))
    limit = o.number("monthlyLimitUsd", None, 1, 10_000_000)
    if limit is None:
        raise ConfigError(f"{_key('budget.monthlyLimitUsd')} is required")
    thresholds: tuple[int, ...] = (80, 100)
    if o.has("thresholds"):
        raw = o.raw("thresholds")
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{_key('budget.thresholds')} must be a non-empty list of percentages")
        thresholds = tuple(_integer(f"budget.thresholds[{i}]", t, 1, 1000) for i, t in enumerate(raw))
        if len(set(thresholds)) != len(thresholds):
            raise ConfigError(f"{_key('budget.thresholds')} lists a percentage twice: {list(thresholds)}")
        if len(thresholds) > 10:
            raise ConfigError(
                f"{_key('budget.thresholds')} allows at most 10 (AWS Budgets' notification limit), "
                f"got {len(thresholds)}"
            )
    emails = o.strings("emails", EMAIL_RE, "an e-mail address")
    if len(emails) > 10:
        raise ConfigError(
            f"{_key('budget.emails')} allows at most 10 addresses (an AWS Budgets limit), got {len(emails)}"
        )
    return BudgetConfig(monthly_limit_usd=limit, thresholds=thresholds, emails=emails)


# Physical names are "<project>-<stack>-…" (see StackConfig.prefix) and AWS caps their length.
# The bucket prefixes are the tightest cap (the artifact bucket's by one character): within it,
# every other name fits (a function "<prefix>-<service>" and its role "<prefix>-<service>-exec"
# stay under 64 for any service name).
BUCKET_PREFIX_MAX = 37


def _check_name_lengths(project: str, stack: str) -> None:
    for bucket in ("frontend", "artifacts"):
        bucket_prefix = f"{project}-{stack}-{bucket}-"
        if len(bucket_prefix) > BUCKET_PREFIX_MAX:
            raise ConfigError(
                f"stack name {_fmt(stack)} is too long for project {_fmt(project)}: the {bucket} bucket "
                f"prefix {_fmt(bucket_prefix)} has {len(bucket_prefix)} characters, "
                f"S3 allows {BUCKET_PREFIX_MAX}"
            )


def _promotion(value: Any, stack: str) -> PromotionConfig:
    o = _Obj(
        "promotion", value, ("source", "approval", "bakeSeconds", "canaryWeight", "verify", "pre", "post")
    )
    source = o.string("source", pattern=STACK_NAME_RE, expect="a stack name")
    if source == stack:
        raise ConfigError(f"{_key('promotion.source')} cannot be the stack itself ({_fmt(stack)})")
    verify = VerifyConfig()
    if o.has("verify"):
        v = _Obj("promotion.verify", o.raw("verify"), ("timeoutSeconds", "intervalSeconds", "frontendPath"))
        verify = VerifyConfig(
            timeout_seconds=v.integer("timeoutSeconds", verify.timeout_seconds, 1, 3600),
            interval_seconds=v.number("intervalSeconds", verify.interval_seconds, 0.0, 300.0),
            frontend_path=v.string(
                "frontendPath", default="/", pattern=re.compile(r"^/"), expect='a path starting with "/"'
            )
            or "/",
        )
    return PromotionConfig(
        source=source,
        approval=o.boolean("approval", False),
        bake_seconds=o.integer("bakeSeconds", 0, 0, 86400),
        canary_weight=o.number("canaryWeight", None, 0.0, 1.0, open_range=True),
        verify=verify,
        pre=o.strings("pre"),
        post=o.strings("post"),
    )


def _account_ids(path: str, value: Any) -> tuple[str, ...]:
    """A list of 12-digit AWS account IDs; YAML numbers are accepted when they keep all 12 digits."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{_key(path)} must be a list of 12-digit AWS account IDs, got {_fmt(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(text, str) or not ACCOUNT_ID_RE.match(text):
            raise ConfigError(
                f'{_key(f"{path}[{i}]")} must be a 12-digit AWS account ID in quotes (e.g. "012345678901"), '
                f"got {_fmt(item)}"
            )
        if text in out:
            raise ConfigError(f"{_key(path)} lists account {text} twice")
        out.append(text)
    return tuple(out)


def _waivers(value: Any) -> tuple[Waiver, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{_key('waivers')} must be a list, got {_fmt(value)}")
    out = []
    for i, item in enumerate(value):
        w = _Obj(f"waivers[{i}]", item, ("rule", "resource", "reason"))
        rule = w.string("rule", required=True)
        resource = w.string("resource", required=True)
        reason = w.string("reason", required=True)
        for field_name, text in (("rule", rule), ("resource", resource), ("reason", reason)):
            if not text.strip():
                raise ConfigError(f"{_key(w.sub(field_name))} must not be empty")
        out.append(Waiver(rule=rule, resource=resource, reason=reason))
    return tuple(out)


def parse(
    values: Mapping[str, Any],
    *,
    stack: str,
    project: str = "stageline",
    region: str | None = None,
    secret_keys: Iterable[str] = (),
    read_secret: Callable[[str], Any] | None = None,
) -> StackConfig:
    """Validate the `stageline:` config of one stack and return it typed.

    `values` maps keys without the namespace (``"github"``) to decoded values (objects as dicts).
    `secret_keys` are the keys the stack file stores encrypted; `read_secret(key)` returns the
    value for a secret key (the engine's `get_secret` Output, or a `Secret` placeholder).
    """
    if not STACK_NAME_RE.match(stack):
        raise ConfigError(
            f"stack name must be lower-case letters, digits and - (up to 31), got {_fmt(stack)}"
        )
    if stack.endswith("-readonly"):
        # "<stack>-readonly" is the GitHub environment of another stack's read-only jobs.
        raise ConfigError(
            f"stack name {_fmt(stack)} must not end in -readonly: that suffix names read-only "
            "GitHub environments"
        )
    _check_name_lengths(project, stack)
    for name in values:
        if name not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{_key(name)} is not a known key{_suggest(name, TOP_LEVEL_KEYS)}")
    for name in REQUIRED_KEYS:
        if values.get(name) is None:
            raise ConfigError(f"{_key(name)} is required (set it in Pulumi.{stack}.yaml)")
    if not region:
        raise ConfigError(f"aws:region is required (set it in Pulumi.{stack}.yaml)")
    secret_keys = set(secret_keys)
    # The program reads only SECRET_KEYS through get_secret; any other key would be decrypted and
    # then stored and shown in plain text in resource inputs, state and diffs.
    for name in sorted(secret_keys - SECRET_KEYS):
        raise ConfigError(
            f"{_key(name)} must not be a secret: only {', '.join(sorted(SECRET_KEYS))} is read as one, "
            "so this value would end up in plain text in the state"
        )
    for name in SECRET_KEYS:
        if values.get(name) is not None and name not in secret_keys:
            raise ConfigError(
                f"{_key(name)} must be a secret: set it with `pulumi config set --secret {name} … -s {stack}`"
            )

    github = _github(values["github"], stack)
    services = _services(values["services"])
    release = _release(values["release"], tuple(s.name for s in services))

    def obj(name: str, allowed: tuple[str, ...]) -> _Obj:
        return _Obj(name, values.get(name) or {}, allowed)

    oidc = obj("oidc", ("providerArn",))
    provider_arn = oidc.string(
        "providerArn",
        pattern=re.compile(
            r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com$"
        ),
        expect="arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com",
    )
    state = obj("state", ("bucket", "kmsKeyArn"))
    artifacts = obj(
        "artifacts",
        ("noncurrentVersionDays", "abortMultipartDays", "keepImages", "protect", "readerAccounts"),
    )
    api = obj("api", ("burstLimit", "rateLimit"))
    frontend = obj("frontend", ("priceClass",))
    retention = values.get("logRetentionDays")
    log_retention = 14 if retention is None else _integer("logRetentionDays", retention, 1, 3653)
    if log_retention not in LOG_RETENTION_DAYS:
        raise ConfigError(
            f"{_key('logRetentionDays')} must be one of CloudWatch's values "
            f"({', '.join(map(str, LOG_RETENTION_DAYS))}), got {log_retention}"
        )
    tags: dict[str, str] = {}
    if values.get("tags") is not None:
        tags = _string_map("tags", values["tags"], re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,128}$"), "a tag key")
    price_class = frontend.string("priceClass", default="PriceClass_100")
    if price_class not in PRICE_CLASSES:
        raise ConfigError(
            f"{_key('frontend.priceClass')} must be one of {', '.join(PRICE_CLASSES)}, "
            f"got {_fmt(price_class)}"
        )
    slack = None
    if values.get("slackWebhookUrl") is not None:
        slack = read_secret("slackWebhookUrl") if read_secret else Secret()

    return StackConfig(
        stack=stack,
        project=project,
        region=region,
        github=github,
        release=release,
        services=services,
        budget=_budget(values["budget"]),
        oidc=OidcConfig(provider_arn=provider_arn),
        state=StateConfig(
            bucket=state.string("bucket", pattern=BUCKET_RE, expect="an S3 bucket name"),
            kms_key_arn=state.string(
                "kmsKeyArn", pattern=re.compile(r"^arn:aws[a-z-]*:kms:"), expect="a KMS key ARN"
            ),
        ),
        artifacts=ArtifactsConfig(
            noncurrent_version_days=artifacts.integer("noncurrentVersionDays", 30, 1, 3650),
            abort_multipart_days=artifacts.integer("abortMultipartDays", 7, 1, 365),
            keep_images=artifacts.integer("keepImages", 30, 1, 10000),
            protect=artifacts.boolean("protect", False),
            reader_accounts=_account_ids("artifacts.readerAccounts", artifacts.raw("readerAccounts")),
        ),
        log_retention_days=log_retention,
        api=ApiConfig(
            burst_limit=api.integer("burstLimit", 50, 0, 100_000),
            rate_limit=api.number("rateLimit", 100.0, 0.0, 100_000.0),
        ),
        frontend=FrontendConfig(price_class=price_class or "PriceClass_100"),
        alarms=_alarms(values.get("alarms") or {}),
        promotion=_promotion(values.get("promotion") or {}, stack),
        tags=tags,
        waivers=_waivers(values["waivers"]) if values.get("waivers") is not None else (),
        slack_webhook_url=slack,
    )


# --- the two ways in --------------------------------------------------------------------------


def _decode(raw: Any) -> Any:
    """Config values reach a Pulumi program as strings; objects and lists as JSON."""
    if isinstance(raw, str) and raw[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def load() -> StackConfig:
    """Read the running stack's config from the Pulumi engine (inside `pulumi up` or mocks)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    merged: dict[str, Any] = dict(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    prefix = f"{NAMESPACE}:"
    refuse_provider_tokens(merged)
    values = {k[len(prefix) :]: _decode(v) for k, v in merged.items() if k.startswith(prefix)}
    secret_keys = {k for k in values if runtime_config.is_config_secret(prefix + k)}
    cfg = pulumi.Config(NAMESPACE)
    region = pulumi.Config("aws").get("region")
    return parse(
        values,
        stack=pulumi.get_stack(),
        project=pulumi.get_project(),
        region=region,
        secret_keys=secret_keys,
        read_secret=cfg.require_secret,
    )


@dataclass(frozen=True)
class StackFile:
    """A stack file as the driver sees it: decoded values, which keys are secret, the raw document."""

    stack: str
    path: Path
    values: dict[str, Any]  # keys without the namespace
    secret_keys: frozenset[str]
    other: dict[str, Any]  # keys of other namespaces ("aws:region" …), secure values as Secret
    document: dict[str, Any]


def stack_file_path(root: Path, stack: str) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def known_stacks(root: Path) -> list[str]:
    """Stack names that have a `Pulumi.<stack>.yaml` in `root`."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def read_stack_file(root: Path, stack: str) -> StackFile:
    """Read `Pulumi.<stack>.yaml` without the engine. Raises ConfigError on any problem."""
    import yaml

    if not STACK_NAME_RE.match(stack):
        raise ConfigError(
            f"stack name must be lower-case letters, digits and - (up to 31), got {_fmt(stack)}"
        )
    path = stack_file_path(root, stack)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = ", ".join(known_stacks(root)) or "none"
        raise ConfigError(f"unknown stack {_fmt(stack)}: no {path.name} (known stacks: {known})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path.name}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path.name}{where} is not valid YAML") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path.name} must be a mapping with a config: key")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path.name}: config must be a mapping")
    prefix = f"{NAMESPACE}:"
    values: dict[str, Any] = {}
    secrets: set[str] = set()
    other: dict[str, Any] = {}
    for raw_key, value in config.items():
        key = str(raw_key)
        is_secure = isinstance(value, dict) and set(value) == {"secure"}
        if key.startswith(prefix):
            name = key[len(prefix) :]
            values[name] = Secret() if is_secure else value
            if is_secure:
                secrets.add(name)
        else:
            other[key] = Secret() if is_secure else value
    return StackFile(
        stack=stack, path=path, values=values, secret_keys=frozenset(secrets), other=other, document=document
    )


def parse_stack_file(sf: StackFile, project: str = "stageline") -> StackConfig:
    refuse_provider_tokens(sf.other)
    region = sf.other.get("aws:region")
    return parse(
        sf.values,
        stack=sf.stack,
        project=project,
        region=region if isinstance(region, str) else None,
        secret_keys=sf.secret_keys,
    )
