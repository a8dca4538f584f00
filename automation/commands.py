"""What the driver's commands do once click has parsed them: open the engine, call the capability
modules, render, and return the exit code.

`automation/cli.py` declares the commands (arguments, options, help) and imports this module only when
a command runs, so `python -m automation --help` compiles and loads none of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from automation import errors, output

if TYPE_CHECKING:
    from automation.stacks import DriftReport, Engine
    from automation.updates import RetryPolicy


def progress(message: str) -> None:
    output.progress(message)


def open_engine() -> Engine:
    from automation.stacks import open_engine

    engine = open_engine()
    progress(engine.backend().describe())
    return engine


def policy(tries: int) -> RetryPolicy:
    from automation.updates import RetryPolicy

    return RetryPolicy.from_env(tries=tries)


def confirm(question: str) -> None:
    if not click.confirm(question, default=False, err=True):
        raise errors.StagelineError("not confirmed; nothing was changed")


def _fmt(fmt: str, as_json: bool) -> str:
    return "json" if as_json else fmt


# --- preview -------------------------------------------------------------------------------------


def preview(
    *,
    stacks: tuple[str, ...],
    all_stacks: bool,
    fmt: str,
    as_json: bool,
    parallel: int | None,
    lock_retries: int,
) -> None:
    from automation import preview as previews
    from automation.drift import default_parallel
    from automation.stacks import resolve_stacks

    engine = open_engine()
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


# --- up ------------------------------------------------------------------------------------------


def up(
    *, stack: str, message: str | None, yes: bool, clear_pending: bool, lock_retries: int, as_json: bool
) -> None:
    from automation import updates
    from automation.gitinfo import head_commit
    from automation.history import format_duration
    from automation.preview import render_text
    from automation.stacks import resolve_stacks

    engine = open_engine()
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


# --- drift ---------------------------------------------------------------------------------------


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
) -> int:
    from automation import drift as drifts
    from automation.stacks import resolve_stacks

    engine = open_engine()
    names = resolve_stacks(engine, stacks, all_stacks)
    rules = drifts.load_ignore(Path(ignore_file) if ignore_file else None, engine.project_dir)
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
            record = _remediate(engine, report, yes=yes, clear_pending=clear_pending, retry=retry)
            remediated.append({"stack": report.stack, "update": record.to_json()})
            if fmt == "text":
                click.echo(f"{report.stack}: remediated by update v{record.version}")
        code = errors.OK
    if fmt == "json":
        document = drifts.to_json(reports, code)
        document["remediated"] = remediated
        document["remediationSkipped"] = skipped
        output.emit_json(document)
    return code


def _remediate(
    engine: Engine, report: DriftReport, *, yes: bool, clear_pending: bool, retry: RetryPolicy
) -> Any:
    """`up --refresh` one drifted stack, after showing what it would change and asking (unless `yes`).

    The refresh is what puts drift back: a plain `up` compares the program with the state, which
    drift does not touch, so it would change nothing and still report success.
    """
    from automation import drift as drifts
    from automation import updates
    from automation.gitinfo import head_commit
    from automation.preview import render_text

    stack = report.stack
    updates.check_pending(engine, stack, clear=clear_pending, progress=progress)
    if not yes:
        progress(f"{stack}: the drift the update puts back (it refreshes first), and what else it changes:")
        progress(drifts.render_text([report], drifts.IgnoreRules()))
        summary = updates.with_lock_retry(stack, lambda: engine.preview(stack), retry, progress=progress)
        progress(render_text([summary]))
        confirm(f"Put {len(report.resources)} drifted resource(s) of {stack} back as code says?")
    return updates.run_update(
        engine,
        stack,
        message=updates.update_message(f"drift remediation of {stack}", head_commit(engine.project_dir)),
        policy=retry,
        progress=progress,
        refresh=True,
    )


# --- rollback ------------------------------------------------------------------------------------


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
    from automation import rollback as rollbacks
    from automation.stacks import resolve_stacks

    engine = open_engine()
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
    )
    invalidations: list[str] = []
    if result.record is None:
        line = f"dry run: would {plan.describe()}"
    else:
        target, done = plan.target.version, result.record.version
        line = f"{stack}: rolled back to v{target} by update v{done} ({plan.message})"
        invalidations = _invalidate_frontend(engine, stack)
    if as_json:
        document = result.to_json()
        document["invalidations"] = invalidations
        output.emit_json(document)
    else:
        click.echo(line)
    output.step_summary(f"### rollback {stack}\n\n{line}")


def _invalidate_frontend(engine: Engine, stack: str) -> list[str]:
    """Invalidate the CloudFront caches, so the frontend of the restored release shows at once.

    Never fails the rollback (it is done): a problem is a warning on stderr.
    """
    from automation.frontend_cache import invalidate_frontend

    try:
        outputs = engine.outputs(stack)
    except errors.StagelineError as exc:
        progress(
            f"warning: cannot read the outputs of {stack} to invalidate the frontend cache: {exc.message}"
        )
        return []
    ids = invalidate_frontend(outputs.values, warn=progress)
    if ids:
        progress(f"{stack}: invalidated the frontend cache ({', '.join(ids)})")
    return ids


# --- history -------------------------------------------------------------------------------------


def history(*, stack: str, limit: int | None, metrics: bool, window: int, fmt: str, as_json: bool) -> None:
    from datetime import UTC, datetime

    from automation import history as histories
    from automation.stacks import resolve_stacks

    engine = open_engine()
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
