"""`render`, `check`, `parity`: offline assurance. Click only: parse, call one capability, print, exit.

None of them needs the Pulumi CLI, credentials or a network: the program is evaluated in-process
under Pulumi mocks. The repository root is `--root PATH`, or else the nearest directory at or above
the current one that holds Pulumi.yaml.
"""

from __future__ import annotations

from pathlib import Path

import click

from automation import errors
from automation.cli.options import json_option, root_option, stack_argument, stacks_argument


def _stacks(root: Path, names: tuple[str, ...], all_stacks: bool = False) -> list[str]:
    """The stacks named, in the order given; none (or --all): every stack, in promotion order."""
    from automation.assure.render import default_stacks
    from automation.engine.model import unknown_stack

    if all_stacks and names:
        raise errors.ConfigurationError("give stack names or --all, not both")
    known = default_stacks(root)
    if not names:
        if not known:
            raise errors.ConfigurationError(f"no Pulumi.<stack>.yaml in {root}")
        return known
    for name in names:
        if name not in known:
            raise unknown_stack(name, known)
    return list(dict.fromkeys(names))


@click.command(
    epilog="""\b
Examples:
  python -m automation render dev
  python -m automation render prod --json > prod-inventory.json"""
)
@stack_argument
@json_option
@root_option
def render(stack: str, as_json: bool, root: Path | None) -> None:
    """Show a stack's resources, evaluated offline (secrets as [secret])."""
    from automation import output
    from automation.assure import render as rendering
    from infra.config import ConfigError

    base = rendering.find_root(root)
    _stacks(base, (stack,))
    try:
        config = rendering.load_config(base, stack)
        output.progress(f"rendering {stack} offline (Pulumi mocks, no cloud calls) …")
        rendered = rendering.render_stack(base, stack, config=config)
    except ConfigError as exc:
        raise errors.ConfigurationError(f"{stack}: {exc}") from None
    for leak in rendered.leaks:
        output.progress(f"warning: a secret reached {leak} without being marked secret (masked here)")
    if as_json:
        output.emit_json(rendering.inventory(rendered))
    else:
        click.echo(rendering.render_text(rendered))


@click.command(
    epilog="""\b
Examples:
  python -m automation check            # every stack
  python -m automation check prod --json

\b
Exit codes: 0 clean, 3 violations, 2 bad config (one line naming the key)."""
)
@stacks_argument
@json_option
@root_option
def check(stacks: tuple[str, ...], all_stacks: bool, as_json: bool, root: Path | None) -> None:
    """Run the guardrail rules over stacks rendered offline [default: every stack]."""
    from automation import output
    from automation.assure import check as checks
    from automation.assure import render as rendering

    base = rendering.find_root(root)
    names = _stacks(base, stacks, all_stacks)
    report = checks.check_stacks(base, names, progress=output.progress)
    if as_json:
        output.emit_json(checks.to_json(report))
    else:
        click.echo(checks.render_text(report))
    output.step_summary(checks.render_markdown(report))
    errors.exit_with(errors.OK if report.clean else errors.GATE)


@click.command(
    epilog="""\b
Examples:
  python -m automation parity                 # dev → staging → prod
  python -m automation parity staging prod --json

\b
Exit codes: 0 every difference comes from config, 3 unexpected differences, 2 bad config."""
)
@stacks_argument
@json_option
@root_option
def parity(stacks: tuple[str, ...], all_stacks: bool, as_json: bool, root: Path | None) -> None:
    """Compare stacks; classify each difference as expected (from config) or unexpected."""
    from automation import output
    from automation.assure import parity as parities
    from automation.assure import render as rendering

    base = rendering.find_root(root)
    names = _stacks(base, stacks, all_stacks)
    report = parities.compare_stacks(base, names, progress=output.progress)
    markdown = parities.render_markdown(report)
    if as_json:
        output.emit_json(parities.to_json(report))
    else:
        click.echo(markdown)
    output.step_summary(markdown)
    errors.exit_with(errors.OK if report.clean else errors.GATE)
