"""`promote`: click only. Parse, call automation.promote, exit with its code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from automation.options import STACK, json_option, yes_option

_VERSION_HELP = "letters, digits, . _ - (up to 64), as in stageline:release.version"


def _version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    import re

    if value is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", value):
        raise click.BadParameter(f"{value!r} is not a release version ({_VERSION_HELP})")
    return value


def _urns(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for urn in value:
        if not urn.startswith("urn:pulumi:") or urn.count("::") < 3:
            raise click.BadParameter(f"{urn!r} is not a resource URN (urn:pulumi:STACK::PROJECT::TYPE::NAME)")
    return value


def _out(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and not value.parent.resolve().is_dir():
        raise click.BadParameter(f"the directory of {value} does not exist")
    return value


def _env_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    import re

    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
        raise click.BadParameter(f"{value!r} is not an environment variable name")
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
@click.option("--allow-drift", is_flag=True, help="Promote even when the target stack has drifted.")
@click.option(
    "--allow-replace",
    multiple=True,
    metavar="URN",
    callback=_urns,
    help="Allow replacing/deleting this protected or stateful resource (repeatable).",
)
@click.option("--approve-iam", is_flag=True, help="Approve changes that widen IAM permissions or trust.")
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_out,
    metavar="FILE",
    help="Write the promotion record (JSON) to FILE.",
)
@click.option(
    "--slack-webhook-env",
    default="SLACK_WEBHOOK_URL",
    show_default=True,
    metavar="NAME",
    callback=_env_name,
    help="Environment variable holding the Slack incoming webhook URL.",
)
@json_option
def promote(**kwargs: Any) -> None:
    """Promote one release through the stages: gated, verified, rolled back on failure.

    Stage order and each stage's gates come from the stack files (stageline:promotion). For each
    stage: gates (drift, pending operations, stateful replaces, IAM widening, approval, pre steps),
    copy the release's images and frontend files, up (skipped when nothing changes), verify
    (health checks, bake, canary, post steps); on failure roll the stage back and stop.
    """
    from automation.promote import run_command

    confirm = None
    if _interactive():

        def confirm(question: str) -> bool:
            return click.confirm(question, default=False, err=True)

    code = run_command(confirm=confirm, **kwargs)
    if code:
        click.get_current_context().exit(code)
