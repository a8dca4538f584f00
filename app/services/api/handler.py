"""The example HTTP API: API Gateway (HTTP API, payload format 2.0) invokes this through the `live` alias.

Routes (the stack files give the service `ANY /api` and `ANY /api/{proxy+}`):

- `GET /api/health`: 200 with the environment and the package this function runs (promotion's health
  check calls it);
- `GET /api/hello?name=…`: a greeting;
- anything else: 404 (405 for a known path with another method).

Standard library only: the package is this folder, so it builds the same bytes anywhere.
"""

from __future__ import annotations

import json
import os
from typing import Any

SERVICE = "api"


def response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "cache-control": "no-store"},
        "body": json.dumps(body, sort_keys=True),
    }


def health(event: dict[str, Any]) -> dict[str, Any]:
    return response(
        200,
        {
            "status": "ok",
            "service": SERVICE,
            "environment": os.environ.get("STAGELINE_ENVIRONMENT", ""),
            "package": os.environ.get("STAGELINE_PACKAGE", ""),
        },
    )


def hello(event: dict[str, Any]) -> dict[str, Any]:
    name = (event.get("queryStringParameters") or {}).get("name") or "world"
    if len(name) > 64:
        return response(400, {"error": "name is longer than 64 characters"})
    return response(200, {"message": f"hello, {name}"})


ROUTES = {"/api/health": health, "/api/hello": hello, "/api": hello}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    path = event.get("rawPath") or "/"
    route = ROUTES.get(path.rstrip("/") or "/")
    if route is None:
        return response(404, {"error": "not found", "path": path})
    if method not in ("GET", "HEAD"):
        return response(405, {"error": f"{method} is not allowed on {path}"})
    return route(event)
