"""Every `python -m automation …` command the README shows parses with the real CLI.

The README is the user's manual: a documented option that does not exist is a bug. Commands are
parsed with click (nothing runs); output redirections and trailing comments are dropped.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest

from automation.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[tuple[int, list[str]]]:
    found = []
    fenced = False
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        text = line.strip().removeprefix("$ ")
        if not fenced or not text.startswith("python -m automation"):
            continue
        text = text.split(" #", 1)[0].split(" > ", 1)[0]
        found.append((number, shlex.split(text)[3:]))
    return found


COMMANDS = _commands()


def test_the_readme_shows_every_command() -> None:
    shown = {args[0] for _, args in COMMANDS if args}
    assert shown >= {"check", "parity", "render", "preview", "up", "drift", "rollback", "history", "promote"}


@pytest.mark.parametrize(("line", "args"), COMMANDS, ids=[f"README:{n}" for n, _ in COMMANDS])
def test_a_readme_command_parses(line: int, args: list[str]) -> None:
    ctx = click.Context(cli, info_name="python -m automation")
    command = cli.get_command(ctx, args[0])
    assert command is not None, f"README line {line}: unknown command {args[0]!r}"
    with command.make_context(args[0], args[1:], parent=ctx):
        pass
