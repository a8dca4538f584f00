"""Typed field readers: each reads one value, checks it, and names the key on one line when it is wrong.

A reader returns the caller's default when the key is absent; callers pass the dataclass's own
default (see `model`), so no second default exists anywhere.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, overload

from infra.config.model import (
    ACCOUNT_ID_RE,
    NAMESPACE,
    SECRET_REFERENCE_WORDS,
    SECRET_WORD_PAIRS,
    SECRET_WORDS,
    TAG_KEY_MAX,
    TAG_PUNCTUATION,
    TAG_VALUE_MAX,
    ConfigError,
)


def _key(path: str) -> str:
    return f"{NAMESPACE}:{path}"


def _suggest(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close and len(word) >= 3:
        # An abbreviation ("repo" for "repository") is too short for difflib's ratio.
        close = [c for c in options if c.lower().startswith(word.lower())][:1]
    return f' (did you mean "{close[0]}"?)' if close else ""


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


class _Obj:
    """Reads one config object, remembering which fields were used so leftovers are rejected."""

    def __init__(self, path: str, value: Any, fields: Iterable[str]) -> None:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_key(path)} must be an object, got {_fmt(value)}")
        self.path = path
        self.value = dict(value)
        allowed = list(fields)
        for name in self.value:
            if name not in allowed:
                raise ConfigError(f"{_key(path)}.{name} is not a known key{_suggest(str(name), allowed)}")

    def sub(self, name: str) -> str:
        return f"{self.path}.{name}"

    def has(self, name: str) -> bool:
        return self.value.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.value.get(name)

    @overload
    def string(
        self,
        name: str,
        *,
        required: Literal[True],
        pattern: re.Pattern[str] | None = None,
        expect: str = "",
    ) -> str: ...

    @overload
    def string(
        self, name: str, *, default: str, pattern: re.Pattern[str] | None = None, expect: str = ""
    ) -> str: ...

    @overload
    def string(
        self,
        name: str,
        *,
        required: bool = False,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        expect: str = "",
    ) -> str | None: ...

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        expect: str = "",
    ) -> str | None:
        value = self.value.get(name)
        if value is None:
            if required:
                raise ConfigError(f"{_key(self.sub(name))} is required")
            return default
        return _string(self.sub(name), value, pattern, expect)

    @overload
    def integer(self, name: str, default: int, lo: int, hi: int) -> int: ...

    @overload
    def integer(self, name: str, default: None, lo: int, hi: int) -> int | None: ...

    def integer(self, name: str, default: int | None, lo: int, hi: int) -> int | None:
        value = self.value.get(name)
        if value is None:
            return default
        return _integer(self.sub(name), value, lo, hi)

    @overload
    def number(
        self, name: str, default: float, lo: float, hi: float, *, open_range: bool = False
    ) -> float: ...

    @overload
    def number(
        self, name: str, default: None, lo: float, hi: float, *, open_range: bool = False
    ) -> float | None: ...

    def number(
        self, name: str, default: float | None, lo: float, hi: float, *, open_range: bool = False
    ) -> float | None:
        value = self.value.get(name)
        if value is None:
            return default
        return _number(self.sub(name), value, lo, hi, open_range=open_range)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.value.get(name)
        if value is None:
            return default
        return _boolean(self.sub(name), value)

    def strings(self, name: str, pattern: re.Pattern[str] | None = None, expect: str = "") -> tuple[str, ...]:
        value = self.value.get(name)
        if value is None:
            return ()
        return _strings(self.sub(name), value, pattern, expect)


def _string(path: str, value: Any, pattern: re.Pattern[str] | None = None, expect: str = "") -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{_key(path)} must be a non-empty string, got {_fmt(value)}")
    if pattern is not None and not pattern.match(value):
        raise ConfigError(f"{_key(path)} must look like {expect}, got {_fmt(value)}")
    return value


def _integer(path: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{_key(path)} must be a whole number, got {_fmt(value)}")
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)
    if not isinstance(value, int):
        raise ConfigError(f"{_key(path)} must be a whole number, got {_fmt(value)}")
    if not lo <= value <= hi:
        raise ConfigError(f"{_key(path)} must be between {lo} and {hi}, got {value}")
    return value


def _number(path: str, value: Any, lo: float, hi: float, *, open_range: bool = False) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{_key(path)} must be a number, got {_fmt(value)}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{_key(path)} must be a number, got {_fmt(value)}") from None
    if not isinstance(value, int | float):
        raise ConfigError(f"{_key(path)} must be a number, got {_fmt(value)}")
    inside = lo < value < hi if open_range else lo <= value <= hi
    if not inside:
        bounds = f"strictly between {lo} and {hi}" if open_range else f"between {lo} and {hi}"
        raise ConfigError(f"{_key(path)} must be {bounds}, got {value}")
    return float(value)


def _boolean(path: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{_key(path)} must be true or false, got {_fmt(value)}")


def _strings(
    path: str, value: Any, pattern: re.Pattern[str] | None = None, expect: str = ""
) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{_key(path)} must be a list of strings, got {_fmt(value)}")
    return tuple(_string(f"{path}[{i}]", item, pattern, expect) for i, item in enumerate(value))


def _string_map(path: str, value: Any, key_pattern: re.Pattern[str], key_expect: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_key(path)} must be an object of strings, got {_fmt(value)}")
    out: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not key_pattern.match(name):
            raise ConfigError(f"{_key(path)} key {_fmt(name)} must look like {key_expect}")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ConfigError(f"{_key(path)}.{name} must be a string, got {_fmt(item)}")
        out[name] = str(item)
    return out


def _account_ids(path: str, value: Any) -> tuple[str, ...]:
    """A list of 12-digit AWS account IDs; YAML numbers are accepted when they keep all 12 digits."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{_key(path)} must be a list of 12-digit AWS account IDs, got {_fmt(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(text, str) or not ACCOUNT_ID_RE.match(text):
            raise ConfigError(
                f'{_key(f"{path}[{i}]")} must be a 12-digit AWS account ID in quotes (e.g. "012345678901"), '
                f"got {_fmt(item)}"
            )
        if text in out:
            raise ConfigError(f"{_key(path)} lists account {text} twice")
        out.append(text)
    return tuple(out)


