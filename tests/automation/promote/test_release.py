"""Artifacts move by digest: ECR images between two registries, frontend files between two buckets.

Against moto's server on 127.0.0.1 (a real HTTP endpoint). moto does not implement
GetDownloadUrlForLayer, so the layer download URL is the one thing injected: it points at a local
HTTP server holding the source's blobs; everything else is the registry API.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from promote_testkit import ACCOUNT, Stub, boto, http_stub, moto_server, use_aws

from automation.aws import parse_registry
from automation.errors import ConfigurationError, StagelineError
from automation.operate.artifacts import frontend_prefixes
from automation.promote.release import (
    ImageCopier,
    checked,
    copy_images,
    copy_prefix,
    promoted,
    same_config,
    with_canary,
)

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
SOURCE = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/stageline-dev"
TARGET = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/stageline-staging"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    use_aws(monkeypatch, endpoint)
    return endpoint


@pytest.fixture(scope="module")
def blobs() -> Iterator[Stub]:
    with http_stub() as stub:
        yield stub


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _upload_blob(ecr: Any, repository: str, data: bytes) -> str:
    upload = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
    ecr.upload_layer_part(
        repositoryName=repository,
        uploadId=upload,
        partFirstByte=0,
        partLastByte=len(data) - 1,
        layerPartBlob=data,
    )
    return ecr.complete_layer_upload(
        repositoryName=repository, uploadId=upload, layerDigests=[_digest(data)]
    )["layerDigest"]


def _push(ecr: Any, repository: str, name: str, blobs: Stub) -> str:
    """Push an image the way `docker push` leaves it: blobs first, then the manifest; returns its digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "name": name}).encode()
    layer = f"layer of {name}".encode() * 50
    for data in (config, layer):
        digest = _upload_blob(ecr, repository, data)
        blobs.bodies[f"/blobs/{digest}"] = data
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": _digest(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": _digest(layer),
                }
            ],
        }
    )
    digest = _digest(manifest.encode())
    ecr.put_image(
        repositoryName=repository,
        imageManifest=manifest,
        imageManifestMediaType=MANIFEST_TYPE,
        imageDigest=digest,
        imageTag=f"{name}-build",
    )
    return digest


@pytest.fixture
def registries(aws: str, blobs: Stub, request: pytest.FixtureRequest) -> dict[str, Any]:
    suffix = hashlib.sha1(request.node.name.encode()).hexdigest()[:8]  # noqa: S324 - a name, not security
    src, dst = boto("ecr", aws, "eu-west-1"), boto("ecr", aws, "us-east-1")
    source_repo, target_repo = f"stageline-dev-{suffix}", f"stageline-staging-{suffix}"
    src.create_repository(repositoryName=source_repo)
    dst.create_repository(repositoryName=target_repo)
    images = {svc: _push(src, source_repo, f"{svc}-{suffix}", blobs) for svc in ("api", "worker")}
    return {
        "src": src,
        "dst": dst,
        "images": images,
        "source_url": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/{source_repo}",
        "target_url": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{target_repo}",
        "target_repo": target_repo,
        "source_repo": source_repo,
    }


def _copier(reg: dict[str, Any], blobs: Stub, cls: type[ImageCopier] = ImageCopier) -> ImageCopier:
    return cls(
        source=parse_registry(reg["source_url"]),
        target=parse_registry(reg["target_url"]),
        source_client=reg["src"],
        target_client=reg["dst"],
        download_url=lambda digest: f"{blobs.url}/blobs/{digest}",
    )


def _target_image(reg: dict[str, Any], digest: str) -> dict[str, Any]:
    got = reg["dst"].batch_get_image(
        repositoryName=reg["target_repo"],
        imageIds=[{"imageDigest": digest}],
        acceptedMediaTypes=[MANIFEST_TYPE],
    )
    assert len(got["images"]) == 1, got.get("failures")
    return got["images"][0]


def test_images_arrive_in_the_other_registry_with_the_same_digest_manifest_and_layers(
    registries: dict[str, Any], blobs: Stub
) -> None:
    release = {"version": "4f9c2d1", "images": registries["images"]}
    copies = copy_images(
        release, registries["source_url"], registries["target_url"], _copier(registries, blobs)
    )
    assert [(c.service, c.action, c.layers_copied) for c in copies] == [
        ("api", "copied", 2),
        ("worker", "copied", 2),
    ]
    for service, digest in registries["images"].items():
        image = _target_image(registries, digest)
        assert image["imageId"]["imageDigest"] == digest
        source = registries["src"].batch_get_image(
            repositoryName=registries["source_repo"], imageIds=[{"imageDigest": digest}]
        )["images"][0]
        assert image["imageManifest"] == source["imageManifest"]
        manifest = json.loads(image["imageManifest"])
        layers = [manifest["config"]["digest"], manifest["layers"][0]["digest"]]
        found = registries["dst"].batch_check_layer_availability(
            repositoryName=registries["target_repo"], layerDigests=layers
        )["layers"]
        assert {(layer["layerDigest"], layer["layerAvailability"]) for layer in found} == {
            (d, "AVAILABLE") for d in layers
        }
        tags = registries["dst"].describe_images(
            repositoryName=registries["target_repo"], imageIds=[{"imageDigest": digest}]
        )["imageDetails"][0]["imageTags"]
        # The tag the registry's lifecycle policy never expires: a rollback may need this image.
        assert tags == [f"release-{service}-4f9c2d1"]


