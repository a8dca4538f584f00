"""Where results go: stdout for results, stderr for progress, and the GitHub step summary.

rich is imported lazily so `--help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


@cache
def progress_console() -> Console:
    """A rich console on stderr: progress and status never mix with results on stdout."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def progress(message: str) -> None:
    progress_console().print(message, markup=False)


def emit_json(document: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def step_summary(markdown: str) -> bool:
    """Append `markdown` to $GITHUB_STEP_SUMMARY when running under GitHub Actions.

    Returns whether it was written. A summary that cannot be written never fails the command.
    """
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown.rstrip("\n") + "\n\n")
    except OSError as exc:
        progress(f"warning: cannot append to GITHUB_STEP_SUMMARY ({exc.strerror})")
        return False
    return True
