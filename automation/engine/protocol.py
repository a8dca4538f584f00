"""The engine seam: the `Engine` protocol and how commands get an engine.

Everything above this module (preview, drift, rollback, history, promotion …) is orchestration over
plain frozen dataclasses and the `Engine` protocol below. Two implementations exist:

* `automation.engine.local.LocalEngine` wraps `pulumi.automation.LocalWorkspace` with work_dir = the
  repository root, so `pulumi up -s dev` and the driver share `Pulumi.<stack>.yaml`.
* `automation.engine.fake.FakeEngine` keeps stacks in memory for tests and benchmarks.

Importing this module is cheap: the SDK is imported only by automation.engine.local, when an engine
opens, so every layer above can import the protocol and the dataclasses (automation.engine.model) freely.

How commands get an engine: they call `open_engine()`, which calls the module attribute
`engine_factory`. Tests replace it::

    monkeypatch.setattr(automation.engine.protocol, "engine_factory", lambda: fake)

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
  `ConcurrentUpdateError`, and callers retry (see automation.operate.updates); one left by a killed CLI, whose
  process is provably gone, raises `StaleLockError` and is never retried: `remove_stale_locks` is the
  way out (the driver's --clear-pending). Any other engine failure raises `EngineError` whose message
  is the engine's own, with secrets redacted.
* No method prints. Progress, if wanted, goes through the optional `progress` callback (one line each).

tests/engine/test_contract.py runs these promises against both implementations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from automation.errors import ConfigurationError

if TYPE_CHECKING:
    pass
from automation.engine.model import (
    BackendInfo,
    DriftReport,
    PendingOperation,
    PreviewSummary,
    ProgressFn,
    Release,
    StackLock,
    StackOutputs,
    UpdateRecord,
    unknown_stack,
)

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

    def preview(
        self,
        stack: str,
        *,
        progress: ProgressFn | None = None,
        work_dir: Path | None = None,
        policy_packs: Sequence[Path] = (),
    ) -> PreviewSummary:
        """What `up` would change, per resource. Changes nothing. `work_dir` as for `up`: the program
        of another checkout (a `rollback --code` worktree), same backend. `policy_packs`: run these
        policy packs (`--policy-pack`); a mandatory violation raises PolicyViolationError (exit 3),
        the others are in the summary's `policy`."""
        ...

    def up(
        self,
        stack: str,
        *,
        message: str,
        work_dir: Path | None = None,
        progress: ProgressFn | None = None,
        refresh: bool = False,
        policy_packs: Sequence[Path] = (),
    ) -> UpdateRecord:
        """Run the program and apply it; return the history entry it wrote (numbered as `history` does).
        `policy_packs` as for `preview`: a mandatory violation raises PolicyViolationError.

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
    from automation.engine.local import LocalEngine  # the SDK loads only when an engine opens

    return LocalEngine.open()


# Tests and benchmarks replace this (see module docstring); commands call open_engine().
engine_factory: EngineFactory = _default_factory


def open_engine(stacks: Sequence[str] | None = None, all_stacks: bool = False) -> Engine:
    """The engine, after the stacks a command names (when given) are checked against their stack files.

    With the local engine, the stack files are the stacks: an unknown stack or an unreadable file is
    reported (exit 2) before the Pulumi CLI is looked for. An engine put in `engine_factory` (tests,
    benchmarks) knows its own stacks; the command checks them with `resolve_stacks`.
    """
    if stacks is not None and engine_factory is _default_factory:
        preflight(stacks, all_stacks)
    return engine_factory()


def resolve_stacks(engine: Engine, names: Sequence[str], all_stacks: bool) -> list[str]:
    """The stacks a command acts on: STACK… or --all (never both, never neither), in the order given."""
    return select_stacks(engine.stack_names(), names, all_stacks)


def select_stacks(known: Sequence[str], names: Sequence[str], all_stacks: bool) -> list[str]:
    """`names` (or every known stack for --all), each checked against `known`."""
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


def preflight(names: Sequence[str], all_stacks: bool, start: Path | None = None) -> tuple[Path, list[str]]:
    """The project root and the stacks a command acts on, checked before anything needs the Pulumi CLI:
    each must have a stack file, and each file must read (limits, encoding, duplicate keys) — exit 2
    with one line otherwise. Its config is left to the program: a rollback must work from a broken one.
    """
    from automation.engine.project import find_project_root
    from infra.config.model import STACK_NAME_RE, ConfigError
    from infra.config.stack_file import known_stacks, read_stack_file

    root = find_project_root(start or Path.cwd())
    known = [s for s in known_stacks(root) if STACK_NAME_RE.match(s)]
    selected = select_stacks(known, names, all_stacks)
    for name in selected:
        try:
            read_stack_file(root, name)
        except ConfigError as exc:
            raise ConfigurationError(str(exc)) from None
    return root, selected
