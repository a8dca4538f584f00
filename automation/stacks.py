"""The engine seam: the only module that touches `pulumi.automation`.

Everything above this module (preview, drift, rollback, history, promotion …) is orchestration over
plain frozen dataclasses and the `Engine` protocol below. Two implementations exist:

* `LocalEngine` (here) wraps `pulumi.automation.LocalWorkspace` with work_dir = the repository root,
  so `pulumi up -s dev` and the driver share `Pulumi.<stack>.yaml`.
* `automation.fake.FakeEngine` keeps stacks in memory for tests and benchmarks.

Importing this module is cheap (click via automation.errors, nothing else): the SDK is imported inside
`LocalEngine` and the pure converters, so capability modules can import the dataclasses freely.

How commands get an engine: they call `open_engine()`, which calls the module attribute
`engine_factory`. Tests replace it::

    monkeypatch.setattr(automation.stacks, "engine_factory", lambda: fake)

Conventions every implementation follows (this is the contract):

* Stack names are validated by the engine: an unknown stack raises `UnknownStackError` (exit 2) whose
  message lists the known stacks.
* Methods that read (`preview`, `preview_refresh`, `history`, `outputs`, `get_release`,
  `pending_operations`, `locks`) are safe to call from several threads at once for *different* stacks.
  On a self-managed backend they take no lock, so they go on while another process updates the stack
  (seeing the state as it is, its in-flight operations pending), and they never write the tracked
  stack file.
* History is newest first and every entry has the number `--to-version` takes: Pulumi Cloud's, else
  its position counted from the oldest (1). `up` returns the entry it wrote, so numbered.
* Updates (`up`, `clear_pending`) take the stack's lock. One held by another process raises
  `ConcurrentUpdateError`, and callers retry (see automation.updates); one left by a killed CLI, whose
  process is provably gone, raises `StaleLockError` and is never retried: `remove_stale_locks` is the
  way out (the driver's --clear-pending). Any other engine failure raises `EngineError` whose message
  is the engine's own, with secrets redacted.
* No method prints. Progress, if wanted, goes through the optional `progress` callback (one line each).

tests/engine/test_contract.py runs these promises against both implementations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from automation.errors import ConfigurationError, StagelineError
from automation.redact import MASK, redact, redact_value

if TYPE_CHECKING:
    from pulumi.automation import EngineEvent, Stack, UpdateSummary
    from pulumi.automation.events import StepEventMetadata, StepEventStateMetadata

RELEASE_KEY = "stageline:release"
PROJECT_FILE = "Pulumi.yaml"
INSTALL_URL = "https://www.pulumi.com/docs/iac/download-install/"
DEFAULT_STATE_DIR = Path(".stageline") / "state"

ProgressFn = Callable[[str], None]
Release = dict[str, Any]  # the `stageline:release` object exactly as in Pulumi.<stack>.yaml


# --- errors -------------------------------------------------------------------------------------


class EngineError(StagelineError):
    """The engine reported a failure (exit 1). The message is the engine's, secrets redacted."""


class ConcurrentUpdateError(EngineError):
    """Another update holds the stack's lock. Retry later (automation.updates retries with backoff)."""


class StaleLockError(EngineError):
    """The stack is locked by a Pulumi process that provably no longer runs (exit 1; never retried).

    A CLI that was killed (SIGKILL, a lost runner) leaves its lock in a self-managed backend, and every
    later update fails on it. `--clear-pending` removes such a lock (see `Engine.remove_stale_locks`).
    """


class EngineUnavailable(ConfigurationError):
    """The engine cannot start: no `pulumi` on PATH, no Pulumi.yaml, unreadable backend (exit 2)."""


class UnknownStackError(ConfigurationError):
    """The stack has no Pulumi.<stack>.yaml in this project (exit 2). The message lists known stacks."""


class StackNotDeployed(ConfigurationError):
    """The stack has a Pulumi.<stack>.yaml but does not exist in the backend yet (exit 2).

    Read-only commands (preview, drift, history, rollback planning) never create a stack: creating
    one runs `pulumi stack init`, which with the passphrase provider writes an `encryptionsalt` into
    the tracked stack file.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt (see automation.updates.sigterm_as_interrupt).

    Unlike a Ctrl-C at a terminal, which reaches the whole process group, SIGTERM reaches only the
    driver: the engine must pass the interrupt on to the Pulumi CLI itself.
    """


def unknown_stack(stack: str, known: Iterable[str]) -> UnknownStackError:
    names = ", ".join(sorted(known)) or "none"
    return UnknownStackError(f"unknown stack {stack!r} (known stacks: {names})")


def not_deployed(stack: str) -> StackNotDeployed:
    return StackNotDeployed(
        f"stack {stack} is not deployed yet (run `python -m automation up {stack}`); "
        "read-only commands never create it"
    )


# --- stateful classification --------------------------------------------------------------------

# Resource types whose replacement or deletion loses data or identity that cannot be recreated
# (objects, images, logs, keys, rows). A gate treats a replace/delete of one of these as dangerous.
STATEFUL_TYPES = frozenset(
    {
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketV2:BucketV2",
        "aws:s3/directoryBucket:DirectoryBucket",
        "aws:ecr/repository:Repository",
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:dynamodb/table:Table",
        "aws:rds/instance:Instance",
        "aws:rds/cluster:Cluster",
        "aws:efs/fileSystem:FileSystem",
        "aws:kms/key:Key",
        "aws:secretsmanager/secret:Secret",
        "aws:sqs/queue:Queue",
        "aws:kinesis/stream:Stream",
        "aws:backup/vault:Vault",
        "aws:opensearch/domain:Domain",
        "aws:elasticache/replicationGroup:ReplicationGroup",
        "aws:cognito/userPool:UserPool",
        "github:index/repository:Repository",
    }
)


def is_stateful(type_token: str, *, protected: bool = False, retain_on_delete: bool = False) -> bool:
    """Whether losing this resource loses data: a known stateful type, or anything protected/retained.

    Protection is the program's own statement that a resource matters, so it counts whatever the type.
    """
    return protected or retain_on_delete or type_token in STATEFUL_TYPES


# --- the dataclasses ----------------------------------------------------------------------------


def parse_urn(urn: str) -> tuple[str, str]:
    """(type token, name) of `urn:pulumi:STACK::PROJECT::[parent$]TYPE::NAME`."""
    parts = urn.split("::")
    if len(parts) < 4:
        return "", urn
    return parts[2].rsplit("$", 1)[-1], "::".join(parts[3:])


# Normalised step operations. Pulumi reports a replacement as up to three steps
# (create-replacement, replace, delete-replaced); a report shows it once, as "replace".
_OP_NORMAL = {
    "create-replacement": "replace",
    "delete-replaced": "replace",
    "replace": "replace",
    "discard": "delete",
    "discard-replaced": "replace",
    "import-replacement": "replace",
    "read-replacement": "read",
    "remove-pending-replace": "replace",
}
CHANGE_OPS = ("create", "update", "replace", "delete", "import")


def normal_op(op: str) -> str:
    return _OP_NORMAL.get(op, op)


@dataclass(frozen=True)
class ResourceStep:
    """One resource's planned operation in a preview."""

    urn: str
    type: str
    name: str
    op: str  # create | update | replace | delete | import | read | same | refresh
    changed: tuple[str, ...] = ()  # property paths that differ (the replace-causing ones for replace)
    protected: bool = False
    stateful: bool = False  # see is_stateful; computed by whoever builds the step

    @property
    def destructive(self) -> bool:
        """A replace or delete: the current resource goes away."""
        return self.op in ("replace", "delete")

    @property
    def dangerous(self) -> bool:
        """A replace or delete of a stateful resource: what a gate refuses without an explicit flag."""
        return self.destructive and self.stateful

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "op": self.op,
            "changed": list(self.changed),
            "protected": self.protected,
            "stateful": self.stateful,
        }


@dataclass(frozen=True)
class PreviewSummary:
    """What `up` would do to one stack."""

    stack: str
    counts: Mapping[str, int]  # op -> number of resources, "same" included
    steps: tuple[ResourceStep, ...] = ()  # every step except "same", in engine order

    @property
    def has_changes(self) -> bool:
        return any(n for op, n in self.counts.items() if op in CHANGE_OPS) or any(
            s.op in CHANGE_OPS for s in self.steps
        )

    @property
    def dangerous(self) -> tuple[ResourceStep, ...]:
        return tuple(s for s in self.steps if s.dangerous)

    def by_op(self, op: str) -> tuple[ResourceStep, ...]:
        return tuple(s for s in self.steps if s.op == op)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "hasChanges": self.has_changes,
            "counts": dict(self.counts),
            "steps": [s.to_json() for s in self.steps],
            "dangerous": [s.urn for s in self.dangerous],
        }