def test_copying_again_changes_nothing(registries: dict[str, Any], blobs: Stub) -> None:
    release = {"version": "v2", "images": registries["images"]}
    copier = _copier(registries, blobs)
    copy_images(release, registries["source_url"], registries["target_url"], copier)
    fetched = blobs.hits(f"/blobs/{next(iter(registries['images'].values()))}")
    again = copy_images(release, registries["source_url"], registries["target_url"], copier)
    assert [c.action for c in again] == ["present", "present"]
    assert blobs.hits(f"/blobs/{next(iter(registries['images'].values()))}") == fetched
    listed = registries["dst"].list_images(repositoryName=registries["target_repo"])["imageIds"]
    assert sorted(i["imageDigest"] for i in listed) == sorted(registries["images"].values())


def test_layers_the_target_already_holds_are_not_transferred(registries: dict[str, Any], blobs: Stub) -> None:
    digest = registries["images"]["api"]
    manifest = json.loads(
        registries["src"].batch_get_image(
            repositoryName=registries["source_repo"], imageIds=[{"imageDigest": digest}]
        )["images"][0]["imageManifest"]
    )
    config_digest = manifest["config"]["digest"]
    _upload_blob(registries["dst"], registries["target_repo"], blobs.bodies[f"/blobs/{config_digest}"])
    before = blobs.hits(f"/blobs/{config_digest}")
    copy = _copier(registries, blobs).copy("api", digest, "api-v3")
    assert (copy.action, copy.layers_copied) == ("copied", 1)
    assert blobs.hits(f"/blobs/{config_digest}") == before


def test_a_copy_racing_another_run_accepts_the_image_already_there(
    registries: dict[str, Any], blobs: Stub
) -> None:
    class Racing(ImageCopier):
        def _present(self, digest: str) -> bool:  # the other run lands its put_image after our check
            return False

    release = {"version": "v4", "images": registries["images"]}
    copy_images(release, registries["source_url"], registries["target_url"], _copier(registries, blobs))
    again = copy_images(
        release, registries["source_url"], registries["target_url"], _copier(registries, blobs, Racing)
    )
    assert [c.action for c in again] == ["copied", "copied"]
    assert (
        _target_image(registries, registries["images"]["api"])["imageId"]["imageDigest"]
        == (registries["images"]["api"])
    )


def test_an_image_missing_from_the_source_fails_with_its_digest(
    registries: dict[str, Any], blobs: Stub
) -> None:
    missing = "sha256:" + "0" * 64
    with pytest.raises(
        StagelineError,
        match=f"copying image api@{missing} from .*stageline-dev-.* failed: image {missing} is not in",
    ):
        _copier(registries, blobs).copy("api", missing, None)


def test_same_registry_means_nothing_to_copy() -> None:
    release = {"version": "v1", "images": {"api": "sha256:" + "a" * 64}}
    copies = copy_images(release, SOURCE, SOURCE)
    assert [c.action for c in copies] == ["same-registry"]


def test_a_registry_url_that_is_not_ecr_is_refused() -> None:
    with pytest.raises(StagelineError, match="output ecrRepositoryUrl is not an ECR repository URL"):
        copy_images({"version": "v1", "images": {}}, "ghcr.io/acme/app", TARGET)


# --- frontend files -------------------------------------------------------------------------------


