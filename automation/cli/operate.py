"""`preview`, `up`, `drift`, `rollback`, `history`, `status`: the commands that operate on deployed stacks.

Glue only: each command parses its arguments (click), opens the engine, calls automation.operate,
prints, and exits through automation.errors. The capability modules are imported inside the commands,
so `python -m automation --help` loads none of them (nor pulumi, nor rich).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from automation import errors, output
from automation.cli.options import (
    STACK,
    allow_replace_option,
    approve_iam_option,
    clear_pending_option,
    format_option,
    json_option,
    lock_retries_option,
    parallel_option,
    policy_pack_option,
    slack_webhook_option,
    stack_argument,
    stacks_argument,
    yes_option,
)

# The largest update version or count an argument may name (Pulumi numbers updates from 1).
MAX_VERSION = 2**31 - 1

if TYPE_CHECKING:
    from automation.engine.model import PreviewSummary
    from automation.engine.protocol import Engine
    from automation.operate.updates import RetryPolicy
    from automation.promote.notify import Notifier


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


def notifier(variable: str) -> Notifier:
    """Slack, when $variable holds a webhook URL; a message that cannot be delivered is a warning."""
    from automation.promote.notify import Notifier

    return Notifier.from_env(variable, warn=progress, goes_on="the command's outcome stands")


@contextmanager
def notify_failure(alerts: Notifier, what: str, details: Mapping[str, Any]) -> Iterator[None]:
    """Tell Slack when the block fails (exit 1) or is interrupted (130), then let the error go on.
    Refusals (exit 2, 3) stop before anything changes and are said to whoever ran the command."""
    try:
        yield
    except errors.StagelineError as exc:
        if exc.exit_code in (errors.FAILED, errors.INTERRUPTED):
            verb = "was interrupted" if exc.exit_code == errors.INTERRUPTED else "failed"
            alerts.notify("failure", f"{what} {verb}", {**details, "why": exc.format_message()})
        raise


def packs(policy_pack: Path | None) -> tuple[Path, ...]:
    return (policy_pack.resolve(),) if policy_pack is not None else ()


@contextmanager
def policy_refusal() -> Iterator[None]:
    """A mandatory policy violation: list every result, one per line, then the one-line error (exit 3)."""
    from automation.engine.model import PolicyViolationError

    try:
        yield
    except PolicyViolationError as exc:
        for result in exc.results:
            progress(f"  {result.describe()}")
        raise


def pr_comment_target(pr: int | None, token_env: str) -> Any:
    from automation.operate.pr_comment import target_from_env

    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", token_env):
        raise errors.ConfigurationError(
            f"--github-token-env: {token_env!r} is not an environment variable name"
        )
    return target_from_env(pr, token_env)


def confirm(question: str) -> None:
    if not click.confirm(question, default=False, err=True):
        raise errors.StagelineError("not confirmed; nothing was changed")


def _fmt(fmt: str, as_json: bool) -> str:
    return "json" if as_json else fmt


def apply_gates(summary: PreviewSummary, *, allow_replace: tuple[str, ...], approve_iam: bool) -> None:
    """Promotion's replace and IAM gates over an update's preview: GateRefused (exit 3) unless allowed."""
    from automation.promote.gates import iam_gate, refusal, replace_gate

    for gate in (replace_gate(summary, allow_replace), iam_gate(summary, approved=approve_iam)):
        if gate.ok:
            if gate.override:
                progress(f"{summary.stack}: {gate.detail}")
            continue
        for item in gate.items:
            progress(f"  {item}")
        raise errors.GateRefused(f"{refusal(gate, summary.stack)}; nothing was changed")


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
@click.option(
    "--pr-comment",
    is_flag=True,
    help="Also write the previews into the pull request's one sticky comment (created once, then edited).",
)
@click.option(
    "--pr",
    type=click.IntRange(min=1),
    default=None,
    metavar="NUMBER",
    help="The pull request for --pr-comment [default: the pull_request event's].",
)
@policy_pack_option
@click.option(
    "--github-token-env",
    default="GITHUB_TOKEN",
    show_default=True,
    metavar="NAME",
    help="Environment variable holding the token --pr-comment uses (needs pull-requests: write).",
)
def preview(
    *,
    stacks: tuple[str, ...],
    all_stacks: bool,
    fmt: str,
    as_json: bool,
    parallel: int | None,
    lock_retries: int,
    pr_comment: bool,
    pr: int | None,
    policy_pack: Path | None,
    github_token_env: str,
) -> None:
    """Preview what an update of each stack would change: read-only, it takes no lock and writes nothing."""
    from automation.engine.protocol import resolve_stacks
    from automation.gitinfo import head_commit
    from automation.operate import pr_comment as comments
    from automation.operate import preview as previews
    from automation.operate.drift import default_parallel

    if pr is not None and not pr_comment:
        raise errors.ConfigurationError("--pr: only with --pr-comment")
    target = pr_comment_target(pr, github_token_env) if pr_comment else None  # before any preview runs
    engine = open_engine(stacks, all_stacks)
    names = resolve_stacks(engine, stacks, all_stacks)
    with policy_refusal():
        summaries = previews.run_previews(
            engine,
            names,
            parallel=parallel or default_parallel(len(names)),
            policy=policy(lock_retries),
            progress=progress,
            policy_packs=packs(policy_pack),
        )
    comment: dict[str, Any] | None = None
    if target is not None:
        try:
            done = comments.publish(target, summaries, head_commit(engine.project_dir))
            comment = done.to_json()
            progress(f"pull request #{target.pr}: preview comment {done.action} ({done.url or done.id})")
        except comments.CommentError as exc:
            comment = {"action": "failed", "error": exc.format_message()}
            progress(f"warning: {exc.format_message()}; the preview stands")
    markdown = previews.render_markdown(summaries)
    fmt = _fmt(fmt, as_json)
    if fmt == "json":
        document = previews.to_json(summaries)
        if pr_comment:
            document["prComment"] = comment
        output.emit_json(document)
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
@allow_replace_option
@approve_iam_option
@policy_pack_option
@slack_webhook_option
@json_option
def up(
    *,
    stack: str,
    message: str | None,
    yes: bool,
    clear_pending: bool,
    lock_retries: int,
    allow_replace: tuple[str, ...],
    approve_iam: bool,
    policy_pack: Path | None,
    slack_webhook_env: str,
    as_json: bool,
) -> None:
    """Deploy one stack: preview it, apply the replace and IAM gates, then update it."""
    from automation.engine.protocol import resolve_stacks
    from automation.gitinfo import head_commit
    from automation.operate import updates
    from automation.operate.history import format_duration
    from automation.operate.preview import render_text

    engine = open_engine((stack,))
    resolve_stacks(engine, (stack,), False)
    engine.ensure_stack(stack)
    actor = updates.current_actor()
    alerts = notifier(slack_webhook_env)
    about = {"by": actor or "-"}
    with notify_failure(alerts, f"`up` of {stack}", about):
        updates.check_pending(engine, stack, clear=clear_pending, progress=progress)
    text = updates.update_message(message or f"up {stack}", head_commit(engine.project_dir), actor)
    # The gates promotion applies: no replace/delete of a stateful resource, no IAM widening, unless
    # allowed by name; then, without --yes, the question.
    # While another update holds the lock, a preview would be stale before this update could start:
    # wait for the lock first (the same retries), then preview.
    with notify_failure(alerts, f"`up` of {stack}", about):
        updates.with_lock_retry(
            stack, lambda: updates.not_locked(engine, stack), policy(lock_retries), progress=progress
        )
    with policy_refusal():
        summary = updates.with_lock_retry(
            stack,
            lambda: engine.preview(stack, policy_packs=packs(policy_pack)),
            policy(lock_retries),
            progress=progress,
        )
    if not yes:
        progress(render_text([summary]))
    apply_gates(summary, allow_replace=allow_replace, approve_iam=approve_iam)
    if not yes:
        confirm(f"Update {stack}?")
    progress(f"{stack}: updating ({text!r}) …")
    with notify_failure(alerts, f"`up` of {stack}", about):
        record = updates.run_update(
            engine,
            stack,
            message=text,
            policy=policy(lock_retries),
            progress=progress,
            policy_packs=packs(policy_pack),
        )
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
@slack_webhook_option
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
    slack_webhook_env: str,
) -> None:
    """Find drift: compare each stack's state with the cloud (a preview-only refresh: it writes nothing)."""
    from datetime import UTC, datetime

    from automation.engine.protocol import resolve_stacks
    from automation.operate import drift as drifts
    from automation.operate.status import record_drift

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
    record_drift(engine.project_dir, reports, datetime.now(UTC))
    _notify_drift(notifier(slack_webhook_env), reports)
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