@dataclass(frozen=True)
class PropertyDrift:
    """One property whose real value differs from what the state recorded."""

    path: str  # Pulumi property path: "tags.Owner", "environment.variables.LOG_LEVEL", "rules[0].cidr"
    kind: str  # update | add | delete  (add: exists in the cloud only; delete: recorded only)
    old: Any = None  # the value the state recorded (what the program last set); secrets masked
    new: Any = None  # the value found in the cloud now; secrets masked

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class ResourceDrift:
    urn: str
    type: str
    name: str
    kind: str = "update"  # update: properties differ; delete: the resource no longer exists
    properties: tuple[PropertyDrift, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "kind": self.kind,
            "properties": [p.to_json() for p in self.properties],
        }


@dataclass(frozen=True)
class DriftReport:
    """The result of a preview-only refresh of one stack: what drifted, resource by resource."""

    stack: str
    resources: tuple[ResourceDrift, ...] = ()
    ignored: tuple[str, ...] = ()  # "URN path" of property drifts silenced by the ignore file
    error: str | None = None  # set when the refresh itself failed (the report is then incomplete)

    @property
    def drifted(self) -> bool:
        return bool(self.resources)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "drifted": self.drifted,
            "error": self.error,
            "resources": [r.to_json() for r in self.resources],
            "ignored": list(self.ignored),
        }


@dataclass(frozen=True)
class UpdateRecord:
    """One entry of a stack's history (newest first in `Engine.history`)."""

    # Pulumi Cloud's update number; self-managed backends record none, so `LocalEngine.history` numbers
    # their entries oldest = 1 (see number_history). Either way: what `--to-version N` takes.
    version: int
    kind: str  # update | refresh | destroy | import | resource-import | rename (what `stack history` lists)
    # succeeded | failed | in-progress (the CLI's backend.UpdateResult; a self-managed backend writes an
    # entry only when the operation ends, so it never shows in-progress; an interrupted update is failed)
    result: str
    start: datetime  # timezone-aware, UTC
    end: datetime | None = None
    message: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)  # "git.head", "exec.kind" …
    config: Mapping[str, Any] = field(default_factory=dict)  # decoded values; secrets are "[secret]"
    resource_changes: Mapping[str, int] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.result == "succeeded"

    @property
    def commit(self) -> str | None:
        """The git commit the program ran from (Pulumi records `git.head` for a git work dir)."""
        return self.environment.get("git.head") or None

    @property
    def short_commit(self) -> str:
        return (self.commit or "")[:7]

    @property
    def release(self) -> Release | None:
        value = self.config.get(RELEASE_KEY)
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def release_version(self) -> str | None:
        release = self.release
        version = release.get("version") if release else None
        return str(version) if version is not None else None

    @property
    def duration(self) -> timedelta | None:
        return self.end - self.start if self.end is not None else None

    def to_json(self) -> dict[str, Any]:
        duration = self.duration
        return {
            "version": self.version,
            "kind": self.kind,
            "result": self.result,
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end else None,
            "durationSeconds": duration.total_seconds() if duration is not None else None,
            "message": self.message,
            "commit": self.commit,
            "release": self.release,
            "resourceChanges": dict(self.resource_changes),
        }


@dataclass(frozen=True)
class StackOutputs:
    stack: str
    values: Mapping[str, Any]  # plain values, secrets included: never print these
    secret_keys: frozenset[str] = frozenset()  # outputs that are secret as a whole
    # Property paths of secrets inside object or list outputs ("config.token", "keys[0]"): the engine
    # marks a nested secret, not the output that holds it.
    secret_paths: frozenset[str] = frozenset()

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def secret_values(self) -> list[str]:
        """Every secret string in the outputs, whole or nested, for redacting what is printed."""
        found: list[Any] = [self.values[k] for k in self.secret_keys if k in self.values]
        found += [value_at(self.values, path) for path in sorted(self.secret_paths)]
        return list(dict.fromkeys(all_secret_strings(found)))

    def to_json(self) -> dict[str, Any]:
        """Secret outputs masked, nested secrets too: this is what may be printed."""
        out: dict[str, Any] = {}
        for key, value in self.values.items():
            out[key] = MASK if key in self.secret_keys else value
        for path in sorted(self.secret_paths):
            out = _masked_at(out, split_property_path(path))
        return out


def _masked_at(document: Any, parts: Sequence[str | int]) -> Any:
    """A copy of `document` with the value at `parts` replaced by the mask (unchanged when absent)."""
    if not parts:
        return MASK
    head, rest = parts[0], parts[1:]
    if isinstance(document, Mapping) and str(head) in document:
        copy = dict(document)
        copy[str(head)] = _masked_at(document[str(head)], rest)
        return copy
    if isinstance(document, list) and isinstance(head, int) and 0 <= head < len(document):
        items = list(document)
        items[head] = _masked_at(document[head], rest)
        return items
    return document


def engine_secret_paths(document: Any, prefix: str = "") -> set[str]:
    """Property paths of the engine-marked secrets in a state document (an exported resource's outputs).

    `pulumi stack output --json` masks a secret nested in an object output, while the SDK flags only
    outputs that are secret as a whole; the exported state keeps the engine's secret marker in place.
    """
    if isinstance(document, Mapping):
        if _SECRET_SIG in document:
            return {prefix} if prefix else set()
        out: set[str] = set()
        for key, value in document.items():
            out |= engine_secret_paths(value, _child_path(prefix, str(key)))
        return out
    if isinstance(document, list):
        out = set()
        for i, item in enumerate(document):
            out |= engine_secret_paths(item, _child_path(prefix, i))
        return out
    return set()


