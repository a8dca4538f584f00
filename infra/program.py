"""The Stageline program: one `deploy()` that `pulumi up` and the driver both run.

Data flows one way: stack config → `infra.config` (typed, validated) → components →
resources and stack outputs. Only this module reads config and builds providers; components
receive typed arguments and providers through ResourceOptions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra import outputs
from infra.artifacts import ArtifactStore, ArtifactStoreArgs
from infra.config.model import StackConfig
from infra.config.stack_file import load, parse_stack_file, read_stack_file
from infra.github_env import GitHubEnvironment, GitHubEnvironmentArgs, preview_role_variable
from infra.oidc import GitHubTrust, GitHubTrustArgs
from infra.platform import build_platform


def base_tags(cfg: StackConfig) -> dict[str, str]:
    """Tags every AWS resource carries (as provider default tags)."""
    return {**cfg.tags, "project": cfg.project, "environment": cfg.environment, "managed-by": "pulumi"}


def aws_provider(cfg: StackConfig) -> aws.Provider:
    return aws.Provider(
        "aws",
        region=cfg.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=base_tags(cfg)),
    )


GITHUB_TOKEN_VARIABLE = "GITHUB_TOKEN"  # noqa: S105 (the variable's name, not a token)


def github_provider(cfg: StackConfig) -> pulumi.ProviderResource:
    import pulumi_github as github

    # An explicit provider: the owner comes from the stack file, never from whoever runs it. No
    # token input: the provider plugin reads GITHUB_TOKEN from the job's environment when it is
    # configured, so the token is never a resource input and never lands in the state (config
    # refuses `github:token`). The SDK's Provider class would copy GITHUB_TOKEN from this
    # process's environment into its inputs (as a secret, stored in the state), so it must not
    # see it while the provider is declared.
    hidden = os.environ.pop(GITHUB_TOKEN_VARIABLE, None)
    try:
        return github.Provider("github", owner=cfg.github.owner)
    finally:
        if hidden is not None:
            os.environ[GITHUB_TOKEN_VARIABLE] = hidden


# Where the stack files are: the program reads the stacks it protects from their committed files.
# The project's root (the engine runs the program there); offline renders of another checkout
# point it at theirs (`stack_files_at`).
_stack_files_root = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def stack_files_at(root: Path) -> Iterator[None]:
    global _stack_files_root  # noqa: PLW0603 - one program per process, as under the engine
    previous, _stack_files_root = _stack_files_root, root
    try:
        yield
    finally:
        _stack_files_root = previous


def protected_config(cfg: StackConfig, stack: str) -> StackConfig:
    """The config of a stack named in `github.protects` (this stack's own, or its stack file's)."""
    if stack == cfg.stack:
        return cfg
    return parse_stack_file(read_stack_file(_stack_files_root, stack), cfg.project)


def deploy() -> None:
    cfg = load()
    aws_opts = pulumi.ResourceOptions(providers={"aws": aws_provider(cfg)})

    trust = GitHubTrust("trust", GitHubTrustArgs.from_config(cfg), aws_opts)
    artifacts = ArtifactStore("artifacts", ArtifactStoreArgs.from_config(cfg), aws_opts)
    platform = build_platform(cfg, aws_opts, artifacts, trust.permissions_boundary_arn)

    exports: dict[str, pulumi.Input[object]] = {
        outputs.REGION: cfg.region,
        outputs.ENVIRONMENT: cfg.environment,
        outputs.RELEASE_VERSION: cfg.release.version,
        outputs.OIDC_PROVIDER_ARN: trust.provider_arn,
        outputs.DEPLOY_ROLE_ARN: trust.deploy_role_arn,
        outputs.PREVIEW_ROLE_ARN: trust.preview_role_arn,
        outputs.ARTIFACT_BUCKET: artifacts.bucket_name,
        outputs.ECR_REPOSITORY_NAME: artifacts.repository_name,
        outputs.ECR_REPOSITORY_URL: artifacts.repository_url,
        **platform.exports,
    }
    for name, value in exports.items():
        pulumi.export(name, value)

    if cfg.github.manage:
        github_opts = pulumi.ResourceOptions(providers={"github": github_provider(cfg)})
        protects_self = cfg.stack in cfg.github.protects
        # Everything a workflow needs, derived from resource outputs so it cannot drift.
        variables: Mapping[str, pulumi.Input[str]] = {
            "AWS_ROLE_ARN": trust.deploy_role_arn,
            "AWS_REGION": cfg.region,
            "PULUMI_STACK": cfg.stack,
            "ARTIFACT_BUCKET": artifacts.bucket_name,
            "ECR_REPOSITORY": artifacts.repository_url,
            **platform.variables,
        }
        secrets: dict[str, pulumi.Input[str]] = {}
        if cfg.slack_webhook_url is not None:
            secrets["SLACK_WEBHOOK_URL"] = cfg.slack_webhook_url
        # Pull-request previews reference no environment (or their OIDC subject would not be
        # `pull_request`), so they find the preview role in a repository variable. Only stacks
        # that admit pull-request previews publish one.
        repository_variables: dict[str, pulumi.Input[str]] = {}
        if cfg.github.pull_request_previews:
            repository_variables[preview_role_variable(cfg.stack)] = trust.preview_role_arn
        env = GitHubEnvironment(
            "github",
            GitHubEnvironmentArgs.from_config(
                cfg,
                variables=variables,
                secrets=secrets,
                repository_variables=repository_variables,
                manage_protection=protects_self,
            ),
            github_opts,
        )
        # Scheduled drift checks and the previews shown before an approval: no reviewers to wait
        # for, and only the read-only role.
        GitHubEnvironment(
            "github-readonly",
            GitHubEnvironmentArgs.read_only_from_config(
                cfg,
                variables={
                    "AWS_ROLE_ARN": trust.preview_role_arn,
                    "AWS_REGION": cfg.region,
                    "PULUMI_STACK": cfg.stack,
                },
                manage_protection=protects_self,
            ),
            github_opts,
        )
        # The protection rules of the other environments this (reviewed) stack governs.
        for name in cfg.github.protects:
            if name == cfg.stack:
                continue
            other = protected_config(cfg, name)
            GitHubEnvironment(
                f"protect-{name}",
                GitHubEnvironmentArgs.from_config(other, variables={}, secrets={}),
                github_opts,
            )
            GitHubEnvironment(
                f"protect-{name}-readonly",
                GitHubEnvironmentArgs.read_only_from_config(other, variables={}),
                github_opts,
            )
        pulumi.export(outputs.GITHUB_ENVIRONMENT, env.environment_name)
