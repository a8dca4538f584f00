"""Verification: health checks with retries and backoff inside a timeout, then a bake watching alarms.

Health endpoints are a local HTTP server; alarms live in moto's CloudWatch on 127.0.0.1. Time is a
fake clock, so retries and bakes run instantly while the code under test does its real arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from promote_testkit import (
    FakeClock,
    Stub,
    boto,
    closed_port_url,
    healthy_routes,
    http_stub,
    moto_alarm,
    moto_server,
    stage_outputs,
    use_aws,
)

from automation.promote.verify import (
    MAX_CANARY_REQUESTS,
    Check,
    alarm_names,
    bake,
    canary_sample,
    check_health,
    health_checks,
    verify_stage,
)
from infra import outputs as out


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def cloudwatch(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    use_aws(monkeypatch, endpoint)
    return boto("cloudwatch", endpoint)


@pytest.fixture
def stub() -> Iterator[Stub]:
    with http_stub() as server:
        yield server


# --- what gets checked ----------------------------------------------------------------------------


def test_checks_cover_every_service_through_the_api_and_the_frontend_through_the_test_domain() -> None:
    outputs = {
        out.API_URL: "https://abc.execute-api.eu-west-1.amazonaws.com/",
        out.TEST_DOMAIN: "d111.cloudfront.net",
        out.HEALTH_PATHS: {"worker": "/jobs/health", "api": "/api/health"},
    }
    assert health_checks(outputs, "/index.html") == [
        Check("api", "https://abc.execute-api.eu-west-1.amazonaws.com/api/health"),
        Check("worker", "https://abc.execute-api.eu-west-1.amazonaws.com/jobs/health"),
        Check("frontend", "https://d111.cloudfront.net/index.html"),
    ]


@pytest.mark.parametrize("missing", [out.API_URL, out.HEALTH_PATHS, out.TEST_DOMAIN])
def test_a_missing_output_fails_verification_naming_it(missing: str) -> None:
    outputs = stage_outputs("dev", "http://127.0.0.1:9")
    del outputs[missing]
    result = verify_stage(
        outputs,
        phase="release",
        frontend_path="/",
        timeout_seconds=5,
        interval_seconds=1,
        bake_seconds=0,
        region="eu-west-1",
        clock=FakeClock(),
    )
    assert not result.ok
    assert f"the stack exports no {missing}" in (result.reason or "")


def test_alarm_names_accept_a_list_or_json_text() -> None:
    assert alarm_names({out.ALARM_NAMES: ["a", "b"]}) == ("a", "b")
    assert alarm_names({out.ALARM_NAMES: '["a"]'}) == ("a",)
    assert alarm_names({}) == ()


# --- health ---------------------------------------------------------------------------------------


def test_healthy_endpoints_pass_at_the_first_attempt_without_waiting(stub: Stub) -> None:
    stub.routes.update(healthy_routes("dev"))
    clock = FakeClock()
    results = check_health(
        health_checks(stage_outputs("dev", stub.url), "/"),
        timeout_seconds=60,
        interval_seconds=2,
        clock=clock,
    )
    assert [(r.name, r.ok, r.status, r.attempts) for r in results] == [
        ("api", True, 200, 1),
        ("worker", True, 200, 1),
        ("frontend", True, 200, 1),
    ]
    assert clock.sleeps == []


def test_a_failing_check_is_retried_with_doubling_backoff_until_it_passes(stub: Stub) -> None:
    stub.routes.update(healthy_routes("dev"))
    stub.routes["/dev/jobs/health"] = 503
    clock = FakeClock()

    def recover(c: FakeClock) -> None:
        if len(c.sleeps) == 3:
            stub.routes["/dev/jobs/health"] = 200

    clock.on_sleep.append(recover)
    results = check_health(
        health_checks(stage_outputs("dev", stub.url), "/"),
        timeout_seconds=120,
        interval_seconds=2,
        clock=clock,
    )
    assert clock.sleeps == [2, 4, 8]
    worker = next(r for r in results if r.name == "worker")
    assert (worker.ok, worker.attempts, worker.status) == (True, 4, 200)
    # passing checks are not asked again while another one is retried
    assert stub.hits("/dev/api/health") == 1


@pytest.mark.parametrize(("weight", "needed"), [(0.1, 44), (0.05, 90), (0.25, 17), (0.5, 7), (0.001, 200)])
def test_a_canary_check_needs_enough_answers_that_one_reached_the_canary(weight: float, needed: int) -> None:
    assert canary_sample(weight) == needed
    if needed < MAX_CANARY_REQUESTS:  # below the cap, missing the canary is under 1 % likely
        assert (1 - weight) ** needed < 0.01 <= (1 - weight) ** (needed - 1)


def test_during_the_canary_a_broken_canary_behind_the_weighted_alias_fails_the_check(stub: Stub) -> None:
    """At 10 %, one request in ten reaches the new version; here it answers 502. One 2xx (what a
    plain check accepts) is almost always the stable version's answer."""
    stub.routes.update(healthy_routes("prod"))
    stub.cycles["/prod/api/health"] = [200] * 9 + [502]
    outputs = stage_outputs("prod", stub.url)
    plain = check_health(
        health_checks(outputs, "/"), timeout_seconds=60, interval_seconds=2, clock=FakeClock()
    )
    assert all(r.ok for r in plain)  # the weakness: the first answer came from the stable version
    stub.requests.clear()
    canary = check_health(
        health_checks(outputs, "/", canary_weight=0.1),
        timeout_seconds=60,
        interval_seconds=2,
        clock=FakeClock(),
    )
    api = next(r for r in canary if r.name == "api")
    assert not api.ok
    assert api.error is not None and api.error.startswith("HTTP 502 after ")
    assert api.error.endswith("(44 consecutive 2xx needed during the canary)")
    assert api.successes == 44


