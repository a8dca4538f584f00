"""`--policy-pack`: preview, up and promote run the engine with the pack; a mandatory violation is exit 3.

The fake engine reports what `set_policy` says when a pack is given, as the real engine reports the
pack's policy events (tests/engine/test_policy_engine.py runs the real pack under the real engine).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from automation.engine.fake import FakeEngine, step, urn
from automation.engine.model import PolicyResult

FN = "aws:lambda/function:Function"
REPO_TYPE = "aws:ecr/repository:Repository"
MANDATORY = PolicyResult(
    rule="ecr-immutable-tags",
    urn=urn("dev", REPO_TYPE, "artifacts-repository"),
    level="mandatory",
    message="image tags must be immutable (image_tag_mutability=IMMUTABLE)",
    pack="stageline",
)
ADVISORY = PolicyResult(
    rule="cost-tags", urn=urn("dev", FN, "dev-api"), level="advisory", message="tag it", pack="stageline"
)


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    folder = tmp_path / "policy"
    folder.mkdir()
    return folder


@pytest.fixture
def engine(cli_engine: Callable[[FakeEngine], FakeEngine], repo: Path) -> FakeEngine:
    fake = FakeEngine(("dev", "prod"), project_dir=repo)
    fake.set_preview("dev", [step("dev", "update", FN, "dev-api", changed=["memorySize"])])
    return cli_engine(fake)


def test_a_mandatory_violation_stops_preview_with_exit_3_and_the_rules_message(
    engine: FakeEngine, pack: Path, invoke: Callable[..., Result]
) -> None:
    engine.set_policy("dev", [MANDATORY, ADVISORY])
    result = invoke(["preview", "dev", "--policy-pack", str(pack)])
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        "error: dev: the policy pack refused it: ecr-immutable-tags: artifacts-repository: image tags must "
        "be immutable (image_tag_mutability=IMMUTABLE); nothing was changed"
    )
    assert f"  ecr-immutable-tags (mandatory) {MANDATORY.urn}: {MANDATORY.message}" in lines
    assert f"  cost-tags (advisory) {ADVISORY.urn}: tag it" in lines
    [call] = [c for c in engine.calls if c.op == "preview"]
    assert call.args["policy_packs"] == [str(pack.resolve())]


def test_without_the_option_no_pack_runs(engine: FakeEngine, invoke: Callable[..., Result]) -> None:
    engine.set_policy("dev", [MANDATORY])
    assert invoke(["preview", "dev"]).exit_code == 0
    [call] = [c for c in engine.calls if c.op == "preview"]
    assert call.args["policy_packs"] == []


def test_advisory_results_are_reported_and_pass(
    engine: FakeEngine, pack: Path, invoke: Callable[..., Result]
) -> None:
    engine.set_policy("dev", [ADVISORY])
    text = invoke(["preview", "dev", "--policy-pack", str(pack)])
    assert text.exit_code == 0
    assert f"  POLICY: cost-tags (advisory) {ADVISORY.urn}: tag it" in text.stdout.splitlines()
    document = json.loads(invoke(["preview", "dev", "--policy-pack", str(pack), "--json"]).stdout)
    assert document["stacks"][0]["policy"] == [ADVISORY.to_json()]


def test_up_runs_the_pack_and_a_violation_changes_nothing(
    engine: FakeEngine, pack: Path, invoke: Callable[..., Result]
) -> None:
    engine.set_policy("dev", [MANDATORY])
    refused = invoke(["up", "dev", "--yes", "--policy-pack", str(pack)])
    assert refused.exit_code == 3 and "the policy pack refused it: ecr-immutable-tags" in refused.stderr
    assert engine.count("up") == 0
    engine.set_policy("dev", [])
    done = invoke(["up", "dev", "--yes", "--policy-pack", str(pack)])
    assert done.exit_code == 0
    [up] = [c for c in engine.calls if c.op == "up"]
    assert up.args["policy_packs"] == [str(pack.resolve())]


def test_a_missing_pack_is_a_usage_error_naming_the_option(
    engine: FakeEngine, invoke: Callable[..., Result]
) -> None:
    result = invoke(["preview", "dev", "--policy-pack", "no-such-pack"])
    assert result.exit_code == 2 and "--policy-pack" in result.stderr and engine.count("preview") == 0
