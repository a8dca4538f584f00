"""Helpers of the build tests: a fresh clone of the project, its buckets in moto, a fake engine."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promote_testkit import boto

from automation.engine.fake import FakeEngine
from infra import outputs as out

ROOT = Path(__file__).resolve().parents[3]
STAGES = ("dev", "staging", "prod")


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def fresh_clone(where: Path) -> Path:
    """The project's tracked files (as they are in this working copy) committed into a new repository."""
    files = git(ROOT, "ls-files", "-z", "Pulumi*.yaml", "app", "README.md", "docs").split("\0")
    for name in filter(None, files):
        target = where / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    git(where, "init", "-q", "-b", "main")
    git(where, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    git(where, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "start")
    return where


def commit_all(root: Path, message: str) -> str:
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    git(
        root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--allow-empty", "-qm", message
    )
    return git(root, "rev-parse", "HEAD")


@dataclass
class Stores:
    region: str
    artifacts: str
    frontend: str
    repository: str

    def outputs(self) -> dict[str, Any]:
        return {
            out.REGION: self.region,
            out.ARTIFACT_BUCKET: self.artifacts,
            out.FRONTEND_BUCKET: self.frontend,
            out.ECR_REPOSITORY_URL: f"123456789012.dkr.ecr.{self.region}.amazonaws.com/{self.repository}",
        }


def make_stores(endpoint: str, stack: str, uid: str, region: str = "eu-west-1") -> Stores:
    s3, ecr = boto("s3", endpoint, region), boto("ecr", endpoint, region)
    stores = Stores(region, f"{stack}-artifacts-{uid}", f"{stack}-frontend-{uid}", f"stageline-{stack}-{uid}")
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    for bucket in (stores.artifacts, stores.frontend):
        s3.create_bucket(Bucket=bucket, **location)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ecr.create_repository(repositoryName=stores.repository)
    return stores


def fake_for(root: Path, stores: dict[str, Stores]) -> FakeEngine:
    fake = FakeEngine.from_repo(root)
    for stack, where in stores.items():
        fake.set_outputs(stack, where.outputs())
    return fake


def keys(endpoint: str, bucket: str, region: str = "eu-west-1") -> list[str]:
    listed = boto("s3", endpoint, region).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))
