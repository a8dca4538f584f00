"""`parity`: render the stacks and explain every difference between them.

Environments must differ only by config (docs/assurance.md). For each pair
of neighbouring stacks (in promotion order: dev → staging → prod) parity lists the resources
present in one but not the other and every property value that differs, and classifies each difference:

* **expected** — it comes from a config key whose value differs between the two stack files
  (memory from `services[].memory`, retention from `logRetentionDays` …), or it is only the stack
  name inside a name or ARN;
* **unexpected** — no config key explains it: the program treats the stacks differently on its
  own (an `if stack == "prod"`, a value read from elsewhere).

How a difference is traced to a key: not by guessing from values, but by experiment. Starting from
stack A's config, parity renders again after each change that turns it into B's — the stack name
alone, and each differing config key — and records which change moved which value. Anything a
config key moved is expected, and the key is named (as precisely as the stack files allow).

The stack name is always changed on its own, never together with a config key, and it is tried at
both ends: with A's config (A's config under B's name) and with B's (B's config under A's name).
An `if stack == "prod"` can hide behind either: `if stack == "prod" and cfg.protect` changes nothing
with A's config, only with B's. Any value the name alone changes, at either end, in a way other than
substituting the name, is unexpected. When B's config cannot be rendered under A's name (a stack's
`promotion.source` cannot be the stack itself), the one config key the error is about (or, failing
that, the first that helps) is kept at A's value for that check. When the name cannot be changed
alone at all, whatever moves with it is unexpected: its effect cannot be isolated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automation.errors import ConfigurationError, StagelineError
from automation.markdown import cell
from infra.config.model import MASK

if TYPE_CHECKING:
    from automation.assure.render import Program
    from infra.config import StackFile
    from infra.simulate import Simulation

ProgressFn = Callable[[str], None]

STACK_NAME = "(stack name)"
EXPECTED = "expected"
UNEXPECTED = "unexpected"
_ABSENT = "(absent)"


# --- what a render is run with --------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """One render's input: the stack name and its config, split as the simulator takes it."""

    stack: str
    values: Mapping[str, Any]  # stageline: keys, without namespace
    secret_keys: frozenset[str]
    other: Mapping[str, Any]  # other namespaces, e.g. "aws:region"

    @classmethod
    def of(cls, sf: StackFile) -> Settings:
        return cls(stack=sf.stack, values=dict(sf.values), secret_keys=sf.secret_keys, other=dict(sf.other))

    def keys(self) -> set[str]:
        return {f"stageline:{k}" for k in self.values} | set(self.other)

    def get(self, key: str) -> Any:
        if key.startswith("stageline:"):
            return self.values.get(key[len("stageline:") :], _ABSENT)
        return self.other.get(key, _ABSENT)

    def take(self, key: str, source: Settings) -> Settings:
        """This config with `key` as in `source` (STACK_NAME: source's stack name)."""
        if key == STACK_NAME:
            return dataclasses.replace(self, stack=source.stack)
        if key.startswith("stageline:"):
            name = key[len("stageline:") :]
            values = dict(self.values)
            secret = set(self.secret_keys) - {name}
            if name in source.values:
                values[name] = source.values[name]
                if name in source.secret_keys:
                    secret.add(name)
            else:
                values.pop(name, None)
            return dataclasses.replace(self, values=values, secret_keys=frozenset(secret))
        other = dict(self.other)
        if key in source.other:
            other[key] = source.other[key]
        else:
            other.pop(key, None)
        return dataclasses.replace(self, other=other)


def differing_keys(a: Settings, b: Settings) -> list[str]:
    """Config keys whose values differ (a secret is compared by being set, not by its ciphertext)."""

    def comparable(s: Settings, key: str) -> Any:
        if key.startswith("stageline:") and key[len("stageline:") :] in s.secret_keys:
            return "(secret)"
        return json.dumps(s.get(key), sort_keys=True, default=str)

    return sorted(k for k in a.keys() | b.keys() if comparable(a, k) != comparable(b, k))


