from __future__ import annotations

from types import ModuleType

import pytest
from app_testkit import body, http_event


def test_health_reports_the_environment_and_package(api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGELINE_ENVIRONMENT", "staging")
    monkeypatch.setenv("STAGELINE_PACKAGE", "sha256:" + "ab" * 32)
    result = api.handler(http_event("GET", "/api/health"))
    assert result["statusCode"] == 200
    assert result["headers"]["content-type"] == "application/json"
    assert body(result) == {
        "status": "ok",
        "service": "api",
        "environment": "staging",
        "package": "sha256:" + "ab" * 32,
    }


def test_hello_greets_by_name(api: ModuleType) -> None:
    assert body(api.handler(http_event("GET", "/api/hello", query={"name": "Ada"}))) == {
        "message": "hello, Ada"
    }
    assert body(api.handler(http_event("GET", "/api"))) == {"message": "hello, world"}
    assert api.handler(http_event("GET", "/api/hello", query={"name": "x" * 65}))["statusCode"] == 400


def test_unknown_paths_and_methods(api: ModuleType) -> None:
    missing = api.handler(http_event("GET", "/api/nope"))
    assert (missing["statusCode"], body(missing)["path"]) == (404, "/api/nope")
    assert api.handler(http_event("POST", "/api/health"))["statusCode"] == 405
