"""The one Markdown helper: text made safe for a table cell (PR comments, job summaries, records)."""

from __future__ import annotations

from typing import Any


def cell(text: Any) -> str:
    """`text` as one table cell: pipes escaped, newlines folded into spaces."""
    return str(text).replace("|", "\\|").replace("\r\n", " ").replace("\n", " ")