def _notify_drift(alerts: Notifier, reports: list[Any]) -> None:
    drifted = [r for r in reports if r.drifted]
    failed = [r for r in reports if r.error]
    if drifted:
        found = ", ".join(f"{r.stack} ({len(r.resources)} resource(s))" for r in drifted)
        fix = " ".join(r.stack for r in drifted)
        alerts.notify(
            "drift", f"Drift found: {found}", {"fix": f"`python -m automation drift {fix} --remediate`"}
        )
    if failed:
        alerts.notify(
            "failure",
            f"Drift check failed for {', '.join(r.stack for r in failed)}",
            {"why": failed[0].error},
        )


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
@allow_replace_option
@approve_iam_option
@slack_webhook_option
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
    allow_replace: tuple[str, ...],
    approve_iam: bool,
    slack_webhook_env: str,
    as_json: bool,
) -> None:
    """Roll a stack back to an earlier release from its history (--code: its program's commit too)."""
    from automation.engine.protocol import resolve_stacks
    from automation.operate import rollback as rollbacks
    from automation.operate.frontend_cache import invalidate_after_rollback
    from automation.operate.updates import current_actor

    engine = open_engine((stack,))
    resolve_stacks(engine, (stack,), False)
    plan = rollbacks.prepare(engine, stack, to_version=to_version, code=code)
    for warning in plan.warnings:
        progress(f"warning: {warning}")
    if not dry_run:
        progress(plan.describe())
    if not dry_run and not yes:
        confirm(f"Roll back {stack} to v{plan.target.version}?")
    actor = current_actor()
    alerts = notifier(slack_webhook_env)
    about = {"by": actor or "-", "target": f"v{plan.target.version} (release {plan.release.get('version')})"}
    with notify_failure(alerts, f"Rollback of {stack}", about):
        result = rollbacks.execute_rollback(
            engine,
            plan,
            policy=policy(lock_retries),
            dry_run=dry_run,
            clear_pending=clear_pending,
            progress=progress,
            actor=actor,
            gate=lambda summary: apply_gates(summary, allow_replace=allow_replace, approve_iam=approve_iam),
            check_artifacts=True,
        )
    invalidations: list[str] = []
    if result.record is None:
        line = f"dry run: would {plan.describe()}"
    else:
        target, done = plan.target.version, result.record.version
        line = f"{stack}: rolled back to v{target} by update v{done} ({plan.message})"
        alerts.notify(
            "rollback",
            f"{stack} rolled back to release `{plan.release.get('version')}` (manual rollback to v{target})",
            {**about, "update": f"v{done}"},
        )
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
  python -m automation history staging --metrics --window 7 --json
  python -m automation history --all --metrics"""
)
@stacks_argument
@click.option("--limit", type=click.IntRange(1, MAX_VERSION), default=None, help="Show the newest N entries.")
@click.option(
    "--metrics",
    is_flag=True,
    help="Add delivery metrics (deployment frequency, lead time, change failure rate, time to restore).",
)
@click.option(
    "--window", type=click.IntRange(1, 3650), default=30, show_default=True, help="Days the metrics cover."
)
@format_option
@json_option
def history(
    *,
    stacks: tuple[str, ...],
    all_stacks: bool,
    limit: int | None,
    metrics: bool,
    window: int,
    fmt: str,
    as_json: bool,
) -> None:
    """A stack's updates, newest first, numbered as --to-version takes them; --metrics for DORA metrics."""
    from datetime import UTC, datetime

    from automation.engine.protocol import resolve_stacks
    from automation.gitinfo import commit_time
    from automation.operate import history as histories

    engine = open_engine(stacks, all_stacks)
    names = _pipeline_order(engine, resolve_stacks(engine, stacks, all_stacks))
    # --all skips the stacks not deployed yet (shown as having no history); a named one is an error.
    entries = {
        name: engine.history(name) if not all_stacks else _history_or_empty(engine, name) for name in names
    }
    computed: dict[str, histories.Metrics] = {}
    if metrics:
        # A release's commit is the one recorded by its earliest update in any stack, so the lead
        # time of a single stack is read against every stack's history too.
        others = [_history_or_empty(engine, n) for n in engine.stack_names() if n not in entries]
        origins = histories.release_commits([*entries.values(), *others])
        root, now = engine.project_dir, datetime.now(UTC)
        for name, records in entries.items():
            computed[name] = histories.compute_metrics(
                records,
                now=now,
                window_days=window,
                origins=origins,
                commit_time=lambda sha: commit_time(root, sha),
            )
    shown = {name: records[:limit] if limit is not None else records for name, records in entries.items()}
    last = names[-1]
    markdown = "\n".join(histories.render_markdown(n, shown[n], computed.get(n)) for n in names)
    if len(names) > 1 and computed:
        markdown += "\n" + histories.render_summary_markdown(computed, last)
    fmt = _fmt(fmt, as_json)
    if fmt == "json":
        documents = [
            {
                "stack": n,
                "updates": [r.to_json() for r in shown[n]],
                "metrics": computed[n].to_json() if n in computed else None,
            }
            for n in names
        ]
        if len(names) == 1:
            output.emit_json(documents[0])
        else:
            delivery = computed[last].to_json() if computed else None
            output.emit_json({"stacks": documents, "last": last, "delivery": delivery})
    elif fmt == "markdown":
        click.echo(markdown, nl=False)
    else:
        for i, name in enumerate(names):
            if len(names) > 1:
                click.echo(("\n" if i else "") + f"== {name} ==")
            click.echo(histories.render_table(shown[name]) if shown[name] else f"{name} has no history yet")
            if len(names) == 1 and name in computed:
                click.echo("")
                click.echo(histories.render_metrics(computed[name]))
        if len(names) > 1 and computed:
            click.echo("")
            click.echo(histories.render_summary(computed, last))
    output.step_summary(markdown)