@pytest.fixture
def buckets(aws: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    suffix = hashlib.sha1(request.node.name.encode()).hexdigest()[:8]  # noqa: S324 - a name, not security
    src, dst = boto("s3", aws, "eu-west-1"), boto("s3", aws, "us-east-1")
    source, target = f"front-dev-{suffix}", f"front-staging-{suffix}"
    src.create_bucket(Bucket=source, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    dst.create_bucket(Bucket=target)
    files = {
        "releases/v1/index.html": b"<html>v1</html>",
        "releases/v1/assets/app.js": b"console.log(1)",
        "releases/v0/index.html": b"<html>old</html>",
    }
    for key, body in files.items():
        src.put_object(Bucket=source, Key=key, Body=body, ContentType="text/html")
    return {"src": src, "dst": dst, "source": source, "target": target}


def _keys(client: Any, bucket: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_the_release_prefix_is_copied_and_nothing_else(buckets: dict[str, Any]) -> None:
    result = copy_prefix(
        buckets["source"],
        buckets["target"],
        "releases/v1/",
        source_region="eu-west-1",
        target_region="us-east-1",
    )
    assert (result.copied, result.present) == (2, 0)
    assert _keys(buckets["dst"], buckets["target"]) == {
        "releases/v1/index.html": b"<html>v1</html>",
        "releases/v1/assets/app.js": b"console.log(1)",
    }
    head = buckets["dst"].head_object(Bucket=buckets["target"], Key="releases/v1/index.html")
    assert head["ContentType"] == "text/html"


def test_the_prefix_copy_is_idempotent_and_repairs_a_changed_file(buckets: dict[str, Any]) -> None:
    copy_prefix(buckets["source"], buckets["target"], "releases/v1/")
    again = copy_prefix(buckets["source"], buckets["target"], "releases/v1/")
    assert (again.copied, again.present) == (0, 2)
    buckets["dst"].put_object(Bucket=buckets["target"], Key="releases/v1/index.html", Body=b"tampered")
    repaired = copy_prefix(buckets["source"], buckets["target"], "releases/v1/")
    assert (repaired.copied, repaired.present) == (1, 1)
    assert _keys(buckets["dst"], buckets["target"])["releases/v1/index.html"] == b"<html>v1</html>"


def test_a_file_uploaded_in_parts_is_copied_once_and_keeps_its_headers(buckets: dict[str, Any]) -> None:
    """Its ETag ("…-2") is never the copy's (a copy gets a plain MD5), so without the recorded source
    ETag every promotion would copy it again."""
    src, key = buckets["src"], "releases/v1/bundle.js"
    upload = src.create_multipart_upload(
        Bucket=buckets["source"], Key=key, ContentType="text/javascript", CacheControl="max-age=31536000"
    )["UploadId"]
    parts = [
        src.upload_part(Bucket=buckets["source"], Key=key, UploadId=upload, PartNumber=n, Body=body)["ETag"]
        for n, body in ((1, b"a" * 5 * 1024 * 1024), (2, b"b" * 10))
    ]
    src.complete_multipart_upload(
        Bucket=buckets["source"],
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(parts, start=1)]},
    )
    source_etag = src.head_object(Bucket=buckets["source"], Key=key)["ETag"]
    assert source_etag.endswith('-2"')

    first = copy_prefix(buckets["source"], buckets["target"], "releases/v1/")
    assert (first.copied, first.present) == (3, 0)
    head = buckets["dst"].head_object(Bucket=buckets["target"], Key=key)
    assert head["ETag"] != source_etag  # what made every run copy it again
    assert (head["ContentType"], head["CacheControl"]) == ("text/javascript", "max-age=31536000")
    assert head["Metadata"] == {"source-etag": source_etag.strip('"')}
    again = copy_prefix(buckets["source"], buckets["target"], "releases/v1/")
    assert (again.copied, again.present) == (0, 3)


def test_an_empty_source_prefix_fails_naming_it(buckets: dict[str, Any]) -> None:
    with pytest.raises(StagelineError, match=rf"s3://{buckets['source']}/releases/v9/ is empty"):
        copy_prefix(buckets["source"], buckets["target"], "releases/v9/")


def test_a_missing_target_bucket_fails_with_the_s3_error(buckets: dict[str, Any]) -> None:
    with pytest.raises(StagelineError, match="NoSuchBucket"):
        copy_prefix(buckets["source"], "no-such-bucket-here", "releases/v1/")


# --- the release value --------------------------------------------------------------------------------


def test_a_promoted_release_keeps_version_and_digests_and_drops_the_canary() -> None:
    digest = "sha256:" + "b" * 64
    source = {
        "version": "v7",
        "images": {"worker": digest, "api": digest},
        "candidate": "v8",
        "canary": {"weight": 0.1, "stableVersions": {"api": "3", "worker": "3"}},
    }
    assert promoted(source) == {
        "version": "v7",
        "images": {"api": digest, "worker": digest},
        "candidate": "v8",
    }
    assert frontend_prefixes(source) == ["releases/v7/", "releases/v8/"]
    assert same_config({"images": {"a": 1}, "version": "v"}, {"version": "v", "images": {"a": 1}})
    canary = with_canary(promoted(source), 0.25, {"api": 4, "worker": "5"})
    assert canary["canary"] == {"weight": 0.25, "stableVersions": {"api": "4", "worker": "5"}}


@pytest.mark.parametrize(
    ("release", "message"),
    [
        (None, "stageline:release in Pulumi.dev.yaml is missing"),
        ({"version": "no spaces please", "images": {}}, "version must be a version or git SHA"),
        ({"version": "v1", "images": {}}, "images or packages must map each service to a digest"),
        ({"version": "v1", "images": {"api": "latest"}}, 'images.api must look like "sha256:"'),
        ({"version": "v1", "packages": {"api": "sha256:abc"}}, 'packages.api must look like "sha256:"'),
        ({"version": "v1", "packages": {"api": "sha256:" + "a" * 64}, "frontend": "v1"}, "frontend must be"),
    ],
)
def test_an_unpromotable_release_is_a_config_error(release: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        checked(release, "dev")
