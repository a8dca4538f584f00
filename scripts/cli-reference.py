"""Write docs/cli.md, the command reference, from the driver's own click declarations.

    python scripts/cli-reference.py           # (re)write docs/cli.md
    python scripts/cli-reference.py --check   # exit 1 when docs/cli.md is not what this writes now

For the group and every command (sorted by name; subgroups recursively) the page shows the usage
line, the help text exactly as `--help` words it (description and the "Examples:" epilog), and a
table of every argument and option: names, type or choices, default, help. Hidden commands and
options are included and marked. The output depends only on the click declarations: no terminal
width, no environment, no clock.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "cli.md"
PROG = "python -m automation"
WIDTH = 100  # the group's max_content_width: the width `--help` uses on a wide terminal

HEADER = f"""\
# Command reference: `{PROG}`

Generated from the commands' `--help` by `python scripts/cli-reference.py`; do not edit it by hand.
`python scripts/cli-reference.py --check` (run by `tests/test_docs.py`) fails when this page is stale.
The manual is the other pages beside this one, starting at [design.md](design.md); the exit codes
are in [design.md](design.md#exit-codes).
"""


def load_cli() -> click.Group:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from automation.cli import cli

    return cli


def _cell(text: str) -> str:
    """One table cell (automation.markdown.cell), whitespace runs folded, and `<` escaped outside code
    spans (GitHub would read it as HTML)."""
    from automation.markdown import cell

    parts = cell(" ".join(text.split())).split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def _code(text: str) -> str:
    return f"``{text}``" if "`" in text else f"`{text}`"


def _help_text(text: str | None) -> str:
    """Help as click shows it, minus its no-rewrap markers (a line holding only a backspace)."""
    lines = inspect.cleandoc(text or "").splitlines()
    return "\n".join(line for line in lines if line.strip() != "\b").strip()


def _range(kind: str, t: click.IntRange | click.FloatRange) -> str:
    low = "" if t.min is None else f"{t.min} {'<' if t.min_open else '≤'} "
    high = "" if t.max is None else f" {'<' if t.max_open else '≤'} {t.max}"
    if low and high:
        return f"{kind}, {low}x{high}"
    if low:
        return f"{kind}, x {'>' if t.min_open else '≥'} {t.min}"
    return f"{kind}, x{high}" if high else kind


def describe_type(param: click.Parameter) -> str:
    t = param.type
    if isinstance(param, click.Option) and param.count:
        kind = "count"
    elif isinstance(param, click.Option) and param.is_flag:
        kind = "flag"
    elif isinstance(t, click.Choice):
        kind = "one of " + ", ".join(_code(str(c)) for c in t.choices)
    elif isinstance(t, click.IntRange):
        kind = _range("integer", t)
    elif isinstance(t, click.FloatRange):
        kind = _range("number", t)
    elif isinstance(t, click.Path):
        kind = "path"
    elif t is click.INT:
        kind = "integer"
    elif t is click.FLOAT:
        kind = "number"
    elif t is click.STRING:
        kind = "text"
    else:
        kind = t.name
    extras = []
    if param.nargs == -1:
        extras.append("any number")
    elif param.nargs > 1:
        extras.append(f"{param.nargs} values")
    if param.multiple:
        extras.append("repeatable")
    if param.required:
        extras.append("required")
    return "; ".join([kind, *extras])


def describe_default(param: click.Parameter, ctx: click.Context) -> str:
    if isinstance(param, click.Option) and isinstance(param.show_default, str):
        return param.show_default
    if isinstance(param, click.Option) and (param.is_flag or param.count):
        return ""
    default = param.get_default(ctx, call=False)
    if default is None or type(default).__name__ == "Sentinel" or default in ((), []):
        return ""
    if callable(default):
        return "(computed)"
    if isinstance(default, list | tuple):
        return ", ".join(_code(str(d)) for d in default)
    return _code(str(default))


def param_names(param: click.Parameter) -> list[str]:
    if isinstance(param, click.Argument):
        return [param.human_readable_name]
    return [*param.opts, *param.secondary_opts]


def _param_row(param: click.Parameter, ctx: click.Context) -> str:
    names = ", ".join(_code(name) for name in param_names(param))
    help_text = getattr(param, "help", None) or ""
    if getattr(param, "hidden", False):
        help_text = f"(hidden) {help_text}".strip()
    cells = [names, describe_type(param), describe_default(param, ctx), _help_text(help_text)]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _section(command: click.Command, path: list[str], parent: click.Context | None) -> list[str]:
    name = " ".join(path)
    settings = {**command.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    ctx = click.Context(command, info_name=path[-1], parent=parent, **settings)
    usage = " ".join([name, *command.collect_usage_pieces(ctx)])
    title = f"`{name}`" + (" (hidden)" if command.hidden else "")
    out = ["", f"## {title}", "", f"Usage: {_code(usage)}", ""]
    text = "\n\n".join(t for t in (_help_text(command.help), _help_text(command.epilog)) if t)
    if text:
        out += ["```text", text, "```", ""]
    if command.deprecated:
        out += ["Deprecated.", ""]
    out += ["| argument / option | type | default | help |", "| --- | --- | --- | --- |"]
    out += [_param_row(p, ctx) for p in command.get_params(ctx)]
    if isinstance(command, click.Group):
        subcommands = sorted(command.commands)
        out += ["", "Commands: " + ", ".join(f"[`{s}`](#{anchor([*path, s])})" for s in subcommands) + "."]
        for sub in subcommands:
            out += _section(command.commands[sub], [*path, sub], ctx)
    return out


def anchor(path: list[str]) -> str:
    """GitHub's heading anchor for "## `python -m automation <path…>`"."""
    return "-".join(" ".join(path).lower().split())


def render(cli: click.Group | None = None) -> str:
    group = cli if cli is not None else load_cli()
    lines = [HEADER.rstrip("\n"), *_section(group, [PROG], None)]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/cli.md from the driver's --help.")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
        if current != text:
            print(
                f"{TARGET.relative_to(ROOT)} is stale: run `python scripts/cli-reference.py`",
                file=sys.stderr,
            )
            return 1
        print(f"{TARGET.relative_to(ROOT)} is up to date")
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
