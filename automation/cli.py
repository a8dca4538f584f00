"""`python -m automation`: the command line. Click only: parse, call one capability, render, exit.

Capabilities are imported inside commands so that `--help` loads neither pulumi nor rich. Commands get
their engine from `automation.stacks.open_engine()`; tests replace `automation.stacks.engine_factory`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from automation import errors
from automation.options import format_option, json_option, stack_argument, stacks_argument, yes_option

if TYPE_CHECKING:
    from automation.stacks import Engine
    from automation.updates import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # click turns Ctrl-C into "Aborted!" and exit 1; the driver promises 130 (DESIGN.md).
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


# --- helpers -------------------------------------------------------------------------------------


def _progress(message: str) -> None:
    from automation.output import progress

    progress(message)


def _engine() -> Engine:
    from automation.stacks import open_engine

    engine = open_engine()
    _progress(engine.backend().describe())
    return engine


def _policy(tries: int) -> RetryPolicy:
    from automation.updates import RetryPolicy

    return RetryPolicy.from_env(tries=tries)


def _confirm(question: str) -> None:
    if not click.confirm(question, default=False, err=True):
        raise errors.StagelineError("not confirmed; nothing was changed")


def _fmt(fmt: str, as_json: bool) -> str:
    return "json" if as_json else fmt


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
def preview(
    *,
    stacks: tuple[str, ...],
    all_stacks: bool,
    fmt: str,
    as_json: bool,
    parallel: int | None,
    lock_retries: int,
) -> None:
    """Preview each stack's changes; flag replaces and deletes of stateful resources.

    Changes nothing. --format markdown renders a pull-request comment that lists creates, updates,
    replaces and deletes and warns about replaces or deletes of stateful resources (buckets,
    registries, log groups, anything protected). Exit 0 on success, 1 if a preview fails.
    """
    from automation import output
    from automation import preview as previews
    from automation.drift import default_parallel
    from automation.stacks import resolve_stacks

    engine = _engine()
    names = resolve_stacks(engine, stacks, all_stacks)
    summaries = previews.run_previews(
        engine,
        names,
        parallel=parallel or default_parallel(len(names)),
        policy=_policy(lock_retries),
        progress=_progress,
    )
    markdown = previews.render_markdown(summaries)
    fmt = _fmt(fmt, as_json)
    if fmt == "json":
        output.emit_json(previews.to_json(summaries))
    else:
        click.echo(markdown if fmt == "markdown" else previews.render_text(summaries), nl=fmt != "markdown")
    output.step_summary(markdown)


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
def up(
    *, stack: str, message: str | None, yes: bool, clear_pending: bool, lock_retries: int, as_json: bool
) -> None:
    """Update one stack from this checkout, after a preview and confirmation.

    Shows a preview and asks for confirmation unless --yes. The update message records the git
    commit. Refuses when an interrupted update left pending operations (see --clear-pending).
    Exit 0 on success, 1 on failure, 130 when interrupted (the update is cancelled).
    """
    from automation import output, updates
    from automation.gitinfo import head_commit
    from automation.history import format_duration
    from automation.preview import render_text
    from automation.stacks import resolve_stacks

    engine = _engine()
    resolve_stacks(engine, (stack,), False)
    engine.ensure_stack(stack)
    updates.check_pending(engine, stack, clear=clear_pending, progress=_progress)
    text = updates.update_message(message or f"up {stack}", head_commit(engine.project_dir))
    if not yes:
        summary = engine.preview(stack)
        _progress(render_text([summary]))
        _confirm(f"Update {stack}?")
    _progress(f"{stack}: updating ({text!r}) …")
    record = updates.run_update(engine, stack, message=text, policy=_policy(lock_retries), progress=_progress)
    changes = ", ".join(
        f"{n} {'unchanged' if op == 'same' else op}" for op, n in record.resource_changes.items() if n
    )
    line = (
        f"{stack}: update v{record.version} {record.result} in {format_duration(record.duration)} ({changes})"
    )
    if as_json:
        output.emit_json({"stack": stack, "update": record.to_json()})
    else:
        click.echo(line)
    output.step_summary(f"### up {stack}\n\n{line}; message `{record.message}`")


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
    "--remediate", is_flag=True, help="Run `up` on drifted stacks to put resources back as code says."
)
@yes_option
@lock_retries_option
@click.pass_context
def drift(
    ctx: click.Context,
    *,
    stacks: tuple[str, ...],
    all_stacks: bool,
    parallel: int | None,
    ignore_file: str | None,
    fmt: str,
    as_json: bool,
    remediate: bool,
    yes: bool,
    lock_retries: int,
) -> None:
    """Report what drifted from the code in each stack, property by property.

    Uses a preview-only refresh, so state is never written. Exit 0 when clean, 3 on drift, 1 when a
    check fails. With --remediate, drifted stacks are updated (after confirmation unless --yes); the
    exit code is then 0 when every drifted stack was put back.
    """
    from pathlib import Path

    from automation import drift as drifts
    from automation import output, updates
    from automation.gitinfo import head_commit
    from automation.stacks import resolve_stacks

    engine = _engine()
    names = resolve_stacks(engine, stacks, all_stacks)
    rules = drifts.load_ignore(Path(ignore_file) if ignore_file else None, engine.project_dir)
    policy = _policy(lock_retries)
    reports = drifts.check_stacks(
        engine,
        names,
        parallel=parallel or drifts.default_parallel(len(names)),
        rules=rules,
        policy=policy,
        progress=_progress,
    )
    code = drifts.exit_code(reports)
    fmt = _fmt(fmt, as_json)
    markdown = drifts.render_markdown(reports, rules)
    if fmt == "markdown":
        click.echo(markdown, nl=False)
    elif fmt == "text":
        click.echo(drifts.render_text(reports, rules))
    output.step_summary(markdown)

    remediated: list[dict[str, Any]] = []
    if remediate and code == errors.DRIFT:
        commit = head_commit(engine.project_dir)
        for report in (r for r in reports if r.drifted):
            updates.check_pending(engine, report.stack, clear=False)
            if not yes:
                _confirm(
                    f"Put {len(report.resources)} drifted resource(s) of {report.stack} back as code says?"
                )
            record = updates.run_update(
                engine,
                report.stack,
                message=updates.update_message(f"drift remediation of {report.stack}", commit),
                policy=policy,
                progress=_progress,
            )
            remediated.append({"stack": report.stack, "update": record.to_json()})
            if fmt == "text":
                click.echo(f"{report.stack}: remediated by update v{record.version}")
        code = errors.OK
    if fmt == "json":
        document = drifts.to_json(reports, code)
        document["remediated"] = remediated
        output.emit_json(document)
    ctx.exit(code)


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
def rollback(
    *,
    stack: str,
    to_version: int | None,
    code: bool,
    dry_run: bool,
    yes: bool,
    clear_pending: bool,
    lock_retries: int,
    as_json: bool,
) -> None:
    """Roll a stack back to its last good release (or version N) from history.

    Picks the last succeeded update whose stageline:release differs from the current one, writes
    that release into Pulumi.<stack>.yaml, and updates with the message `rollback to vN (<commit>)`.
    --code runs the program from a temporary git worktree at the update's recorded commit.
    Exit 0 on success, 1 when refused or failed, 2 for a bad --to-version, 130 when interrupted.
    """
    from automation import output
    from automation import rollback as rollbacks
    from automation.stacks import resolve_stacks

    engine = _engine()
    resolve_stacks(engine, (stack,), False)
    plan = rollbacks.prepare(engine, stack, to_version=to_version, code=code)
    if not dry_run:
        _progress(plan.describe())
    if not dry_run and not yes:
        _confirm(f"Roll back {stack} to v{plan.target.version}?")
    result = rollbacks.execute_rollback(
        engine,
        plan,
        policy=_policy(lock_retries),
        dry_run=dry_run,
        clear_pending=clear_pending,
        progress=_progress,
    )
    if result.record is None:
        line = f"dry run: would {plan.describe()}"
    else:
        target, done = plan.target.version, result.record.version
        line = f"{stack}: rolled back to v{target} by update v{done} ({plan.message})"
    if as_json:
        output.emit_json(result.to_json())
    else:
        click.echo(line)
    output.step_summary(f"### rollback {stack}\n\n{line}")


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
def history(*, stack: str, limit: int | None, metrics: bool, window: int, fmt: str, as_json: bool) -> None:
    """List a stack's updates; --metrics adds delivery metrics.

    Columns: version, kind, result, start, duration, git commit, release version, message.
    Metrics: deployment frequency, change failure rate, mean update duration and mean time to restore
    over the last --window days (definitions in the README). Exit 0, or 1 if the history cannot be read.
    """
    from datetime import UTC, datetime

    from automation import history as histories
    from automation import output
    from automation.stacks import resolve_stacks

    engine = _engine()
    resolve_stacks(engine, (stack,), False)
    entries = engine.history(stack)
    shown = entries[:limit] if limit is not None else entries
    computed = (
        histories.compute_metrics(entries, now=datetime.now(UTC), window_days=window) if metrics else None
    )
    markdown = histories.render_markdown(stack, shown, computed)
    fmt = _fmt(fmt, as_json)
    if fmt == "json":
        output.emit_json(
            {
                "stack": stack,
                "updates": [r.to_json() for r in shown],
                "metrics": computed.to_json() if computed is not None else None,
            }
        )
    elif fmt == "markdown":
        click.echo(markdown, nl=False)
    else:
        click.echo(histories.render_table(shown) if shown else f"{stack} has no history yet")
        if computed is not None:
            click.echo("")
            click.echo(histories.render_metrics(computed))
    output.step_summary(markdown)


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
