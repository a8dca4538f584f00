"""The real seam (`LocalEngine` over pulumi.automation) end to end, with a stub `pulumi` on PATH.

No Pulumi CLI can be installed here, so a small script answers the CLI calls the SDK makes (`version`,
`stack select`, `config --json`, `refresh --preview-only --event-log FILE`, `stack history --json`) the
way Pulumi 3.200 does: engine events as JSON lines in the event log. That exercises everything between
the driver and the CLI — workspace setup, backend choice, event parsing, error translation, redaction —
though not Pulumi itself (tests/engine/ does that where the CLI exists).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from automation.engine.fake import urn
from automation.engine.local import LocalEngine
from automation.errors import Interrupted
from automation.operate.updates import RetryPolicy, run_update

STUB = r"""#!{python}
import json, os, sys

args = [a for a in sys.argv[1:] if a != "--non-interactive"]
mode = os.environ.get("STUB_MODE", "")
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(" ".join(args) + "\n")

def fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(255)

if args[:1] == ["version"]:
    print("v3.202.0")
elif args[:2] == ["stack", "select"]:
    if mode == "unreadable":
        fail("error: failed to load checkpoint: blob (key \".pulumi/stacks/stageline/dev.json\") "
             "(code=Unknown): AccessDenied: Access Denied")
    if mode == "missing":
        fail("error: no stack named 'dev' found")
elif args[:2] == ["stack", "init"]:
    pass
elif args[:2] == ["stack", "export"]:
    print(json.dumps({{"version": 3, "deployment": {{}}}}))
elif args[:1] == ["cancel"]:
    pass
elif args[:2] == ["stack", "output"]:
    print("{{}}")
elif args[:1] == ["up"]:
    import signal, time
    log_file = args[args.index("--event-log") + 1]
    def emit(*events):
        with open(log_file, "a") as fh:
            for event in events:
                fh.write(json.dumps(event) + "\n")
    emit({{"sequence": 1, "timestamp": 1, "preludeEvent": {{"config": {{}}}}}})
    if mode == "ok-up":
        emit({{"sequence": 2, "timestamp": 2, "cancelEvent": {{}}}})
        print("Updating (dev)")
        sys.exit(0)
    if mode == "fail-up":
        emit({{"sequence": 2, "timestamp": 2, "diagnosticEvent": {{
                 "urn": "{urn}", "severity": "error", "color": "raw",
                 "message": "<{{%fg 1%}}>error: <{{%reset%}}>creating Lambda Function: "
                            "AccessDeniedException: not allowed to read opaque-secret-value-123\n"}}}},
             {{"sequence": 3, "timestamp": 3, "cancelEvent": {{}}}})
        print("Updating (dev)")
        fail("error: update failed")
    interrupts = []
    def on_sigint(signum, frame):
        interrupts.append(signum)
        with open(os.environ["STUB_LOG"], "a") as log:
            log.write("SIGINT received\n")
        if mode == "slow-up" or len(interrupts) > 1:
            time.sleep(0.3)  # in-flight operations finish
            emit({{"sequence": 9, "timestamp": 9, "cancelEvent": {{}}}})
            fail("error: update canceled")
    signal.signal(signal.SIGINT, on_sigint)
    open(os.environ["STUB_LOG"] + ".started", "w").close()
    for _ in range(300):
        time.sleep(0.1)
    fail("error: the stub was never interrupted")
elif args[:1] == ["preview"]:
    # `up` previews first (its gates): one lambda update, then the stream ends.
    log_file = args[args.index("--event-log") + 1]
    with open(log_file, "a") as fh:
        summary = {{"maybeCorrupt": False, "durationSeconds": 1,
                   "resourceChanges": {{"update": 1, "same": 9}}, "PolicyPacks": {{}}}}
        fh.write(json.dumps({{"sequence": 1, "timestamp": 1, "summaryEvent": summary}}) + "\n")
        fh.write(json.dumps({{"sequence": 2, "timestamp": 2, "cancelEvent": {{}}}}) + "\n")
    print("Previewing update (dev)")
elif args[:1] == ["config"]:
    print(json.dumps({{"stageline:dbPassword": {{"value": "opaque-secret-value-123", "secret": True}},
                      "aws:region": {{"value": "eu-west-1", "secret": False}}}}))