def _simulate(settings: Settings, program: Program | None) -> Simulation:
    from automation.assure.render import _scrub
    from infra.simulate import simulate

    token = f"stageline-parity-secret-{secrets.token_hex(12)}"
    region = settings.other.get("aws:region")
    extra = {k: v for k, v in settings.other.items() if k != "aws:region" and isinstance(v, str)}
    sim = simulate(
        settings.values,
        stack=settings.stack,
        region=region if isinstance(region, str) else None,
        secret_values={k: token for k in settings.secret_keys},
        extra_config=extra,
        program=program,
    )
    sim.resources = [
        dataclasses.replace(r, inputs=_scrub(r.inputs, token, r.name, [])) for r in sim.resources
    ]
    return sim


# --- a render, flattened into comparable leaves ----------------------------------------------------


def _token_re(stack: str) -> re.Pattern[str]:
    # Case-insensitive: names derive from the stack name in any case (PREVIEW_ROLE_ARN_DEV).
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(stack)}(?![A-Za-z0-9])", re.IGNORECASE)


def normalize(value: Any, stack: str) -> Any:
    """The value with the stack name (as a whole word, in any case) replaced by "{stack}"."""
    if isinstance(value, str):
        return _token_re(stack).sub("{stack}", value)
    if isinstance(value, list):
        return [normalize(v, stack) for v in value]
    if isinstance(value, dict):
        return {k: normalize(v, stack) for k, v in value.items()}
    return value


def _leaves(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, str) and value[:1] in ("{", "[") and len(value) > 1:
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)  # policy documents, dashboards: compare statement by statement
    if isinstance(value, dict) and value:
        for k in sorted(value):
            _leaves(value[k], f"{path}.{k}" if path else str(k), out)
    elif (
        isinstance(value, list) and value and not all(isinstance(v, str | int | float | bool) for v in value)
    ):
        for i, v in enumerate(value):
            _leaves(v, f"{path}[{i}]", out)
    else:
        out[path] = value


@dataclass(frozen=True)
class Flat:
    stack: str
    types: dict[str, str]  # resource key -> type
    names: dict[str, str]  # resource key -> logical name in this stack
    leaves: dict[tuple[str, str], Any]  # (resource key, property path) -> value


# Other environments' protection rules, which the stack named in `github.protects` declares: not
# this stack's own shape, so not compared here (the guardrail rules judge them).
PROTECTION_PREFIX = "protect-"


def flatten(sim: Simulation, stack: str) -> Flat:
    """Resources keyed by URN without the stack (names normalized), inputs and options as leaves."""
    types: dict[str, str] = {}
    names: dict[str, str] = {}
    leaves: dict[tuple[str, str], Any] = {}
    token = _token_re(stack)
    for r in sim.resources:
        if not r.custom or r.name.startswith(PROTECTION_PREFIX):
            continue
        qualified = r.urn.split("::")[-2] if "::" in r.urn else r.type
        name = token.sub("{stack}", r.name)
        key = f"{qualified}::{name}"
        types[key], names[key] = r.type, r.name
        props: dict[str, Any] = {}
        _leaves(dict(r.inputs), "", props)
        props["(protect)"] = r.protect
        props["(retainOnDelete)"] = r.retain_on_delete
        for path, value in props.items():
            leaves[(key, path)] = value
    return Flat(stack=stack, types=types, names=names, leaves=leaves)


def _value(flat: Flat, leaf: tuple[str, str]) -> Any:
    return flat.leaves.get(leaf, _ABSENT)


def _changed(a: Flat, b: Flat) -> tuple[set[str], set[tuple[str, str]], set[tuple[str, str]]]:
    """Resources added or removed; leaves changed; of those, leaves changed only by the stack name."""
    resources = set(a.types) ^ set(b.types)
    common = set(a.types) & set(b.types)
    leaves = {
        leaf
        for leaf in set(a.leaves) | set(b.leaves)
        if leaf[0] in common and _value(a, leaf) != _value(b, leaf)
    }
    naming = {
        leaf for leaf in leaves if normalize(_value(a, leaf), a.stack) == normalize(_value(b, leaf), b.stack)
    }
    return resources, leaves, naming


