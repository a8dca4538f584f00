"""Frontend: a private bucket of immutable releases behind two HTTPS-only, OAC-signed distributions."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError, load, parse, read_stack_file
from infra.frontend import (
    Frontend,
    FrontendArgs,
    content_security_policy,
    frontend_bucket_policy,
    origin_path,
)
from infra.simulate import SimResource, Simulation, simulate

ROOT = Path(__file__).resolve().parents[2]
API_ENDPOINT = "https://abc123.execute-api.eu-west-1.amazonaws.com"


# The release the image-based tests were written for: the shipped stack files now run the example
# app's zip packages, and images keep working the same.
IMAGE_RELEASE = {
    "version": "4f9c2d1",
    "images": {
        "api": "sha256:b3fe26efe42b5022a03a801d1f17d84b6bf4a2efa0442a5ad177f59ab403c48a",
        "worker": "sha256:3256822ca844d9280bfa16718ca6a8b203da9ada525fd1ff80b5ce3dbb4ab67d",
    },
}


def stack_values(stack: str = "dev") -> dict[str, Any]:
    values = copy.deepcopy(read_stack_file(ROOT, stack).values)
    values["release"] = copy.deepcopy(IMAGE_RELEASE)
    return values


def run_frontend(values: dict[str, Any], stack: str = "dev") -> Simulation:
    def program() -> None:
        cfg = load()
        Frontend("frontend", FrontendArgs.from_config(cfg, api_endpoint=API_ENDPOINT))

    return simulate(values, stack=stack, program=program)


def config_error(values: dict[str, Any], stack: str = "dev") -> str:
    with pytest.raises(ConfigError) as info:
        parse(values, stack=stack, region="eu-west-1")
    assert "\n" not in str(info.value)
    return str(info.value)


def attached(sim: Simulation, type_: str, bucket: SimResource) -> SimResource:
    """The one bucket sub-resource of `type_` that configures `bucket`."""
    (found,) = [r for r in sim.of_type(type_) if r.inputs["bucket"] == bucket.id]
    return found


@pytest.fixture(scope="module")
def dev() -> Simulation:
    return run_frontend(stack_values("dev"))


@pytest.fixture(scope="module")
def candidate() -> Simulation:
    values = stack_values("prod")
    values["release"]["candidate"] = "9a8b7c6"
    return run_frontend(values, stack="prod")


def distributions(sim: Simulation) -> dict[str, SimResource]:
    return {
        d.name.removeprefix("frontend-"): d for d in sim.of_type("aws:cloudfront/distribution:Distribution")
    }


# --- pure rules ---------------------------------------------------------------------------------


def test_origin_path_is_the_release_prefix() -> None:
    assert origin_path("4f9c2d1") == "/releases/4f9c2d1"


@pytest.mark.parametrize("version", ["", "a/b", "../x"])
def test_origin_path_refuses_anything_but_one_segment(version: str) -> None:
    with pytest.raises(ValueError):
        origin_path(version)


def test_bucket_policy_is_tls_only_and_readable_only_by_the_two_distributions() -> None:
    bucket = "arn:aws:s3:::stageline-dev-frontend-x"
    arns = [
        "arn:aws:cloudfront::123456789012:distribution/E2",
        "arn:aws:cloudfront::123456789012:distribution/E1",
    ]
    deny, allow = frontend_bucket_policy(bucket, arns)["Statement"]
    assert deny == {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket, f"{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    assert allow == {
        "Sid": "AllowCloudFrontReadReleases",
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": f"{bucket}/releases/*",
        "Condition": {"StringEquals": {"AWS:SourceArn": sorted(arns)}},
    }


def test_bucket_policy_lets_deploy_roles_of_reader_accounts_read_releases_only() -> None:
    bucket = "arn:aws:s3:::stageline-dev-frontend-x"
    arns = ["arn:aws:cloudfront::123456789012:distribution/E1"]
    assert frontend_bucket_policy(bucket, arns) == frontend_bucket_policy(bucket, arns, reader_accounts=())
    policy = frontend_bucket_policy(
        bucket, arns, reader_accounts=["210987654321", "345678901234"], project="stageline"
    )
    parsed = json.loads(json.dumps(policy))
    _, _, listing, reading = parsed["Statement"]
    roots = ["arn:aws:iam::210987654321:root", "arn:aws:iam::345678901234:root"]
    deploy_roles = [
        "arn:aws:iam::210987654321:role/stageline-*-deploy",
        "arn:aws:iam::345678901234:role/stageline-*-deploy",
    ]
    assert listing == {
        "Sid": "PromotionListReleases",
        "Effect": "Allow",
        "Principal": {"AWS": roots},
        "Action": ["s3:ListBucket"],
        "Resource": bucket,
        "Condition": {
            "StringLike": {"s3:prefix": "releases/*"},
            "ArnLike": {"aws:PrincipalArn": deploy_roles},
        },
    }
    assert reading == {
        "Sid": "PromotionReadReleases",
        "Effect": "Allow",
        "Principal": {"AWS": roots},
        "Action": ["s3:GetObject"],
        "Resource": f"{bucket}/releases/*",
        "Condition": {"ArnLike": {"aws:PrincipalArn": deploy_roles}},
    }
    # The same in another partition: every ARN follows the bucket's.
    gov = frontend_bucket_policy("arn:aws-us-gov:s3:::b", arns, reader_accounts=["210987654321"])
    assert gov["Statement"][2]["Principal"] == {"AWS": ["arn:aws-us-gov:iam::210987654321:root"]}


def test_reader_accounts_from_config_reach_the_bucket_policy() -> None:
    values = stack_values("dev")
    values["artifacts"]["readerAccounts"] = ["210987654321"]
    sim = run_frontend(values)
    (bucket,) = sim.of_type("aws:s3/bucket:Bucket")
    policy = json.loads(attached(sim, "aws:s3/bucketPolicy:BucketPolicy", bucket).inputs["policy"])
    arns = [d.outputs["arn"] for d in distributions(sim).values()]
    assert policy == frontend_bucket_policy(bucket.outputs["arn"], arns, reader_accounts=["210987654321"])
    assert [st["Sid"] for st in policy["Statement"]][2:] == ["PromotionListReleases", "PromotionReadReleases"]


def test_bucket_policy_without_distributions_is_refused() -> None:
    with pytest.raises(ValueError):
        frontend_bucket_policy("arn:aws:s3:::b", [])


def test_csp_allows_the_api_origin_and_forbids_framing() -> None:
    csp = content_security_policy(API_ENDPOINT + "/api/health")
    directives = dict(d.split(" ", 1) for d in csp.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["connect-src"] == f"'self' {API_ENDPOINT}"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "connect-src 'self';" in content_security_policy(None) + ";"


# --- the bucket -----------------------------------------------------------------------------------


def test_the_bucket_is_private_encrypted_versioned_and_owner_enforced(dev: Simulation) -> None:
    (bucket,) = dev.of_type("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucketPrefix"] == "stageline-dev-frontend-"
    assert "acl" not in bucket.inputs and "website" not in bucket.inputs
    block = attached(dev, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", bucket)
    assert all(
        block.inputs[k] is True
        for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    sse = attached(
        dev, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", bucket
    )
    assert sse.inputs["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    versioning = attached(dev, "aws:s3/bucketVersioning:BucketVersioning", bucket)
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    ownership = attached(dev, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", bucket)
    assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    lifecycle = attached(dev, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", bucket)
    rules = {rule["id"]: rule for rule in lifecycle.inputs["rules"]}
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": 7}
    assert rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"] == {
        "daysAfterInitiation": 1
    }
    assert "expiration" not in rules["expire-noncurrent-versions"]  # current releases never expire


def test_the_bucket_policy_admits_only_cloudfront_for_these_two_distributions(dev: Simulation) -> None:
    (bucket,) = dev.of_type("aws:s3/bucket:Bucket")
    policy = json.loads(attached(dev, "aws:s3/bucketPolicy:BucketPolicy", bucket).inputs["policy"])
    arns = [d.outputs["arn"] for d in distributions(dev).values()]
    assert policy == frontend_bucket_policy(bucket.outputs["arn"], arns)


def test_the_bucket_is_protected_exactly_when_artifacts_are() -> None:
    values = stack_values("dev")
    (bucket,) = run_frontend(values).of_type("aws:s3/bucket:Bucket")
    assert (bucket.protect, bucket.retain_on_delete) == (False, False)
    values["artifacts"]["protect"] = True
    (bucket,) = run_frontend(values).of_type("aws:s3/bucket:Bucket")
    assert (bucket.protect, bucket.retain_on_delete) == (True, True)


# --- the distributions ----------------------------------------------------------------------------


def test_there_are_exactly_two_distributions_app_and_test(dev: Simulation) -> None:
    assert set(distributions(dev)) == {"app", "test"}


def test_both_distributions_reach_the_bucket_only_through_origin_access_control(dev: Simulation) -> None:
    (oac,) = dev.of_type("aws:cloudfront/originAccessControl:OriginAccessControl")
    assert oac.inputs["originAccessControlOriginType"] == "s3"
    assert oac.inputs["signingBehavior"] == "always"
    assert oac.inputs["signingProtocol"] == "sigv4"
    (bucket,) = dev.of_type("aws:s3/bucket:Bucket")
    for dist in distributions(dev).values():
        (origin,) = dist.inputs["origins"]
        assert origin["originAccessControlId"] == oac.id
        assert origin["domainName"] == bucket.outputs["bucketRegionalDomainName"]
        assert "s3OriginConfig" not in origin and "customOriginConfig" not in origin


def test_both_distributions_serve_https_only_with_security_headers(dev: Simulation) -> None:
    (headers,) = dev.of_type("aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy")
    for dist in distributions(dev).values():
        behaviors = [dist.inputs["defaultCacheBehavior"], *dist.inputs.get("orderedCacheBehaviors", [])]
        for behavior in behaviors:
            assert behavior["viewerProtocolPolicy"] == "redirect-to-https"
            assert behavior["responseHeadersPolicyId"] == headers.id
        assert dist.inputs["viewerCertificate"] == {"cloudfrontDefaultCertificate": True}


def test_an_origin_switch_is_seen_at_once_because_index_html_is_never_cached_by_default(
    dev: Simulation,
) -> None:
    # The cache key has no origin path: with a default TTL of a day (Managed-CachingOptimized),
    # the old release's index.html would outlive a switch by up to 24 h.
    (policy,) = dev.of_type("aws:cloudfront/cachePolicy:CachePolicy")
    assert policy.inputs["name"] == "stageline-dev-frontend"
    assert policy.inputs["minTtl"] == 0
    assert policy.inputs["defaultTtl"] == 0  # index.html is uploaded without Cache-Control
    assert policy.inputs["maxTtl"] == 31_536_000  # hashed assets with a long max-age still cache
    key = policy.inputs["parametersInCacheKeyAndForwardedToOrigin"]
    assert key["cookiesConfig"] == {"cookieBehavior": "none"}
    assert key["headersConfig"] == {"headerBehavior": "none"}
    assert key["queryStringsConfig"] == {"queryStringBehavior": "none"}
    assert key["enableAcceptEncodingGzip"] is True and key["enableAcceptEncodingBrotli"] is True
    for dist in distributions(dev).values():
        behaviors = [dist.inputs["defaultCacheBehavior"], *dist.inputs.get("orderedCacheBehaviors", [])]
        for behavior in behaviors:
            assert behavior["cachePolicyId"] == policy.id
            assert "defaultTtl" not in behavior and "forwardedValues" not in behavior
        # The SPA fallback (index.html for unknown paths) is cached only briefly too.
        assert {e["errorCachingMinTtl"] for e in dist.inputs["customErrorResponses"]} == {10}


def test_both_distributions_are_single_page_apps(dev: Simulation) -> None:
    for dist in distributions(dev).values():
        assert dist.inputs["defaultRootObject"] == "index.html"
        fallbacks = {
            e["errorCode"]: (e["responseCode"], e["responsePagePath"])
            for e in dist.inputs["customErrorResponses"]
        }
        assert fallbacks == {403: (200, "/index.html"), 404: (200, "/index.html")}


def test_the_security_headers_policy(dev: Simulation) -> None:
    (headers,) = dev.of_type("aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy")
    config = headers.inputs["securityHeadersConfig"]
    assert config["strictTransportSecurity"]["accessControlMaxAgeSec"] >= 31_536_000
    assert config["strictTransportSecurity"]["includeSubdomains"] is True
    assert config["contentTypeOptions"] == {"override": True}
    assert config["frameOptions"] == {"frameOption": "DENY", "override": True}
    assert config["referrerPolicy"]["referrerPolicy"] == "strict-origin-when-cross-origin"
    # "0": the legacy XSS auditor is off ("1; mode=block" can leak page content); the CSP protects.
    assert config["xssProtection"] == {"protection": False, "override": True}
    assert config["contentSecurityPolicy"]["contentSecurityPolicy"] == content_security_policy(API_ENDPOINT)
    assert all(header["override"] is True for header in config.values())


def test_without_a_candidate_both_distributions_serve_the_live_release(dev: Simulation) -> None:
    paths = {role: d.inputs["origins"][0]["originPath"] for role, d in distributions(dev).items()}
    assert paths == {"app": "/releases/4f9c2d1", "test": "/releases/4f9c2d1"}


def test_app_serves_the_release_and_test_serves_the_candidate(candidate: Simulation) -> None:
    paths = {role: d.inputs["origins"][0]["originPath"] for role, d in distributions(candidate).items()}
    assert paths == {"app": "/releases/4f9c2d1", "test": "/releases/9a8b7c6"}


def test_promotion_changes_only_the_origin_path(candidate: Simulation) -> None:
    # Promoting the candidate = setting release.version to it: APP's origin path moves, and
    # nothing about the bucket (the uploaded files) changes.
    values = stack_values("prod")
    values["release"]["version"] = "9a8b7c6"
    promoted = run_frontend(values, stack="prod")
    before, after = distributions(candidate)["app"], distributions(promoted)["app"]
    changed = {
        k for k in before.inputs.keys() | after.inputs.keys() if before.inputs.get(k) != after.inputs.get(k)
    }
    assert changed == {"origins", "comment"}
    assert after.inputs["origins"][0]["originPath"] == "/releases/9a8b7c6"
    assert (
        candidate.of_type("aws:s3/bucket:Bucket")[0].inputs
        == promoted.of_type("aws:s3/bucket:Bucket")[0].inputs
    )


def test_price_class_follows_the_stack_config(dev: Simulation, candidate: Simulation) -> None:
    assert {d.inputs["priceClass"] for d in distributions(dev).values()} == {"PriceClass_100"}
    assert {d.inputs["priceClass"] for d in distributions(candidate).values()} == {"PriceClass_200"}


# --- config errors --------------------------------------------------------------------------------


def test_an_unknown_price_class_is_a_config_error() -> None:
    values = stack_values()
    values["frontend"] = {"priceClass": "PriceClass_50"}
    assert config_error(values) == (
        "stageline:frontend.priceClass must be one of PriceClass_100, PriceClass_200, "
        'PriceClass_All, got "PriceClass_50"'
    )


def test_a_candidate_that_is_not_a_version_is_a_config_error() -> None:
    values = stack_values()
    values["release"]["candidate"] = "releases/next"
    assert config_error(values).startswith(
        "stageline:release.candidate must look like a version or git SHA (letters, digits, . _ -; up to 64), "
        'got "releases/next"'
    )


def test_an_unknown_frontend_key_is_a_config_error() -> None:
    values = stack_values()
    values["frontend"] = {"priceclass": "PriceClass_100"}
    assert (
        config_error(values)
        == 'stageline:frontend.priceclass is not a known key (did you mean "priceClass"?)'
    )
