"""`python -m automation parity`: every difference between stacks, traced to config or flagged.

Small programs over stack files that differ in known ways: a program that takes everything from
config (all differences expected, each traced to its key) and one that also branches on the stack
name (those differences unexpected, exit 3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
import yaml
from assure_testkit import ROOT, copy_repo, edit_stack, run

import infra.program
from automation.assure.parity import (
    BY_NAME,
    EXPECTED,
    NOT_ISOLATED,
    STACK_NAME,
    UNEXPECTED,
    ParityReport,
    compare_stacks,
    render_markdown,
    to_json,
)
from automation.errors import StagelineError
from infra.config import ConfigError, load

IMAGE = "sha256:" + "c" * 64


def config_driven() -> None:
    cfg = load()
    opts = pulumi.ResourceOptions(provider=aws.Provider("aws", region=cfg.region))
    for svc in cfg.services:
        aws.lambda_.Function(
            f"{svc.name}-fn",
            name=f"{cfg.prefix}-{svc.name}",
            memory_size=svc.memory_mb,
            package_type="Image",
            image_uri=f"repo@{cfg.release.images.get(svc.name) or cfg.release.packages[svc.name]}",
            role="arn:aws:iam::123456789012:role/x",
            opts=opts,
        )
    aws.cloudwatch.LogGroup(
        "logs", name=f"/aws/apigateway/{cfg.prefix}", retention_in_days=cfg.log_retention_days, opts=opts
    )
    if cfg.alarms.email:
        aws.sns.Topic("pager", name=f"{cfg.prefix}-pager", opts=opts)
    # A logical name carrying the stack name (here upper-cased) is the same resource in every stack.
    aws.sns.Topic(f"marker-{cfg.stack.upper()}", display_name=cfg.stack, opts=opts)
    if cfg.slack_webhook_url is not None:
        aws.ssm.Parameter("hook", type="SecureString", value=cfg.slack_webhook_url, opts=opts)


def branching() -> None:
    """Config-driven, plus what parity exists to catch: the stack name deciding on its own."""
    config_driven()
    prod = pulumi.get_stack() == "prod"
    if prod:
        aws.sns.Topic("prod-only")
    aws.lambda_.Function(
        "odd", package_type="Image", image_uri="x@sha256:0", role="arn", timeout=30 if prod else 10
    )


def refuses_unprotected_prod() -> None:
    """A program that will not render prod without artifacts.protect, and adds a prod-only topic.

    The stack name cannot change alone with dev's config (dev does not protect), so an experiment
    that changed the name together with the next config keys would credit them with the topic.
    """
    cfg = load()
    if pulumi.get_stack() == "prod" and not cfg.artifacts.protect:
        raise ConfigError("stageline:artifacts.protect must be true in prod")
    config_driven()
    if pulumi.get_stack() == "prod":
        aws.sns.Topic("prod-only")


def protected_prod_only() -> None:
    """A branch on the stack name that shows only with prod's config: with dev's, the name changes nothing."""
    config_driven()
    cfg = load()
    if cfg.artifacts.protect and pulumi.get_stack() == "prod":
        aws.sns.Topic("guarded")


def protect_bound_to_the_name() -> None:
    """Neither stack's config renders under the other's name: the name's effect cannot be isolated."""
    cfg = load()
    if (pulumi.get_stack() == "prod") != cfg.artifacts.protect:
        raise ConfigError("stageline:artifacts.protect must be true in prod and only there")
    config_driven()


