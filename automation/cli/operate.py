"""`preview`, `up`, `drift`, `rollback`, `history`: the commands that operate on deployed stacks.

Glue only: each command parses its arguments (click), opens the engine, calls automation.operate,
prints, and exits through automation.errors. The capability modules are imported inside the commands,
so `python -m automation --help` loads none of them (nor pulumi, nor rich).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from automation import errors, output
from automation.cli.options import (
    clear_pending_option,
    format_option,
    json_option,
    lock_retries_option,
    parallel_option,
    stack_argument,
    stacks_argument,
    yes_option,
)

# The largest update version or count an argument may name (Pulumi numbers updates from 1).
MAX_VERSION = 2**31 - 1

if TYPE_CHECKING:
    from automation.engine.protocol import Engine
    from automation.operate.updates import RetryPolicy


def progress(message: str) -> None:
    output.progress(message)


def open_engine(stacks: tuple[str, ...], all_stacks: bool = False) -> Engine:
    """The engine, once the stacks named are known to exist and their files read (no CLI needed)."""
    from automation.engine.protocol import open_engine

    engine = open_engine(stacks, all_stacks)
    progress(engine.backend().describe())
    return engine


def policy(tries: int) -> RetryPolicy:
    from automation.operate.updates import RetryPolicy

    return RetryPolicy.from_env(tries=tries)


def confirm(question: str) -> None:
    if not click.confirm(question, default=False, err=True):
        raise errors.StagelineError("not confirmed; nothing was changed")


def _fmt(fmt: str, as_json: bool) -> str:
    return "json" if as_json else fmt


# --- preview ----------------------------------------------------------------------------------------


@click.command(
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
    """\b
    Examples:
      python -m automation preview dev
      python -m automation preview --all --format markdown > preview.md
      python -m automation preview staging prod --json"""
    from automation.engine.protocol import resolve_stacks
    from automation.operate import preview as previews
    from automation.operate.drift import default_parallel

    engine = open_engine(stacks, all_stacks)
    names = resolve_stacks(engine, stacks, all_stacks)
    summaries = previews.run_previews(
        engine,
        names,
        parallel=parallel or default_parallel(len(names)),
        policy=policy(lock_retries),
        progress=progress,
    )
    markdown = previews.render_markdown(summaries)
    fmt = _fmt(fmt, as_json)
    if fmt == "json":
        output.emit_json(previews.to_json(summaries))
    else:
        click.echo(markdown if fmt == "markdown" else previews.render_text(summaries), nl=fmt != "markdown")
    output.step_summary(markdown)


# --- up ---------------------------------------------------------------------------------------------


@click.command(
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
    """\b
    Examples:
      python -m automation up dev --yes
      python -m automation up prod -m "hotfix: raise api memory"
      python -m automation up staging --clear-pending --yes --json"""
    from automation.engine.protocol import resolve_stacks
    from automation.gitinfo import head_commit
    from automation.operate import updates
    from automation.operate.history import format_duration
    from automation.operate.preview import render_text

    engine = open_engine((stack,))
    resolve_stacks(engine, (stack,), False)
    engine.ensure_stack(stack)
    updates.check_pending(engine, stack, clear=clear_pending, progress=progress)
    text = updates.update_message(message or f"up {stack}", head_commit(engine.project_dir))
    if not yes:
        summary = engine.preview(stack)
        progress(render_text([summary]))
        confirm(f"Update {stack}?")
    progress(f"{stack}: updating ({text!r}) …")
    record = updates.run_update(engine, stack, message=text, policy=policy(lock_retries), progress=progress)
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


# --- drift ------------------------------------------------------------------------------------------


@click.command(
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
def drift(
    *,
    stacks: tuple[str, ...],
    all_stacks: bool,
    parallel: int | None,
    ignore_file: str | None,
    fmt: str,
    as_json: bool,
    remediate: bool,
    yes: bool,
    clear_pending: bool,
    lock_retries: int,
) -> None:
    """\b
    Examples:
      python -m automation drift --all
      python -m automation drift prod --format markdown > drift.md
      python -m automation drift dev staging --parallel 2 --json
      python -m automation drift staging --remediate"""
    from automation.engine.protocol import resolve_stacks
    from automation.operate import drift as drifts

    # An ignore file named on the command line is read before anything else is needed.
    given = drifts.load_ignore(Path(ignore_file), Path.cwd()) if ignore_file else None
    engine = open_engine(stacks, all_stacks)
    names = resolve_stacks(engine, stacks, all_stacks)
    rules = given if given is not None else drifts.load_ignore(None, engine.project_dir)
    retry = policy(lock_retries)
    reports = drifts.check_stacks(
        engine,
        names,
        parallel=parallel or drifts.default_parallel(len(names)),
        rules=rules,
        policy=retry,
        progress=progress,
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
    skipped: str | None = None
    if remediate and code == errors.FAILED:
        failed = ", ".join(r.stack for r in reports if r.error)
        skipped = f"not remediating: the drift check failed for {failed}; fix that and rerun"
        progress(skipped)
    elif remediate and code == errors.DRIFT:
        for report in (r for r in reports if r.drifted):
            record = drifts.remediate(
                engine,
                report,
                ask=None if yes else confirm,
                clear_pending=clear_pending,
                retry=retry,
                progress=progress,
            )
            remediated.append({"stack": report.stack, "update": record.to_json()})
            if fmt == "text":
                click.echo(f"{report.stack}: remediated by update v{record.version}")
        code = errors.OK
    if fmt == "json":
        document = drifts.to_json(reports, code)
        document["remediated"] = remediated
        document["remediationSkipped"] = skipped
        output.emit_json(document)
    errors.exit_with(code)


# --- rollback ---------------------------------------------------------------------------------------


@click.command(
    epilog="""\b
