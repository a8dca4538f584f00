"""The artifact store: bucket hardening, registry settings, lifecycle rules, protection from config."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from foundation_testkit import run, stack_values

from infra.artifacts import ArtifactStore, ArtifactStoreArgs, ecr_lifecycle_policy
from infra.buckets import lifecycle_rules
from infra.config import load
from infra.policies import RELEASE_TAG_PREFIX, release_image_tag
from infra.simulate import SimResource, Simulation


def store_program() -> None:
    cfg = load()
    provider = aws.Provider("aws", region=cfg.region)
    store = ArtifactStore(
        "artifacts", ArtifactStoreArgs.from_config(cfg), pulumi.ResourceOptions(providers={"aws": provider})
    )
    pulumi.export("bucket", store.bucket_name)
    pulumi.export("bucketArn", store.bucket_arn)
    pulumi.export("repositoryName", store.repository_name)
    pulumi.export("repositoryUrl", store.repository_url)
    pulumi.export("repositoryArn", store.repository_arn)


def simulate_store(stack: str, **artifacts: Any) -> Simulation:
    values = stack_values(stack)
    values["artifacts"] = {**values.get("artifacts", {}), **artifacts}
    return run(values, stack=stack, program=store_program)


@pytest.fixture(scope="module")
def prod() -> Simulation:
    return simulate_store("prod")


@pytest.fixture(scope="module")
def dev() -> Simulation:
    return simulate_store("dev")


def for_bucket(sim: Simulation, type_: str, bucket: SimResource) -> SimResource:
    (found,) = [r for r in sim.of_type(type_) if r.inputs.get("bucket") == bucket.id]
    return found


# --- pure documents -------------------------------------------------------------------------


def test_lifecycle_rules_expire_only_what_deletes_and_failed_uploads_leave_behind() -> None:
    rules = lifecycle_rules(noncurrent_version_days=90, abort_multipart_days=7)
    assert rules == [
        {
            "id": "expire-noncurrent-versions",
            "status": "Enabled",
            "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": 90},
        },
        {
            "id": "remove-expired-delete-markers",
            "status": "Enabled",
            "filter": {},
            "expiration": {"expired_object_delete_marker": True},
        },
        {
            "id": "abort-incomplete-multipart-uploads",
            "status": "Enabled",
            "filter": {},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        },
    ]
    # Current objects never expire: the only `expiration` removes lone delete markers.
    assert [r["id"] for r in rules if "expiration" in r] == ["remove-expired-delete-markers"]


@pytest.mark.parametrize(("noncurrent", "multipart"), [(0, 7), (30, 0)])
def test_lifecycle_periods_below_a_day_are_refused(noncurrent: int, multipart: int) -> None:
    with pytest.raises(ValueError, match="at least one day"):
        lifecycle_rules(noncurrent_version_days=noncurrent, abort_multipart_days=multipart)


def test_the_registry_keeps_every_release_image_and_the_newest_n_others() -> None:
    assert ecr_lifecycle_policy(20) == {
        "rules": [
            {
                # Matching a release tag shields an image from the lower-priority rule below.
                "rulePriority": 1,
                "description": "Keep every image a release named",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": ["release-"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 10_000,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": "Keep the newest 20 other images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
                "action": {"type": "expire"},
            },
        ]
    }
    # The tag promotion and `build --image` put on every image a release names falls under rule 1.
    assert release_image_tag("api", "4f9c2d1").startswith(RELEASE_TAG_PREFIX)
    with pytest.raises(ValueError, match="at least 1"):
        ecr_lifecycle_policy(0)


def test_a_bucket_prefix_longer_than_s3_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 37"):
        ArtifactStoreArgs(bucket_prefix="stageline-a-very-long-stack-name-artifacts-", repository_name="x")


# --- the component ----------------------------------------------------------------------------


def test_the_bucket_is_named_after_the_environment_and_exported(prod: Simulation) -> None:
    bucket = prod.named("artifacts-bucket")
    assert bucket.inputs == {"bucketPrefix": "stageline-prod-artifacts-"}  # no force_destroy
    assert prod.outputs["bucket"] == bucket.outputs["bucket"]
    assert prod.outputs["bucketArn"] == bucket.outputs["arn"]


def test_the_bucket_is_private_encrypted_versioned_and_tls_only(prod: Simulation) -> None:
    bucket = prod.named("artifacts-bucket")
    block = for_bucket(prod, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", bucket)
    assert {k: v for k, v in block.inputs.items() if k != "bucket"} == {
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    ownership = for_bucket(prod, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", bucket)
    assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    encryption = for_bucket(
        prod, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", bucket
    )
    assert encryption.inputs["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    versioning = for_bucket(prod, "aws:s3/bucketVersioning:BucketVersioning", bucket)
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}
    policy = json.loads(for_bucket(prod, "aws:s3/bucketPolicy:BucketPolicy", bucket).inputs["policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Resource"] == [bucket.outputs["arn"], f"{bucket.outputs['arn']}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_policy_waits_for_the_access_block_and_the_rules_for_versioning(prod: Simulation) -> None:
    bucket = prod.named("artifacts-bucket")
    policy = for_bucket(prod, "aws:s3/bucketPolicy:BucketPolicy", bucket)
    lifecycle = for_bucket(prod, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", bucket)
    assert prod.named("artifacts-public-access").urn in policy.dependencies
    assert prod.named("artifacts-versioning").urn in lifecycle.dependencies


@pytest.mark.parametrize(
    ("stack", "noncurrent", "multipart", "keep"), [("dev", 7, 1, 20), ("prod", 90, 7, 100)]
)
def test_lifecycle_and_retention_come_from_the_stack_file(
    stack: str, noncurrent: int, multipart: int, keep: int
) -> None:
    sim = simulate_store(stack)
    rules = sim.named("artifacts-lifecycle").inputs["rules"]
    assert {r["id"]: r for r in rules}["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {
        "noncurrentDays": noncurrent
    }
    assert {r["id"]: r for r in rules}["abort-incomplete-multipart-uploads"][
        "abortIncompleteMultipartUpload"
    ] == {"daysAfterInitiation": multipart}
    ecr_policy = json.loads(sim.named("artifacts-repository-lifecycle").inputs["policy"])
    assert ecr_policy["rules"][-1]["selection"]["countNumber"] == keep


def test_the_registry_has_immutable_tags_and_scans_every_push(prod: Simulation) -> None:
    repository = prod.named("artifacts-repository")
    assert repository.inputs["name"] == "stageline-prod-app"
    assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert "forceDelete" not in repository.inputs
    assert prod.named("artifacts-repository-lifecycle").inputs["repository"] == "stageline-prod-app"
    assert prod.outputs["repositoryUrl"] == repository.outputs["repositoryUrl"]
    assert prod.outputs["repositoryArn"] == repository.outputs["arn"]


def test_protect_in_config_protects_and_retains_the_stateful_resources(
    prod: Simulation, dev: Simulation
) -> None:
    for name in ("artifacts-bucket", "artifacts-repository"):
        assert (prod.named(name).protect, prod.named(name).retain_on_delete) == (True, True)
        assert (dev.named(name).protect, dev.named(name).retain_on_delete) == (False, False)
    # The switch is the config key, not the stack name.
    switched = simulate_store("dev", protect=True)
    assert (
        switched.named("artifacts-bucket").protect and switched.named("artifacts-repository").retain_on_delete
    )
    # Sub-configurations lose no data and are not protected.
    assert not prod.named("artifacts-versioning").protect


def test_only_this_environments_functions_may_pull_images() -> None:
    from infra.artifacts import lambda_pull_policy

    arn = "arn:aws:ecr:eu-west-1:123456789012:repository/stageline-dev"
    doc = lambda_pull_policy(arn, "stageline-dev")
    [statement] = doc["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert sorted(statement["Action"]) == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert statement["Condition"] == {
        "StringLike": {"aws:sourceArn": "arn:aws:lambda:eu-west-1:123456789012:function:stageline-dev-*"}
    }


def test_reader_accounts_let_their_deploy_roles_read_images_and_nothing_else() -> None:
    from infra.artifacts import lambda_pull_policy

    arn = "arn:aws:ecr:eu-west-1:123456789012:repository/stageline-dev-app"
    assert lambda_pull_policy(arn, "stageline-dev", reader_accounts=()) == lambda_pull_policy(
        arn, "stageline-dev"
    )
    doc = json.loads(json.dumps(lambda_pull_policy(arn, "stageline-dev", reader_accounts=["210987654321"])))
    _, reader = doc["Statement"]
    assert reader == {
        "Sid": "PromotionImageRead",
        "Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam::210987654321:root"]},
        "Action": [
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchCheckLayerAvailability",
            "ecr:DescribeImages",
        ],
        # Only roles named like this project's deploy roles, not every principal of the account.
        "Condition": {"ArnLike": {"aws:PrincipalArn": ["arn:aws:iam::210987654321:role/stageline-*-deploy"]}},
    }
    assert not any(a.startswith(("ecr:Put", "ecr:Delete", "ecr:Set", "ecr:Upload")) for a in reader["Action"])


def test_reader_accounts_from_the_stack_file_reach_the_repository_policy() -> None:
    sim = simulate_store("dev", readerAccounts=["210987654321", "345678901234"])
    policy = json.loads(sim.named("artifacts-repository-policy").inputs["policy"])
    (reader,) = [st for st in policy["Statement"] if st["Sid"] == "PromotionImageRead"]
    assert reader["Principal"] == {
        "AWS": ["arn:aws:iam::210987654321:root", "arn:aws:iam::345678901234:root"]
    }
    shipped = json.loads(simulate_store("dev").named("artifacts-repository-policy").inputs["policy"])
    assert [st["Sid"] for st in shipped["Statement"]] == ["LambdaImagePull"]
