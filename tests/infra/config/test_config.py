"""Config errors of the foundation keys: one line, naming the key, on every way in.

The same parser serves `pulumi up` (the engine's config, through `load`), the driver (the stack
file read from disk) and the tests, so each message is checked on the paths a user meets it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from foundation_testkit import REPOSITORY, ROOT, STACKS, run, stack_values

from infra.config import ConfigError, Secret, load, parse, parse_stack_file, read_stack_file


def parse_error(values: dict[str, Any], stack: str = "dev") -> str:
    with pytest.raises(ConfigError) as caught:
        parse(values, stack=stack, region="eu-west-1")
    message = str(caught.value)
    assert "\n" not in message
    return message


def engine_error(values: dict[str, Any], stack: str = "dev", **kwargs: Any) -> str:
    """The error `pulumi up` reports: the program's config load, run under mocks."""
    with pytest.raises(ConfigError) as caught:
        run(values, stack=stack, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def file_error(tmp_path: Path, values: dict[str, Any], stack: str = "dev") -> str:
    """The error the driver reports for a stack file on disk."""
    config: dict[str, Any] = {"aws:region": "eu-west-1"}
    config.update({f"stageline:{k}": v for k, v in values.items()})
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        parse_stack_file(read_stack_file(tmp_path, stack))
    return str(caught.value)


# --- the four errors the issue names ------------------------------------------------------


def test_a_bad_repository_string_names_the_key_and_the_expected_shape(tmp_path: Path) -> None:
    values = stack_values()
    values["github"]["repository"] = "shop"
    expected = 'stageline:github.repository must look like "owner/name", got "shop"'
    assert parse_error(values) == expected
    assert engine_error(values) == expected
    assert file_error(tmp_path, values) == expected


@pytest.mark.parametrize(
    ("path", "wrong", "suggestion"),
    [
        ((), "artifact", "artifacts"),
        ((), "slackWebhookURL", "slackWebhookUrl"),
        (("github",), "repo", "repository"),
        (("github", "environment"), "waitTimer", "waitTimerMinutes"),
        (("artifacts",), "keepImage", "keepImages"),
        (("oidc",), "providerARN", "providerArn"),
        (("state",), "kmsKey", "kmsKeyArn"),
    ],
)
def test_a_misspelt_key_is_rejected_with_a_suggestion(
    tmp_path: Path, path: tuple[str, ...], wrong: str, suggestion: str
) -> None:
    values = stack_values()
    target = values
    for part in path:
        target = target.setdefault(part, {})
    target[wrong] = "x"
    key = ".".join((*path, wrong))
    expected = f'stageline:{key} is not a known key (did you mean "{suggestion}"?)'
    assert parse_error(values) == expected
    assert file_error(tmp_path, values) == expected


def test_a_misspelt_key_reaches_pulumi_up_as_the_same_line() -> None:
    values = stack_values()
    values["artifact"] = {"protect": True}
    assert engine_error(values) == 'stageline:artifact is not a known key (did you mean "artifacts"?)'


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    values = stack_values("staging")
    del values["github"]
    assert parse_error(values, "staging") == "stageline:github is required (set it in Pulumi.staging.yaml)"
    assert engine_error(values, "staging") == "stageline:github is required (set it in Pulumi.staging.yaml)"
    values = stack_values()
    del values["github"]["repository"]
    assert parse_error(values) == "stageline:github.repository is required"
    assert file_error(tmp_path, values) == "stageline:github.repository is required"


def test_a_plain_text_webhook_url_is_refused_where_a_secret_is_required(tmp_path: Path) -> None:
    values = stack_values("prod")
    values["slackWebhookUrl"] = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"
    expected = (
        "stageline:slackWebhookUrl must be a secret: set it with "
        "`pulumi config set --secret slackWebhookUrl … -s prod`"
    )
    assert parse_error(values, "prod") == expected
    assert engine_error(values, "prod") == expected
    assert file_error(tmp_path, values, "prod") == expected
    # The message tells how to fix it and never repeats the value.
    assert "hooks.slack.com" not in expected


# --- the other foundation keys -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"github": {"repository": REPOSITORY, "ownerId": 42}},
            "stageline:github.repositoryId is required when the other immutable-subject ID is set",
        ),
        (
            {"github": {"repository": REPOSITORY, "repositoryId": "forty-two", "ownerId": 42}},
            'stageline:github.repositoryId must be a whole number, got "forty-two"',
        ),
        (
            {"github": {"repository": REPOSITORY, "manage": "yes"}},
            'stageline:github.manage must be true or false, got "yes"',
        ),
        (
            {"github": {"repository": REPOSITORY, "environment": {"waitTimerMinutes": 50000}}},
            "stageline:github.environment.waitTimerMinutes must be between 0 and 43200, got 50000",
        ),
        (
            {"github": {"repository": REPOSITORY, "environment": {"reviewers": {"users": ["not a login"]}}}},
            "stageline:github.environment.reviewers.users[0] must look like a GitHub login, "
            'got "not a login"',
        ),
        (
            {"github": {"repository": REPOSITORY, "environment": {"preventSelfReview": True}}},
            "stageline:github.environment.preventSelfReview needs reviewers in "
            "stageline:github.environment.reviewers",
        ),
        (
            {
                "github": {
                    "repository": REPOSITORY,
                    "environment": {"deploymentBranches": {"protectedBranches": True, "branches": ["main"]}},
                }
            },
            "stageline:github.environment.deploymentBranches takes either protectedBranches: true or "
            "branches/tags patterns, not both",
        ),
        (
            {"oidc": {"providerArn": "token.actions.githubusercontent.com"}},
            "stageline:oidc.providerArn must look like "
            "arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com, "
            'got "token.actions.githubusercontent.com"',
        ),
        (
            {"state": {"bucket": "s3://acme-state"}},
            'stageline:state.bucket must look like an S3 bucket name, got "s3://acme-state"',
        ),
        (
            {"state": {"kmsKeyArn": "alias/pulumi"}},
            "stageline:state.kmsKeyArn must look like one KMS key's ARN, arn:aws:kms:REGION:ACCOUNT:key/ID "
            '(or alias/NAME), no wildcard, got "alias/pulumi"',
        ),
        (
            {"artifacts": {"keepImages": 0}},
            "stageline:artifacts.keepImages must be between 1 and 10000, got 0",
        ),
        (
            {"artifacts": {"noncurrentVersionDays": "thirty"}},
            'stageline:artifacts.noncurrentVersionDays must be a whole number, got "thirty"',
        ),
        (
            {"artifacts": {"protect": "always"}},
            'stageline:artifacts.protect must be true or false, got "always"',
        ),
        (
            {"artifacts": {"readerAccounts": "210987654321"}},
            "stageline:artifacts.readerAccounts must be a list of 12-digit AWS account IDs, "
            'got "210987654321"',
        ),
        (
            {"artifacts": {"readerAccounts": ["21098765432"]}},
            "stageline:artifacts.readerAccounts[0] must be a 12-digit AWS account ID in quotes "
            '(e.g. "012345678901"), got "21098765432"',
        ),
        (
            {"artifacts": {"readerAccounts": ["210987654321", 12345678901]}},
            "stageline:artifacts.readerAccounts[1] must be a 12-digit AWS account ID in quotes "
            '(e.g. "012345678901"), got 12345678901',
        ),
        (
            {"artifacts": {"readerAccounts": ["arn:aws:iam::210987654321:root"]}},
            "stageline:artifacts.readerAccounts[0] must be a 12-digit AWS account ID in quotes "
            '(e.g. "012345678901"), got "arn:aws:iam::210987654321:root"',
        ),
        (
            {"artifacts": {"readerAccounts": ["210987654321", "210987654321"]}},
            "stageline:artifacts.readerAccounts lists account 210987654321 twice",
        ),
        (
            {"tags": {"cost center": ["storefront"]}},
            "stageline:tags: tag \"cost center\" must have a string value, got ['storefront']",
        ),
        (  # was an assert, gone under python -O
            {"waivers": [{"rule": "log-retention", "resource": "a", "reason": "  "}]},
            "stageline:waivers[0].reason must not be empty",
        ),
    ],
)
def test_foundation_keys_report_one_line_naming_the_key(change: dict[str, Any], expected: str) -> None:
    values = stack_values()
    values.update(change)
    assert parse_error(values) == expected


