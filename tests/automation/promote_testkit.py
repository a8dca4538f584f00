"""Test helpers for promotion: moto's server, a local HTTP stub, stack outputs, a fake clock.

Imported by the promotion tests (test_promote*, test_release*, test_verify*, test_notify*,
test_steps*). Everything listens on 127.0.0.1 with a random port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from infra import outputs as out

ACCOUNT = "123456789012"  # moto's default account


# --- moto -------------------------------------------------------------------------------------


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server in a thread; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def use_aws(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point every boto3 client at moto: boto3 reads AWS_ENDPOINT_URL natively."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def boto(service: str, endpoint: str, region: str = "eu-west-1") -> Any:
    import boto3

    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


# --- a local HTTP server ----------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Stub:
    """Answers GET/POST by path with the status set in `routes` (404 for unknown paths) and keeps
    every request. `routes` may be changed while the server runs."""

    url: str
    routes: dict[str, int] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)  # path -> body served with 200
    # path -> statuses answered in turn, over and over (a weighted alias: nine 200s, then a 502 …)
    cycles: dict[str, list[int]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.path == path)

    def posts(self, path: str) -> list[Any]:
        with self.lock:
            return [r.json() for r in self.requests if r.method == "POST" and r.path == path]


@contextmanager
def http_stub(routes: Mapping[str, int] | None = None) -> Iterator[Stub]:
    stub = Stub(url="", routes=dict(routes or {}))

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            with stub.lock:
                stub.requests.append(Request(self.command, path, body, dict(self.headers)))
                body_for_path = stub.bodies.get(path)
                status = 200 if body_for_path is not None else stub.routes.get(path, 404)
                cycle = stub.cycles.get(path)
                if cycle:
                    status = cycle[(sum(1 for r in stub.requests if r.path == path) - 1) % len(cycle)]
            payload = body_for_path if body_for_path is not None else (b"ok" if status < 400 else b"failing")
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address[:2]
    stub.url = f"http://{host!s}:{port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    """A URL nothing listens on (the port was bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- stack outputs --------------------------------------------------------------------------------

HEALTH = {"api": "/api/health", "worker": "/jobs/health"}


def stage_outputs(
    stack: str,
    base_url: str,
    *,
    region: str = "eu-west-1",
    alarms: tuple[str, ...] = (),
    registry_region: str | None = None,
    live: Mapping[str, str] | None = None,
    frontend_bucket: str | None = None,
) -> dict[str, Any]:
    """Outputs as the program exports them, with the API and TEST domain served by `base_url`."""
    repository = f"stageline-{stack}"
    return {
        out.REGION: region,
        out.ENVIRONMENT: stack,
        out.API_URL: f"{base_url}/{stack}",
        out.HEALTH_PATHS: dict(HEALTH),
        out.TEST_DOMAIN: f"{base_url}/{stack}-test",
        out.ALARM_NAMES: list(alarms),
        out.ECR_REPOSITORY_URL: f"{ACCOUNT}.dkr.ecr.{registry_region or region}.amazonaws.com/{repository}",
        out.ECR_REPOSITORY_NAME: f"stageline-{stack}",
        out.FRONTEND_BUCKET: frontend_bucket or f"stageline-{stack}-frontend",
        out.ARTIFACT_BUCKET: f"stageline-{stack}-artifacts",
        out.LIVE_VERSIONS: dict(live or {"api": "3", "worker": "3"}),
    }


def healthy_routes(stack: str, frontend_path: str = "/") -> dict[str, int]:
    routes = {f"/{stack}{path}": 200 for path in HEALTH.values()}
    routes[f"/{stack}-test{frontend_path}"] = 200
    return routes


# --- time -----------------------------------------------------------------------------------------


class FakeClock:
    """A clock whose sleep advances time at once; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: list[Any] = []  # callables run after each sleep, e.g. to flip an alarm

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for hook in list(self.on_sleep):
            hook(self)

    @property
    def slept(self) -> float:
        return sum(self.sleeps)


def moto_alarm(
    cloudwatch: Any,
    name: str,
    *,
    state: str = "OK",
    reason: str = "quiet",
    metric: str = "Errors",
    namespace: str = "AWS/Lambda",
) -> str:
    """A metric alarm in moto, put into `state`; returns its name."""
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName=metric,
        Namespace=namespace,
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)
    return name
