"""Promoting a new release from dev to staging, end to end: the real program, the real engine, the driver.

A repository copy (`tests/standin/harness.copy_repo`) deploys dev and staging with the driver; dev then
gets a new release (version and image digests) and deploys it. moto's server stands in for the AWS
APIs the driver itself calls (ECR and S3 for the release copy, CloudWatch for the alarms, CloudFront
for the cache invalidations); the stand-in provider points the API and TEST addresses at a local HTTP
server (STAGELINE_STANDIN_ENDPOINT), which answers the health checks and the `post` smoke steps.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import needs_cli
from tests.engine.test_program import FUNCTION, Endpoint, aws, boto, endpoint, make_checkout
from tests.standin.harness import git

DISTRIBUTION = "aws:cloudfront/distribution:Distribution"

pytestmark = [pytest.mark.engine, needs_cli]

__all__ = ["aws", "endpoint"]  # the fixtures this module borrows from test_program

OLD = "4f9c2d1"
NEW = "5e6f7a8"
# The images release dev and staging run first: this test promotes images by digest (the shipped
# stacks run zip packages, which tests/automation/build carries through promotion).
OLD_IMAGES = {
    "api": "sha256:b3fe26efe42b5022a03a801d1f17d84b6bf4a2efa0442a5ad177f59ab403c48a",
    "worker": "sha256:3256822ca844d9280bfa16718ca6a8b203da9ada525fd1ff80b5ce3dbb4ab67d",
}
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
SERVICES = ("api", "worker")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build(service: str) -> tuple[list[bytes], str]:
    """An image of `service` for the new release: its blobs (config, one layer) and its manifest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "service": service, "version": NEW}).encode()
    layer = f"{service} at {NEW}".encode() * 64
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": digest(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": digest(layer),
                }
            ],
        }
    )
    return [config, layer], manifest


def upload_blob(ecr: Any, repository: str, data: bytes) -> None:
    upload = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
    ecr.upload_layer_part(
        repositoryName=repository,
        uploadId=upload,
        partFirstByte=0,
        partLastByte=len(data) - 1,
        layerPartBlob=data,
    )
    ecr.complete_layer_upload(repositoryName=repository, uploadId=upload, layerDigests=[digest(data)])


def set_release(stack_file: Path, version: str, images: dict[str, str]) -> None:
    """Rewrite the `stageline:release` block of a stack file in place (its comments stay)."""
    text = stack_file.read_text()
    block = "".join(
        [
            "  stageline:release:\n",
            f"    version: {version}\n",
            "    images:\n",
            *(f"      {service}: {d}\n" for service, d in sorted(images.items())),
        ]
    )
    new, n = re.subn(r"  stageline:release:\n(?:    .*\n)+", block, text)
    assert n == 1, f"no stageline:release block in {stack_file}"
    stack_file.write_text(new)


@dataclass
class Staged:
    """dev and staging deployed with OLD; dev then redeployed with NEW, whose artifacts are in moto."""

    checkout: Any
    outputs: dict[str, dict[str, Any]]
    images: dict[str, tuple[list[bytes], str]]
    new_digests: dict[str, str]
    files: dict[str, bytes]
    staging_file: Path