# --- classification -------------------------------------------------------------------------------


@dataclass
class Difference:
    resource: str  # logical name
    type: str
    path: str | None  # property path; None: the resource itself is present in some stacks only
    values: dict[str, Any]  # stack -> value (or "(absent)")
    classification: str = EXPECTED
    because: list[str] = field(default_factory=list)

    @property
    def naming_only(self) -> bool:
        return self.classification == EXPECTED and self.because == [STACK_NAME]

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "type": self.type,
            "property": self.path,
            "values": self.values,
            "class": self.classification,
            "because": self.because,
        }


Node = tuple[Any, tuple[str, ...]]


def _config_nodes(value: Any, path: str, names: tuple[str, ...] = ()) -> dict[str, Node]:
    """Every value under a config key (lists and objects too) -> (value, names of list items on the way).

    The names let `services[1].memory` be told from `services[0].memory` when both hold 512: the
    resource `service-worker-function` names the item whose name is "worker".
    """
    out: dict[str, Node] = {path: (value, names)}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_config_nodes(v, f"{path}.{k}", names))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            name = v.get("name") if isinstance(v, dict) else None
            item: tuple[str, ...] = (name,) if isinstance(name, str) else ()
            out.update(_config_nodes(v, f"{path}[{i}]", names + item))
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _same(config_value: Any, property_value: Any) -> bool:
    """Whether a property holds a config value as such (numbers compared as numbers, "50.0" == 50)."""
    if isinstance(config_value, bool) or isinstance(property_value, bool):
        return config_value is property_value
    if isinstance(config_value, int | float) or isinstance(property_value, int | float):
        x, y = _number(config_value), _number(property_value)
        return x is not None and x == y
    return bool(config_value == property_value)


def _contains(config_value: Any, property_value: Any) -> bool:
    """Whether a property's text carries a config value ("Keep the newest 20 images")."""
    if not isinstance(property_value, str) or isinstance(config_value, bool):
        return False
    if isinstance(config_value, int | float | str) and str(config_value):
        text = (
            str(int(config_value))
            if isinstance(config_value, float) and config_value.is_integer()
            else str(config_value)
        )
        return re.search(rf"(?<![A-Za-z0-9.]){re.escape(text)}(?![A-Za-z0-9])", property_value) is not None
    return False


