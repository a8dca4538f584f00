"""`pulumi up` runs infra/__main__.py; a config mistake must reach the user as one line."""

from __future__ import annotations

import runpy
from pathlib import Path

import pulumi
import pytest

from infra.config import ConfigError, read_stack_file
from infra.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "infra" / "__main__.py"


def _run_main_capturing(values: dict) -> list[BaseException]:
    caught: list[BaseException] = []

    def program() -> None:
        try:
            runpy.run_path(str(MAIN), run_name="__main__")
        except BaseException as exc:
            caught.append(exc)
            raise

    with pytest.raises((ConfigError, pulumi.RunError)):
        simulate(values, stack="dev", program=program)
    return caught


def test_a_config_error_reaches_the_language_host_as_a_run_error_with_one_line() -> None:
    values = dict(read_stack_file(ROOT, "dev").values)
    values["github"] = {**values["github"], "repository": "shop"}

    (error,) = _run_main_capturing(values)

    # The Python language host prints a RunError's message alone, without a traceback.
    assert type(error) is pulumi.RunError
    assert str(error) == 'stageline:github.repository must look like "owner/name", got "shop"'


def test_the_shipped_entry_point_deploys_the_program() -> None:
    sim = simulate(
        read_stack_file(ROOT, "dev").values,
        stack="dev",
        program=lambda: runpy.run_path(str(MAIN), run_name="__main__"),
    )
    assert "aws:iam/role:Role" in sim.types()
    assert sim.outputs["environment"] == "dev"
