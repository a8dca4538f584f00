"""Stack locks of a self-managed backend and the Pulumi CLI's child processes: reading lock files,
telling a stale lock (its process provably gone) from a live one, and signalling the CLI.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass
from automation.engine.events import aware
from automation.engine.model import StackLock

# --- stack locks of a self-managed backend ----------------------------------------------------

# One line per lock in the CLI's "the stack is currently locked by N lock(s)" error (pkg/backend/diy/lock.go).
_LOCK_LINE = re.compile(
    r"^\s*(?P<where>\S+): created by (?P<user>.*)@(?P<host>[^@\s]+) \(pid (?P<pid>\d+)\) at (?P<at>\S+)\s*$"
)


def _parse_time(text: str) -> datetime | None:
    try:
        return aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def process_gone(pid: int) -> bool:
    """Whether no process with `pid` runs on this host (a zombie, which never runs again, counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, owned by someone else
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] == "Z"


def lock_is_stale(pid: int | None, host: str) -> bool:
    """Provably stale: recorded on this host, and that process is gone. Anything unknown is live."""
    return pid is not None and bool(host) and host == socket.gethostname() and process_gone(pid)


def locks_from_message(text: str) -> list[StackLock]:
    """The locks the CLI lists when it refuses to take the stack's lock."""
    out = []
    for line in text.splitlines():
        match = _LOCK_LINE.match(line)
        if match is None:
            continue
        pid = int(match.group("pid"))
        host = match.group("host")
        out.append(
            StackLock(
                location=match.group("where"),
                pid=pid,
                user=match.group("user"),
                host=host,
                created=_parse_time(match.group("at")),
                stale=lock_is_stale(pid, host),
            )
        )
    return out


def file_backend_root(url: str) -> Path | None:
    """The directory of a file:// backend (`file://~/x` as the CLI reads it); None for other backends."""
    if not url.startswith("file://"):
        return None
    from urllib.parse import unquote, urlsplit

    path = unquote(urlsplit(url).path) if not url.startswith("file://~") else url[len("file://") :]
    path = path.split("?", 1)[0]
    return Path(path).expanduser()


def lock_dirs(backend_root: Path, project: str, stack: str) -> list[Path]:
    """Where the DIY backend keeps a stack's lock files: by fully qualified name (organization/project/
    stack) for project-scoped state, by stack name for the legacy layout."""
    locks = backend_root / ".pulumi" / "locks"
    return [locks / "organization" / project / stack, locks / stack]


def read_lock_file(path: Path) -> StackLock | None:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(content, Mapping):
        return None
    pid = content.get("pid")
    pid = pid if isinstance(pid, int) else None
    host = str(content.get("hostname") or "")
    return StackLock(
        location=str(path),
        pid=pid,
        user=str(content.get("username") or ""),
        host=host,
        created=_parse_time(str(content.get("timestamp") or "")),
        stale=lock_is_stale(pid, host),
    )


# --- the Pulumi CLI child process ---------------------------------------------------------------


def child_pids(parent: int) -> list[int]:
    """Direct child processes of `parent` (Linux /proc, else `pgrep -P`); empty when unknown."""
    proc = Path("/proc")
    if proc.is_dir():
        children = []
        for stat in proc.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 1 and fields[1] == str(parent):
                children.append(int(stat.parent.name))
        return children
    try:
        done = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False)
    except OSError:
        return []
    return [int(pid) for pid in done.stdout.split() if pid.isdigit()]


def _command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            done = subprocess.run(
                ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
            )
        except OSError:
            return []
        return done.stdout.split()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_pulumi_process(pid: int) -> bool:
    """Whether `pid` runs the Pulumi CLI (`pulumi …`, or a script named pulumi run by an interpreter)."""
    return any(Path(arg).name == "pulumi" for arg in _command_line(pid)[:2])


def terminal_delivers_interrupts() -> bool:
    """Whether a Ctrl-C reaches our child processes by itself.

    The terminal sends SIGINT to its whole foreground process group, and the SDK starts the CLI in
    ours; sending the CLI another SIGINT would be its *second* interrupt, which makes Pulumi stop at
    once instead of cleanly. Without a controlling terminal (CI), or when we are not in the
    foreground, an interrupt reached only us.
    """
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def signal_processes(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:
            continue
