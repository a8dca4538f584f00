"""The promotion pipeline comes from the stack files' promotion.source links, and nowhere else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from automation.cli import cli
from automation.errors import ConfigurationError
from automation.promote.pipeline import render_plan, resolve
from infra.config import read_stack_file

ROOT = Path(__file__).resolve().parents[3]


def _copy_repo(tmp_path: Path, stacks: tuple[str, ...] = ("dev", "staging", "prod")) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    for name in stacks:
        shutil.copy(ROOT / f"Pulumi.{name}.yaml", tmp_path / f"Pulumi.{name}.yaml")
    return tmp_path


def _set_promotion(root: Path, stack: str, **values: Any) -> None:
    path = root / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text())
    promotion = document["config"].setdefault("stageline:promotion", {})
    for key, value in values.items():
        if value is None:
            promotion.pop(key, None)
        else:
            promotion[key] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_the_repository_pipeline_is_dev_staging_prod_with_each_stage_settings() -> None:
    pipeline = resolve(ROOT)
    assert pipeline.names == ("dev", "staging", "prod")
    dev, staging, prod = pipeline.stages
    assert (dev.source, staging.source, prod.source) == (None, "dev", "staging")
    assert (dev.approval, staging.approval, prod.approval) == (False, False, True)
    assert prod.canary_weight == 0.1 and staging.canary_weight is None
    assert (staging.bake_seconds, prod.bake_seconds) == (300, 900)
    assert prod.verify.timeout_seconds == 300 and prod.verify.interval_seconds == 5
    assert staging.pre == ("python scripts/smoke.py --config-only",)
    assert staging.post == ("python scripts/smoke.py --frontend",)


def test_order_follows_the_links_not_the_file_names(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    # a → b → c spelled with names that sort the other way round
    for old, new in (("dev", "zeta"), ("staging", "mid"), ("prod", "alpha")):
        (root / f"Pulumi.{old}.yaml").rename(root / f"Pulumi.{new}.yaml")
    _set_promotion(root, "mid", source="zeta")
    _set_promotion(root, "alpha", source="mid")
    assert resolve(root).names == ("zeta", "mid", "alpha")


def test_a_stack_outside_the_chain_is_reported_not_promoted(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    shutil.copy(root / "Pulumi.dev.yaml", root / "Pulumi.sandbox.yaml")
    pipeline = resolve(root)
    assert pipeline.names == ("dev", "staging", "prod")
    assert pipeline.outside == ("sandbox",)
    with pytest.raises(ConfigurationError, match="'sandbox' is not in the promotion pipeline"):
        pipeline.select(only="sandbox")


def test_unknown_source_is_a_config_error_naming_the_key_and_file(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    _set_promotion(root, "prod", source="stagging")
    with pytest.raises(ConfigurationError) as err:
        resolve(root)
    assert str(err.value.message) == (
        'Pulumi.prod.yaml: stageline:promotion.source names stack "stagging", which has no '
        'Pulumi.stagging.yaml (known stacks: dev, prod, staging) (did you mean "staging"?)'
    )


def test_a_cycle_is_a_config_error_that_shows_the_loop(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    _set_promotion(root, "dev", source="prod")
    with pytest.raises(ConfigurationError, match="forms a cycle: dev ← prod ← staging ← dev"):
        resolve(root)


def test_two_stacks_receiving_from_one_is_not_a_chain(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    _set_promotion(root, "prod", source="dev")
    with pytest.raises(ConfigurationError, match="prod and staging both receive from 'dev'"):
        resolve(root)


def test_an_invalid_stack_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    root = _copy_repo(tmp_path)
    _set_promotion(root, "staging", bakeSeconds=-5)
    with pytest.raises(
        ConfigurationError, match=r"^Pulumi.staging.yaml: stageline:promotion.bakeSeconds must "
    ):
        resolve(root)


def test_select_from_to_and_only() -> None:
    pipeline = resolve(ROOT)
    assert [s.stack for s in pipeline.select(start="staging")] == ["staging", "prod"]
    assert [s.stack for s in pipeline.select(end="staging")] == ["dev", "staging"]
    assert [s.stack for s in pipeline.select(only="prod")] == ["prod"]
    with pytest.raises(ConfigurationError, match="--from prod comes after --to dev"):
        pipeline.select(start="prod", end="dev")
    with pytest.raises(ConfigurationError, match="--only cannot be combined"):
        pipeline.select(start="dev", only="prod")


def test_plan_text_lists_every_stage_gate() -> None:
    pipeline = resolve(ROOT)
    text = render_plan(pipeline, pipeline.select(start="staging"))
    lines = text.splitlines()
    assert lines[0] == "Promotion pipeline: dev → staging → prod"
    assert lines[1] == "Selected: staging → prod"
    assert "1. dev — first stage: deploys the release in its stack file  (not selected)" in lines
    assert "3. prod — release from staging" in lines
    prod = lines[lines.index("3. prod — release from staging") :]
    assert prod[1] == "   approval:  required (asks locally unless --yes)"
    assert prod[2] == "   canary:    10% of traffic first, then 100 %"
    assert prod[3] == "   bake:      900 s, polling the stack's alarms"
    assert prod[6] == "   post:      python scripts/smoke.py"


def test_cli_plan_prints_the_pipeline_without_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    import automation.engine.protocol

    def no_engine() -> Any:
        raise AssertionError("--plan must not open an engine")

    monkeypatch.setattr(automation.engine.protocol, "engine_factory", no_engine)
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["promote", "--plan"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Promotion pipeline: dev → staging → prod\n")
    result = CliRunner().invoke(cli, ["promote", "--plan", "--json", "--only", "prod"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [(s["stack"], s["selected"]) for s in document["stages"]] == [
        ("dev", False),
        ("staging", False),
        ("prod", True),
    ]
    assert document["stages"][2]["canaryWeight"] == 0.1


def test_cli_plan_with_a_broken_pipeline_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy_repo(tmp_path)
    _set_promotion(root, "staging", source="qa")
    monkeypatch.chdir(root)
    result = CliRunner().invoke(cli, ["promote", "--plan"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        'error: Pulumi.staging.yaml: stageline:promotion.source names stack "qa", which has no '
        "Pulumi.qa.yaml (known stacks: dev, prod, staging)"
    ]
    assert "Traceback" not in result.output


def test_cli_unknown_stage_in_only_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["promote", "--plan", "--only", "qa"])
    assert result.exit_code == 2
    assert "stack 'qa' is not in the promotion pipeline" in result.stderr


@pytest.mark.parametrize(
    ("args", "holder", "stage"),
    [([], "dev", "dev"), (["--only", "prod"], "staging", "prod"), (["--from", "staging"], "dev", "staging")],
)
def test_plan_compares_the_release_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], holder: str, stage: str
) -> None:
    root = _copy_repo(tmp_path)
    monkeypatch.chdir(root)
    shipped = read_stack_file(root, holder).values["release"]["version"]
    refused = CliRunner().invoke(cli, ["promote", "--plan", "--release", "bogus", *args])
    assert refused.exit_code == 3
    assert refused.stderr.strip().splitlines() == [
        f"error: --release bogus was asked for, but Pulumi.{holder}.yaml holds release {shipped}, "
        f"which {stage} would receive"
    ]
    assert CliRunner().invoke(cli, ["promote", "--plan", "--release", shipped, *args]).exit_code == 0