def name_words(name: str) -> list[str]:
    """The words of a name, lower-case: `DB_PASSWORD` -> db, password; `secretKey` -> secret, key."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def secret_word(name: str) -> str | None:
    """The word(s) by which a name says its value is a secret (`password`, `api key`), if it does.

    A name ending in a reference word (`…_SECRET_ARN`, `…_TOKEN_TTL`) names where a secret is, or a
    setting about one, not the secret itself.
    """
    words = name_words(name)
    if "webhook" in words:  # a webhook's URL is its secret
        return "webhook"
    if not words or words[-1] in SECRET_REFERENCE_WORDS:
        return None
    for word in words:
        if word in SECRET_WORDS:
            return word
    for pair in itertools.pairwise(words):
        if pair in SECRET_WORD_PAIRS:
            return " ".join(pair)
    return None


def tag_problem(key: Any, value: Any) -> str | None:
    """What AWS would refuse in a tag (key and value as the stack file gives them), if anything."""
    if not isinstance(key, str) or not key:
        return f"tag key {_fmt(key)} must be a non-empty string"
    if len(key) > TAG_KEY_MAX:
        return f"tag key {_fmt(key[:20])}… has {len(key)} characters; AWS allows {TAG_KEY_MAX}"
    if key.lower().startswith("aws:"):
        return f"tag key {_fmt(key)} starts with aws:, which AWS reserves for its own tags"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"tag {_fmt(key)} must have a string value, got {_fmt(value)}"
    text = str(value)
    if len(text) > TAG_VALUE_MAX:
        return f"tag {_fmt(key)} has a value of {len(text)} characters; AWS allows {TAG_VALUE_MAX}"
    for what, part in (("key", key), ("value", text)):
        bad = next((c for c in part if not _tag_character(c)), None)
        if bad is not None:
            return (
                f"tag {what} {_fmt(part if what == 'key' else key)} holds {_fmt(bad)}; AWS allows letters, "
                "digits, spaces and _ . : / = + - @"
            )
    return None


def _tag_character(c: str) -> bool:
    import unicodedata

    return c in TAG_PUNCTUATION or unicodedata.category(c)[0] in "LN" or unicodedata.category(c) == "Zs"
