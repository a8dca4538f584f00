"""The CrossGuard pack: its validation functions, called with the arguments CrossGuard passes.

The engine is not here (no Pulumi CLI), so each test builds what `pulumi_policy`'s analyzer builds
for a request — ResourceValidationArgs over the resource's inputs, StackValidationArgs over every
resource's outputs, options and provider, properties deserialized and wrapped in the
unknown-checking proxy — and calls `policy.validate(args, report_violation)` as the analyzer does.
"""

from __future__ import annotations

import copy
import json
import runpy
from collections.abc import Iterator, Mapping
from typing import Any

import pulumi_policy
import pytest
import yaml
from policy_testkit import ROOT, drop, named, shipped, with_options
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

import policy.__main__ as pack
from automation.assure.render import load_config
from infra.config import Waiver, read_stack_file
from policy import rules
from policy.rules import ANY_PROPERTY, StackContext

DEV_ROLE_URN = "urn:pulumi:dev::stageline::stageline:infra:GitHubTrust$aws:iam/role:Role::trust-deploy"
PROD_ROLE_URN = DEV_ROLE_URN.replace(":dev::", ":prod::")
OIDC_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"


def engine_props(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """Properties as the analyzer hands them to a policy: deserialized, behind the unknown-checking proxy."""
    return unknown_checking_proxy(deserialize_properties(copy.deepcopy(dict(props))))


def options(protect: bool = False, parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


class Reports:
    def __init__(self) -> None:
        self.items: list[tuple[str, str | None]] = []

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.items.append((message, urn))


def policy_named(policies: list[pulumi_policy.Policy], name: str) -> Any:
    return next(p for p in policies if p.name == name)


def config_context(stack: str, project: str) -> StackContext:
    return StackContext.from_config(load_config(ROOT, stack))


def trust(subject: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Principal": {"Federated": OIDC_PROVIDER},
                    "Condition": {
                        "StringEquals": {
                            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                            "token.actions.githubusercontent.com:sub": subject,
                        }
                    },
                }
            ],
        }
    )


def validate_resource(
    policy: ResourceValidationPolicy, type_: str, props: Mapping[str, Any], urn: str
) -> Reports:
    reports = Reports()
    args = ResourceValidationArgs(type_, engine_props(props), urn, urn.rsplit("::", 1)[-1], options(), None)
    assert policy.validate(args, reports) is None
    return reports


