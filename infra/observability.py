"""Alerts, alarms, a dashboard and a budget for one environment.

The alarm names are exported: promotion watches them while a release bakes and fails the
release if one fires. Everything that varies by environment (thresholds, periods, recipients, the budget)
comes from the stack config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from infra.config.model import AlarmsConfig, BudgetConfig
from infra.services import ALIAS_NAME

if TYPE_CHECKING:
    from infra.config.model import StackConfig


def topic_name(prefix: str) -> str:
    return f"{prefix}-alerts"


def budget_name(prefix: str) -> str:
    return f"{prefix}-monthly"


@dataclass(frozen=True)
class AlarmSpec:
    """One CloudWatch metric alarm, before it becomes a resource."""

    key: str  # short logical suffix, e.g. "api-errors"
    name: str
    description: str
    namespace: str
    metric_name: str
    dimensions: Mapping[str, pulumi.Input[str]]
    threshold: float
    statistic: str | None = None  # "Sum" …, or
    extended_statistic: str | None = None  # a percentile, e.g. "p95"


@dataclass(frozen=True)
class MonitoredFunction:
    service: str
    function_name: str
    canary_version: pulumi.Input[str] | None = None  # the version a canary sends traffic to, if any


def function_alarms(prefix: str, fn: MonitoredFunction, cfg: AlarmsConfig) -> list[AlarmSpec]:
    """Errors, throttles and p95 duration for one function (and its canary, during one).

    Errors and duration are measured on the `live` alias (dimension Resource "<fn>:live"):
    that is the traffic users get and the traffic a release bakes under, and it leaves out
    direct invocations of other versions (someone testing a version by hand). Throttles are
    measured on the whole function: reserved concurrency is a function-wide limit, so a
    throttle anywhere means live traffic is about to be refused too.
    """
    live = {"FunctionName": fn.function_name, "Resource": f"{fn.function_name}:{ALIAS_NAME}"}
    base = f"{prefix}-{fn.service}"
    specs = [
        AlarmSpec(
            key=f"{fn.service}-errors",
            name=f"{base}-errors",
            description=f"{fn.function_name}:{ALIAS_NAME} returned errors",
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions=live,
            statistic="Sum",
            threshold=cfg.error_threshold,
        ),
        AlarmSpec(
            key=f"{fn.service}-throttles",
            name=f"{base}-throttles",
            description=f"{fn.function_name} invocations were throttled",
            namespace="AWS/Lambda",
            metric_name="Throttles",
            dimensions={"FunctionName": fn.function_name},
            statistic="Sum",
            threshold=cfg.throttle_threshold,
        ),
        AlarmSpec(
            key=f"{fn.service}-p95-duration",
            name=f"{base}-p95-duration",
            description=f"{fn.function_name}:{ALIAS_NAME} p95 duration reached {cfg.p95_duration_ms} ms",
            namespace="AWS/Lambda",
            metric_name="Duration",
            dimensions=live,
            extended_statistic="p95",
            threshold=cfg.p95_duration_ms,
        ),
    ]
    if fn.canary_version is not None:
        # With weighted routing Lambda also reports per ExecutedVersion: errors of the canary
        # alone, which the alias-wide alarm would dilute by the stable version's traffic.
        specs.append(
            AlarmSpec(
                key=f"{fn.service}-canary-errors",
                name=f"{base}-canary-errors",
                description=f"the canary version of {fn.function_name}:{ALIAS_NAME} returned errors",
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions={**live, "ExecutedVersion": fn.canary_version},
                statistic="Sum",
                threshold=cfg.error_threshold,
            )
        )
    return specs


def api_alarm(prefix: str, api_name: str, api_id: pulumi.Input[str], cfg: AlarmsConfig) -> AlarmSpec:
    return AlarmSpec(
        key="http-5xx",
        name=f"{prefix}-http-5xx",
        description=f"{api_name} answered with 5xx",
        namespace="AWS/ApiGateway",
        metric_name="5xx",
        dimensions={"ApiId": api_id},
        statistic="Sum",
        threshold=cfg.api_5xx_threshold,
    )


def alert_key_policy(partition: str, account_id: str) -> dict[str, Any]:
    """Key policy of the alert topic's key: the account administers it, publishers may use it."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                # The standard first statement of a KMS key policy: it hands control to the
                # account's IAM policies. Without it the key could become unmanageable.
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                # As AWS documents it for alarm actions: CloudWatch's calls to KMS on behalf of
                # an alarm do not carry the source context a condition could test.
                "Sid": "CloudWatchEncryptsAlarmMessages",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
            },
            {
                "Sid": "BudgetsEncryptNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "budgets.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnLike": {"aws:SourceArn": f"arn:{partition}:budgets::{account_id}:*"},
                },
            },
        ],
    }


