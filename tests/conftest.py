"""Suite-wide switches.

STAGELINE_REQUIRE_ENGINE=1 (set by .ci/run) turns every skip of an `engine`-marked test into a
failure, so CI can never pass with the real-engine tests skipped. Without it, a machine with no
Pulumi CLI skips them cleanly. An expected failure (`xfail`, which pytest reports as a kind of skip)
is not a skip: it ran against the engine and failed as it says it will.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def engine_required() -> bool:
    return os.environ.get("STAGELINE_REQUIRE_ENGINE", "") not in ("", "0", "false")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    report = outcome.get_result()
    xfailed = hasattr(report, "wasxfail")
    if report.skipped and not xfailed and engine_required() and item.get_closest_marker("engine") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"engine test skipped while STAGELINE_REQUIRE_ENGINE is set: {reason}"
