"""GitHub OIDC trust: the account's provider, a deploy and a preview role per environment.

A GitHub Actions job asks GitHub for an OIDC token and exchanges it with STS for the
credentials of a role whose trust policy names the token's exact `sub`:

- the **deploy role** trusts `repo:OWNER/REPO:environment:<stack>` — a job gets that subject
  only when it references the GitHub environment, so the environment's protection rules
  (reviewers, wait timer, branch policy) stand in front of every deployment;
- the **preview role** trusts `repo:OWNER/REPO:environment:<stack>-readonly` (scheduled drift
  checks, and the previews a promotion run shows before its approval) and, only for a stack with
  `github.pullRequestPreviews` (dev), `repo:OWNER/REPO:pull_request`; it can read, never change —
  not even the state's lock.

The deploy role's rights are scoped to the environment's resources and fenced by a permissions
boundary (see `infra.policies`); a stage with `promotion.source` may also read that stage's
release (its image repository and `releases/` of its frontend bucket), which promotion copies.
It cannot change this component's resources: updating the trust layer takes an administrator's
credentials, by design.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from infra.config.model import ConfigError, Grant
from infra.policies import (
    MANAGED_POLICY_MAX_CHARS,
    OIDC_AUDIENCE,
    OIDC_URL,
    Scope,
    boundary_policy,
    boundary_policy_name,
    check_subject,
    deploy_policies,
    deploy_policy_name,
    deploy_policy_parts,
    deploy_role_name,
    oidc_trust_policy,
    policy_size,
    preview_policies,
    preview_policy_name,
    preview_policy_parts,
    preview_role_name,
    read_only_environment,
)

if TYPE_CHECKING:
    from infra.config.model import StackConfig

# A `pulumi up` that replaces CloudFront distributions can outlast the one-hour default.
DEPLOY_SESSION_SECONDS = 2 * 3600
PREVIEW_SESSION_SECONDS = 3600


@dataclass(frozen=True)
class GitHubTrustArgs:
    prefix: str  # "<project>-<stack>": every name and ARN pattern starts with it
    environment: str
    project: str
    stack: str
    region: str
    deploy_subject: str  # "repo:OWNER/REPO:environment:ENV" (or the immutable form)
    preview_subject: str | None  # "repo:OWNER/REPO:pull_request"; None: pull requests get no role
    read_only_subject: str  # "repo:OWNER/REPO:environment:ENV-readonly": drift checks, gated previews
    existing_provider_arn: str | None = None  # the account's provider, when another stack owns it
    state_bucket: str | None = None
    state_kms_key_arn: str | None = None
    grants: tuple[Grant, ...] = ()  # what services may do; the boundary must allow it
    source_prefix: str | None = None  # "<project>-<promotion.source>": promotion reads its releases
    source_stack: str | None = None  # promotion.source: promotion reads its outputs and history

    def __post_init__(self) -> None:
        for subject in (self.deploy_subject, *self.preview_subjects):
            check_subject(subject)
        if self.deploy_subject in self.preview_subjects:
            raise ValueError("the deploy and preview roles must trust different subjects")

    @classmethod
    def from_config(cls, cfg: StackConfig) -> GitHubTrustArgs:
        args = cls(
            prefix=cfg.prefix,
            environment=cfg.environment,
            project=cfg.project,
            stack=cfg.stack,
            region=cfg.region,
            deploy_subject=cfg.github.subject(f"environment:{cfg.environment}"),
            preview_subject=cfg.github.subject("pull_request") if cfg.github.pull_request_previews else None,
            read_only_subject=cfg.github.subject(f"environment:{read_only_environment(cfg.environment)}"),
            existing_provider_arn=cfg.oidc.provider_arn,
            state_bucket=cfg.state.bucket,
            state_kms_key_arn=cfg.state.kms_key_arn,
            grants=tuple(grant for service in cfg.services for grant in service.grants),
            source_prefix=f"{cfg.project}-{cfg.promotion.source}" if cfg.promotion.source else None,
            source_stack=cfg.promotion.source,
        )
        # Fail at config time, not halfway through an update, when the grants outgrow IAM's limit.
        size = policy_size(args.boundary_document("aws-us-gov", "000000000000"))
        if size > MANAGED_POLICY_MAX_CHARS:
            raise ConfigError(
                f"stageline:services grants make the permissions boundary {size} characters, "
                f"over IAM's limit of {MANAGED_POLICY_MAX_CHARS}; merge or narrow them"
            )
        return args

    def boundary_document(self, partition: str, account_id: str) -> dict[str, Any]:
        return boundary_policy(
            partition=partition,
            account_id=account_id,
            region=self.region,
            prefix=self.prefix,
            grants=self.grants,
        )

    def scope(
        self, partition: str, account_id: str, oidc_provider_arn: str, boundary_policy_arn: str
    ) -> Scope:
        return Scope(
            partition=partition,
            account_id=account_id,
            region=self.region,
            prefix=self.prefix,
            environment=self.environment,
            project=self.project,
            stack=self.stack,
            oidc_provider_arn=oidc_provider_arn,
            boundary_policy_arn=boundary_policy_arn,
            state_bucket=self.state_bucket,
            state_kms_key_arn=self.state_kms_key_arn,
            source_prefix=self.source_prefix,
            source_stack=self.source_stack,
        )

    @property
    def preview_subjects(self) -> tuple[str, ...]:
        if self.preview_subject is None:
            return (self.read_only_subject,)
        return (self.preview_subject, self.read_only_subject)

    @property
    def has_state(self) -> bool:
        return self.state_bucket is not None or self.state_kms_key_arn is not None


def _render(part: str, documents: dict[str, dict[str, Any]]) -> str:
    return json.dumps(documents[part])


class GitHubTrust(pulumi.ComponentResource):
    provider_arn: pulumi.Output[str]
    deploy_role_arn: pulumi.Output[str]
    """What a job in the GitHub environment `<stack>` assumes (`AWS_ROLE_ARN`)."""
    preview_role_arn: pulumi.Output[str]
    """What drift checks, gated previews (and, where admitted, pull-request previews) assume: read-only."""
    permissions_boundary_arn: pulumi.Output[str]
    """Every role the deploy role creates must carry this boundary."""

    def __init__(self, name: str, args: GitHubTrustArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stageline:infra:GitHubTrust", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        provider_arn: pulumi.Output[str]
        if args.existing_provider_arn:
            # Only one provider per URL can exist in an account: environments sharing an
            # account reference the one another stack created.
            provider_arn = pulumi.Output.from_input(args.existing_provider_arn)
        else:
            # No thumbprint_lists: AWS validates GitHub's certificate through its own trust
            # store for this provider and ignores thumbprints.
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-github",
                url=OIDC_URL,
                client_id_lists=[OIDC_AUDIENCE],
                opts=child,
            )
            provider_arn = provider.arn

        # The account and partition come from the credentials in use, so the same program
        # scopes correctly in any account (and in GovCloud or China partitions).
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition

        boundary = aws.iam.Policy(
            f"{name}-boundary",
            name=boundary_policy_name(args.prefix),
            description=f"Upper limit for every role the {args.environment} deploy role creates",
            policy=pulumi.Output.all(partition, account_id).apply(
                lambda v: json.dumps(args.boundary_document(v[0], v[1]))
            ),
            opts=child,
        )

        deploy = aws.iam.Role(
            f"{name}-deploy",
            name=deploy_role_name(args.prefix),
            description=f"GitHub Actions deployments to {args.environment} ({args.deploy_subject})",
            assume_role_policy=provider_arn.apply(
                lambda arn: json.dumps(oidc_trust_policy(arn, args.deploy_subject))
            ),
            max_session_duration=DEPLOY_SESSION_SECONDS,
            opts=child,
        )
        preview = aws.iam.Role(
            f"{name}-preview",
            name=preview_role_name(args.prefix),
            description=f"Read-only previews and drift checks of {args.environment}",
            assume_role_policy=provider_arn.apply(
                lambda arn: json.dumps(oidc_trust_policy(arn, args.preview_subjects))
            ),
            max_session_duration=PREVIEW_SESSION_SECONDS,
            opts=child,
        )

        scope = pulumi.Output.all(partition, account_id, provider_arn, boundary.arn).apply(
            lambda v: args.scope(v[0], v[1], v[2], v[3])
        )
        # The parts are known before any value is: resources must not be created inside an apply.
        self._attach(
            f"{name}-deploy",
            deploy,
            scope.apply(deploy_policies),
            deploy_policy_parts(has_state=args.has_state),
            lambda part: deploy_policy_name(args.prefix, part),
        )
        self._attach(
            f"{name}-preview",
            preview,
            scope.apply(preview_policies),
            preview_policy_parts(has_state=args.has_state),
            lambda part: preview_policy_name(args.prefix, part),
        )

        self.provider_arn = provider_arn
        self.deploy_role_arn = deploy.arn
        self.preview_role_arn = preview.arn
        self.permissions_boundary_arn = boundary.arn
        self.register_outputs(
            {
                "provider_arn": self.provider_arn,
                "deploy_role_arn": self.deploy_role_arn,
                "preview_role_arn": self.preview_role_arn,
                "permissions_boundary_arn": self.permissions_boundary_arn,
            }
        )

    def _attach(
        self,
        name: str,
        role: aws.iam.Role,
        documents: pulumi.Output[dict[str, dict[str, Any]]],
        parts: tuple[str, ...],
        policy_name: Callable[[str], str],
    ) -> None:
        """One managed policy per part (each under IAM's 6,144-character limit), attached to `role`."""
        child = pulumi.ResourceOptions(parent=self)
        for part in parts:
            policy = aws.iam.Policy(
                f"{name}-{part}",
                name=policy_name(part),
                policy=documents.apply(functools.partial(_render, part)),
                opts=child,
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-{part}-attachment", role=role.name, policy_arn=policy.arn, opts=child
            )
