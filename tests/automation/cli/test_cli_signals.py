"""SIGTERM (a CI runner cancelling the job) during an update cancels it and exits 130; during a
parallel drift check it exits 130 too (not 143, the default death by SIGTERM).

The driver runs in a child process with the fake engine installed and a slow `up`; the test sends a real
SIGTERM once the update has started, then reads what the fake recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

CHILD = """
import atexit, json, sys
import automation.engine.protocol
from automation.cli import main
from automation.engine.fake import FakeEngine

report = sys.argv[1]
fake = FakeEngine(("dev",), latency={"up": 30.0}, git_head="a" * 40)
automation.engine.protocol.engine_factory = lambda: fake

def record():
    with open(report, "w") as fh:
        json.dump({"ops": fake.ops("dev"), "results": [r.result for r in fake.history("dev")]}, fh)

atexit.register(record)
sys.argv = ["python -m automation", "up", "dev", "--yes"]
main()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_up_cancels_and_exits_130(tmp_path: Path) -> None:
    report = tmp_path / "fake.json"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(report)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "STAGELINE_LOCK_BACKOFF": "0"},
    )
    assert child.stderr is not None
    for line in child.stderr:  # wait until the update is under way
        if "dev: updating" in line:
            break
    time.sleep(0.2)  # let the child enter the engine call
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=20)

    assert child.returncode == 130
    assert "update of dev interrupted and cancelled" in stderr
    assert "Traceback" not in stderr
    recorded = json.loads(report.read_text())
    assert recorded["ops"][-2:] == ["up", "cancel"]
    assert recorded["results"] == ["failed"]


DRIFT_CHILD = """
import sys
import automation.engine.protocol
from automation.cli import main
from automation.engine.fake import FakeEngine

fake = FakeEngine(("dev", "staging", "prod"), latency={"preview_refresh": 3.0})
automation.engine.protocol.engine_factory = lambda: fake
sys.argv = ["python -m automation", "drift", "--all", "--parallel", "3"]
main()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_a_parallel_drift_check_exits_130_not_143() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", DRIFT_CHILD],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    seen = 0
    for line in child.stderr:  # wait until every check is under way
        seen += "checking for drift" in line
        if seen == 3:
            break
    time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=20)
    assert child.returncode == 130
    assert "error: interrupted; nothing was changed" in stderr.splitlines()
    assert "Traceback" not in stderr
