"""The seam where it is pure: engine events, history summaries and state exports -> plain dataclasses.

SDK objects are built here exactly as the SDK builds them from the engine's JSON (`from_json`), so the
converters are checked against the real event shapes of pulumi 3.x.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pulumi.automation import EngineEvent, OpType, UpdateSummary

from automation import errors
from automation.engine import local, model, process, project
from automation.engine.events import (
    diff_paths,
    drift_report_from_events,
    engine_message,
    number_history,
    pending_from_deployment,
    preview_summary_from_events,
    protected_step_urns,
    update_record_from_summary,
)
from automation.engine.fake import FakeEngine
from automation.engine.model import (
    BackendInfo,
    EngineUnavailable,
    UnknownStackError,
    is_stateful,
    parse_urn,
    split_property_path,
    value_at,
)
from automation.engine.project import choose_backend, find_project_root, secrets_environment
from automation.engine.protocol import resolve_stacks
from automation.errors import USAGE

FN = "aws:lambda/function:Function"
FN_URN = f"urn:pulumi:prod::stageline::stageline:infra:Service${FN}::prod-api"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_URN = f"urn:pulumi:prod::stageline::{BUCKET}::prod-artifacts"
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def step_event(
    kind: str,
    op: str,
    urn: str,
    type_: str,
    *,
    old: dict | None = None,
    new: dict | None = None,
    detailed: dict | None = None,
    diffs: list | None = None,
    keys: list | None = None,
    seq: int = 1,
) -> EngineEvent:
    metadata: dict = {"op": op, "urn": urn, "type": type_, "provider": ""}
    if old is not None:
        metadata["old"] = {"urn": urn, "type": type_, **old}
    if new is not None:
        metadata["new"] = {"urn": urn, "type": type_, **new}
    if detailed is not None:
        metadata["detailedDiff"] = {k: {"diffKind": v} for k, v in detailed.items()}
    if diffs is not None:
        metadata["diffs"] = diffs
    if keys is not None:
        metadata["keys"] = keys
    return EngineEvent.from_json({"sequence": seq, "timestamp": 0, kind: {"metadata": metadata}})


# --- drift ----------------------------------------------------------------------------------------


def test_drift_report_lists_each_drifted_property_with_recorded_and_actual_values() -> None:
    events = [
        step_event(
            "resourcePreEvent",
            "same",
            "urn:pulumi:prod::stageline::pulumi:pulumi:Stack::stageline-prod",
            "pulumi:pulumi:Stack",
        ),
        step_event(
            "resourcePreEvent",
            "update",
            FN_URN,
            FN,
            old={"outputs": {"memorySize": 1024, "environment": {"variables": {"LOG_LEVEL": "warning"}}}},
            new={"outputs": {"memorySize": 512, "environment": {"variables": {"LOG_LEVEL": "debug"}}}},
            detailed={"memorySize": "update", "environment.variables.LOG_LEVEL": "update"},
        ),
        step_event("resourcePreEvent", "same", BUCKET_URN, BUCKET, old={"outputs": {}}, new={"outputs": {}}),
    ]
    report = drift_report_from_events("prod", events)

    assert report.drifted
    assert [r.name for r in report.resources] == ["prod-api"]
    api = report.resources[0]
    assert api.type == FN and api.kind == "update"
    assert [(p.path, p.kind, p.old, p.new) for p in api.properties] == [
        ("environment.variables.LOG_LEVEL", "update", "warning", "debug"),
        ("memorySize", "update", 1024, 512),
    ]


def test_drift_merges_pre_and_outputs_events_of_one_resource_and_reports_deleted_resources() -> None:
    events = [
        step_event(
            "resourcePreEvent",
            "update",
            FN_URN,
            FN,
            old={"outputs": {"timeout": 10}},
            new={"outputs": {"timeout": 30}},
            detailed={"timeout": "update"},
        ),
        step_event(
            "resOutputsEvent",
            "update",
            FN_URN,
            FN,
            old={"outputs": {"timeout": 10, "tags": {}}},
            new={"outputs": {"timeout": 30, "tags": {"Owner": "bob"}}},
            detailed={"tags.Owner": "add"},
        ),
        step_event("resourcePreEvent", "delete", BUCKET_URN, BUCKET, old={"outputs": {"bucket": "b"}}),
    ]
    report = drift_report_from_events("prod", events)

    assert [(r.name, r.kind) for r in report.resources] == [
        ("prod-api", "update"),
        ("prod-artifacts", "delete"),
    ]
    assert [(p.path, p.kind, p.new) for p in report.resources[0].properties] == [
        ("timeout", "update", 30),
        ("tags.Owner", "add", "bob"),
    ]


def test_drift_falls_back_to_top_level_diffs_when_the_provider_gives_no_detailed_diff() -> None:
    event = step_event(
        "resourcePreEvent",
        "update",
        FN_URN,
        FN,
        old={"inputs": {"handler": "a.main"}},
        new={"inputs": {"handler": "b.main"}},
        diffs=["handler"],
    )
    report = drift_report_from_events("prod", [event])
    assert [(p.path, p.old, p.new) for p in report.resources[0].properties] == [
        ("handler", "a.main", "b.main")
    ]


def test_drift_report_never_contains_secret_values() -> None:
    engine_secret = {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "plaintext": '"hunter2-db-password"'}
    event = step_event(
        "resourcePreEvent",
        "update",
        FN_URN,
        FN,
        old={
            "outputs": {
                "environment": {"variables": {"DB_PASSWORD": engine_secret, "HOOK": "old-hook-value"}}
            }
        },
        new={
            "outputs": {
                "environment": {
                    "variables": {
                        "DB_PASSWORD": "hunter2-db-password",
                        "HOOK": "https://hooks.slack.com/services/T0/B0/xyz",
                    }
                }
            }
        },
        detailed={"environment.variables.DB_PASSWORD": "update", "environment.variables.HOOK": "update"},
    )
    report = drift_report_from_events("prod", [event], secrets=["hunter2-db-password"])
    text = json.dumps(report.to_json())

    assert "hunter2" not in text
    assert "hooks.slack.com/services/T0" not in text
    props = {p.path: p for p in report.resources[0].properties}
    assert props["environment.variables.DB_PASSWORD"].old == "[secret]"
    assert props["environment.variables.DB_PASSWORD"].new == "[secret]"
    # The new value is credential-shaped, so the property holds a credential: neither side is shown.
    assert props["environment.variables.HOOK"].old == "[secret]"
    assert props["environment.variables.HOOK"].new == "[secret]"


def test_a_clean_refresh_gives_an_empty_report() -> None:
    events = [
        step_event(
            "resourcePreEvent", "refresh", FN_URN, FN, old={"outputs": {"a": 1}}, new={"outputs": {"a": 1}}
        ),
        step_event("resOutputsEvent", "same", BUCKET_URN, BUCKET),
        EngineEvent.from_json(
            {
                "sequence": 9,
                "timestamp": 0,
                "summaryEvent": {
                    "maybeCorrupt": False,
                    "durationSeconds": 3,
                    "resourceChanges": {"same": 2},
                    "PolicyPacks": {},
                },
            }
        ),
    ]
    report = drift_report_from_events("prod", events)
    assert not report.drifted
    assert report.resources == ()


def test_drift_in_the_engines_refresh_shape_pre_event_refresh_then_result_in_the_outputs_event() -> None:
    # A refresh announces each resource with op "refresh" and no diff; the result op and the diff come
    # with the ResOutputsEvent.
    recorded = {"outputs": {"memorySize": 1024, "timeout": 10}}
    events = [
        step_event("resourcePreEvent", "refresh", FN_URN, FN, old=recorded, new=recorded, seq=1),
        step_event("resourcePreEvent", "refresh", BUCKET_URN, BUCKET, old={"outputs": {}}, seq=2),
        step_event(
            "resOutputsEvent",
            "update",
            FN_URN,
            FN,
            old=recorded,
            new={"outputs": {"memorySize": 512, "timeout": 10}},
            detailed={"memorySize": "update"},
            seq=3,
        ),
        step_event("resOutputsEvent", "same", BUCKET_URN, BUCKET, old={"outputs": {}}, seq=4),
    ]
    report = drift_report_from_events("prod", events)
    assert [(r.name, r.kind) for r in report.resources] == [("prod-api", "update")]
    assert [(p.path, p.old, p.new) for p in report.resources[0].properties] == [("memorySize", 1024, 512)]


def test_an_update_result_without_any_diff_is_diffed_from_the_states_not_dropped() -> None:
    # The engine sends a refresh result "update" with an empty diff for some resources.
    events = [
        step_event("resourcePreEvent", "refresh", FN_URN, FN, old={"outputs": {"memorySize": 1024}}),
        step_event(
            "resOutputsEvent",
            "update",
            FN_URN,
            FN,
            old={"outputs": {"memorySize": 1024, "tags": {"Team": "a"}, "layers": ["x"], "__meta": "1"}},
            new={
                "outputs": {
                    "memorySize": 512,
                    "tags": {"Team": "a", "aws:cloudformation:stack-name": "s"},
                    "layers": [],
                    "__meta": "2",
                }
            },
        ),
    ]
    report = drift_report_from_events("prod", events)
    assert report.drifted
    assert [(p.path, p.kind, p.old, p.new) for p in report.resources[0].properties] == [
        ("layers[0]", "delete", "x", None),
        ("memorySize", "update", 1024, 512),
        ('tags["aws:cloudformation:stack-name"]', "add", None, "s"),
    ]


def test_an_update_result_whose_difference_cannot_be_named_is_still_reported() -> None:
    same = {"outputs": {"memorySize": 1024}}
    event = step_event("resOutputsEvent", "update", FN_URN, FN, old=same, new=same)
    report = drift_report_from_events("prod", [event])
    assert [(r.name, r.kind, r.properties) for r in report.resources] == [("prod-api", "update", ())]


def test_diff_paths_uses_pulumi_property_path_syntax() -> None:
    assert diff_paths({"a": {"b": 1, "c.d": [1, 2]}}, {"a": {"b": 2, "c.d": [1]}, "e": True}) == {
        "a.b": "update",
        'a["c.d"][1]': "delete",
        "e": "add",
    }
    assert diff_paths({"a": 1}, {"a": 1}) == {}


def test_a_secret_on_either_side_masks_both_sides() -> None:
    engine_secret = {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:abc"}
    event = step_event(
        "resourcePreEvent",
        "update",
        FN_URN,
        FN,
        # Recorded: a known secret config value; in the cloud: rotated by hand to a plain string.
        old={"outputs": {"env": {"DB_PASSWORD": "opaque-secret-value-123"}, "apiKey": engine_secret}},
        # Recorded plain; in the cloud an engine-marked secret (a whole secret object, path inside it).
        new={"outputs": {"env": {"DB_PASSWORD": "rotated-by-hand"}, "apiKey": "plain-in-the-cloud"}},
        detailed={"env.DB_PASSWORD": "update", "apiKey": "update"},
    )
    report = drift_report_from_events("prod", [event], secrets=["opaque-secret-value-123"])
    text = json.dumps(report.to_json())
    assert "rotated-by-hand" not in text and "plain-in-the-cloud" not in text
    assert [(p.path, p.old, p.new) for p in report.resources[0].properties] == [
        ("apiKey", "[secret]", "[secret]"),
        ("env.DB_PASSWORD", "[secret]", "[secret]"),
    ]
    inside = step_event(
        "resourcePreEvent",
        "update",
        FN_URN,
        FN,
        old={"outputs": {"env": engine_secret}},
        new={"outputs": {"env": {"TOKEN": "seen-in-the-cloud"}}},
        detailed={"env.TOKEN": "update"},
    )
    [prop] = drift_report_from_events("prod", [inside]).resources[0].properties
    assert (prop.old, prop.new) == ("[secret]", "[secret]")


# --- preview --------------------------------------------------------------------------------------


def test_preview_summary_folds_a_replacement_into_one_stateful_step() -> None:
    protected = {"protect": True, "outputs": {"bucket": "prod-artifacts"}}
    events = [
        step_event(
            "resourcePreEvent",
            "create-replacement",
            BUCKET_URN,
            BUCKET,
            old=protected,
            new=protected,
            detailed={"bucket": "update-replace"},
            keys=["bucket"],
        ),
        step_event(
            "resourcePreEvent", "replace", BUCKET_URN, BUCKET, old=protected, new=protected, keys=["bucket"]
        ),
        step_event("resourcePreEvent", "delete-replaced", BUCKET_URN, BUCKET, old=protected),
        step_event(
            "resourcePreEvent", "update", FN_URN, FN, old={}, new={}, detailed={"memorySize": "update"}
        ),
        step_event(
            "resourcePreEvent",
            "same",
            "urn:pulumi:prod::stageline::aws:iam/role:Role::r",
            "aws:iam/role:Role",
        ),
        step_event(
            "resourcePreEvent",
            "create",
            "urn:pulumi:prod::stageline::pulumi:providers:aws::default",
            "pulumi:providers:aws",
        ),
    ]
    summary = preview_summary_from_events("prod", events, {"replace": 1, "update": 1, "same": 7})

    assert [(s.name, s.op) for s in summary.steps] == [("prod-artifacts", "replace"), ("prod-api", "update")]
    bucket = summary.steps[0]
    assert bucket.protected and bucket.stateful and bucket.dangerous
    assert bucket.changed == ("bucket",)
    assert summary.steps[1].changed == ("memorySize",) and not summary.steps[1].dangerous
    assert summary.counts == {"replace": 1, "update": 1, "same": 7}
    assert summary.has_changes
    assert [s.urn for s in summary.dangerous] == [BUCKET_URN]


def test_preview_counts_come_from_the_steps_when_the_engine_gives_no_summary() -> None:
    events = [step_event("resourcePreEvent", "delete", BUCKET_URN, BUCKET, old={})]
    summary = preview_summary_from_events("prod", events, None)
    assert summary.counts == {"delete": 1}
    assert summary.steps[0].dangerous  # a bucket is stateful even unprotected


def test_stateful_classification() -> None:
    assert is_stateful("aws:s3/bucketV2:BucketV2")
    assert is_stateful("aws:ecr/repository:Repository")
    assert is_stateful("aws:cloudwatch/logGroup:LogGroup")
    assert is_stateful("aws:iam/role:Role", protected=True)
    assert is_stateful("aws:iam/role:Role", retain_on_delete=True)
    assert not is_stateful("aws:iam/role:Role")
    assert not is_stateful(FN)


# --- history --------------------------------------------------------------------------------------


def test_update_record_from_a_history_summary() -> None:
    release = {"version": "4f9c2d1", "images": {"api": "sha256:" + "a" * 64}}
    summary = UpdateSummary(
        kind="update",
        start_time=datetime(2025, 3, 1, 10, 0, 0),
        message="up prod @4f9c2d1",
        environment={"git.head": "4f9c2d1" + "0" * 33, "exec.kind": "auto.local"},
        config={
            "stageline:release": {"value": json.dumps(release), "secret": False},
            "stageline:slackWebhookUrl": {"secret": True},
            "aws:region": {"value": "eu-west-1", "secret": False},
        },
        result="succeeded",
        end_time=datetime(2025, 3, 1, 10, 2, 30),
        version=17,
        resource_changes={OpType.UPDATE: 2, OpType.SAME: 30},
    )
    record = update_record_from_summary(summary)

    assert record.version == 17 and record.kind == "update" and record.succeeded
    assert record.start == datetime(2025, 3, 1, 10, 0, 0, tzinfo=UTC)
    assert record.duration is not None and record.duration.total_seconds() == 150
    assert record.commit == "4f9c2d1" + "0" * 33 and record.short_commit == "4f9c2d1"
    assert record.release == release and record.release_version == "4f9c2d1"
    assert record.config["stageline:slackWebhookUrl"] == "[secret]"
    assert record.resource_changes == {"update": 2, "same": 30}
    assert record.to_json()["durationSeconds"] == 150


def test_update_record_of_an_unfinished_update_has_no_duration() -> None:
    summary = UpdateSummary(
        kind="refresh",
        start_time=datetime(2025, 3, 1, 10, 0),
        message="",
        environment={},
        config={},
        result="in-progress",
    )
    record = update_record_from_summary(summary)
    assert record.end is None and record.duration is None and record.release is None and record.commit is None
    assert record.version == 0


# --- state exports, errors, paths -----------------------------------------------------------------


def test_pending_operations_from_an_export() -> None:
    deployment = {
        "manifest": {},
        "resources": [{"urn": FN_URN}],
        "pending_operations": [{"resource": {"urn": FN_URN, "type": FN}, "type": "creating"}],
    }
    pending = pending_from_deployment(deployment)
    assert [(p.name, p.type, p.kind) for p in pending] == [("prod-api", FN, "creating")]
    assert pending_from_deployment({"resources": []}) == []


def test_engine_message_keeps_the_engines_error_lines_and_redacts() -> None:
    text = (
        "\n code: 255\n stdout: Updating (prod)\n stderr: warning: something\n"
        "error: update failed: AccessDenied for token ghp_" + "a" * 36 + "\n"
    )
    assert engine_message(text) == "update failed: AccessDenied for token [secret]"
    assert engine_message("\n code: 1\n stdout: \n stderr: boom\nbad thing\n") == "boom bad thing"


def test_engine_message_prefers_the_engines_diagnostics_then_stdout_errors() -> None:
    text = "\n code: 255\n stdout: Updating (prod)\n stderr: error: update failed\n"
    diagnostics = ["prod-api: creating Lambda Function: AccessDeniedException: password=hunter2xyz"]
    assert engine_message(text, diagnostics=diagnostics) == (
        "prod-api: creating Lambda Function: AccessDeniedException: password=[secret]"
    )
    in_stdout = (
        "\n code: 255\n stdout: Updating (prod)\n"
        "error: creating Lambda Function (prod-api): ResourceConflictException\n"
        " stderr: error: update failed\n"
    )
    assert (
        engine_message(in_stdout)
        == "creating Lambda Function (prod-api): ResourceConflictException update failed"
    )


def test_the_event_log_keeps_error_diagnostics_cleaned_and_named() -> None:
    log = local._EventLog(None)
    for i, (severity, message, urn) in enumerate(
        [
            ("info", "Running program", ""),
            ("error", "<{%fg 1%}>error: <{%reset%}>creating Lambda Function: AccessDenied\n", FN_URN),
            ("error", "update failed", "urn:pulumi:prod::stageline::pulumi:pulumi:Stack::stageline-prod"),
            ("warning", "deprecated", FN_URN),
        ]
    ):
        log(
            EngineEvent.from_json(
                {
                    "sequence": i,
                    "timestamp": 0,
                    "diagnosticEvent": {"message": message, "color": "raw", "severity": severity, "urn": urn},
                }
            )
        )
    assert log.diagnostics == ["prod-api: creating Lambda Function: AccessDenied", "update failed"]
    assert not log.started
    log(EngineEvent.from_json({"sequence": 9, "timestamp": 0, "preludeEvent": {"config": {}}}))
    assert log.started


def test_property_paths() -> None:
    assert split_property_path('tags["aws:cloudformation:stack-name"]') == [
        "tags",
        "aws:cloudformation:stack-name",
    ]
    assert split_property_path("rules[0].cidr") == ["rules", 0, "cidr"]
    doc = {"rules": [{"cidr": "10.0.0.0/8"}], "tags": {"a.b": "x"}}
    assert value_at(doc, "rules[0].cidr") == "10.0.0.0/8"
    assert value_at(doc, 'tags["a.b"]') == "x"
    assert value_at(doc, "rules[3].cidr") is None
    assert parse_urn(FN_URN) == (FN, "prod-api")


def test_project_root_is_found_by_walking_up(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: x\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project_root(deep) == tmp_path.resolve()


def test_no_project_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match=r"no Pulumi\.yaml") as info:
        find_project_root(tmp_path)
    assert info.value.exit_code == USAGE


def test_backend_comes_from_the_environment_or_defaults_to_local_state(tmp_path: Path) -> None:
    assert choose_backend(tmp_path, {"PULUMI_BACKEND_URL": "s3://state-bucket"}) == BackendInfo(
        url="s3://state-bucket", source="PULUMI_BACKEND_URL"
    )
    local = choose_backend(tmp_path, {})
    assert local.url == (tmp_path / ".stageline" / "state").as_uri() and local.source == "default"
    assert "default, local" in local.describe()


def test_secrets_provider_is_never_invented_for_a_shared_backend(tmp_path: Path) -> None:
    shared = BackendInfo(url="s3://state-bucket", source="PULUMI_BACKEND_URL")
    with pytest.raises(EngineUnavailable, match="PULUMI_CONFIG_PASSPHRASE"):
        secrets_environment(shared, {}, {"prod": {"config": {}}})
    assert secrets_environment(shared, {"PULUMI_CONFIG_PASSPHRASE": "x"}, {})[0] == {}
    kms = {"prod": {"secretsprovider": "awskms://alias/stageline"}}
    assert secrets_environment(shared, {}, kms)[0] == {}
    cloud = BackendInfo(url="https://api.pulumi.com", source="PULUMI_BACKEND_URL")
    assert secrets_environment(cloud, {}, {"prod": {}})[0] == {}
    local = choose_backend(tmp_path, {})
    extra, note = secrets_environment(local, {}, {"prod": {}})
    assert extra == {"PULUMI_CONFIG_PASSPHRASE": ""} and "empty passphrase" in note


def test_stack_selection_rules() -> None:
    fake = FakeEngine(("dev", "staging", "prod"))
    assert resolve_stacks(fake, ("prod", "dev", "prod"), False) == ["prod", "dev"]
    assert resolve_stacks(fake, (), True) == ["dev", "prod", "staging"]
    with pytest.raises(UnknownStackError, match=r"unknown stack 'qa' \(known stacks: dev, prod, staging\)"):
        resolve_stacks(fake, ("qa",), False)
    with pytest.raises(errors.ConfigurationError, match="or --all"):
        resolve_stacks(fake, (), False)
    with pytest.raises(errors.ConfigurationError, match="not both"):
        resolve_stacks(fake, ("dev",), True)


def test_secret_object_config_is_masked_leaf_by_leaf(tmp_path: Path) -> None:
    from pulumi.automation import ConfigValue

    class SecretStack:
        name = "prod"

        def get_all_config(self) -> dict[str, ConfigValue]:
            return {
                "stageline:db": ConfigValue(value='{"user": "app", "password": "hunter2-pw"}', secret=True),
                "aws:region": ConfigValue(value="eu-west-1", secret=False),
            }

    engine = local.LocalEngine(tmp_path, BackendInfo(url="file:///x", source="default"), {})
    engine._remember_secrets(SecretStack())  # type: ignore[arg-type]
    message = engine_message(
        "\n code: 1\n stdout: \n stderr: error: login failed with hunter2-pw\n", engine._secret_values
    )
    assert message == "login failed with [secret]"
    assert "eu-west-1" not in engine._secret_values


# --- what the real engine showed (tests/engine/test_defects.py), on its event and message shapes -------


def test_drift_values_of_an_input_diff_come_from_the_inputs_not_the_outputs() -> None:
    # A refresh's detailed diff is framed on the inputs: `tags` here is an input path, and the outputs
    # hold the provider's view (tagsAll merged in), which is not what drifted.
    recorded = {
        "inputs": {"tags": {"Owner": "team"}},
        "outputs": {"tags": {"Owner": "team", "Stage": "prod"}, "tagsAll": {"Owner": "team"}},
    }
    refreshed = {
        "inputs": {"tags": {"Owner": "someone"}},
        "outputs": {"tags": {"Owner": "someone", "Stage": "prod"}, "tagsAll": {"Owner": "someone"}},
    }
    event = step_event("resOutputsEvent", "update", BUCKET_URN, BUCKET, old=recorded, new=refreshed)
    metadata = event.res_outputs_event.metadata  # type: ignore[union-attr]
    metadata.detailed_diff = {
        "tags": type("PropertyDiff", (), {"diff_kind": "update", "input_diff": True})(),
        "tagsAll": type("PropertyDiff", (), {"diff_kind": "update", "input_diff": False})(),
    }
    [resource] = drift_report_from_events("prod", [event]).resources
    assert [(p.path, p.old, p.new) for p in resource.properties] == [
        ("tags", {"Owner": "team"}, {"Owner": "someone"}),  # the inputs
        ("tagsAll", {"Owner": "team"}, {"Owner": "someone"}),  # an output diff: the outputs
    ]


def test_an_input_diff_path_missing_from_the_inputs_is_read_from_the_outputs() -> None:
    old = {"inputs": {}, "outputs": {"memorySize": 1024}}
    new = {"inputs": {}, "outputs": {"memorySize": 512}}
    event = EngineEvent.from_json(
        {
            "sequence": 1,
            "timestamp": 0,
            "resOutputsEvent": {
                "metadata": {
                    "op": "update",
                    "urn": FN_URN,
                    "type": FN,
                    "provider": "",
                    "old": {"urn": FN_URN, "type": FN, **old},
                    "new": {"urn": FN_URN, "type": FN, **new},
                    "detailedDiff": {"memorySize": {"diffKind": "update", "inputDiff": True}},
                }
            },
        }
    )
    [resource] = drift_report_from_events("prod", [event]).resources
    assert [(p.path, p.old, p.new) for p in resource.properties] == [("memorySize", 1024, 512)]


def test_a_secret_nested_in_an_object_output_is_masked_where_it_is() -> None:
    deployment = {
        "resources": [
            {
                "type": "pulumi:pulumi:Stack",
                "outputs": {
                    "settings": {"plain": "visible", "key": {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270"}},
                    "keys": ["a", {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270"}],
                    "token": {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270"},
                },
            }
        ]
    }
    paths = model.engine_secret_paths(model.stack_outputs_state(deployment))
    assert paths == {"settings.key", "keys[1]", "token"}
    outputs = model.StackOutputs(
        stack="prod",
        values={"settings": {"plain": "visible", "key": "n3sted"}, "keys": ["a", "b-secret"], "token": "t0k"},
        secret_keys=frozenset({"token"}),
        secret_paths=frozenset(paths),
    )
    assert outputs.to_json() == {
        "settings": {"plain": "visible", "key": "[secret]"},
        "keys": ["a", "[secret]"],
        "token": "[secret]",
    }
    assert sorted(outputs.secret_values()) == ["b-secret", "n3sted", "t0k"]
    assert outputs.values["settings"]["key"] == "n3sted"  # the driver still reads it


def test_history_of_a_self_managed_backend_is_numbered_by_position_pulumi_clouds_is_kept() -> None:
    def entry(version: int, message: str) -> model.UpdateRecord:
        return model.UpdateRecord(
            version=version, kind="update", result="succeeded", start=NOW, message=message
        )

    diy = number_history([entry(0, "c"), entry(0, "b"), entry(0, "a")])  # newest first, as listed
    assert [(r.version, r.message) for r in diy] == [(3, "c"), (2, "b"), (1, "a")]
    cloud = number_history([entry(41, "b"), entry(40, "a")])
    assert [r.version for r in cloud] == [41, 40]


NOW = datetime(2025, 6, 1, tzinfo=UTC)


def gone_pid() -> int:
    """The pid of a process that has run and exited (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_locks_named_in_the_clis_refusal_are_parsed_and_proven_stale_only_on_this_host() -> None:
    dead = gone_pid()
    host = socket.gethostname()
    text = (
        "error: the stack is currently locked by 3 lock(s). Either wait for the other process(es) to end or "
        "delete the lock file with `pulumi cancel`.\n"
        f"  file:///s/.pulumi/locks/organization/p/dev/a.json: created by ci@{host} (pid {dead}) at "
        "2025-06-01T10:00:00Z\n"
        f"  file:///s/.pulumi/locks/organization/p/dev/b.json: created by me@{host} (pid {os.getpid()}) at "
        "2025-06-01T10:00:00Z\n"
        f"  s3://team/.pulumi/locks/organization/p/dev/c.json: created by ci@elsewhere (pid {dead}) at "
        "2025-06-01T10:00:00Z\n"
    )
    locks = process.locks_from_message(text)
    assert [(lock.location.rsplit("/", 1)[1], lock.stale) for lock in locks] == [
        ("a.json", True),  # this host, process gone
        ("b.json", False),  # this host, process running
        ("c.json", False),  # another host: never provably stale
    ]
    assert locks[0].created == datetime(2025, 6, 1, 10, tzinfo=UTC) and locks[0].user == "ci"


def test_a_lock_file_is_read_and_only_a_stale_one_is_removed(tmp_path: Path) -> None:
    dead = gone_pid()
    folder = tmp_path / "state" / ".pulumi" / "locks" / "organization" / "proj" / "dev"
    folder.mkdir(parents=True)
    stamp = "2025-06-01T10:00:00.123456789Z"
    for name, pid in (("stale.json", dead), ("live.json", os.getpid())):
        (folder / name).write_text(
            json.dumps({"pid": pid, "username": "u", "hostname": socket.gethostname(), "timestamp": stamp})
        )
    (tmp_path / "Pulumi.yaml").write_text("name: proj\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    engine = local.LocalEngine(tmp_path, BackendInfo(url=(tmp_path / "state").as_uri(), source="default"), {})
    assert sorted((Path(lock.location).name, lock.stale) for lock in engine.locks("dev")) == [
        ("live.json", False),
        ("stale.json", True),
    ]
    [removed] = engine.remove_stale_locks("dev")
    assert Path(removed.location).name == "stale.json" and not (folder / "stale.json").exists()
    assert (folder / "live.json").exists()


def test_a_protected_resource_a_preview_refused_becomes_its_step() -> None:
    protected = "urn:pulumi:prod::stageline::aws:s3/bucketV2:BucketV2::data"
    errors = [
        (
            protected,
            f'unable to replace resource "{protected}" as it is currently marked for protection. To ...',
        ),
        ("", "preview failed"),
    ]
    assert protected_step_urns(errors) == {protected: "replace"}
    assert protected_step_urns([*errors, ("", "creating bucket: AccessDenied")]) is None
    assert protected_step_urns([("", "preview failed")]) is None
    deleted = [
        (protected, f'Preview failed: resource "{protected}" cannot be deleted because it is protected.')
    ]
    assert protected_step_urns(deleted) == {protected: "delete"}

    events = [
        step_event("resourcePreEvent", "replace", protected, "aws:s3/bucketV2:BucketV2", diffs=["bucket"])
    ]
    summary = preview_summary_from_events("prod", events, {"same": 3}, protected={protected: "replace"})
    [step] = summary.dangerous
    assert (step.op, step.protected, step.stateful, step.changed) == ("replace", True, True, ("bucket",))
    assert summary.counts == {"same": 3, "replace": 1}
    # Without a step event, the refused step is still reported.
    bare = preview_summary_from_events("prod", [], {"same": 3}, protected={protected: "delete"})
    assert [(s.op, s.name, s.protected) for s in bare.steps] == [("delete", "data", True)]


def test_only_a_release_change_is_the_drivers_own_write() -> None:
    committed = (
        b"encryptionsalt: v1:abc\nconfig:\n  aws:region: eu-west-1\n  stageline:release:\n    version: r1\n"
    )
    rewritten = (
        b'config:\n  aws:region: eu-west-1\n  stageline:release: {"version": "r2"}\nencryptionsalt: v1:abc\n'
    )
    assert project.differs_only_in_release(committed, rewritten)
    edited = rewritten.replace(b"eu-west-1", b"us-east-1")
    assert not project.differs_only_in_release(committed, edited)
    assert not project.differs_only_in_release(
        committed, b"encryptionsalt: v1:new\n" + committed[len(b"encryptionsalt: v1:abc\n") :]
    )


def test_a_cli_killed_by_a_signal_is_said_so(tmp_path: Path) -> None:
    from pulumi.automation import CommandError
    from pulumi.automation._cmd import CommandResult

    engine = local.LocalEngine(tmp_path, BackendInfo(url="file:///x", source="default"), {}, project="p")
    error = engine._translate(CommandError(CommandResult(stdout="", stderr="warning: noise", code=-9)), "dev")
    assert str(error).startswith("the Pulumi CLI was killed (SIGKILL) before it finished")
    assert "--clear-pending" in str(error)


def _git(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    identity = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e.x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e.x",
    }
    done = subprocess.run(
        ["git", *args],
        cwd=root,
        env={**os.environ, **identity, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_the_cli_git_status_does_not_see_the_drivers_own_writes(tmp_path: Path) -> None:
    from automation.gitinfo import worktree

    root = tmp_path / "repo"
    (root / ".venv").mkdir(parents=True)  # a real virtualenv directory, ignored as `.venv/`
    (root / ".gitignore").write_text(".venv/\n")
    (root / "Pulumi.yaml").write_text("name: p\nruntime: python\n")
    committed = "config:\n  aws:region: eu-west-1\n  stageline:release:\n    version: r1\n"
    (root / "Pulumi.dev.yaml").write_text(committed)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "init")
    engine = local.LocalEngine(root, BackendInfo(url="file:///x", source="default"), {}, project="p")

    def status(checkout: Path, work_dir: Path | None) -> str:
        with engine._driver_write_unseen("dev", work_dir) as env:
            return _git(checkout, "status", "--porcelain", env=env)

    driver_write = 'config:\n  aws:region: eu-west-1\n  stageline:release: {"version": "r2"}\n'
    (root / "Pulumi.dev.yaml").write_text(driver_write)
    assert status(root, None) == ""
    assert _git(root, "status", "--porcelain") == "M Pulumi.dev.yaml"  # the user's index is untouched
    (root / "Pulumi.dev.yaml").write_text(driver_write.replace("eu-west-1", "us-east-1"))
    assert status(root, None) == "M Pulumi.dev.yaml"  # not only the release: the update is dirty
    (root / "Pulumi.dev.yaml").write_text(committed)
    (root / "notes.txt").write_text("mine\n")
    assert status(root, None) == "?? notes.txt"

    sha = _git(root, "rev-parse", "HEAD")
    with worktree(root, sha, tmp_path / "wt") as checkout:
        (checkout / "Pulumi.dev.yaml").write_text(driver_write)
        assert "?? .venv" in _git(checkout, "status", "--porcelain")  # the driver's link to the venv
        assert status(checkout, checkout) == ""