def stack_outputs_state(deployment: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The outputs of the stack resource in an exported deployment ({} when there is none)."""
    for resource in (deployment or {}).get("resources") or []:
        if str(resource.get("type", "")) == "pulumi:pulumi:Stack":
            outputs = resource.get("outputs")
            return outputs if isinstance(outputs, Mapping) else {}
    return {}


@dataclass(frozen=True)
class PendingOperation:
    """A resource operation an interrupted update started and never finished."""

    urn: str
    type: str
    # creating | updating | deleting | reading | importing: the engine marks an operation pending when it
    # starts it (pkg/backend/snapshot.go; "importing" for an import step) and clears it when it ends.
    # Pulumi carries only pending creates over into later updates; the others go with the next update.
    kind: str

    @property
    def name(self) -> str:
        return parse_urn(self.urn)[1]

    def to_json(self) -> dict[str, Any]:
        return {"urn": self.urn, "type": self.type, "kind": self.kind}


@dataclass(frozen=True)
class BackendInfo:
    url: str
    source: str  # "PULUMI_BACKEND_URL" or "default"
    secrets: str = ""  # how secrets are encrypted, as told to the user

    def describe(self) -> str:
        origin = "from PULUMI_BACKEND_URL" if self.source == "PULUMI_BACKEND_URL" else "default, local"
        extra = f"; secrets: {self.secrets}" if self.secrets else ""
        return f"state backend: {self.url} ({origin}{extra})"


@dataclass(frozen=True)
class StackLock:
    """A lock a self-managed backend holds for a stack while a Pulumi process changes it.

    The CLI writes one file per process (`.pulumi/locks/<organization>/<project>/<stack>/<id>.json`)
    holding its pid, user, host and start time, and deletes it when the operation ends; a killed CLI
    never does. `stale` is True only when that is proven: the lock names this host and no process
    with its pid is running here (a zombie counts as gone). A lock from another host is never stale.
    """

    location: str  # the lock file (path or URL), as the CLI names it
    pid: int | None
    user: str = ""
    host: str = ""
    created: datetime | None = None
    stale: bool = False

    def describe(self) -> str:
        when = f" at {self.created:%Y-%m-%d %H:%M:%S} UTC" if self.created else ""
        state = "its process is gone" if self.stale else "held by a running process or another host"
        return f"{self.location} (pid {self.pid} on {self.host or '?'}{when}; {state})"

    def to_json(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "pid": self.pid,
            "user": self.user,
            "host": self.host,
            "created": self.created.isoformat() if self.created else None,
            "stale": self.stale,
        }


# --- the protocol -------------------------------------------------------------------------------


@runtime_checkable
class Engine(Protocol):
    """The engine operations the driver needs. Implemented by `LocalEngine` and `fake.FakeEngine`.

    Every method takes the stack name; implementations select the stack themselves. All methods
    raise `UnknownStackError` for a stack outside `stack_names()`, `ConcurrentUpdateError` when the
    stack is locked by another update, and `EngineError` for any other engine failure. Only
    `ensure_stack`, `up` and `set_release` may create a stack in the backend; the others raise
    `StackNotDeployed` for a stack that is not there yet.
    """

    @property
    def project_dir(self) -> Path:
        """The repository root: holds Pulumi.yaml and the Pulumi.<stack>.yaml files."""
        ...

    def backend(self) -> BackendInfo:
        """Where state lives, for the one line the CLI prints on stderr."""
        ...

    def stack_names(self) -> list[str]:
        """The stacks of this project (those with a Pulumi.<stack>.yaml), sorted; what `--all` means."""
        ...

    def ensure_stack(self, stack: str) -> None:
        """Select `stack`, creating it in the backend when it does not exist there yet."""
        ...

    def preview(self, stack: str, *, progress: ProgressFn | None = None) -> PreviewSummary:
        """What `up` would change, per resource. Changes nothing."""
        ...

    def up(
        self,
        stack: str,
        *,
        message: str,
        work_dir: Path | None = None,
        progress: ProgressFn | None = None,
        refresh: bool = False,
    ) -> UpdateRecord:
        """Run the program and apply it; return the history entry it wrote (numbered as `history` does).

        An update compares the program with the *state*, so drift (the cloud differing from the state)
        is left alone; `refresh=True` reads the cloud into the state first (`pulumi up --refresh`), so
        the update puts drifted resources back as the program says: that is drift remediation.
        `message` is recorded with the update. `work_dir` runs the program from another checkout of
        the project (a git worktree at an earlier commit, for `rollback --code`), using that
        checkout's Pulumi.<stack>.yaml but the same backend. The update's environment records the
        checkout's git commit as "git.head". A failed update raises `EngineError` and is still in
        history with result "failed". An interrupted call (KeyboardInterrupt, or `Terminated` for
        SIGTERM) propagates at once; the caller then calls `cancel` to stop what this call started.
        """
        ...

    def preview_refresh(self, stack: str, *, progress: ProgressFn | None = None) -> DriftReport:
        """Compare state with the cloud without writing state (a preview-only refresh)."""
        ...

    def history(self, stack: str, *, limit: int | None = None) -> list[UpdateRecord]:
        """Every past operation, newest first, each with the version `--to-version` takes (oldest is 1 on
        a self-managed backend); `limit` keeps the newest N."""
        ...

    def outputs(self, stack: str) -> StackOutputs:
        """The stack outputs of the last update; secret ones listed in `secret_keys`."""
        ...

    def get_release(self, stack: str, *, work_dir: Path | None = None) -> Release | None:
        """The `stageline:release` object in Pulumi.<stack>.yaml (of `work_dir`'s checkout if given)."""
        ...

    def set_release(self, stack: str, release: Mapping[str, Any], *, work_dir: Path | None = None) -> None:
        """Replace `stageline:release` in Pulumi.<stack>.yaml with `release`, as a structured object."""
        ...

    def pending_operations(self, stack: str) -> list[PendingOperation]:
        """Operations an interrupted update left unfinished in the state."""
        ...

    def clear_pending(self, stack: str) -> int:
        """Drop the pending operations from the state; return how many were dropped.

        Pulumi's repair for an interrupted update: a refresh that drops pending creates
        (`pulumi refresh --clear-pending-creates`), so the state also takes in what the cloud now
        holds (a later `up` puts it back as the program says). Needs the stack's lock, like any
        update: ConcurrentUpdateError or StaleLockError when it is held.
        """
        ...

    def locks(self, stack: str) -> list[StackLock]:
        """The locks held on the stack now (self-managed backends whose locks can be read; else [])."""
        ...

    def remove_stale_locks(self, stack: str) -> list[StackLock]:
        """Remove the locks that are provably stale (`StackLock.stale`), never any other; return them."""
        ...

    def cancel(self, stack: str, *, progress: ProgressFn | None = None) -> None:
        """Stop the update that an interrupted `up` of *this engine* started on `stack`, and wait for it.

        Never touches an update this engine did not start (another user's, or one already finished):
        with nothing of ours running it does nothing. Never raises for "nothing to cancel".
        """
        ...


EngineFactory = Callable[[], Engine]


def _default_factory() -> Engine:
    return LocalEngine.open()


# Tests and benchmarks replace this (see module docstring); commands call open_engine().
engine_factory: EngineFactory = _default_factory


def open_engine() -> Engine:
    return engine_factory()


def resolve_stacks(engine: Engine, names: Sequence[str], all_stacks: bool) -> list[str]:
    """The stacks a command acts on: STACK… or --all (never both, never neither), in the order given."""
    known = engine.stack_names()
    if all_stacks and names:
        raise ConfigurationError("give stack names or --all, not both")
    if all_stacks:
        if not known:
            raise ConfigurationError("--all: this project has no Pulumi.<stack>.yaml files")
        return list(known)
    if not names:
        raise ConfigurationError("give at least one stack name, or --all")
    for name in names:
        if name not in known:
            raise unknown_stack(name, known)
    return list(dict.fromkeys(names))


# --- pure helpers over engine data --------------------------------------------------------------

_PATH_TOKEN = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]|\.?([^.\[\]]+)')


def split_property_path(path: str) -> list[str | int]:
    """`a.b[0]["c.d"]` -> ["a", "b", 0, "c.d"] (Pulumi's property path syntax)."""
    out: list[str | int] = []
    for quoted, index, plain in _PATH_TOKEN.findall(path):
        if index:
            out.append(int(index))
        elif quoted:
            out.append(quoted.replace('\\"', '"'))
        elif plain:
            out.append(plain)
    return out


def value_at(document: Any, path: str) -> Any:
    """The value at a property path, or None when any step is missing."""
    current = document
    for part in split_property_path(path):
        if isinstance(part, int) and isinstance(current, list) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(current, Mapping) and str(part) in current:
            current = current[str(part)]
        else:
            return None
    return current


# The engine's marker for a secret value in state and events.
_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - a marker, not a credential


def _mask_engine_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        if _SECRET_SIG in value:
            return MASK
        return {str(k): _mask_engine_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_engine_secrets(v) for v in value]
    return value


def _state(meta: StepEventStateMetadata | None) -> Mapping[str, Any]:
    if meta is None:
        return {}
    return meta.outputs or meta.inputs or {}


def _metadata(event: EngineEvent) -> StepEventMetadata | None:
    if event.resource_pre_event is not None:
        return event.resource_pre_event.metadata
    if event.res_outputs_event is not None:
        return event.res_outputs_event.metadata
    return None


def _skip_resource(type_token: str) -> bool:
    # The stack itself and provider resources are engine bookkeeping, not infrastructure.
    return type_token.startswith(("pulumi:pulumi:Stack", "pulumi:providers:"))


def _op_value(op: Any) -> str:
    return str(getattr(op, "value", op))


def _diff_kind(value: Any) -> str:
    kind = str(getattr(value, "value", value))
    return kind.split("-", 1)[0]  # "update-replace" -> "update"


def _secret_at(document: Any, path: str) -> bool:
    """Whether the value at `path`, or anything on the way to it, is an engine-marked secret."""
    current = document
    for part in [None, *split_property_path(path)]:
        if isinstance(current, Mapping) and _SECRET_SIG in current:
            return True
        if part is None:
            continue
        if isinstance(part, int) and isinstance(current, list) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(current, Mapping) and str(part) in current:
            current = current[str(part)]
        else:
            return False
    return isinstance(current, Mapping) and _SECRET_SIG in current


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _child_path(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    if _PLAIN_KEY.match(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def diff_paths(old: Any, new: Any, prefix: str = "") -> dict[str, str]:
    """Property paths where two JSON-like states differ: path -> add | delete | update.

    Used when the engine reports a changed resource without saying which properties changed (a
    refresh step with an empty diff). Secrets are compared as opaque leaves.
    """
    if (
        isinstance(old, Mapping)
        and isinstance(new, Mapping)
        and _SECRET_SIG not in old
        and _SECRET_SIG not in new
    ):
        out: dict[str, str] = {}
        for key in sorted({str(k) for k in old} | {str(k) for k in new}):
            if key.startswith("__"):  # engine bookkeeping such as __meta
                continue
            path = _child_path(prefix, key)
            if key not in new:
                out[path] = "delete"
            elif key not in old:
                out[path] = "add"
            else:
                out.update(diff_paths(old[key], new[key], path))
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = {}
        for i in range(max(len(old), len(new))):
            path = _child_path(prefix, i)
            if i >= len(new):
                out[path] = "delete"
            elif i >= len(old):
                out[path] = "add"
            else:
                out.update(diff_paths(old[i], new[i], path))
        return out
    if old == new:
        return {}
    return {prefix or "(resource)": "update"}


def drift_report_from_events(
    stack: str, events: Iterable[EngineEvent], secrets: Iterable[str] = ()
) -> DriftReport:
    """Build the drift report from the events of a preview-only refresh.

    A refresh sends, per resource, a ResourcePreEvent with op "refresh" (nothing known yet) and then a
    ResOutputsEvent whose op is the result: "same", "update" (drifted) or "delete" (gone from the cloud).
    For a refresh, a step's `old` is the state Pulumi recorded and `new` is what the provider read.
    The changed paths come from `detailed_diff`, else `diffs`; when an update carries neither, they
    are computed from old vs new state, and an update or delete is never dropped (a resource whose
    differences cannot be named is reported with no properties).

    Where the values come from: a refresh's detailed diff is the diff an `up` would show, framed on the
    *inputs* (pkg/resource/deploy/step.go, RefreshStep), so a path flagged `input_diff` is read from the
    recorded and refreshed inputs; other paths from the outputs (inputs when the outputs lack the path).

    Secrets: a property whose value is secret on either side (engine-marked, a known secret string,
    or credential-shaped) has *both* sides masked, so the cloud's value of a secret never shows.
    """
    known = tuple(secrets)
    found: dict[str, ResourceDrift] = {}
    order: list[str] = []
    for event in events:
        meta = _metadata(event)
        if meta is None or _skip_resource(meta.type):
            continue
        op = normal_op(_op_value(meta.op))
        old_state, new_state = _state(meta.old), _state(meta.new)
        old_inputs, new_inputs = _inputs(meta.old), _inputs(meta.new)
        paths: dict[str, str] = {}
        input_paths: set[str] = set()
        for path, diff in (meta.detailed_diff or {}).items():
            paths[path] = _diff_kind(diff.diff_kind)
            if getattr(diff, "input_diff", False):
                input_paths.add(path)
        for path in meta.diffs or ():
            paths.setdefault(path, "update")
        if op == "delete":
            kind = "delete"
        elif op in ("update", "replace") or (op == "refresh" and paths):
            kind = "update"
            if not paths:
                paths = diff_paths(old_state, new_state)
        else:
            continue
        props = tuple(
            _property_drift(
                path,
                paths[path],
                *_sides(path, path in input_paths, (old_state, new_state), (old_inputs, new_inputs)),
                known,
            )
            for path in sorted(paths)
        )
        type_token = meta.type or parse_urn(meta.urn)[0]
        previous = found.get(meta.urn)
        if previous is not None:
            # ResourcePreEvent and ResOutputsEvent both describe the step; keep every path seen.
            seen = {p.path for p in previous.properties}
            props = previous.properties + tuple(p for p in props if p.path not in seen)
            kind = "delete" if "delete" in (kind, previous.kind) else kind
        else:
            order.append(meta.urn)
        found[meta.urn] = ResourceDrift(
            urn=meta.urn, type=type_token, name=parse_urn(meta.urn)[1], kind=kind, properties=props
        )
    return DriftReport(stack=stack, resources=tuple(found[u] for u in order))


def _inputs(meta: StepEventStateMetadata | None) -> Mapping[str, Any]:
    return (meta.inputs or {}) if meta is not None else {}


_States = tuple[Mapping[str, Any], Mapping[str, Any]]


def _sides(path: str, input_diff: bool, outputs: _States, inputs: _States) -> _States:
    """The (recorded, refreshed) documents to read `path` from: inputs for an input diff, else outputs;
    the other pair when the chosen one holds the path on neither side."""
    first, second = (inputs, outputs) if input_diff else (outputs, inputs)

    def holds(pair: _States) -> bool:
        return any(value_at(doc, path) is not None or _secret_at(doc, path) for doc in pair)

    return first if holds(first) or not holds(second) else second


def _property_drift(
    path: str, kind: str, old_state: Mapping[str, Any], new_state: Mapping[str, Any], known: Sequence[str]
) -> PropertyDrift:
    raw_old, raw_new = value_at(old_state, path), value_at(new_state, path)
    old = redact_value(_mask_engine_secrets(raw_old), known)
    new = redact_value(_mask_engine_secrets(raw_new), known)
    secret = _secret_at(old_state, path) or _secret_at(new_state, path) or old != raw_old or new != raw_new
    if secret:
        # The recorded value being secret makes the cloud's value secret too (and the other way round).
        old = MASK if raw_old is not None or _secret_at(old_state, path) else None
        new = MASK if raw_new is not None or _secret_at(new_state, path) else None
    return PropertyDrift(path=path, kind=kind, old=old, new=new)


def preview_summary_from_events(
    stack: str,
    events: Iterable[EngineEvent],
    change_summary: Mapping[Any, int] | None = None,
    *,
    protected: Mapping[str, str] | None = None,
) -> PreviewSummary:
    """Build the preview summary from a preview's ResourcePreEvents and its change summary.

    `protected`: URN -> op of the protected resources a failed preview refused to replace or delete
    (protected_step_urns); their steps are marked protected, and added if the engine sent none.
    """
    protected = dict(protected or {})
    steps: dict[str, ResourceStep] = {}
    order: list[str] = []
    for event in events:
        if event.resource_pre_event is None:
            continue
        meta = event.resource_pre_event.metadata
        if _skip_resource(meta.type):
            continue
        op = normal_op(_op_value(meta.op))
        if op == "same":
            continue
        changed = tuple(sorted((meta.detailed_diff or {}).keys())) or tuple(meta.diffs or meta.keys or ())
        is_protected = bool(
            (meta.old and meta.old.protect) or (meta.new and meta.new.protect) or meta.urn in protected
        )
        retained = bool((meta.old and meta.old.retain_on_delete) or (meta.new and meta.new.retain_on_delete))
        type_token = meta.type or parse_urn(meta.urn)[0]
        previous = steps.get(meta.urn)
        if previous is not None:  # the parts of one replacement
            changed = tuple(dict.fromkeys(previous.changed + changed))
            is_protected = is_protected or previous.protected
        else:
            order.append(meta.urn)
        steps[meta.urn] = ResourceStep(
            urn=meta.urn,
            type=type_token,
            name=parse_urn(meta.urn)[1],
            op=op,
            changed=changed,
            protected=is_protected,
            stateful=is_stateful(type_token, protected=is_protected, retain_on_delete=retained)
            or (previous.stateful if previous else False),
        )
    for urn_, op in protected.items():
        if urn_ not in steps:
            type_token, name = parse_urn(urn_)
            order.append(urn_)
            steps[urn_] = ResourceStep(
                urn=urn_, type=type_token, name=name, op=op, protected=True, stateful=True
            )
    counts: dict[str, int] = {}
    for op, n in (change_summary or {}).items():
        name = normal_op(_op_value(op))
        if name in ("create-replacement", "delete-replaced"):
            continue
        counts[name] = counts.get(name, 0) + int(n)
    # Every step counted: a failed preview's summary leaves out the step it refused.
    by_op: dict[str, int] = {}
    for step in steps.values():
        by_op[step.op] = by_op.get(step.op, 0) + 1
    for op, n in by_op.items():
        counts[op] = max(counts.get(op, 0), n)
    return PreviewSummary(stack=stack, counts=counts, steps=tuple(steps[u] for u in order))


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def decode_config_value(value: Any) -> Any:
    """History and `pulumi config --json` carry objects as JSON text; decode them."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def update_record_from_summary(summary: UpdateSummary, secrets: Iterable[str] = ()) -> UpdateRecord:
    """Convert one `UpdateSummary` (from `Stack.history` or `UpResult.summary`) to an UpdateRecord."""
    known = tuple(secrets)
    config: dict[str, Any] = {}
    for key, cv in (summary.config or {}).items():
        config[key] = MASK if cv.secret else redact_value(decode_config_value(cv.value), known)
    return UpdateRecord(
        version=int(summary.version or 0),
        kind=str(summary.kind),
        result=str(summary.result),
        start=_aware(summary.start_time),
        end=_aware(summary.end_time) if summary.end_time else None,
        message=redact(summary.message or "", known),
        environment={str(k): str(v) for k, v in (summary.environment or {}).items()},
        config=config,
        resource_changes={_op_value(op): int(n) for op, n in (summary.resource_changes or {}).items()},
    )


def number_history(records: Sequence[UpdateRecord]) -> list[UpdateRecord]:
    """History (newest first) with the versions the user types: Pulumi Cloud's own, else by position.

    A self-managed backend (file://, s3:// …) records no version (`stack history` reports 0 for every
    entry) and lists its entries newest first, one file per entry named by start time; numbering them
    oldest = 1 gives each entry a number that stays put as later entries are added.
    """
    if any(r.version for r in records):
        return list(records)
    total = len(records)
    return [dataclasses.replace(r, version=total - i) for i, r in enumerate(records)]


def pending_from_deployment(deployment: Mapping[str, Any] | None) -> list[PendingOperation]:
    """Pending operations from an exported deployment (`Stack.export_stack().deployment`)."""
    out = []
    for item in (deployment or {}).get("pending_operations") or []:
        resource = item.get("resource") or {}
        urn = str(resource.get("urn", ""))
        out.append(
            PendingOperation(
                urn=urn,
                type=str(resource.get("type") or parse_urn(urn)[0]),
                kind=str(item.get("type", "unknown")),
            )
        )
    return out


_MARKUP = re.compile(r"<\{%[^%]*%\}>|\x1b\[[0-9;]*[A-Za-z]")


def clean_diagnostic(message: str) -> str:
    """One line from an engine diagnostic: colour markup gone, the `error:` prefix dropped, blanks folded."""
    text = " ".join(_MARKUP.sub("", message).split())
    return text[len("error:") :].strip() if text.lower().startswith("error:") else text


def _command_parts(text: str) -> tuple[str, str]:
    """(stdout, stderr) of a CommandError's text (`code: …  stdout: …  stderr: …`); all as stderr if not."""
    if "stderr:" not in text:
        return "", text
    head, stderr = text.split("stderr:", 1)
    stdout = head.split("stdout:", 1)[1] if "stdout:" in head else ""
    return stdout, stderr


def engine_message(text: str, secrets: Iterable[str] = (), diagnostics: Sequence[str] = ()) -> str:
    """The engine's own error, secrets redacted.

    In order of preference: the engine's error diagnostics (resource failures are reported there, as
    events), the `error:` lines of the CLI's stdout, those of its stderr, and the tail of stderr.
    """
    if diagnostics:
        chosen = list(dict.fromkeys(d for d in diagnostics if d))
        more = f" (and {len(chosen) - 3} more errors)" if len(chosen) > 3 else ""
        return redact("; ".join(chosen[:3]) + more, secrets)
    stdout, stderr = _command_parts(text)
    out_lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    err_lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in out_lines + err_lines if ln.lower().startswith("error:")]
    chosen = list(dict.fromkeys(errors)) or err_lines[-3:] or out_lines[-3:]
    chosen = chosen or ["the engine failed without a message"]
    message = " ".join(
        ln[len("error:") :].strip() if ln.lower().startswith("error:") else ln for ln in chosen
    )
    return redact(message, secrets)


# Error diagnostics of a preview that refuses to replace or delete a protected resource
# (pkg/resource/deploy/step_generator.go, step.go), and the summary line every failed preview ends with.
_PROTECTED = re.compile(r"as it is currently marked for protection|cannot be deleted because it is protected")
_QUOTED_URN = re.compile(r'"(urn:pulumi:[^"]+)"')
_PREVIEW_FAILED = "preview failed"


def protected_step_urns(errors: Sequence[tuple[str, str]]) -> dict[str, str] | None:
    """URN -> "replace" | "delete" for each protected resource a failed preview refused to touch.

    None unless every error of the preview is such a refusal (or the closing "preview failed"): any
    other error is a real failure and is raised.
    """
    found: dict[str, str] = {}
    for urn, text in errors:
        if text.strip().rstrip(".").lower() == _PREVIEW_FAILED:
            continue
        if not _PROTECTED.search(text):
            return None
        quoted = _QUOTED_URN.search(text)
        target = quoted.group(1) if quoted else urn
        if not target:
            return None
        found[target] = "replace" if "unable to replace" in text else "delete"
    return found or None


def summary_changes(events: Iterable[EngineEvent]) -> Mapping[str, int] | None:
    """The resource changes of the engine's summary event, when one was sent."""
    for event in events:
        if event.summary_event is not None:
            return {_op_value(op): int(n) for op, n in (event.summary_event.resource_changes or {}).items()}
    return None


# --- locating the project and the backend -------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    """A YAML file's content; None when it cannot be read or parsed."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def project_name(root: Path) -> str:
    document = _load_yaml(root / PROJECT_FILE)
    name = document.get("name") if isinstance(document, Mapping) else None
    return str(name) if name else root.name


_SECRETS_KEYS = ("encryptionsalt", "encryptedkey", "secretsprovider")


def _without(document: Any, drop: Callable[[dict[str, Any]], None]) -> Any:
    if not isinstance(document, Mapping):
        return document
    copy = {str(k): v for k, v in document.items()}
    drop(copy)
    return copy


def differs_only_in_release(committed: bytes, current: bytes) -> bool:
    """Whether two stack files say the same thing but for `stageline:release` (layout aside)."""
    import yaml

    def drop_release(doc: dict[str, Any]) -> None:
        config = doc.get("config")
        if isinstance(config, Mapping):
            doc["config"] = {k: v for k, v in config.items() if k != RELEASE_KEY}

    try:
        old, new = yaml.safe_load(committed), yaml.safe_load(current)
    except yaml.YAMLError:
        return False
    return _without(old, drop_release) == _without(new, drop_release)


@contextmanager
def _unchanged_secrets_keys(path: Path) -> Iterator[None]:
    """Put the file's bytes back if the block changed nothing in it but its secrets-provider keys."""
    try:
        before = path.read_bytes()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        import yaml

        def drop(doc: dict[str, Any]) -> None:
            for key in _SECRETS_KEYS:
                doc.pop(key, None)

        try:
            after = path.read_bytes()
            same = _without(yaml.safe_load(after), drop) == _without(yaml.safe_load(before), drop)
            if after != before and same:
                path.write_bytes(before)
        except (OSError, yaml.YAMLError):
            pass


_EXIT_CODE = re.compile(r"^\s*code: (-?\d+)\s*$", re.MULTILINE)


def _killed_by(text: str) -> str | None:
    """The signal's name when a CommandError's text says the CLI died of one (a negative exit code)."""
    match = _EXIT_CODE.search(text)
    if match is None or int(match.group(1)) >= 0:
        return None
    try:
        return signal.Signals(-int(match.group(1))).name
    except ValueError:
        return f"signal {-int(match.group(1))}"


def stale_lock_message(stack: str, locks: Sequence[StackLock], *, removable: bool) -> str:
    listed = "; ".join(lock.describe() for lock in locks)
    fix = (
        "rerun with --clear-pending: it removes a lock only when its process is provably gone, then "
        "clears the pending operations"
        if removable
        else "check that no update is running, then remove that lock file from the backend (`pulumi cancel "
        f"-s {stack}` removes every lock of the stack) and rerun with --clear-pending"
    )
    return (
        f"{stack} is locked by a Pulumi process that no longer runs: {listed}. It was stopped mid-operation "
        f"(killed), so it may also have left pending operations; {fix}"
    )


def find_project_root(start: Path) -> Path:
    """The nearest directory at or above `start` that holds Pulumi.yaml."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    raise EngineUnavailable(f"no {PROJECT_FILE} in {here} or any parent: run from inside the repository")


def choose_backend(root: Path, env: Mapping[str, str]) -> BackendInfo:
    """PULUMI_BACKEND_URL when set, else a file:// backend in <root>/.stageline/state (git-ignored)."""
    url = env.get("PULUMI_BACKEND_URL", "").strip()
    if url:
        return BackendInfo(url=url, source="PULUMI_BACKEND_URL")
    return BackendInfo(url=(root / DEFAULT_STATE_DIR).as_uri(), source="default")


def _is_diy(url: str) -> bool:
    # Self-managed backends encrypt secrets themselves (a passphrase by default); Pulumi Cloud does not.
    return not url.startswith(("https://", "http://"))


def secrets_environment(
    backend: BackendInfo, env: Mapping[str, str], stack_documents: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, str], str]:
    """Extra environment for the engine's secrets provider, and how secrets are handled (one phrase).

    * Pulumi Cloud, a passphrase in the environment, or every stack naming a `secretsprovider`: nothing added.
    * The default local backend without a passphrase: an empty passphrase, said out loud — the state
      never leaves the machine, and the stack files hold no secrets that need one.
    * Any other self-managed backend without a passphrase: refuse (exit 2) rather than invent one,
      since a made-up passphrase would encrypt shared state nobody else can read.
    """
    if not _is_diy(backend.url):
        return {}, "Pulumi Cloud"
    if "PULUMI_CONFIG_PASSPHRASE" in env or "PULUMI_CONFIG_PASSPHRASE_FILE" in env:
        return {}, "passphrase from the environment"
    providers = {str(doc.get("secretsprovider", "passphrase")) for doc in stack_documents.values()}
    if stack_documents and "passphrase" not in providers:
        return {}, "secretsprovider from the stack files"
    if backend.source == "default":
        return {"PULUMI_CONFIG_PASSPHRASE": ""}, "empty passphrase (local backend)"
    raise EngineUnavailable(
        f"the backend {backend.url} needs a secrets provider: set PULUMI_CONFIG_PASSPHRASE "
        "(or PULUMI_CONFIG_PASSPHRASE_FILE), or a secretsprovider in Pulumi.<stack>.yaml"
    )


# The oldest CLI the driver works with: `pulumi config set-all --json` (set_release) came in 3.202.
MIN_CLI_VERSION = (3, 202, 0)
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def _version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in version)


