"""Exit codes and the exceptions that carry them (docs/design.md, "Exit codes").

Capability modules raise these; click turns them into a one-line message and the code (they subclass
click.ClickException, so no traceback). A command that finishes with a result other than success (drift
found, a gate refused) returns its code to `exit_with`: the one way the driver exits non-zero.
"""

from __future__ import annotations

import click

OK = 0
FAILED = 1  # the operation failed: engine error, failed verification, rolled back
USAGE = 2  # bad argument, missing or invalid config
DRIFT = 3  # drift detected (drift) or a gate refused (promote)
GATE = 3
INTERRUPTED = 130


class StagelineError(click.ClickException):
    """The operation failed (exit 1)."""

    exit_code = FAILED

    def show(self, file: object = None) -> None:  # one line, "error: …", on stderr
        click.echo(f"error: {self.format_message()}", err=True)


class ConfigurationError(StagelineError):
    """Bad input: argument, stack name, config key, missing tool or file (exit 2)."""

    exit_code = USAGE


class GateRefused(StagelineError):
    """A gate refused to let an operation proceed; nothing was changed (exit 3)."""

    exit_code = GATE


class Interrupted(StagelineError):
    """Ctrl-C or SIGTERM; the running update was cancelled (exit 130)."""

    exit_code = INTERRUPTED


def exit_with(code: int) -> None:
    """End the command with `code` (nothing to do for OK); CliRunner and `python -m` both see it."""
    if code != OK:
        raise SystemExit(code)
