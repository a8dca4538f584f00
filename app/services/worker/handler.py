"""The example worker: takes jobs over the HTTP API (`ANY /jobs/{proxy+}`), payload format 2.0.

- `GET /jobs/health`: 200 with the environment and the package this function runs;
- `POST /jobs/run` with a JSON body `{"task": "count", "items": [...]}`: runs the job at once and
  answers 200 with its result; a body that is not such a job is a 400.

Standard library only.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

SERVICE = "worker"
TASKS = ("count", "sum", "unique")
MAX_ITEMS = 10_000


def response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "cache-control": "no-store"},
        "body": json.dumps(body, sort_keys=True),
    }


def _body(event: dict[str, Any]) -> Any:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode("utf-8")
    return json.loads(raw)


def run(job: Any) -> dict[str, Any]:
    if not isinstance(job, dict) or job.get("task") not in TASKS:
        return response(400, {"error": f"a job is {{'task': one of {list(TASKS)}, 'items': [...]}}"})
    items = job.get("items")
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        return response(400, {"error": f"items must be a list of at most {MAX_ITEMS}"})
    task = job["task"]
    if task == "count":
        result: Any = len(items)
    elif task == "sum":
        if not all(isinstance(i, int | float) and not isinstance(i, bool) for i in items):
            return response(400, {"error": "sum needs numbers"})
        result = sum(items)
    else:
        result = len({json.dumps(i, sort_keys=True) for i in items})
    return response(200, {"task": task, "result": result})


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    path = (event.get("rawPath") or "/").rstrip("/")
    if path == "/jobs/health" and method in ("GET", "HEAD"):
        return response(
            200,
            {
                "status": "ok",
                "service": SERVICE,
                "environment": os.environ.get("STAGELINE_ENVIRONMENT", ""),
                "package": os.environ.get("STAGELINE_PACKAGE", ""),
            },
        )
    if path == "/jobs/run":
        if method != "POST":
            return response(405, {"error": f"{method} is not allowed on {path}"})
        try:
            job = _body(event)
        except (ValueError, UnicodeDecodeError):
            return response(400, {"error": "the body is not JSON"})
        return run(job)
    return response(404, {"error": "not found", "path": event.get("rawPath")})