def check_cli_version(pulumi: str, env: Mapping[str, str]) -> str:
    """The version `pulumi version` prints; EngineUnavailable (one line) when older than MIN_CLI_VERSION."""
    try:
        done = subprocess.run(
            [pulumi, "version"],
            env={**os.environ, **env, "PULUMI_SKIP_UPDATE_CHECK": "true"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineUnavailable(f"cannot run the Pulumi CLI ({pulumi} version): {exc}") from None
    printed = done.stdout.strip()
    match = _VERSION.match(printed)
    if done.returncode != 0 or match is None:
        said = printed or done.stderr.strip() or f"exit {done.returncode}"
        raise EngineUnavailable(f"cannot tell the Pulumi CLI's version from `{pulumi} version`: {said[:200]}")
    found = tuple(int(n) for n in match.groups())
    if found < MIN_CLI_VERSION:
        raise EngineUnavailable(
            f"the Pulumi CLI on PATH is v{_version_text(found)}, older than "
            f"v{_version_text(MIN_CLI_VERSION)} that Stageline needs (`pulumi config set-all --json`): "
            f"upgrade it ({INSTALL_URL})"
        )
    return printed


# --- stack locks of a self-managed backend ----------------------------------------------------

# One line per lock in the CLI's "the stack is currently locked by N lock(s)" error (pkg/backend/diy/lock.go).
_LOCK_LINE = re.compile(
    r"^\s*(?P<where>\S+): created by (?P<user>.*)@(?P<host>[^@\s]+) \(pid (?P<pid>\d+)\) at (?P<at>\S+)\s*$"
)


def _parse_time(text: str) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
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


# --- the real engine ----------------------------------------------------------------------------


class _EventLog:
    """Collects engine events (the SDK calls on_event from its own thread) and reports progress.

    Keeps the engine's error diagnostics (a resource failure is reported as a diagnostic event, not on
    stderr) and whether the operation got going (the prelude is sent once the stack is locked).
    """

    def __init__(self, progress: ProgressFn | None) -> None:
        self.events: list[EngineEvent] = []
        self.diagnostics: list[str] = []
        self.errors: list[tuple[str, str]] = []  # (urn or "", one-line text) of each error diagnostic
        self.started = False
        self._progress = progress
        self._lock = threading.Lock()

    def __call__(self, event: EngineEvent) -> None:
        with self._lock:
            self.events.append(event)
            if event.prelude_event is not None or event.resource_pre_event is not None:
                self.started = True
            diag = event.diagnostic_event
            if diag is not None and diag.severity == "error":
                text = clean_diagnostic(diag.message)
                urn = diag.urn or ""
                self.errors.append((urn, text))
                if text:
                    name = parse_urn(urn)[1] if urn and "::pulumi:pulumi:Stack::" not in urn else ""
                    self.diagnostics.append(f"{name}: {text}" if name else text)
        if self._progress is not None and event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            op = normal_op(_op_value(meta.op))
            if op != "same" and not _skip_resource(meta.type):
                self._progress(f"  {op:<8} {meta.type} {parse_urn(meta.urn)[1]}")


@dataclass
class _InterruptedUpdate:
    """An `up` whose caller was interrupted while the SDK (on its own thread) still runs the CLI."""

    done: threading.Event  # set when the SDK call has returned (the CLI has exited)
    children_before: frozenset[int]
    log: _EventLog
    forward: bool  # the CLI did not get the interrupt by itself: pass it on

    def cli_pids(self) -> list[int]:
        return [
            pid
            for pid in child_pids(os.getpid())
            if pid not in self.children_before and is_pulumi_process(pid)
        ]


class LocalEngine:
    """`Engine` over `pulumi.automation.LocalWorkspace` (work_dir = repository root)."""

    # How long an interrupted update may take to stop cleanly (Pulumi lets in-flight resource
    # operations finish) before it is stopped at once; then how long before the CLI is killed.
    stop_timeout: float = 300.0
    kill_timeout: float = 10.0

    def __init__(
        self, root: Path, backend: BackendInfo, env: Mapping[str, str], project: str | None = None
    ) -> None:
        self._root = root
        self._backend = backend
        self._env = dict(env)
        self._project = project or project_name(root)
        self._lock = threading.Lock()
        self._stacks: dict[tuple[str, str], Stack] = {}
        self._secret_values: set[str] = set()
        self._secrets_read: set[str] = set()
        self._interrupted: dict[str, _InterruptedUpdate] = {}
        self._cli_version = ""  # what `pulumi version` printed in open(), when it ran there

    @classmethod
    def open(cls, start: Path | None = None, environ: Mapping[str, str] | None = None) -> LocalEngine:
        """Locate the project, check the CLI and choose the backend; raise EngineUnavailable on failure."""
        from infra.config import ConfigError, known_stacks, read_stack_file

        environ = os.environ if environ is None else environ
        root = find_project_root(start or Path.cwd())
        pulumi = shutil.which("pulumi", path=environ.get("PATH"))
        if pulumi is None:
            raise EngineUnavailable(f"the Pulumi CLI is not on PATH: install it ({INSTALL_URL}) and retry")
        backend = choose_backend(root, environ)
        if backend.source == "default":
            try:
                (root / DEFAULT_STATE_DIR).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EngineUnavailable(
                    f"cannot create the state directory {root / DEFAULT_STATE_DIR}: {exc.strerror}"
                ) from None
        documents: dict[str, Mapping[str, Any]] = {}
        for name in known_stacks(root):
            try:
                documents[name] = read_stack_file(root, name).document
            except ConfigError as exc:
                raise EngineUnavailable(str(exc)) from None
        extra, secrets_note = secrets_environment(backend, environ, documents)
        cli_version = check_cli_version(pulumi, environ)  # last: the checks above need no CLI
        env = {
            "PULUMI_BACKEND_URL": backend.url,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            # A stack file without its `encryptionsalt` (a clone where it was never committed) makes the
            # CLI mint a new salt, unrelated to the one the state's secrets were encrypted with; with this
            # set it takes the state's secrets manager instead (cmd/pulumi/stack/secrets.go). The CLI
            # still writes that salt back into the stack file, so read-only calls run against a copy of
            # it (see _read_only_config).
            "PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER": "true",
            **extra,
        }
        backend = BackendInfo(url=backend.url, source=backend.source, secrets=secrets_note)
        engine = cls(root, backend, env)
        engine._cli_version = cli_version
        return engine

    def _command(self) -> Any:
        """The SDK's handle on the CLI, made once per engine.

        `PulumiCommand()` runs `pulumi version` each time it is made, and the SDK makes one per
        workspace unless given one: a third of a second per stack. `open()` has already run it (and
        refused an old CLI), so the handle is built from what it printed.
        """
        import pulumi.automation as auto
        from semver import VersionInfo

        with self._lock:
            cached = getattr(self, "_pulumi_command", None)
            if cached is not None:
                return cached
            if not self._cli_version:
                command = auto.PulumiCommand(skip_version_check=True)
            else:
                command = auto.PulumiCommand.__new__(auto.PulumiCommand)
                command.command = "pulumi"
                command.version = VersionInfo.parse(self._cli_version.removeprefix("v"))
            self._pulumi_command = command
            return command

    # -- plumbing

    @property
    def project_dir(self) -> Path:
        return self._root

    def backend(self) -> BackendInfo:
        return self._backend

    def stack_names(self) -> list[str]:
        from infra.config import known_stacks

        return known_stacks(self._root)

    def _check_known(self, stack: str, work_dir: Path | None = None) -> None:
        root = work_dir or self._root
        if not (root / f"Pulumi.{stack}.yaml").is_file():
            raise unknown_stack(stack, self.stack_names())

    def _stack_file(self, stack: str, work_dir: Path | None = None) -> Path:
        return (work_dir or self._root) / f"Pulumi.{stack}.yaml"

    def _secrets_provider(self, stack: str, work_dir: Path | None) -> str | None:
        """The stack file's `secretsprovider`, which `pulumi stack init` must be told: without
        `--secrets-provider` it sets up the backend's default (a passphrase on a self-managed backend)
        and rewrites the stack file to match, dropping the provider the file names."""
        document = _load_yaml(self._stack_file(stack, work_dir))
        value = document.get("secretsprovider") if isinstance(document, Mapping) else None
        return str(value) if value else None

    def _stack(self, stack: str, work_dir: Path | None = None, *, create: bool = False) -> Stack:
        """The selected stack. Only `create=True` (up, ensure_stack, set_release) may create it."""
        import pulumi.automation as auto

        self._check_known(stack, work_dir)
        key = (stack, str(work_dir or self._root))
        with self._lock:
            cached = self._stacks.get(key)
        if cached is not None:
            return cached
        try:
            workspace = auto.LocalWorkspace(
                work_dir=key[1],
                pulumi_command=self._command(),
                env_vars=dict(self._env),  # each workspace its own: `up` adds to it for one run
                secrets_provider=self._secrets_provider(stack, work_dir) if create else None,
            )
            if create:
                selected = auto.Stack.create_or_select(stack, workspace)
            else:
                selected = auto.Stack.select(stack, workspace)
        except auto.StackNotFoundError:
            raise not_deployed(stack) from None
        except auto.CommandError as exc:
            raise self._translate(exc, stack, unavailable=True) from None
        except (auto.InvalidVersionError, OSError, subprocess.CalledProcessError) as exc:
            raise EngineUnavailable(f"cannot run the Pulumi CLI: {redact(str(exc))}") from None
        with self._lock:
            self._stacks[key] = selected
        return selected

    def _translate(
        self, exc: Exception, stack: str, *, unavailable: bool = False, diagnostics: Sequence[str] = ()
    ) -> StagelineError:
        import pulumi.automation as auto

        message = engine_message(str(exc), self._secret_values, diagnostics)
        killed = _killed_by(str(exc))
        if killed is not None:
            return EngineError(
                f"the Pulumi CLI was killed ({killed}) before it finished: {stack} may still hold its lock "
                f"and pending operations; `python -m automation up {stack} --clear-pending` removes a stale "
                "lock and clears them"
            )
        if isinstance(exc, auto.ConcurrentUpdateError):
            locks = locks_from_message(str(exc))
            if locks and all(lock.stale for lock in locks):
                return StaleLockError(stale_lock_message(stack, locks, removable=self._locks_readable()))
            held = "; ".join(lock.describe() for lock in locks)
            return ConcurrentUpdateError(f"the stack is locked by another update: {held or message}")
        if unavailable:
            return EngineUnavailable(f"cannot open the stack in {self._backend.url}: {message}")
        return EngineError(message)

    def _failure(self, exc: BaseException, stack: str, log: _EventLog | None) -> BaseException:
        """The driver's error for an exception the SDK raised (anything unexpected is returned as is)."""
        import pulumi.automation as auto

        if isinstance(exc, auto.CommandError):
            return self._translate(exc, stack, diagnostics=log.diagnostics if log is not None else ())
        if isinstance(exc, RuntimeError | ValueError | OSError | KeyError):
            # The SDK's own failures (e.g. "summary event never found" when the CLI died mid-run).
            return EngineError(f"the Pulumi SDK failed: {redact(str(exc), self._secret_values)}")
        return exc

    def _remember_secrets(self, stack: Stack) -> None:
        """Secret config values, so error messages and reports can be redacted (read once per stack).

        Object values are masked as a whole and leaf by leaf: an error message quotes one field.
        """
        with self._lock:
            if stack.name in self._secrets_read:
                return
            self._secrets_read.add(stack.name)
        try:
            # Decrypting may make the CLI write a secrets salt into a stack file that lacks one.
            work_dir = getattr(getattr(stack, "workspace", None), "work_dir", None) or self._root
            with _unchanged_secrets_keys(Path(work_dir) / f"Pulumi.{stack.name}.yaml"):
                config = stack.get_all_config()
        except Exception:  # redaction is best effort; the token patterns still apply
            return
        values: list[Any] = []
        for item in config.values():
            if item.secret and item.value:
                values += [item.value, decode_config_value(item.value)]
        with self._lock:
            self._secret_values.update(all_secret_strings(values))

    def _run(
        self,
        stack: str,
        action: Callable[[Stack], Any],
        work_dir: Path | None = None,
        *,
        log: _EventLog | None = None,
        create: bool = False,
        read_only: bool = False,
    ) -> Any:
        selected = self._stack(stack, work_dir, create=create)
        if not read_only:
            self._remember_secrets(selected)
            try:
                return action(selected)
            except Exception as exc:  # translated, or re-raised as it was
                raise self._failure(exc, stack, log) from None
        # A read-only action (it writes no stack file) runs while the secrets are read, one
        # `pulumi config` call that is needed only to redact what the action returns or raises.
        reading = threading.Thread(target=self._remember_secrets, args=(selected,), daemon=True)
        reading.start()
        try:
            return action(selected)
        except Exception as exc:
            reading.join()
            raise self._failure(exc, stack, log) from None
        finally:
            reading.join()

    @contextmanager
    def _read_only_config(self, stack: str) -> Iterator[str | None]:
        """The `--config-file` for a call that must not write the tracked stack file (None: not needed).

        A preview or refresh loads the stack's secrets manager and, when the stack file holds no
        `encryptionsalt`/`encryptedkey` (a fresh clone where they were never committed), saves one into
        it, even with PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER (it then saves the state's: "should
        save", cmd/pulumi/config/io.go). Given a copy of the file, the CLI writes there instead.
        """
        path = self._stack_file(stack)
        try:
            raw = path.read_bytes()
        except OSError:
            yield None
            return
        document = _load_yaml(path)
        if not isinstance(document, Mapping) or any(document.get(k) for k in _SECRETS_KEYS[:2]):
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="stageline-config-") as tmp:
            copy = Path(tmp) / path.name
            copy.write_bytes(raw)
            yield str(copy)

    @contextmanager
    def _driver_write_unseen(self, stack: str, work_dir: Path | None) -> Iterator[dict[str, str]]:
        """Environment for `up` in which the CLI's `git status` does not count the driver's own write.

        Pulumi records `git.dirty` from `git status --porcelain` when the update starts, and the driver
        has just written `stageline:release` into Pulumi.<stack>.yaml (set_release), so every update it
        made was recorded dirty and `rollback --code` always warned. The choice here: when the stack file
        differs from the committed one in nothing but `stageline:release` — a value the update records
        in its own config, so (commit, recorded config) still reproduces the run — the CLI gets a
        throwaway copy of the git index with that one file marked assume-unchanged (GIT_INDEX_FILE).
        Every other change, including any other edit of the stack file, still makes the update dirty;
        the real index is never touched.

        A `work_dir` is a worktree the driver made for `rollback --code`: nothing in it is untracked
        but what the driver put there (its `.venv` link), so untracked files are not counted there.
        """
        from automation.gitinfo import committed_file, hidden_from_status, untracked_not_shown

        checkout = work_dir or self._root
        extra = untracked_not_shown() if work_dir is not None else {}
        path = self._stack_file(stack, work_dir)
        try:
            current = path.read_bytes()
        except OSError:
            yield extra
            return
        committed = committed_file(checkout, path)
        if committed is None or committed == current or not differs_only_in_release(committed, current):
            yield extra
            return
        with hidden_from_status(checkout, path) as env:
            yield {**env, **extra}

    def _locks_readable(self) -> bool:
        return file_backend_root(self._backend.url) is not None

    # -- operations

    def ensure_stack(self, stack: str) -> None:
        self._stack(stack, create=True)

    def preview(self, stack: str, *, progress: ProgressFn | None = None) -> PreviewSummary:
        log = _EventLog(progress)
        with self._read_only_config(stack) as config_file:
            try:
                result = self._run(
                    stack,
                    lambda s: s.preview(on_event=log, diff=True, config_file=config_file),
                    log=log,
                    read_only=True,
                )
            except EngineError:
                # Replacing or deleting a protected resource fails the preview, after the engine has
                # sent the step; a gate must see that step, not an error.
                protected = protected_step_urns(log.errors)
                if protected is None:
                    raise
                return preview_summary_from_events(
                    stack, log.events, summary_changes(log.events), protected=protected
                )
        return preview_summary_from_events(stack, log.events, result.change_summary)

    def up(
        self,
        stack: str,
        *,
        message: str,
        work_dir: Path | None = None,
        progress: ProgressFn | None = None,
        refresh: bool = False,
    ) -> UpdateRecord:
        log = _EventLog(progress)
        selected = self._stack(stack, work_dir, create=True)
        self._remember_secrets(selected)
        before = frozenset(child_pids(os.getpid()))
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                # show_secrets=False: the summary needs no decrypted config.
                box["result"] = selected.up(
                    message=message, on_event=log, show_secrets=False, refresh=True if refresh else None
                )
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc
            finally:
                done.set()

        workspace_env = selected.workspace.env_vars
        assert isinstance(workspace_env, dict)  # the copy _stack gave this workspace
        with self._driver_write_unseen(stack, work_dir) as git_env:
            workspace_env.update(git_env)
            try:
                # The SDK runs on its own thread so that an interrupt here leaves its subprocess handling
                # intact (interrupted inside the SDK, Popen would stop reading the CLI's output after
                # 0.25 s). Waiting on an Event, not Thread.join: an interrupted join marks a running
                # thread as stopped.
                threading.Thread(target=work, name=f"pulumi-up-{stack}", daemon=True).start()
                try:
                    while not done.wait(0.5):
                        pass
                except KeyboardInterrupt as exc:
                    forward = isinstance(exc, Terminated) or not terminal_delivers_interrupts()
                    with self._lock:
                        self._interrupted[stack] = _InterruptedUpdate(done, before, log, forward)
                    raise
            finally:
                for key in git_env:
                    workspace_env.pop(key, None)
        if "error" in box:
            raise self._failure(box["error"], stack, log) from None
        record = update_record_from_summary(box["result"].summary, self._secret_values)
        if record.version:
            return record
        # A self-managed backend: number the entry as `history` does (the SDK read only the newest).
        try:
            numbered = self._numbered_history(selected)
        except Exception as exc:  # the update is done; report what went wrong reading its record
            raise self._failure(exc, stack, None) from None
        ours = (record.start, record.message, record.kind)
        same = (r for r in numbered if (r.start, r.message, r.kind) == ours)
        return next(same, numbered[0] if numbered else record)

    def preview_refresh(self, stack: str, *, progress: ProgressFn | None = None) -> DriftReport:
        log = _EventLog(progress)
        # preview_refresh, never refresh: a drift check must not write state.
        with self._read_only_config(stack) as config_file:
            self._run(
                stack,
                lambda s: s.preview_refresh(on_event=log, show_secrets=False, config_file=config_file),
                log=log,
                read_only=True,
            )
        return drift_report_from_events(stack, log.events, self._secret_values)

    def _numbered_history(self, selected: Stack) -> list[UpdateRecord]:
        # page_size=0: every entry. Without a page size the CLI returns its default page of 10.
        summaries = selected.history(page_size=0, show_secrets=False)
        return number_history([update_record_from_summary(s, self._secret_values) for s in summaries])

    def history(self, stack: str, *, limit: int | None = None) -> list[UpdateRecord]:
        records: list[UpdateRecord] = self._run(stack, self._numbered_history)
        return records[:limit] if limit is not None else records

    def outputs(self, stack: str) -> StackOutputs:
        def read(s: Stack) -> tuple[Any, Mapping[str, Any]]:
            # The exported state marks secrets where they are, nested ones too (the SDK flags only
            # outputs that are secret as a whole).
            return s.outputs(), stack_outputs_state(s.export_stack().deployment)

        values, state = self._run(stack, read)
        return StackOutputs(
            stack=stack,
            values={k: v.value for k, v in values.items()},
            secret_keys=frozenset(k for k, v in values.items() if v.secret),
            secret_paths=frozenset(engine_secret_paths(state)),
        )

    def get_release(self, stack: str, *, work_dir: Path | None = None) -> Release | None:
        from infra.config import ConfigError, read_stack_file

        self._check_known(stack, work_dir)
        try:
            value = read_stack_file(work_dir or self._root, stack).values.get("release")
        except ConfigError as exc:
            raise ConfigurationError(str(exc)) from None
        return dict(value) if isinstance(value, Mapping) else None

    def set_release(self, stack: str, release: Mapping[str, Any], *, work_dir: Path | None = None) -> None:
        # `config set-all --json` with objectValue writes a structured YAML object, not a JSON string,
        # so the stack file stays readable and `pulumi config get --path release.version` works.
        document = {RELEASE_KEY: {"value": json.dumps(release), "objectValue": release, "secret": False}}
        self._run(stack, lambda s: s.set_all_config_json(json.dumps(document)), work_dir, create=True)

    def pending_operations(self, stack: str) -> list[PendingOperation]:
        deployment = self._run(stack, lambda s: s.export_stack())
        return pending_from_deployment(deployment.deployment)

    def clear_pending(self, stack: str) -> int:
        """`pulumi refresh --clear-pending-creates`, under the stack's lock.

        Not export-then-import: `pulumi stack import` drops every pending operation by itself
        (cmd/pulumi/stack/io.go SaveSnapshot), so editing the export is redundant, and an update that
        ran between the export and the import would be overwritten with the older state. The refresh
        takes the lock for its whole run; the update it writes drops the other pending operations
        (only pending creates are carried from one update to the next, pkg/backend/snapshot.go), and
        `--clear-pending-creates` drops those. It is Pulumi's documented repair for an interrupted
        update: the state then holds what the interrupted operations really left in the cloud.
        """
        log = _EventLog(None)

        def clear(s: Stack) -> int:
            pending = pending_from_deployment(s.export_stack().deployment)
            if not pending:
                return 0
            s.refresh(
                clear_pending_creates=True,
                message="clear pending operations (stageline --clear-pending)",
                on_event=log,
                show_secrets=False,
            )
            left = pending_from_deployment(s.export_stack().deployment)
            if left:
                listed = ", ".join(f"{p.kind} {p.urn}" for p in left[:5])
                raise EngineError(
                    f"{len(left)} pending operation(s) are still in the state after a refresh: {listed}"
                )
            return len(pending)

        return int(self._run(stack, clear, log=log))

    def locks(self, stack: str) -> list[StackLock]:
        self._check_known(stack)
        root = file_backend_root(self._backend.url)
        if root is None:
            return []  # an object store's locks are read by the CLI only; see StaleLockError's message
        found: list[StackLock] = []
        for directory in lock_dirs(root, self._project, stack):
            for path in sorted(directory.glob("*.json")):
                lock = read_lock_file(path)
                if lock is not None:
                    found.append(lock)
        return found

    def remove_stale_locks(self, stack: str) -> list[StackLock]:
        removed: list[StackLock] = []
        for lock in self.locks(stack):
            if not lock.stale:
                continue
            # Read again just before removing: the file name is its process's own lock id, so a file
            # still naming that gone process can only be its leftover.
            again = read_lock_file(Path(lock.location))
            if again is None or not again.stale or again.pid != lock.pid:
                continue
            try:
                Path(lock.location).unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise EngineError(f"cannot remove the stale lock {lock.location}: {exc.strerror}") from None
            removed.append(lock)
        return removed

    def cancel(self, stack: str, *, progress: ProgressFn | None = None) -> None:
        """Stop the CLI our interrupted `up` started, cleanly if it will; never `pulumi cancel` blindly.

        The interrupt is passed on to the CLI as SIGINT when it did not reach it (SIGTERM, no terminal),
        and we wait for the CLI to exit: Pulumi then finishes in-flight operations and closes the
        update. On a self-managed backend `pulumi cancel` would delete the stack's lock files, whoever
        holds them, so it is never run there. On Pulumi Cloud it is run only when the CLI had to be
        stopped at once, after it has exited, and only if our update had started (the service then
        still shows our update running, and nobody else can hold the stack).
        """
        import pulumi.automation as auto

        with self._lock:
            run = self._interrupted.pop(stack, None)
        if run is None:
            return
        say = progress or (lambda _message: None)
        if run.forward:
            signal_processes(run.cli_pids(), signal.SIGINT)
        escalated = False
        if not run.done.is_set():
            say(
                f"{stack}: waiting up to {self.stop_timeout:g}s for Pulumi to stop the update cleanly "
                "(in-flight operations finish first); Ctrl-C again stops it at once, which may leave "
                "pending operations"
            )
            again: KeyboardInterrupt | None = None
            try:
                run.done.wait(self.stop_timeout)
            except KeyboardInterrupt as exc:
                again = exc
            if not run.done.is_set():
                escalated = True
                say(f"{stack}: stopping the Pulumi CLI at once")
                # Pulumi's second interrupt means "stop now". A second Ctrl-C at the terminal already
                # reached it; otherwise send it.
                if again is None or isinstance(again, Terminated) or not terminal_delivers_interrupts():
                    signal_processes(run.cli_pids(), signal.SIGINT)
                run.done.wait(self.kill_timeout)
                if not run.done.is_set():
                    signal_processes(run.cli_pids(), signal.SIGKILL)
                    run.done.wait(self.kill_timeout)
        if escalated and run.log.started and not _is_diy(self._backend.url):
            with self._lock:
                selected = self._stacks.get((stack, str(self._root)))
            try:
                (selected or self._stack(stack)).cancel()
            except (auto.CommandError, StagelineError) as exc:
                say(f"{stack}: could not cancel the update on Pulumi Cloud: {redact(str(exc))}")


def all_secret_strings(values: Sequence[Any]) -> list[str]:
    """Flatten secret values (strings, numbers, nested) into the strings redaction should mask."""
    out: list[str] = []
    for value in values:
        if isinstance(value, Mapping):
            out.extend(all_secret_strings(list(value.values())))
        elif isinstance(value, list | tuple):
            out.extend(all_secret_strings(list(value)))
        elif value is not None:
            out.append(str(value))
    return out


def _conforms(engine: LocalEngine) -> Engine:  # mypy checks LocalEngine against the protocol here
    return engine
