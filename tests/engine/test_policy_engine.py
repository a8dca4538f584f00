"""The driver runs the policy pack under the real engine: `preview`, `up` and `promote --policy-pack policy`.

The pull request of test_program.weaken (dev loses a log retention and immutable image tags) is
previewed and updated through the driver with the repository's own pack: a mandatory violation is
exit 3 with the rule's message, nothing is deployed, and the results the driver lists are exactly the
violations `check` reports for the same stack. Skipped without a Pulumi CLI on PATH.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.engine.conftest import needs_cli
from tests.engine.test_program import check_violations, make_checkout, weaken

pytestmark = [pytest.mark.engine, needs_cli]

RESULT = re.compile(r"^  (\S+) \((\w+)\) (urn:\S+): (.*)$")


def listed(stderr: str) -> set[tuple[str, str, str]]:
    """(rule, URN, message) of each policy result the driver listed on stderr."""
    found = set()
    for line in stderr.splitlines():
        match = RESULT.match(line)
        if match:
            rule, level, urn, message = match.groups()
            assert level == "mandatory", line
            found.add((rule, urn, message))
    return found


def test_the_driver_runs_the_pack_and_a_mandatory_violation_is_exit_3_as_check_reports(
    tmp_path: Path, pulumi_home: Path
) -> None:
    checkout = make_checkout(tmp_path, pulumi_home)
    weaken(checkout.root)
    report = json.loads(checkout.driver("check", "dev", "--json", expect=3).stdout)
    expected = {(rule, urn, message) for rule, urn, _, message in check_violations(report, "dev")}
    assert {rule for rule, _, _ in expected} == {"log-retention", "ecr-immutable-tags"}

    checkout.pulumi("stack", "init", "dev")
    preview = checkout.driver("preview", "dev", "--policy-pack", "policy", expect=3)
    assert listed(preview.stderr) == expected
    [error] = [line for line in preview.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: dev: the policy pack refused it: ")
    assert any(f": {message}" in error for _, _, message in expected)  # the rule's own message

    up = checkout.driver("up", "dev", "--yes", "--approve-iam", "--policy-pack", "policy", expect=3)
    assert listed(up.stderr) == expected
    history = json.loads(checkout.driver("history", "dev", "--json").stdout)["updates"]
    assert history == []  # nothing was deployed
    assert checkout.cloud.resources(stack="dev") == []

    # Without the option the engine runs no pack: the same preview passes (exit 0).
    plain = checkout.driver("preview", "dev", "--json")
    assert json.loads(plain.stdout)["stacks"][0]["policy"] == []
