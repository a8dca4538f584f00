"""The artifact store: one S3 bucket for build artifacts and frontend releases, one ECR repository.

Both are stateful: what they hold is what promotion moves between environments and what a
rollback goes back to. So the bucket is versioned and its old versions expire only after a
configured time, the registry's tags are immutable and images are referenced by digest, and
with `artifacts.protect` Pulumi refuses to delete either and a destroy leaves them in place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from infra.buckets import PrivateBucketArgs, private_bucket
from infra.config.model import BUCKET_PREFIX_MAX
from infra.policies import (
    PACKAGES_PREFIX,
    RELEASE_IMAGE_READ_ACTIONS,
    RELEASE_TAG_PREFIX,
    artifact_bucket_prefix,
    release_reader_statement,
    release_repository_name,
    tls_only_bucket_policy,
)

if TYPE_CHECKING:
    from infra.config.model import StackConfig


def bucket_prefix(prefix: str) -> str:
    return artifact_bucket_prefix(prefix)


def repository_name(prefix: str) -> str:
    # One definition with the deploy policies, which grant promotion read access to the source's.
    return release_repository_name(prefix)


# ECR has no "keep" action: a rule that matches an image's tags shields it from every lower-priority
# rule, so the first rule matches the release tags and expires only beyond this many of them.
RELEASE_IMAGES_KEPT = 10_000


def ecr_lifecycle_policy(keep_images: int) -> dict[str, Any]:
    """Never expire an image a release named; of the others, keep the newest `keep_images`.

    Releases pin images by digest, so a rollback needs the old image to still exist: the images a
    release recorded (tagged `release-…`) fall under the first rule, which shields them from the
    second. Images pushed and never recorded in a release (a failed build's, a scan that refused)
    are what `keep_images` bounds.
    """
    if keep_images < 1:
        raise ValueError("keep_images must be at least 1")
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": "Keep every image a release named",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": [RELEASE_TAG_PREFIX],
                    "countType": "imageCountMoreThan",
                    "countNumber": RELEASE_IMAGES_KEPT,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": f"Keep the newest {keep_images} other images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": keep_images,
                },
                "action": {"type": "expire"},
            },
        ],
    }


def lambda_pull_policy(
    repository_arn: str,
    function_prefix: str,
    *,
    reader_accounts: Sequence[str] = (),
    project: str = "stageline",
) -> dict[str, Any]:
    """Let this environment's Lambda functions, and only them, pull images from the repository.

    Lambda reads a container image with its own service principal. Declaring the grant here
    keeps it reviewable; otherwise Lambda would try to add it at function creation, which
    needs the deployer to hold ecr:SetRepositoryPolicy at that moment.

    With `reader_accounts` (`artifacts.readerAccounts`), the deploy roles of those accounts may
    also read images: promotion to a stage in another account copies them by digest from here.
    """
    _, partition, _, region, account, _ = repository_arn.split(":", 5)
    functions = f"arn:{partition}:lambda:{region}:{account}:function:{function_prefix}-*"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "LambdaImagePull",
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Condition": {"StringLike": {"aws:sourceArn": functions}},
        }
    ]
    if reader_accounts:
        statements.append(
            release_reader_statement(
                "PromotionImageRead",
                RELEASE_IMAGE_READ_ACTIONS,
                partition=partition,
                accounts=reader_accounts,
                project=project,
            )
        )
    return {"Version": "2012-10-17", "Statement": statements}


def artifact_bucket_policy(
    bucket_arn: str, *, reader_accounts: Sequence[str] = (), project: str = "stageline"
) -> dict[str, Any]:
    """TLS only; with `reader_accounts`, their deploy roles may also read the zip packages (promotion
    to a stage in another account copies them from here by key)."""
    policy = tls_only_bucket_policy(bucket_arn)
    if reader_accounts:
        partition = bucket_arn.split(":", 2)[1]
        policy["Statement"].append(
            release_reader_statement(
                "PromotionReadPackages",
                ("s3:GetObject",),
                partition=partition,
                accounts=reader_accounts,
                project=project,
                resources=f"{bucket_arn}/{PACKAGES_PREFIX}/*",
            )
        )
    return policy


@dataclass(frozen=True)
class ArtifactStoreArgs:
    bucket_prefix: str  # "<prefix>-artifacts-"; S3 appends a unique suffix
    repository_name: str
    noncurrent_version_days: int = 30
    abort_multipart_days: int = 7
    keep_images: int = 30
    protect: bool = False
    function_prefix: str = ""  # "<prefix>": functions named "<prefix>-*" may pull images
    reader_accounts: tuple[str, ...] = ()  # accounts whose deploy roles may read images (promotion)
    project: str = "stageline"  # reader roles are named "<project>-<stack>-deploy"

    def __post_init__(self) -> None:
        if len(self.bucket_prefix) > BUCKET_PREFIX_MAX:  # S3 appends 26 characters, up to 63
            raise ValueError(
                f"bucket prefix {self.bucket_prefix!r} is longer than {BUCKET_PREFIX_MAX} characters"
            )

    @classmethod
    def from_config(cls, cfg: StackConfig) -> ArtifactStoreArgs:
        # infra.config has already refused stack names that make this prefix too long.
        return cls(
            bucket_prefix=bucket_prefix(cfg.prefix),
            repository_name=repository_name(cfg.prefix),
            noncurrent_version_days=cfg.artifacts.noncurrent_version_days,
            abort_multipart_days=cfg.artifacts.abort_multipart_days,
            keep_images=cfg.artifacts.keep_images,
            protect=cfg.artifacts.protect,
            function_prefix=cfg.prefix,
            reader_accounts=cfg.artifacts.reader_accounts,
            project=cfg.project,
        )


class ArtifactStore(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    repository_name: pulumi.Output[str]
    repository_url: pulumi.Output[str]
    """`<account>.dkr.ecr.<region>.amazonaws.com/<name>`, without tag or digest."""
    repository_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ArtifactStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("stageline:infra:ArtifactStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        store = private_bucket(
            name,
            PrivateBucketArgs(
                bucket_prefix=args.bucket_prefix,
                noncurrent_version_days=args.noncurrent_version_days,
                abort_multipart_days=args.abort_multipart_days,
                protect=args.protect,
            ),
            parent=self,
        )
        bucket = store.bucket
        # Protection comes from config (artifacts.protect), never from the stack's name.
        stateful = pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect)
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=bucket.arn.apply(
                lambda arn: json.dumps(
                    artifact_bucket_policy(arn, reader_accounts=args.reader_accounts, project=args.project)
                )
            ),
            # S3 rejects a policy PUT while a public-access-block change is still settling.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[store.public_access, store.ownership]),
        )

        # No force_delete: deleting a registry that still holds images fails loudly. IMMUTABLE: a
        # tag can never be moved to another image, and releases pin digests anyway.
        repository = aws.ecr.Repository(
            f"{name}-repository",
            name=args.repository_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "AES256"}],
            opts=stateful,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-repository-lifecycle",
            repository=repository.name,
            policy=json.dumps(ecr_lifecycle_policy(args.keep_images)),
            opts=child,
        )

        if args.function_prefix:
            aws.ecr.RepositoryPolicy(
                f"{name}-repository-policy",
                repository=repository.name,
                policy=repository.arn.apply(
                    lambda arn: json.dumps(
                        lambda_pull_policy(
                            arn,
                            args.function_prefix,
                            reader_accounts=args.reader_accounts,
                            project=args.project,
                        )
                    )
                ),
                opts=child,
            )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.repository_name = repository.name
        self.repository_url = repository.repository_url
        self.repository_arn = repository.arn
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "repository_url": self.repository_url,
            }
        )
