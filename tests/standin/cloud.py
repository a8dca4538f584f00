"""The stand-in cloud: what the stand-in provider plugins created, kept on disk for tests to read and edit.

Test equipment, not product. The stand-in plugins (`tests/standin/provider.py`) keep every resource
they create here, in the directory named by STAGELINE_STANDIN_CLOUD, and answer Read from it: so a
test that edits a property here, or deletes a resource, has made drift that `pulumi refresh` finds.
Several plugin processes (the aws and github plugins, several stacks at once) share one directory;
every change to a resource is one read-modify-write of `state.json` under an exclusive `fcntl` lock.
Faults live in `faults.json` (read under a shared lock, rewritten only when one is consumed) and the
operations log in `operations.jsonl` (appended, one line per operation), so a refresh, which only
reads, never rewrites the resources.

A resource is a Record: its URN, type, logical and physical names, ID, and its inputs and outputs as
the engine sends them on the wire (secrets stay wrapped in the wire's secret signature; `Record.input`
and `Record.output` unwrap them). Records are keyed by stack, type and ID: each stack stands for an
account of its own, so two stacks may hold a resource of the same type and ID.

Faults: `fail_next` makes the next matching operations fail with a message, `slow` delays them. A
fault matches a resource by logical name, physical name, ID, URN or type token. `operations()` lists
what the plugins did, in order.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV = "STAGELINE_STANDIN_CLOUD"
OPERATIONS = ("create", "update", "delete", "read")
# The wire's secret wrapper (pulumi/sdk rpc): {SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": ...}.
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"  # a marker, not a credential
SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"


class CloudError(Exception):
    """A request the stand-in cloud cannot answer: no such resource, or more than one."""


def is_secret(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(SECRET_SIG_KEY) == SECRET_SIG_VALUE


def unwrap(value: Any) -> Any:
    """The plain value: every secret wrapper, at any depth, replaced by what it holds."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, Mapping):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def scope_of(urn: str) -> str:
    """`project/stack` of a URN (`urn:pulumi:<stack>::<project>::…`): the account a stack stands for."""
    parts = urn.split("::")
    stack = parts[0].removeprefix("urn:pulumi:") if parts else ""
    project = parts[1] if len(parts) > 1 else ""
    return f"{project}/{stack}"


def record_key(urn: str, type_: str, id_: str) -> str:
    return f"{scope_of(urn)}|{type_}|{id_}"


def _segments(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.split(".") if p]


