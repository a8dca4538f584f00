"""Putting a build in the first stage: packages and frontend files uploaded, images built elsewhere checked.

Uploads skip what is already there, by name: a package's key is its sha256, a frontend release's
prefix is its manifest's sha256, so a present key holds the same bytes (both buckets are versioned,
and the deploy role cannot delete a version). A build with nothing changed uploads nothing.

An image named with `--image SERVICE=sha256:…` must already be in the first stage's registry (pushed
by a Docker build), and its scan must be complete with no finding at or above the configured
severity (`stageline:artifacts.scanSeverity`). A passing image gets the tag `release-<service>-<version>`,
which the registry's lifecycle policy never expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automation.aws import Registry, aws_error, error_code
from automation.build.package import Package
from automation.build.site import Site
from automation.errors import ConfigurationError, GateRefused, StagelineError
from automation.promote.release import MANIFEST_TYPES
from infra.config import SCAN_SEVERITIES
from infra.policies import RELEASES_PREFIX, package_key, release_image_tag

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_s3 import S3Client

PACKAGE_CONTENT_TYPE = "application/zip"
SHA256_METADATA = "sha256"  # x-amz-meta-sha256 on a package: its hex digest
# ECR scans an image on push within seconds to minutes; a build right after the push waits this long.
SCAN_WAIT_SECONDS = 300.0
SCAN_POLL_SECONDS = 5.0


_code = error_code


@dataclass(frozen=True)
class Upload:
    what: str  # "package api" | "frontend"
    bucket: str
    key: str  # the object's key, or the release's prefix
    uploaded: int
    present: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "bucket": self.bucket,
            "key": self.key,
            "uploaded": self.uploaded,
            "present": self.present,
            "bytes": self.bytes,
        }


def upload_package(client: S3Client, bucket: str, package: Package) -> Upload:
    key = package_key(package.service, package.digest)
    hexdigest = package.digest.removeprefix("sha256:")
    what = f"package {package.service}"
    try:
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise
        else:
            if head.get("Metadata", {}).get(SHA256_METADATA) == hexdigest:
                return Upload(what, bucket, key, 0, 1, 0)
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=package.data,
            ContentType=PACKAGE_CONTENT_TYPE,
            Metadata={SHA256_METADATA: hexdigest},
        )
    except Exception as exc:
        raise StagelineError(f"uploading {what} to s3://{bucket}/{key} failed: {aws_error(exc)}") from None
    return Upload(what, bucket, key, 1, 0, len(package.data))


def site_prefix(release: str) -> str:
    return f"{RELEASES_PREFIX}/{release}/"


def upload_site(client: S3Client, bucket: str, site: Site) -> Upload:
    prefix = site_prefix(site.release)
    try:
        have: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            have.update(obj["Key"] for obj in page.get("Contents", []))
        uploaded = sent = 0
        for file in site.upload_order():
            key = prefix + file.path
            if key in have:
                continue
            data = file.source.read_bytes()
            client.put_object(
                Bucket=bucket,
                Key=key,
                Body=data,
                ContentType=file.content_type,
                CacheControl=file.cache_control,
                Metadata={SHA256_METADATA: file.sha256},
            )
            uploaded += 1
            sent += len(data)
    except Exception as exc:
        raise StagelineError(
            f"uploading the frontend to s3://{bucket}/{prefix} failed: {aws_error(exc)}"
        ) from None
    return Upload("frontend", bucket, prefix, uploaded, len(site.files) - uploaded, sent)


# --- images built elsewhere -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCheck:
    service: str
    digest: str
    repository: str
    findings: Mapping[str, int]  # severity -> count, as the scan reported
    threshold: str
    tag: str

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "digest": self.digest,
            "repository": self.repository,
            "findings": dict(self.findings),
            "threshold": self.threshold,
            "tag": self.tag,
        }


def blocking(findings: Mapping[str, int], threshold: str) -> dict[str, int]:
    """The findings at or above `threshold`. Severities outside ECR's ranked five (UNDEFINED,
    UNTRIAGED) are not ranked and never block."""
    floor = SCAN_SEVERITIES.index(threshold)
    return {
        sev: n
        for sev, n in findings.items()
        if n and sev in SCAN_SEVERITIES and SCAN_SEVERITIES.index(sev) >= floor
    }


def check_image(
    client: ECRClient,
    registry: Registry,
    service: str,
    digest: str,
    *,
    version: str,
    threshold: str,
    wait_seconds: float = SCAN_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ImageCheck:
    """The image is in the registry and its scan passes; then tag it as a release image."""
    argument = f"--image {service}={digest}"
    try:
        got = client.batch_get_image(
            registryId=registry.account,
            repositoryName=registry.repository,
            imageIds=[{"imageDigest": digest}],
            acceptedMediaTypes=list(MANIFEST_TYPES),
        )
    except Exception as exc:
        raise StagelineError(f"{argument}: reading {registry.url} failed: {aws_error(exc)}") from None
    images = got.get("images", [])
    if not images:
        raise ConfigurationError(f"{argument}: no such image in {registry.url} (push it there first)")
    findings = _scan(client, registry, argument, digest, wait_seconds=wait_seconds, sleep=sleep, clock=clock)
    refused = blocking(findings, threshold)
    if refused:
        counts = ", ".join(
            f"{n} {sev}" for sev, n in sorted(refused.items(), key=lambda i: -SCAN_SEVERITIES.index(i[0]))
        )
        raise GateRefused(
            f"{argument}: the image scan found {counts} (stageline:artifacts.scanSeverity is {threshold}: "
            "findings at or above it refuse the image)"
        )
    tag = release_image_tag(service, version)
    image = images[0]
    try:
        client.put_image(
            registryId=registry.account,
            repositoryName=registry.repository,
            imageManifest=image["imageManifest"],
            imageManifestMediaType=image.get("imageManifestMediaType") or MANIFEST_TYPES[0],
            imageDigest=digest,
            imageTag=tag,
        )
    except Exception as exc:
        if _code(exc) != "ImageAlreadyExistsException":
            raise StagelineError(f"{argument}: tagging it {tag} failed: {aws_error(exc)}") from None
    return ImageCheck(service, digest, registry.url, findings, threshold, tag)


def _scan(
    client: ECRClient,
    registry: Registry,
    argument: str,
    digest: str,
    *,
    wait_seconds: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> dict[str, int]:
    deadline = clock() + wait_seconds
    while True:
        try:
            found = client.describe_image_scan_findings(
                registryId=registry.account,
                repositoryName=registry.repository,
                imageId={"imageDigest": digest},
            )
        except Exception as exc:
            if _code(exc) == "ScanNotFoundException":
                raise GateRefused(
                    f"{argument}: the image has no scan in {registry.url} (the registry scans on push; "
                    "start one with `aws ecr start-image-scan`)"
                ) from None
            raise StagelineError(f"{argument}: reading its scan failed: {aws_error(exc)}") from None
        status = found.get("imageScanStatus", {}).get("status", "")
        if status in ("COMPLETE", "ACTIVE"):
            counts = found.get("imageScanFindings", {}).get("findingSeverityCounts", {})
            return {str(k): int(v) for k, v in counts.items()}
        if status not in ("IN_PROGRESS", "PENDING"):
            detail = found.get("imageScanStatus", {}).get("description", "")
            raise GateRefused(
                f"{argument}: the image scan is {status or 'unknown'}" + (f": {detail}" if detail else "")
            )
        if clock() >= deadline:
            raise GateRefused(f"{argument}: the image scan is still {status} after {wait_seconds:.0f} s")
        sleep(SCAN_POLL_SECONDS)