def test_reader_accounts_are_account_ids_as_strings_also_when_yaml_reads_numbers() -> None:
    values = stack_values()
    values["artifacts"] = {"readerAccounts": ["012345678901", 210987654321]}
    cfg = parse(values, stack="dev", region="eu-west-1")
    assert cfg.artifacts.reader_accounts == ("012345678901", "210987654321")
    assert parse(stack_values(), stack="dev", region="eu-west-1").artifacts.reader_accounts == ()


def test_a_stack_name_too_long_for_the_artifact_bucket_prefix_is_a_config_error() -> None:
    # 17 characters: "stageline-<stack>-frontend-" just fits S3's 37, "-artifacts-" does not.
    assert parse_error(stack_values(), stack="feature-checkout2") == (
        'stack name "feature-checkout2" is too long for project "stageline": the artifacts bucket prefix '
        '"stageline-feature-checkout2-artifacts-" has 38 characters, S3 allows 37'
    )


def test_a_stack_name_ending_in_readonly_is_a_config_error() -> None:
    # "<stack>-readonly" is the GitHub environment whose jobs the stack's preview role trusts.
    assert parse_error(stack_values(), stack="dev-readonly") == (
        'stack name "dev-readonly" must not end in -readonly: that suffix names read-only GitHub environments'
    )


