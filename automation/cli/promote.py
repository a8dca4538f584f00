"""`promote`: glue only. Parse, resolve the pipeline, run automation.promote, report, exit with its code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from automation import errors
from automation.cli.options import (
    STACK,
    allow_replace_option,
    approve_iam_option,
    json_option,
    policy_pack_option,
    slack_webhook_option,
    yes_option,
)

_VERSION_HELP = "letters, digits, . _ - (up to 64), as in stageline:release.version"


def _version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    import re

    if value is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", value):
        raise click.BadParameter(f"{value!r} is not a release version ({_VERSION_HELP})")
    return value


def _out(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and not value.parent.resolve().is_dir():
        raise click.BadParameter(f"the directory of {value} does not exist")
    return value


def _interactive() -> bool:
    """Whether a person can answer a prompt: stdin and stderr are terminals."""
    return sys.stdin.isatty() and sys.stderr.isatty()


@click.command(
    epilog="""\b
Examples:
  python -m automation promote --plan
  python -m automation promote                      # every stage; asks before prod
  python -m automation promote --only staging --yes --out promotion-staging.json
  python -m automation promote --from staging --release 4f9c2d1 --approve-iam
  python -m automation promote --only dev --allow-replace 'urn:pulumi:dev::stageline::aws:sqs/queue:Queue::q'

