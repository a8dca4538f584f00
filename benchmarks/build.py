"""`python -m automation build` of the example app: a cold build, then a warm one with nothing changed.

Runs the command in-process (click's runner) from a fresh copy of the project in a temporary git
repository, against moto's server on 127.0.0.1 standing in for S3, with a fake engine whose dev stack
exports the buckets. Cold: empty build cache and empty buckets, everything built and uploaded. Warm:
the same commit again, so every package and frontend file is already there. Target: the warm build
takes under 2 s and uploads nothing. A third run after a docs-only commit shows the same.

    python benchmarks/build.py
    python benchmarks/build.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SECONDS = 2.0
_GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]


def _copy_project(where: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "Pulumi*.yaml", "app", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in filter(None, listed.stdout.split("\0")):
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, where / name)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=where, check=True)
    subprocess.run([*_GIT, "add", "-A"], cwd=where, check=True)
    subprocess.run([*_GIT, "commit", "-qm", "start"], cwd=where, check=True)


def _run(invoke: Any) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    result = invoke()
    seconds = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"build failed ({result.exit_code}): {result.output}")
    return seconds, json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="cold/warm pairs to run (median reported)")
    runs = parser.parse_args().runs

    import logging
    import os

    import boto3
    from click.testing import CliRunner
    from moto.server import ThreadedMotoServer

    from automation.cli import cli
    from automation.engine import protocol
    from automation.engine.fake import FakeEngine
    from infra import outputs as out

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - moto's dummy credentials
        AWS_DEFAULT_REGION="eu-west-1",
    )
    s3 = boto3.client("s3", region_name="eu-west-1", endpoint_url=endpoint)
    cold: list[float] = []
    warm: list[float] = []
    docs: list[float] = []
    uploaded: dict[str, list[int]] = {"cold": [], "warm": [], "docs": []}
    here = Path.cwd()
    try:
        for run in range(runs):
            with tempfile.TemporaryDirectory(prefix="stageline-build-bench-") as tmp:
                root = Path(tmp)
                _copy_project(root)
                buckets = {
                    out.ARTIFACT_BUCKET: f"bench-artifacts-{run}",
                    out.FRONTEND_BUCKET: f"bench-frontend-{run}",
                }
                for bucket in buckets.values():
                    s3.create_bucket(
                        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
                    )
                fake = FakeEngine.from_repo(root)
                fake.set_outputs("dev", {out.REGION: "eu-west-1", **buckets})
                protocol.engine_factory = lambda fake=fake: fake
                os.chdir(root)
                invoke = lambda: CliRunner().invoke(cli, ["build", "--json"], catch_exceptions=False)  # noqa: E731
                for label, bucket_list in (("cold", cold), ("warm", warm)):
                    seconds, document = _run(invoke)
                    bucket_list.append(seconds)
                    uploaded[label].append(sum(u["uploaded"] for u in document["uploads"]))
                (root / "README.md").write_text((root / "README.md").read_text() + "\nA docs-only change.\n")
                subprocess.run([*_GIT, "commit", "-qam", "docs"], cwd=root, check=True)
                seconds, document = _run(invoke)
                docs.append(seconds)
                uploaded["docs"].append(sum(u["uploaded"] for u in document["uploads"]))
                os.chdir(here)
    finally:
        os.chdir(here)
        server.stop()

    def row(title: str, label: str, values: list[float]) -> str:
        files = statistics.median(uploaded[label])
        return f"{title:<24}{statistics.median(values):>8.3f} s   files uploaded: {files:>3.0f}"

    print(f"build of the example app, {runs} run(s), medians (moto on 127.0.0.1, fake engine)")
    print(row("cold (empty cache)", "cold", cold))
    print(row("warm (nothing changed)", "warm", warm))
    print(row("after a docs commit", "docs", docs))
    verdict = "met" if statistics.median(warm) < TARGET_SECONDS and max(uploaded["warm"]) == 0 else "MISSED"
    print(f"target: warm < {TARGET_SECONDS:.0f} s and nothing uploaded: {verdict}")


if __name__ == "__main__":
    main()
