"""`python -m automation`: the command line. Click only: arguments, options, help, exit codes.

Each command hands its parsed arguments to `automation.commands`, imported only when a command runs,
so `--help` compiles and loads nothing but click and this module (not pulumi, not rich). Commands get
their engine from `automation.stacks.open_engine()`; tests replace `automation.stacks.engine_factory`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from automation import errors
from automation.options import format_option, json_option, stack_argument, stacks_argument, yes_option

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # click turns Ctrl-C into "Aborted!" and exit 1; the driver promises 130 (README, "Exit codes").
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise errors.Interrupted("interrupted") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="stageline", prog_name="stageline")
def cli() -> None:
    """Stageline: deliver one application through dev, staging and prod with Pulumi."""


# --- options shared by this module's commands ------------------------------------------------------


def lock_retries_option(f: F) -> F:
    return click.option(
        "--lock-retries",
        type=click.IntRange(1, 20),
        default=5,
        show_default=True,
        help="Attempts while another update holds the stack's lock (exponential backoff, base "
        "$STAGELINE_LOCK_BACKOFF seconds, default 2).",
    )(f)


def clear_pending_option(f: F) -> F:
    return click.option(
        "--clear-pending",
        is_flag=True,
        help="Drop pending operations an interrupted update left in the state, then continue.",
    )(f)


def parallel_option(f: F) -> F:
    return click.option(
        "--parallel",
        type=click.IntRange(1, 64),
        default=None,
        help="Stacks checked at once [default: min(4, number of stacks)].",
    )(f)


# --- preview -------------------------------------------------------------------------------------


@cli.command(
    epilog="""\b
Examples:
  python -m automation preview dev
  python -m automation preview --all --format markdown > preview.md
  python -m automation preview staging prod --json"""
)
@stacks_argument
@format_option
@json_option
@parallel_option
@lock_retries_option
def preview(**arguments: Any) -> None:
    """Preview each stack's changes; flag replaces and deletes of stateful resources.

    Changes nothing. --format markdown renders a pull-request comment that lists creates, updates,
    replaces and deletes and warns about replaces or deletes of stateful resources (buckets,
    registries, log groups, anything protected). Exit 0 on success, 1 if a preview fails, 2 for a
    stack not deployed yet.
    """
    from automation import commands

    commands.preview(**arguments)


# --- up ------------------------------------------------------------------------------------------


@cli.command(
    epilog="""\b
Examples:
  python -m automation up dev --yes
  python -m automation up prod -m "hotfix: raise api memory"
  python -m automation up staging --clear-pending --yes --json"""
)
@stack_argument
@click.option("--message", "-m", help="Update message; the short git commit is appended.")
@yes_option
@clear_pending_option
@lock_retries_option
@json_option
def up(**arguments: Any) -> None:
    """Update one stack from this checkout, after a preview and confirmation.

    Shows a preview and asks for confirmation unless --yes. The update message records the git
    commit. Refuses when an interrupted update left pending operations (see --clear-pending).
    Exit 0 on success, 1 on failure, 130 when interrupted (the update is stopped cleanly).
    """
    from automation import commands

    commands.up(**arguments)


# --- drift ---------------------------------------------------------------------------------------


@cli.command(
    epilog="""\b
Examples:
  python -m automation drift --all
  python -m automation drift prod --format markdown > drift.md
  python -m automation drift dev staging --parallel 2 --json
  python -m automation drift staging --remediate"""
)
@stacks_argument
@parallel_option
@click.option(
    "--ignore-file",
    type=click.Path(dir_okay=False, path_type=None),
    default=None,
    help="Property paths to ignore per resource type [default: drift-ignore.yaml at the repository root, "
    "when present].",
)
@format_option
@json_option
@click.option(
    "--remediate",
    is_flag=True,
    help="Run `up` on drifted stacks to put resources back as code says (shows what it would change "
    "and asks first, unless --yes).",
)
@yes_option
@clear_pending_option
@lock_retries_option
@click.pass_context
def drift(ctx: click.Context, **arguments: Any) -> None:
    """Report what drifted from the code in each stack, property by property.

    Uses a preview-only refresh, so state is never written. Exit 0 when clean, 3 on drift, 1 when a
    check fails, 2 for a stack not deployed yet. With --remediate, drifted stacks are updated (after
    a preview and confirmation unless --yes); the exit code is then 0 when every drifted stack was
    put back. Nothing is remediated when any check failed.
    """
    from automation import commands

    ctx.exit(commands.drift(**arguments))


# --- rollback ------------------------------------------------------------------------------------


@cli.command(
    epilog="""\b
Examples:
  python -m automation rollback prod --dry-run
  python -m automation rollback prod --yes
  python -m automation rollback prod --to-version 41 --code --yes"""
)
@stack_argument
@click.option(
    "--to-version", type=click.IntRange(min=1), default=None, help="Roll back to this history version."
)
@click.option("--code", is_flag=True, help="Also run the program as it was at that update's git commit.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@yes_option
@clear_pending_option
@lock_retries_option
@json_option
def rollback(**arguments: Any) -> None:
    """Roll a stack back to its last good release (or version N) from history.

    Picks the newest succeeded update, not itself rolled back, whose stageline:release is another
    release than the current one; writes that release into Pulumi.<stack>.yaml, and updates with
    the message `rollback to vN (<commit>)`, then invalidates the frontend cache. --code runs the
    program from a temporary git worktree at the update's recorded commit. Exit 0 on success, 1
    when refused or failed, 2 for a bad --to-version or a stack not deployed yet, 130 when
    interrupted.
    """
    from automation import commands

    commands.rollback(**arguments)


# --- history -------------------------------------------------------------------------------------


@cli.command(
    epilog="""\b
Examples:
  python -m automation history prod
  python -m automation history prod --limit 10 --metrics
  python -m automation history staging --metrics --window 7 --json"""
)
@stack_argument
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show the newest N entries.")
@click.option("--metrics", is_flag=True, help="Add delivery metrics (frequency, failure rate, durations).")
@click.option(
    "--window", type=click.IntRange(1, 3650), default=30, show_default=True, help="Days the metrics cover."
)
@format_option
@json_option
def history(**arguments: Any) -> None:
    """List a stack's updates; --metrics adds delivery metrics.

    Columns: version, kind, result, start, duration, git commit, release version, message.
    Metrics: deployment frequency, change failure rate, mean update duration and mean time to restore
    over the last --window days (definitions in the README). Exit 0, 1 if the history cannot be read,
    2 for a stack not deployed yet.
    """
    from automation import commands

    commands.history(**arguments)


def _register() -> None:
    from automation.cli_assure import check, parity, render
    from automation.cli_promote import promote

    for command in (promote, render, check, parity):
        cli.add_command(command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="python -m automation", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - the group turns it into Interrupted; belt and braces
        raise SystemExit(errors.INTERRUPTED) from None
