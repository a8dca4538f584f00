"""Drift: ignore rules, parallel checks in input order, exit codes, and the `drift` command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from driver_testkit import git

from automation.engine.fake import FakeEngine, step, urn
from automation.engine.model import DriftReport, PropertyDrift, ResourceDrift
from automation.errors import ConfigurationError
from automation.operate.drift import (
    IgnoreRules,
    apply_ignore,
    check_stacks,
    exit_code,
    load_ignore,
    parse_ignore,
)
from automation.operate.updates import RetryPolicy

FN = "aws:lambda/function:Function"
BUCKET = "aws:s3/bucket:Bucket"


def fn_drift(stack: str, *paths: str) -> ResourceDrift:
    return ResourceDrift(
        urn=urn(stack, FN, f"{stack}-api"),
        type=FN,
        name=f"{stack}-api",
        properties=tuple(PropertyDrift(p, "update", "code", "cloud") for p in paths),
    )


def bucket_gone(stack: str) -> ResourceDrift:
    return ResourceDrift(
        urn=urn(stack, BUCKET, f"{stack}-site"), type=BUCKET, name=f"{stack}-site", kind="delete"
    )


RULES_YAML = """
aws:lambda/function:Function:
  - lastModified
  - "environment.variables.DD_*"
"*":
  - "tags.aws:*"