def _get_path(data: Any, path: str) -> Any:
    node = data
    for seg in _segments(path):
        while is_secret(node):
            node = node.get("value")
        if isinstance(seg, int) and isinstance(node, list) and seg < len(node):
            node = node[seg]
        elif isinstance(node, Mapping) and str(seg) in node:
            node = node[str(seg)]
        else:
            raise KeyError(path)
    return node


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `value` at a dotted path, creating objects on the way; a secret stays a secret."""
    segs = _segments(path)
    if not segs:
        raise ValueError("empty property path")
    node: Any = data
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        container = node
        while is_secret(container):
            container = container["value"]
        if isinstance(seg, int) and isinstance(container, list):
            if seg >= len(container):
                raise KeyError(f"{path}: index {seg} out of range")
            if last:
                container[seg] = {**container[seg], "value": value} if is_secret(container[seg]) else value
                return
            node = container[seg]
            continue
        if not isinstance(container, dict):
            raise KeyError(f"{path}: {seg!r} is not inside an object")
        key = str(seg)
        if last:
            old = container.get(key)
            container[key] = {**old, "value": value} if isinstance(old, dict) and is_secret(old) else value
            return
        if not isinstance(container.get(key), dict | list):
            container[key] = {}
        node = container[key]


@dataclass(frozen=True)
class Record:
    """One resource in the stand-in cloud."""

    id: str
    urn: str
    type: str
    name: str  # logical name (the URN's last part)
    physical: str  # the name it has in the cloud (bucket, function, role name …), else the ID
    inputs: dict[str, Any] = field(default_factory=dict)  # wire form: secrets wrapped
    outputs: dict[str, Any] = field(default_factory=dict)  # wire form: inputs plus computed values
    seed: str = ""  # what this resource's generated identifiers derive from (infra.simulate)

    @property
    def key(self) -> str:
        return record_key(self.urn, self.type, self.id)

    @property
    def stack(self) -> str:
        return scope_of(self.urn).split("/", 1)[1]

    @property
    def project(self) -> str:
        return scope_of(self.urn).split("/", 1)[0]

    def output(self, path: str) -> Any:
        """The plain value of an output at a dotted path (`environment.variables.LOG_LEVEL`)."""
        return unwrap(_get_path(self.outputs, path))

    def input(self, path: str) -> Any:
        return unwrap(_get_path(self.inputs, path))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "physical": self.physical,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        return cls(
            id=str(data["id"]),
            urn=str(data["urn"]),
            type=str(data["type"]),
            name=str(data["name"]),
            physical=str(data.get("physical") or data["id"]),
            inputs=dict(data.get("inputs") or {}),
            outputs=dict(data.get("outputs") or {}),
            seed=str(data.get("seed") or ""),
        )


@dataclass(frozen=True)
class Fault:
    """What the next matching operation does: fail with `message`, or wait `seconds` first."""

    match: str
    op: str
    message: str = ""
    seconds: float = 0.0
    remaining: int | None = 1  # None: every time

    def matches(self, op: str, names: Sequence[str]) -> bool:
        return self.op == op and self.match in names


def _check_op(op: str) -> None:
    if op not in OPERATIONS:
        raise ValueError(f"op must be one of {', '.join(OPERATIONS)}, got {op!r}")


class Cloud:
    """The stand-in cloud in one directory; every method reads or writes it under a lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._state = self.path / "state.json"
        self._lock = self.path / "state.lock"
        self._read_cache: dict[str, Any] = {}
        self._read_version: tuple[int, ...] | None = None
        self._faults = self.path / "faults.json"
        self._faults_lock = self.path / "faults.lock"
        self._operations = self.path / "operations.jsonl"

    @classmethod
    def from_env(cls) -> Cloud:
        where = os.environ.get(ENV, "")
        if not where:
            raise CloudError(f"{ENV} is not set: it must name the stand-in cloud's directory")
        if not Path(where).is_absolute():
            # The engine starts plugins in the program's directory, not where the variable was set.
            raise CloudError(f"{ENV} must be an absolute path, got {where!r}")
        return cls(where)

    # --- storage ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, write: bool) -> Iterator[dict[str, Any]]:
        """The resources under the lock. A reader gets the parsed file shared with earlier readers of
        the same version of it (every write replaces the file, so its inode, size and time identify
        it): a refresh reads each resource once, and parsing the whole file for each read made the
        stand-in, not the engine, the cost. Readers copy what they return."""
        with _flocked(self._lock, write=write):
            if write:
                state = {"resources": _read_json(self._state, {})}
                yield state
                _write_json(self._state, state["resources"])  # in insertion order: creation order
                return
            try:
                info = self._state.stat()
                version: tuple[int, ...] | None = (info.st_ino, info.st_size, info.st_mtime_ns)
            except FileNotFoundError:
                version = None
            if version is None or version != self._read_version:
                self._read_cache = _read_json(self._state, {})
                self._read_version = version
            yield {"resources": self._read_cache}

    @contextlib.contextmanager
    def _faults_locked(self, *, write: bool) -> Iterator[list[dict[str, Any]]]:
        with _flocked(self._faults_lock, write=write):
            faults: list[dict[str, Any]] = _read_json(self._faults, [])
            yield faults
            if write:
                _write_json(self._faults, faults)

    # --- reading ---------------------------------------------------------------------------------

    def resources(self, type_: str | None = None, *, stack: str | None = None) -> list[Record]:
        """Every resource (of a type token, in a stack), in the order they were created."""
        with self._locked(write=False) as state:
            records = [Record.from_json(copy.deepcopy(r)) for r in state["resources"].values()]
        return [
            r for r in records if (type_ is None or r.type == type_) and (stack is None or r.stack == stack)
        ]

    def find(self, type_: str, name: str, *, stack: str | None = None) -> Record | None:
        """The resource of this type with this logical or physical name (or ID); None if there is none."""
        found = [r for r in self.resources(type_, stack=stack) if name in (r.name, r.physical, r.id)]
        if len(found) > 1:
            raise CloudError(f"{len(found)} resources of type {type_} are named {name!r}; pass stack=")
        return found[0] if found else None

    def get(self, id_: str, type_: str | None = None) -> Record | None:
        """The resource with this ID (and type); None if there is none."""
        found = [r for r in self.resources(type_) if r.id == id_]
        if len(found) > 1:
            raise CloudError(f"{len(found)} resources have the ID {id_!r}; pass type_=")
        return found[0] if found else None

    def operations(self) -> list[tuple[str, str, str]]:
        """What the plugins did, in order: (op, type token, logical name), op in create/update/delete/read."""
        try:
            lines = self._operations.read_text().splitlines()
        except FileNotFoundError:
            return []
        entries = [json.loads(line) for line in lines if line]
        return [(e["op"], e["type"], e["name"]) for e in entries]

    def faults(self) -> list[Fault]:
        with self._faults_locked(write=False) as faults:
            return [Fault(**f) for f in faults]

    # --- editing: drift made outside the engine --------------------------------------------------

    def _resolve(self, state: Mapping[str, Any], id_or_name: str) -> str:
        records = state["resources"]
        for attr in ("id", "name", "physical"):
            keys = [k for k, r in records.items() if r.get(attr) == id_or_name]
            if len(keys) > 1:
                raise CloudError(f"{len(keys)} resources have the {attr} {id_or_name!r}; use a unique ID")
            if keys:
                return keys[0]
        raise CloudError(f"no resource in the stand-in cloud has the ID or name {id_or_name!r}")

    def set_property(self, id_or_name: str, path: str, value: Any) -> Record:
        """Change a property as someone in the console would: in the outputs, and in the inputs too
        when the property is an input. `path` is dotted: `memorySize`, `environment.variables.LOG_LEVEL`.
        """
        with self._locked(write=True) as state:
            key = self._resolve(state, id_or_name)
            data = state["resources"][key]
            top = str(_segments(path)[0])
            _set_path(data["outputs"], path, value)
            if top in data["inputs"]:
                _set_path(data["inputs"], path, value)
            return Record.from_json(data)

    def delete(self, id_or_name: str) -> Record:
        """Delete a resource behind the engine's back (the next refresh finds it gone)."""
        with self._locked(write=True) as state:
            key = self._resolve(state, id_or_name)
            return Record.from_json(state["resources"].pop(key))

    # --- faults ----------------------------------------------------------------------------------

    def fail_next(self, match: str, op: str, message: str, times: int = 1) -> None:
        """The next `times` `op` operations on resources matching `match` fail with `message`."""
        _check_op(op)
        if times < 1:
            raise ValueError("times must be at least 1")
        self._add_fault(Fault(match=match, op=op, message=message, remaining=times))

    def slow(self, match: str, op: str, seconds: float, times: int | None = None) -> None:
        """`op` operations on resources matching `match` wait `seconds` first (every time, or `times`)."""
        _check_op(op)
        self._add_fault(Fault(match=match, op=op, seconds=float(seconds), remaining=times))

    def clear_faults(self) -> None:
        with self._faults_locked(write=True) as faults:
            faults.clear()

    def _add_fault(self, fault: Fault) -> None:
        with self._faults_locked(write=True) as faults:
            faults.append(fault.__dict__)

    # --- the plugins' side -----------------------------------------------------------------------

    def take_faults(self, op: str, names: Sequence[str]) -> tuple[float, str | None]:
        """Consume the faults that apply to one operation: (seconds to wait, message to fail with)."""
        names = [n for n in names if n]
        delay, message = 0.0, None
        with self._faults_locked(write=False) as faults:
            if not any(Fault(**f).matches(op, names) for f in faults):
                return delay, message  # the usual case: nothing to consume, nothing to write
        with self._faults_locked(write=True) as faults:
            kept = []
            for stored in faults:
                raw = dict(stored)
                fault = Fault(**raw)
                applies = fault.matches(op, names) and (fault.seconds > 0 or message is None)
                if applies:
                    if fault.seconds > 0:
                        delay += fault.seconds
                    else:
                        message = fault.message
                    if fault.remaining is not None:
                        if fault.remaining <= 1:
                            continue
                        raw = {**raw, "remaining": fault.remaining - 1}
                kept.append(raw)
            faults[:] = kept
        return delay, message

    def lookup(self, urn: str, type_: str, id_: str) -> Record | None:
        with self._locked(write=False) as state:
            data = copy.deepcopy(state["resources"].get(record_key(urn, type_, id_)))
        return Record.from_json(data) if data else None

    def put(self, record: Record, op: str, *, exclusive: bool = False) -> None:
        """Store a record and log the operation. With `exclusive`, fail if its key is taken."""
        with self._locked(write=True) as state:
            if exclusive and record.key in state["resources"]:
                raise CloudError(f"{record.type} {record.id!r} already exists")
            state["resources"][record.key] = record.to_json()
            self.log(op, record)

    def remove(self, record: Record, op: str = "delete") -> None:
        with self._locked(write=True) as state:
            state["resources"].pop(record.key, None)
            self.log(op, record)

    def log(self, op: str, record: Record) -> None:
        """Append one line to the operations log (a single O_APPEND write: lines never interleave)."""
        entry = {"op": op, "type": record.type, "name": record.name, "id": record.id, "urn": record.urn}
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(self._operations, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _flocked(path: Path, *, write: bool) -> Iterator[None]:
    with open(path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, separators=(",", ":")))
    os.replace(tmp, path)
