"""`python -m automation render STACK`: the offline inventory, secrets masked, bad input exits 2."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from assure_testkit import copy_repo, edit_stack, run

import infra.program
from automation.assure.render import render_stack
from infra.config import load

SECURE = {"secure": "v1:9hYcbyGfgDEz0ctp:gG0Xx9yh2CpcT3CmkSOo1ocgPW0BKq7R0iYRVJ3Ll4mx"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repo(tmp_path)


def with_webhook(config: dict[str, Any]) -> None:
    config["stageline:slackWebhookUrl"] = SECURE


def test_text_inventory_is_a_tree_of_components_with_key_properties(repo: Path) -> None:
    result = run("render", "dev", "--root", str(repo))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"stack dev \(eu-west-1\): \d+ resources", lines[0])
    trust = lines.index("  stageline:infra:GitHubTrust  trust")
    deploy = next(line for line in lines if "  trust-deploy  " in line)
    assert lines.index(deploy) > trust
    assert deploy.startswith("    aws:iam/role:Role  trust-deploy  name=stageline-dev-deploy")
    assert deploy.endswith("trusts=repo:acme-shop/storefront:environment:dev")
    assert (
        "    aws:cloudwatch/logGroup:LogGroup  service-api-logs  "
        "name=/aws/lambda/stageline-dev-api, retentionInDays=7" in lines
    )
    assert "outputs:" in lines


def test_protection_shows_in_prod(repo: Path) -> None:
    result = run("render", "prod", "--root", str(repo))
    bucket = next(line for line in result.stdout.splitlines() if "  artifacts-bucket  " in line)
    assert "[protect, retainOnDelete]" in bucket


def test_json_inventory_names_parents_and_types(repo: Path) -> None:
    result = run("render", "staging", "--root", str(repo), "--json")
    assert result.exit_code == 0
    inventory = json.loads(result.stdout)
    assert inventory["stack"] == "staging"
    by_name = {r["name"]: r for r in inventory["resources"]}
    alias = by_name["service-api-live"]
    assert (alias["type"], alias["parent"], alias["parentType"]) == (
        "aws:lambda/alias:Alias",
        "service-api",
        "stageline:infra:LambdaService",
    )
    assert alias["keyProperties"]["name"] == "live"
    assert by_name["service-api-function"]["keyProperties"]["memorySize"] == "512"
    assert by_name["trust"]["component"] is True


def test_secret_config_is_rendered_as_secret_never_in_plain_text(repo: Path) -> None:
    edit_stack(repo, "prod", with_webhook)
    text = run("render", "prod", "--root", str(repo))
    data = run("render", "prod", "--root", str(repo), "--json")
    assert text.exit_code == data.exit_code == 0
    inventory = json.loads(data.stdout)
    [secret] = [r for r in inventory["resources"] if r["type"].endswith("ActionsEnvironmentSecret")]
    assert secret["inputs"]["secretName"] == "SLACK_WEBHOOK_URL"
    assert secret["secretInputs"]  # the value the program passed as a secret …
    assert all(secret["inputs"][key] == "[secret]" for key in secret["secretInputs"])  # … shows as one
    [line] = [line for line in text.stdout.splitlines() if "ActionsEnvironmentSecret" in line]
    assert "secretName=SLACK_WEBHOOK_URL" in line
    assert "=[secret]" in line
    for output in (text.stdout, data.stdout, text.stderr, data.stderr):
        assert "stageline-render-secret-" not in output  # the placeholder plaintext
        assert SECURE["secure"] not in output
    assert inventory["secretLeaks"] == []


def leaky_program() -> None:
    """A program that strips the webhook's secretness: render must still mask it, and say so."""
    cfg = load()
    aws.sns.Topic("alerts", display_name=pulumi.Output.unsecret(cfg.slack_webhook_url))


def test_a_secret_that_lost_its_secretness_is_masked_and_reported(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit_stack(repo, "prod", with_webhook)
    rendered = render_stack(repo, "prod", program=leaky_program)
    [topic] = rendered.resources
    assert topic.inputs["displayName"] == "[secret]"
    assert rendered.leaks == ("alerts.displayName",)

    monkeypatch.setattr(infra.program, "deploy", leaky_program)
    result = run("render", "prod", "--root", str(repo), "--json")
    assert result.exit_code == 0
    inventory = json.loads(result.stdout)
    assert inventory["resources"][0]["inputs"]["displayName"] == "[secret]"
    assert inventory["secretLeaks"] == ["alerts.displayName"]
    assert (
        "warning: a secret reached alerts.displayName without being marked secret (masked here)"
        in result.stderr
    )
    assert "stageline-render-secret-" not in result.output


def test_unknown_stack_and_bad_config_exit_2(repo: Path) -> None:
    unknown = run("render", "qa", "--root", str(repo))
    assert unknown.exit_code == 2
    assert "unknown stack 'qa' (known stacks: dev, prod, staging)" in unknown.stderr
    edit_stack(repo, "dev", lambda c: c.update({"stageline:logRetentionDays": 10}))
    bad = run("render", "dev", "--root", str(repo))
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: dev: stageline:logRetentionDays must be one of CloudWatch's values")
    assert bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.output
