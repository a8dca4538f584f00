"""The schema of `stageline:` config: every key a stack file may set, its reader and its rules.

`parse` is a pure function over plain values, so the same rules serve the Pulumi program, the
driver and the tests (see `stack_file` for the two ways values come in).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from infra import iam
from infra.config.fields import (
    _account_ids,
    _fmt,
    _integer,
    _key,
    _Obj,
    _string_map,
    _suggest,
    secret_word,
    tag_problem,
)
from infra.config.model import (
    BUCKET_PREFIX_MAX,
    BUCKET_RE,
    DIGEST_RE,
    EMAIL_RE,
    ENV_VAR_RE,
    ENVIRONMENT_MAX_BYTES,
    FRONTEND_RELEASE_RE,
    GRANT_ARN_RE,
    HANDLER_RE,
    KMS_KEY_ARN_RE,
    LAMBDA_VERSION_RE,
    LOG_RETENTION_DAYS,
    PRICE_CLASSES,
    REPOSITORY_RE,
    RESERVED_ENV_VARS,
    RESERVED_TAGS,
    ROUTE_RE,
    RUNTIME_RE,
    SCAN_SEVERITIES,
    SECRET_KEYS,
    SERVICE_NAME_RE,
    SOURCE_RE,
    STACK_NAME_RE,
    STAGELINE_ENV_VARS,
    TAGS_MAX,
    VERSION_RE,
    AlarmsConfig,
    ApiConfig,
    ArtifactsConfig,
    BudgetConfig,
    Canary,
    ConfigError,
    DeploymentBranches,
    EnvironmentProtection,
    FrontendConfig,
    GitHubConfig,
    Grant,
    OidcConfig,
    PromotionConfig,
    Release,
    Reviewers,
    Secret,
    Service,
    StackConfig,
    StateConfig,
    VerifyConfig,
    Waiver,
    field_default,
)

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


@dataclass(frozen=True)
class _Owner:
    """Whose resources a grant may reach (infra.iam.Owner): the stack's own, `<project>-<stack>-…`."""

    project: str
    stack: str

    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.stack}"