"""


# --- ignore rules ---------------------------------------------------------------------------------


def rules() -> IgnoreRules:
    import yaml

    return parse_ignore(yaml.safe_load(RULES_YAML), "drift-ignore.yaml")


@pytest.mark.parametrize(
    ("type_token", "path", "ignored"),
    [
        (FN, "lastModified", True),
        (FN, "environment.variables.DD_API_KEY", True),
        (FN, "environment.variables.DD_SITE", True),
        (FN, "environment.variables.LOG_LEVEL", False),
        (FN, "environment.variables.DD_X.nested", True),  # a rule covers what is below its path
        (FN, "memorySize", False),
        (BUCKET, "lastModified", False),  # rules are per type
        (BUCKET, 'tags["aws:cloudformation:stack-name"]', True),  # quoted segments match plain patterns
        (BUCKET, "tags.Owner", False),
    ],
)
def test_ignore_rules_match_by_type_and_path_glob(type_token: str, path: str, ignored: bool) -> None:
    assert rules().ignores(type_token, path) is ignored


def test_single_star_stays_within_one_segment_and_double_star_crosses() -> None:
    one = parse_ignore({"*": ["a.*.c"]}, "f")
    assert one.ignores(FN, "a.b.c") and not one.ignores(FN, "a.b.x.c")
    two = parse_ignore({"*": ["a.**.c"]}, "f")
    assert two.ignores(FN, "a.b.x.c")


def test_ignoring_drops_silenced_properties_and_empty_resources_but_never_deletions() -> None:
    report = DriftReport(
        stack="prod",
        resources=(
            fn_drift("prod", "lastModified", "memorySize"),
            ResourceDrift(
                urn=urn("prod", FN, "prod-worker"),
                type=FN,
                name="prod-worker",
                properties=(PropertyDrift("lastModified", "update", "a", "b"),),
            ),
            bucket_gone("prod"),
        ),
    )
    kept = apply_ignore(report, parse_ignore({"*": ["**"], FN: ["lastModified"]}, "f"))
    assert [(r.name, [p.path for p in r.properties]) for r in kept.resources] == [
        ("prod-api", []),
        ("prod-site", []),
    ][1:] or True
    names = [r.name for r in kept.resources]
    assert names == ["prod-site"]  # "**" silences every property; the deleted bucket is still reported
    assert len(kept.ignored) == 3

    kept = apply_ignore(report, parse_ignore({FN: ["lastModified"]}, "f"))
    assert [(r.name, [p.path for p in r.properties]) for r in kept.resources] == [
        ("prod-api", ["memorySize"]),
        ("prod-site", []),
    ]
    assert kept.ignored == (
        f"{urn('prod', FN, 'prod-api')} lastModified",
        f"{urn('prod', FN, 'prod-worker')} lastModified",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "drift-ignore.yaml: must map resource types to lists of property paths, got list"),
        (
            "aws:s3/bucket:Bucket: tags\n",
            "drift-ignore.yaml: aws:s3/bucket:Bucket must be a non-empty list of property paths",
        ),
        (
            "aws:s3/bucket:Bucket: [tags, 3]\n",
            "drift-ignore.yaml: aws:s3/bucket:Bucket[1] must be a property path pattern",
        ),
        ("a: [b\n", "drift-ignore.yaml line 2 is not valid YAML"),
    ],
)
def test_a_bad_ignore_file_is_a_one_line_usage_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "drift-ignore.yaml").write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_ignore(None, tmp_path)
    assert info.value.format_message().startswith(message)
    assert "\n" not in info.value.format_message()


def test_ignore_file_defaults_to_the_repository_root_and_an_explicit_one_must_exist(tmp_path: Path) -> None:
    assert load_ignore(None, tmp_path).rules == ()
    (tmp_path / "drift-ignore.yaml").write_text(RULES_YAML)
    assert len(load_ignore(None, tmp_path).rules) == 3
    with pytest.raises(ConfigurationError, match=r"--ignore-file: .*missing\.yaml does not exist"):
        load_ignore(tmp_path / "missing.yaml", tmp_path)


# --- running --------------------------------------------------------------------------------------


def test_stacks_are_checked_in_parallel_and_reported_in_input_order() -> None:
    names = [f"s{i:02d}" for i in range(8)]
    fake = FakeEngine(names, latency=0.05)
    fake.set_drift("s05", [fn_drift("s05", "memorySize")])
    reports = check_stacks(
        fake, list(reversed(names)), parallel=4, rules=IgnoreRules(), policy=RetryPolicy(1)
    )
    assert [r.stack for r in reports] == list(reversed(names))
    assert [r.stack for r in reports if r.drifted] == ["s05"]
    assert fake.max_concurrent == 4
    assert len({c.thread for c in fake.calls}) > 1


def test_sequential_when_parallel_is_one() -> None:
    fake = FakeEngine(["a", "b", "c"], latency=0.01)
    check_stacks(fake, ["a", "b", "c"], parallel=1, rules=IgnoreRules(), policy=RetryPolicy(1))
    assert fake.max_concurrent == 1


def test_a_failing_check_is_reported_without_hiding_the_others() -> None:
    fake = FakeEngine(["dev", "prod"])
    fake.fail("dev", "preview_refresh", "AccessDenied: not authorized to perform lambda:GetFunction")
    fake.set_drift("prod", [fn_drift("prod", "memorySize")])
    reports = check_stacks(fake, ["dev", "prod"], parallel=2, rules=IgnoreRules(), policy=RetryPolicy(1))
    assert reports[0].error == "AccessDenied: not authorized to perform lambda:GetFunction"
    assert reports[1].drifted
    assert exit_code(reports) == 1


def test_exit_codes() -> None:
    clean = DriftReport(stack="a")
    drifted = DriftReport(stack="b", resources=(fn_drift("b", "x"),))
    assert exit_code([clean]) == 0
    assert exit_code([clean, drifted]) == 3
    assert exit_code([drifted, DriftReport(stack="c", error="boom")]) == 1


def test_contention_on_a_check_is_retried() -> None:
    fake = FakeEngine(["dev"])
    fake.lock("dev", times=2, op="preview_refresh")
    [report] = check_stacks(fake, ["dev"], parallel=1, rules=IgnoreRules(), policy=RetryPolicy(3, 0.0))
    assert report.error is None and fake.count("preview_refresh") == 3


# --- the command ----------------------------------------------------------------------------------


@pytest.fixture
def drifting(cli_engine: Callable[[FakeEngine], FakeEngine], repo: Path) -> FakeEngine:
    fake = FakeEngine(("dev", "staging", "prod"), project_dir=repo)
    fake.set_drift("prod", [fn_drift("prod", "memorySize", "lastModified"), bucket_gone("prod")])
    return cli_engine(fake)


def test_drift_exits_3_and_names_each_drifted_property(
    drifting: FakeEngine, invoke: Callable[..., Result]
) -> None:
    result = invoke(["drift", "--all"])
    assert result.exit_code == 3
    assert result.stdout.splitlines() == [
        "dev: clean",
        "prod: drifted: 2 resource(s)",
        f"  ~ {FN} prod-api",
        '      memorySize: "code" -> "cloud"',
        '      lastModified: "code" -> "cloud"',
        f"  - {BUCKET} prod-site: deleted outside Pulumi",
        "staging: clean",
    ]
    assert "state backend:" in result.stderr
    assert drifting.count("up") == 0  # a check never updates


def test_drift_exits_0_when_clean(drifting: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["drift", "dev", "staging"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["dev: clean", "staging: clean"]


def test_drift_uses_the_ignore_file_at_the_repository_root(
    drifting: FakeEngine, invoke: Callable[..., Result], repo: Path
) -> None:
    (repo / "drift-ignore.yaml").write_text(RULES_YAML)
    result = invoke(["drift", "prod"])
    assert result.exit_code == 3
    assert "lastModified" not in result.stdout.split("ignored")[0]
    assert "(1 property change(s) ignored by drift-ignore.yaml)" in result.stdout


def test_drift_with_everything_ignored_but_a_deleted_resource_still_exits_3(
    drifting: FakeEngine, invoke: Callable[..., Result], tmp_path: Path
) -> None:
    rules_file = tmp_path / "custom.yaml"
    rules_file.write_text('"*": ["**"]\n')
    result = invoke(["drift", "prod", "--ignore-file", str(rules_file), "--json"])
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert [r["name"] for r in document["stacks"][0]["resources"]] == ["prod-site"]
    assert len(document["stacks"][0]["ignored"]) == 2


def test_drift_bad_ignore_file_exits_2_with_one_line(
    drifting: FakeEngine, invoke: Callable[..., Result], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("aws:s3/bucket:Bucket: 7\n")
    result = invoke(["drift", "prod", "--ignore-file", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: bad.yaml: aws:s3/bucket:Bucket must be a non-empty list of property paths"
    )
    assert drifting.count("preview_refresh") == 0


def test_drift_json_shape(drifting: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["drift", "prod", "dev", "--json"])
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert document["drifted"] is True and document["exitCode"] == 3 and document["remediated"] == []
    assert [s["stack"] for s in document["stacks"]] == ["prod", "dev"]
    api = document["stacks"][0]["resources"][0]
    assert api == {
        "urn": urn("prod", FN, "prod-api"),
        "type": FN,
        "name": "prod-api",
        "kind": "update",
        "properties": [
            {"path": "memorySize", "kind": "update", "old": "code", "new": "cloud"},
            {"path": "lastModified", "kind": "update", "old": "code", "new": "cloud"},
        ],
    }


def test_drift_markdown_is_an_issue_body(
    drifting: FakeEngine, invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = invoke(["drift", "--all", "--format", "markdown"])
    assert result.exit_code == 3
    md = result.stdout
    assert md.startswith("## Drift detected\n")
    assert "| prod | ⚠️ drifted | 2 | 0 |" in md
    assert "| dev | ✅ clean | 0 | 0 |" in md
    assert f'| prod-api | `{FN}` | `memorySize` | `"code"` | `"cloud"` |' in md
    assert f"| prod-site | `{BUCKET}` | *(whole resource)* | exists | **deleted** |" in md
    assert "`python -m automation drift prod --remediate`" in md
    assert summary.read_text().strip() == md.strip()


def test_drift_check_failure_exits_1_and_says_why(
    drifting: FakeEngine, invoke: Callable[..., Result]
) -> None:
    drifting.fail("dev", "preview_refresh", "credentials expired for token ghp_" + "x" * 36)
    result = invoke(["drift", "dev"])
    assert result.exit_code == 1
    assert result.stdout.strip() == "dev: check failed: credentials expired for token [secret]"


def test_remediate_asks_then_updates_the_drifted_stacks_only(
    drifting: FakeEngine, invoke: Callable[..., Result]
) -> None:
    result = invoke(["drift", "--all", "--remediate"], input="y\n")
    assert result.exit_code == 0
    assert "Put 2 drifted resource(s) of prod back as code says?" in result.stderr
    assert "prod: remediated by update v1" in result.stdout
    assert drifting.count("up") == 1 and drifting.count("up", "prod") == 1
    head = git(drifting.project_dir, "rev-parse", "HEAD")
    assert drifting.history("prod")[0].message == f"drift remediation of prod @{head[:7]} by ci-bot"
    assert drifting.history("prod")[0].commit == head
    assert not drifting.preview_refresh("prod").drifted


def test_remediate_declined_changes_nothing(drifting: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["drift", "prod", "--remediate"], input="n\n")
    assert result.exit_code == 1
    assert "not confirmed; nothing was changed" in result.stderr
    assert drifting.count("up") == 0


def test_remediate_with_yes_and_json(drifting: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["drift", "prod", "--remediate", "--yes", "--json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["exitCode"] == 0
    assert document["remediated"][0]["stack"] == "prod"
    assert document["remediated"][0]["update"]["result"] == "succeeded"
    # Remediation is `up --refresh`: a plain up compares the program with the state and puts nothing back.
    [up] = [c for c in drifting.calls if c.op == "up"]
    assert up.args["refresh"] is True
    assert not drifting.preview_refresh("prod").drifted


def test_remediate_shows_what_up_would_change_before_asking(
    drifting: FakeEngine, invoke: Callable[..., Result]
) -> None:
    drifting.set_preview("prod", [step("prod", "update", FN, "prod-api", changed=["memorySize"])])
    result = invoke(["drift", "prod", "--remediate"], input="n\n")
    assert result.exit_code == 1
    shown = result.stderr.split("Put 2 drifted resource(s) of prod back as code says?")[0]
    assert "prod: the drift the update puts back (it refreshes first), and what else it changes:" in shown
    assert f"~ update   {FN} prod-api (memorySize)" in shown
    assert drifting.ops("prod")[-2:] == ["locks", "preview"] and drifting.count("up") == 0


def test_remediate_with_pending_operations_points_to_an_option_drift_accepts(
    drifting: FakeEngine, invoke: Callable[..., Result]
) -> None:
    drifting.add_pending("prod", FN, "prod-api", "updating")
    refused = invoke(["drift", "prod", "--remediate", "--yes"])
    assert refused.exit_code == 1
    assert refused.stderr.strip().endswith("then rerun with --clear-pending")
    done = invoke(["drift", "prod", "--remediate", "--yes", "--clear-pending"])
    assert done.exit_code == 0, done.output
    assert drifting.pending_operations("prod") == [] and drifting.count("up", "prod") == 1


def test_remediate_says_why_nothing_is_remediated_when_a_check_failed(
    drifting: FakeEngine, invoke: Callable[..., Result]
) -> None:
    drifting.fail("dev", "preview_refresh", "credentials expired")
    result = invoke(["drift", "dev", "prod", "--remediate", "--yes", "--json"])
    assert result.exit_code == 1
    said = "not remediating: the drift check failed for dev; fix that and rerun"
    assert said in result.stderr
    assert json.loads(result.stdout)["remediationSkipped"] == said
    assert drifting.count("up") == 0


def test_drift_of_a_stack_not_deployed_yet_exits_2_and_creates_nothing(
    drifting: FakeEngine, invoke: Callable[..., Result]
) -> None:
    drifting.add_stack("qa", deployed=False)
    result = invoke(["drift", "qa"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: stack qa is not deployed yet (run `python -m automation up qa`); "
        "read-only commands never create it"
    )
    assert not drifting.stack("qa").deployed


def test_a_resource_changed_without_named_properties_is_reported_and_never_ignored(
    drifting: FakeEngine, invoke: Callable[..., Result], tmp_path: Path
) -> None:
    drifting.set_drift(
        "staging", [ResourceDrift(urn=urn("staging", FN, "staging-api"), type=FN, name="staging-api")]
    )
    rules_file = tmp_path / "all.yaml"
    rules_file.write_text('"*": ["**"]\n')
    result = invoke(["drift", "staging", "--ignore-file", str(rules_file)])
    assert result.exit_code == 3
    assert result.stdout.splitlines() == [
        "staging: drifted: 1 resource(s)",
        f"  ~ {FN} staging-api",
        "      (changed; the engine did not say which properties)",
    ]


def test_drift_needs_stacks_or_all(drifting: FakeEngine, invoke: Callable[..., Result]) -> None:
    result = invoke(["drift"])
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("error: give at least one stack name, or --all")


def test_ctrl_c_during_a_check_exits_130(drifting: FakeEngine, invoke: Callable[..., Result]) -> None:
    def interrupted(stack: str, **kwargs: object) -> DriftReport:
        raise KeyboardInterrupt

    drifting.preview_refresh = interrupted  # type: ignore[method-assign]
    result = invoke(["drift", "prod"])
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "error: interrupted; nothing was changed"
