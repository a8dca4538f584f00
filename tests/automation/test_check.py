"""`python -m automation check`: exit 0 clean, 3 on violations, 2 on bad config; waivers listed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from assure_testkit import copy_repo, edit_stack, run

from automation.check import check_stacks, render_markdown


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repo(tmp_path)


def open_prod(config: dict[str, Any]) -> None:
    """Prod without reviewers or self-review protection, admins may bypass: valid config, unsafe stack."""
    environment = config["stageline:github"]["environment"]
    del environment["reviewers"], environment["preventSelfReview"]
    environment["canAdminsBypass"] = True


def test_the_shipped_stacks_are_clean(repo: Path) -> None:
    result = run("check", "--root", str(repo))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["dev", "staging", "prod"]  # promotion order
    assert all(line.endswith("clean") for line in lines[:3])
    assert lines[-1] == "3 stacks checked against 18 rules: 0 violations, 0 waived — clean."


def test_violations_exit_3_and_name_stack_rule_and_resource(repo: Path) -> None:
    edit_stack(repo, "prod", open_prod)
    result = run("check", "prod", "--root", str(repo))
    assert result.exit_code == 3
    out = result.stdout
    assert re.search(r"^prod +\d+ resources  3 violations$", out, re.MULTILINE)
    assert "prod   prod-reviewers (critical)  github-environment  " in out
    assert "environment prod has no required reviewers" in out
    assert "preventSelfReview is not true: whoever starts a deployment can approve it" in out
    assert "prod   prod-no-admin-bypass (high)  github-environment  " in out
    assert (
        out.splitlines()[-1]
        == "1 stack checked against 18 rules: 3 violations (2 critical, 1 high), 0 waived."
    )


def test_waivers_are_listed_with_their_reason_and_do_not_count(repo: Path) -> None:
    def waive(config: dict[str, Any]) -> None:
        open_prod(config)
        config["stageline:waivers"] = [
            {
                "rule": "prod-no-admin-bypass",
                "resource": "github-environment",
                "reason": "break-glass (INC-42)",
            },
            {"rule": "log-retention", "resource": "gone", "reason": "stale"},
        ]

    edit_stack(repo, "prod", waive)
    result = run("check", "prod", "--root", str(repo))
    assert result.exit_code == 3  # prod-reviewers is not waived
    out = result.stdout
    assert "Waived:\n  prod   prod-no-admin-bypass  github-environment: break-glass (INC-42)" in out
    assert "Waivers that matched nothing (remove them):\n  prod   log-retention  gone" in out
    assert "prod-no-admin-bypass (high)" not in out
    assert out.splitlines()[-1].endswith("2 violations (2 critical), 1 waived.")


def test_waiving_every_violation_makes_the_stack_pass(repo: Path) -> None:
    def waive_all(config: dict[str, Any]) -> None:
        open_prod(config)
        config["stageline:waivers"] = [
            {"rule": rule, "resource": "github-environment", "reason": "review happens in the change board"}
            for rule in ("prod-reviewers", "prod-no-admin-bypass")
        ]

    edit_stack(repo, "prod", waive_all)
    result = run("check", "prod", "--root", str(repo), "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["clean"] is True
    [stack] = report["stacks"]
    assert stack["violations"] == []
    assert sorted(w["rule"] for w in stack["waived"]) == [
        "prod-no-admin-bypass",
        "prod-reviewers",
        "prod-reviewers",
    ]
    assert {w["reason"] for w in stack["waived"]} == {"review happens in the change board"}


def test_bad_config_exits_2_with_the_one_line_config_error(repo: Path) -> None:
    edit_stack(repo, "staging", lambda c: c["stageline:github"].update(repository="shop"))
    result = run("check", "--root", str(repo))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert (
        result.stderr
        == 'error: staging: stageline:github.repository must look like "owner/name", got "shop"\n'
    )


def test_a_waiver_for_an_unknown_rule_is_bad_config(repo: Path) -> None:
    edit_stack(
        repo,
        "dev",
        lambda c: c.update(
            {"stageline:waivers": [{"rule": "s3-encrypt", "resource": "artifacts-bucket", "reason": "typo"}]}
        ),
    )
    result = run("check", "dev", "--root", str(repo))
    assert result.exit_code == 2
    assert result.stderr == (
        'error: dev: stageline:waivers[0].rule names an unknown rule "s3-encrypt" '
        '(did you mean "s3-encrypted"?)\n'
    )


def test_an_unknown_stack_exits_2(repo: Path) -> None:
    result = run("check", "qa", "--root", str(repo))
    assert result.exit_code == 2
    assert "unknown stack 'qa' (known stacks: dev, prod, staging)" in result.stderr


def test_the_root_is_found_from_a_subdirectory(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "docs").mkdir()
    monkeypatch.chdir(repo / "docs")
    edit_stack(repo, "dev", lambda c: c["stageline:github"].update(repository="shop"))
    result = run("check", "dev")
    assert result.exit_code == 2  # it read the copy's (broken) dev file, not the repository's
    assert "dev: stageline:github.repository" in result.stderr


def test_a_root_without_pulumi_yaml_exits_2(tmp_path: Path) -> None:
    result = run("check", "--root", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == f"error: --root {tmp_path}: no Pulumi.yaml there\n"


def test_json_report_and_step_summary(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    edit_stack(repo, "prod", open_prod)
    result = run("check", "prod", "--root", str(repo), "--json")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    first = report["stacks"][0]["violations"][0]
    assert {k: first[k] for k in ("rule", "severity", "stack", "resource", "type")} == {
        "rule": "prod-reviewers",
        "severity": "critical",
        "stack": "prod",
        "resource": "github-environment",
        "type": "github:index/repositoryEnvironment:RepositoryEnvironment",
    }
    markdown = summary.read_text()
    assert markdown.startswith("## Guardrail check\n")
    assert (
        "| prod | `prod-reviewers` | critical | `github-environment` | environment prod has no required"
        in markdown
    )


def test_check_runs_the_rules_over_whatever_program_renders(repo: Path) -> None:
    import pulumi_aws as aws

    def program() -> None:
        aws.cloudwatch.LogGroup("forever", name="/aws/lambda/x")

    report = check_stacks(repo, ["dev"], program=program)
    assert [(v.rule, v.resource) for v in report.violations] == [
        ("log-retention", "forever"),
        ("required-tags", "forever"),  # a default provider, so no default tags
    ]
    assert "| dev | `log-retention` | medium | `forever` |" in render_markdown(report)