Examples:
  python -m automation rollback prod --dry-run
  python -m automation rollback prod --yes
  python -m automation rollback prod --to-version 41 --code --yes"""
)
@stack_argument
@click.option(
    "--to-version",
    type=click.IntRange(1, MAX_VERSION),
    default=None,
    help="Roll back to this history version.",
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
    """\b
    Examples:
      python -m automation rollback prod --dry-run
      python -m automation rollback prod --yes
      python -m automation rollback prod --to-version 41 --code --yes"""
    from automation.engine.protocol import resolve_stacks
    from automation.operate import rollback as rollbacks
    from automation.operate.frontend_cache import invalidate_after_rollback

    engine = open_engine((stack,))
    resolve_stacks(engine, (stack,), False)
    plan = rollbacks.prepare(engine, stack, to_version=to_version, code=code)
    for warning in plan.warnings:
        progress(f"warning: {warning}")
    if not dry_run:
        progress(plan.describe())
    if not dry_run and not yes:
        confirm(f"Roll back {stack} to v{plan.target.version}?")
    result = rollbacks.execute_rollback(
        engine,
        plan,
        policy=policy(lock_retries),
        dry_run=dry_run,
        clear_pending=clear_pending,
        progress=progress,
        check_artifacts=True,
    )
    invalidations: list[str] = []
    if result.record is None:
        line = f"dry run: would {plan.describe()}"
    else:
        target, done = plan.target.version, result.record.version
        line = f"{stack}: rolled back to v{target} by update v{done} ({plan.message})"
        invalidations = invalidate_after_rollback(engine, stack, progress)
    if as_json:
        document = result.to_json()
        document["invalidations"] = invalidations
        output.emit_json(document)
    else:
        click.echo(line)
    output.step_summary(f"### rollback {stack}\n\n{line}")


# --- history ----------------------------------------------------------------------------------------


@click.command(
    epilog="""\b
Examples:
  python -m automation history prod
  python -m automation history prod --limit 10 --metrics
  python -m automation history staging --metrics --window 7 --json"""
)
@stack_argument
@click.option("--limit", type=click.IntRange(1, MAX_VERSION), default=None, help="Show the newest N entries.")
@click.option("--metrics", is_flag=True, help="Add delivery metrics (frequency, failure rate, durations).")
@click.option(
    "--window", type=click.IntRange(1, 3650), default=30, show_default=True, help="Days the metrics cover."
)
@format_option
@json_option
def history(*, stack: str, limit: int | None, metrics: bool, window: int, fmt: str, as_json: bool) -> None:
    """\b
    Examples:
      python -m automation history prod
      python -m automation history prod --limit 10 --metrics
      python -m automation history staging --metrics --window 7 --json"""
    from datetime import UTC, datetime

    from automation.engine.protocol import resolve_stacks
    from automation.operate import history as histories

    engine = open_engine((stack,))
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