elif args[:2] == ["refresh", "--preview-only"]:
    log_file = args[args.index("--event-log") + 1]
    if mode == "locked":
        # Close the event stream, or the SDK waits 5 s for it after every failed attempt.
        with open(log_file, "a") as fh:
            fh.write(json.dumps({{"sequence": 1, "timestamp": 1, "cancelEvent": {{}}}}) + "\n")
        fail("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) "
             "to end or delete the lock file with `pulumi cancel`.")
    fn = "aws:lambda/function:Function"
    urn = "{urn}"
    old = {{"urn": urn, "type": fn, "outputs": {{"memorySize": 1024, "environment": {{"variables": {{
        "DB_PASSWORD": "opaque-secret-value-123", "LOG_LEVEL": "warning"}}}}}}}}
    new = {{"urn": urn, "type": fn, "outputs": {{"memorySize": 512, "environment": {{"variables": {{
        "DB_PASSWORD": "rotated-by-hand", "LOG_LEVEL": "warning"}}}}}}}}
    events = [
        {{"sequence": 1, "timestamp": 1, "resourcePreEvent": {{"metadata": {{
            "op": "update", "urn": urn, "type": fn, "provider": "", "old": old, "new": new,
            "detailedDiff": {{"memorySize": {{"diffKind": "update"}},
                             "environment.variables.DB_PASSWORD": {{"diffKind": "update"}}}}}}}}}},
        {{"sequence": 2, "timestamp": 2, "summaryEvent": {{"maybeCorrupt": False, "durationSeconds": 1,
            "resourceChanges": {{"update": 1, "same": 9}}, "PolicyPacks": {{}}}}}},
        {{"sequence": 3, "timestamp": 3, "cancelEvent": {{}}}},
    ]
    with open(log_file, "a") as fh:
        for event in events:
            fh.write(json.dumps(event) + "\n")
    print("Previewing refresh (dev)")
elif args[:2] == ["stack", "history"]:
    print(json.dumps([
        {{"version": 2, "kind": "update", "result": "failed", "message": "up dev @bbbbbbb",
         "startTime": "2025-06-02T10:00:00.000Z", "endTime": "2025-06-02T10:01:00.000Z",
         "environment": {{"git.head": "b" * 40}}, "config": {{}}, "resourceChanges": {{"update": 1}}}},
        {{"version": 1, "kind": "update", "result": "succeeded", "message": "up dev @aaaaaaa",
         "startTime": "2025-06-01T10:00:00.000Z", "endTime": "2025-06-01T10:02:30.000Z",
         "environment": {{"git.head": "a" * 40}},
         "config": {{"stageline:release": {{"value": json.dumps({{"version": "r1", "images": {{}}}}),
                                           "secret": False}},
                    "stageline:dbPassword": {{"secret": True}}}},
         "resourceChanges": {{"create": 10}}}},
    ]))
