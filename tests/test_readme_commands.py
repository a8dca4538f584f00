"""Every `python -m automation …` command the README and docs/ show parses with the real CLI.

The README and docs/*.md are the user's manual: a documented option that does not exist is a bug.
Checked: every line of a fenced code block that starts with `python -m automation` (or `$ python -m
automation`), and every inline code span that does. Commands are parsed with click (nothing runs);
output redirections and trailing comments are dropped. In inline spans, the placeholders the prose
uses (`STACK`, `N`, `VERSION` …) stand for an example value, and prose may name a command without
its arguments ("the same logic as `python -m automation rollback`"): a missing *argument* is
accepted there, never an unknown command, an unknown option or a bad value. A span written as a
synopsis (`[--json]`, `STACK…`, `a | b`) is not a command and is skipped.

docs/cli.md is left out: it is generated from the commands' own `--help` (tests/test_docs.py keeps it
current), and its examples are the commands' help epilogs, which the CLI tests check.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from test_docs import code_spans  # the docs tests' one reading of inline code

from automation.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "cli.md")]
PREFIX = "python -m automation"
PLACEHOLDERS = {"STACK": "dev", "N": "1", "VERSION": "v1", "FILE": "record.json", "PATH": "."}


def _args(text: str) -> list[str]:
    text = text.split(" #", 1)[0].split(" > ", 1)[0]
    return shlex.split(text)[3:]


def _commands() -> list[tuple[str, list[str], bool]]:
    found = []
    for doc in DOCS:
        name = doc.relative_to(ROOT).as_posix()
        fenced = False
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                text = line.strip().removeprefix("$ ")
                if text.startswith(PREFIX):
                    found.append((f"{name}:{number}", _args(text), False))
                continue
            for text in code_spans(line):
                if not text.startswith(PREFIX + " ") or re.search(r"[\[\]|…<>]", text):
                    continue
                words = [PLACEHOLDERS.get(word, word) for word in _args(text)]
                found.append((f"{name}:{number}", words, True))
    return found


COMMANDS = _commands()


def test_the_docs_show_every_command() -> None:
    shown = {args[0] for _, args, _ in COMMANDS if args}
    assert shown >= {"check", "parity", "render", "preview", "up", "drift", "rollback", "history", "promote"}
    visible = {name for name, command in cli.commands.items() if not command.hidden}
    assert shown >= visible, f"commands no example shows: {sorted(visible - shown)}"


@pytest.mark.parametrize(("where", "args", "inline"), COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_a_documented_command_parses(where: str, args: list[str], inline: bool) -> None:
    assert args, f"{where}: `{PREFIX}` without a command"
    # The group's own settings: click caches a command's help option from the first context it sees.
    ctx = click.Context(cli, info_name=PREFIX, **cli.context_settings)
    command = cli.get_command(ctx, args[0])
    assert command is not None, f"{where}: unknown command {args[0]!r}"
    try:
        with command.make_context(args[0], args[1:], parent=ctx):
            pass
    except click.MissingParameter as missing:
        if not (inline and isinstance(missing.param, click.Argument)):
            raise