# --- what the shipped stack files say ------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_file_parses_and_trusts_the_same_repository(stack: str) -> None:
    cfg = parse_stack_file(read_stack_file(ROOT, stack))
    assert cfg.github.repository == REPOSITORY
    # dev's job is unreviewed: it holds no GitHub token, so its stack cannot manage GitHub.
    assert cfg.github.manage is (stack != "dev")
    assert cfg.prefix == f"stageline-{stack}"
    assert cfg.oidc.provider_arn is None


def test_the_shipped_stacks_split_github_management_by_review() -> None:
    github = {s: parse_stack_file(read_stack_file(ROOT, s)).github for s in STACKS}
    assert {s: g.protects for s, g in github.items()} == {
        "dev": (),
        "staging": (),
        "prod": ("dev", "staging", "prod"),
    }
    assert {s: g.pull_request_previews for s, g in github.items()} == {
        "dev": True,
        "staging": False,
        "prod": False,
    }


def test_a_provider_token_in_a_stack_file_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    (tmp_path / "Pulumi.dev.yaml").write_text(
        text.replace("config:\n", "config:\n  github:token:\n    secure: v1:abc\n", 1)
    )
    with pytest.raises(ConfigError, match=r"^github:token must not be set: .* GITHUB_TOKEN"):
        parse_stack_file(read_stack_file(tmp_path, "dev"))


def test_protects_needs_github_management() -> None:
    values = stack_values("prod")
    values["github"]["manage"] = False
    with pytest.raises(ConfigError, match=r"github\.protects needs .*github\.manage.*: true"):
        parse(values, stack="prod", region="eu-west-1")


def test_only_prod_protects_its_stateful_resources_and_by_config() -> None:
    protect = {s: parse_stack_file(read_stack_file(ROOT, s)).artifacts.protect for s in STACKS}
    assert protect == {"dev": False, "staging": False, "prod": True}


def test_prod_protection_rules_are_what_pulumi_prod_yaml_says() -> None:
    protection = parse_stack_file(read_stack_file(ROOT, "prod")).github.protection
    assert protection.reviewers.users == ("maria-ops",)
    assert protection.reviewers.teams == ("platform", "release-managers")
    assert protection.prevent_self_review is True
    assert protection.can_admins_bypass is False
    assert protection.wait_timer_minutes == 10
    assert protection.deployment_branches is not None
    assert protection.deployment_branches.branch_patterns == ("main",)
    assert protection.deployment_branches.tag_patterns == ("v*",)


# --- secrets -------------------------------------------------------------------------------


def test_the_engine_hands_the_webhook_url_to_the_program_as_a_secret_output() -> None:
    def program() -> None:
        cfg = load()
        assert isinstance(cfg.slack_webhook_url, pulumi.Output)
        pulumi.export("slack", cfg.slack_webhook_url)

    plaintext = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"
    values = {**stack_values("prod"), "slackWebhookUrl": "ciphertext"}
    sim = run(values, stack="prod", secret_values={"slackWebhookUrl": plaintext}, program=program)
    assert sim.secret_outputs == {"slack"}
    assert sim.outputs["slack"] == "[secret]"


def test_the_driver_never_sees_a_secrets_plaintext(tmp_path: Path) -> None:
    text = (ROOT / "Pulumi.prod.yaml").read_text(encoding="utf-8")
    text += "  stageline:slackWebhookUrl:\n    secure: v1:c2VjcmV0:Y2lwaGVydGV4dA==\n"
    (tmp_path / "Pulumi.prod.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "Pulumi.staging.yaml").write_bytes((ROOT / "Pulumi.staging.yaml").read_bytes())
    sf = read_stack_file(tmp_path, "prod")
    assert sf.secret_keys == frozenset({"slackWebhookUrl"})
    cfg = parse_stack_file(sf)
    assert isinstance(cfg.slack_webhook_url, Secret)
    assert str(cfg.slack_webhook_url) == "[secret]"


def test_a_key_stageline_does_not_read_as_a_secret_is_refused_when_encrypted() -> None:
    values = stack_values()
    with pytest.raises(ConfigError) as err:
        parse(values, stack="dev", region="eu-west-1", secret_keys={"tags"})
    assert str(err.value) == (
        "stageline:tags must not be a secret: only slackWebhookUrl is read as one, "
        "so this value would end up in plain text in the state"
    )


def test_an_existing_oidc_provider_must_be_githubs() -> None:
    values = stack_values()
    values["oidc"] = {"providerArn": "arn:aws:iam::123456789012:oidc-provider/accounts.google.com"}
    with pytest.raises(ConfigError) as err:
        parse(values, stack="dev", region="eu-west-1")
    assert str(err.value).startswith("stageline:oidc.providerArn must look like ")