def stage_new_release(tmp_path: Path, pulumi_home: Path, endpoint: Endpoint, aws: dict[str, str]) -> Staged:
    checkout = make_checkout(tmp_path, pulumi_home, STAGELINE_STANDIN_ENDPOINT=endpoint.url)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        checkout.env.pop(name, None)
    staging_file = checkout.root / "Pulumi.staging.yaml"
    # staging bakes for 300 s against CloudWatch; the bake itself is covered by tests/automation.
    staging_file.write_text(staging_file.read_text().replace("bakeSeconds: 300", "bakeSeconds: 0", 1))
    for stack in ("dev", "staging"):
        set_release(checkout.root / f"Pulumi.{stack}.yaml", OLD, OLD_IMAGES)
    git(checkout.root, "commit", "-qam", f"staging: no bake in this test; dev and staging run images {OLD}")
    for stack in ("dev", "staging"):
        up = json.loads(checkout.driver("up", stack, "--yes", "--approve-iam", "--json").stdout)
        assert up["update"]["result"] == "succeeded"

    # dev gets a new release: new images (their digests are their manifests' hashes), new version.
    images = {service: build(service) for service in SERVICES}
    new_digests = {service: digest(manifest.encode()) for service, (_, manifest) in images.items()}
    set_release(checkout.root / "Pulumi.dev.yaml", NEW, new_digests)
    git(checkout.root, "commit", "-qam", f"dev: release {NEW}")
    redeployed = json.loads(checkout.driver("up", "dev", "--yes", "--json").stdout)
    assert redeployed["update"]["result"] == "succeeded"

    outputs = {
        stack: json.loads(checkout.pulumi("stack", "output", "-s", stack, "--json").stdout)
        for stack in ("dev", "staging")
    }
    assert outputs["dev"]["releaseVersion"] == NEW and outputs["staging"]["releaseVersion"] == OLD
    assert outputs["dev"]["ecrRepositoryUrl"] != outputs["staging"]["ecrRepositoryUrl"]
    assert outputs["dev"]["frontendBucket"] != outputs["staging"]["frontendBucket"]

    # What the copy reads, in moto: dev's registry holds the images; staging's holds the blobs
    # (moto has no GetDownloadUrlForLayer, so no layer can travel); dev's bucket holds the files.
    ecr, s3, cloudwatch = boto("ecr", aws), boto("s3", aws), boto("cloudwatch", aws)
    for stack in ("dev", "staging"):
        repository = outputs[stack]["ecrRepositoryName"]
        assert outputs[stack]["ecrRepositoryUrl"].endswith(f"/{repository}")
        ecr.create_repository(repositoryName=repository)
        for blobs, _ in images.values():
            for blob in blobs:
                upload_blob(ecr, repository, blob)
        s3.create_bucket(
            Bucket=outputs[stack]["frontendBucket"],
            CreateBucketConfiguration={"LocationConstraint": aws["AWS_REGION"]},
        )
        for alarm in outputs[stack]["alarmNames"]:
            cloudwatch.put_metric_alarm(
                AlarmName=alarm,
                MetricName="Errors",
                Namespace="AWS/Lambda",
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
            )
    for service, (_, manifest) in images.items():
        ecr.put_image(
            repositoryName=outputs["dev"]["ecrRepositoryName"],
            imageManifest=manifest,
            imageManifestMediaType=MANIFEST_TYPE,
            imageDigest=new_digests[service],
            imageTag=f"{service}-{NEW}",
        )
    files = {f"releases/{NEW}/index.html": b"<html>5e6f7a8</html>", f"releases/{NEW}/app.js": b"app()"}
    for key, body in files.items():
        s3.put_object(Bucket=outputs["dev"]["frontendBucket"], Key=key, Body=body)
    endpoint.seen.clear()
    return Staged(checkout, outputs, images, new_digests, files, staging_file)


def test_promoting_a_new_dev_release_copies_its_artifacts_and_deploys_it_to_staging(
    tmp_path: Path, pulumi_home: Path, endpoint: Endpoint, aws: dict[str, str]
) -> None:
    staged = stage_new_release(tmp_path, pulumi_home, endpoint, aws)
    checkout, outputs, images, new_digests = (
        staged.checkout,
        staged.outputs,
        staged.images,
        staged.new_digests,
    )
    files, staging_file = staged.files, staged.staging_file
    ecr, s3 = boto("ecr", aws), boto("s3", aws)

    promoted = checkout.driver("promote", "--only", "staging", "--yes", "--json", env={**checkout.env, **aws})
    assert promoted.returncode == 0
    record = json.loads(promoted.stdout)
    assert (record["result"], record["exitCode"]) == ("succeeded", 0)
    assert record["release"]["version"] == NEW
    [stage] = record["stages"]
    assert (stage["stack"], stage["source"], stage["result"]) == ("staging", "dev", "deployed")
    assert stage["release"]["before"]["version"] == OLD
    assert stage["release"]["after"] == {"version": NEW, "images": new_digests}
    # TEST first: the candidate update moved only the TEST distribution, then APP
    assert [(u["phase"], u["result"]) for u in stage["updates"]] == [
        ("candidate", "succeeded"),
        ("release", "succeeded"),
    ]
    assert stage["verification"][0]["phase"] == "candidate" and stage["verification"][0]["ok"]
    assert {(i["service"], i["digest"], i["action"]) for i in stage["artifacts"]["images"]} == {
        (service, d, "copied") for service, d in new_digests.items()
    }
    assert [(f["prefix"], f["copied"]) for f in stage["artifacts"]["frontend"]] == [(f"releases/{NEW}/", 2)]
    assert all(v["ok"] for v in stage["verification"])

    # The copies are in staging's registry and bucket, byte for byte.
    staging_repo = outputs["staging"]["ecrRepositoryName"]
    got = ecr.batch_get_image(
        repositoryName=staging_repo, imageIds=[{"imageDigest": d} for d in new_digests.values()]
    )["images"]
    assert {i["imageId"]["imageDigest"]: i["imageManifest"] for i in got} == {
        new_digests[s]: images[s][1] for s in SERVICES
    }
    for key, body in files.items():
        assert s3.get_object(Bucket=outputs["staging"]["frontendBucket"], Key=key)["Body"].read() == body

    # staging's functions run the new digests, in the state and in the stand-in cloud.
    staging_url = outputs["staging"]["ecrRepositoryUrl"]
    wanted = {f"{staging_url}@{d}" for d in new_digests.values()}
    state = checkout.export("staging")["resources"]
    assert {r["outputs"]["imageUri"] for r in state if r["type"] == FUNCTION} == wanted
    assert {f.output("imageUri") for f in checkout.cloud.resources(FUNCTION, stack="staging")} == wanted
    after = json.loads(checkout.pulumi("stack", "output", "-s", "staging", "--json").stdout)
    assert after["releaseVersion"] == NEW
    assert yaml_release_version(staging_file) == NEW

    # The health server answered staging's health paths (the driver's checks and the post step).
    api = after["apiUrl"].rstrip("/")
    assert api.startswith(f"{endpoint.url}/")
    seen = {endpoint.url + path for path in endpoint.seen}
    assert {f"{api}{path}" for path in after["healthPaths"].values()} <= seen
    assert f"{after['testDomain']}/" in seen

    history = json.loads(checkout.driver("history", "staging", "--json").stdout)["updates"]
    newest = max(history, key=lambda u: u["version"])
    assert newest["result"] == "succeeded"
    assert newest["release"]["version"] == NEW