@pytest.fixture(autouse=True)
def fresh_engine_context(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    pack.engine_context.cache_clear()
    yield
    pack.engine_context.cache_clear()


# --- the pack's shape -----------------------------------------------------------------------------


def test_one_mandatory_policy_per_rule_with_its_id_rationale_and_severity() -> None:
    policies = pack.policies(config_context)
    assert [p.name for p in policies] == [r.id for r in rules.RULES]
    for policy, rule in zip(policies, rules.RULES, strict=True):
        assert policy.description == rule.rationale
        assert policy.enforcement_level is EnforcementLevel.MANDATORY
        assert policy.severity is Severity(rule.severity)
        expected = ResourceValidationPolicy if rule.scope == "resource" else StackValidationPolicy
        assert isinstance(policy, expected), rule.id


def test_the_policy_host_can_run_the_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `pulumi preview --policy-pack policy` does: run policy/ as __main__ (pulumi.policy's runpy)."""
    made: dict[str, Any] = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: made.update(kwargs))
    runpy.run_path(str(ROOT / "policy"), run_name="__main__")
    assert made["name"] == "stageline"
    assert [p.name for p in made["policies"]] == [r.id for r in rules.RULES]
    assert made["enforcement_level"] is EnforcementLevel.MANDATORY


def test_policy_project_file_uses_the_python_runtime_and_the_project_venv() -> None:
    project = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert (ROOT / "policy" / project["runtime"]["options"]["virtualenv"]).resolve() == ROOT / ".venv"
    requirements = (ROOT / "policy" / "requirements.txt").read_text()
    assert "pulumi-policy" in requirements


# --- resource policies --------------------------------------------------------------------------------


def test_a_role_trusting_another_environment_is_reported() -> None:
    policy = policy_named(pack.policies(config_context), "oidc-trust-exact")
    reports = validate_resource(
        policy,
        rules.ROLE,
        {"assumeRolePolicy": trust("repo:acme-shop/storefront:environment:prod")},
        DEV_ROLE_URN,
    )
    assert reports.items == [
        (
            'trust-deploy: statement 0 trusts subject "repo:acme-shop/storefront:environment:prod"; '
            "a role of stack dev "
            'may trust only "repo:acme-shop/storefront:environment:dev" (deploy) or '
            '"repo:acme-shop/storefront:pull_request", "repo:acme-shop/storefront:environment:dev-readonly" '
            "(read-only)",
            None,
        )
    ]
    ok = validate_resource(
        policy,
        rules.ROLE,
        {"assumeRolePolicy": trust("repo:acme-shop/storefront:environment:dev")},
        DEV_ROLE_URN,
    )
    assert ok.items == []


def test_without_engine_config_the_pack_reads_the_stack_file_of_the_urns_stack() -> None:
    policy = policy_named(pack.policies(), "oidc-trust-exact")  # default context
    prod_subject = "repo:acme-shop/storefront:environment:prod"
    assert (
        validate_resource(policy, rules.ROLE, {"assumeRolePolicy": trust(prod_subject)}, PROD_ROLE_URN).items
        == []
    )
    assert (
        len(
            validate_resource(
                policy, rules.ROLE, {"assumeRolePolicy": trust(prod_subject)}, DEV_ROLE_URN
            ).items
        )
        == 1
    )


def test_the_engine_config_wins_over_the_stack_file(monkeypatch: pytest.MonkeyPatch) -> None:
    values = copy.deepcopy(read_stack_file(ROOT, "prod").values)
    values["github"]["repository"] = "other-org/other"
    engine = {f"stageline:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    engine["aws:region"] = "eu-west-1"
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(engine))
    policy = policy_named(pack.policies(), "oidc-trust-exact")
    [(message, _)] = validate_resource(
        policy,
        rules.ROLE,
        {"assumeRolePolicy": trust("repo:acme-shop/storefront:environment:prod")},
        PROD_ROLE_URN,
    ).items
    assert 'may trust only "repo:other-org/other:environment:prod" (deploy)' in message


def _engine_config(values: Mapping[str, Any]) -> str:
    engine = {f"stageline:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    engine["aws:region"] = "eu-west-1"
    return json.dumps(engine)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            lambda v: v.update(logRetentionDay=30),
            'stageline:logRetentionDay is not a known key (did you mean "logRetentionDays"?)',
        ),
        (
            lambda v: v.update(waivers=[{"rule": "s3-encrypt", "resource": "x", "reason": "typo"}]),
            'stageline:waivers[0].rule names an unknown rule "s3-encrypt" (did you mean "s3-encrypted"?)',
        ),
    ],
)
def test_config_the_pack_cannot_read_is_reported_once_against_the_stack(
    monkeypatch: pytest.MonkeyPatch, change: Any, error: str
) -> None:
    prod = shipped("prod")  # rendered before PULUMI_CONFIG is set: the mocks would read it too
    values = copy.deepcopy(read_stack_file(ROOT, "prod").values)
    change(values)
    monkeypatch.setenv("PULUMI_CONFIG", _engine_config(values))
    results = run_stack_policies(prod, pack.engine_context)
    assert {name: r.items for name, r in results.items() if r.items} == {
        "stack-config-readable": [
            (
                f"stageline-prod: the stack's config could not be read ({error}); trust subjects are checked "
                "by shape only, protection is not expected and waivers do not apply",
                None,  # against the stack, not a resource
            )
        ]
    }
    # The resource policies still check what they can without the config: subjects by shape.
    policy = policy_named(pack.policies(), "oidc-trust-exact")
    prod_subject, staging_subject = (
        f"repo:acme-shop/storefront:environment:{s}" for s in ("prod", "staging")
    )
    assert (
        validate_resource(policy, rules.ROLE, {"assumeRolePolicy": trust(prod_subject)}, PROD_ROLE_URN).items
        == []
    )
    assert (
        len(
            validate_resource(
                policy, rules.ROLE, {"assumeRolePolicy": trust(staging_subject)}, PROD_ROLE_URN
            ).items
        )
        == 1
    )


def test_readable_config_reports_nothing_and_knows_the_last_stage() -> None:
    results = run_stack_policies(shipped("prod"), pack.engine_context)
    assert results["stack-config-readable"].items == []
    assert pack.engine_context("prod", "stageline").production is True
    assert pack.engine_context("staging", "stageline").production is False


def test_unknown_values_during_preview_are_not_violations_and_do_not_raise() -> None:
    policies = pack.policies(config_context)
    for name, type_, props in (
        ("oidc-trust-exact", rules.ROLE, {"assumeRolePolicy": UNKNOWN_STRING_VALUE}),
        ("lambda-invoked-through-live", rules.API_INTEGRATION, {"integrationUri": UNKNOWN_STRING_VALUE}),
        ("iam-no-admin", rules.IAM_POLICY, {"policy": UNKNOWN_STRING_VALUE}),
    ):
        assert validate_resource(policy_named(policies, name), type_, props, DEV_ROLE_URN).items == [], name


def test_a_resource_policy_ignores_other_types() -> None:
    policy = policy_named(pack.policies(config_context), "ecr-immutable-tags")
    assert validate_resource(policy, rules.ROLE, {"imageTagMutability": "MUTABLE"}, DEV_ROLE_URN).items == []
    assert (
        len(
            validate_resource(
                policy,
                rules.ECR_REPOSITORY,
                {"imageTagMutability": "MUTABLE"},
                DEV_ROLE_URN.replace("aws:iam/role:Role", rules.ECR_REPOSITORY),
            ).items
        )
        == 1
    )


