"""Custom pre/post steps: commands from a stage's `promotion.pre` / `promotion.post`.

Each command runs from the repository root, without a shell (the string is split like a shell
would, but no shell expands it), with the stack's outputs in its environment:
`STAGELINE_<OUTPUT>` (the output name in upper snake case: apiUrl → STAGELINE_API_URL; objects
and lists as JSON) and `STAGELINE_STACK`. A leading `python`/`python3` runs with the driver's own
interpreter, so steps see the same virtualenv whatever PATH holds.

The driver's own credentials are withheld from the steps' environment: the state's secrets
passphrase (`PULUMI_CONFIG_PASSPHRASE`, `PULUMI_CONFIG_PASSPHRASE_FILE`), `PULUMI_ACCESS_TOKEN`,
`GITHUB_TOKEN`, and the variable holding the Slack webhook URL. AWS credentials stay: migrations
and end-to-end tests call AWS with the job's role.

The first failing command stops the list. Output is streamed to stderr as it comes and its last
lines are kept for the promotion record, with secrets masked: the stack's secret outputs and the
values of the withheld variables, in case a step finds them some other way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automation.redact import redact

ENV_PREFIX = "STAGELINE_"
TIMEOUT_SECONDS = 1800.0
TAIL_LINES = 20
TAIL_CHARS = 4000
# The driver's credentials a step has no business with (see the module docstring).
# GITHUB_TOKEN: the token that manages GitHub environments (and so prod's reviewers).
WITHHELD_ENV = (
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_CONFIG_PASSPHRASE_FILE",
    "PULUMI_ACCESS_TOKEN",
    "GITHUB_TOKEN",
)
_PASSPHRASE_FILE = WITHHELD_ENV[1]  # holds a path; the secret is the file's content
_MAX_PASSPHRASE_FILE = 64 * 1024
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def env_name(output: str) -> str:
    """`apiUrl` → `STAGELINE_API_URL`."""
    snake = _CAMEL.sub("_", output).replace("-", "_").replace(".", "_")
    return ENV_PREFIX + snake.upper()


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def withheld_names(extra: Iterable[str] = ()) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*WITHHELD_ENV, *extra]))


def step_env(
    stack: str,
    outputs: Mapping[str, Any],
    base: Mapping[str, str] | None = None,
    withhold: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a step runs with: the driver's, minus its credentials, plus the outputs (and
    `extra`: the candidate phase's TEST_DOMAIN and STAGELINE_PHASE)."""
    env = dict(os.environ if base is None else base)
    for name in withheld_names(withhold):
        env.pop(name, None)
    for name, value in outputs.items():
        env[env_name(name)] = _env_value(value)
    env[ENV_PREFIX + "STACK"] = stack
    env.update(extra or {})
    return env


def withheld_values(names: Iterable[str], base: Mapping[str, str] | None = None) -> list[str]:
    """The secret values behind the withheld variables, for masking: their values, and the passphrase
    file's content (not its path, which is no secret)."""
    env = os.environ if base is None else base
    values = [env[n] for n in names if env.get(n) and n != _PASSPHRASE_FILE]
    path = env.get(_PASSPHRASE_FILE)
    if path:
        try:
            with open(path, "rb") as handle:
                content = handle.read(_MAX_PASSPHRASE_FILE).decode("utf-8", "replace")
        except OSError:
            content = ""
        values += [v for v in (content, content.strip()) if v]
    return values


@dataclass(frozen=True)
class StepResult:
    phase: str  # "pre" | "post"
    command: str
    ok: bool
    exit_code: int | None
    seconds: float
    tail: str  # last lines of combined stdout/stderr, secrets masked
    error: str | None = None  # one line when it failed

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "command": self.command,
            "ok": self.ok,
            "exitCode": self.exit_code,
            "seconds": round(self.seconds, 3),
            "tail": self.tail,
            "error": self.error,
        }


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_step(
    command: str,
    *,
    phase: str,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = TIMEOUT_SECONDS,
    echo: Callable[[str], None] | None = None,
    secrets: Iterable[str] = (),
) -> StepResult:
    known = [s for s in secrets if s]
    started = time.monotonic()
    try:
        argv = _argv(command)
    except ValueError as exc:
        return StepResult(phase, command, False, None, 0.0, "", f"cannot parse the command: {exc}")
    if not argv:
        return StepResult(phase, command, False, None, 0.0, "", "empty command")
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        # A new session, so a timeout stops the step's children too.
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        problem = "command not found" if isinstance(exc, FileNotFoundError) else exc.strerror
        return StepResult(
            phase, command, False, None, time.monotonic() - started, "", f"{problem}: {argv[0]}"
        )

    output = process.stdout
    if output is None:  # stdout=PIPE above always gives one
        _stop(process)
        raise RuntimeError(f"no output pipe from {argv[0]}")

    def pump() -> None:
        try:
            for raw in iter(output.readline, b""):
                line = redact(raw.decode("utf-8", "replace").rstrip("\r\n"), known)
                tail.append(line)
                if echo is not None:
                    echo(f"  | {line}")
        except (ValueError, OSError):  # closed below when a grandchild keeps the pipe open too long
            return

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop(process)
    except BaseException:
        _stop(process)
        raise
    reader.join(timeout=5)
    output.close()
    seconds = time.monotonic() - started
    text = "\n".join(tail)[-TAIL_CHARS:]
    code = process.returncode
    if timed_out:
        return StepResult(phase, command, False, code, seconds, text, f"timed out after {timeout:g} s")
    if code != 0:
        last = next((line for line in reversed(tail) if line.strip()), "")
        detail = f": {last.strip()}" if last else ""
        return StepResult(phase, command, False, code, seconds, text, f"exited with {code}{detail}")
    return StepResult(phase, command, True, code, seconds, text)


def run_steps(
    commands: Sequence[str],
    *,
    phase: str,
    stack: str,
    outputs: Mapping[str, Any],
    cwd: Path,
    timeout: float = TIMEOUT_SECONDS,
    echo: Callable[[str], None] | None = None,
    secrets: Iterable[str] = (),
    withhold: Iterable[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> list[StepResult]:
    """Run the commands in order; stop at the first that fails. Returns the results of those that ran.

    `withhold` names environment variables kept from the steps besides WITHHELD_ENV (the Slack
    webhook's); the values of all of them are masked in the kept output.
    """
    names = withheld_names(withhold)
    env = step_env(stack, outputs, withhold=names, extra=extra_env)
    known = [*secrets, *withheld_values(names)]
    results: list[StepResult] = []
    for command in commands:
        if echo is not None:
            echo(f"{stack}: {phase} step: {command}")
        result = run_step(command, phase=phase, env=env, cwd=cwd, timeout=timeout, echo=echo, secrets=known)
        results.append(result)
        if not result.ok:
            break
    return results


def failure(results: Sequence[StepResult]) -> str | None:
    """One line naming the failed step, or None when all passed."""
    for r in results:
        if not r.ok:
            return f"{r.phase} step `{r.command}` {r.error}"
    return None