def test_during_the_canary_a_healthy_service_passes_after_its_sample_and_the_frontend_after_one(
    stub: Stub,
) -> None:
    stub.routes.update(healthy_routes("prod"))
    clock = FakeClock()
    results = check_health(
        health_checks(stage_outputs("prod", stub.url), "/", canary_weight=0.1),
        timeout_seconds=60,
        interval_seconds=2,
        clock=clock,
    )
    assert [(r.name, r.ok, r.attempts, r.successes) for r in results] == [
        ("api", True, 44, 44),
        ("worker", True, 44, 44),
        ("frontend", True, 1, 1),  # the TEST distribution is not weighted
    ]
    assert clock.sleeps == []  # the sample is asked back to back


def test_a_canary_check_that_fails_midway_starts_its_count_again(stub: Stub) -> None:
    stub.routes.update(healthy_routes("prod"))
    stub.cycles["/prod/api/health"] = [200] * 10 + [503] + [200] * 100  # a hiccup, then healthy
    clock = FakeClock()
    results = check_health(
        health_checks(stage_outputs("prod", stub.url), "/", canary_weight=0.1),
        timeout_seconds=60,
        interval_seconds=2,
        clock=clock,
    )
    api = next(r for r in results if r.name == "api")
    assert (api.ok, api.attempts) == (True, 11 + 44)
    assert clock.sleeps == [2]


def test_a_check_that_never_passes_fails_when_the_timeout_is_spent(stub: Stub) -> None:
    stub.routes.update(healthy_routes("dev"))
    stub.routes["/dev/api/health"] = 500
    clock = FakeClock()
    results = check_health(
        health_checks(stage_outputs("dev", stub.url), "/"),
        timeout_seconds=20,
        interval_seconds=2,
        clock=clock,
    )
    assert clock.sleeps == [2, 4, 8, 6]  # the last wait is cut to the deadline
    api = next(r for r in results if r.name == "api")
    assert not api.ok
    assert api.error == "HTTP 500 after 5 attempt(s) within 20 s"
    assert all(r.ok for r in results if r.name != "api")


def test_a_refused_connection_is_a_failed_check_not_an_exception() -> None:
    results = check_health(
        [Check("api", closed_port_url() + "/api/health")],
        timeout_seconds=1,
        interval_seconds=1,
        clock=FakeClock(),
    )
    assert not results[0].ok
    assert results[0].status is None
    assert (results[0].error or "").startswith("ConnectError")


# --- bake -----------------------------------------------------------------------------------------


def test_a_quiet_bake_polls_for_the_whole_bake_time(cloudwatch: Any) -> None:
    names = [moto_alarm(cloudwatch, "quiet-errors"), moto_alarm(cloudwatch, "quiet-5xx")]
    clock = FakeClock()
    result = bake(names, seconds=300, poll_seconds=60, region="eu-west-1", clock=clock)
    assert result.ok
    assert result.polls == 6  # at 0, 60, …, 300 s
    assert clock.slept == 300
    assert result.firing == () and result.missing == ()


def test_an_alarm_going_off_during_the_bake_fails_it_at_once(cloudwatch: Any) -> None:
    names = [moto_alarm(cloudwatch, "bake-errors"), moto_alarm(cloudwatch, "bake-5xx")]
    clock = FakeClock()

    def fire(c: FakeClock) -> None:
        if len(c.sleeps) == 2:
            cloudwatch.set_alarm_state(AlarmName="bake-5xx", StateValue="ALARM", StateReason="5xx above 1")

    clock.on_sleep.append(fire)
    result = bake(names, seconds=900, poll_seconds=30, region="eu-west-1", clock=clock)
    assert not result.ok
    assert result.polls == 3
    assert clock.slept == 60  # stopped at the first poll that saw the alarm, not after 900 s
    assert [(a.name, a.state, a.reason) for a in result.firing] == [("bake-5xx", "ALARM", "5xx above 1")]


def test_an_alarm_unknown_to_cloudwatch_is_reported_not_failed(cloudwatch: Any) -> None:
    names = [moto_alarm(cloudwatch, "known-errors"), "never-created"]
    result = bake(names, seconds=0, poll_seconds=10, region="eu-west-1", clock=FakeClock())
    assert result.ok and result.polls == 1
    assert result.missing == ("never-created",)


def test_verification_runs_the_bake_only_after_health_passes(stub: Stub, cloudwatch: Any) -> None:
    alarm = moto_alarm(cloudwatch, "verify-errors")
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="errors")
    stub.routes.update(healthy_routes("qa", "/app/"))
    outputs = stage_outputs("qa", stub.url, alarms=(alarm,))
    result = verify_stage(
        outputs,
        phase="release",
        frontend_path="/app/",
        timeout_seconds=30,
        interval_seconds=5,
        bake_seconds=60,
        region="eu-west-1",
        clock=FakeClock(),
    )
    assert not result.ok
    assert result.reason == "alarm in ALARM during bake: verify-errors (errors)"
    assert stub.hits("/qa-test/app/") == 1

    stub.routes["/qa/api/health"] = 502
    unhealthy = verify_stage(
        outputs,
        phase="release",
        frontend_path="/app/",
        timeout_seconds=4,
        interval_seconds=2,
        bake_seconds=60,
        region="eu-west-1",
        clock=FakeClock(),
    )
    assert unhealthy.bake is None
    assert (unhealthy.reason or "").startswith(f"health check failed: api {stub.url}/qa/api/health: HTTP 502")