"""

FN = "aws:lambda/function:Function"
API = urn("dev", FN, "dev-api")


@pytest.fixture
def stub_cli(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(STUB.format(python=sys.executable, urn=API))
    pulumi.chmod(0o755)
    log = tmp_path / "calls.log"
    # The secret the stub's `config` answers with is a `secure:` value here, as it is for the real CLI.
    (repo / "Pulumi.dev.yaml").write_text(
        "config:\n  aws:region: eu-west-1\n  stageline:dbPassword:\n    secure: v1:c3R1Yg==\n"
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:{'/usr/bin:/bin'}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the CLI-version cache, per test
    monkeypatch.setenv("STUB_LOG", str(log))
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.chdir(repo)
    return log


def test_drift_through_the_sdk_reports_properties_and_redacts_secret_config(
    stub_cli: Path, repo: Path, invoke: Callable[..., Result]
) -> None:
    result = invoke(["drift", "dev", "--json"])
    assert result.exit_code == 3, result.stderr
    state = (repo / ".stageline" / "state").as_uri()
    assert (
        f"state backend: {state} (default, local; secrets: empty passphrase (local backend))" in result.stderr
    )
    [resource] = json.loads(result.stdout)["stacks"][0]["resources"]
    assert resource["urn"] == API and resource["type"] == FN
    assert resource["properties"] == [
        {
            "path": "environment.variables.DB_PASSWORD",
            "kind": "update",
            "old": "[secret]",
            "new": "[secret]",  # the cloud's value of a secret is a secret too
        },
        {"path": "memorySize", "kind": "update", "old": 1024, "new": 512},
    ]
    assert "opaque-secret-value-123" not in result.output
    assert "rotated-by-hand" not in result.output
    calls = stub_cli.read_text()
    assert "refresh --preview-only" in calls  # preview-only: state is never written
    assert "\nrefresh --yes" not in calls and " up " not in calls
    assert (repo / ".stageline" / "state").is_dir()


def test_history_through_the_sdk(stub_cli: Path, invoke: Callable[..., Result]) -> None:
    result = invoke(["history", "dev", "--json"])
    assert result.exit_code == 0, result.stderr
    updates = json.loads(result.stdout)["updates"]
    assert [(u["version"], u["result"], u["commit"]) for u in updates] == [
        (2, "failed", "b" * 40),
        (1, "succeeded", "a" * 40),
    ]
    assert updates[1]["release"] == {"version": "r1", "images": {}}
    assert updates[1]["durationSeconds"] == 150


def test_an_unreadable_backend_is_a_one_line_usage_error(
    stub_cli: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "unreadable")
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://team-state")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "from-the-environment")
    result = invoke(["drift", "dev"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "error: cannot open the stack in s3://team-state: failed to load checkpoint: blob (key "
        '".pulumi/stacks/stageline/dev.json") (code=Unknown): AccessDenied: Access Denied'
    )


def test_a_shared_backend_without_a_secrets_provider_is_refused(
    stub_cli: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://team-state")
    result = invoke(["history", "dev"])
    assert result.exit_code == 2
    assert "needs a secrets provider: set PULUMI_CONFIG_PASSPHRASE" in result.stderr
    assert not stub_cli.exists()  # refused before running the CLI at all


def test_a_locked_stack_is_retried_then_reported(
    stub_cli: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "locked")
    result = invoke(["drift", "dev", "--lock-retries", "2"])
    assert result.exit_code == 1
    assert "dev: check failed: dev is still locked by another update after 2 attempts" in result.stdout
    assert stub_cli.read_text().count("refresh --preview-only") == 2


def test_read_only_commands_never_create_a_stack_that_is_not_deployed(
    stub_cli: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "missing")
    for command in (
        ["drift", "dev"],
        ["history", "dev"],
        ["preview", "dev"],
        ["rollback", "dev", "--dry-run"],
    ):
        result = invoke(command)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.splitlines()[-1] == (
            "error: stack dev is not deployed yet (run `python -m automation up dev`); "
            "read-only commands never create it"
        )
    assert "stack init" not in stub_cli.read_text()  # no init, so no encryptionsalt written anywhere


def test_a_resource_failure_is_reported_with_the_engines_diagnostic_redacted(
    stub_cli: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "fail-up")
    result = invoke(["up", "dev", "--yes"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: dev-api: creating Lambda Function: AccessDeniedException: not allowed to read [secret]"
    )


def test_up_does_not_ask_the_engine_to_decrypt_the_config_it_records(
    stub_cli: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "ok-up")
    result = invoke(["up", "dev", "--yes", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["update"]["version"] == 2
    [summary_call] = [ln for ln in stub_cli.read_text().splitlines() if ln.startswith("stack history")]
    assert "--show-secrets" not in summary_call


def _terminate_once_started(log: Path) -> threading.Thread:
    """SIGTERM to this process once the stub's `up` is running (as a CI runner cancelling the job)."""

    def wait_then_signal() -> None:
        started = Path(str(log) + ".started")
        deadline = time.monotonic() + 20
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=wait_then_signal, daemon=True)
    thread.start()
    return thread


def _engine_in(repo: Path) -> LocalEngine:
    return LocalEngine.open(repo, dict(os.environ))


def test_sigterm_during_up_stops_our_cli_cleanly_and_never_runs_pulumi_cancel(
    stub_cli: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "slow-up")
    engine = _engine_in(repo)
    _terminate_once_started(stub_cli)
    began = time.monotonic()
    with pytest.raises(Interrupted, match="update of dev interrupted"):
        run_update(engine, "dev", message="m", policy=RetryPolicy(tries=1))
    assert time.monotonic() - began < 15
    calls = stub_cli.read_text().splitlines()
    assert calls.count("SIGINT received") == 1  # passed on once: a clean stop, not "terminate now"
    assert not any(c.startswith("cancel") for c in calls)  # a file:// backend: never `pulumi cancel`


