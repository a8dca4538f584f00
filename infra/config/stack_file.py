"""The two ways config comes in: from the engine inside the Pulumi program, and from the stack file.

`load` reads the running stack's config from the engine (inside `pulumi up` or mocks);
`read_stack_file` reads `Pulumi.<stack>.yaml` without an engine, for the driver and the offline
commands. Both end in `schema.parse`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
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
    """Read the running stack's config from the Pulumi engine (inside `pulumi up` or mocks)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    merged: dict[str, Any] = dict(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    refuse_provider_tokens(merged)
    prefix = f"{NAMESPACE}:"
    values = {k[len(prefix) :]: decode_config_value(v) for k, v in merged.items() if k.startswith(prefix)}
    secret_keys = {k for k in values if runtime_config.is_config_secret(prefix + k)}
    cfg = pulumi.Config(NAMESPACE)
    region = pulumi.Config("aws").get("region")
    return parse(
        values,
        stack=pulumi.get_stack(),
        project=pulumi.get_project(),
        region=region,
        secret_keys=secret_keys,
        read_secret=cfg.require_secret,
    )


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
    """Read `Pulumi.<stack>.yaml` without the engine. Raises ConfigError on any problem."""
    import yaml

    if not STACK_NAME_RE.match(stack):
        raise ConfigError(
            f"stack name must be lower-case letters, digits and - (up to 31), got {_fmt(stack)}"
        )
    path = stack_file_path(root, stack)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = ", ".join(known_stacks(root)) or "none"
        raise ConfigError(f"unknown stack {_fmt(stack)}: no {path.name} (known stacks: {known})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path.name}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path.name}{where} is not valid YAML") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path.name} must be a mapping with a config: key")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path.name}: config must be a mapping")
    prefix = f"{NAMESPACE}:"
    values: dict[str, Any] = {}
    secrets: set[str] = set()
    other: dict[str, Any] = {}
    for raw_key, value in config.items():
        key = str(raw_key)
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
    region = sf.other.get("aws:region")
    return parse(
        sf.values,
        stack=sf.stack,
        project=project,
        region=region if isinstance(region, str) else None,
        secret_keys=sf.secret_keys,
    )
