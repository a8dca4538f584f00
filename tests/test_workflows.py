"""The workflows users run call the driver with arguments it accepts.

A workflow only runs on GitHub, so a renamed option would first show up as a red job in a
user's repository. Every `python -m automation …` invocation in .github/workflows is parsed here
with the real click command (nothing runs): shell variables stand for a stack name, and an
`args` array contributes every element it may hold.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from automation.cli import cli

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / ".github" / "workflows").glob("*.yml"))
_ARRAY = re.compile(r"args\+?=\((.*)\)")
# What the workflows' shell variables hold; anything else is a stack name.
_SAMPLES = {"$TO_VERSION": "7", "$RELEASE": "4f9c2d1"}


def _sample(token: str) -> str:
    if not token.startswith("$"):
        return token
    return _SAMPLES.get(token, "dev")


def _invocations(script: str) -> list[list[str]]:
    array: list[str] = []
    for match in _ARRAY.finditer(script):
        array += [_sample(a) for a in shlex.split(match.group(1))]
    calls = []
    for line in script.splitlines():
        if "-m automation" not in line:
            continue
        tokens = shlex.split(line.split("-m automation", 1)[1].split(">", 1)[0])
        args: list[str] = []
        for token in tokens:
            if token == "${args[@]}":
                args += array
            else:
                args.append(token)
        calls.append([_sample(a) for a in args])
    return calls


def _all_invocations() -> list[tuple[str, list[str]]]:
    found = []
    for path in WORKFLOWS:
        document = yaml.safe_load(path.read_text())
        for job in document.get("jobs", {}).values():
            for step in job.get("steps", []):
                for call in _invocations(step.get("run", "")):
                    found.append((path.name, call))
    return found


INVOCATIONS = _all_invocations()


def test_the_workflows_call_the_driver() -> None:
    commands = {args[0] for _, args in INVOCATIONS}
    assert {"build", "check", "parity", "preview", "promote", "drift", "rollback"} <= commands


@pytest.mark.parametrize(("workflow", "args"), INVOCATIONS, ids=[f"{w}:{a[0]}" for w, a in INVOCATIONS])
def test_every_driver_invocation_parses(workflow: str, args: list[str]) -> None:
    name, rest = args[0], args[1:]
    ctx = click.Context(cli, info_name="python -m automation")
    command = cli.get_command(ctx, name)
    assert command is not None, f"{workflow}: unknown command {name!r}"
    with command.make_context(name, list(rest), parent=ctx):  # raises UsageError on a bad option
        pass
