"""`python -m automation check`: exit 0 clean, 3 on violations, 2 on bad config; waivers listed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from assure_testkit import copy_repo, edit_stack, run

from automation.assure.check import check_stacks, render_markdown, to_json
from policy.rules import RULES_BY_ID


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
    assert lines[-1] == "3 stacks checked against 26 rules: 0 violations, 0 waived — clean."


def test_violations_exit_3_and_name_stack_rule_and_resource(repo: Path) -> None:
    edit_stack(repo, "prod", open_prod)
    result = run("check", "prod", "--root", str(repo))
    assert result.exit_code == 3
    out = result.stdout
    assert re.search(r"^prod +\d+ resources  4 violations$", out, re.MULTILINE)
    assert "prod   prod-reviewers (critical)  github-environment  " in out
    assert "environment prod has no required reviewers" in out
    assert "preventSelfReview is not true: whoever starts a deployment can approve it" in out
    assert "prod   prod-no-admin-bypass (high)  github-environment  " in out
    # Without reviewers, prod's job would hold the GitHub token unreviewed.
    assert "prod   github-token-reviewed (critical)  stageline-prod  " in out
    assert (
        out.splitlines()[-1]
        == "1 stack checked against 26 rules: 4 violations (3 critical, 1 high), 0 waived."
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
    assert out.splitlines()[-1].endswith("3 violations (3 critical), 1 waived.")


def test_waiving_every_violation_makes_the_stack_pass(repo: Path) -> None:
    def waive_all(config: dict[str, Any]) -> None:
        open_prod(config)
        config["stageline:waivers"] = [
            {"rule": rule, "resource": resource, "reason": "review happens in the change board"}
            for rule, resource in (
                ("prod-reviewers", "github-environment"),
                ("prod-no-admin-bypass", "github-environment"),
                ("github-token-reviewed", "stageline-prod"),
            )
        ]

    edit_stack(repo, "prod", waive_all)
    result = run("check", "prod", "--root", str(repo), "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["clean"] is True
    [stack] = report["stacks"]
    assert stack["violations"] == []
    assert sorted(w["rule"] for w in stack["waived"]) == [
        "github-token-reviewed",
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
    assert {k: first[k] for k in ("rule", "severity", "stack", "resource", "type", "rationale")} == {
        "rule": "prod-reviewers",
        "severity": "critical",
        "stack": "prod",
        "resource": "github-environment",
        "type": "github:index/repositoryEnvironment:RepositoryEnvironment",
        "rationale": RULES_BY_ID["prod-reviewers"].rationale,
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


def test_a_secret_that_reaches_a_resource_unmarked_is_a_critical_violation(repo: Path) -> None:
    import pulumi
    import pulumi_aws as aws

    from infra.config import load

    def careless() -> None:
        cfg = load()
        tags = {"project": "stageline", "environment": "dev", "managed-by": "pulumi"}
        provider = aws.Provider("aws", region="eu-west-1", default_tags={"tags": tags})
        aws.sns.Topic(
            "hook",
            # The secret unwrapped into a plain property: plaintext in the state.
            display_name=pulumi.Output.unsecret(cfg.slack_webhook_url),
            opts=pulumi.ResourceOptions(provider=provider),
        )

    edit_stack(repo, "dev", lambda c: c.update({"stageline:slackWebhookUrl": {"secure": "v1:abc:def"}}))
    report = check_stacks(repo, ["dev"], program=careless)
    assert not report.clean
    [violation] = report.violations
    assert (violation.rule, violation.severity, violation.resource, violation.type) == (
        "secret-unmasked",
        "critical",
        "hook",
        "aws:sns/topic:Topic",
    )
    assert violation.message == (
        "a secret config value reaches displayName without being marked secret: the state would hold it in "
        "plaintext (masked in this report)"
    )
    document = json.dumps(to_json(report))
    assert "stageline-render-secret-" not in document
    assert to_json(report)["stacks"][0]["secretLeaks"] == ["hook.displayName"]


def test_the_cli_exits_3_on_an_unmarked_secret(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi
    import pulumi_aws as aws

    import infra.program
    from infra.config import load

    def careless() -> None:
        cfg = load()
        aws.sns.Topic("hook", display_name=pulumi.Output.unsecret(cfg.slack_webhook_url))

    monkeypatch.setattr(infra.program, "deploy", careless)
    edit_stack(repo, "dev", lambda c: c.update({"stageline:slackWebhookUrl": {"secure": "v1:abc:def"}}))
    result = run("check", "dev", "--root", str(repo))
    assert result.exit_code == 3
    assert "secret-unmasked (critical)  hook  [aws:sns/topic:Topic]" in result.stdout
    assert "stageline-render-secret-" not in result.output


def test_files_that_are_not_stack_files_are_ignored(repo: Path) -> None:
    (repo / "Pulumi.old.dev.yaml").write_text((repo / "Pulumi.dev.yaml").read_text())
    (repo / "Pulumi.Dev.yaml").write_text((repo / "Pulumi.dev.yaml").read_text())
    result = run("check", "--root", str(repo))
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()[:3]] == ["dev", "staging", "prod"]


def test_the_last_stage_is_production_whatever_its_name(repo: Path) -> None:
    """prod renamed "live": still the end of the promotion chain, so still held to production's rules."""
    (repo / "Pulumi.prod.yaml").rename(repo / "Pulumi.live.yaml")

    def open_live(config: dict[str, Any]) -> None:
        open_prod(config)
        config["stageline:github"]["protects"] = ["dev", "staging", "live"]

    edit_stack(repo, "live", open_live)
    result = run("check", "live", "--root", str(repo))
    assert result.exit_code == 3, result.output
    assert "environment live has no required reviewers" in result.stdout
    assert "live   prod-no-admin-bypass (high)  github-environment" in result.stdout
