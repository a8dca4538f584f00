"""Observability: an encrypted alert topic, alarms per function and for the API, a dashboard, a budget."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra.config import AlarmsConfig, ConfigError, load, parse, read_stack_file
from infra.observability import (
    MonitoredFunction,
    Observability,
    ObservabilityArgs,
    alert_key_policy,
    alert_topic_policy,
    api_alarm,
    budget_cost_filter,
    dashboard_body,
    function_alarms,
)
from infra.simulate import ACCOUNT_ID, SimResource, Simulation, simulate

ROOT = Path(__file__).resolve().parents[2]
API_ID = "a1b2c3d4"


def stack_values(stack: str = "dev") -> dict[str, Any]:
    return copy.deepcopy(read_stack_file(ROOT, stack).values)


def run_observability(
    values: dict[str, Any], stack: str = "dev", canary_version: str | None = None
) -> Simulation:
    def program() -> None:
        cfg = load()
        functions = [
            MonitoredFunction(
                service=s.name, function_name=f"{cfg.prefix}-{s.name}", canary_version=canary_version
            )
            for s in cfg.services
        ]
        obs = Observability(
            "observability",
            ObservabilityArgs.from_config(
                cfg, functions=functions, api_name=f"{cfg.prefix}-http", api_id=API_ID
            ),
        )
        pulumi.export("alarmNames", obs.alarm_names)
        pulumi.export("topicArn", obs.topic_arn)

    return simulate(values, stack=stack, program=program)


def config_error(values: dict[str, Any], stack: str = "dev") -> str:
    with pytest.raises(ConfigError) as info:
        parse(values, stack=stack, region="eu-west-1")
    assert "\n" not in str(info.value)
    return str(info.value)


def alarms_by_name(sim: Simulation) -> dict[str, SimResource]:
    return {a.inputs["name"]: a for a in sim.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}


@pytest.fixture(scope="module")
def prod() -> Simulation:
    return run_observability(stack_values("prod"), stack="prod")


@pytest.fixture(scope="module")
def dev() -> Simulation:
    values = stack_values("dev")
    del values["alarms"]["email"]
    values["budget"]["emails"] = []
    return run_observability(values)


# --- pure rules ---------------------------------------------------------------------------------


def test_function_alarms_watch_the_live_alias_and_the_whole_function_for_throttles() -> None:
    cfg = AlarmsConfig(error_threshold=2, throttle_threshold=3, p95_duration_ms=1500)
    specs = {
        s.name: s
        for s in function_alarms("stageline-dev", MonitoredFunction("api", "stageline-dev-api"), cfg)
    }
    assert set(specs) == {
        "stageline-dev-api-errors",
        "stageline-dev-api-throttles",
        "stageline-dev-api-p95-duration",
    }
    live = {"FunctionName": "stageline-dev-api", "Resource": "stageline-dev-api:live"}
    errors = specs["stageline-dev-api-errors"]
    assert (errors.metric_name, errors.statistic, errors.threshold, dict(errors.dimensions)) == (
        "Errors",
        "Sum",
        2,
        live,
    )
    throttles = specs["stageline-dev-api-throttles"]
    assert (throttles.metric_name, throttles.statistic, throttles.threshold, dict(throttles.dimensions)) == (
        "Throttles",
        "Sum",
        3,
        {"FunctionName": "stageline-dev-api"},
    )
    p95 = specs["stageline-dev-api-p95-duration"]
    assert (p95.metric_name, p95.statistic, p95.extended_statistic, p95.threshold, dict(p95.dimensions)) == (
        "Duration",
        None,
        "p95",
        1500,
        live,
    )


def test_a_canary_gets_its_own_error_alarm_on_the_executed_version() -> None:
    specs = function_alarms(
        "stageline-prod", MonitoredFunction("api", "stageline-prod-api", canary_version="8"), AlarmsConfig()
    )
    canary = next(s for s in specs if s.name == "stageline-prod-api-canary-errors")
    assert dict(canary.dimensions) == {
        "FunctionName": "stageline-prod-api",
        "Resource": "stageline-prod-api:live",
        "ExecutedVersion": "8",
    }
    assert len(specs) == 4


def test_the_api_alarm_counts_5xx_of_this_api() -> None:
    spec = api_alarm("stageline-dev", "stageline-dev-http", API_ID, AlarmsConfig(api_5xx_threshold=4))
    assert (spec.name, spec.namespace, spec.metric_name, dict(spec.dimensions), spec.threshold) == (
        "stageline-dev-http-5xx",
        "AWS/ApiGateway",
        "5xx",
        {"ApiId": API_ID},
        4,
    )


def test_the_topic_admits_this_environments_alarms_and_this_accounts_budgets() -> None:
    topic = f"arn:aws:sns:eu-west-1:{ACCOUNT_ID}:stageline-dev-alerts"
    alarms, budgets, tls = alert_topic_policy(topic, ACCOUNT_ID, "stageline-dev-")["Statement"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Action"] == "sns:Publish" and alarms["Resource"] == topic
    assert alarms["Condition"]["ArnLike"]["aws:SourceArn"] == (
        f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT_ID}:alarm:stageline-dev-*"
    )
    assert budgets["Principal"] == {"Service": "budgets.amazonaws.com"}
    assert budgets["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT_ID}
    assert budgets["Condition"]["ArnLike"] == {"aws:SourceArn": f"arn:aws:budgets::{ACCOUNT_ID}:*"}
    assert (tls["Effect"], tls["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})


def test_the_alert_key_lets_cloudwatch_and_budgets_encrypt_and_nobody_else_outside_iam() -> None:
    statements = {s["Sid"]: s for s in alert_key_policy("aws", ACCOUNT_ID)["Statement"]}
    assert statements["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}
    services = {s["Principal"].get("Service") for s in statements.values()} - {None}
    assert services == {"cloudwatch.amazonaws.com", "budgets.amazonaws.com"}
    for sid in ("CloudWatchEncryptsAlarmMessages", "BudgetsEncryptNotifications"):
        assert statements[sid]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert all(
        "AWS" not in s["Principal"] or s["Principal"]["AWS"].endswith(":root") for s in statements.values()
    )


def test_the_dashboard_shows_alarms_every_function_and_the_api() -> None:
    body = dashboard_body(
        "eu-west-1",
        [("api", "stageline-dev-api"), ("worker", "stageline-dev-worker")],
        API_ID,
        ["arn:aws:cloudwatch:eu-west-1:1:alarm:a"],
    )
    widgets = body["widgets"]
    assert widgets[0]["properties"]["alarms"] == ["arn:aws:cloudwatch:eu-west-1:1:alarm:a"]
    metrics = [m for w in widgets if w["type"] == "metric" for m in w["properties"]["metrics"]]
    for fn in ("stageline-dev-api", "stageline-dev-worker"):
        assert ["AWS/Lambda", "Errors", "FunctionName", fn, "Resource", f"{fn}:live"] in metrics
    assert ["AWS/ApiGateway", "5xx", "ApiId", API_ID] in metrics
    assert {w["properties"]["region"] for w in widgets if w["type"] == "metric"} == {"eu-west-1"}
    # widgets never overlap
    cells = [
        (w["x"] + dx, w["y"] + dy) for w in widgets for dx in range(w["width"]) for dy in range(w["height"])
    ]
    assert len(cells) == len(set(cells))


def test_the_budget_counts_costs_tagged_with_the_environment() -> None:
    assert budget_cost_filter("staging") == ("TagKeyValue", ["user:environment$staging"])


# --- the component under mocks ------------------------------------------------------------------


def test_the_alert_topic_is_encrypted_with_a_key_cloudwatch_can_use(prod: Simulation) -> None:
    (topic,) = prod.of_type("aws:sns/topic:Topic")
    (key,) = prod.of_type("aws:kms/key:Key")
    assert topic.inputs["name"] == "stageline-prod-alerts"
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    assert topic.inputs["kmsMasterKeyId"] != "alias/aws/sns"
    assert key.inputs["enableKeyRotation"] is True
    assert json.loads(key.inputs["policy"]) == alert_key_policy("aws", ACCOUNT_ID)
    (policy,) = prod.of_type("aws:sns/topicPolicy:TopicPolicy")
    assert policy.inputs["arn"] == topic.outputs["arn"]
    assert json.loads(policy.inputs["policy"]) == alert_topic_policy(
        topic.outputs["arn"], ACCOUNT_ID, "stageline-prod-"
    )


def test_the_on_call_address_is_subscribed_when_configured(prod: Simulation, dev: Simulation) -> None:
    (subscription,) = prod.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert subscription.inputs["protocol"] == "email"
    assert subscription.inputs["endpoint"] == "oncall@acme-shop.example"
    assert subscription.inputs["topic"] == prod.of_type("aws:sns/topic:Topic")[0].outputs["arn"]
    assert dev.of_type("aws:sns/topicSubscription:TopicSubscription") == []


def test_every_function_has_an_error_a_throttle_and_a_p95_alarm(prod: Simulation) -> None:
    alarms = alarms_by_name(prod)
    for service in ("api", "worker"):
        fn = f"stageline-prod-{service}"
        errors = alarms[f"{fn}-errors"].inputs
        assert errors["namespace"] == "AWS/Lambda"
        assert errors["metricName"] == "Errors"
        assert errors["statistic"] == "Sum"
        assert errors["dimensions"] == {"FunctionName": fn, "Resource": f"{fn}:live"}
        assert errors["threshold"] == 1  # prod errorThreshold
        assert alarms[f"{fn}-throttles"].inputs["metricName"] == "Throttles"
        p95 = alarms[f"{fn}-p95-duration"].inputs
        assert (p95["extendedStatistic"], p95["threshold"]) == ("p95", 2000)
        assert p95["evaluateLowSampleCountPercentiles"] == "ignore"
        assert "statistic" not in p95
    assert not [name for name in alarms if "canary" in name]


def test_the_api_has_a_5xx_alarm(prod: Simulation) -> None:
    alarm = alarms_by_name(prod)["stageline-prod-http-5xx"].inputs
    assert (alarm["namespace"], alarm["metricName"], alarm["dimensions"]) == (
        "AWS/ApiGateway",
        "5xx",
        {"ApiId": API_ID},
    )


def test_every_alarm_notifies_the_topic_and_stays_green_without_traffic(prod: Simulation) -> None:
    topic = prod.of_type("aws:sns/topic:Topic")[0].outputs["arn"]
    for alarm in prod.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        assert alarm.inputs["alarmActions"] == [topic]
        assert alarm.inputs["okActions"] == [topic]
        assert alarm.inputs["treatMissingData"] == "notBreaching"
        assert alarm.inputs["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert (alarm.inputs["period"], alarm.inputs["evaluationPeriods"]) == (60, 2)  # prod alarms config


def test_exported_alarm_names_are_exactly_the_alarms(prod: Simulation) -> None:
    assert sorted(prod.outputs["alarmNames"]) == sorted(alarms_by_name(prod))
    assert len(prod.outputs["alarmNames"]) == 2 * 3 + 1


def test_during_a_canary_the_new_version_has_its_own_error_alarm() -> None:
    sim = run_observability(stack_values("prod"), stack="prod", canary_version="8")
    alarms = alarms_by_name(sim)
    for service in ("api", "worker"):
        fn = f"stageline-prod-{service}"
        assert alarms[f"{fn}-canary-errors"].inputs["dimensions"] == {
            "FunctionName": fn,
            "Resource": f"{fn}:live",
            "ExecutedVersion": "8",
        }
    assert sorted(sim.outputs["alarmNames"]) == sorted(alarms)


def test_thresholds_follow_the_stack_config(dev: Simulation) -> None:
    alarms = alarms_by_name(dev)
    assert alarms["stageline-dev-api-errors"].inputs["threshold"] == 5
    assert alarms["stageline-dev-api-throttles"].inputs["threshold"] == 5
    assert alarms["stageline-dev-api-p95-duration"].inputs["threshold"] == 5000
    assert alarms["stageline-dev-http-5xx"].inputs["threshold"] == 10
    assert {(a.inputs["period"], a.inputs["evaluationPeriods"]) for a in alarms.values()} == {(300, 1)}


def test_the_dashboard_is_named_after_the_environment_and_shows_its_alarms(prod: Simulation) -> None:
    (dashboard,) = prod.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dashboard.inputs["dashboardName"] == "stageline-prod"
    body = json.loads(dashboard.inputs["dashboardBody"])
    alarm_arns = sorted(a.outputs["arn"] for a in prod.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"))
    assert sorted(body["widgets"][0]["properties"]["alarms"]) == alarm_arns
    assert body == dashboard_body(
        "eu-west-1",
        [("api", "stageline-prod-api"), ("worker", "stageline-prod-worker")],
        API_ID,
        body["widgets"][0]["properties"]["alarms"],
    )


def test_the_budget_notifies_at_every_threshold(prod: Simulation) -> None:
    (budget,) = prod.of_type("aws:budgets/budget:Budget")
    topic = prod.of_type("aws:sns/topic:Topic")[0].outputs["arn"]
    assert budget.inputs["name"] == "stageline-prod-monthly"
    assert (budget.inputs["budgetType"], budget.inputs["timeUnit"]) == ("COST", "MONTHLY")
    assert (float(budget.inputs["limitAmount"]), budget.inputs["limitUnit"]) == (1000.0, "USD")
    assert budget.inputs["costFilters"] == [{"name": "TagKeyValue", "values": ["user:environment$prod"]}]
    notifications = budget.inputs["notifications"]
    assert [n["threshold"] for n in notifications] == [50, 80, 100, 120]
    for n in notifications:
        assert (n["comparisonOperator"], n["notificationType"], n["thresholdType"]) == (
            "GREATER_THAN",
            "ACTUAL",
            "PERCENTAGE",
        )
        assert n["subscriberEmailAddresses"] == ["platform@acme-shop.example", "finance@acme-shop.example"]
        assert n["subscriberSnsTopicArns"] == [topic]
    (topic_policy,) = prod.of_type("aws:sns/topicPolicy:TopicPolicy")
    assert topic_policy.urn in budget.dependencies


def test_a_budget_without_emails_still_notifies_the_topic(dev: Simulation) -> None:
    (budget,) = dev.of_type("aws:budgets/budget:Budget")
    for n in budget.inputs["notifications"]:
        assert "subscriberEmailAddresses" not in n
        assert len(n["subscriberSnsTopicArns"]) == 1


# --- config errors --------------------------------------------------------------------------------


def test_a_budget_without_a_limit_is_a_config_error() -> None:
    values = stack_values()
    del values["budget"]["monthlyLimitUsd"]
    assert config_error(values) == "stageline:budget.monthlyLimitUsd is required"


def test_more_budget_emails_than_aws_allows_is_a_config_error() -> None:
    values = stack_values()
    values["budget"]["emails"] = [f"person{i}@acme-shop.example" for i in range(11)]
    assert config_error(values) == (
        "stageline:budget.emails allows at most 10 addresses (an AWS Budgets limit), got 11"
    )


def test_an_alarm_period_cloudwatch_rejects_is_a_config_error() -> None:
    values = stack_values()
    values["alarms"]["periodSeconds"] = 45
    assert config_error(values) == "stageline:alarms.periodSeconds must be a multiple of 60, got 45"


def test_sub_minute_alarm_periods_are_refused_because_the_metrics_are_per_minute() -> None:
    values = stack_values()
    values["alarms"]["periodSeconds"] = 30
    assert config_error(values) == "stageline:alarms.periodSeconds must be a multiple of 60, got 30"


def test_an_alarm_window_longer_than_a_day_is_a_config_error() -> None:
    values = stack_values()
    values["alarms"]["periodSeconds"] = 3600
    values["alarms"]["evaluationPeriods"] = 48
    assert config_error(values) == (
        "stageline:alarms.evaluationPeriods times periodSeconds must be at most one day (86400 s), "
        "got 48 x 3600"
    )


def test_duplicate_or_too_many_budget_thresholds_are_config_errors() -> None:
    values = stack_values()
    values["budget"]["thresholds"] = [80, 80]
    assert config_error(values) == "stageline:budget.thresholds lists a percentage twice: [80, 80]"
    values["budget"]["thresholds"] = list(range(10, 130, 10))
    assert config_error(values) == (
        "stageline:budget.thresholds allows at most 10 (AWS Budgets' notification limit), got 12"
    )


def test_an_unknown_alarms_key_is_a_config_error_with_a_suggestion() -> None:
    values = stack_values()
    values["alarms"]["errorTreshold"] = 3
    assert config_error(values) == (
        'stageline:alarms.errorTreshold is not a known key (did you mean "errorThreshold"?)'
    )


def test_a_malformed_alert_email_is_a_config_error() -> None:
    values = stack_values()
    values["alarms"]["email"] = "oncall"
    assert config_error(values) == 'stageline:alarms.email must look like an e-mail address, got "oncall"'