def yaml_release_version(stack_file: Path) -> str:
    import yaml

    return str(yaml.safe_load(stack_file.read_text())["config"]["stageline:release"]["version"])


def origin_paths(checkout: Any, stack: str) -> dict[str, str]:
    """Each distribution's origin path in the stand-in cloud, by its logical name (…-app, …-test)."""
    found = {}
    for record in checkout.cloud.resources(DISTRIBUTION, stack=stack):
        [origin] = record.input("origins")
        found[record.name] = origin["originPath"]
    return found


def test_a_release_whose_frontend_fails_on_test_never_changes_app(
    tmp_path: Path, pulumi_home: Path, endpoint: Endpoint, aws: dict[str, str]
) -> None:
    staged = stage_new_release(tmp_path, pulumi_home, endpoint, aws)
    checkout = staged.checkout
    before = origin_paths(checkout, "staging")
    assert sorted(before.values()) == [f"/releases/{OLD}", f"/releases/{OLD}"]
    app = next(name for name in before if name.endswith("app"))
    test = next(name for name in before if name.endswith("test"))
    test_id = next(r.id for r in checkout.cloud.resources(DISTRIBUTION, stack="staging") if r.name == test)

    def new_frontend_on_test(path: str) -> bool:
        # The TEST distribution answers 500 while it serves NEW's files: a broken frontend build.
        return (
            path.startswith(f"/cdn/{test_id}")
            and origin_paths(checkout, "staging")[test] == f"/releases/{NEW}"
        )

    endpoint.failing.append(new_frontend_on_test)
    try:
        promoted = checkout.driver(
            "promote", "--only", "staging", "--yes", "--json", expect=1, env={**checkout.env, **aws}
        )
    finally:
        endpoint.failing.clear()
    record = json.loads(promoted.stdout)
    [stage] = record["stages"]
    assert (record["exitCode"], stage["result"]) == (1, "rolled back")
    assert stage["reason"].startswith("the candidate failed on TEST: health check failed: frontend")
    assert stage["reason"].endswith("; APP was not changed")
    assert [(u["phase"], u["result"]) for u in stage["updates"]] == [
        ("candidate", "succeeded"),
        ("rollback", "succeeded"),
    ]
    # TEST served NEW (the check reached it), and is back on the live release; APP never moved
    assert any(path.startswith(f"/cdn/{test_id}") for path in endpoint.seen)
    assert origin_paths(checkout, "staging") == before and before[app] == f"/releases/{OLD}"
    history = json.loads(checkout.driver("history", "staging", "--json").stdout)["updates"]
    deployed = [u["release"] for u in sorted(history, key=lambda u: u["version"]) if u["kind"] == "update"]
    assert [(r["version"], r.get("candidate")) for r in deployed] == [(OLD, None), (OLD, NEW), (OLD, None)]
    # staging's functions still run OLD's images, in the state and in the stand-in cloud
    state = checkout.export("staging")["resources"]
    assert not any(
        d in r["outputs"]["imageUri"]
        for r in state
        if r["type"] == FUNCTION
        for d in staged.new_digests.values()
    )
    assert yaml_release_version(staged.staging_file) == OLD