\b
Exit codes: 0 promoted (or nothing to change), 1 failed (rolled back when something was
deployed), 2 bad argument or config, 3 a gate refused (nothing changed), 130 interrupted."""
)
@click.option(
    "--from", "start", type=STACK, metavar="STACK", help="Start at this stage (default: the first)."
)
@click.option("--to", "end", type=STACK, metavar="STACK", help="Stop after this stage (default: the last).")
@click.option("--only", type=STACK, metavar="STACK", help="Promote into this one stage (the CI pattern).")
@click.option(
    "--release",
    metavar="VERSION",
    callback=_version,
    help="Refuse unless the release being promoted is VERSION.",
)
@yes_option
@click.option("--plan", is_flag=True, help="Print the resolved pipeline and its gates; change nothing.")
@click.option(
    "--preview",
    "preview_only",
    is_flag=True,
    help="The approver's preview: the incoming release, every gate's verdict, the changes and the policy "
    "results, in the run summary; read-only (no copy, no up). Exit 3 when a gate would refuse.",
)
@click.option("--allow-drift", is_flag=True, help="Promote even when the target stack has drifted.")
@allow_replace_option
@approve_iam_option
@policy_pack_option
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_out,
    metavar="FILE",
    help="Write the promotion record (JSON) to FILE.",
)
@slack_webhook_option
@json_option
def promote(
    *,
    start: str | None,
    end: str | None,
    only: str | None,
    release: str | None,
    yes: bool,
    plan: bool,
    preview_only: bool,
    allow_drift: bool,
    allow_replace: tuple[str, ...],
    approve_iam: bool,
    policy_pack: Path | None,
    out_file: Path | None,
    slack_webhook_env: str,
    as_json: bool,
) -> None:
    """Promote one release through the stages: gated, verified, rolled back on failure.

    Stage order and each stage's gates come from the stack files (stageline:promotion). For each
    stage: gates (drift, pending operations, stateful replaces, IAM widening, approval, pre steps),
    copy the release's images and frontend files, up (skipped when nothing changes), verify
    (health checks, bake, canary, post steps); on failure roll the stage back and stop.
    """
    confirm = None
    if _interactive():

        def confirm(question: str) -> bool:
            return click.confirm(question, default=False, err=True)

    code = run(
        start=start,
        end=end,
        only=only,
        release=release,
        yes=yes,
        plan=plan,
        allow_drift=allow_drift,
        allow_replace=allow_replace,
        approve_iam=approve_iam,
        policy_pack=policy_pack,
        preview_only=preview_only,
        out_file=out_file,
        slack_webhook_env=slack_webhook_env,
        as_json=as_json,
        confirm=confirm,
    )
    errors.exit_with(code)


def run(
    *,
    start: str | None,
    end: str | None,
    only: str | None,
    release: str | None,
    yes: bool,
    plan: bool,
    allow_drift: bool,
    allow_replace: Sequence[str],
    approve_iam: bool,
    out_file: Path | None,
    slack_webhook_env: str,
    as_json: bool,
    confirm: Callable[[str], bool] | None,
    policy_pack: Path | None = None,
    preview_only: bool = False,
) -> int:
    """`promote` behind the CLI: resolve the pipeline, print it (--plan) or run it, and report.

    Returns the exit code. Usage and config errors raise ConfigurationError (exit 2) before anything runs.
    """
    from datetime import UTC, datetime

    from automation.engine.project import find_project_root
    from automation.engine.protocol import open_engine
    from automation.gitinfo import head_commit
    from automation.operate.updates import RetryPolicy, current_actor
    from automation.output import emit_json, progress, step_summary
    from automation.promote import run as runs
    from automation.promote.notify import Notifier
    from automation.promote.pipeline import Stage, planned_release_refusal, render_plan, resolve
    from automation.promote.record import PromotionRecord, StageRecord, markdown, refused_gate, summary_lines
    from automation.promote.run import PromoteOptions, Runtime

    opts = PromoteOptions(
        release=release,
        yes=yes,
        allow_drift=allow_drift,
        allow_replace=frozenset(allow_replace),
        approve_iam=approve_iam,
        policy_packs=(policy_pack.resolve(),) if policy_pack is not None else (),
    )
    names: tuple[str, ...] = ()
    selected: Sequence[Stage] = ()
    if plan and preview_only:
        raise errors.ConfigurationError("--plan and --preview: give one (--plan reads only the stack files)")
    try:
        # The pipeline (and so every argument naming a stage) is checked before an engine is opened.
        root = find_project_root(Path.cwd())
        pipeline = resolve(root)
        names = pipeline.names
        selected = pipeline.select(start=start, end=end, only=only)
        if plan:
            if as_json:
                emit_json(pipeline.to_json(selected))
            else:
                sys.stdout.write(render_plan(pipeline, selected) + "\n")
            refusal = planned_release_refusal(pipeline, selected, release) if release is not None else None
            if refusal is not None:  # the same gate a run applies, on what the stack files say
                progress(f"error: {refusal}")
                return errors.GATE
            return errors.OK
        engine = open_engine()
    except errors.StagelineError as exc:
        if out_file is not None and not plan:  # the record says why nothing ran
            failed = PromotionRecord(
                pipeline=names,
                stages=[StageRecord(s.stack, s.source) for s in selected],
                started=datetime.now(UTC),
                options=opts.to_json(),
            )
            failed.result, failed.exit_code, failed.reason = "failed", exc.exit_code, exc.format_message()
            failed.finished = failed.started
            _write_record(out_file, failed.to_json(), progress)
        raise
    progress(engine.backend().describe())
    rt = Runtime(
        engine=engine,
        root=root,
        notifier=Notifier.from_env(slack_webhook_env, warn=progress),
        progress=progress,
        confirm=confirm,
        clock=runs.clock_factory(),
        retry=RetryPolicy.from_env(),
        commit=head_commit(root),
        actor=current_actor(),
        withheld_env=(slack_webhook_env,),
    )
    if preview_only:
        rt.notifier = Notifier(url=None, warn=progress)  # a preview tells no one
        record = runs.preview_promotion(selected, pipeline.names, opts, rt)
        step_summary(runs.approver_markdown(record))
    else:
        record = runs.promote(selected, pipeline.names, opts, rt)
        step_summary(markdown(record))
    document = record.to_json()
    if out_file is not None:
        _write_record(out_file, document, progress)
    if as_json:
        emit_json(document)
    else:
        sys.stdout.write("\n".join(summary_lines(record)) + "\n")
    if record.exit_code and record.reason:
        progress(f"error: {record.reason}")
    gate = refused_gate(record)
    if gate is not None and gate.items:  # what to review, one per line
        for item in gate.items:
            progress(f"  {item}")
    return record.exit_code


def _write_record(out_file: Path, document: Mapping[str, Any], progress: Callable[[str], None]) -> None:
    import json

    try:
        out_file.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        progress(f"warning: cannot write the promotion record to {out_file}: {exc.strerror}")