def alert_topic_policy(topic_arn: str, account_id: str, alarm_name_prefix: str) -> dict[str, Any]:
    """Who may publish: this environment's alarms and this account's budgets, over TLS."""
    partition, region = topic_arn.split(":")[1], topic_arn.split(":")[3]
    alarm_arns = f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:{alarm_name_prefix}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "ArnLike": {"aws:SourceArn": f"{alarm_arns}*"},
                    "StringEquals": {"aws:SourceAccount": account_id},
                },
            },
            {
                "Sid": "BudgetsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "budgets.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {
                    "ArnLike": {"aws:SourceArn": f"arn:{partition}:budgets::{account_id}:*"},
                    "StringEquals": {"aws:SourceAccount": account_id},
                },
            },
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def dashboard_body(
    region: str, functions: Sequence[tuple[str, str]], api_id: str, alarm_arns: Sequence[str]
) -> dict[str, Any]:
    """The environment's dashboard: alarm states, then per-function and API metrics.

    `functions` is (service, function name) pairs.
    """
    widgets: list[dict[str, Any]] = [
        {
            "type": "alarm",
            "x": 0,
            "y": 0,
            "width": 24,
            "height": 3,
            "properties": {"title": "Alarms", "alarms": list(alarm_arns)},
        }
    ]
    y = 3
    for service, fn in functions:
        resource = f"{fn}:{ALIAS_NAME}"
        widgets.append(
            {
                "type": "metric",
                "x": 0,
                "y": y,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": f"{service}: invocations, errors, throttles",
                    "region": region,
                    "view": "timeSeries",
                    "stat": "Sum",
                    "period": 60,
                    "metrics": [
                        ["AWS/Lambda", "Invocations", "FunctionName", fn, "Resource", resource],
                        ["AWS/Lambda", "Errors", "FunctionName", fn, "Resource", resource],
                        ["AWS/Lambda", "Throttles", "FunctionName", fn],
                    ],
                },
            }
        )
        widgets.append(
            {
                "type": "metric",
                "x": 12,
                "y": y,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": f"{service}: duration",
                    "region": region,
                    "view": "timeSeries",
                    "period": 60,
                    "metrics": [
                        ["AWS/Lambda", "Duration", "FunctionName", fn, "Resource", resource, {"stat": "p50"}],
                        ["AWS/Lambda", "Duration", "FunctionName", fn, "Resource", resource, {"stat": "p95"}],
                        [
                            "AWS/Lambda",
                            "ConcurrentExecutions",
                            "FunctionName",
                            fn,
                            {"stat": "Maximum", "yAxis": "right"},
                        ],
                    ],
                },
            }
        )
        y += 6
    widgets.append(
        {
            "type": "metric",
            "x": 0,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {
                "title": "API: requests and errors",
                "region": region,
                "view": "timeSeries",
                "stat": "Sum",
                "period": 60,
                "metrics": [
                    ["AWS/ApiGateway", "Count", "ApiId", api_id],
                    ["AWS/ApiGateway", "4xx", "ApiId", api_id],
                    ["AWS/ApiGateway", "5xx", "ApiId", api_id],
                ],
            },
        }
    )
    widgets.append(
        {
            "type": "metric",
            "x": 12,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {
                "title": "API: latency",
                "region": region,
                "view": "timeSeries",
                "period": 60,
                "metrics": [
                    ["AWS/ApiGateway", "Latency", "ApiId", api_id, {"stat": "p50"}],
                    ["AWS/ApiGateway", "Latency", "ApiId", api_id, {"stat": "p95"}],
                    ["AWS/ApiGateway", "IntegrationLatency", "ApiId", api_id, {"stat": "p95"}],
                ],
            },
        }
    )
    return {"widgets": widgets}


def budget_cost_filter(environment: str) -> tuple[str, list[str]]:
    """Costs of resources tagged environment=<env> (every resource here carries that tag)."""
    return "TagKeyValue", [f"user:environment${environment}"]


@dataclass(frozen=True)
class ObservabilityArgs:
    name_prefix: str
    region: str
    environment: str
    functions: tuple[MonitoredFunction, ...]
    api_name: str
    api_id: pulumi.Input[str]
    alarms: AlarmsConfig
    budget: BudgetConfig

    @classmethod
    def from_config(
        cls,
        cfg: StackConfig,
        *,
        functions: Sequence[MonitoredFunction],
        api_name: str,
        api_id: pulumi.Input[str],
    ) -> ObservabilityArgs:
        return cls(
            name_prefix=cfg.prefix,
            region=cfg.region,
            environment=cfg.environment,
            functions=tuple(functions),
            api_name=api_name,
            api_id=api_id,
            alarms=cfg.alarms,
            budget=cfg.budget,
        )


