"""`python -m automation`: the click group, and the commands of each family registered on it.

One module per family, glue only: `build`, `operate` (preview, up, drift, rollback, history, status),
`promote`, `assure` (render, check, parity); every shared option is declared once in `options`. Commands get
their engine from `automation.engine.protocol.open_engine()`; tests replace
`automation.engine.protocol.engine_factory`. `--help` loads nothing but click and these modules.
"""

from __future__ import annotations

from typing import Any

import click

from automation import errors


class _Group(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        """click's own handling, but a usage error is one line like every other error (exit 2):
        `error: <what is wrong> (see `<command> --help`)`, not click's usage block."""
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "python -m automation"
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {message} (see `{where} --help`)", err=True)
            raise SystemExit(errors.USAGE) from None
        except click.ClickException as exc:
            exc.show()
            raise SystemExit(exc.exit_code) from None
        except click.Abort:
            click.echo("Aborted!", err=True)
            raise SystemExit(1) from None
        # Without standalone mode click returns what ctx.exit() was given (--help, --version: 0).
        raise SystemExit(code if isinstance(code, int) else errors.OK)

    def invoke(self, ctx: click.Context) -> Any:
        # click turns Ctrl-C into "Aborted!" and exit 1; the driver promises 130 (docs/design.md,
        # "Exit codes").
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise errors.Interrupted("interrupted") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="stageline", prog_name="stageline")
def cli() -> None:
    """Stageline: deliver one application through dev, staging and prod with Pulumi."""


def _register() -> None:
    from automation.cli.assure import check, parity, render
    from automation.cli.build import build
    from automation.cli.operate import drift, history, preview, rollback, status, up
    from automation.cli.promote import promote

    for command in (build, preview, up, drift, rollback, history, status, promote, render, check, parity):
        cli.add_command(command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="python -m automation", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - the group turns it into Interrupted; belt and braces
        errors.exit_with(errors.INTERRUPTED)
