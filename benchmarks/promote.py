"""The driver's own overhead in a no-op promotion: three unchanged stacks, 1 s per engine call.

Every stage is already on the release, so promotion only reads (gates, releases, history, preview,
outputs) and must call no `up`. Each engine call costs 1 s, as a real Pulumi CLI call roughly does;
the time spent inside engine calls is measured, and the rest of the wall time is the driver's own
overhead: resolving the pipeline from the stack files, gates, the check every unchanged stage gets
(its health endpoints, here a local HTTP server; no alarms, so no AWS), the record and its reports.
Target: overhead ≤ 1 s.

    python benchmarks/promote.py                 # 1 s per engine call
    python benchmarks/promote.py --latency 0.2   # quicker, same overhead figure
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SECONDS = 1.0
# The protocol's operations; `project_dir` and `backend` describe the engine and do no work.
ENGINE_CALLS = frozenset(
    {
        "stack_names",
        "ensure_stack",
        "preview",
        "up",
        "preview_refresh",
        "history",
        "outputs",
        "get_release",
        "set_release",
        "pending_operations",
        "clear_pending",
        "cancel",
    }
)


class Timed:
    """Wraps an engine: every protocol call sleeps `latency` first, and time inside calls is summed."""

    def __init__(self, engine: Any, latency: float) -> None:
        self._engine = engine
        self._latency = latency
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._engine, name)
        if name not in ENGINE_CALLS:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                time.sleep(self._latency)
                return target(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds += time.perf_counter() - started
                    self.calls.append(name)

        return call


def health_server() -> tuple[str, Callable[[], None]]:
    """Every GET answers 200: the stages' health endpoints. Returns its URL and how to stop it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server.shutdown


def unchanged_engine(base_url: str) -> Any:
    from automation.engine.fake import FakeEngine
    from infra import outputs as out
    from infra.config import known_stacks, read_stack_file

    fake = FakeEngine.from_repo(ROOT)
    for stack in known_stacks(ROOT):
        release = read_stack_file(ROOT, stack).values["release"]
        fake.add_history(stack, release=release, message=f"promote {release['version']}")
        fake.set_outputs(
            stack,
            {
                out.API_URL: f"{base_url}/{stack}",
                out.HEALTH_PATHS: {"api": "/api/health"},
                out.TEST_DOMAIN: f"{base_url}/{stack}-test",
                out.ALARM_NAMES: [],
                out.LIVE_VERSIONS: {"api": "1"},
            },
        )
    return fake


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per engine call (default 1)")
    args = parser.parse_args()

    for name in ("SLACK_WEBHOOK_URL", "GITHUB_STEP_SUMMARY"):
        os.environ.pop(name, None)
    os.chdir(ROOT)  # the driver finds the project from the working directory
    import automation.engine.protocol
    from automation.cli.promote import run as run_command

    base_url, stop = health_server()
    timed = Timed(unchanged_engine(base_url), args.latency)
    factory: Callable[[], Any] = lambda: timed  # noqa: E731 - the seam's documented hook
    automation.engine.protocol.engine_factory = factory
    progress, results = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(progress), contextlib.redirect_stdout(results):
        code = run_command(
            start=None,
            end=None,
            only=None,
            release=None,
            yes=True,
            plan=False,
            allow_drift=False,
            allow_replace=(),
            approve_iam=False,
            out_file=None,
            slack_webhook_env="SLACK_WEBHOOK_URL",
            as_json=False,
            confirm=None,
        )
    wall = time.perf_counter() - started
    stop()

    ups = timed.calls.count("up")
    overhead = wall - timed.seconds
    print(results.getvalue().rstrip())
    kinds = ", ".join(sorted(set(timed.calls)))
    print(f"exit code {code}; engine calls: {len(timed.calls)} ({kinds}); up called {ups} time(s)")
    print(f"total wall time      {wall:7.2f} s")
    print(f"engine time          {timed.seconds:7.2f} s  ({args.latency:g} s per call)")
    verdict = "within" if overhead <= TARGET_SECONDS else "OVER"
    print(f"driver overhead      {overhead:7.2f} s  ({verdict} the {TARGET_SECONDS:g} s target)")
    if code != 0 or ups:
        print("error: a no-op promotion must exit 0 without calling up", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
