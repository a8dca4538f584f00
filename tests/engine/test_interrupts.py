"""Interrupting the driver's `up` for real: Ctrl-C, a second `up` meanwhile, a killed Pulumi CLI.

Every command is a subprocess started from the root of a repository copy, as a user runs it:
`.venv/bin/python -m automation …` with the driver's defaults (backend `.stageline/state`, empty
passphrase). The stand-in cloud makes one Lambda function's update slow, so the update is in flight
when the test interrupts it; the cloud's operations log and the driver's output say when it began.
What the engine seam does on its own is covered in test_contract.py and test_defects.py; this module
covers the driver process: its signal forwarding, its exit codes and its one-line messages.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine.conftest import needs_cli
from tests.standin.cloud import Cloud
from tests.standin.harness import copy_repo, environment

pytestmark = [pytest.mark.engine, needs_cli]

GITHUB_TOKEN = "ghp_standin0token0for0engine0tests00"  # the stand-in github plugin wants one
FUNCTION = "aws:lambda/function:Function"
TIMEOUT = 180


@dataclass
class Running:
    """A driver started in the background, its output going to files (never a full pipe)."""

    process: subprocess.Popen[str]
    stdout: Path
    stderr: Path

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()

    def wait(self, timeout: float = TIMEOUT) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        return (code, *self.output())


@dataclass
class Checkout:
    root: Path
    cloud: Cloud
    env: dict[str, str]

    @property
    def python(self) -> str:
        return str(self.root / ".venv" / "bin" / "python")

    @property
    def locks(self) -> Path:
        return self.root / ".stageline" / "state" / ".pulumi" / "locks"

    def driver(
        self, *args: str, expect: int | None = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.python, "-m", "automation", *args],
            cwd=self.root,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if expect is not None and done.returncode != expect:
            pytest.fail(
                f"automation {' '.join(args)} exited {done.returncode}, expected {expect}\n"
                f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
            )
        return done

    def start(self, *args: str, name: str, env: dict[str, str] | None = None) -> Running:
        out, err = self.root.parent / f"{name}.out", self.root.parent / f"{name}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(
                [self.python, "-m", "automation", *args],
                cwd=self.root,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                text=True,
                start_new_session=True,  # no terminal: a signal reaches the driver only
                # A job a non-interactive shell started in the background inherits SIGINT ignored;
                # the driver must see it as a user's Ctrl-C would reach it.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
            )
        return Running(process, out, err)

    def history(self) -> list[dict[str, Any]]:
        return list(json.loads(self.driver("history", "dev", "--json").stdout)["updates"])

    def slow_memory_change(self, seconds: float) -> str:
        """Give the api service more memory and make its function's update take `seconds`."""
        path = self.root / "Pulumi.dev.yaml"
        document = yaml.safe_load(path.read_text())
        services = document["config"]["stageline:services"]
        services[0]["memory"] = int(services[0]["memory"]) * 2
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        [function] = [r for r in self.cloud.resources(FUNCTION, stack="dev") if "api" in r.name]
        self.cloud.slow(function.name, "update", seconds)
        return function.name


@pytest.fixture
def deployed(tmp_path: Path, pulumi_home: Path, engine_env: dict[str, str]) -> Iterator[Checkout]:
    cloud = tmp_path / "cloud-dev"
    env = environment(pulumi_home, cloud)
    env.update({"GITHUB_TOKEN": GITHUB_TOKEN, "STAGELINE_LOCK_BACKOFF": "0"})
    env.pop("GITHUB_STEP_SUMMARY", None)
    checkout = Checkout(copy_repo(tmp_path / "repo"), Cloud(cloud), env)
    (checkout.root / ".stageline" / "state").mkdir(parents=True)
    checkout.driver("up", "dev", "--yes", "--approve-iam")  # a first deployment creates IAM roles
    yield checkout


