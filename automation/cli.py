"""`python -m automation`: the command line. Click only: parse, call one capability, render, exit.

Capabilities are imported inside commands so that `--help` loads neither pulumi nor rich.
"""

from __future__ import annotations

import click

from automation import errors


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="stageline", prog_name="stageline")
def cli() -> None:
    """Stageline: deliver one application through dev, staging and prod with Pulumi."""


def _register() -> None:
    from automation.cli_assure import check, parity, render
    from automation.cli_promote import promote

    for command in (promote, render, check, parity):
        cli.add_command(command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="python -m automation", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - click turns it into Abort in standalone mode
        raise SystemExit(errors.INTERRUPTED) from None
