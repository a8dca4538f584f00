"""`python -m automation build` against moto's server: upload by hash, record the release, gate images,
and a built release promoted through three stacks; rollback refuses when an artifact is gone."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from build_testkit import STAGES, Stores, commit_all, fake_for, fresh_clone, keys, make_stores
from click.testing import Result
from promote_testkit import (
    FakeClock,
    Stub,
    boto,
    healthy_routes,
    http_stub,
    moto_server,
    stage_outputs,
    use_aws,
)

from automation.build.record import write_release
from automation.engine.fake import FakeEngine, step
from automation.operate.updates import RetryPolicy
from automation.promote.notify import Notifier
from automation.promote.pipeline import resolve
from automation.promote.run import PromoteOptions, Runtime, promote
from infra.config import parse_stack_file, read_stack_file
from infra.policies import package_key

IMAGES = {
    "version": "4f9c2d1",
    "images": {"api": "sha256:" + "b3" * 32, "worker": "sha256:" + "32" * 32},
}


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto: str) -> Path:
    root = fresh_clone(tmp_path / "clone")
    monkeypatch.chdir(root)
    use_aws(monkeypatch, moto)
    return root


Build = Callable[..., Result]


@pytest.fixture
def build(invoke: Callable[..., Result], cli_engine: Callable[[FakeEngine], FakeEngine]) -> Build:
    def run(fake: FakeEngine, *args: str) -> Result:
        cli_engine(fake)
        return invoke(["build", *args])

    return run


def _release(root: Path, stack: str = "dev") -> Any:
    return yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text())["config"]["stageline:release"]


def test_build_json_on_a_fresh_clone_uploads_by_hash_and_rebuilds_to_the_same_release(
    clone: Path, moto: str, build: Build
) -> None:
    stores = make_stores(moto, "dev", "json")
    fake = fake_for(clone, {"dev": stores})
    before = (clone / "Pulumi.dev.yaml").read_bytes()

    first = build(fake, "--json")
    assert first.exit_code == 0, first.output
    document = json.loads(first.stdout)
    release = document["release"]
    # The shipped stack file names what the example app builds to, on any machine: same bytes, same hashes.
    assert document["unchanged"] is True
    assert release == _release(clone)
    assert sorted(release["packages"]) == ["api", "worker"]
    assert (clone / "Pulumi.dev.yaml").read_bytes() == before  # --json prints, records nothing
    # Every package under its hash, with the bytes that hash names; every frontend file typed and cached.
    s3 = boto("s3", moto)
    for service, digest in release["packages"].items():
        body = s3.get_object(Bucket=stores.artifacts, Key=package_key(service, digest))
        data = body["Body"].read()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        assert body["ContentType"] == "application/zip"
    prefix = f"releases/{release['frontend']}/"
    assert keys(moto, stores.frontend) == sorted(prefix + f["path"] for f in document["frontend"]["files"])
    index = s3.head_object(Bucket=stores.frontend, Key=prefix + "index.html")
    assert (index["ContentType"], index["CacheControl"]) == ("text/html; charset=utf-8", "no-cache")
    for f in document["frontend"]["files"]:
        if f["path"].startswith("assets/"):
            head = s3.head_object(Bucket=stores.frontend, Key=prefix + f["path"])
            assert head["CacheControl"] == "public, max-age=31536000, immutable"
            assert head["ContentType"].startswith(("text/javascript", "text/css"))

    second = build(fake, "--json")
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert again["release"] == release
    assert [u["uploaded"] for u in again["uploads"]] == [0, 0, 0]  # nothing uploaded the second time


def test_build_records_the_release_and_a_docs_only_change_keeps_it(
    clone: Path, moto: str, build: Build
) -> None:
    stores = make_stores(moto, "dev", "record")
    fake = fake_for(clone, {"dev": stores})
    write_release(clone, "dev", IMAGES)  # dev ran images before this build
    commit_all(clone, "dev on images")
    result = build(fake)
    assert result.exit_code == 0, result.output
    recorded = _release(clone)
    assert set(recorded) == {"version", "packages", "frontend"}
    assert f"dev: release {recorded['version']} recorded in Pulumi.dev.yaml" in result.stdout
    # The stack file still reads as a valid stack, services now run packages, comments elsewhere survive.
    cfg = parse_stack_file(read_stack_file(clone, "dev"))
    assert dict(cfg.release.packages) == recorded["packages"] and not cfg.release.images
    assert "# dev: every merge to main lands here first." in (clone / "Pulumi.dev.yaml").read_text()
    built = (clone / "Pulumi.dev.yaml").read_bytes()

    commit_all(clone, "record the release")
    (clone / "README.md").write_text((clone / "README.md").read_text() + "\nA note.\n")
    (clone / "docs" / "design.md").write_text((clone / "docs" / "design.md").read_text() + "\nMore.\n")
    commit_all(clone, "docs only")
    unchanged = build(fake)
    assert unchanged.exit_code == 0, unchanged.output
    assert f"dev: nothing changed; Pulumi.dev.yaml keeps release {recorded['version']}" in unchanged.stdout
    assert (clone / "Pulumi.dev.yaml").read_bytes() == built

    (clone / "app" / "services" / "worker" / "handler.py").write_text(
        (clone / "app" / "services" / "worker" / "handler.py").read_text() + "\n# a worker change\n"
    )
    sha = commit_all(clone, "worker change")
    changed = build(fake)
    assert changed.exit_code == 0, changed.output
    after = _release(clone)
    assert after["version"] == sha[:12]  # a new release is named by the commit that built it
    assert after["packages"]["api"] == recorded["packages"]["api"]  # api's function is left alone
    assert after["packages"]["worker"] != recorded["packages"]["worker"]
    assert after["frontend"] == recorded["frontend"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--image", "billing=sha256:" + "a" * 64),
            "--image billing=…: no service 'billing' in Pulumi.dev.yaml",
        ),
        (("--image", "api=sha256:abc"), "--image api=sha256:abc: a digest is sha256: and 64 lower-case hex"),
        (("--image", "api=latest"), "--image api=latest: that is a tag, and a tag can be moved"),
        (("--image", "api=repo:v1.2"), "--image api=repo:v1.2: that is a tag"),
        (("--image", "api"), "--image api: give SERVICE=sha256:<64 hex digits>"),
        (("--version", "bad version"), "--version 'bad version': letters, digits"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    clone: Path, moto: str, build: Build, args: tuple, message: str
) -> None:
    fake = fake_for(clone, {})
    result = build(fake, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr and "Traceback" not in result.output


def test_a_service_without_requirements_is_exit_2_naming_it(clone: Path, moto: str, build: Build) -> None:
    (clone / "app" / "services" / "api" / "requirements.txt").unlink()
    result = build(fake_for(clone, {"dev": make_stores(moto, "dev", "noreq")}))
    assert result.exit_code == 2
    assert (
        "service 'api' (stageline:services[0].source app/services/api): no requirements.txt" in result.stderr
    )


# --- images built elsewhere -----------------------------------------------------------------------


def _push(ecr: Any, repository: str, name: str) -> str:
    config = json.dumps({"os": "linux", "name": name}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            },
            "layers": [],
        }
    )
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    ecr.put_image(
        repositoryName=repository, imageManifest=manifest, imageDigest=digest, imageTag=f"{name}-ci"
    )
    return digest


def _findings(moto: str, repository: str, digest: str, counts: dict[str, int]) -> None:
    """moto's own API: the result describe_image_scan_findings returns for this image."""
    result = {
        "registryId": "123456789012",
        "repositoryName": repository,
        "imageId": {"imageDigest": digest},
        "imageScanStatus": {"status": "COMPLETE", "description": "done"},
        "imageScanFindings": {"findings": [], "findingSeverityCounts": counts},
    }
    posted = requests.post(
        f"{moto}/moto-api/static/ecr/scan-finding-results",
        json={"results": [result], "region": "eu-west-1"},
        timeout=10,
    )
    posted.raise_for_status()


