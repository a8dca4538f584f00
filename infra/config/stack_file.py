"""The two ways config comes in: from the engine inside the Pulumi program, and from the stack file.

`load` reads the running stack's config from the engine (inside `pulumi up` or mocks);
`read_stack_file` reads `Pulumi.<stack>.yaml` without an engine, for the driver and the offline
commands. Both end in `schema.parse`.

`read_yaml`/`parse_yaml` are the one way a stack file's bytes become values: within a size, depth
and alias-expansion limit, UTF-8 only (a BOM is allowed), duplicate keys refused as Pulumi refuses
them, and scalars resolved as Pulumi's YAML parser resolves them (only true/false are booleans,
dates stay strings). Every problem is a ConfigError of one line naming the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from infra.config.fields import _fmt
from infra.config.model import NAMESPACE, STACK_NAME_RE, ConfigError, Secret, StackConfig
from infra.config.schema import parse


def decode_config_value(raw: Any) -> Any:
    """A config value as Pulumi hands it over (to a program, in history, from `pulumi config --json`):
    a string, with objects and lists as JSON text; decoded."""
    if isinstance(raw, str) and raw[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


# Provider credentials that would be stored (encrypted, but decryptable) in every stack's state.
PROVIDER_TOKEN_KEYS = ("github:token",)


def refuse_provider_tokens(keys: Iterable[str]) -> None:
    for key in sorted(set(keys) & set(PROVIDER_TOKEN_KEYS)):
        raise ConfigError(
            f"{key} must not be set: the provider's token would be stored in the state; "
            "give the job GITHUB_TOKEN in its environment instead"
        )


def load() -> StackConfig:
    """Read the running stack's config from the Pulumi engine (inside `pulumi up` or mocks).

    The engine has parsed the stack file with Pulumi's own parser; when the file is in the project
    root it is also read through `read_stack_file`, so the program refuses what the offline commands
    refuse (a file over the limits, a key set twice) and knows the project's other stacks.
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    merged: dict[str, Any] = dict(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    refuse_provider_tokens(merged)
    prefix = f"{NAMESPACE}:"
    values = {k[len(prefix) :]: decode_config_value(v) for k, v in merged.items() if k.startswith(prefix)}
    secret_keys = {k for k in values if runtime_config.is_config_secret(prefix + k)}
    # Other namespaces: only their names are judged (a secret in plain text), never their values.
    other = {
        k: Secret() if runtime_config.is_config_secret(k) else v
        for k, v in merged.items()
        if not k.startswith(prefix)
    }
    stack = pulumi.get_stack()
    # The project's root, as the engine tells it: none for an inline program (the Automation API's
    # `program=`), which has no stack file of its own to read again.
    root_directory = pulumi.get_root_directory()
    root = Path(root_directory) if root_directory else None
    stacks = None
    if root is not None and stack_file_path(root, stack).is_file():
        read_stack_file(root, stack)
        stacks = [s for s in known_stacks(root) if STACK_NAME_RE.match(s)]
    cfg = pulumi.Config(NAMESPACE)
    return parse(
        values,
        stack=stack,
        project=pulumi.get_project(),
        region=pulumi.Config("aws").get("region"),
        secret_keys=secret_keys,
        read_secret=cfg.require_secret,
        other=other,
        stacks=stacks,
    )


# --- reading YAML within limits -------------------------------------------------------------------

# Limits of a stack file (and of every other YAML file the driver reads). The shipped stack files
# are about 3 KB, 6 levels deep and use no aliases; these leave room for any real one while a
# hostile file is refused in well under a second instead of exhausting memory or the stack.
MAX_FILE_BYTES = 64 * 1024
MAX_DEPTH = 32
# Values of the document with every alias expanded (an alias counts as many values as it stands
# for): a "billion laughs" file of a few hundred bytes is refused here, before anything is built.
# The shipped stack files hold about 200.
MAX_NODES = 10_000

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class _Refused(Exception):
    """A limit the reader enforces, with the line it was found on."""

    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.mark = mark


@cache
def _loader_class() -> type:
    """A SafeLoader that counts depth and expanded size, refuses duplicate keys and recursive
    aliases, and resolves scalars as Pulumi's YAML parser does where YAML 1.1 and 1.2 differ.

    Built on first use: PyYAML is imported only by a command that reads a YAML file.
    """
    import yaml
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    class Loader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._depth = 0
            self._count = 0  # values composed so far, aliases expanded
            self._sizes: dict[int, int] = {}

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                node = self.anchors.get(event.anchor)
                if node is not None and id(node) not in self._sizes:
                    raise _Refused(f"alias *{event.anchor} refers to its own anchor", event.start_mark)
                if node is not None:
                    self._counted(self._sizes[id(node)], event.start_mark)
                return Composer.compose_node(self, parent, index)
            if self._depth >= MAX_DEPTH:
                raise _Refused(f"nests deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            self._counted(1, self.peek_event().start_mark)
            self._depth += 1
            try:
                node = Composer.compose_node(self, parent, index)
            finally:
                self._depth -= 1
            if isinstance(node, ScalarNode):
                size = 1
            elif isinstance(node, SequenceNode):
                size = 1 + sum(self._sizes[id(child)] for child in node.value)
            elif isinstance(node, MappingNode):
                size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            else:  # pragma: no cover - PyYAML has no other node kind
                size = 1
            self._sizes[id(node)] = size
            return node

        def _counted(self, size: int, mark: Any) -> None:
            self._count += size
            if self._count > MAX_NODES:
                raise _Refused(f"holds more than {MAX_NODES} values (aliases counted at every use)", mark)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, MappingNode):
                seen: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:
                        raise _Refused("a mapping key is a list or a mapping", key_node.start_mark) from None
                    if first is not None:
                        raise _Refused(
                            f"key {_fmt(key)} is set twice (first on line {first.line + 1}); "
                            "Pulumi refuses duplicate keys",
                            key_node.start_mark,
                        )
                    seen[key] = key_node.start_mark
            return SafeConstructor.construct_mapping(self, node, deep=deep)

    # YAML 1.2 scalars, as Pulumi reads them: only true/false are booleans ("yes", "on" stay
    # strings) and dates stay strings, so a value means here what it means to the engine.
    resolvers = {
        first: [(tag, regexp) for tag, regexp in entries if tag != "tag:yaml.org,2002:timestamp"]
        for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.yaml_implicit_resolvers = {k: v for k, v in resolvers.items() if v}
    for first in "yYnNoO":
        Loader.yaml_implicit_resolvers[first] = [
            (tag, regexp)
            for tag, regexp in Loader.yaml_implicit_resolvers.get(first, [])
            if tag != "tag:yaml.org,2002:bool"
        ]
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Loader


def parse_yaml(data: bytes, name: str) -> Any:
    """One YAML document from bytes, within the limits above; ConfigError (one line naming `name`)."""
    import yaml

    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{name} is {len(data)} bytes; a stack file may have at most {MAX_FILE_BYTES}")
    if data.startswith(_UTF16_BOMS):
        raise ConfigError(f"{name} is UTF-16 text; save it as UTF-8")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{name} line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8"
        ) from None
    loader = None
    try:
        loader = _loader_class()(text)
        return loader.get_single_data()
    except _Refused as exc:
        where = f" line {exc.mark.line + 1}" if exc.mark is not None else ""
        raise ConfigError(f"{name}{where}: {exc}") from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(
            f"{name} line {line} holds the control character #x{exc.character:04x}, which YAML does not allow"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
        detail = f": {problem}" if problem else ""
        raise ConfigError(f"{name}{where} is not valid YAML{detail}") from None
    except RecursionError:  # a last resort: the depth limit stops nesting long before this
        raise ConfigError(f"{name} nests too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: Path, *, name: str | None = None) -> Any:
    """A YAML file read within the limits of `parse_yaml`; ConfigError (one line) when it cannot be."""
    label = name or path.name
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{label} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{label} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {label}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{label} is larger than {MAX_FILE_BYTES} bytes, the most a stack file may have")
    return parse_yaml(data, label)


@dataclass(frozen=True)
class StackFile:
    """A stack file as the driver sees it: decoded values, which keys are secret, the raw document."""

    stack: str
    path: Path
    values: dict[str, Any]  # keys without the namespace
    secret_keys: frozenset[str]
    other: dict[str, Any]  # keys of other namespaces ("aws:region" …), secure values as Secret
    document: dict[str, Any]


def stack_file_path(root: Path, stack: str) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def known_stacks(root: Path) -> list[str]:
    """Stack names that have a `Pulumi.<stack>.yaml` in `root`."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def read_stack_file(root: Path, stack: str) -> StackFile:
    """Read `Pulumi.<stack>.yaml` without the engine: the one reader of stack files (the driver, the
    offline commands and the program's own check of its file all come here). Raises ConfigError,
    one line naming the file, on any problem."""
    if not STACK_NAME_RE.match(stack):
        raise ConfigError(
            f"stack name must be lower-case letters, digits and - (up to 31), got {_fmt(stack)}"
        )
    path = stack_file_path(root, stack)
    if not path.exists():
        known = ", ".join(known_stacks(root)) or "none"
        raise ConfigError(f"unknown stack {_fmt(stack)}: no {path.name} (known stacks: {known})")
    document = read_yaml(path)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path.name} must be a mapping with a config: key")
    config = document.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path.name}: config must be a mapping of namespace:key to values")
    prefix = f"{NAMESPACE}:"
    values: dict[str, Any] = {}
    secrets: set[str] = set()
    other: dict[str, Any] = {}
    seen: set[str] = set()
    for raw_key, value in config.items():
        if not isinstance(raw_key, str) or not raw_key or raw_key.startswith(":") or raw_key.endswith(":"):
            raise ConfigError(
                f"{path.name}: config key {_fmt(raw_key)} must be a string of the form namespace:key "
                "(Pulumi refuses any other)"
            )
        # A key without a namespace is the project's, as Pulumi reads it.
        key = raw_key if ":" in raw_key else prefix + raw_key
        if key in seen:
            raise ConfigError(
                f"{path.name}: config key {_fmt(key)} is set twice (with and without its namespace)"
            )
        seen.add(key)
        is_secure = isinstance(value, dict) and set(value) == {"secure"}
        if key.startswith(prefix):
            name = key[len(prefix) :]
            values[name] = Secret() if is_secure else value
            if is_secure:
                secrets.add(name)
        else:
            other[key] = Secret() if is_secure else value
    return StackFile(
        stack=stack, path=path, values=values, secret_keys=frozenset(secrets), other=other, document=document
    )


def parse_stack_file(sf: StackFile, project: str = "stageline") -> StackConfig:
    refuse_provider_tokens(sf.other)
    return parse(
        sf.values,
        stack=sf.stack,
        project=project,
        region=sf.other.get("aws:region"),
        secret_keys=sf.secret_keys,
        other=sf.other,
        stacks=[s for s in known_stacks(sf.path.parent) if STACK_NAME_RE.match(s)],
    )
