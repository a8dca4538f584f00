"""Defects of `LocalEngine` against the real CLI, each shown by the engine itself (tests/engine/enginekit.py).

Every test here failed before its fix, but test_11_drift_values_of_an_input_diff_are_the_inputs (see
its comment). Most go through the driver's command line (click's CliRunner, in-process), so they test
what a user runs. Skipped without a Pulumi CLI on PATH. The numbers:

1. a self-managed backend records no version: history is numbered here, oldest = 1;
2. `stack history` returns 10 entries unless given a page size;
3. drift remediation must be `up --refresh`;
4. `config set-all --json` needs CLI 3.202: older CLIs are refused;
5. pending operations are cleared by `pulumi refresh --clear-pending-creates`, under the lock;
6. `stack init` must be told the stack file's `secretsprovider`;
7. read-only calls must not write a salt into a stack file that lacks one;
8. the driver's own `stageline:release` write must not make its updates `git.dirty`;
9. a killed CLI's lock is reported, and removed by --clear-pending only when provably stale;
10. a protected replace or delete is a preview step, not an error;
11. nested secret outputs are masked; drift values of input diffs come from the inputs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.engine.enginekit import LOG_GROUP, Project, git, make_project, release, stack_file
from tests.standin.cloud import Cloud
from tests.standin.harness import environment

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(shutil.which("pulumi") is None, reason="needs the Pulumi CLI on PATH"),
    # The SDK warns about the event log a killed CLI left unfinished.
    pytest.mark.filterwarnings("ignore:Error in event stream:UserWarning"),
]


def invoke(project: Path, args: Sequence[str], monkeypatch: pytest.MonkeyPatch) -> Result:
    """`python -m automation ARGS` in-process, from the project directory, with the real engine."""
    import automation.engine.protocol
    from automation.cli import cli

    monkeypatch.chdir(project)
    monkeypatch.setenv("STAGELINE_LOCK_BACKOFF", "0")
    monkeypatch.setattr(
        automation.engine.protocol, "engine_factory", automation.engine.protocol._default_factory
    )
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --- 1, 2: history of a self-managed backend -----------------------------------------------------

RELEASES = ["r1"] * 3 + ["r2"] * 3 + ["r3"] * 3 + ["r4"] * 3  # v1-v3 r1 … v10-v12 r4


@pytest.fixture(scope="module")
def twelve_updates(tmp_path_factory: pytest.TempPathFactory, pulumi_home: Path) -> Iterator[Path]:
    """A project whose stack `dev` has 12 updates, releases r1 to r4 three times each (r4 current).

    Built once; each test gets its own copy (`many_updates`): the backend is in the project.
    """
    if shutil.which("pulumi") is None:
        pytest.skip("needs the Pulumi CLI on PATH")
    base = tmp_path_factory.mktemp("twelve")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment(pulumi_home, base / "cloud").items():
            patch.setenv(key, value)
        for key in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
            patch.delenv(key, raising=False)
        project = make_project(base, resources=False)
        for i, version in enumerate(RELEASES, start=1):
            project.deploy(version, message=f"deploy {version} #{i}")
        project.commit("the salt and r4")
    yield project.root


@pytest.fixture
def many_updates(twelve_updates: Path, tmp_path: Path, engine_env: dict[str, str]) -> Project:
    root = tmp_path / "proj"
    shutil.copytree(twelve_updates, root, symlinks=True)
    return Project(root=root, cloud=Cloud(engine_env["STAGELINE_STANDIN_CLOUD"]))


def test_1_diy_history_is_numbered_oldest_first_newest_listed_first(many_updates: Project) -> None:
    history = many_updates.engine.history("dev")
    assert [r.version for r in history] == list(range(12, 0, -1))
    assert [r.message for r in history] == [
        f"deploy {v} #{i}" for i, v in reversed(list(enumerate(RELEASES, 1)))
    ]
    assert [r.release_version for r in history][:4] == ["r4", "r4", "r4", "r3"]
    # What `up` returns is the entry history then shows, with the same number.
    record = many_updates.deploy("r5")
    assert record.version == 13
    newest = many_updates.fresh_engine().history("dev")[0]
    assert (newest.version, newest.message, newest.start) == (13, record.message, record.start)


def test_2_history_lists_every_entry_not_the_clis_default_page_of_ten(
    many_updates: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(many_updates.engine.history("dev")) == 12
    result = invoke(many_updates.root, ["history", "dev", "--json"], monkeypatch)
    assert result.exit_code == 0, result.output
    assert [u["version"] for u in json.loads(result.stdout)["updates"]] == list(range(12, 0, -1))
    limited = invoke(many_updates.root, ["history", "dev", "--limit", "3", "--json"], monkeypatch)
    assert [u["version"] for u in json.loads(limited.stdout)["updates"]] == [12, 11, 10]


def test_1_rollback_restores_the_previous_release_by_the_numbers_history_prints(
    many_updates: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = many_updates.root
    back = invoke(root, ["rollback", "dev", "--yes", "--json"], monkeypatch)
    assert back.exit_code == 0, back.output
    done = json.loads(back.stdout)
    assert done["plan"]["targetVersion"] == 9 and done["plan"]["release"]["version"] == "r3"
    assert done["update"]["version"] == 13 and done["update"]["release"]["version"] == "r3"
    assert many_updates.engine.get_release("dev") == release("r3")

    # A rollback of that rollback goes on below v9 (r4 is not brought back): r2, from v6.
    again = invoke(root, ["rollback", "dev", "--yes", "--json"], monkeypatch)
    assert again.exit_code == 0, again.output
    plan = json.loads(again.stdout)["plan"]
    assert (plan["targetVersion"], plan["release"]["version"]) == (6, "r2")
    assert plan["message"].startswith("rollback to v6")

    # --to-version takes the numbers `history` prints.
    shown = invoke(root, ["history", "dev", "--json"], monkeypatch)
    first = next(u for u in json.loads(shown.stdout)["updates"] if u["message"] == "deploy r1 #2")
    to = invoke(
        root, ["rollback", "dev", "--to-version", str(first["version"]), "--yes", "--json"], monkeypatch
    )
    assert to.exit_code == 0, to.output
    assert json.loads(to.stdout)["update"]["release"]["version"] == "r1"
    newest = many_updates.fresh_engine().history("dev")[0]
    assert (newest.version, newest.message[: len("rollback to v2")]) == (15, "rollback to v2")


# --- 3: drift remediation ------------------------------------------------------------------------


def test_3_drift_remediate_puts_the_drift_back(
    tmp_path: Path, engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, resources=True)
    project.deploy("r1")
    project.cloud.set_property("enginetest-dev-logs", "retentionInDays", 30)
    assert project.engine.preview_refresh("dev").drifted

    result = invoke(project.root, ["drift", "dev", "--remediate", "--yes", "--json"], monkeypatch)
    assert result.exit_code == 0, result.output
    [remediated] = json.loads(result.stdout)["remediated"]
    assert remediated["update"]["resourceChanges"].get("update") == 1
    [group] = project.cloud.resources(LOG_GROUP)
    assert group.output("retentionInDays") == 7  # put back as the program says
    assert not project.fresh_engine().preview_refresh("dev").drifted


# --- 4: the CLI version ----------------------------------------------------------------------------


def test_4_an_older_cli_is_refused_in_one_line_naming_both_versions(
    tmp_path: Path, engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from automation.engine.local import LocalEngine
    from automation.engine.model import EngineUnavailable

    project = make_project(tmp_path, resources=False)
    bin_dir = tmp_path / "old-cli"
    bin_dir.mkdir()
    old = bin_dir / "pulumi"
    old.write_text(
        f"#!{sys.executable}\nimport sys\nif sys.argv[1:] == ['version']:\n    print('v3.200.0')\n"
    )
    old.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(EngineUnavailable) as raised:
        LocalEngine.open(project.root)
    assert "v3.200.0" in str(raised.value) and "v3.202.0" in str(raised.value)

    result = invoke(project.root, ["history", "dev"], monkeypatch)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the Pulumi CLI on PATH is v3.200.0, older than v3.202.0")

    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"pulumi>=3.202,<4"' in pyproject  # the SDK floor matches: set_all_config_json


# --- 5, 9: a CLI killed mid-update ---------------------------------------------------------------


def test_9_a_killed_update_is_reported_and_clear_pending_removes_only_its_stale_lock(
    tmp_path: Path, engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, resources=True)
    project.deploy("r1")
    project.commit("salt")
    error = project.killed_update()
    assert error is not None and "killed (SIGKILL)" in str(error)
    [lock] = list((project.root / ".stageline" / "state" / ".pulumi" / "locks").rglob("*.json"))

    refused = invoke(project.root, ["up", "dev", "--yes"], monkeypatch)
    assert refused.exit_code == 1
    said = refused.stderr.strip().splitlines()[-1]
    assert "is locked by a Pulumi process that no longer runs" in said and lock.name in said
    assert "pending operation(s) from an interrupted update: creating" in said
    assert "rerun with --clear-pending" in said
    assert lock.exists()  # reporting changes nothing

    # A live process's lock is never removed: this one names the test's own pid.
    live = lock.with_name("0-live.json")
    live.write_text(json.dumps({**json.loads(lock.read_text()), "pid": os.getpid()}))
    blocked = invoke(
        project.root, ["up", "dev", "--yes", "--clear-pending", "--lock-retries", "1"], monkeypatch
    )
    assert blocked.exit_code == 1
    assert live.exists() and not lock.exists()
    assert "locked by another update: file://" in blocked.stderr and "/0-live.json" in blocked.stderr
    assert f"(pid {os.getpid()} on " in blocked.stderr

    live.unlink()
    done = invoke(project.root, ["up", "dev", "--yes", "--clear-pending"], monkeypatch)
    assert done.exit_code == 0, done.output
    assert project.engine.pending_operations("dev") == []
    assert not list((project.root / ".stageline" / "state" / ".pulumi" / "locks").rglob("*.json"))


def test_5_clear_pending_is_a_refresh_under_the_lock_that_leaves_no_pending_operation(
    tmp_path: Path, engine_env: dict[str, str]
) -> None:
    from automation.operate.updates import check_pending

    project = make_project(tmp_path, resources=True)
    project.deploy("r1")
    project.killed_update()
    engine = project.engine
    [pending] = engine.pending_operations("dev")
    assert (pending.kind, pending.name) == ("creating", "extra0")
    check_pending(engine, "dev", clear=True)
    assert engine.pending_operations("dev") == []
    newest = engine.history("dev")[0]
    assert (newest.kind, newest.result) == ("refresh", "succeeded")
    assert engine.up("dev", message="after").succeeded  # the create runs again, nothing in the way


# --- 6: the stack file's secrets provider --------------------------------------------------------


def test_6_a_new_stack_is_initialised_with_the_secrets_provider_its_stack_file_names(
    tmp_path: Path, engine_env: dict[str, str]
) -> None:
    from automation.errors import StagelineError

    project = make_project(tmp_path, resources=False)
    vault = project.root / "Pulumi.vault.yaml"
    vault.write_text("secretsprovider: hashivault://stageline\n" + stack_file("r1"))
    before = vault.read_bytes()
    with pytest.raises(StagelineError, match="hashivault://stageline"):
        project.engine.ensure_stack("vault")  # no Vault here: the CLI's error names the provider
    assert vault.read_bytes() == before  # not re-initialised with a passphrase salt


# --- 7: read-only calls and a stack file without its salt ----------------------------------------


def test_7_read_only_calls_never_write_a_salt_into_a_stack_file_that_lacks_one(
    tmp_path: Path, engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, resources=True)
    project.deploy("r1")
    # As in a fresh clone where the salt was never committed.
    text = project.stack_path.read_text()
    project.stack_path.write_text("".join(ln for ln in text.splitlines(True) if "encryptionsalt" not in ln))
    project.commit("no salt")
    assert project.git_status() == ""

    engine = project.fresh_engine()
    assert not engine.preview("dev").has_changes
    assert not engine.preview_refresh("dev").drifted
    assert engine.history("dev")[0].succeeded
    assert engine.outputs("dev").get("releaseVersion") == "r1"
    assert engine.pending_operations("dev") == []
    for command in (
        ["preview", "dev"],
        ["drift", "dev"],
        ["history", "dev"],
        ["rollback", "dev", "--dry-run"],
    ):
        result = invoke(project.root, command, monkeypatch)
        assert result.exit_code in (0, 1), (command, result.output)
    assert project.git_status() == ""


# --- 8: git.dirty of the driver's own updates -----------------------------------------------------


def test_8_the_drivers_own_release_write_does_not_make_the_update_dirty(
    tmp_path: Path, engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from automation.operate.rollback import prepare

    project = make_project(tmp_path, resources=False)
    project.engine.ensure_stack("dev")  # `stack init` writes the stack's salt, which a user commits
    project.commit("the stack's salt")
    first = project.deploy("r1")
    assert first.environment["git.dirty"] == "false"
    second = project.deploy("r2")  # the driver writes r2 into the tracked stack file, then updates
    assert project.git_status() == "M Pulumi.dev.yaml"
    assert second.environment["git.dirty"] == "false"
    assert project.engine.history("dev")[0].environment["git.dirty"] == "false"
    assert git(project.root, "status", "--porcelain") == "M Pulumi.dev.yaml"  # the real index untouched

    result = invoke(project.root, ["rollback", "dev", "--code", "--yes"], monkeypatch)
    assert result.exit_code == 0, result.output
    assert "uncommitted changes" not in result.stderr

    # Anything else uncommitted still makes the update dirty.
    (project.root / "prog" / "__main__.py").write_text(
        (project.root / "prog" / "__main__.py").read_text() + "\n"
    )
    third = project.deploy("r3")
    assert third.environment["git.dirty"] == "true"
    assert prepare(project.fresh_engine(), "dev", to_version=third.version, code=True).warnings


# --- 10: a protected resource the preview would replace or delete ----------------------------------


def test_10_preview_reports_a_protected_replace_or_delete_as_a_dangerous_step(
    tmp_path: Path, engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = "  enginetest:protectedBucket: enginetest-data-1\n"
    project = make_project(tmp_path, resources=True, extra_config=extra)
    project.deploy("r1")
    text = project.stack_path.read_text()

    project.set_config("enginetest:protectedBucket", "enginetest-data-2")  # a new bucket name: a replace
    summary = project.engine.preview("dev")
    [step] = summary.dangerous
    assert (step.op, step.name, step.protected, step.type) == (
        "replace",
        "data",
        True,
        "aws:s3/bucketV2:BucketV2",
    )
    assert "bucket" in step.changed and summary.counts["replace"] == 1

    # A new logical name: the protected resource would be deleted.
    project.stack_path.write_text(text)
    project.set_config("enginetest:protectedName", "renamed")
    summary = project.fresh_engine().preview("dev")
    assert [(s.op, s.name, s.protected) for s in summary.dangerous] == [("delete", "data", True)]
    assert summary.counts["delete"] == 1 and [s.name for s in summary.by_op("create")] == ["renamed"]

    result = invoke(project.root, ["preview", "dev", "--json"], monkeypatch)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["dangerous"] is True
    assert shown["stacks"][0]["dangerous"] == ["urn:pulumi:dev::enginetest::aws:s3/bucketV2:BucketV2::data"]


# --- 11: nested secrets, drift values ---------------------------------------------------------------
# (The third part, no "cancelled" result: a stopped update is recorded failed, shown by
# tests/engine/test_contract.py::test_an_interrupted_update_is_stopped_cleanly_and_recorded_failed.)


def test_11_a_secret_nested_in_an_object_output_is_never_printed(
    tmp_path: Path, engine_env: dict[str, str]
) -> None:
    project = make_project(tmp_path, resources=False)
    project.deploy("r1")
    outputs = project.engine.outputs("dev")
    printed = json.dumps(outputs.to_json())
    assert "n3sted-s3cret-value" not in printed and "s3cr3t-output-value" not in printed
    assert outputs.to_json()["settings"] == {"plain": "visible", "key": "[secret]"}
    assert outputs.values["settings"]["key"] == "n3sted-s3cret-value"  # still usable by the driver
    assert "n3sted-s3cret-value" in outputs.secret_values()  # and redacted from what steps print


def test_11_drift_values_of_an_input_diff_are_the_inputs(tmp_path: Path, engine_env: dict[str, str]) -> None:
    # The stand-in's outputs repeat its inputs, so this passes either way; the input-vs-output choice
    # itself is tested on the engine's event shape in tests/automation/test_stacks_seam.py.
    project = make_project(tmp_path, resources=True)
    project.deploy("r1")
    project.cloud.set_property("enginetest-dev-logs", "tags.owner", "someone-in-the-console")
    [resource] = project.engine.preview_refresh("dev").resources
    [prop] = resource.properties
    assert (prop.path, prop.kind) == ("tags", "update")
    assert (prop.old, prop.new) == ({"release": "r1"}, {"release": "r1", "owner": "someone-in-the-console"})