def test_the_scan_gate_refuses_findings_at_or_above_the_threshold(
    clone: Path, moto: str, build: Build
) -> None:
    stores = make_stores(moto, "dev", "scan")
    ecr = boto("ecr", moto)
    digest = _push(ecr, stores.repository, "api")
    fake = fake_for(clone, {"dev": stores})

    missing = build(fake, "--image", "api=sha256:" + "e" * 64)
    assert missing.exit_code == 2 and "no such image in" in missing.stderr

    unscanned = build(fake, "--image", f"api={digest}")
    assert unscanned.exit_code == 3 and "the image has no scan" in unscanned.stderr

    ecr.start_image_scan(repositoryName=stores.repository, imageId={"imageDigest": digest})
    _findings(moto, stores.repository, digest, {"HIGH": 2, "LOW": 5})
    refused = build(fake, "--image", f"api={digest}")
    assert refused.exit_code == 3, refused.output
    assert "the image scan found 2 HIGH (stageline:artifacts.scanSeverity is HIGH" in refused.stderr
    assert _release(clone).get("images", {}).get("api") != digest  # nothing recorded

    # The threshold comes from the stack file: CRITICAL lets HIGH findings through.
    path = clone / "Pulumi.dev.yaml"
    path.write_text(
        path.read_text().replace(
            "    protect: false\n", "    protect: false\n    scanSeverity: CRITICAL\n", 1
        )
    )
    passed = build(fake, "--image", f"api={digest}")
    assert passed.exit_code == 0, passed.output
    release = _release(clone)
    assert release["images"] == {"api": digest} and sorted(release["packages"]) == ["worker"]
    tags = ecr.describe_images(repositoryName=stores.repository, imageIds=[{"imageDigest": digest}])
    assert f"release-api-{release['version']}" in tags["imageDetails"][0]["imageTags"]


# --- a built release through three stacks, then rollback ------------------------------------------


