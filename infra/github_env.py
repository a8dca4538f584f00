"""The GitHub side of one environment: protection rules, variables and secrets.

The GitHub environment is named after the stack. A workflow job that says
`environment: <stack>` waits for its protection rules (reviewers, wait timer, branch and tag
policy), then receives its variables and secrets, and gets the OIDC subject the deploy role
trusts. The variables are resource outputs passed in by the program, never typed by hand, so
what a workflow uses cannot drift from what exists.

The two halves are declared by different stacks (`manage_protection`): an environment's protection
rules — the environment itself, its reviewers, its branch and tag policies and the ruleset that
protects those tags — only by a stack listed for it in `github.protects` (one deployed under
review, whose token may administer the repository); its variables and secrets by the stack itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pulumi
import pulumi_github as github

from infra.config.model import DeploymentBranches, Reviewers
from infra.policies import read_only_environment

if TYPE_CHECKING:
    from infra.config.model import StackConfig

# GitHub's rules for variable and secret names.
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_names(kind: str, names: Mapping[str, object]) -> None:
    for key in names:
        if not NAME_RE.match(key) or key.upper().startswith("GITHUB_"):
            raise ValueError(
                f"GitHub {kind} name {key!r} must be letters, digits and _, not start with a digit or GITHUB_"
            )


def preview_role_variable(stack: str) -> str:
    """Repository variable holding a stack's preview role ARN.

    Pull-request jobs get the `pull_request` subject only if they reference no environment, so
    they cannot read environment variables: the preview workflow finds each stack's role here.
    """
    return f"PREVIEW_ROLE_ARN_{stack.upper().replace('-', '_')}"


# GitHub's built-in repository role IDs (rulesets name bypass actors by these).
REPOSITORY_ADMIN_ROLE_ID = 5


def tag_ruleset_name(environment: str) -> str:
    return f"stageline {environment} deployment tags"


def branch_policy(
    branches: DeploymentBranches | None,
) -> github.RepositoryEnvironmentDeploymentBranchPolicyArgsDict | None:
    """RepositoryEnvironment `deployment_branch_policy`: protected branches or named patterns."""
    if branches is None:
        return None
    return {
        "protected_branches": branches.protected_branches,
        "custom_branch_policies": not branches.protected_branches,
    }


@dataclass(frozen=True)
class GitHubEnvironmentArgs:
    repository: str  # the repository's name; the provider carries the owner
    environment: str
    reviewers: Reviewers = field(default_factory=Reviewers)  # logins and team slugs
    prevent_self_review: bool = False
    can_admins_bypass: bool = True
    wait_timer_minutes: int = 0
    deployment_branches: DeploymentBranches | None = None
    variables: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    repository_variables: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # Declare the environment and its protection rules (needs a token that administers the
    # repository); False: only publish variables and secrets into an environment declared elsewhere.
    manage_protection: bool = True

    def __post_init__(self) -> None:
        if "/" in self.repository:
            raise ValueError(f"repository is the name without its owner, got {self.repository!r}")
        _check_names("variable", self.variables)
        _check_names("secret", self.secrets)
        _check_names("variable", self.repository_variables)

    @classmethod
    def from_config(
        cls,
        cfg: StackConfig,
        *,
        variables: Mapping[str, pulumi.Input[str]],
        secrets: Mapping[str, pulumi.Input[str]],
        repository_variables: Mapping[str, pulumi.Input[str]] | None = None,
        manage_protection: bool = True,
    ) -> GitHubEnvironmentArgs:
        protection = cfg.github.protection
        return cls(
            repository=cfg.github.name,
            environment=cfg.stack,
            reviewers=protection.reviewers,
            prevent_self_review=protection.prevent_self_review,
            can_admins_bypass=protection.can_admins_bypass,
            wait_timer_minutes=protection.wait_timer_minutes,
            deployment_branches=protection.deployment_branches,
            variables=dict(variables),
            secrets=dict(secrets),
            repository_variables=dict(repository_variables or {}),
            manage_protection=manage_protection,
        )

    @classmethod
    def read_only_from_config(
        cls,
        cfg: StackConfig,
        *,
        variables: Mapping[str, pulumi.Input[str]],
        manage_protection: bool = True,
    ) -> GitHubEnvironmentArgs:
        """The `<stack>-readonly` environment: no reviewers, protected branches only, no secrets.

        Scheduled jobs cannot wait for a reviewer; what they get is the read-only preview role,
        and only from protected branches, because it can read the stack's state.
        """
        return cls(
            repository=cfg.github.name,
            environment=read_only_environment(cfg.stack),
            can_admins_bypass=False,
            deployment_branches=DeploymentBranches(protected_branches=True),
            variables=dict(variables),
            manage_protection=manage_protection,
        )


class GitHubEnvironment(pulumi.ComponentResource):
    environment_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: GitHubEnvironmentArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("stageline:infra:GitHubEnvironment", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        env_name: pulumi.Output[str] = pulumi.Output.from_input(args.environment)
        if args.manage_protection:
            env_name = self._protection(name, args, child)

        for key, value in sorted(args.variables.items()):
            github.ActionsEnvironmentVariable(
                f"{name}-var-{key}",
                repository=args.repository,
                environment=env_name,
                variable_name=key,
                value=value,
                opts=child,
            )
        for key, value in sorted(args.secrets.items()):
            # `value` is encrypted for GitHub by the provider and stored as a secret in state;
            # wrapping it again keeps it secret even if a caller passed a plain string.
            github.ActionsEnvironmentSecret(
                f"{name}-secret-{key}",
                repository=args.repository,
                environment=env_name,
                secret_name=key,
                value=pulumi.Output.secret(value),
                opts=child,
            )

        for key, value in sorted(args.repository_variables.items()):
            github.ActionsVariable(
                f"{name}-repo-var-{key}",
                repository=args.repository,
                variable_name=key,
                value=value,
                opts=child,
            )

        self.environment_name = env_name
        self.register_outputs({"environment_name": self.environment_name})

    def _protection(
        self, name: str, args: GitHubEnvironmentArgs, child: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        """The environment, its reviewers and branch/tag policies, and a ruleset protecting its tags."""
        # GitHub's API takes reviewer IDs; the stack file names people and teams. The lookups run
        # through this component's GitHub provider, so they resolve in the configured owner.
        invoke = pulumi.InvokeOutputOptions(parent=self)
        users = [
            github.get_user_output(username=login, opts=invoke).id.apply(int)
            for login in args.reviewers.users
        ]
        teams = [
            github.get_team_output(slug=slug, summary_only=True, opts=invoke).id.apply(int)
            for slug in args.reviewers.teams
        ]

        environment = github.RepositoryEnvironment(
            f"{name}-environment",
            repository=args.repository,
            environment=args.environment,
            reviewers=[{"users": users, "teams": teams}] if users or teams else None,
            prevent_self_review=args.prevent_self_review,
            can_admins_bypass=args.can_admins_bypass,
            wait_timer=args.wait_timer_minutes,
            deployment_branch_policy=branch_policy(args.deployment_branches),
            opts=child,
        )
        # Everything below takes the environment's name from its output, so it is created only
        # once the environment and its protection rules exist.
        env_name = environment.environment

        branches = args.deployment_branches
        if branches is not None and not branches.protected_branches:
            for pattern in branches.branch_patterns:
                github.RepositoryEnvironmentDeploymentPolicy(
                    f"{name}-branch-{pattern}",
                    repository=args.repository,
                    environment=env_name,
                    branch_pattern=pattern,
                    opts=child,
                )
            for pattern in branches.tag_patterns:
                github.RepositoryEnvironmentDeploymentPolicy(
                    f"{name}-tag-{pattern}",
                    repository=args.repository,
                    environment=env_name,
                    tag_pattern=pattern,
                    opts=child,
                )
            if branches.tag_patterns:
                # A tag pattern admits whoever can push a matching tag: only repository admins may
                # create, move or delete these tags, so a deployment from a tag is one they made.
                github.RepositoryRuleset(
                    f"{name}-tags",
                    repository=args.repository,
                    name=tag_ruleset_name(args.environment),
                    target="tag",
                    enforcement="active",
                    conditions={
                        "ref_name": {
                            "includes": [f"refs/tags/{p}" for p in branches.tag_patterns],
                            "excludes": [],
                        }
                    },
                    rules={"creation": True, "update": True, "deletion": True},
                    bypass_actors=[
                        {
                            "actor_type": "RepositoryRole",
                            "actor_id": REPOSITORY_ADMIN_ROLE_ID,
                            "bypass_mode": "always",
                        }
                    ],
                    opts=child,
                )
        return env_name