def test_plain_unwraps_proxies_and_secrets_and_marks_unknowns() -> None:
    props = engine_props({"a": [{"b": UNKNOWN_STRING_VALUE}], "s": 1})
    assert pack.plain(props) == {"a": [{"b": rules.UNKNOWN}], "s": 1}
    assert pack.plain(pulumi_policy.Secret({"x": "y"})) == {"x": "y"}
    assert pack.stack_of(DEV_ROLE_URN) == ("dev", "stageline")


# --- stack policies ---------------------------------------------------------------------------------


def stack_args(ctx: StackContext, *, by_property: bool = False) -> StackValidationArgs:
    """What AnalyzeStack builds: every resource's outputs, options, provider, parent and dependencies."""
    by_urn: dict[str, PolicyResource] = {}
    for r in ctx.resources:
        provider = None
        if r.provider_inputs is not None:
            provider = PolicyProviderResource(
                "pulumi:providers:aws",
                engine_props(r.provider_inputs),
                "urn:pulumi:x::stageline::pulumi:providers:aws::aws",
                "aws",
            )
        by_urn[r.urn] = PolicyResource(
            r.type,
            engine_props(r.outputs),
            r.urn,
            r.name,
            options(protect=bool(r.protect), parent=r.parent or None),
            provider,
            None,
            [],
            {},
        )
    for r in ctx.resources:
        deps = [by_urn[u] for u in r.dependencies.get(ANY_PROPERTY, ()) if u in by_urn]
        if by_property and "bucket" in r.outputs:
            by_urn[r.urn].property_dependencies["bucket"] = deps
        else:
            by_urn[r.urn].dependencies.extend(deps)
        if r.parent in by_urn:
            by_urn[r.urn].parent = by_urn[r.parent]
    return StackValidationArgs(list(by_urn.values()))


def run_stack_policies(ctx: StackContext, context: Any = config_context, **kwargs: Any) -> dict[str, Reports]:
    out = {}
    for policy in pack.policies(context):
        if isinstance(policy, StackValidationPolicy):
            reports = Reports()
            assert policy.validate(stack_args(ctx, **kwargs), reports) is None
            out[policy.name] = reports
    return out


def test_the_shipped_prod_stack_passes_every_stack_policy() -> None:
    results = run_stack_policies(shipped("prod"))
    assert set(results) == {r.id for r in rules.RULES if r.scope == "stack"}
    assert {name: r.items for name, r in results.items() if r.items} == {}


def test_a_bucket_without_its_public_access_block_is_reported_against_the_bucket() -> None:
    prod = shipped("prod")
    results = run_stack_policies(drop(prod, "artifacts-public-access"))
    bucket = named(prod, "artifacts-bucket")
    assert results["s3-public-access-blocked"].items == [
        ("artifacts-bucket: no public-access block for this bucket", bucket.urn)
    ]


def test_buckets_are_matched_through_property_dependencies() -> None:
    # During a preview the bucket's ID is unknown, so `bucket` cannot be compared by value: the pack
    # follows the engine's property dependency instead.
    prod = shipped("prod")
    results = run_stack_policies(prod, by_property=True)
    assert results["s3-encrypted"].items == results["s3-tls-only"].items == []
    results = run_stack_policies(drop(prod, "frontend-encryption"), by_property=True)
    assert [m for m, _ in results["s3-encrypted"].items] == [
        "frontend-bucket: no default server-side encryption (AES256 or aws:kms) for this bucket"
    ]


def test_an_unprotected_prod_bucket_is_reported_and_retain_on_delete_is_not_guessed() -> None:
    prod = shipped("prod")
    results = run_stack_policies(with_options(prod, "frontend-bucket", protect=False))
    assert [m for m, _ in results["stateful-protected"].items] == [
        "frontend-bucket: stageline:artifacts.protect is true but the resource lacks protect"
    ]


def test_default_tags_are_read_from_the_provider_crossguard_passes() -> None:
    dev = shipped("dev")
    untagged = with_options(dev, "service-api-logs", provider_inputs={"region": "eu-west-1"})
    results = run_stack_policies(untagged)
    assert [m for m, _ in results["required-tags"].items] == [
        "service-api-logs: missing tags: project, environment, managed-by"
    ]


def test_waived_violations_are_not_reported_by_the_pack() -> None:
    prod = shipped("prod")
    waiver = Waiver("s3-public-access-blocked", "artifacts-bucket", "fronted by an access point")

    def waived_context(stack: str, project: str) -> StackContext:
        base = config_context(stack, project)
        return StackContext(
            stack=base.stack,
            project=base.project,
            github=base.github,
            protect_stateful=base.protect_stateful,
            waivers=(waiver,),
        )

    results = run_stack_policies(drop(prod, "artifacts-public-access"), waived_context)
    assert results["s3-public-access-blocked"].items == []
