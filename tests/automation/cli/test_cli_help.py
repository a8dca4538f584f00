"""Every command documents itself: help text and an "Examples:" section (as docs/cli.md and the docs
show). Covers every engineer's commands, hidden ones included, so a placeholder without
examples fails here."""

from __future__ import annotations

import click
import pytest

from automation.cli import cli

COMMANDS = sorted(cli.commands)


def test_the_driver_has_its_commands() -> None:
    assert {"preview", "up", "drift", "rollback", "history"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_and_examples(name: str) -> None:
    command = cli.commands[name]
    assert command.help and command.help.strip(), f"{name} has no help text"
    # Under the group, as users reach it: click caches a command's help option from the first
    # context it sees, so a bare context would leave `-h` out of docs/cli.md's check.
    parent = click.Context(cli, info_name="python -m automation", **cli.context_settings)
    with click.Context(command, info_name=name, parent=parent) as ctx:
        text = command.get_help(ctx)
    assert "Examples:" in text, f"{name} --help has no Examples: section"
    examples = text.split("Examples:", 1)[1]
    assert f"python -m automation {name}" in examples, f"{name} examples do not show how to run it"
