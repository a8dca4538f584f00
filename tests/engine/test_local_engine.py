"""The real seam against a real Pulumi CLI: a throwaway project, a file:// backend, no cloud.

Skipped when `pulumi` is not on PATH (as on the development machines for this project, which cannot
download it). The program has no resources, so no provider plugin is needed; the pending-operations
test uses the stand-in provider (tests/engine/enginekit.py) to have an operation to interrupt.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.standin.harness import git

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(shutil.which("pulumi") is None, reason="needs the Pulumi CLI on PATH"),
]

PROGRAM = """
import pulumi

cfg = pulumi.Config("stageline")
release = cfg.get_object("release") or {}
pulumi.export("releaseVersion", release.get("version"))
pulumi.export("token", pulumi.Output.secret("s3cr3t-output-value"))
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine_env: dict[str, str]) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    venv = Path(sys.prefix)
    (root / "Pulumi.yaml").write_text(
        f"name: enginetest\nruntime:\n  name: python\n  options:\n    virtualenv: {venv}\nmain: prog/\n"
    )
    (root / "prog").mkdir()
    (root / "prog" / "__main__.py").write_text(PROGRAM)
    (root / "Pulumi.dev.yaml").write_text(
        "config:\n  stageline:release:\n    version: r1\n    images:\n      api: sha256:" + "a" * 64 + "\n"
    )
    (root / ".gitignore").write_text(".stageline/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "init")
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    return root


def test_up_history_outputs_and_release_round_trip(project: Path) -> None:
    from automation.engine.local import LocalEngine

    engine = LocalEngine.open(project)
    assert engine.backend().url == (project / ".stageline" / "state").as_uri()
    assert engine.stack_names() == ["dev"]
    engine.ensure_stack("dev")

    head = git(project, "rev-parse", "HEAD")
    record = engine.up("dev", message=f"up dev @{head[:7]}")
    assert record.succeeded and record.version == 1
    assert record.commit == head
    assert record.release_version == "r1"

    outputs = engine.outputs("dev")
    assert outputs.get("releaseVersion") == "r1"
    assert outputs.to_json()["token"] == "[secret]"

    engine.set_release("dev", {"version": "r2", "images": {"api": "sha256:" + "b" * 64}})
    assert "version: r2" in (project / "Pulumi.dev.yaml").read_text()  # a YAML object, not a JSON string
    assert engine.get_release("dev") == {"version": "r2", "images": {"api": "sha256:" + "b" * 64}}
    engine.up("dev", message="second")
    history = engine.history("dev")
    assert [r.version for r in history] == [2, 1]
    assert history[0].release_version == "r2"


def direct_stack(project: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """The same stack through the SDK directly, to inspect state behind the seam's back."""
    import pulumi.automation as auto

    monkeypatch.setenv("PULUMI_BACKEND_URL", (project / ".stageline" / "state").as_uri())
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "")
    return auto.select_stack("dev", work_dir=str(project))


def test_preview_refresh_of_a_clean_stack_reports_no_drift_and_writes_no_state(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from automation.engine.local import LocalEngine

    engine = LocalEngine.open(project)
    engine.up("dev", message="first")
    stack = direct_stack(project, monkeypatch)
    before = stack.export_stack().deployment  # type: ignore[attr-defined]
    report = engine.preview_refresh("dev")
    assert not report.drifted and report.resources == ()
    assert stack.export_stack().deployment == before  # type: ignore[attr-defined]
    assert engine.preview("dev").has_changes is False


@pytest.mark.filterwarnings("ignore:Error in event stream:UserWarning")  # the killed CLI's event log
def test_pending_operations_are_read_and_cleared(tmp_path: Path, engine_env: dict[str, str]) -> None:
    """Real pending operations: the CLI is killed (SIGKILL) while a stand-in create is slow.

    (An imported state cannot carry them: `pulumi stack import` drops every pending operation.)
    """
    from tests.engine.enginekit import make_project

    project = make_project(tmp_path, resources=True)
    project.deploy("r1")
    project.killed_update()
    engine = project.engine
    [pending] = engine.pending_operations("dev")
    assert (pending.kind, pending.type, pending.name) == (
        "creating",
        "aws:cloudwatch/logGroup:LogGroup",
        "extra0",
    )
    [lock] = engine.locks("dev")
    assert lock.stale  # the killed CLI's; clearing needs the lock
    assert engine.remove_stale_locks("dev") == [lock]
    assert engine.clear_pending("dev") == 1
    assert engine.pending_operations("dev") == []


def test_reading_a_stack_not_deployed_yet_creates_nothing(project: Path) -> None:
    from automation.engine.local import LocalEngine
    from automation.engine.model import StackNotDeployed

    engine = LocalEngine.open(project)
    before = (project / "Pulumi.dev.yaml").read_bytes()
    for read in (engine.history, engine.preview_refresh, engine.preview):
        with pytest.raises(StackNotDeployed, match="stack dev is not deployed yet"):
            read("dev")
    # No `stack init` ran, so the passphrase provider wrote no encryptionsalt into the tracked file.
    assert (project / "Pulumi.dev.yaml").read_bytes() == before
