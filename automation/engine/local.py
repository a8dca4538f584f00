"""`LocalEngine`: the Engine protocol over `pulumi.automation.LocalWorkspace`, and the only module that
imports the SDK's automation API.

work_dir is the repository root, so `pulumi up -s dev` and the driver share `Pulumi.<stack>.yaml`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automation.errors import ConfigurationError, StagelineError
from automation.redact import redact
from infra.config.stack_file import decode_config_value

if TYPE_CHECKING:
    from pulumi.automation import EngineEvent, Stack
from automation.engine.events import (
    clean_diagnostic,
    drift_report_from_events,
    engine_message,
    number_history,
    op_value,
    pending_from_deployment,
    policy_result,
    preview_summary_from_events,
    protected_step_urns,
    skip_resource,
    summary_changes,
    update_record_from_summary,
)
from automation.engine.model import (
    RELEASE_KEY,
    BackendInfo,
    ConcurrentUpdateError,
    DriftReport,
    EngineError,
    EngineUnavailable,
    PendingOperation,
    PolicyResult,
    PolicyViolationError,
    PreviewSummary,
    ProgressFn,
    Release,
    StackLock,
    StackOutputs,
    StaleLockError,
    Terminated,
    UpdateRecord,
    all_secret_strings,
    engine_secret_paths,
    normal_op,
    not_deployed,
    parse_urn,
    stack_outputs_state,
    unknown_stack,
)
from automation.engine.process import (
    child_pids,
    file_backend_root,
    is_pulumi_process,
    lock_dirs,
    locks_from_message,
    read_lock_file,
    signal_processes,
    terminal_delivers_interrupts,
)
from automation.engine.project import (
    DEFAULT_STATE_DIR,
    INSTALL_URL,
    SECRETS_KEYS,
    check_cli_version,
    choose_backend,
    differs_only_in_release,
    find_project_root,
    is_diy,
    killed_by,
    load_yaml,
    project_name,
    secrets_environment,
    stale_lock_message,
    unchanged_secrets_keys,
)
from automation.engine.protocol import Engine

# --- the real engine ----------------------------------------------------------------------------


def may_hold_secrets(document: Any) -> bool:
    """Whether a stack file's config can hold a secret value: a `secure:` value anywhere in `config`,
    or an ESC `environment` (whose values the CLI adds to the config). An unreadable file may."""
    if not isinstance(document, Mapping):
        return True
    if document.get("environment"):
        return True

    def secure(value: Any) -> bool:
        if isinstance(value, Mapping):
            return "secure" in value or any(secure(v) for v in value.values())
        if isinstance(value, list):
            return any(secure(v) for v in value)
        return False

    return secure(document.get("config") or {})


_WORKSPACE_CLASS: Any = None


def _workspace_class() -> Any:
    """`LocalWorkspace` that skips `pulumi stack select` for a stack whose checkpoint it was shown.

    Made on first use, because only this module may import the SDK's automation API and it does so
    lazily (so `python -m automation --help` does not pay for it).
    """
    global _WORKSPACE_CLASS  # noqa: PLW0603 - one class, made once
    if _WORKSPACE_CLASS is not None:
        return _WORKSPACE_CLASS
    import pulumi.automation as auto

    class Workspace(auto.LocalWorkspace):
        def __init__(self, deployed: Path | None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._deployed = deployed

        def select_stack(self, stack_name: str) -> None:
            if self._deployed is not None and self._deployed.is_file():
                return
            super().select_stack(stack_name)

    _WORKSPACE_CLASS = Workspace
    return Workspace


class _EventLog:
    """Collects engine events (the SDK calls on_event from its own thread) and reports progress.

    Keeps the engine's error diagnostics (a resource failure is reported as a diagnostic event, not on
    stderr) and whether the operation got going (the prelude is sent once the stack is locked).
    """

    def __init__(self, progress: ProgressFn | None) -> None:
        self.events: list[EngineEvent] = []
        self.diagnostics: list[str] = []
        self.errors: list[tuple[str, str]] = []  # (urn or "", one-line text) of each error diagnostic
        self.policy: list[PolicyResult] = []  # what a policy pack reported
        self.started = False
        self._progress = progress
        self._lock = threading.Lock()

    def __call__(self, event: EngineEvent) -> None:
        with self._lock:
            self.events.append(event)
            if event.prelude_event is not None or event.resource_pre_event is not None:
                self.started = True
            if event.policy_event is not None:
                self.policy.append(policy_result(event.policy_event))
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
            op = normal_op(op_value(meta.op))
            if op != "same" and not skip_resource(meta.type):
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
        # Each workspace's own environment (the dict the SDK was given): `up` adds to it for one run.
        self._workspace_env: dict[tuple[str, str], dict[str, str]] = {}
        self._secret_values: set[str] = set()
        self._secrets_read: set[str] = set()
        self._interrupted: dict[str, _InterruptedUpdate] = {}
        self._cli_version = ""  # what `pulumi version` printed in open(), when it ran there

    @classmethod
    def open(cls, start: Path | None = None, environ: Mapping[str, str] | None = None) -> LocalEngine:
        """Locate the project, check the CLI and choose the backend; raise EngineUnavailable on failure."""
        from infra.config.model import ConfigError
        from infra.config.stack_file import known_stacks, read_stack_file

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
        from infra.config.stack_file import known_stacks

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
        document = load_yaml(self._stack_file(stack, work_dir))
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
        env = dict(self._env)
        try:
            workspace = _workspace_class()(
                self._deployed_state_file(stack),
                work_dir=key[1],
                pulumi_command=self._command(),
                env_vars=env,
                secrets_provider=self._secrets_provider(stack, work_dir) if create else None,
            )
            workspace.env_vars = env  # this very dict (the SDK swaps an empty one for its own)
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
            self._workspace_env[key] = env
        return selected

    def _deployed_state_file(self, stack: str) -> Path | None:
        """The checkpoint a self-managed backend keeps for a deployed stack, when it is there.

        Its presence answers what `pulumi stack select` would be asked (does the stack exist?), so a
        workspace that knows it need not start the CLI for that (the SDK passes `--stack` to every
        command, so the CLI's notion of the selected stack is never used). Anything else — another
        backend, the legacy layout, a missing file — is asked of the CLI as before.
        """
        root = file_backend_root(self._backend.url)
        if root is None:
            return None
        stacks = root / ".pulumi" / "stacks" / self._project
        for name in (f"{stack}.json", f"{stack}.json.gz"):
            if (stacks / name).is_file():
                return stacks / name
        return None

    def _translate(
        self, exc: Exception, stack: str, *, unavailable: bool = False, diagnostics: Sequence[str] = ()
    ) -> StagelineError:
        import pulumi.automation as auto

        message = engine_message(str(exc), self._secret_values, diagnostics)
        killed = killed_by(str(exc))
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
        work_dir = getattr(getattr(stack, "workspace", None), "work_dir", None) or self._root
        stack_file = Path(work_dir) / f"Pulumi.{stack.name}.yaml"
        if not may_hold_secrets(load_yaml(stack_file)):
            return  # the CLI's config is the stack file's: nothing there to decrypt, no call to make
        try:
            # Decrypting may make the CLI write a secrets salt into a stack file that lacks one.
            with unchanged_secrets_keys(stack_file):
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
    def _read_only_config(self, stack: str, work_dir: Path | None = None) -> Iterator[str | None]:
        """The `--config-file` for a call that must not write the tracked stack file (None: not needed).

        A preview or refresh loads the stack's secrets manager and, when the stack file holds no
        `encryptionsalt`/`encryptedkey` (a fresh clone where they were never committed), saves one into
        it, even with PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER (it then saves the state's: "should
        save", cmd/pulumi/config/io.go). Given a copy of the file, the CLI writes there instead.
        """
        path = self._stack_file(stack, work_dir)
        try:
            raw = path.read_bytes()
        except OSError:
            yield None
            return
        document = load_yaml(path)
        if not isinstance(document, Mapping) or any(document.get(k) for k in SECRETS_KEYS[:2]):
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

    def preview(
        self,
        stack: str,
        *,
        progress: ProgressFn | None = None,
        work_dir: Path | None = None,
        policy_packs: Sequence[Path] = (),
    ) -> PreviewSummary:
        log = _EventLog(progress)
        packs = [str(p) for p in policy_packs] or None
        with self._read_only_config(stack, work_dir) as config_file:
            try:
                result = self._run(
                    stack,
                    lambda s: s.preview(on_event=log, diff=True, config_file=config_file, policy_packs=packs),
                    work_dir,
                    log=log,
                    read_only=True,
                )
            except EngineError:
                if any(r.mandatory for r in log.policy):
                    raise PolicyViolationError(stack, log.policy) from None
                # Replacing or deleting a protected resource fails the preview, after the engine has
                # sent the step; a gate must see that step, not an error.
                protected = protected_step_urns(log.errors)
                if protected is None:
                    raise
                return preview_summary_from_events(
                    stack, log.events, summary_changes(log.events), protected=protected
                )
        summary = preview_summary_from_events(stack, log.events, result.change_summary)
        return dataclasses.replace(summary, policy=tuple(log.policy))

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
        log = _EventLog(progress)
        packs = [str(p) for p in policy_packs] or None
        selected = self._stack(stack, work_dir, create=True)
        self._remember_secrets(selected)
        before = frozenset(child_pids(os.getpid()))
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                # show_secrets=False: the summary needs no decrypted config.
                box["result"] = selected.up(
                    message=message,
                    on_event=log,
                    show_secrets=False,
                    refresh=True if refresh else None,
                    policy_packs=packs,
                )
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc
            finally:
                done.set()

        with self._lock:
            workspace_env = self._workspace_env[(stack, str(work_dir or self._root))]
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
            if any(r.mandatory for r in log.policy):
                raise PolicyViolationError(stack, log.policy) from None
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
        from infra.config.model import ConfigError
        from infra.config.stack_file import read_stack_file

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
        if escalated and run.log.started and not is_diy(self._backend.url):
            with self._lock:
                selected = self._stacks.get((stack, str(self._root)))
            try:
                (selected or self._stack(stack)).cancel()
            except (auto.CommandError, StagelineError) as exc:
                say(f"{stack}: could not cancel the update on Pulumi Cloud: {redact(str(exc))}")


def _conforms(engine: LocalEngine) -> Engine:  # mypy checks LocalEngine against the protocol here
    return engine
