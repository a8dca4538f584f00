"""Custom pre/post steps and scripts/smoke.py, the step the stack files run.

Steps are real subprocesses with the stack outputs in their environment; smoke checks hit a local
HTTP server.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from promote_testkit import Stub, healthy_routes, http_stub, stage_outputs

from automation.promote.steps import env_name, failure, run_steps, step_env

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def stub() -> Iterator[Stub]:
    with http_stub() as server:
        yield server


def _py(code: str) -> str:
    return f"python -c {json.dumps(code)}"


def test_output_names_become_stageline_upper_snake_variables() -> None:
    assert env_name("apiUrl") == "STAGELINE_API_URL"
    assert env_name("healthPaths") == "STAGELINE_HEALTH_PATHS"
    assert env_name("ecrRepositoryUrl") == "STAGELINE_ECR_REPOSITORY_URL"
    env = step_env(
        "staging",
        {"apiUrl": "https://api", "healthPaths": {"api": "/h"}, "alarmNames": ["a"]},
        base={"PATH": "/bin"},
    )
    assert env == {
        "PATH": "/bin",
        "STAGELINE_API_URL": "https://api",
        "STAGELINE_HEALTH_PATHS": '{"api": "/h"}',
        "STAGELINE_ALARM_NAMES": '["a"]',
        "STAGELINE_STACK": "staging",
    }


def test_a_step_sees_the_outputs_and_its_output_tail_is_kept(tmp_path: Path) -> None:
    code = (
        "import os; print(os.environ['STAGELINE_STACK'], os.environ['STAGELINE_API_URL']); print(os.getcwd())"
    )
    echoed: list[str] = []
    results = run_steps(
        [_py(code)],
        phase="pre",
        stack="staging",
        outputs={"apiUrl": "https://x.example"},
        cwd=tmp_path,
        echo=echoed.append,
    )
    assert [(r.ok, r.exit_code, r.error) for r in results] == [(True, 0, None)]
    assert results[0].tail == f"staging https://x.example\n{tmp_path}"
    assert echoed[0] == f"staging: pre step: {_py(code)}"
    assert "  | staging https://x.example" in echoed


def test_python_means_the_drivers_own_interpreter(tmp_path: Path) -> None:
    results = run_steps(
        [_py("import sys; print(sys.executable)")], phase="post", stack="dev", outputs={}, cwd=tmp_path
    )
    assert results[0].tail == sys.executable


def test_the_first_failing_step_stops_the_list_and_names_its_last_line(tmp_path: Path) -> None:
    steps = [
        _py("print('ok')"),
        _py("import sys; print('schema v3 is missing column x'); sys.exit(3)"),
        _py("open('ran', 'w')"),
    ]
    results = run_steps(steps, phase="pre", stack="dev", outputs={}, cwd=tmp_path)
    assert [r.ok for r in results] == [True, False]
    assert results[1].error == "exited with 3: schema v3 is missing column x"
    assert not (tmp_path / "ran").exists()
    assert failure(results) == f"pre step `{steps[1]}` exited with 3: schema v3 is missing column x"


def test_secret_outputs_are_masked_in_the_kept_output(tmp_path: Path) -> None:
    code = "import os; print('token is', os.environ['STAGELINE_DB_PASSWORD'])"
    results = run_steps(
        [_py(code)],
        phase="post",
        stack="dev",
        outputs={"dbPassword": "hunter2-very-secret"},
        cwd=tmp_path,
        secrets=["hunter2-very-secret"],
    )
    assert results[0].tail == "token is [secret]"


def test_steps_get_no_driver_credentials_and_their_values_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state passphrase, the Pulumi token and the webhook stay with the driver; AWS credentials
    (migrations need them) go to the step."""
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("correct horse battery staple\n")
    secrets = {
        "PULUMI_CONFIG_PASSPHRASE": "state-passphrase-0451",
        "PULUMI_ACCESS_TOKEN": "pulumi-token-7f3a9c",
        "GITHUB_TOKEN": "github_pat_11AAAA0000",
        "TEAM_CHAT_HOOK": "http://chat.internal/hooks/a1b2c3d4e5",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(passphrase_file))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    # The step lists what it sees, then prints the secrets it got hold of some other way.
    code = (
        "import os, sys; "
        "print(sorted(k for k in os.environ "
        "if k.startswith(('PULUMI', 'GITHUB_TOKEN', 'TEAM_', 'AWS_ACCESS')))); "
        f"print(open({str(passphrase_file)!r}).read().strip()); print(*sys.argv[1:])"
    )
    command = f"{_py(code)} {' '.join(secrets.values())}"
    results = run_steps(
        [command], phase="pre", stack="dev", outputs={}, cwd=tmp_path, withhold=["TEAM_CHAT_HOOK"]
    )
    assert results[0].ok, results[0].error
    assert results[0].tail.splitlines() == [
        "['AWS_ACCESS_KEY_ID']",
        "[secret]",
        "[secret] [secret] [secret] [secret]",
    ]
    env = step_env("dev", {}, base=dict(secrets, PATH="/bin"), withhold=["TEAM_CHAT_HOOK"])
    assert env == {"PATH": "/bin", "STAGELINE_STACK": "dev"}


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("no-such-command-stageline --x", "command not found: no-such-command-stageline"),
        ("python -c 'unbalanced", "cannot parse the command: No closing quotation"),
    ],
)
def test_a_step_that_cannot_start_fails_with_one_line(tmp_path: Path, command: str, error: str) -> None:
    results = run_steps([command], phase="pre", stack="dev", outputs={}, cwd=tmp_path)
    assert results[0].ok is False
    assert results[0].error == error


