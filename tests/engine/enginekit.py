"""Throwaway projects for `LocalEngine` against the real CLI (tests/engine/test_defects.py, test_contract.py).

A project is a git repository in tmp_path with a tiny Python program run by the language host (the real
one beside the CLI, or the stand-in on PATH), the driver's default file:// backend in its
`.stageline/state`, and the `engine_env` fixture's isolated PULUMI_HOME and stand-in cloud. With
`resources=True` the program declares stand-in AWS resources (tests/standin/bin/pulumi-resource-aws),
so drift, slow or failing operations and protected resources are real engine behaviour; without, it
has none and runs in about a second.

Killing the CLI mid-update: `killed_update` starts `engine.up` on a thread, waits until the stand-in
provider is inside a slow create (the cloud consumes the `slow` fault when the operation starts, after
the engine has recorded the operation as pending), then SIGKILLs the `pulumi` process, as a lost CI
runner would.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automation.engine.local import LocalEngine
from automation.engine.model import UpdateRecord
from automation.engine.process import child_pids, is_pulumi_process
from tests.standin.cloud import Cloud
from tests.standin.harness import git

PROJECT = "enginetest"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
BUCKET = "aws:s3/bucketV2:BucketV2"

PLAIN_PROGRAM = """
import pulumi

release = pulumi.Config("stageline").get_object("release") or {}
pulumi.export("releaseVersion", release.get("version"))
pulumi.export("token", pulumi.Output.secret("s3cr3t-output-value"))
pulumi.export("settings", {"plain": "visible", "key": pulumi.Output.secret("n3sted-s3cret-value")})
"""

RESOURCE_PROGRAM = """
import pulumi
import pulumi_aws as aws

release = pulumi.Config("stageline").get_object("release") or {}
test = pulumi.Config("enginetest")
stack = pulumi.get_stack()
logs = aws.cloudwatch.LogGroup(
    "logs",
    name=f"enginetest-{stack}-logs",
    retention_in_days=7,
    tags={"release": str(release.get("version"))},
)
for extra in range(test.get_int("extraGroups") or 0):
    aws.cloudwatch.LogGroup(f"extra{extra}", name=f"enginetest-{stack}-extra{extra}", retention_in_days=1)
bucket = test.get("protectedBucket")
if bucket:
    aws.s3.BucketV2(
        test.get("protectedName") or "data", bucket=bucket, opts=pulumi.ResourceOptions(protect=True)
    )
pulumi.export("releaseVersion", release.get("version"))
pulumi.export("logGroup", logs.name)
"""


def release(version: str) -> dict[str, Any]:
    return {"version": version, "images": {"api": "sha256:" + (version.encode().hex() * 64)[:64]}}


def stack_file(version: str, extra: str = "") -> str:
    images = release(version)["images"]["api"]
    return (
        f"config:\n  aws:region: eu-west-1\n  stageline:release:\n    version: {version}\n"
        f"    images:\n      api: {images}\n{extra}"
    )


@dataclass
class Project:
    root: Path
    cloud: Cloud
    stack: str = "dev"
    _engine: LocalEngine | None = field(default=None, repr=False)

    @property
    def engine(self) -> LocalEngine:
        if self._engine is None:
            self._engine = LocalEngine.open(self.root)
        return self._engine

    def fresh_engine(self) -> LocalEngine:
        """Another driver process, as it were: nothing cached."""
        return LocalEngine.open(self.root)

    @property
    def stack_path(self) -> Path:
        return self.root / f"Pulumi.{self.stack}.yaml"

    def commit(self, message: str = "change") -> str:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.root, "rev-parse", "HEAD")

    def deploy(self, version: str, message: str | None = None) -> UpdateRecord:
        """Write `version` into the stack file (as the driver does) and update."""
        self.engine.set_release(self.stack, release(version))
        return self.engine.up(self.stack, message=message or f"deploy {version}")

    def set_config(self, key: str, value: Any) -> None:
        """Set a config value in the stack file (as a user editing it would), keeping the rest."""
        import yaml

        document = yaml.safe_load(self.stack_path.read_text())
        document.setdefault("config", {})[key] = value
        self.stack_path.write_text(yaml.safe_dump(document, sort_keys=False))

    def git_status(self) -> str:
        return git(self.root, "status", "--porcelain")

    # --- a CLI killed mid-update -----------------------------------------------------------------

    def killed_update(self, *, extra_group: int = 0, timeout: float = 90.0) -> BaseException | None:
        """Add a log group whose create is slow, start `up`, SIGKILL the CLI while the create runs.

        Returns what the `up` raised. The stand-in plugin, orphaned, stops within seconds (it watches
        the engine's health), before its create has written anything to the cloud.
        """
        name = f"extra{extra_group}"
        self.cloud.slow(name, "create", 60.0, times=1)
        self.set_config("enginetest:extraGroups", extra_group + 1)
        box: dict[str, BaseException] = {}
        before = set(child_pids(os.getpid()))

        def run() -> None:
            try:
                self.engine.up(self.stack, message="killed mid-update")
            except BaseException as exc:  # reported to the test
                box["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while any(f.op == "create" for f in self.cloud.faults()):
            assert time.monotonic() < deadline, "the slow create never started"
            assert thread.is_alive(), f"up ended before the create started: {box.get('error')!r}"
            time.sleep(0.1)
        time.sleep(0.5)  # the create is inside its 60 s wait
        pids = [p for p in child_pids(os.getpid()) if p not in before and is_pulumi_process(p)]
        assert pids, "no pulumi process to kill"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        thread.join(timeout)
        assert not thread.is_alive(), "up did not return after its CLI was killed"
        self._engine = None  # the engine that ran it would remember nothing useful
        return box.get("error")


def make_project(
    tmp_path: Path, *, resources: bool, version: str = "r1", extra_config: str = "", name: str = "proj"
) -> Project:
    """A committed git project with one stack `dev` (release `version`), not deployed yet."""
    root = tmp_path / name
    (root / "prog").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text(
        f"name: {PROJECT}\nruntime:\n  name: python\n  options:\n    virtualenv: {sys.prefix}\nmain: prog/\n"
    )
    (root / "prog" / "__main__.py").write_text(RESOURCE_PROGRAM if resources else PLAIN_PROGRAM)
    (root / "Pulumi.dev.yaml").write_text(stack_file(version, extra_config))
    (root / ".gitignore").write_text(".stageline/\n__pycache__/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "init")
    cloud = Cloud(os.environ["STAGELINE_STANDIN_CLOUD"])
    return Project(root=root, cloud=cloud)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
