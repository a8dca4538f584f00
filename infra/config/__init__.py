"""Typed, validated stack configuration.

A stack file (`Pulumi.<stack>.yaml`) is read once into frozen dataclasses. Every error names
the key and the problem on one line, e.g.::

    stageline:github.repository must look like "owner/name", got "shop"

The package, top to bottom:

* `model`: the frozen dataclasses (and their defaults, the only ones), the patterns and limits of
  their values, `ConfigError`, and `MASK`, what a secret shows instead of itself;
* `fields`: typed readers that check one value and name its key when it is wrong;
* `schema`: every key a stack file may set (`parse`, a pure function over plain values);
* `stack_file`: the two ways in, the engine's config inside the program (`load`) and
  `Pulumi.<stack>.yaml` read without an engine (`read_stack_file`).

The names below are the package's API; import from a module when only that module is meant.
Nothing here imports a provider SDK: the driver's CLI uses it and must start fast.
"""

from infra.config.model import (
    ACCOUNT_ID_RE,
    ARN_RE,
    BUCKET_PREFIX_MAX,
    BUCKET_RE,
    DEFAULT_STACKS,
    DIGEST_RE,
    EMAIL_RE,
    ENV_VAR_RE,
    ENVIRONMENT_MAX_BYTES,
    FRONTEND_RELEASE_RE,
    HANDLER_RE,
    LAMBDA_VERSION_RE,
    LOG_RETENTION_DAYS,
    MASK,
    NAMESPACE,
    PRICE_CLASSES,
    REPOSITORY_RE,
    RESERVED_ENV_VARS,
    ROUTE_RE,
    RUNTIME_RE,
    SCAN_SEVERITIES,
    SECRET_KEYS,
    SERVICE_NAME_RE,
    SOURCE_RE,
    STACK_NAME_RE,
    STAGELINE_ENV_VARS,
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
)
from infra.config.schema import (
    REQUIRED_KEYS,
    TOP_LEVEL_KEYS,
    parse,
    route_matches,
)
from infra.config.stack_file import (
    StackFile,
    decode_config_value,
    known_stacks,
    load,
    parse_stack_file,
    read_stack_file,
    stack_file_path,
)

__all__ = [
    "ACCOUNT_ID_RE",
    "ARN_RE",
    "BUCKET_PREFIX_MAX",
    "BUCKET_RE",
    "DEFAULT_STACKS",
    "DIGEST_RE",
    "EMAIL_RE",
    "ENVIRONMENT_MAX_BYTES",
    "ENV_VAR_RE",
    "FRONTEND_RELEASE_RE",
    "HANDLER_RE",
    "LAMBDA_VERSION_RE",
    "LOG_RETENTION_DAYS",
    "MASK",
    "NAMESPACE",
    "PRICE_CLASSES",
    "REPOSITORY_RE",
    "REQUIRED_KEYS",
    "RESERVED_ENV_VARS",
    "ROUTE_RE",
    "RUNTIME_RE",
    "SCAN_SEVERITIES",
    "SECRET_KEYS",
    "SERVICE_NAME_RE",
    "SOURCE_RE",
    "STACK_NAME_RE",
    "STAGELINE_ENV_VARS",
    "TOP_LEVEL_KEYS",
    "VERSION_RE",
    "AlarmsConfig",
    "ApiConfig",
    "ArtifactsConfig",
    "BudgetConfig",
    "Canary",
    "ConfigError",
    "DeploymentBranches",
    "EnvironmentProtection",
    "FrontendConfig",
    "GitHubConfig",
    "Grant",
    "OidcConfig",
    "PromotionConfig",
    "Release",
    "Reviewers",
    "Secret",
    "Service",
    "StackConfig",
    "StackFile",
    "StateConfig",
    "VerifyConfig",
    "Waiver",
    "decode_config_value",
    "known_stacks",
    "load",
    "parse",
    "parse_stack_file",
    "read_stack_file",
    "route_matches",
    "stack_file_path",
]