def _pipeline_order(engine: Engine, names: list[str]) -> list[str]:
    """`names` in promotion order (the stack files' pipeline), so the last is the delivery stack; as given
    when the pipeline cannot be resolved."""
    from automation.promote.pipeline import resolve

    try:
        order = resolve(engine.project_dir).names
    except errors.StagelineError:
        return names
    ranked = {name: i for i, name in enumerate(order)}
    return sorted(names, key=lambda n: (ranked.get(n, len(order)), names.index(n)))


def _history_or_empty(engine: Engine, stack: str) -> list[Any]:
    try:
        return engine.history(stack)
    except errors.StagelineError:
        return []


# --- status -----------------------------------------------------------------------------------------


@click.command(
    epilog="""\b
Examples:
  python -m automation status
  python -m automation status prod --json
  python -m automation status --format markdown --drift"""
)
@click.argument("stacks", nargs=-1, type=STACK)
@click.option(
    "--drift",
    "check_drift",
    is_flag=True,
    help="Check drift now (a preview-only refresh per stack) instead of showing the last recorded check.",
)
@format_option
@json_option
@parallel_option
def status(
    *, stacks: tuple[str, ...], check_drift: bool, fmt: str, as_json: bool, parallel: int | None
) -> None:
    """Where each release runs: one row per stack (every stack unless STACK… are given).

    \b
    Release version and commit, when and by whom it was deployed, canary weight, pending operations
    and stale locks, and the last drift result (the last `drift` run on this machine, or --drift to
    check now). Exit 0, or 1 when a stack's status cannot be read."""
    from datetime import UTC, datetime

    from automation.engine.protocol import resolve_stacks
    from automation.operate import drift as drifts
    from automation.operate import status as statuses

    engine = open_engine(stacks, not stacks)
    names = resolve_stacks(engine, stacks, not stacks)
    workers = parallel or drifts.default_parallel(len(names))
    now = datetime.now(UTC)
    fresh = None
    if check_drift:
        rules = drifts.load_ignore(None, engine.project_dir)
        deployed = [n for n in names if _deployed(engine, n)]
        reports = drifts.check_stacks(
            engine, deployed, parallel=workers, rules=rules, policy=policy(1), progress=progress
        )
        statuses.record_drift(engine.project_dir, reports, now)
        fresh = {r.stack: r for r in reports}
    found = statuses.collect(engine, names, parallel=workers, fresh_drift=fresh, now=now)
    fmt = _fmt(fmt, as_json)
    markdown = statuses.render_markdown(found)
    if fmt == "json":
        output.emit_json(statuses.to_json(found))
    elif fmt == "markdown":
        click.echo(markdown, nl=False)
    else:
        click.echo(statuses.render_text(found))
    output.step_summary(markdown)
    errors.exit_with(statuses.exit_code(found))


def _deployed(engine: Engine, stack: str) -> bool:
    from automation.engine.model import StackNotDeployed

    try:
        engine.pending_operations(stack)
    except StackNotDeployed:
        return False
    return True
