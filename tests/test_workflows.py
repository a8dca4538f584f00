"""The workflows users run call the driver with arguments it accepts.

A workflow only runs on GitHub, so a renamed option would first show up as a red job in a
user's repository. Every `python -m automation …` invocation in .github/workflows is parsed here
with the real click command (nothing runs): shell variables stand for a stack name, and an
`args` array contributes every element it may hold.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from automation.cli import cli

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / ".github" / "workflows").glob("*.yml"))
_ARRAY = re.compile(r"args\+?=\((.*)\)")
# What the workflows' shell variables hold; anything else is a stack name.
_SAMPLES = {"$TO_VERSION": "7", "$RELEASE": "4f9c2d1"}


def _sample(token: str) -> str:
    if not token.startswith("$"):
        return token
    return _SAMPLES.get(token, "dev")


def _invocations(script: str) -> list[list[str]]:
    array: list[str] = []
    for match in _ARRAY.finditer(script):
        array += [_sample(a) for a in shlex.split(match.group(1))]
    calls = []
    for line in script.splitlines():
        if "-m automation" not in line:
            continue
        tokens = shlex.split(line.split("-m automation", 1)[1].split(">", 1)[0])
        args: list[str] = []
        for token in tokens:
            if token == "${args[@]}":
                args += array
            else:
                args.append(token)
        calls.append([_sample(a) for a in args])
    return calls


def _all_invocations() -> list[tuple[str, list[str]]]:
    found = []
    for path in WORKFLOWS:
        document = yaml.safe_load(path.read_text())
        for job in document.get("jobs", {}).values():
            for step in job.get("steps", []):
                for call in _invocations(step.get("run", "")):
                    found.append((path.name, call))
    return found


INVOCATIONS = _all_invocations()


def test_the_workflows_call_the_driver() -> None:
    commands = {args[0] for _, args in INVOCATIONS}
    assert {"build", "check", "parity", "preview", "promote", "drift", "rollback"} <= commands


@pytest.mark.parametrize(("workflow", "args"), INVOCATIONS, ids=[f"{w}:{a[0]}" for w, a in INVOCATIONS])
def test_every_driver_invocation_parses(workflow: str, args: list[str]) -> None:
    name, rest = args[0], args[1:]
    # The group's own settings: click caches a command's help option from the first context it sees.
    ctx = click.Context(cli, info_name="python -m automation", **cli.context_settings)
    command = cli.get_command(ctx, name)
    assert command is not None, f"{workflow}: unknown command {name!r}"
    with command.make_context(name, list(rest), parent=ctx):  # raises UsageError on a bad option
        pass


# --- trust boundaries: which jobs get which secrets, environments and tokens ----------------------

DOCUMENTS = {path.name: yaml.safe_load(path.read_text()) for path in WORKFLOWS}
TEXTS = {path.name: path.read_text() for path in WORKFLOWS}
_SECRET = re.compile(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)")
_SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def _on(document: dict[str, object]) -> dict[str, object]:
    # PyYAML reads the key `on` as True.
    triggers = document.get("on", document.get(True))  # type: ignore[call-overload]
    return triggers if isinstance(triggers, dict) else {}


def _jobs() -> list[tuple[str, str, dict[str, object]]]:
    return [(name, job_id, job) for name, doc in DOCUMENTS.items() for job_id, job in doc["jobs"].items()]


def _secrets(job: dict[str, object]) -> set[str]:
    return set(_SECRET.findall(yaml.safe_dump(job)))


def test_no_workflow_uses_a_repository_passphrase_or_a_piped_installer() -> None:
    for name, text in TEXTS.items():
        assert "PULUMI_CONFIG_PASSPHRASE" not in text, name
        assert "curl" not in text and "get.pulumi.com" not in text, name


def test_id_token_write_is_granted_only_at_job_level() -> None:
    for name, doc in DOCUMENTS.items():
        assert "id-token" not in (doc.get("permissions") or {}), name


def test_every_action_is_pinned_to_a_commit() -> None:
    for name, _job_id, job in _jobs():
        for step in job.get("steps", []):  # type: ignore[attr-defined]
            if "uses" in step:
                assert _SHA_PIN.match(step["uses"]), (name, step["uses"])


def test_pull_request_jobs_reference_no_environment_no_secret_and_only_devs_preview_role() -> None:
    pr_workflows = [n for n, d in DOCUMENTS.items() if "pull_request" in _on(d)]
    assert sorted(pr_workflows) == ["checks.yml", "preview.yml"]
    for name in pr_workflows:
        for job_id, job in DOCUMENTS[name]["jobs"].items():
            assert "environment" not in job, (name, job_id)
            assert _secrets(job) == set(), (name, job_id)
    text = TEXTS["preview.yml"]
    assert re.findall(r"vars\.(PREVIEW_ROLE_ARN_\w+)", text) == ["PREVIEW_ROLE_ARN_DEV"]
    assert "staging" not in yaml.safe_dump(DOCUMENTS["preview.yml"]["jobs"])
    assert "prod" not in yaml.safe_dump(DOCUMENTS["preview.yml"]["jobs"])


def test_only_reviewed_environments_jobs_get_the_github_token() -> None:
    holders = {
        (name, job_id, str(job.get("environment")))
        for name, job_id, job in _jobs()
        if "STAGELINE_GITHUB_TOKEN" in _secrets(job)
    }
    # rollback: the secret of the chosen stack's environment, which exists on staging and prod only.
    assert holders == {
        ("promote.yml", "staging", "staging"),
        ("promote.yml", "prod", "prod"),
        ("rollback.yml", "rollback", "${{ inputs.stack }}"),
    }
    dev = DOCUMENTS["promote.yml"]["jobs"]["dev"]
    assert _secrets(dev) == {"SLACK_WEBHOOK_URL"}
    assert "GITHUB_TOKEN" not in yaml.safe_dump(dev["steps"])


@pytest.mark.parametrize(("stage", "source"), [("staging", "dev"), ("prod", "staging")])
def test_reviewed_stages_are_previewed_read_only_in_the_run_before_their_approval(
    stage: str, source: str
) -> None:
    jobs = DOCUMENTS["promote.yml"]["jobs"]
    preview = jobs[f"{stage}-preview"]
    assert preview["environment"] == f"{stage}-readonly"
    assert preview["needs"] == source
    assert _secrets(preview) == set()
    assert preview["permissions"] == {"contents": "read", "id-token": "write"}
    runs = [s.get("run", "") for s in preview["steps"]]
    assert any(
        f"-m automation preview {stage} --format markdown" in r and "GITHUB_STEP_SUMMARY" in r for r in runs
    )
    assert sorted(jobs[stage]["needs"]) == sorted([source, f"{stage}-preview"])
    assert jobs[stage]["environment"] == stage


def test_every_job_that_assumes_a_role_installs_from_the_lock_and_builds_the_pinned_cli() -> None:
    for name, job_id, job in _jobs():
        steps = job.get("steps", [])  # type: ignore[attr-defined]
        if not any("configure-aws-credentials" in s.get("uses", "") for s in steps):
            continue
        assert (job.get("permissions") or {}).get("id-token") == "write", (name, job_id)
        script = "\n".join(s.get("run", "") for s in steps)
        lock = script.index("pip install --require-hashes -r requirements/lock.txt")
        assert script.index("pip install --no-deps -e .") > lock, (name, job_id)
        assert "scripts/build-engine.sh" in script, (name, job_id)
        assert "pip install -e" not in script, (name, job_id)


def test_the_pull_request_preview_keeps_one_sticky_comment_with_the_jobs_own_token() -> None:
    [(job_id, job)] = DOCUMENTS["preview.yml"]["jobs"].items()
    assert job["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}, job_id
    [step] = [s for s in job["steps"] if "--pr-comment" in s.get("run", "")]
    assert step["env"]["GITHUB_TOKEN"] == "${{ github.token }}"  # never a stored secret
    assert "preview dev" in step["run"]


def test_the_scheduled_drift_check_can_notify() -> None:
    [step] = [s for s in DOCUMENTS["drift.yml"]["jobs"]["drift"]["steps"] if s.get("name") == "Drift"]
    assert step["env"]["SLACK_WEBHOOK_URL"] == "${{ secrets.SLACK_WEBHOOK_URL }}"
    assert "automation drift" in step["run"]
