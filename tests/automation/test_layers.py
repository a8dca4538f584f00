"""The package layout is the design: imports only point down, and only the local engine imports the SDK.

Layers, top to bottom: cli → build → promote → operate → engine → the shared leaves (errors, output,
redact, markdown, gitinfo, aws). `build` finds the first stage in promotion's pipeline and hands it a
release. `assure` (offline, under Pulumi mocks) sits beside promote and operate and
needs no engine. A module may import its own layer and any layer below it; `infra` and `policy` are
the program and its rules, importable from anywhere in `automation`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "automation"

RANK = {"cli": 5, "build": 4, "promote": 3, "assure": 3, "operate": 2, "engine": 1}  # leaves: 0


def _layer(module: str) -> str:
    """`automation.<layer>.…` → the layer; anything else in the package is a leaf."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else "leaf"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "automation" else []
            found.extend((node.lineno, n) for n in names or [node.module])
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
    return found


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)  # a package's own `__init__` included


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_layers_are_folders() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(RANK)
    flat = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert flat == {"errors", "output", "redact", "markdown", "gitinfo", "aws"}


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_imports_point_down(path: Path) -> None:
    module = _module(path)
    if module == "automation.__main__":
        return  # the entry point: above every layer
    here = _layer(module)
    wrong = []
    for line, target in _imports(path):
        if not target.startswith("automation."):
            continue
        there = _layer(target)
        rank_here, rank_there = RANK.get(here, 0), RANK.get(there, 0)
        if there != here and rank_there >= rank_here:
            wrong.append(f"line {line}: {here} imports {target} ({there})")
    assert wrong == []


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_only_the_local_engine_imports_the_automation_api(path: Path) -> None:
    sdk = [t for _, t in _imports(path) if t == "pulumi.automation" or t.startswith("pulumi.automation.")]
    if path.relative_to(PACKAGE).as_posix() in {"engine/local.py", "engine/events.py"}:
        return  # events.py: the SDK's event types, in annotations only (checked below)
    assert sdk == []


def test_the_conversion_module_uses_the_sdk_types_only_for_annotations() -> None:
    tree = ast.parse((PACKAGE / "engine" / "events.py").read_text(encoding="utf-8"))
    runtime = [
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pulumi.automation")
    ]
    assert runtime == []  # only under `if TYPE_CHECKING:`