def test_a_cli_that_will_not_stop_is_stopped_at_once_then_cancelled_on_pulumi_cloud(
    stub_cli: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_MODE", "stubborn")  # ignores the first SIGINT, as a long in-flight operation
    monkeypatch.setenv("PULUMI_BACKEND_URL", "https://api.pulumi.com")
    engine = _engine_in(repo)
    engine.stop_timeout, engine.kill_timeout = 0.5, 5.0
    _terminate_once_started(stub_cli)
    with pytest.raises(Interrupted):
        run_update(engine, "dev", message="m", policy=RetryPolicy(tries=1))
    calls = stub_cli.read_text().splitlines()
    assert calls.count("SIGINT received") == 2
    # Our CLI is gone and our update had started: only now may the service be told to cancel it.
    assert calls[-1].startswith("cancel")
    assert calls.index("SIGINT received") < len(calls) - 1


# --- the CLI calls a read-only command costs --------------------------------------------------------


def cli_calls(log: Path, verb: str) -> int:
    return sum(1 for line in log.read_text().splitlines() if line.startswith(verb))


def test_the_cli_version_is_asked_once_per_cli_build(
    stub_cli: Path, invoke: Callable[..., Result], tmp_path: Path
) -> None:
    assert invoke(["history", "dev"]).exit_code == 0
    assert invoke(["history", "dev"]).exit_code == 0
    assert cli_calls(stub_cli, "version") == 1
    cache = json.loads((tmp_path / "cache" / "stageline" / "cli-versions.json").read_text())
    assert list(cache.values()) == ["v3.202.0"]

    pulumi = tmp_path / "bin" / "pulumi"
    pulumi.write_text(pulumi.read_text().replace('print("v3.202.0")', 'print("v3.274.1")'))  # an upgrade
    assert invoke(["history", "dev"]).exit_code == 0
    assert cli_calls(stub_cli, "version") == 2
    cache = json.loads((tmp_path / "cache" / "stageline" / "cli-versions.json").read_text())
    assert list(cache.values()) == ["v3.274.1"]  # the replaced build's entry is gone with it


def test_a_cached_old_cli_version_is_still_refused(
    stub_cli: Path, invoke: Callable[..., Result], tmp_path: Path
) -> None:
    pulumi = tmp_path / "bin" / "pulumi"
    pulumi.write_text(pulumi.read_text().replace('print("v3.202.0")', 'print("v3.200.0")'))
    for _ in range(2):
        result = invoke(["history", "dev"])
        assert result.exit_code == 2
        assert result.stderr.splitlines()[-1].startswith(
            "error: the Pulumi CLI on PATH is v3.200.0, older than v3.202.0"
        )
    assert cli_calls(stub_cli, "version") == 1


def test_a_deployed_stack_on_a_self_managed_backend_is_not_selected_through_the_cli(
    stub_cli: Path, invoke: Callable[..., Result], repo: Path
) -> None:
    assert invoke(["history", "dev"]).exit_code == 0
    assert cli_calls(stub_cli, "stack select") == 1  # no checkpoint: the CLI is asked

    checkpoint = repo / ".stageline" / "state" / ".pulumi" / "stacks" / "stageline" / "dev.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{}")
    assert invoke(["history", "dev"]).exit_code == 0
    assert cli_calls(stub_cli, "stack select") == 1  # the checkpoint answers it
    assert cli_calls(stub_cli, "stack history") == 2


def test_the_config_is_decrypted_only_when_the_stack_file_can_hold_a_secret(
    stub_cli: Path, invoke: Callable[..., Result], repo: Path
) -> None:
    assert invoke(["drift", "dev"]).exit_code == 3
    assert cli_calls(stub_cli, "config") == 1

    (repo / "Pulumi.dev.yaml").write_text("config:\n  aws:region: eu-west-1\n")
    assert invoke(["drift", "dev"]).exit_code == 3
    assert cli_calls(stub_cli, "config") == 1  # no secure value, no ESC environment: no call


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"config": {"aws:region": "eu-west-1", "stageline:x": {"a": [1, "b"]}}}, False),
        ({"config": {"stageline:db": {"secure": "v1:abc"}}}, True),
        ({"config": {"stageline:x": {"nested": [{"secure": "v1:abc"}]}}}, True),
        ({"environment": ["team/prod"], "config": {}}, True),
        ({}, False),
        (None, True),  # unreadable: assume it may
        ("not a mapping", True),
    ],
)
def test_may_hold_secrets(document: object, expected: bool) -> None:
    from automation.engine.local import may_hold_secrets

    assert may_hold_secrets(document) is expected