def _words(text: str) -> set[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    return {w.lower().rstrip("s") for w in re.split(r"[^A-Za-z0-9]+", spaced) if len(w) > 1}


def _precise_key(key: str, a: Settings, b: Settings, values: tuple[Any, Any], where: str) -> str:
    """The config path under `key` whose two values are the property's two values, if one is.

    The counterfactual renders prove which top-level key moved a value; this only names the path
    inside it, for the reader. Among equally good candidates the one sharing most words with the
    resource and property (`where`) wins.
    """
    va, vb = values
    if key == STACK_NAME or MASK in (va, vb):
        return key
    na, nb = _config_nodes(a.get(key), key), _config_nodes(b.get(key), key)
    changed = [
        p
        for p in sorted(set(na) | set(nb))
        if p != key and na.get(p, (_ABSENT,))[0] != nb.get(p, (_ABSENT,))[0]
    ]
    context = _words(where)
    best: tuple[int, int, str] | None = None
    for path in changed:
        (ca, names_a), (cb, names_b) = na.get(path, (_ABSENT, ())), nb.get(path, (_ABSENT, ()))
        if _same(ca, va) and _same(cb, vb):
            strength = 2
        elif _contains(ca, va) and _contains(cb, vb):
            strength = 1
        else:
            continue
        words = _words(path) | {w for n in names_a + names_b for w in _words(n)}
        score = (strength, len(context & words), path)
        if best is None or score[:2] > best[:2]:
            best = score
    if best is not None:
        return best[2]
    leaves = [p for p in changed if not isinstance((na.get(p) or nb[p])[0], dict | list)]
    return leaves[0] if len(leaves) == 1 else key


@dataclass(frozen=True)
class PairResult:
    a: str
    b: str
    keys: tuple[str, ...]  # the config keys that differ
    renders: int
    resources: dict[str, tuple[str, list[str]]]  # resource key -> (class, because)
    leaves: dict[tuple[str, str], tuple[str, list[str]]]


class _Renders:
    """The renders of one pair, cached by input; None for a combination the config or program refuses."""

    def __init__(self, program: Program | None, progress: ProgressFn | None, label: str) -> None:
        self.program, self.progress, self.label = program, progress, label
        self.cache: dict[str, Flat | None] = {}
        self.errors: dict[str, str] = {}
        self.count = 0

    @staticmethod
    def _key(settings: Settings) -> str:
        return json.dumps(
            [settings.stack, settings.values, sorted(settings.secret_keys), settings.other],
            sort_keys=True,
            default=repr,
        )

    def seed(self, settings: Settings, flat: Flat) -> None:
        self.cache[self._key(settings)] = flat

    def error(self, settings: Settings) -> str:
        return self.errors.get(self._key(settings), "")

    def get(self, settings: Settings, what: str) -> Flat | None:
        from infra.config import ConfigError, parse

        key = self._key(settings)
        if key in self.cache:
            return self.cache[key]
        flat: Flat | None = None
        try:
            region = settings.other.get("aws:region")
            # Cheap first: a combination the config itself refuses is not worth a render.
            parse(
                settings.values,
                stack=settings.stack,
                region=region if isinstance(region, str) else None,
                secret_keys=settings.secret_keys,
            )
            if self.progress:
                self.progress(f"  {self.label}: {what} …")
            flat = flatten(_simulate(settings, self.program), settings.stack)
            self.count += 1
        except ConfigError as exc:  # not a combination the config or the program accepts
            self.errors[key] = str(exc)
        self.cache[key] = flat
        return flat


Step = tuple[list[str], Flat, Flat]  # (what changed: config keys, or [STACK_NAME]), before, after


def _key_chain(
    start: Settings, start_flat: Flat, keys: Sequence[str], source: Settings, renders: _Renders
) -> tuple[list[Step], Flat]:
    """Change `start`'s config into `source`'s one key at a time (the stack name stays `start`'s).

    A key that cannot change alone (services and release name the same services, so either alone
    is a config error) changes together with the next one. Returns the steps and the render they
    reached; when even the last combination does not render, the steps stop short of it.
    """
    groups = [[k] for k in keys]
    steps: list[Step] = []
    current, before = start, start_flat
    i = 0
    while i < len(groups):
        candidate = current
        for key in groups[i]:
            candidate = candidate.take(key, source)
        after = renders.get(
            candidate, f"with {', '.join(groups[i])} from {source.stack} (under the name {candidate.stack})"
        )
        if after is None:
            if i == len(groups) - 1:
                break
            groups[i] += groups.pop(i + 1)
            continue
        steps.append((groups[i], before, after))
        current, before = candidate, after
        i += 1
    return steps, before


def _held_keys(keys: Sequence[str], error: str) -> list[str]:
    """Keys to try keeping at A's value for B's config under A's name: those the error names first."""
    return sorted(keys, key=lambda k: (k not in error, keys.index(k)))


def compare_pair(
    a: Settings,
    b: Settings,
    flat_a: Flat,
    flat_b: Flat,
    *,
    program: Program | None = None,
    progress: ProgressFn | None = None,
) -> PairResult:
    """Trace every A→B difference to the change (stack name or config key) that caused it."""
    keys = differing_keys(a, b)
    renders = _Renders(program, progress, f"{a.stack} → {b.stack}")
    renders.seed(a, flat_a)
    renders.seed(b, flat_b)
    steps: list[Step] = []
    name_checks: list[tuple[Flat, Flat]] = []  # (before, after) where only the stack name changed
    if a.stack == b.stack:
        steps, _ = _key_chain(a, flat_a, keys, b, renders)
    else:
        # The name with A's config …
        a_as_b = a.take(STACK_NAME, b)
        forward = renders.get(a_as_b, f"{a.stack}'s config under the name {b.stack}")
        if forward is not None:
            name_checks.append((flat_a, forward))
        # … and with B's config (or as much of it as renders under A's name).
        b_as_a = b.take(STACK_NAME, a)
        late: tuple[str | None, Settings, Flat, Flat] | None = None
        reverse = renders.get(b_as_a, f"{b.stack}'s config under the name {a.stack}")
        if reverse is not None:
            late = (None, b_as_a, reverse, flat_b)
        else:
            for key in _held_keys(keys, renders.error(b_as_a)):
                under_a = b_as_a.take(key, a)
                fa = renders.get(under_a, f"{b.stack}'s config but {key} under the name {a.stack}")
                if fa is None:
                    continue
                fb = renders.get(under_a.take(STACK_NAME, b), f"{b.stack}'s config but {key}")
                if fb is not None:
                    late = (key, under_a, fa, fb)
                    break
        if late is not None:
            name_checks.append((late[2], late[3]))
        held = late[0] if late is not None else None
        ordered = [k for k in keys if k != held] + ([held] if held is not None else [])
        if forward is not None:
            # Name first, then every key under B's name (the held key last, so the late check's
            # render is a step of the chain).
            chain, _ = _key_chain(a_as_b, forward, ordered, b, renders)
            steps = [([STACK_NAME], flat_a, forward), *chain]
        elif late is not None:
            # Keys under A's name up to the late check, then the name, then the held key.
            _, under_a, fa, fb = late
            chain, _ = _key_chain(a, flat_a, [k for k in ordered if k != held], under_a, renders)
            steps = [*chain, ([STACK_NAME], fa, fb)]
            if held is not None:
                steps.append(([held], fb, flat_b))
        else:
            # The name never changes alone: keys under A's name as far as they go, then the rest
            # together with the name, whose effect cannot be told from theirs.
            chain, reached = _key_chain(a, flat_a, keys, b, renders)
            done = {k for group, _, _ in chain for k in group}
            rest = [k for k in keys if k not in done]
            steps = [*chain, ([*rest, STACK_NAME], reached, flat_b)]

    resources: dict[str, tuple[str, list[str]]] = {}
    leaves: dict[tuple[str, str], tuple[str, list[str]]] = {}
    step_changes = [(group, *_changed(x, y)) for group, x, y in steps]
    named_res: set[str] = set()
    named_leaves: set[tuple[str, str]] = set()
    for x, y in name_checks:
        changed_res, changed_leaves, naming_leaves = _changed(x, y)
        named_res |= changed_res
        named_leaves |= changed_leaves - naming_leaves
    for res in set(flat_a.types) ^ set(flat_b.types):
        if res in named_res:
            resources[res] = (UNEXPECTED, [BY_NAME])
            continue
        moved = [group for group, changed_res, _, _ in step_changes if res in changed_res]
        resources[res] = _classify(moved, naming_ok=False)
    _, changed_leaves, naming = _changed(flat_a, flat_b)
    for leaf in changed_leaves:
        if leaf in naming:
            leaves[leaf] = (EXPECTED, [STACK_NAME])
            continue
        if leaf in named_leaves:
            leaves[leaf] = (UNEXPECTED, [BY_NAME])
            continue
        moved = []
        for group, _, step_leaves, step_naming in step_changes:
            if leaf in step_leaves:
                moved.append(group if leaf not in step_naming else [STACK_NAME + "*"])
        cls, because = _classify(moved, naming_ok=True)
        va, vb = _value(flat_a, leaf), _value(flat_b, leaf)
        where = f"{flat_b.names.get(leaf[0], '')} {leaf[1]}"
        if cls == EXPECTED:
            because = sorted({_precise_key(k, a, b, (va, vb), where) for k in because})
        leaves[leaf] = (cls, because)
    return PairResult(
        a=a.stack, b=b.stack, keys=tuple(keys), renders=renders.count, resources=resources, leaves=leaves
    )


BY_NAME = "changes with the stack name alone; no config key explains it"
NOT_ISOLATED = (
    "changes together with the stack name, which cannot be changed alone (neither stack's config "
    "renders under the other's name): the stack-name effect cannot be isolated"
)


def _classify(moved: list[list[str]], *, naming_ok: bool) -> tuple[str, list[str]]:
    """Expected when config keys moved it; unexpected when the stack name did (beyond naming)."""
    because: set[str] = set()
    for group in moved:
        keys = [k for k in group if k != STACK_NAME]
        if group == [STACK_NAME + "*"] and naming_ok:
            because.add(STACK_NAME)
        elif STACK_NAME in group and keys:
            return UNEXPECTED, [NOT_ISOLATED]
        elif keys:
            because.update(keys)
        else:
            return UNEXPECTED, [BY_NAME]
    if not because:
        return UNEXPECTED, ["no config key explains it"]
    return EXPECTED, sorted(because)


# --- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParityReport:
    stacks: tuple[str, ...]
    pairs: tuple[PairResult, ...]
    differences: tuple[Difference, ...]
    resource_counts: dict[str, int]

    @property
    def unexpected(self) -> list[Difference]:
        return [d for d in self.differences if d.classification == UNEXPECTED]

    @property
    def clean(self) -> bool:
        return not self.unexpected


def _merge(stacks: Sequence[str], flats: Mapping[str, Flat], pairs: Sequence[PairResult]) -> list[Difference]:
    rows: dict[tuple[str, str | None], Difference] = {}

    def row(res: str, prop: str | None) -> Difference:
        if (res, prop) not in rows:
            flat = next(f for f in flats.values() if res in f.types)
            values = {
                s: (res in flats[s].types) if prop is None else _value(flats[s], (res, prop)) for s in stacks
            }
            rows[(res, prop)] = Difference(
                resource=flat.names[res], type=flat.types[res], path=prop, values=values
            )
        return rows[(res, prop)]

    def note(diff: Difference, cls: str, because: Iterable[str]) -> None:
        if cls == UNEXPECTED and diff.classification != UNEXPECTED:
            diff.classification, diff.because = UNEXPECTED, []
        if cls == diff.classification:
            diff.because = sorted(set(diff.because) | set(because))

    for pair in pairs:
        for res, (cls, because) in pair.resources.items():
            note(row(res, None), cls, because)
        for (res, prop), (cls, because) in pair.leaves.items():
            note(row(res, prop), cls, because)
    return sorted(
        rows.values(),
        key=lambda d: (d.classification != UNEXPECTED, d.path is not None, d.resource, d.path or ""),
    )


def compare_stacks(
    root: Path, stacks: Sequence[str], *, program: Program | None = None, progress: ProgressFn | None = None
) -> ParityReport:
    from infra.config import ConfigError, parse_stack_file, read_stack_file

    if len(stacks) < 2:
        raise ConfigurationError(f"parity needs at least two stacks, got {len(stacks)}")
    settings: dict[str, Settings] = {}
    flats: dict[str, Flat] = {}
    for stack in stacks:
        try:
            sf = read_stack_file(root, stack)
            parse_stack_file(sf)
        except ConfigError as exc:
            raise ConfigurationError(f"{stack}: {exc}") from None
        settings[stack] = Settings.of(sf)
    for stack in stacks:
        if progress:
            progress(f"rendering {stack} …")
        try:
            flats[stack] = flatten(_simulate(settings[stack], program), stack)
        except ConfigError as exc:
            raise ConfigurationError(f"{stack}: {exc}") from None
        except Exception as exc:
            raise StagelineError(
                f"{stack}: the program failed while rendering: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            ) from exc
    pairs = []
    for a, b in itertools.pairwise(stacks):
        try:
            pairs.append(
                compare_pair(settings[a], settings[b], flats[a], flats[b], program=program, progress=progress)
            )
        except Exception as exc:  # a bug the program shows only on a mix of the two configs
            raise StagelineError(
                f"{a} → {b}: the program failed while rendering a mix of the two stacks' config: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            ) from exc
    differences = tuple(_merge(stacks, flats, pairs))
    return ParityReport(
        stacks=tuple(stacks),
        pairs=tuple(pairs),
        differences=differences,
        resource_counts={s: len(flats[s].types) for s in stacks},
    )


# --- output ---------------------------------------------------------------------------------------


def _show(value: Any, width: int = 48) -> str:
    if value is _ABSENT or value == _ABSENT:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    value = _ints(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _ints(value: Any) -> Any:
    """Whole floats as ints: the engine hands numbers over as floats (512.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    return value


def summary_line(report: ParityReport) -> str:
    expected = [d for d in report.differences if d.classification == EXPECTED and not d.naming_only]
    naming = [d for d in report.differences if d.naming_only]
    counts = sorted(set(report.resource_counts.values()))
    size = (
        f"{counts[0]} resources each"
        if len(counts) == 1
        else ("resources: " + ", ".join(f"{s} {n}" for s, n in report.resource_counts.items()))
    )
    return (
        f"{len(report.stacks)} stacks ({size}): {len(report.unexpected)} unexpected differences, "
        f"{len(expected)} expected from config, {len(naming)} values that differ only by the stack name."
    )


def render_markdown(report: ParityReport) -> str:
    stacks = report.stacks
    columns = " | ".join(stacks)
    rule = "| --- | --- | " + " | ".join("---" for _ in stacks) + " | --- |"
    lines = [f"## Parity: {' → '.join(stacks)}", "", summary_line(report), ""]

    def table(rows: list[Difference], last: str) -> list[str]:
        second = "property" if any(d.path is not None for d in rows) else "type"
        out = [f"| resource | {second} | {columns} | {last} |", rule]
        for d in rows:
            prop = f"`{cell(d.type)}`" if d.path is None else f"`{cell(d.path)}`"
            if d.path is None:  # the resource itself: present or not
                cells = " | ".join("✓" if d.values[s] else "—" for s in stacks)
            else:
                cells = " | ".join(cell(_show(d.values[s])) for s in stacks)
            out.append(f"| `{cell(d.resource)}` | {prop} | {cells} | {cell(', '.join(d.because))} |")
        return out

    unexpected = report.unexpected
    lines.append("### Unexpected differences")
    lines.append("")
    lines += table(unexpected, "why it is unexpected") if unexpected else ["None."]
    missing = [d for d in report.differences if d.path is None and d.classification == EXPECTED]
    lines += ["", "### Resources not in every stack", ""]
    lines += table(missing, "config key") if missing else ["None: every stack declares the same resources."]
    expected = [
        d
        for d in report.differences
        if d.path is not None and d.classification == EXPECTED and not d.naming_only
    ]
    lines += ["", "### Expected differences (from config)", ""]
    lines += table(expected, "config key") if expected else ["None."]
    naming = sum(1 for d in report.differences if d.naming_only)
    if naming:
        lines += [
            "",
            f"{naming} further values differ only by the stack name inside a name or ARN "
            "(`--json` lists them).",
        ]
    return "\n".join(lines)


def to_json(report: ParityReport) -> dict[str, Any]:
    return {
        "stacks": list(report.stacks),
        "clean": report.clean,
        "resourceCounts": report.resource_counts,
        "pairs": [
            {"from": p.a, "to": p.b, "configKeys": list(p.keys), "renders": p.renders} for p in report.pairs
        ],
        "differences": [d.to_dict() for d in report.differences],
        "summary": summary_line(report),
    }