def wait_for(what: str, check: Any, running: Running, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if running.process.poll() is not None:
            out, err = running.output()
            pytest.fail(f"the driver ended ({running.process.returncode}) before {what}\n{out}\n{err}")
        time.sleep(0.1)
    running.process.kill()
    pytest.fail(f"timed out waiting for {what}\n{running.output()}")


def update_began(checkout: Checkout, function: str) -> Any:
    """True once the slow function's update is in flight: the engine recorded it pending."""

    def check() -> bool:
        for path in (checkout.root / ".stageline" / "state" / ".pulumi" / "stacks").rglob("dev.json"):
            try:
                text = path.read_text()
            except OSError:
                continue
            if '"pending_operations"' in text and function in text:
                return True
        return False

    return check


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines, "no message on stderr"
    return lines[-1]


def newest(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return max(entries, key=lambda e: int(e["version"]))


def pending_operations(checkout: Checkout) -> list[Any]:
    """The state's pending operations, as `pulumi stack export` (the driver's backend) shows them."""
    env = {
        **checkout.env,
        "PULUMI_BACKEND_URL": (checkout.root / ".stageline" / "state").as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": "",
    }
    done = subprocess.run(
        ["pulumi", "stack", "export", "-s", "dev"],
        cwd=checkout.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return list(json.loads(done.stdout)["deployment"].get("pending_operations") or [])


# --- 1: Ctrl-C mid-update ---------------------------------------------------------------------------


def test_sigint_to_the_driver_stops_the_update_cleanly_exit_130_and_the_stack_stays_usable(
    deployed: Checkout,
) -> None:
    before = len(deployed.history())
    function = deployed.slow_memory_change(8)
    running = deployed.start("up", "dev", "--yes", name="interrupted")
    wait_for("the slow update to begin", update_began(deployed, function), running)

    os.kill(running.process.pid, signal.SIGINT)  # the driver only: it must forward it to the CLI
    code, _, err = running.wait()
    assert code == 130, err
    assert "Traceback" not in err

    # The engine lets the in-flight operation finish, then stops: Pulumi records the update failed.
    entries = deployed.history()
    assert len(entries) == before + 1
    assert newest(entries)["result"] == "failed"
    assert pending_operations(deployed) == []
    assert not list(deployed.locks.rglob("*.json"))

    deployed.cloud.clear_faults()
    deployed.driver("up", "dev", "--yes")
    entries = deployed.history()
    assert len(entries) == before + 2 and newest(entries)["result"] == "succeeded"


# --- 2: a second `up` while one runs ----------------------------------------------------------------


def test_a_second_up_meanwhile_fails_in_one_line_naming_the_lock_and_the_first_finishes(
    deployed: Checkout,
) -> None:
    function = deployed.slow_memory_change(10)
    first = deployed.start("up", "dev", "--yes", name="first")
    wait_for("the slow update to begin", update_began(deployed, function), first)

    started = time.monotonic()
    second = deployed.driver(
        "up",
        "dev",
        "--yes",
        "--lock-retries",
        "2",
        expect=1,
        env={**deployed.env, "STAGELINE_LOCK_BACKOFF": "0.5"},
    )
    said = one_line(second.stderr)
    assert "locked by another update" in said
    assert said.startswith("error: dev is still locked by another update after 2 attempts")
    assert first.process.poll() is None, "the first update ended before the second gave up"
    assert time.monotonic() - started < 10

    code, _, err = first.wait()
    assert code == 0, err
    assert newest(deployed.history())["result"] == "succeeded"


# --- 3: the Pulumi CLI killed mid-update ------------------------------------------------------------


def test_a_killed_cli_is_reported_then_clear_pending_recovers_and_spares_a_live_lock(
    deployed: Checkout,
) -> None:
    function = deployed.slow_memory_change(6)
    running = deployed.start("up", "dev", "--yes", name="killed")
    wait_for("the slow update to begin", update_began(deployed, function), running)

    [cli] = [pid for pid in descendants(running.process.pid) if command_name(pid) == "pulumi"]
    os.kill(cli, signal.SIGKILL)
    code, _, err = running.wait()
    assert code not in {0, 130}, err
    assert "Traceback" not in err
    # The error line; the Pulumi SDK's event-stream thread may still print a UserWarning after it.
    [said] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert said.startswith("error: the Pulumi CLI was killed (SIGKILL) before it finished")
    [stale] = list(deployed.locks.rglob("*.json"))

    refused = deployed.driver("up", "dev", "--yes", expect=1)
    said = one_line(refused.stderr)
    assert "is locked by a Pulumi process that no longer runs" in said and stale.name in said
    assert "pending operation(s) from an interrupted update: updating" in said and function in said
    assert "--clear-pending" in said
    assert stale.exists()

    # A live process's lock (this test's pid, this host) is never removed, even by --clear-pending.
    lock = json.loads(stale.read_text())
    live = stale.with_name("0-live.json")
    live.write_text(json.dumps({**lock, "pid": os.getpid(), "hostname": socket.gethostname()}))
    blocked = deployed.driver("up", "dev", "--yes", "--clear-pending", "--lock-retries", "1", expect=1)
    assert "locked by another update" in one_line(blocked.stderr)
    assert live.exists() and not stale.exists()
    live.unlink()

    deployed.cloud.clear_faults()
    deployed.driver("up", "dev", "--yes", "--clear-pending")
    assert pending_operations(deployed) == []
    assert not list(deployed.locks.rglob("*.json"))
    assert newest(deployed.history())["result"] == "succeeded"
