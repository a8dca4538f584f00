"""For the render/check/parity tests: a repository copy in a temporary directory, and the CLI.

The copy holds Pulumi.yaml and the stack files only; the program (infra/) is the installed one. Tests
edit the copied stack files to make them bad, violating, waived or different.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from automation.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def copy_repo(tmp_path: Path, stacks: tuple[str, ...] = ("dev", "staging", "prod")) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    for stack in stacks:
        shutil.copy(ROOT / f"Pulumi.{stack}.yaml", root / f"Pulumi.{stack}.yaml")
    return root


def edit_stack(root: Path, stack: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the `config:` mapping of Pulumi.<stack>.yaml (keys with namespace, e.g. "stageline:github")."""
    path = root / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text())
    change(document["config"])
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)
