"""A private, encrypted, versioned S3 bucket: the one way this program makes a bucket.

Both the artifact store and the frontend keep what promotion and rollback depend on, so both
get the same treatment: ACLs off, all four public-access blocks, SSE-S3 by default, versioning,
and lifecycle rules that clean up what deletes and overwrites leave behind. Each caller adds
its own bucket policy (which must depend on `public_access` and `ownership`, see below).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


def lifecycle_rules(
    *, noncurrent_version_days: int, abort_multipart_days: int
) -> list[aws.s3.BucketLifecycleConfigurationRuleArgsDict]:
    """The bucket's lifecycle rules, as BucketLifecycleConfiguration `rules` input.

    Current objects never expire: a release stays available until someone deletes it. What
    a delete or an overwrite leaves behind (noncurrent versions, then the lone delete markers)
    and abandoned multipart uploads are cleaned up. Each rule does one thing: the provider
    shows a permanent diff for an `expiration` that sets both `days` and
    `expired_object_delete_marker`.
    """
    if noncurrent_version_days < 1 or abort_multipart_days < 1:
        raise ValueError("lifecycle periods must be at least one day")
    everything: aws.s3.BucketLifecycleConfigurationRuleFilterArgsDict = {}  # an empty filter: every object
    return [
        {
            "id": "expire-noncurrent-versions",
            "status": "Enabled",
            "filter": everything,
            "noncurrent_version_expiration": {"noncurrent_days": noncurrent_version_days},
        },
        {
            "id": "remove-expired-delete-markers",
            "status": "Enabled",
            "filter": everything,
            "expiration": {"expired_object_delete_marker": True},
        },
        {
            "id": "abort-incomplete-multipart-uploads",
            "status": "Enabled",
            "filter": everything,
            "abort_incomplete_multipart_upload": {"days_after_initiation": abort_multipart_days},
        },
    ]


@dataclass(frozen=True)
class PrivateBucketArgs:
    bucket_prefix: str  # S3 appends a unique suffix
    noncurrent_version_days: int
    abort_multipart_days: int
    protect: bool = False


@dataclass(frozen=True)
class PrivateBucket:
    bucket: aws.s3.Bucket
    ownership: aws.s3.BucketOwnershipControls
    public_access: aws.s3.BucketPublicAccessBlock
    """A bucket policy must depend on this and on `ownership`: S3 rejects a policy PUT while a
    public-access-block change is still settling."""


def private_bucket(name: str, args: PrivateBucketArgs, parent: pulumi.Resource) -> PrivateBucket:
    """Create the bucket and its settings as children of `parent`, named f"{name}-…"."""
    child = pulumi.ResourceOptions(parent=parent)
    # Protection comes from config, never from the stack's name: the bucket refuses deletion and
    # survives a destroy. Its settings are not protected: losing one loses no data and the next
    # `up` restores it. No force_destroy either: destroying a non-empty bucket fails loudly
    # instead of deleting every artifact and release with it.
    bucket = aws.s3.Bucket(
        f"{name}-bucket",
        bucket_prefix=args.bucket_prefix,
        opts=pulumi.ResourceOptions(parent=parent, protect=args.protect, retain_on_delete=args.protect),
    )
    ownership = aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},  # ACLs off: the bucket policy decides
        opts=child,
    )
    public_access = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption",
        bucket=bucket.id,
        # SSE-S3: readers need no KMS permissions (CloudFront through OAC, Lambda, CI jobs).
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        opts=child,
    )
    versioning = aws.s3.BucketVersioning(
        f"{name}-versioning",
        bucket=bucket.id,
        versioning_configuration={"status": "Enabled"},
        opts=child,
    )
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-lifecycle",
        bucket=bucket.id,
        rules=lifecycle_rules(
            noncurrent_version_days=args.noncurrent_version_days,
            abort_multipart_days=args.abort_multipart_days,
        ),
        # S3 rejects rules on noncurrent versions until versioning is on.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[versioning]),
    )
    return PrivateBucket(bucket=bucket, ownership=ownership, public_access=public_access)
