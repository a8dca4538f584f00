"""The frontend: a private bucket of immutable release uploads behind two CloudFront distributions.

Every frontend build is uploaded once to `releases/<frontend release>/` and never changed
afterwards; `python -m automation build` names the release by the sha256 of its manifest
(`release.frontend`), so an unchanged frontend keeps its prefix. Two distributions read from the
same bucket:

- **APP** serves users; its origin path is the live release (`release.frontend`, else
  `release.version`).
- **TEST** serves pre-promotion checks; its origin path is the candidate
  (`release.candidate`, or the live release when there is none).

Because the release prefixes are immutable, promoting or rolling back the frontend is a change
of `origin_path` in config: nothing is re-uploaded, and rollback points back at files that
were never touched.

CloudFront's cache key does not include the origin path, so after a switch the edges would keep
serving what they cached from the old prefix. Both distributions therefore use the stack's own
cache policy (`frontend_cache_policy`): an object uploaded without Cache-Control (`index.html`)
has a default TTL of 0 and is revalidated against the origin on every request, so a switch is
seen at once; content-hashed assets uploaded with a long `Cache-Control: max-age` are still
cached up to a year. The driver also invalidates both distributions after a switch
(`automation/frontend_cache.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pulumi
import pulumi_aws as aws

from infra.buckets import PrivateBucketArgs, private_bucket
from infra.policies import RELEASES_PREFIX, frontend_bucket_prefix, release_reader_statement

if TYPE_CHECKING:
    from infra.config.model import StackConfig

ORIGIN_ID = "frontend"
# The cache policy's TTLs: the origin's Cache-Control decides within 0 s .. 1 year, and an object
# without one (index.html) is not kept at all: CloudFront revalidates it on every request.
CACHE_MIN_TTL_SECONDS = 0
CACHE_DEFAULT_TTL_SECONDS = 0
CACHE_MAX_TTL_SECONDS = 31_536_000
HSTS_MAX_AGE_SECONDS = 63_072_000  # two years, as hstspreload.org asks


def bucket_prefix(prefix: str) -> str:
    # One definition with the deploy policies, which grant promotion read access to the source's.
    return frontend_bucket_prefix(prefix)


def cache_policy_name(prefix: str) -> str:
    return f"{prefix}-frontend"


def frontend_cache_policy(prefix: str) -> dict[str, Any]:
    """The cache policy of both distributions, as the arguments of aws.cloudfront.CachePolicy.

    AWS's Managed-CachingOptimized policy has a default TTL of one day: after an origin-path
    switch, users would get the previous release's `index.html` for up to a day. Here the
    default is 0, so objects without Cache-Control are revalidated on each request, while
    hashed assets uploaded with a long `Cache-Control: max-age` still stay cached. The cache key
    holds only the path (no cookies, headers or query strings); gzip and brotli are negotiated.
    """
    return {
        "name": cache_policy_name(prefix),
        "comment": f"{prefix}: frontend releases; objects without Cache-Control are revalidated",
        "min_ttl": CACHE_MIN_TTL_SECONDS,
        "default_ttl": CACHE_DEFAULT_TTL_SECONDS,
        "max_ttl": CACHE_MAX_TTL_SECONDS,
        "parameters_in_cache_key_and_forwarded_to_origin": {
            "cookies_config": {"cookie_behavior": "none"},
            "headers_config": {"header_behavior": "none"},
            "query_strings_config": {"query_string_behavior": "none"},
            "enable_accept_encoding_gzip": True,
            "enable_accept_encoding_brotli": True,
        },
    }


def origin_path(version: str) -> str:
    """The release prefix a distribution serves, in CloudFront's form ("/…", no trailing slash)."""
    if not version or "/" in version:
        raise ValueError(f"a release version is one path segment, got {version!r}")
    return f"/{RELEASES_PREFIX}/{version}"


