"""`promote`: click only. (Being built: staged promotion.)"""

from __future__ import annotations

import click


@click.command(hidden=True)
def promote() -> None:
    """Promote one release through the stages (not built yet)."""
    raise click.ClickException("promote is not built yet")