def test_a_step_that_outlives_its_timeout_is_stopped(tmp_path: Path) -> None:
    results = run_steps(
        [_py("import time; print('waiting', flush=True); time.sleep(60)")],
        phase="post",
        stack="dev",
        outputs={},
        cwd=tmp_path,
        timeout=0.5,
    )
    assert results[0].ok is False
    assert results[0].error == "timed out after 0.5 s"
    assert results[0].tail == "waiting"


# --- scripts/smoke.py ---------------------------------------------------------------------------------


def _smoke(args: str, outputs: dict[str, object], stack: str, cwd: Path = ROOT) -> tuple[bool, str]:
    results = run_steps(
        [f"python {ROOT / 'scripts' / 'smoke.py'} {args}".strip()],
        phase="post",
        stack=stack,
        outputs=outputs,
        cwd=cwd,
    )
    return results[0].ok, results[0].tail if results[0].ok else (results[0].error or "")


def test_smoke_passes_when_every_health_path_answers(stub: Stub) -> None:
    stub.routes.update(healthy_routes("dev"))
    assert _smoke("", stage_outputs("dev", stub.url), "dev") == (True, "ok: dev: 2 endpoint(s) healthy")
    assert stub.hits("/dev-test/") == 0


def test_smoke_with_frontend_also_checks_the_test_domain(stub: Stub) -> None:
    stub.routes.update(healthy_routes("staging"))
    assert _smoke("--frontend", stage_outputs("staging", stub.url), "staging") == (
        True,
        "ok: staging: 3 endpoint(s) healthy",
    )
    assert stub.hits("/staging-test/") == 1


def test_smoke_fails_with_one_line_naming_the_endpoint(stub: Stub) -> None:
    stub.routes.update(healthy_routes("dev"))
    stub.routes["/dev/jobs/health"] = 503
    ok, error = _smoke("--attempts 1", stage_outputs("dev", stub.url), "dev")
    assert not ok
    assert error == f"exited with 1: smoke: {stub.url}/dev/jobs/health: HTTP 503 after 1 attempt(s)"


def test_smoke_without_the_outputs_is_a_usage_error() -> None:
    ok, error = _smoke("", {}, "dev")
    assert (ok, error) == (
        False,
        "exited with 2: smoke: STAGELINE_API_URL is not set (run this as a promotion "
        "step, which sets the stack's outputs)",
    )


def test_smoke_config_only_validates_the_stack_file(tmp_path: Path) -> None:
    assert _smoke("--config-only", {}, "staging") == (True, "ok: Pulumi.staging.yaml is valid")
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    text = (ROOT / "Pulumi.staging.yaml").read_text().replace("bakeSeconds: 300", "bakeSeconds: soon")
    (tmp_path / "Pulumi.qa.yaml").write_text(text)
    shutil.copy(ROOT / "Pulumi.dev.yaml", tmp_path / "Pulumi.dev.yaml")  # qa's promotion source
    ok, error = _smoke("--config-only", {}, "qa", cwd=tmp_path)
    assert not ok
    assert error == (
        "exited with 1: smoke: Pulumi.qa.yaml: stageline:promotion.bakeSeconds must be a whole "
        'number, got "soon"'
    )
