"""Moving one release to the next stage: its config, its images and packages, its frontend files.

A release is data (`stageline:release`: version, image digests and zip package digests per service,
the frontend release). Promotion writes the source stack's release into the target stack, and — when
the two stages use different registries or buckets — copies the artifacts the release names, so the
target runs exactly what the source verified: the same image digests, the same package bytes (by
their sha256, under the same key), the same frontend files. Nothing is rebuilt.

Both copies are idempotent: an image whose digest the target registry already holds and a file the
target bucket already holds with the same ETag and size are left alone. A file uploaded in parts has
an ETag ("…-N") that a copy never reproduces, so such a file is copied with its source ETag in its
metadata (`x-amz-meta-source-etag`) and counts as present when size and that value match.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automation.aws import Registry, aws_client, aws_error, error_code, parse_registry
from automation.errors import ConfigurationError, StagelineError
from infra.config import DIGEST_RE, FRONTEND_RELEASE_RE, VERSION_RE
from infra.policies import package_key, release_image_tag

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef


# The manifest types Lambda-ready images come as; an index (multi-platform) is copied with its children.
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
INDEX_TYPES = frozenset(MANIFEST_TYPES[2:])

_error_code = error_code


# --- the release itself ---------------------------------------------------------------------
# Releases travel as the `stageline:release` object exactly as the stack file holds it (the seam's
# `Release` dict): {"version", "images": {service: digest}, optional "candidate", optional "canary"}.


def checked(release: Mapping[str, Any] | None, stack: str) -> dict[str, Any]:
    """The release of `stack`, checked to be promotable; ConfigurationError names the key otherwise."""
    where = f"stageline:release in Pulumi.{stack}.yaml"
    if not isinstance(release, Mapping):
        raise ConfigurationError(f"{where} is missing")
    version = release.get("version")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise ConfigurationError(f"{where}: version must be a version or git SHA, got {version!r}")
    artifacts = {kind: release.get(kind) for kind in ("images", "packages") if release.get(kind) is not None}
    if not artifacts or not any(artifacts.values()):
        raise ConfigurationError(f"{where}: images or packages must map each service to a digest")
    for kind, found in artifacts.items():
        if not isinstance(found, Mapping):
            raise ConfigurationError(f"{where}: {kind} must map each service to a digest")
        for service, digest in found.items():
            if not isinstance(digest, str) or not DIGEST_RE.match(digest):
                raise ConfigurationError(
                    f'{where}: {kind}.{service} must look like "sha256:" and 64 hex digits, got {digest!r}'
                )
    frontend = release.get("frontend")
    if frontend is not None and (not isinstance(frontend, str) or not FRONTEND_RELEASE_RE.match(frontend)):
        raise ConfigurationError(f"{where}: frontend must be the 64 hex digits of a frontend release")
    return dict(release)


def promoted(source: Mapping[str, Any]) -> dict[str, Any]:
    """What a target stage receives from its source: the same version, digests and frontend, never a
    canary."""
    out: dict[str, Any] = {"version": source["version"]}
    for kind in ("images", "packages"):
        if source.get(kind):
            out[kind] = dict(sorted(source[kind].items()))
    for key in ("frontend", "candidate"):
        if source.get(key):
            out[key] = source[key]
    return out


def with_canary(
    release: Mapping[str, Any], weight: float, stable_versions: Mapping[str, Any]
) -> dict[str, Any]:
    """The release shifted to `weight` of the traffic; the rest stays on each service's live version."""
    return {
        **release,
        "canary": {
            "weight": weight,
            "stableVersions": {k: str(v) for k, v in sorted(stable_versions.items())},
        },
    }


def without_canary(release: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in release.items() if k != "canary"}


def version_of(release: Mapping[str, Any] | None) -> str | None:
    value = release.get("version") if release else None
    return str(value) if value is not None else None


def same_config(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Equal as config (every key, canary and candidate included); key order and number formatting do not
    matter. Whether two releases are the same release is `automation.operate.rollback.same_release`."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


# --- images ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCopy:
    service: str
    digest: str
    source: str  # repository URL
    target: str
    action: str  # "copied" | "present" | "same-registry"
    layers_copied: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "digest": self.digest,
            "source": self.source,
            "target": self.target,
            "action": self.action,
            "layersCopied": self.layers_copied,
        }


