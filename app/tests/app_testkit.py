"""Helpers of the example app's tests: a handler loaded as Lambda loads it; HTTP API events."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

APP = Path(__file__).resolve().parents[1]


def load_handler(service: str) -> ModuleType:
    path = APP / "services" / service / "handler.py"
    spec = importlib.util.spec_from_file_location(f"app_{service}_handler", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def http_event(
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    body: str | None = None,
    base64: bool = False,
) -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format 2.0, as the `live` alias receives it."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": {"content-type": "application/json"},
        "queryStringParameters": query,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1"},
            "requestId": "id",
            "stage": "$default",
        },
        "body": body,
        "isBase64Encoded": base64,
    }


def body(result: dict[str, Any]) -> Any:
    return json.loads(result["body"])