def content_security_policy(api_endpoint: str | None = None) -> str:
    """Same-origin everything; the browser may additionally call the environment's API."""
    connect = ["'self'"]
    if api_endpoint:
        parts = urlsplit(api_endpoint)
        connect.append(f"{parts.scheme}://{parts.netloc}")
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src {' '.join(connect)}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def frontend_bucket_policy(
    bucket_arn: str,
    distribution_arns: Sequence[str],
    *,
    reader_accounts: Sequence[str] = (),
    project: str = "stageline",
) -> dict[str, Any]:
    """TLS only, and readable only by CloudFront on behalf of the given distributions.

    With `reader_accounts` (`artifacts.readerAccounts`), the deploy roles of those accounts may
    also list and read `releases/`: promotion to a stage in another account copies a release's
    files from here.
    """
    if not distribution_arns:
        raise ValueError("the frontend bucket policy needs the distributions allowed to read it")
    partition = bucket_arn.split(":", 2)[1]
    readers = []
    if reader_accounts:
        readers = [
            release_reader_statement(
                "PromotionListReleases",
                ("s3:ListBucket",),
                partition=partition,
                accounts=reader_accounts,
                project=project,
                resources=bucket_arn,
                condition={"StringLike": {"s3:prefix": f"{RELEASES_PREFIX}/*"}},
            ),
            release_reader_statement(
                "PromotionReadReleases",
                ("s3:GetObject",),
                partition=partition,
                accounts=reader_accounts,
                project=project,
                resources=f"{bucket_arn}/{RELEASES_PREFIX}/*",
            ),
        ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "AllowCloudFrontReadReleases",
                "Effect": "Allow",
                "Principal": {"Service": "cloudfront.amazonaws.com"},
                "Action": "s3:GetObject",
                "Resource": f"{bucket_arn}/{RELEASES_PREFIX}/*",
                "Condition": {"StringEquals": {"AWS:SourceArn": sorted(distribution_arns)}},
            },
            *readers,
        ],
    }


@dataclass(frozen=True)
class FrontendArgs:
    name_prefix: str  # "stageline-<env>"
    app_version: str  # the live release
    test_version: str  # the candidate release
    price_class: str = "PriceClass_100"
    api_endpoint: pulumi.Input[str] | None = None  # allowed in the CSP's connect-src
    noncurrent_version_days: int = 30
    abort_multipart_days: int = 7
    protect: bool = False
    reader_accounts: tuple[str, ...] = ()  # accounts whose deploy roles may read releases
    project: str = "stageline"

    @classmethod
    def from_config(cls, cfg: StackConfig, *, api_endpoint: pulumi.Input[str] | None = None) -> FrontendArgs:
        return cls(
            name_prefix=cfg.prefix,
            app_version=cfg.release.frontend_version,
            test_version=cfg.release.candidate_version,
            price_class=cfg.frontend.price_class,
            api_endpoint=api_endpoint,
            noncurrent_version_days=cfg.artifacts.noncurrent_version_days,
            abort_multipart_days=cfg.artifacts.abort_multipart_days,
            # Release uploads are artifacts too: the same switch that keeps the artifact store.
            protect=cfg.artifacts.protect,
            reader_accounts=cfg.artifacts.reader_accounts,
            project=cfg.project,
        )