def protect_prod(config: dict[str, Any]) -> None:
    config.setdefault("stageline:artifacts", {})["protect"] = True


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """dev as shipped, and a prod that is dev with bigger memory, longer retention, an alarm e-mail."""
    root = copy_repo(tmp_path, ("dev",))
    edit_stack(root, "dev", lambda c: c["stageline:alarms"].pop("email", None))
    document = yaml.safe_load((root / "Pulumi.dev.yaml").read_text())
    config = document["config"]
    config["stageline:services"][0]["memory"] = 1024
    config["stageline:logRetentionDays"] = 30
    config["stageline:alarms"]["email"] = "oncall@acme-shop.example"
    config["stageline:promotion"]["source"] = "dev"
    (root / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return root


def rows(report: ParityReport) -> dict[tuple[str, str | None], tuple[str, list[str]]]:
    return {(d.resource, d.path): (d.classification, d.because) for d in report.differences}


def test_differences_that_come_from_config_are_expected_and_name_their_key(repo: Path) -> None:
    report = compare_stacks(repo, ["dev", "prod"], program=config_driven)
    got = rows(report)
    assert got[("api-fn", "memorySize")] == (EXPECTED, ["stageline:services[0].memory"])
    assert got[("logs", "retentionInDays")] == (EXPECTED, ["stageline:logRetentionDays"])
    assert got[("pager", None)] == (EXPECTED, ["stageline:alarms"])
    assert got[("api-fn", "name")] == (EXPECTED, [STACK_NAME])  # stageline-dev-api → stageline-prod-api
    assert got[("logs", "name")] == (EXPECTED, [STACK_NAME])
    assert ("worker-fn", "memorySize") not in got  # the same in both stack files
    assert got[("marker-DEV", "displayName")] == (EXPECTED, [STACK_NAME])
    assert not [d for d in report.differences if d.path is None and d.resource.startswith("marker-")]
    assert report.unexpected == []
    assert [d.values for d in report.differences if (d.resource, d.path) == ("api-fn", "memorySize")] == [
        {"dev": 256.0, "prod": 1024.0}
    ]
    [pair] = to_json(report)["pairs"]
    assert pair["configKeys"] == [
        "stageline:alarms",
        "stageline:logRetentionDays",
        "stageline:promotion",
        "stageline:services",
    ]


def test_differences_the_stack_name_alone_causes_are_unexpected(repo: Path) -> None:
    report = compare_stacks(repo, ["dev", "prod"], program=branching)
    got = rows(report)
    why = ["changes with the stack name alone; no config key explains it"]
    assert got[("prod-only", None)] == (UNEXPECTED, why)
    assert got[("odd", "timeout")] == (UNEXPECTED, why)
    assert got[("api-fn", "memorySize")] == (EXPECTED, ["stageline:services[0].memory"])
    assert {(d.resource, d.path) for d in report.unexpected} == {("prod-only", None), ("odd", "timeout")}
    markdown = render_markdown(report)
    unexpected = markdown.split("### Unexpected differences")[1].split("###")[0]
    assert "| `odd` | `timeout` | 10 | 30 | changes with the stack name alone" in unexpected
    assert "| `prod-only` | `aws:sns/topic:Topic` | — | ✓ |" in unexpected


def test_a_stack_name_branch_is_found_when_the_name_cannot_change_alone_with_the_first_config(
    repo: Path,
) -> None:
    edit_stack(repo, "prod", protect_prod)
    report = compare_stacks(repo, ["dev", "prod"], program=refuses_unprotected_prod)
    got = rows(report)
    assert got[("prod-only", None)] == (UNEXPECTED, [BY_NAME])
    assert got[("logs", "retentionInDays")] == (EXPECTED, ["stageline:logRetentionDays"])
    assert got[("api-fn", "memorySize")] == (EXPECTED, ["stageline:services[0].memory"])
    assert got[("pager", None)] == (EXPECTED, ["stageline:alarms"])
    assert {(d.resource, d.path) for d in report.unexpected} == {("prod-only", None)}


def test_a_stack_name_branch_that_shows_only_with_the_second_config_is_unexpected(repo: Path) -> None:
    edit_stack(repo, "prod", protect_prod)
    report = compare_stacks(repo, ["dev", "prod"], program=protected_prod_only)
    got = rows(report)
    # Changing artifacts.protect under prod's name adds the topic, but so does changing the name
    # under prod's config: the config key alone does not explain it.
    assert got[("guarded", None)] == (UNEXPECTED, [BY_NAME])
    assert {(d.resource, d.path) for d in report.unexpected} == {("guarded", None)}
    assert got[("logs", "retentionInDays")] == (EXPECTED, ["stageline:logRetentionDays"])


def test_when_the_name_never_changes_alone_what_moves_with_it_is_unexpected(repo: Path) -> None:
    edit_stack(repo, "prod", protect_prod)
    report = compare_stacks(repo, ["dev", "prod"], program=protect_bound_to_the_name)
    got = rows(report)
    assert got[("logs", "retentionInDays")] == (UNEXPECTED, [NOT_ISOLATED])
    assert got[("api-fn", "memorySize")] == (UNEXPECTED, [NOT_ISOLATED])
    assert got[("pager", None)] == (EXPECTED, ["stageline:alarms"])  # changed alone, before the name
    assert got[("api-fn", "name")] == (EXPECTED, [STACK_NAME])  # naming stays naming


def test_a_program_that_crashes_on_a_mix_of_configs_is_an_operation_failure(repo: Path) -> None:
    def crashes_on_a_mix() -> None:
        cfg = load()
        if pulumi.get_stack() == "prod" and cfg.log_retention_days != 30:
            raise RuntimeError("boom")
        config_driven()

    with pytest.raises(StagelineError, match=r"^dev → prod: the program failed .*RuntimeError: boom$"):
        compare_stacks(repo, ["dev", "prod"], program=crashes_on_a_mix)


def test_keys_that_only_change_together_are_traced_together(repo: Path) -> None:
    def add_service(config: dict[str, Any]) -> None:
        config["stageline:services"].append(
            {"name": "jobs", "memory": 512, "routes": ["ANY /batch"], "healthPath": "/batch"}
        )
        config["stageline:release"]["packages"]["jobs"] = IMAGE

    edit_stack(repo, "prod", add_service)
    report = compare_stacks(repo, ["dev", "prod"], program=config_driven)
    classification, because = rows(report)[("jobs-fn", None)]
    assert classification == EXPECTED
    assert because == ["stageline:release", "stageline:services"]  # neither can change alone


def test_secret_config_differences_are_compared_without_their_plaintext(repo: Path) -> None:
    edit_stack(repo, "prod", lambda c: c.update({"stageline:slackWebhookUrl": {"secure": "v1:abc:def"}}))
    report = compare_stacks(repo, ["dev", "prod"], program=config_driven)
    assert rows(report)[("hook", None)] == (EXPECTED, ["stageline:slackWebhookUrl"])
    document = json.dumps(to_json(report))
    assert "stageline-parity-secret-" not in document


def test_cli_exits_3_on_unexpected_differences(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infra.program, "deploy", branching)
    markdown = run("parity", "--root", str(repo))
    assert markdown.exit_code == 3
    assert markdown.stdout.startswith("## Parity: dev → prod\n")
    assert "2 unexpected differences" in markdown.stdout
    data = run("parity", "dev", "prod", "--root", str(repo), "--json")
    assert data.exit_code == 3
    report = json.loads(data.stdout)
    assert report["clean"] is False
    assert sorted(
        (d["resource"], d["property"]) for d in report["differences"] if d["class"] == UNEXPECTED
    ) == [
        ("odd", "timeout"),
        ("prod-only", None),
    ]


def test_cli_exits_0_when_every_difference_comes_from_config(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(infra.program, "deploy", config_driven)
    result = run("parity", "--root", str(repo))
    assert result.exit_code == 0
    assert "### Unexpected differences\n\nNone.\n" in result.stdout
    assert "| `logs` | `retentionInDays` | 7 | 30 | stageline:logRetentionDays |" in result.stdout


def test_parity_needs_two_stacks_and_good_config(repo: Path) -> None:
    one = run("parity", "dev", "--root", str(repo))
    assert one.exit_code == 2
    assert one.stderr == "error: parity needs at least two stacks, got 1\n"
    edit_stack(repo, "prod", lambda c: c.update({"stageline:logRetentionDay": 30}))
    bad = run("parity", "--root", str(repo))
    assert bad.exit_code == 2
    assert bad.stderr == (
        'error: prod: stageline:logRetentionDay is not a known key (did you mean "logRetentionDays"?)\n'
    )


def test_the_shipped_staging_and_prod_differ_only_by_config() -> None:
    report = compare_stacks(ROOT, ["staging", "prod"])
    assert report.unexpected == []
    got = rows(report)
    assert got[("service-worker-function", "memorySize")] == (EXPECTED, ["stageline:services[1].memory"])
    assert got[("service-api-logs", "retentionInDays")] == (EXPECTED, ["stageline:logRetentionDays"])
    assert got[("artifacts-bucket", "(protect)")] == (EXPECTED, ["stageline:artifacts.protect"])
