"""Whether the artifacts a release names still exist in a stack's registry and buckets.

`rollback` asks this before it changes anything: a release whose image, package or frontend files are
gone cannot be restored, and the answer names what is missing. Only what the stack's outputs locate is
checked (a stack without a registry output has no images to look for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from automation.aws import aws_client, aws_error, error_code, parse_registry
from automation.errors import StagelineError
from infra import outputs as out
from infra.policies import RELEASES_PREFIX, package_key


def frontend_releases(release: Mapping[str, Any]) -> list[str]:
    """The frontend releases a release serves: the APP's, then the TEST's candidate if different."""
    app = str(release.get("frontend") or release["version"])
    return list(dict.fromkeys([app, str(release.get("candidate") or app)]))


def frontend_prefixes(release: Mapping[str, Any]) -> list[str]:
    return [f"{RELEASES_PREFIX}/{name}/" for name in frontend_releases(release)]


@dataclass(frozen=True)
class ArtifactCheck:
    missing: tuple[str, ...] = ()  # one line per missing artifact, naming it and where it was looked for
    checked: int = 0
    unchecked: tuple[str, ...] = field(default_factory=tuple)  # kinds whose location no output names

    @property
    def ok(self) -> bool:
        return not self.missing


def check_artifacts(release: Mapping[str, Any], outputs: Mapping[str, Any]) -> ArtifactCheck:
    region = outputs.get(out.REGION) if isinstance(outputs.get(out.REGION), str) else None
    missing: list[str] = []
    unchecked: list[str] = []
    checked = 0
    try:
        packages = sorted((release.get("packages") or {}).items())
        bucket = outputs.get(out.ARTIFACT_BUCKET)
        if packages and not isinstance(bucket, str):
            unchecked.append("packages")
        elif packages:
            s3 = aws_client("s3", region)
            for service, digest in packages:
                key = package_key(service, digest)
                checked += 1
                try:
                    s3.head_object(Bucket=bucket, Key=key)
                except Exception as exc:
                    if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                        raise
                    missing.append(f"package {service} {digest} (s3://{bucket}/{key})")
        images = sorted((release.get("images") or {}).items())
        url = outputs.get(out.ECR_REPOSITORY_URL)
        if images and not isinstance(url, str):
            unchecked.append("images")
        elif images:
            registry = parse_registry(str(url))
            ecr = aws_client("ecr", registry.region)
            found = ecr.batch_get_image(
                registryId=registry.account,
                repositoryName=registry.repository,
                imageIds=[{"imageDigest": d} for _, d in images],
            )
            present = {i.get("imageId", {}).get("imageDigest") for i in found.get("images", [])}
            checked += len(images)
            missing += [f"image {s} {d} ({registry.url})" for s, d in images if d not in present]
        frontend = outputs.get(out.FRONTEND_BUCKET)
        if not isinstance(frontend, str):
            unchecked.append("frontend")
        else:
            s3 = aws_client("s3", region)
            for prefix in frontend_prefixes(release):
                checked += 1
                listed = s3.list_objects_v2(Bucket=frontend, Prefix=prefix, MaxKeys=1)
                if not listed.get("KeyCount") and not listed.get("Contents"):
                    missing.append(f"frontend release {prefix.split('/')[1]} (s3://{frontend}/{prefix})")
    except StagelineError:
        raise
    except Exception as exc:
        raise StagelineError(f"checking the release's artifacts failed: {aws_error(exc)}") from None
    return ArtifactCheck(missing=tuple(missing), checked=checked, unchecked=tuple(unchecked))