@pytest.fixture
def stub() -> Iterator[Stub]:
    with http_stub() as server:
        yield server


def _promote(fake: FakeEngine, root: Path, stub: Stub) -> Any:
    pipeline = resolve(root)
    stages = tuple(dataclasses.replace(s, pre=(), post=()) for s in pipeline.stages)
    rt = Runtime(
        engine=fake,
        root=root,
        notifier=Notifier(None, warn=lambda _: None),
        progress=lambda _: None,
        clock=FakeClock(),
        retry=RetryPolicy(tries=1, base_delay=0),
        echo_steps=False,
    )
    return promote(stages, pipeline.names, PromoteOptions(yes=True), rt)


def test_a_built_release_is_promoted_through_three_stacks_and_a_docs_change_is_a_no_op(
    clone: Path, moto: str, build: Build, stub: Stub
) -> None:
    regions = {"dev": "eu-west-1", "staging": "us-east-1", "prod": "eu-central-1"}
    stores: dict[str, Stores] = {s: make_stores(moto, s, "chain", regions[s]) for s in STAGES}
    built = build(fake_for(clone, {"dev": stores["dev"]}))
    assert built.exit_code == 0, built.output
    release = _release(clone)
    commit_all(clone, "release")

    fake = FakeEngine.from_repo(clone)
    for stack in STAGES:
        stub.routes.update(healthy_routes(stack))
        fake.set_outputs(
            stack, stage_outputs(stack, stub.url, region=regions[stack]) | stores[stack].outputs()
        )
        fake.set_preview(
            stack,
            [step(stack, "update", "aws:lambda/function:Function", f"{stack}-api", changed=["s3Key"])],
        )
    record = _promote(fake, clone, stub)
    assert record.exit_code == 0, record.to_json()
    for stack in STAGES:
        assert fake.stack(stack).history[-1].release == release
        assert keys(moto, stores[stack].artifacts, regions[stack]) == sorted(
            package_key(s, d) for s, d in release["packages"].items()
        )
        assert {k.split("/")[1] for k in keys(moto, stores[stack].frontend, regions[stack])} == {
            release["frontend"]
        }
    staging = record.to_json()["stages"][1]["artifacts"]["packages"]
    assert [(p["service"], p["action"]) for p in staging] == [("api", "copied"), ("worker", "copied")]
    ups = sum(1 for c in fake.calls if c.op == "up")

    # A docs-only commit: the build keeps the release, so promotion writes nothing and deploys nothing.
    (clone / "README.md").write_text((clone / "README.md").read_text() + "\nDocs only.\n")
    commit_all(clone, "docs")
    again = build(fake_for(clone, {"dev": stores["dev"]}))
    assert "nothing changed" in again.stdout and _release(clone) == release
    for stack in STAGES:
        fake.set_preview(stack, [])  # what the engine shows for an unchanged program and config
    calls = len(fake.calls)
    second = _promote(fake, clone, stub)
    assert second.exit_code == 0
    assert [s["result"] for s in second.to_json()["stages"]] == ["unchanged"] * 3
    assert not [c for c in fake.calls[calls:] if c.op in ("set_release", "up")]
    assert sum(1 for c in fake.calls if c.op == "up") == ups


def test_rollback_refuses_before_any_change_when_an_artifact_is_gone(
    clone: Path, moto: str, invoke: Callable[..., Result], cli_engine: Callable[[FakeEngine], FakeEngine]
) -> None:
    stores = make_stores(moto, "dev", "rollback")
    old = {"version": "old1", "packages": {"api": "sha256:" + "1" * 64, "worker": "sha256:" + "2" * 64}}
    current = {"version": "new1", "packages": {"api": "sha256:" + "3" * 64, "worker": "sha256:" + "2" * 64}}
    fake = fake_for(clone, {"dev": stores})
    fake.add_history("dev", release=old, message="promote old1")
    fake.add_history("dev", release=current, message="promote new1")
    fake.set_config("dev", "stageline:release", current)
    s3 = boto("s3", moto)
    s3.put_object(Bucket=stores.artifacts, Key=package_key("worker", old["packages"]["worker"]), Body=b"w")
    s3.put_object(Bucket=stores.frontend, Key="releases/old1/index.html", Body=b"<html>")
    cli_engine(fake)

    refused = invoke(["rollback", "dev", "--yes"])
    assert refused.exit_code == 1, refused.output
    assert "cannot roll back dev to v1: release old1 names artifacts that no longer exist: package api" in (
        refused.stderr
    )
    assert f"s3://{stores.artifacts}/{package_key('api', old['packages']['api'])}" in refused.stderr
    assert not [c for c in fake.calls if c.op in ("set_release", "up")]

    s3.put_object(Bucket=stores.artifacts, Key=package_key("api", old["packages"]["api"]), Body=b"a")
    done = invoke(["rollback", "dev", "--yes"])
    assert done.exit_code == 0, done.output
    assert fake.stack("dev").history[-1].release == old
