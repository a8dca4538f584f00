"""Where the project and its state live: the repository root, the state backend, the secrets setup
of read-only commands, and the check that the Pulumi CLI is new enough.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass
from automation.engine.model import RELEASE_KEY, BackendInfo, EngineUnavailable, StackLock

PROJECT_FILE = "Pulumi.yaml"
INSTALL_URL = "https://www.pulumi.com/docs/iac/download-install/"
DEFAULT_STATE_DIR = Path(".stageline") / "state"


# --- locating the project and the backend -------------------------------------------------------


def load_yaml(path: Path) -> Any:
    """A project or stack file's content through the one stack-file reader (its limits included);
    None when it cannot be read or parsed.

    Lenient on purpose: it answers questions about files `LocalEngine.open` has already read
    strictly (every stack file, through `read_stack_file`, exit 2 on any problem) or that only
    decide a detail (the project's name, a stack's secrets provider) where the CLI reports a broken
    file itself, in its own words.
    """
    from infra.config.model import ConfigError
    from infra.config.stack_file import read_yaml

    try:
        return read_yaml(path)
    except ConfigError:
        return None


def _parsed(data: bytes, name: str) -> Any:
    """`data` through the one stack-file reader; ValueError (a ConfigError) when it cannot be read."""
    from infra.config.stack_file import parse_yaml

    return parse_yaml(data, name)


def project_name(root: Path) -> str:
    document = load_yaml(root / PROJECT_FILE)
    name = document.get("name") if isinstance(document, Mapping) else None
    return str(name) if name else root.name


SECRETS_KEYS = ("encryptionsalt", "encryptedkey", "secretsprovider")


def _without(document: Any, drop: Callable[[dict[str, Any]], None]) -> Any:
    if not isinstance(document, Mapping):
        return document
    copy = {str(k): v for k, v in document.items()}
    drop(copy)
    return copy


def differs_only_in_release(committed: bytes, current: bytes) -> bool:
    """Whether two stack files say the same thing but for `stageline:release` (layout aside)."""

    def drop_release(doc: dict[str, Any]) -> None:
        config = doc.get("config")
        if isinstance(config, Mapping):
            doc["config"] = {k: v for k, v in config.items() if k != RELEASE_KEY}

    try:
        old, new = _parsed(committed, "the committed stack file"), _parsed(current, "the stack file")
    except ValueError:
        return False
    return _without(old, drop_release) == _without(new, drop_release)


@contextmanager
def unchanged_secrets_keys(path: Path) -> Iterator[None]:
    """Put the file's bytes back if the block changed nothing in it but its secrets-provider keys."""
    try:
        before = path.read_bytes()
    except OSError:
        yield
        return
    try:
        yield
    finally:

        def drop(doc: dict[str, Any]) -> None:
            for key in SECRETS_KEYS:
                doc.pop(key, None)

        try:
            after = path.read_bytes()
            same = _without(_parsed(after, path.name), drop) == _without(_parsed(before, path.name), drop)
            if after != before and same:
                path.write_bytes(before)
        except (OSError, ValueError):
            pass


_EXIT_CODE = re.compile(r"^\s*code: (-?\d+)\s*$", re.MULTILINE)


def killed_by(text: str) -> str | None:
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


def is_diy(url: str) -> bool:
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
    if not is_diy(backend.url):
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


def _version_cache(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "stageline" / "cli-versions.json"


def _binary_key(pulumi: str) -> str | None:
    """What identifies one build of the CLI on disk: its real path, size, modification time and inode
    (replacing or upgrading the binary changes at least one of them)."""
    try:
        real = os.path.realpath(pulumi)
        info = os.stat(real)
    except OSError:
        return None
    return f"{real}:{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"


def _cached_version(cache: Path, key: str) -> str | None:
    import json

    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = known.get(key) if isinstance(known, dict) else None
    return value if isinstance(value, str) and _VERSION.match(value) else None


def _remember_version(cache: Path, key: str, printed: str) -> None:
    """Best effort: an unwritable cache only costs the next run one `pulumi version`."""
    import json
    import tempfile

    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    # One entry per CLI path that still exists: an upgraded or removed build's entry goes.
    path = key.rsplit(":", 3)[0]
    known = {
        k: v for k, v in known.items() if k.rsplit(":", 3)[0] != path and Path(k.rsplit(":", 3)[0]).exists()
    }
    known[key] = printed
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache.parent, delete=False, encoding="utf-8") as out:
            json.dump(known, out)
        os.replace(out.name, cache)
    except OSError:
        return


def check_cli_version(pulumi: str, env: Mapping[str, str]) -> str:
    """The version `pulumi version` prints; EngineUnavailable (one line) when older than MIN_CLI_VERSION.

    What a given binary printed is kept in the user's cache (keyed by the binary's path, size,
    modification time and inode), so a command pays for `pulumi version` once per CLI build, not
    once per run.
    """
    cache = _version_cache({**os.environ, **env})
    key = _binary_key(pulumi)
    printed = _cached_version(cache, key) if key else None
    if printed is None:
        printed = _run_version(pulumi, env)
        if key:
            _remember_version(cache, key, printed)
    return _checked_version(pulumi, printed)


def _run_version(pulumi: str, env: Mapping[str, str]) -> str:
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
    if done.returncode != 0 or _VERSION.match(printed) is None:
        said = printed or done.stderr.strip() or f"exit {done.returncode}"
        raise EngineUnavailable(f"cannot tell the Pulumi CLI's version from `{pulumi} version`: {said[:200]}")
    return printed


def _checked_version(pulumi: str, printed: str) -> str:
    match = _VERSION.match(printed)
    if match is None:  # a cached value is matched before it is used
        raise EngineUnavailable(
            f"cannot tell the Pulumi CLI's version from `{pulumi} version`: {printed[:200]}"
        )
    found = tuple(int(n) for n in match.groups())
    if found < MIN_CLI_VERSION:
        raise EngineUnavailable(
            f"the Pulumi CLI on PATH is v{_version_text(found)}, older than "
            f"v{_version_text(MIN_CLI_VERSION)} that Stageline needs (`pulumi config set-all --json`): "
            f"upgrade it ({INSTALL_URL})"
        )
    return printed