@cache
def known_regions() -> frozenset[str]:
    """Every region of every partition, from botocore's endpoint data (read offline, once)."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.find_spec("botocore")
    if spec is None or spec.origin is None:  # pragma: no cover - boto3 is a dependency
        raise ConfigError("cannot check aws:region: botocore (boto3's region data) is not installed")
    data = json.loads((Path(spec.origin).parent / "data" / "endpoints.json").read_text(encoding="utf-8"))
    return frozenset(region for partition in data["partitions"] for region in partition["regions"])


def _region(region: Any, stack: str) -> str:
    if region is None or region == "":
        raise ConfigError(f"aws:region is required (set it in Pulumi.{stack}.yaml)")
    if not isinstance(region, str) or not re.match(r"^[a-z]{2,}(-[a-z]+)+-\d{1,2}$", region):
        raise ConfigError(f'aws:region must be a region name like "eu-west-1", got {_fmt(region)}')
    if region not in known_regions():
        raise ConfigError(
            f"aws:region {_fmt(region)} is not an AWS region{_suggest(region, sorted(known_regions()))}"
        )
    return region


def _plain_secrets(other: Mapping[str, Any], stack: str) -> None:
    """A value in any other namespace whose key says it is a secret must be stored encrypted."""
    for key, value in other.items():
        if value is None or isinstance(value, bool | Secret):
            continue
        word = secret_word(key.partition(":")[2])
        if word is not None:
            raise ConfigError(
                f"{key} is a secret ({word}) in plain text: anyone who can read the repository has it; "
                f"set it with `pulumi config set --secret {key} … -s {stack}`"
            )


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_key('tags')} must be an object of tag names to values, got {_fmt(value)}")
    if len(value) > TAGS_MAX:
        raise ConfigError(
            f"{_key('tags')} sets {len(value)} tags; at most {TAGS_MAX} fit beside the program's own "
            "(AWS allows 50 on a resource)"
        )
    tags: dict[str, str] = {}
    for name, item in value.items():
        problem = tag_problem(name, item)
        if problem is not None:
            raise ConfigError(f"{_key('tags')}: {problem}")
        if name in RESERVED_TAGS:
            raise ConfigError(
                f"{_key('tags.' + name)} is set by Stageline on every resource "
                f"({', '.join(RESERVED_TAGS)}); remove it from the stack file"
            )
        tags[name] = str(item)
    return tags


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
    github_default = GitHubConfig(repository=repository)
    protection = github_default.protection
    if o.has("environment"):
        e = _Obj(
            "github.environment",
            o.raw("environment"),
            ("reviewers", "preventSelfReview", "canAdminsBypass", "waitTimerMinutes", "deploymentBranches"),
        )
        reviewers = protection.reviewers
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
        branches = protection.deployment_branches
        if e.has("deploymentBranches"):
            b = _Obj(
                "github.environment.deploymentBranches",
                e.raw("deploymentBranches"),
                ("protectedBranches", "branches", "tags"),
            )
            branches = DeploymentBranches(
                protected_branches=b.boolean("protectedBranches", DeploymentBranches().protected_branches),
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
        prevent_self_review = e.boolean("preventSelfReview", protection.prevent_self_review)
        if prevent_self_review and not reviewers:
            raise ConfigError(
                f"{_key('github.environment.preventSelfReview')} needs reviewers in "
                f"{_key('github.environment.reviewers')}"
            )
        protection = EnvironmentProtection(
            reviewers=reviewers,
            prevent_self_review=prevent_self_review,
            can_admins_bypass=e.boolean("canAdminsBypass", protection.can_admins_bypass),
            wait_timer_minutes=e.integer("waitTimerMinutes", protection.wait_timer_minutes, 0, 43200),
            deployment_branches=branches,
        )
    manage = o.boolean("manage", github_default.manage)
    protects = o.strings("protects", STACK_NAME_RE, "a stack name")
    if protects and not manage:
        raise ConfigError(f"{_key('github.protects')} needs {_key('github.manage')}: true")
    return GitHubConfig(
        repository=repository,
        manage=manage,
        owner_id=owner_id,
        repository_id=repository_id,
        protection=protection,
        pull_request_previews=o.boolean("pullRequestPreviews", github_default.pull_request_previews),
        protects=protects,
    )


def _choice(path: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{_key(path)} must be one of {', '.join(choices)}, got {_fmt(value)}")
    return value


def _release(value: Any, service_names: tuple[str, ...]) -> Release:
    o = _Obj("release", value, ("version", "images", "packages", "frontend", "canary", "candidate"))
    version = o.string(
        "version",
        required=True,
        pattern=VERSION_RE,
        expect="a version or git SHA (letters, digits, . _ -; up to 64)",
    )
    candidate = o.string(
        "candidate", pattern=VERSION_RE, expect="a version or git SHA (letters, digits, . _ -; up to 64)"
    )
    if not o.has("images") and not o.has("packages"):
        raise ConfigError(f"{_key('release.images')} or {_key('release.packages')} is required")
    artifacts: dict[str, dict[str, str]] = {}
    for kind in ("images", "packages"):
        found = {}
        if o.has(kind):
            found = _string_map(f"release.{kind}", o.raw(kind), SERVICE_NAME_RE, "a service name")
        for name, digest in found.items():
            if not DIGEST_RE.match(digest):
                raise ConfigError(
                    f'{_key(f"release.{kind}.{name}")} must look like "sha256:" and 64 hex digits, '
                    f"got {_fmt(digest)}"
                )
            if name not in service_names:
                hint = _suggest(name, service_names)
                raise ConfigError(f"{_key(f'release.{kind}.{name}')} names an unknown service{hint}")
        artifacts[kind] = found
    images, packages = artifacts["images"], artifacts["packages"]
    for name in service_names:
        if name in images and name in packages:
            raise ConfigError(
                f"{_key('release.packages.' + name)}: service {_fmt(name)} has an image too; "
                "a service runs either an image or a package"
            )
        if name not in images and name not in packages:
            raise ConfigError(
                f"{_key('release.images.' + name)} (or release.packages.{name}) is required: "
                f"service {_fmt(name)} has no image and no package"
            )
    frontend = o.string(
        "frontend", pattern=FRONTEND_RELEASE_RE, expect="the 64 hex digits of a frontend release"
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
    return Release(
        version=version,
        images=images,
        canary=canary,
        candidate=candidate,
        packages=packages,
        frontend=frontend,
    )


def _service(index: int, value: Any, project: str, stack: str) -> Service:
    path = f"services[{index}]"
    o = _Obj(
        path,
        value,
        (
            "name",
            "memory",
            "timeout",
            "reservedConcurrency",
            "environment",
            "healthPath",
            "routes",
            "grants",
            "runtime",
            "handler",
            "source",
        ),
    )
    name = o.string(
        "name",
        required=True,
        pattern=SERVICE_NAME_RE,
        expect="a lower-case name (letters, digits, -; up to 30)",
    )
    d = Service(name=name)
    environment = dict(d.environment)
    if o.has("environment"):
        environment = _string_map(
            o.sub("environment"), o.raw("environment"), ENV_VAR_RE, "an environment variable name"
        )
        for var in environment:
            if var in RESERVED_ENV_VARS:
                raise ConfigError(f"{_key(o.sub('environment.' + var))} is reserved by Lambda")
            if var in STAGELINE_ENV_VARS:
                raise ConfigError(f"{_key(o.sub('environment.' + var))} is set by Stageline itself")
            word = secret_word(var)
            if word is not None:
                raise ConfigError(
                    f"{_key(o.sub('environment.' + var))} is named like a secret ({word}): Lambda shows "
                    "environment values to anyone who may read the function's configuration; keep the "
                    f"value in Secrets Manager and pass where it is (e.g. {var}_SECRET_ARN)"
                )
        size = sum(len(k.encode()) + len(v.encode()) for k, v in environment.items())
        if size > ENVIRONMENT_MAX_BYTES:
            raise ConfigError(
                f"{_key(o.sub('environment'))} takes {size} bytes; Lambda allows {ENVIRONMENT_MAX_BYTES} "
                "for all variables together (Stageline adds its own two)"
            )
    health_path = o.string(
        "healthPath",
        default=d.health_path,
        pattern=re.compile(r"^/[^\s]*$"),
        expect='a path starting with "/"',
    )
    if o.raw("routes") == []:
        # Left out, the service gets its default public routes; an empty list must not mean the same.
        raise ConfigError(
            f"{_key(o.sub('routes'))} is empty: list the service's routes, or leave the key out for "
            f'the default ("ANY /{name}", "ANY /{name}/{{proxy+}}")'
        )
    routes = o.strings("routes", ROUTE_RE, '"METHOD /path", e.g. "GET /orders/{id}"') or (
        f"ANY /{name}",
        f"ANY /{name}/{{proxy+}}",
    )
    if not any(route_matches(route, health_path) for route in routes):
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
            actions = g.strings("actions", re.compile(r"^[a-z0-9*?-]+:[A-Za-z0-9*?]+$"), '"service:Action"')
            resources = g.strings("resources")
            if not actions or not resources:
                raise ConfigError(f"{_key(g.path)} needs both actions and resources")
            # iam: would let a service rewrite permissions, sts: become another role, organizations:,
            # account: … administer the account; the permissions boundary copies grants, so it
            # would allow them too.
            for j, action in enumerate(actions):
                probe = iam.administers(action, identity=True)
                if probe is not None:
                    raise ConfigError(
                        f"{_key(g.sub(f'actions[{j}]'))} {_fmt(action)} covers {probe}: a service may not "
                        "be granted actions that administer IAM, the account or the organization"
                    )
            owner = _Owner(project, stack)
            for j, resource in enumerate(resources):
                why = iam.reach_beyond(resource, owner)
                if why is not None:
                    raise ConfigError(
                        f"{_key(g.sub(f'resources[{j}]'))} {_fmt(resource)} reaches {why}; name the "
                        f"resources (a pattern may follow a full name or {owner.prefix}-)"
                    )
                if not GRANT_ARN_RE.match(resource):
                    raise ConfigError(
                        f"{_key(g.sub(f'resources[{j}]'))} must be an ARN "
                        f"(arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE), got {_fmt(resource)}"
                    )
            grants.append(Grant(actions=actions, resources=resources))
    return Service(
        name=name,
        memory_mb=o.integer("memory", d.memory_mb, 128, 10240),
        timeout_seconds=o.integer("timeout", d.timeout_seconds, 1, 900),
        reserved_concurrency=o.integer("reservedConcurrency", d.reserved_concurrency, 0, 1000),
        environment=environment,
        health_path=health_path,
        routes=routes,
        grants=tuple(grants),
        runtime=o.string("runtime", default=d.runtime, pattern=RUNTIME_RE, expect='"python3.N"'),
        handler=o.string("handler", default=d.handler, pattern=HANDLER_RE, expect='"module.function"'),
        source=o.string(
            "source", default=d.source, pattern=SOURCE_RE, expect="a folder relative to the repository root"
        ),
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


def _services(value: Any, project: str, stack: str) -> tuple[Service, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{_key('services')} must be a non-empty list of services, got {_fmt(value)}")
    services = tuple(_service(i, item, project, stack) for i, item in enumerate(value))
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
    thresholds = BudgetConfig(monthly_limit_usd=limit).thresholds
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


def _check_name_lengths(project: str, stack: str) -> None:
    for bucket in ("frontend", "artifacts"):
        bucket_prefix = f"{project}-{stack}-{bucket}-"
        if len(bucket_prefix) > BUCKET_PREFIX_MAX:
            raise ConfigError(
                f"stack name {_fmt(stack)} is too long for project {_fmt(project)}: the {bucket} bucket "
                f"prefix {_fmt(bucket_prefix)} has {len(bucket_prefix)} characters, "
                f"S3 allows {BUCKET_PREFIX_MAX}"
            )


def _promotion(value: Any, stack: str, stacks: Collection[str] | None = None) -> PromotionConfig:
    o = _Obj(
        "promotion", value, ("source", "approval", "bakeSeconds", "canaryWeight", "verify", "pre", "post")
    )
    source = o.string("source", pattern=STACK_NAME_RE, expect="a stack name")
    if source == stack:
        raise ConfigError(f"{_key('promotion.source')} cannot be the stack itself ({_fmt(stack)})")
    if source is not None and stacks is not None and source not in stacks:
        known = ", ".join(sorted(stacks)) or "none"
        raise ConfigError(
            f"{_key('promotion.source')} names stack {_fmt(source)}, which has no Pulumi.{source}.yaml "
            f"(known stacks: {known}){_suggest(source, stacks)}"
        )
    d = PromotionConfig()
    verify = d.verify
    if o.has("verify"):
        v = _Obj("promotion.verify", o.raw("verify"), ("timeoutSeconds", "intervalSeconds", "frontendPath"))
        verify = VerifyConfig(
            timeout_seconds=v.integer("timeoutSeconds", verify.timeout_seconds, 1, 3600),
            interval_seconds=v.number("intervalSeconds", verify.interval_seconds, 0.0, 300.0),
            frontend_path=v.string(
                "frontendPath",
                default=verify.frontend_path,
                pattern=re.compile(r"^/"),
                expect='a path starting with "/"',
            ),
        )
    return PromotionConfig(
        source=source,
        approval=o.boolean("approval", d.approval),
        bake_seconds=o.integer("bakeSeconds", d.bake_seconds, 0, 86400),
        canary_weight=o.number("canaryWeight", d.canary_weight, 0.0, 1.0, open_range=True),
        verify=verify,
        pre=o.strings("pre"),
        post=o.strings("post"),
    )


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
    region: Any = None,
    secret_keys: Iterable[str] = (),
    read_secret: Callable[[str], Any] | None = None,
    other: Mapping[str, Any] | None = None,
    stacks: Collection[str] | None = None,
) -> StackConfig:
    """Validate the `stageline:` config of one stack and return it typed.

    `values` maps keys without the namespace (``"github"``) to decoded values (objects as dicts).
    `secret_keys` are the keys the stack file stores encrypted; `read_secret(key)` returns the
    value for a secret key (the engine's `get_secret` Output, or a `Secret` placeholder).
    `other` holds the keys of other namespaces (`"github:token"`), secret ones as `Secret`: only
    their names are judged (a secret in plain text), never their values.
    `stacks`, when known, are the project's stacks, which `promotion.source` must name one of.
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
    region = _region(region, stack)
    _plain_secrets(other or {}, stack)
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
    services = _services(values["services"], project, stack)
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
        (
            "noncurrentVersionDays",
            "abortMultipartDays",
            "keepImages",
            "protect",
            "readerAccounts",
            "scanSeverity",
        ),
    )
    artifacts_default = ArtifactsConfig()
    api = obj("api", ("burstLimit", "rateLimit"))
    api_default = ApiConfig()
    frontend = obj("frontend", ("priceClass", "source"))
    retention = values.get("logRetentionDays")
    log_retention = (
        field_default(StackConfig, "log_retention_days")
        if retention is None
        else _integer("logRetentionDays", retention, 1, 3653)
    )
    if log_retention not in LOG_RETENTION_DAYS:
        raise ConfigError(
            f"{_key('logRetentionDays')} must be one of CloudWatch's values "
            f"({', '.join(map(str, LOG_RETENTION_DAYS))}), got {log_retention}"
        )
    tags = _tags(values["tags"]) if values.get("tags") is not None else {}
    price_class = frontend.string("priceClass", default=FrontendConfig().price_class)
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
                "kmsKeyArn",
                pattern=KMS_KEY_ARN_RE,
                expect="one KMS key's ARN, arn:aws:kms:REGION:ACCOUNT:key/ID (or alias/NAME), no wildcard",
            ),
        ),
        artifacts=ArtifactsConfig(
            noncurrent_version_days=artifacts.integer(
                "noncurrentVersionDays", artifacts_default.noncurrent_version_days, 1, 3650
            ),
            abort_multipart_days=artifacts.integer(
                "abortMultipartDays", artifacts_default.abort_multipart_days, 1, 365
            ),
            keep_images=artifacts.integer("keepImages", artifacts_default.keep_images, 1, 10000),
            protect=artifacts.boolean("protect", artifacts_default.protect),
            reader_accounts=_account_ids("artifacts.readerAccounts", artifacts.raw("readerAccounts")),
            scan_severity=_choice(
                "artifacts.scanSeverity",
                artifacts.string("scanSeverity", default=artifacts_default.scan_severity),
                SCAN_SEVERITIES,
            ),
        ),
        log_retention_days=log_retention,
        api=ApiConfig(
            burst_limit=api.integer("burstLimit", api_default.burst_limit, 0, 100_000),
            rate_limit=api.number("rateLimit", api_default.rate_limit, 0.0, 100_000.0),
        ),
        frontend=FrontendConfig(
            price_class=price_class,
            source=frontend.string(
                "source",
                default=FrontendConfig().source,
                pattern=SOURCE_RE,
                expect="a folder relative to the repository root",
            ),
        ),
        alarms=_alarms(values.get("alarms") or {}),
        promotion=_promotion(values.get("promotion") or {}, stack, stacks),
        tags=tags,
        waivers=_waivers(values["waivers"]) if values.get("waivers") is not None else (),
        slack_webhook_url=slack,
    )
