"""Every click option and argument used by more than one command, declared once. Click only."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_STACK_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class StackName(click.ParamType):
    """A stack name: lower-case letters, digits and -, as in `Pulumi.<stack>.yaml`."""

    name = "stack"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not _STACK_RE.match(text):
            self.fail(f"{text!r} is not a stack name (lower-case letters, digits and -)", param, ctx)
        return text


STACK = StackName()


def stack_argument(f: F) -> F:
    return click.argument("stack", type=STACK)(f)


def stacks_argument(f: F) -> F:
    """STACK… or --all (every stack with a Pulumi.<stack>.yaml)."""
    f = click.option("--all", "all_stacks", is_flag=True, help="Every stack that has a Pulumi.<stack>.yaml.")(
        f
    )
    return click.argument("stacks", nargs=-1, type=STACK)(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(f)


def yes_option(f: F) -> F:
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(f)


def format_option(f: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "markdown", "json"]),
        default="text",
        show_default=True,
        help="Output format; markdown suits PR comments and issue bodies.",
    )(f)


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


def root_option(f: F) -> F:
    return click.option(
        "--root",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Repository root (holds Pulumi.yaml) [default: found by walking up from the current directory].",
    )(f)


def _urns(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for urn in value:
        if not urn.startswith("urn:pulumi:") or urn.count("::") < 3:
            raise click.BadParameter(f"{urn!r} is not a resource URN (urn:pulumi:STACK::PROJECT::TYPE::NAME)")
    return value


def allow_replace_option(f: F) -> F:
    """The replace gate's override (promote, up, rollback)."""
    return click.option(
        "--allow-replace",
        multiple=True,
        metavar="URN",
        callback=_urns,
        help="Allow replacing/deleting this protected or stateful resource (repeatable).",
    )(f)


def approve_iam_option(f: F) -> F:
    """The IAM gate's override (promote, up, rollback)."""
    return click.option(
        "--approve-iam", is_flag=True, help="Approve changes that widen IAM permissions or trust."
    )(f)


def _env_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
        raise click.BadParameter(f"{value!r} is not an environment variable name")
    return value


def slack_webhook_option(f: F) -> F:
    """Where the Slack incoming webhook URL is (promote, up, rollback, drift)."""
    return click.option(
        "--slack-webhook-env",
        default="SLACK_WEBHOOK_URL",
        show_default=True,
        metavar="NAME",
        callback=_env_name,
        help="Environment variable holding the Slack incoming webhook URL (unset: no notifications).",
    )(f)


def policy_pack_option(f: F) -> F:
    """Run the engine with a policy pack (preview, up, promote)."""
    return click.option(
        "--policy-pack",
        "policy_pack",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=None,
        metavar="DIR",
        help="Run the engine with this policy pack (this repository's is `policy`); a mandatory "
        "violation stops with exit 3.",
    )(f)
