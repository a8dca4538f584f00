from __future__ import annotations

import base64
import json
from types import ModuleType

import pytest
from app_testkit import body, http_event


def test_health(worker: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGELINE_ENVIRONMENT", "dev")
    result = worker.handler(http_event("GET", "/jobs/health"))
    assert result["statusCode"] == 200
    assert body(result)["service"] == "worker"
    assert body(result)["environment"] == "dev"


@pytest.mark.parametrize(
    ("job", "result"),
    [
        ({"task": "count", "items": [1, 2, 3]}, 3),
        ({"task": "sum", "items": [1, 2.5, 3]}, 6.5),
        ({"task": "unique", "items": [{"a": 1}, {"a": 1}, "x"]}, 2),
    ],
)
def test_jobs_run(worker: ModuleType, job: dict, result: object) -> None:
    answer = worker.handler(http_event("POST", "/jobs/run", body=json.dumps(job)))
    assert answer["statusCode"] == 200
    assert body(answer) == {"task": job["task"], "result": result}


def test_a_base64_body_is_decoded(worker: ModuleType) -> None:
    raw = base64.b64encode(json.dumps({"task": "count", "items": ["a"]}).encode()).decode()
    answer = worker.handler(http_event("POST", "/jobs/run", body=raw, base64=True))
    assert body(answer)["result"] == 1


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        json.dumps({"task": "delete"}),
        json.dumps({"task": "sum", "items": ["a"]}),
        json.dumps([1]),
    ],
)
def test_bad_jobs_are_400(worker: ModuleType, payload: str) -> None:
    assert worker.handler(http_event("POST", "/jobs/run", body=payload))["statusCode"] == 400


def test_wrong_method_and_path(worker: ModuleType) -> None:
    assert worker.handler(http_event("GET", "/jobs/run"))["statusCode"] == 405
    assert worker.handler(http_event("GET", "/jobs/other"))["statusCode"] == 404
