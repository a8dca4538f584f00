"""Verifying a stage after `up`: HTTP health checks, then a bake time watching the stage's alarms.

Health: every service's health path through the stack's API URL, and the frontend through the TEST
distribution's domain (the candidate release is served there before anyone else sees it). Each
check is retried with exponential backoff until it passes or the overall timeout runs out.

Canary: during the canary phase the API routes only `weight` of the requests to the new version
(the live alias's weighted routing), so one 2xx says little — it is the stable version's answer
most of the time. A service check then needs `canary_sample(weight)` consecutive 2xx answers: enough
requests that the chance none of them reached the canary is under 1 %
(n = ceil(log 0.01 / log(1 - weight)): 44 at 10 %, 90 at 5 %), capped at MAX_CANARY_REQUESTS (200,
which keeps the bound down to a 2.3 % weight; below that the bake's alarms are the real check). A
failure restarts the count. (Invoking the new version directly would need lambda:InvokeFunction,
which the deploy role does not have.)

Bake: for `bakeSeconds`, the alarms the stack exports (`alarmNames`) are polled every 30 s with
CloudWatch's `describe_alarms`, and once more at the end; any alarm in ALARM fails verification at
once. An alarm that does not exist is reported, not failed on: CloudWatch can lag right after the
alarm is created.

All waiting goes through a `Clock`, so tests run the same code without waiting.
"""

from __future__ import annotations

import json
import math
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from infra import outputs as out

if TYPE_CHECKING:
    import httpx
    from mypy_boto3_cloudwatch import CloudWatchClient

MAX_BACKOFF_SECONDS = 30.0
MIN_INTERVAL_SECONDS = 0.1  # an interval of 0 in config must not turn retries into a busy loop
MIN_POLL_SECONDS = 1.0
# CloudWatch evaluates an alarm once per period (60 s for the stack's alarms at the shortest), so
# polling more often than this only spends API calls.
BAKE_POLL_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 10.0
CANARY_MISS_PROBABILITY = 0.01  # the accepted chance that a canary check never reaches the canary
MAX_CANARY_REQUESTS = 200


@cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS settings, built once: building them loads the CA bundle (~0.15 s)."""
    import httpx

    return httpx.create_ssl_context()


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall-clock time: what the driver uses outside tests."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


# --- health ---------------------------------------------------------------------------------


def canary_sample(weight: float) -> int:
    """Consecutive 2xx answers a service check needs while `weight` of the traffic goes to the canary."""
    if not 0 < weight < 1:
        return 1
    n = math.ceil(math.log(CANARY_MISS_PROBABILITY) / math.log1p(-weight))
    return max(1, min(MAX_CANARY_REQUESTS, n))


@dataclass(frozen=True)
class Check:
    name: str  # "api", "worker", "frontend"
    url: str
    successes: int = 1  # consecutive 2xx answers needed to pass


@dataclass(frozen=True)
class CheckResult:
    name: str
    url: str
    ok: bool
    status: int | None
    attempts: int
    seconds: float
    error: str | None = None
    successes: int = 1  # consecutive 2xx answers it needed

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "ok": self.ok,
            "status": self.status,
            "attempts": self.attempts,
            "successesNeeded": self.successes,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, Mapping) else None


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def _origin(domain: str) -> str:
    return domain if "://" in domain else f"https://{domain}"


class MissingOutput(Exception):
    """The stack does not export an output verification needs."""


def health_checks(
    outputs: Mapping[str, Any], frontend_path: str, canary_weight: float | None = None
) -> list[Check]:
    """What to check, from the stack's outputs. Raises MissingOutput naming the output.

    With a canary weight, each service check needs `canary_sample(weight)` consecutive 2xx answers;
    the frontend is not weighted (the TEST distribution serves the candidate to every request).
    """
    api_url = outputs.get(out.API_URL)
    paths = _as_mapping(outputs.get(out.HEALTH_PATHS))
    domain = outputs.get(out.TEST_DOMAIN)
    if not isinstance(api_url, str) or not api_url:
        raise MissingOutput(f"the stack exports no {out.API_URL}, so its services cannot be checked")
    if paths is None:
        raise MissingOutput(f"the stack exports no {out.HEALTH_PATHS} ({{service: path}})")
    if not isinstance(domain, str) or not domain:
        raise MissingOutput(f"the stack exports no {out.TEST_DOMAIN}, so the frontend cannot be checked")
    needed = canary_sample(canary_weight) if canary_weight else 1
    checks = [Check(str(name), _join(api_url, str(path)), needed) for name, path in sorted(paths.items())]
    checks.append(Check("frontend", _join(_origin(domain), frontend_path)))
    return checks


def _attempt(client: httpx.Client, url: str, timeout: float) -> tuple[bool, int | None, str | None]:
    import httpx

    try:
        response = client.get(url, timeout=timeout, follow_redirects=True)
    except httpx.TimeoutException:
        return False, None, "timed out"
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if response.is_success:
        return True, response.status_code, None
    return False, response.status_code, f"HTTP {response.status_code}"


def check_health(
    checks: Sequence[Check],
    *,
    timeout_seconds: float,
    interval_seconds: float,
    clock: Clock | None = None,
    client: httpx.Client | None = None,
) -> list[CheckResult]:
    """Retry every failing check, backing off, until all pass or `timeout_seconds` have passed."""
    import httpx

    clock = clock or RealClock()
    own = client is None
    http = client or httpx.Client(headers={"user-agent": "stageline-verify"}, verify=tls_context())
    start = clock.monotonic()
    deadline = start + timeout_seconds
    state: dict[str, dict[str, Any]] = {
        c.name: {"attempts": 0, "status": None, "error": None, "ok": False, "seconds": 0.0, "streak": 0}
        for c in checks
    }
    delay = max(interval_seconds, MIN_INTERVAL_SECONDS)
    try:
        pending = list(checks)
        while pending:
            for check in list(pending):
                s = state[check.name]
                # A check needing several consecutive answers asks back to back until one fails.
                while True:
                    remaining = deadline - clock.monotonic()
                    s["attempts"] += 1
                    ok, status, error = _attempt(
                        http, check.url, max(1.0, min(REQUEST_TIMEOUT_SECONDS, remaining))
                    )
                    s["streak"] = s["streak"] + 1 if ok else 0
                    passed = s["streak"] >= check.successes
                    s.update(ok=passed, status=status, seconds=clock.monotonic() - start)
                    if not ok:
                        s["error"] = error  # the last failure is what a failed check reports
                    if passed or not ok or clock.monotonic() >= deadline:
                        break
                if s["ok"]:
                    pending.remove(check)
            remaining = deadline - clock.monotonic()
            if not pending or remaining <= 0:
                break
            clock.sleep(min(delay, remaining))
            delay = min(delay * 2, max(MAX_BACKOFF_SECONDS, interval_seconds))
    finally:
        if own:
            http.close()
    results = []
    for check in checks:
        s = state[check.name]
        error = s["error"]
        if not s["ok"]:
            error = f"{error or 'not checked'} after {s['attempts']} attempt(s) within {timeout_seconds:g} s"
            if check.successes > 1:
                error += f" ({check.successes} consecutive 2xx needed during the canary)"
        results.append(
            CheckResult(
                check.name,
                check.url,
                s["ok"],
                s["status"],
                s["attempts"],
                s["seconds"],
                None if s["ok"] else error,
                check.successes,
            )
        )
    return results


# --- bake -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "reason": self.reason}


@dataclass(frozen=True)
class BakeResult:
    ok: bool
    seconds: float  # how long the bake ran
    planned_seconds: float
    polls: int
    watched: tuple[str, ...]
    firing: tuple[AlarmState, ...] = ()
    missing: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "plannedSeconds": self.planned_seconds,
            "polls": self.polls,
            "alarms": list(self.watched),
            "firing": [a.to_json() for a in self.firing],
            "missing": list(self.missing),
            "error": self.error,
        }


def alarm_names(outputs: Mapping[str, Any]) -> tuple[str, ...]:
    value = outputs.get(out.ALARM_NAMES)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if not isinstance(value, list | tuple):
        return ()
    return tuple(str(v) for v in value)


def alarm_states(client: CloudWatchClient, names: Sequence[str]) -> tuple[list[AlarmState], list[str]]:
    """The current state of each named alarm, and the names CloudWatch does not know."""
    found: dict[str, AlarmState] = {}
    for start in range(0, len(names), 100):
        chunk = list(names[start : start + 100])
        pages = client.get_paginator("describe_alarms").paginate(
            AlarmNames=chunk, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        )
        for page in pages:
            for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                name = alarm.get("AlarmName", "")
                found[name] = AlarmState(name, alarm.get("StateValue", ""), alarm.get("StateReason", ""))
    return [found[n] for n in names if n in found], [n for n in names if n not in found]


def bake(
    names: Sequence[str],
    *,
    seconds: float,
    poll_seconds: float,
    region: str | None,
    clock: Clock | None = None,
    client: CloudWatchClient | None = None,
) -> BakeResult:
    """Poll the alarms for `seconds` (at least once); stop at the first alarm in ALARM."""
    from automation.aws import aws_client, aws_error

    clock = clock or RealClock()
    watched = tuple(names)
    start = clock.monotonic()
    if not watched:
        return BakeResult(ok=True, seconds=0.0, planned_seconds=seconds, polls=0, watched=())
    cw = client or aws_client("cloudwatch", region)
    poll = max(poll_seconds, MIN_POLL_SECONDS)
    polls = 0
    missing: list[str] = []

    def finished(ok: bool, **detail: Any) -> BakeResult:
        return BakeResult(
            ok=ok,
            seconds=clock.monotonic() - start,
            planned_seconds=seconds,
            polls=polls,
            watched=watched,
            **detail,
        )

    while True:
        polls += 1
        try:
            states, missing = alarm_states(cw, watched)
        except Exception as exc:
            return finished(False, error=f"cannot read alarm states: {aws_error(exc)}")
        firing = tuple(s for s in states if s.state == "ALARM")
        if firing:
            return finished(False, firing=firing, missing=tuple(missing))
        remaining = seconds - (clock.monotonic() - start)
        if remaining <= 0:
            break
        clock.sleep(min(poll, remaining))
    return finished(True, missing=tuple(missing))


# --- both -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    phase: str  # "release", "canary", "full", "rollback"
    ok: bool
    health: tuple[CheckResult, ...] = ()
    bake: BakeResult | None = None
    reason: str | None = None  # why it failed, one line
    steps: tuple[Any, ...] = field(default=())  # post steps (automation.promote.steps.StepResult)

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "ok": self.ok,
            "reason": self.reason,
            "health": [c.to_json() for c in self.health],
            "bake": self.bake.to_json() if self.bake else None,
            "steps": [s.to_json() for s in self.steps],
        }


def failure_reason(health: Sequence[CheckResult], baked: BakeResult | None) -> str | None:
    failed = [c for c in health if not c.ok]
    if failed:
        return "health check failed: " + "; ".join(f"{c.name} {c.url}: {c.error}" for c in failed)
    if baked is not None and not baked.ok:
        if baked.error:
            return baked.error
        return "alarm in ALARM during bake: " + "; ".join(
            f"{a.name} ({a.reason})" if a.reason else a.name for a in baked.firing
        )
    return None


def verify_stage(
    outputs: Mapping[str, Any],
    *,
    phase: str,
    frontend_path: str,
    timeout_seconds: float,
    interval_seconds: float,
    bake_seconds: float | None,
    region: str | None,
    clock: Clock | None = None,
    http: httpx.Client | None = None,
    cloudwatch: CloudWatchClient | None = None,
    canary_weight: float | None = None,
    only: str | None = None,
) -> Verification:
    """Health checks (`only`: the one of that name), then (unless `bake_seconds` is None) the bake.
    Never raises for a failed check.

    `bake_seconds=0` checks the alarms once. `canary_weight`: the canary phase's weight (see the
    module docstring).
    """
    try:
        checks = [c for c in health_checks(outputs, frontend_path, canary_weight) if only in (None, c.name)]
    except MissingOutput as exc:
        return Verification(phase=phase, ok=False, reason=str(exc))
    health = tuple(
        check_health(
            checks,
            timeout_seconds=timeout_seconds,
            interval_seconds=interval_seconds,
            clock=clock,
            client=http,
        )
    )
    baked = None
    if all(c.ok for c in health) and bake_seconds is not None:
        baked = bake(
            alarm_names(outputs),
            seconds=bake_seconds,
            poll_seconds=BAKE_POLL_SECONDS,
            region=region,
            clock=clock,
            client=cloudwatch,
        )
    reason = failure_reason(health, baked)
    return Verification(phase=phase, ok=reason is None, health=health, bake=baked, reason=reason)


def verify_frontend(
    outputs: Mapping[str, Any],
    *,
    phase: str,
    frontend_path: str,
    timeout_seconds: float,
    interval_seconds: float,
    clock: Clock | None = None,
    http: httpx.Client | None = None,
) -> Verification:
    """The frontend check alone, through the TEST distribution: what a candidate changes (the API and
    APP are untouched by it, so their checks would say nothing about it)."""
    return verify_stage(
        outputs,
        phase=phase,
        frontend_path=frontend_path,
        timeout_seconds=timeout_seconds,
        interval_seconds=interval_seconds,
        bake_seconds=None,
        region=None,
        clock=clock,
        http=http,
        only="frontend",
    )
