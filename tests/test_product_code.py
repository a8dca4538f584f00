"""Rules over the product code as a whole (infra, automation, policy)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = sorted(p for folder in ("infra", "automation", "policy") for p in (ROOT / folder).rglob("*.py"))


def test_product_code_narrows_without_assert() -> None:
    """`python -O` strips asserts, so a check that matters is an `if … raise` (or a type that needs none)."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in PRODUCT
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assert)
    ]
    assert PRODUCT and found == []