class Observability(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    alarm_names: list[str]
    """Every alarm of the environment; promotion polls them while a release bakes."""
    dashboard_name: pulumi.Output[str]
    budget_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("stageline:infra:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.name_prefix

        identity = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        account_id = identity.account_id
        partition = identity.arn.apply(lambda arn: arn.split(":")[1])

        # CloudWatch and AWS Budgets publish to the alert topic, so SNS encrypts it with a key of
        # ours: the AWS-managed alias/aws/sns key's policy cannot be changed to let either service
        # use it, and with that key every alarm action and budget notification would fail (visible
        # only in the alarm history).
        key = aws.kms.Key(
            f"{name}-alerts-key",
            description=f"{prefix}: encrypts the alert topic; CloudWatch and Budgets may use it",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(partition, account_id).apply(
                lambda a: json.dumps(alert_key_policy(a[0], a[1]))
            ),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-alerts-key-alias",
            name=f"alias/{topic_name(prefix)}",
            target_key_id=key.key_id,
            opts=child,
        )
        topic = aws.sns.Topic(
            f"{name}-alerts", name=topic_name(prefix), kms_master_key_id=key.arn, opts=child
        )
        topic_policy = aws.sns.TopicPolicy(
            f"{name}-alerts-policy",
            arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, account_id).apply(
                lambda a: json.dumps(alert_topic_policy(a[0], a[1], f"{prefix}-"))
            ),
            opts=child,
        )
        if args.alarms.email:
            # E-mail subscriptions stay "pending confirmation" until the recipient clicks the link.
            aws.sns.TopicSubscription(
                f"{name}-alerts-email",
                topic=topic.arn,
                protocol="email",
                endpoint=args.alarms.email,
                opts=child,
            )

        specs = [s for fn in args.functions for s in function_alarms(prefix, fn, args.alarms)]
        specs.append(api_alarm(prefix, args.api_name, args.api_id, args.alarms))
        alarms = [self._alarm(name, spec, args.alarms, topic.arn) for spec in specs]

        functions = [(fn.service, fn.function_name) for fn in args.functions]
        region = args.region
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=prefix,
            dashboard_body=pulumi.Output.all(args.api_id, *[a.arn for a in alarms]).apply(
                lambda a: json.dumps(dashboard_body(region, functions, a[0], a[1:]))
            ),
            opts=child,
        )

        filter_name, filter_values = budget_cost_filter(args.environment)
        budget = aws.budgets.Budget(
            f"{name}-budget",
            name=budget_name(prefix),
            budget_type="COST",
            time_unit="MONTHLY",
            limit_amount=str(float(args.budget.monthly_limit_usd)),
            limit_unit="USD",
            # Only counts once "environment" is activated as a cost allocation tag in the
            # Billing console (a one-time step per payer account); until then the budget reads 0.
            cost_filters=[aws.budgets.BudgetCostFilterArgs(name=filter_name, values=filter_values)],
            notifications=[
                aws.budgets.BudgetNotificationArgs(
                    comparison_operator="GREATER_THAN",
                    notification_type="ACTUAL",
                    threshold=float(pct),
                    threshold_type="PERCENTAGE",
                    subscriber_email_addresses=list(args.budget.emails) or None,
                    subscriber_sns_topic_arns=[topic.arn],
                )
                for pct in args.budget.thresholds
            ],
            # Budgets checks that it may publish when the notification is created.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[topic_policy]),
        )

        self.topic_arn = topic.arn
        self.alarm_names = [spec.name for spec in specs]
        self.dashboard_name = dashboard.dashboard_name
        self.budget_name = budget.name
        self.register_outputs(
            {
                "topic_arn": self.topic_arn,
                "alarm_names": self.alarm_names,
                "dashboard_name": self.dashboard_name,
            }
        )

    def _alarm(
        self, name: str, spec: AlarmSpec, cfg: AlarmsConfig, topic_arn: pulumi.Output[str]
    ) -> aws.cloudwatch.MetricAlarm:
        return aws.cloudwatch.MetricAlarm(
            f"{name}-{spec.key}",
            name=spec.name,
            alarm_description=spec.description,
            namespace=spec.namespace,
            metric_name=spec.metric_name,
            dimensions=dict(spec.dimensions),
            statistic=spec.statistic,
            extended_statistic=spec.extended_statistic,
            # A percentile over a handful of requests is one slow cold start: keep the state.
            evaluate_low_sample_count_percentiles="ignore" if spec.extended_statistic else None,
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=spec.threshold,
            period=cfg.period_seconds,
            evaluation_periods=cfg.evaluation_periods,
            # No traffic is not a failure: an idle environment must stay green, and a bake with
            # no requests is judged by verification, not by alarms.
            treat_missing_data="notBreaching",
            alarm_actions=[topic_arn],
            ok_actions=[topic_arn],
            opts=pulumi.ResourceOptions(parent=self),
        )
