"""The real engine refuses to start cleanly: no project file, no Pulumi CLI (exit 2, one line)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from automation.engine.local import LocalEngine
from automation.engine.model import EngineUnavailable
from automation.engine.project import INSTALL_URL


def test_without_the_pulumi_cli_the_driver_says_how_to_install_it(
    repo: Path, monkeypatch: pytest.MonkeyPatch, invoke: Callable[..., Result]
) -> None:
    (repo / "Pulumi.dev.yaml").write_text("config: {}\n")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", str(repo / "no-bin"))
    result = invoke(["drift", "dev"])
    assert result.exit_code == 2
    assert result.stderr == f"error: the Pulumi CLI is not on PATH: install it ({INSTALL_URL}) and retry\n"
    assert result.stdout == ""


def test_outside_a_project_the_driver_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invoke: Callable[..., Result]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(["history", "prod"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no Pulumi.yaml in ")
    assert result.stderr.count("\n") == 1


def test_open_checks_the_project_before_the_cli(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match=r"no Pulumi\.yaml"):
        LocalEngine.open(tmp_path, environ={"PATH": ""})
