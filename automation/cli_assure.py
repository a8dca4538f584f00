"""`render`, `check`, `parity`: click only. (Being built: offline assurance.)"""

from __future__ import annotations

import click


@click.command(hidden=True)
def render() -> None:
    """Render a stack's resources offline (not built yet)."""
    raise click.ClickException("render is not built yet")


@click.command(hidden=True)
def check() -> None:
    """Check stacks against the guardrail rules (not built yet)."""
    raise click.ClickException("check is not built yet")


@click.command(hidden=True)
def parity() -> None:
    """Compare the stacks (not built yet)."""
    raise click.ClickException("parity is not built yet")