class Frontend(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    app_distribution_id: pulumi.Output[str]
    app_domain: pulumi.Output[str]
    test_distribution_id: pulumi.Output[str]
    test_domain: pulumi.Output[str]

    def __init__(self, name: str, args: FrontendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stageline:infra:Frontend", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        store = private_bucket(
            name,
            PrivateBucketArgs(
                bucket_prefix=bucket_prefix(args.name_prefix),
                noncurrent_version_days=args.noncurrent_version_days,
                abort_multipart_days=args.abort_multipart_days,
                protect=args.protect,
            ),
            parent=self,
        )
        bucket = store.bucket

        oac = aws.cloudfront.OriginAccessControl(
            f"{name}-oac",
            name=f"{args.name_prefix}-frontend",
            description="CloudFront signs every origin request to the private frontend bucket",
            origin_access_control_origin_type="s3",
            signing_behavior="always",
            signing_protocol="sigv4",
            opts=child,
        )
        csp: pulumi.Output[str] = pulumi.Output.from_input(args.api_endpoint).apply(content_security_policy)
        headers = aws.cloudfront.ResponseHeadersPolicy(
            f"{name}-security-headers",
            name=f"{args.name_prefix}-security-headers",
            comment=f"{args.name_prefix}: security headers for the frontend",
            security_headers_config=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigArgs(
                strict_transport_security=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigStrictTransportSecurityArgs(
                    access_control_max_age_sec=HSTS_MAX_AGE_SECONDS,
                    include_subdomains=True,
                    preload=False,  # preloading is a promise about a whole registrable domain
                    override=True,
                ),
                content_type_options=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigContentTypeOptionsArgs(
                    override=True,
                ),
                frame_options=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigFrameOptionsArgs(
                    frame_option="DENY",
                    override=True,
                ),
                referrer_policy=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigReferrerPolicyArgs(
                    referrer_policy="strict-origin-when-cross-origin",
                    override=True,
                ),
                # "X-XSS-Protection: 0": browsers dropped the XSS auditor, and where it remains,
                # "1; mode=block" can be abused to leak page content. The CSP does the job.
                xss_protection=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigXssProtectionArgs(
                    protection=False,
                    override=True,
                ),
                content_security_policy=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigContentSecurityPolicyArgs(
                    content_security_policy=csp,
                    override=True,
                ),
            ),
            opts=child,
        )

        cache = aws.cloudfront.CachePolicy(
            f"{name}-cache", **frontend_cache_policy(args.name_prefix), opts=child
        )

        distributions: dict[str, aws.cloudfront.Distribution] = {}
        for role, version in (("app", args.app_version), ("test", args.test_version)):
            distributions[role] = aws.cloudfront.Distribution(
                f"{name}-{role}",
                comment=f"{args.name_prefix} {role.upper()}: release {version}",
                enabled=True,
                is_ipv6_enabled=True,
                http_version="http2and3",
                price_class=args.price_class,
                default_root_object="index.html",
                origins=[
                    aws.cloudfront.DistributionOriginArgs(
                        origin_id=ORIGIN_ID,
                        domain_name=bucket.bucket_regional_domain_name,
                        origin_access_control_id=oac.id,
                        # The switch that promotes or rolls back this distribution's frontend: the
                        # release prefixes are immutable, so changing this path is the whole change.
                        origin_path=origin_path(version),
                    )
                ],
                default_cache_behavior=aws.cloudfront.DistributionDefaultCacheBehaviorArgs(
                    target_origin_id=ORIGIN_ID,
                    viewer_protocol_policy="redirect-to-https",
                    allowed_methods=["GET", "HEAD", "OPTIONS"],
                    cached_methods=["GET", "HEAD"],
                    compress=True,
                    # Not Managed-CachingOptimized (default TTL one day): see frontend_cache_policy.
                    cache_policy_id=cache.id,
                    response_headers_policy_id=headers.id,
                ),
                # Client-side routes have no object behind them. Without s3:ListBucket, S3
                # answers a missing key with 403, not 404, so both fall back to the SPA shell.
                custom_error_responses=[
                    aws.cloudfront.DistributionCustomErrorResponseArgs(
                        error_code=code,
                        response_code=200,
                        response_page_path="/index.html",
                        error_caching_min_ttl=10,
                    )
                    for code in (403, 404)
                ],
                restrictions=aws.cloudfront.DistributionRestrictionsArgs(
                    geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(
                        restriction_type="none"
                    ),
                ),
                # The *.cloudfront.net certificate: CloudFront fixes its minimum TLS version and
                # the TLS policy cannot be chosen. A custom domain brings an ACM certificate and
                # minimum_protocol_version="TLSv1.2_2021".
                viewer_certificate=aws.cloudfront.DistributionViewerCertificateArgs(
                    cloudfront_default_certificate=True,
                ),
                opts=child,
            )
        app, test = distributions["app"], distributions["test"]

        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=pulumi.Output.json_dumps(
                pulumi.Output.all(bucket.arn, app.arn, test.arn).apply(
                    lambda a: frontend_bucket_policy(
                        a[0], [a[1], a[2]], reader_accounts=args.reader_accounts, project=args.project
                    )
                )
            ),
            # S3 rejects a policy PUT while a public-access-block change is still settling, and
            # the policy only makes sense once object ownership is enforced.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[store.public_access, store.ownership]),
        )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.app_distribution_id = app.id
        self.app_domain = app.domain_name
        self.test_distribution_id = test.id
        self.test_domain = test.domain_name
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "app_distribution_id": self.app_distribution_id,
                "test_distribution_id": self.test_distribution_id,
            }
        )
