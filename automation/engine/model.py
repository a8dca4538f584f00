"""The engine seam's vocabulary: its errors and the frozen dataclasses every layer above passes around.

Importing it is cheap (click via automation.errors, nothing else). The protocol that produces these is
automation.engine.protocol; the SDK is touched only by automation.engine.local.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from automation.errors import ConfigurationError, GateRefused, StagelineError
from infra.config.model import MASK

if TYPE_CHECKING:
    pass


RELEASE_KEY = "stageline:release"

ProgressFn = Callable[[str], None]
Release = dict[str, Any]  # the `stageline:release` object exactly as in Pulumi.<stack>.yaml


# --- errors -------------------------------------------------------------------------------------


class EngineError(StagelineError):
    """The engine reported a failure (exit 1). The message is the engine's, secrets redacted."""


class ConcurrentUpdateError(EngineError):
    """Another update holds the stack's lock. Retry later (automation.operate.updates backs off)."""


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
    """SIGTERM turned into an interrupt (see automation.operate.updates.sigterm_as_interrupt).

    Unlike a Ctrl-C at a terminal, which reaches the whole process group, SIGTERM reaches only the
    driver: the engine must pass the interrupt on to the Pulumi CLI itself.
    """


@dataclass(frozen=True)
class PolicyResult:
    """One policy violation the engine reported while running a policy pack (`--policy-pack`)."""

    rule: str  # the policy's name, as `check` names the rule
    urn: str  # "" for a stack-level policy
    level: str  # the enforcement level: mandatory | advisory | remediate | disabled
    message: str  # the rule's message (the last line of the engine's, without the resource name)
    pack: str = ""

    @property
    def mandatory(self) -> bool:
        return self.level == "mandatory"

    def describe(self) -> str:
        where = f" {self.urn}" if self.urn else ""
        return f"{self.rule} ({self.level}){where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "urn": self.urn,
            "level": self.level,
            "message": self.message,
            "pack": self.pack,
        }


class PolicyViolationError(GateRefused):
    """A mandatory policy of the pack the engine ran refused the preview or update (exit 3)."""

    def __init__(self, stack: str, results: Sequence[PolicyResult]) -> None:
        self.stack = stack
        self.results = tuple(results)
        mandatory = [r for r in self.results if r.mandatory] or list(self.results)
        first = mandatory[0]
        more = f" (and {len(mandatory) - 1} more)" if len(mandatory) > 1 else ""
        name = parse_urn(first.urn)[1] if first.urn else stack
        super().__init__(
            f"{stack}: the policy pack refused it: {first.rule}: {name}: {first.message}{more}; "
            "nothing was changed"
        )


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
# Wider than policy.rules.PROTECTION_REQUIRED_TYPES, the types the program must also protect.
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
    policy: tuple[PolicyResult, ...] = ()  # what a policy pack reported (none mandatory: those refuse)

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
            "policy": [p.to_json() for p in self.policy],
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
        if SECRET_SIG in document:
            return {prefix} if prefix else set()
        out: set[str] = set()
        for key, value in document.items():
            out |= engine_secret_paths(value, child_path(prefix, str(key)))
        return out
    if isinstance(document, list):
        out = set()
        for i, item in enumerate(document):
            out |= engine_secret_paths(item, child_path(prefix, i))
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


# --- property paths and secret values ---------------------------------------------------------

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
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - a marker, not a credential


PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def child_path(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    if PLAIN_KEY.match(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


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
