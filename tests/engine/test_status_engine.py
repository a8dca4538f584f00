"""`status` (and the history it reads) against the real CLI: the program's tiny plain variant, two stacks.

Skipped without a Pulumi CLI on PATH (a failure under STAGELINE_REQUIRE_ENGINE=1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.engine.enginekit import git, make_project, stack_file
from tests.engine.test_defects import invoke

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(shutil.which("pulumi") is None, reason="needs the Pulumi CLI on PATH"),
]


def test_status_shows_what_each_stack_runs(
    tmp_path: Path, engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, resources=False)
    root = project.root
    (root / "Pulumi.prod.yaml").write_text(stack_file("r1"))
    project.commit("add prod")
    monkeypatch.setenv("GITHUB_ACTOR", "alice")
    first = invoke(root, ["up", "dev", "--yes"], monkeypatch)
    assert first.exit_code == 0, first.output
    (root / "Pulumi.dev.yaml").write_text(stack_file("r2"))
    head = project.commit("release r2")
    monkeypatch.setenv("GITHUB_ACTOR", "bob")
    second = invoke(root, ["up", "dev", "--yes"], monkeypatch)
    assert second.exit_code == 0, second.output
    assert invoke(root, ["drift", "dev"], monkeypatch).exit_code == 0
    before = {p.name: p.read_bytes() for p in root.glob("Pulumi.*.yaml")}

    result = invoke(root, ["status", "--json"], monkeypatch)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    dev, prod = doc["stacks"]
    assert (dev["stack"], dev["release"], dev["commit"], dev["update"]) == ("dev", "r2", head, 2)
    assert dev["deployedBy"] == "bob" and dev["pending"] == [] and dev["canaryWeight"] is None
    assert dev["drift"]["result"] == "clean" and dev["drift"]["source"] == "recorded"
    assert dev["latestUpdate"]["message"] == f"up dev @{head[:7]} by bob"
    assert prod == {**prod, "stack": "prod", "deployed": False, "release": None}

    text = invoke(root, ["status"], monkeypatch)
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[1].split()[:4] == ["dev", "r2", head[:7], "v2"] and " bob " in lines[1]
    assert lines[2].split()[:2] == ["prod", "(not"]
    print(text.stdout)  # the example in docs/driver.md
    # read-only: no stack file changed (prod, not deployed, was not created)
    assert {p.name: p.read_bytes() for p in root.glob("Pulumi.*.yaml")} == before
    assert "Pulumi.prod.yaml" not in git(root, "status", "--porcelain")


def test_history_metrics_across_stacks_with_lead_time_from_the_commits(
    tmp_path: Path, engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path, resources=False)
    root = project.root
    (root / "Pulumi.prod.yaml").write_text(stack_file("r1"))
    project.commit("add prod")
    for version in ("r1", "r2"):
        if version != "r1":
            for stack in ("dev", "prod"):
                (root / f"Pulumi.{stack}.yaml").write_text(stack_file(version))
            project.commit(f"release {version}")
        for stack in ("dev", "prod"):
            done = invoke(root, ["up", stack, "--yes"], monkeypatch)
            assert done.exit_code == 0, done.output

    result = invoke(root, ["history", "--all", "--metrics", "--json"], monkeypatch)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [s["stack"] for s in doc["stacks"]] == ["dev", "prod"] and doc["last"] == "prod"
    delivery = doc["delivery"]
    assert (delivery["updates"], delivery["succeeded"], delivery["failedChanges"]) == (2, 2, 0)
    assert delivery["changeFailureRate"] == 0 and delivery["canaries"] == 0
    # both releases' commits are in this repository: two lead times, commit -> prod, under a minute here
    assert (delivery["leadTimes"], delivery["leadTimeUnknown"]) == (2, 0)
    assert 0 <= delivery["leadTimeMedianSeconds"] < 120

    text = invoke(root, ["history", "--all", "--metrics"], monkeypatch)
    assert text.exit_code == 0
    print(text.stdout)  # the example in docs/driver.md
    assert "prod (the last stack) is delivery:" in text.stdout
