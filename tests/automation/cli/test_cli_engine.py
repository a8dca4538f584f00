"""The real engine refuses to start cleanly: no project file, no Pulumi CLI (exit 2, one line)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from automation.engine.local import LocalEngine
from automation.engine.model import EngineUnavailable
from automation.engine.project import INSTALL_URL


def test_without_the_pulumi_cli_the_driver_says_how_to_install_it(
    repo: Path, monkeypatch: pytest.MonkeyPatch, invoke: Callable[..., Result]
) -> None:
    (repo / "Pulumi.dev.yaml").write_text("config: {}\n")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", str(repo / "no-bin"))
    result = invoke(["drift", "dev"])
    assert result.exit_code == 2
    assert result.stderr == f"error: the Pulumi CLI is not on PATH: install it ({INSTALL_URL}) and retry\n"
    assert result.stdout == ""


def test_outside_a_project_the_driver_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invoke: Callable[..., Result]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(["history", "prod"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no Pulumi.yaml in ")
    assert result.stderr.count("\n") == 1


def test_open_checks_the_project_before_the_cli(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match=r"no Pulumi\.yaml"):
        LocalEngine.open(tmp_path, environ={"PATH": ""})


# --- arguments are checked before the Pulumi CLI is needed --------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rollback", "qa"], "error: unknown stack 'qa' (known stacks: dev)"),
        (["history", "qa"], "error: unknown stack 'qa' (known stacks: dev)"),
        (["preview", "dev", "qa"], "error: unknown stack 'qa' (known stacks: dev)"),
        (["up", "qa", "--yes"], "error: unknown stack 'qa' (known stacks: dev)"),
        (["drift", "qa"], "error: unknown stack 'qa' (known stacks: dev)"),
    ],
)
def test_an_unknown_stack_is_reported_as_such_without_a_pulumi_cli(
    repo: Path, monkeypatch: pytest.MonkeyPatch, invoke: Callable[..., Result], args: list[str], message: str
) -> None:
    (repo / "Pulumi.dev.yaml").write_text("config: {}\n")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", str(repo / "no-bin"))
    result = invoke(args)
    assert (result.exit_code, result.stderr) == (2, message + "\n")


def test_a_broken_stack_file_is_reported_as_such_without_a_pulumi_cli(
    repo: Path, monkeypatch: pytest.MonkeyPatch, invoke: Callable[..., Result]
) -> None:
    (repo / "Pulumi.dev.yaml").write_bytes(b"config:\n  stageline:a: 1\n  stageline:a: 2\n")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", str(repo / "no-bin"))
    result = invoke(["history", "dev"])
    assert result.exit_code == 2
    assert result.stderr == (
        'error: Pulumi.dev.yaml line 3: key "stageline:a" is set twice (first on line 2); '
        "Pulumi refuses duplicate keys\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "error: --ignore-file: {path} does not exist\n"),
        (
            "root:x:0:0:root:/root:/bin/bash\n",
            "error: ignore.yaml: must map resource types to lists of property paths, got str\n",
        ),
        (
            b"a: \xe9\n",
            "error: --ignore-file: {path} line 1 is not UTF-8 text (byte 0xe9); save it as UTF-8\n",
        ),
    ],
)
def test_a_bad_ignore_file_is_reported_as_such_without_a_pulumi_cli(
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    invoke: Callable[..., Result],
    content: str | bytes | None,
    message: str,
) -> None:
    (repo / "Pulumi.dev.yaml").write_text("config: {}\n")
    path = repo / "ignore.yaml"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", str(repo / "no-bin"))
    result = invoke(["drift", "dev", "--ignore-file", str(path)])
    assert (result.exit_code, result.stderr) == (2, message.format(path=path))


@pytest.mark.parametrize("option", ["--to-version", "--limit"])
def test_a_number_too_large_for_a_version_is_refused_without_a_pulumi_cli(
    repo: Path, monkeypatch: pytest.MonkeyPatch, invoke: Callable[..., Result], option: str
) -> None:
    (repo / "Pulumi.dev.yaml").write_text("config: {}\n")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", str(repo / "no-bin"))
    command = "rollback" if option == "--to-version" else "history"
    result = invoke([command, "dev", option, "1" * 40])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}': {'1' * 40} is not in the range 1<=x<=2147483647." in result.stderr
    assert "Pulumi CLI" not in result.stderr