LayerDownload = Callable[[str], str]  # layer digest -> URL the layer's bytes can be fetched from


@dataclass
class ImageCopier:
    """Copy images by digest from one ECR repository to another with the registry API.

    `put_image` only stores a manifest: the target must already hold every blob the manifest names,
    so blobs it lacks are streamed across first (`get_download_url_for_layer` on the source, then
    `initiate_layer_upload` / `upload_layer_part` / `complete_layer_upload` on the target).
    """

    source: Registry
    target: Registry
    source_client: ECRClient
    target_client: ECRClient
    download_url: LayerDownload | None = None  # default: the source registry's presigned layer URL
    http_timeout: float = 120.0
    _layers: int = field(default=0, init=False)

    @classmethod
    def between(cls, source: Registry, target: Registry) -> ImageCopier:
        return cls(
            source=source,
            target=target,
            source_client=aws_client("ecr", source.region),
            target_client=aws_client("ecr", target.region),
        )

    def copy(self, service: str, digest: str, tag: str | None) -> ImageCopy:
        try:
            if self._present(digest):
                return ImageCopy(service, digest, self.source.url, self.target.url, "present")
            self._layers = 0
            self._copy_manifest(digest, tag)
        except Exception as exc:
            problem = exc.format_message() if isinstance(exc, StagelineError) else aws_error(exc)
            where = f"from {self.source.url} to {self.target.url}"
            raise StagelineError(f"copying image {service}@{digest} {where} failed: {problem}") from None
        return ImageCopy(service, digest, self.source.url, self.target.url, "copied", self._layers)

    def _present(self, digest: str) -> bool:
        found = self.target_client.batch_get_image(
            registryId=self.target.account,
            repositoryName=self.target.repository,
            imageIds=[{"imageDigest": digest}],
            acceptedMediaTypes=list(MANIFEST_TYPES),
        )
        return any(i.get("imageId", {}).get("imageDigest") == digest for i in found.get("images", []))

    def _copy_manifest(self, digest: str, tag: str | None) -> None:
        got = self.source_client.batch_get_image(
            registryId=self.source.account,
            repositoryName=self.source.repository,
            imageIds=[{"imageDigest": digest}],
            acceptedMediaTypes=list(MANIFEST_TYPES),
        )
        images = got.get("images", [])
        if not images:
            reasons = "; ".join(
                f.get("failureReason", f.get("failureCode", "")) for f in got.get("failures", [])
            )
            raise StagelineError(
                f"image {digest} is not in {self.source.url}" + (f" ({reasons})" if reasons else "")
            )
        image = images[0]
        manifest = image["imageManifest"]
        media_type = image.get("imageManifestMediaType") or json.loads(manifest).get("mediaType", "")
        document = json.loads(manifest)
        if media_type in INDEX_TYPES:
            for child in document.get("manifests", []):
                if not self._present(child["digest"]):
                    self._copy_manifest(child["digest"], None)
        else:
            blobs = [document["config"]["digest"], *(layer["digest"] for layer in document.get("layers", []))]
            self._copy_blobs(blobs)
        args: dict[str, Any] = {
            "registryId": self.target.account,
            "repositoryName": self.target.repository,
            "imageManifest": manifest,
            "imageManifestMediaType": media_type,
            "imageDigest": digest,
        }
        if tag:
            args["imageTag"] = tag
        try:
            self.target_client.put_image(**args)
        except Exception as exc:
            # Two runs racing, or a re-run after a partial copy: the image is there, which is the goal.
            if _error_code(exc) != "ImageAlreadyExistsException":
                raise

    def _copy_blobs(self, digests: list[str]) -> None:
        wanted = list(dict.fromkeys(digests))
        missing: list[str] = []
        for start in range(0, len(wanted), 100):
            checked = self.target_client.batch_check_layer_availability(
                registryId=self.target.account,
                repositoryName=self.target.repository,
                layerDigests=wanted[start : start + 100],
            )
            available = {
                layer["layerDigest"]
                for layer in checked.get("layers", [])
                if layer.get("layerAvailability") == "AVAILABLE"
            }
            missing += [d for d in wanted[start : start + 100] if d not in available]
        for digest in missing:
            self._copy_blob(digest)
            self._layers += 1

    def _source_url(self, digest: str) -> str:
        if self.download_url is not None:
            return self.download_url(digest)
        got = self.source_client.get_download_url_for_layer(
            registryId=self.source.account, repositoryName=self.source.repository, layerDigest=digest
        )
        return got["downloadUrl"]

    def _copy_blob(self, digest: str) -> None:
        import httpx

        url = self._source_url(digest)
        started = self.target_client.initiate_layer_upload(
            registryId=self.target.account, repositoryName=self.target.repository
        )
        # Parts must have the size ECR asks for (all but the last one).
        upload_id, part_size = started["uploadId"], int(started.get("partSize") or 10 * 1024 * 1024)
        position = 0
        with httpx.stream("GET", url, timeout=self.http_timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise StagelineError(
                    f"downloading layer {digest} from {self.source.url} failed: HTTP {response.status_code}"
                )
            for part in _parts(response.iter_bytes(), part_size):
                self.target_client.upload_layer_part(
                    registryId=self.target.account,
                    repositoryName=self.target.repository,
                    uploadId=upload_id,
                    partFirstByte=position,
                    partLastByte=position + len(part) - 1,
                    layerPartBlob=part,
                )
                position += len(part)
        try:
            done = self.target_client.complete_layer_upload(
                registryId=self.target.account,
                repositoryName=self.target.repository,
                uploadId=upload_id,
                layerDigests=[digest],
            )
        except Exception as exc:
            if _error_code(exc) == "LayerAlreadyExistsException":
                return
            raise
        if done.get("layerDigest") != digest:
            raise StagelineError(f"layer {digest} arrived in {self.target.url} as {done.get('layerDigest')}")


def _parts(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def copy_images(
    release: Mapping[str, Any], source_url: str, target_url: str, copier: ImageCopier | None = None
) -> list[ImageCopy]:
    """Make every image of `release` present, by digest, in the target repository."""
    source, target = parse_registry(source_url), parse_registry(target_url)
    images = sorted((release.get("images") or {}).items())
    if not images:
        return []
    if source == target:
        return [ImageCopy(svc, digest, source.url, target.url, "same-registry") for svc, digest in images]
    copier = copier or ImageCopier.between(source, target)
    return [copier.copy(svc, digest, release_image_tag(svc, release["version"])) for svc, digest in images]


# --- frontend files -------------------------------------------------------------------------


@dataclass(frozen=True)
class PrefixCopy:
    source_bucket: str
    target_bucket: str
    prefix: str
    copied: int
    present: int

    def to_json(self) -> dict[str, Any]:
        return {
            "sourceBucket": self.source_bucket,
            "targetBucket": self.target_bucket,
            "prefix": self.prefix,
            "copied": self.copied,
            "present": self.present,
        }


def _listing(client: S3Client, bucket: str, prefix: str) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = (obj.get("ETag", ""), int(obj.get("Size", 0)))
    return out


SOURCE_ETAG = "source-etag"  # user metadata: x-amz-meta-source-etag
# The headers a metadata-replacing copy must carry over itself (MetadataDirective=REPLACE drops them).
_CONTENT_HEADERS = ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")


def _is_multipart(etag: str) -> bool:
    return "-" in etag


def _copied_multipart(
    client: S3Client, bucket: str, key: str, stamp: tuple[str, int], have: tuple[str, int] | None
) -> bool:
    """Whether the target holds a copy of this multipart-uploaded object (same size, same source ETag)."""
    etag, size = stamp
    if have is None or not _is_multipart(etag) or have[1] != size:
        return False
    head = client.head_object(Bucket=bucket, Key=key)
    return head.get("Metadata", {}).get(SOURCE_ETAG) == etag.strip('"')


def _with_source_etag(client: S3Client, bucket: str, key: str, etag: str) -> dict[str, Any]:
    """copy_object arguments that keep the source's headers and metadata and add its ETag."""
    head = client.head_object(Bucket=bucket, Key=key)
    args: dict[str, Any] = {h: head[h] for h in _CONTENT_HEADERS if head.get(h)}  # type: ignore[literal-required]
    args["Metadata"] = {**head.get("Metadata", {}), SOURCE_ETAG: etag.strip('"')}
    args["MetadataDirective"] = "REPLACE"
    return args


def copy_prefix(
    source_bucket: str,
    target_bucket: str,
    prefix: str,
    *,
    source_client: S3Client | None = None,
    target_client: S3Client | None = None,
    source_region: str | None = None,
    target_region: str | None = None,
) -> PrefixCopy:
    """Copy every object under `prefix` the target bucket lacks (same key, ETag and size = present)."""
    if source_bucket == target_bucket:
        return PrefixCopy(source_bucket, target_bucket, prefix, 0, 0)
    src = source_client or aws_client("s3", source_region)
    dst = target_client or aws_client("s3", target_region)
    try:
        wanted = _listing(src, source_bucket, prefix)
        if not wanted:
            raise StagelineError(
                f"s3://{source_bucket}/{prefix} is empty: the release's frontend files "
                "were never uploaded to the source stage"
            )
        have = _listing(dst, target_bucket, prefix)
        copied = 0
        for key, stamp in sorted(wanted.items()):
            if have.get(key) == stamp or _copied_multipart(dst, target_bucket, key, stamp, have.get(key)):
                continue
            source: CopySourceTypeDef = {"Bucket": source_bucket, "Key": key}
            if _is_multipart(stamp[0]):
                extra = _with_source_etag(src, source_bucket, key, stamp[0])
                dst.copy_object(Bucket=target_bucket, Key=key, CopySource=source, **extra)
            else:
                dst.copy_object(Bucket=target_bucket, Key=key, CopySource=source, MetadataDirective="COPY")
            copied += 1
    except StagelineError:
        raise
    except Exception as exc:
        raise StagelineError(
            f"copying s3://{source_bucket}/{prefix} to s3://{target_bucket}/{prefix} failed: {aws_error(exc)}"
        ) from None
    return PrefixCopy(source_bucket, target_bucket, prefix, copied, len(wanted) - copied)


# --- zip packages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageCopy:
    service: str
    digest: str
    source_bucket: str
    target_bucket: str
    key: str
    action: str  # "copied" | "present" | "same-bucket"

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "digest": self.digest,
            "sourceBucket": self.source_bucket,
            "targetBucket": self.target_bucket,
            "key": self.key,
            "action": self.action,
        }


def copy_packages(
    release: Mapping[str, Any],
    source_bucket: str,
    target_bucket: str,
    *,
    source_client: S3Client | None = None,
    target_client: S3Client | None = None,
    source_region: str | None = None,
    target_region: str | None = None,
) -> list[PackageCopy]:
    """Make every zip package of `release` present in the target's artifact bucket, under the same key.

    The key names the package's sha256, so a key the target holds is the package: present. The copy
    keeps the object's metadata (its sha256 among it).
    """
    packages = sorted((release.get("packages") or {}).items())
    if source_bucket == target_bucket:
        return [
            PackageCopy(svc, d, source_bucket, target_bucket, package_key(svc, d), "same-bucket")
            for svc, d in packages
        ]
    out: list[PackageCopy] = []
    if not packages:
        return out
    src = source_client or aws_client("s3", source_region)
    dst = target_client or aws_client("s3", target_region)
    for service, digest in packages:
        key = package_key(service, digest)
        try:
            if _exists(dst, target_bucket, key):
                out.append(PackageCopy(service, digest, source_bucket, target_bucket, key, "present"))
                continue
            if not _exists(src, source_bucket, key):
                raise StagelineError(
                    f"package {service} {digest} is not in s3://{source_bucket}/{key}: "
                    "it was never built into the source stage"
                )
            dst.copy_object(
                Bucket=target_bucket,
                Key=key,
                CopySource={"Bucket": source_bucket, "Key": key},
                MetadataDirective="COPY",
            )
        except StagelineError:
            raise
        except Exception as exc:
            raise StagelineError(
                f"copying package {service} s3://{source_bucket}/{key} to s3://{target_bucket} failed: "
                f"{aws_error(exc)}"
            ) from None
        out.append(PackageCopy(service, digest, source_bucket, target_bucket, key, "copied"))
    return out


def _exists(client: S3Client, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True
