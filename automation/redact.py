"""Keep secrets out of everything the driver prints: error messages, reports, JSON.

Two sources of secrets: values the engine knows are secret (secret config, secret outputs), which
the seam passes in, and anything that *looks* like a credential (tokens, keys, passwords in URLs),
which is masked whether or not anyone declared it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from infra.config.model import MASK

# Shapes of credentials that must never reach a log, whatever their source.
_TOKEN_PATTERNS = (
    re.compile(r"\bpul-[0-9a-f]{40}\b"),  # Pulumi access token
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key id
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),  # Slack tokens
    re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"),  # Slack webhook URL
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"),  # JWT
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
)
# `name=value` / `name: value` where the name says it is a credential.
_ASSIGNMENT = re.compile(
    r"(?i)\b([A-Za-z0-9_]*(?:secret|token|password|passphrase|api[_-]?key|access[_-]?key)[A-Za-z0-9_]*)"
    r"(\s*[=:]\s*)([\"']?)([^\s\"',;]{4,})\3"
)
# Credentials embedded in URLs: scheme://user:password@host
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)")
# Values shorter than this are not masked as literals: masking "a" or "on" would shred messages.
_MIN_LITERAL = 4


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret value and every credential-shaped string replaced by [secret]."""
    literals = sorted(
        {s for s in secrets if isinstance(s, str) and len(s) >= _MIN_LITERAL}, key=len, reverse=True
    )
    for literal in literals:
        text = text.replace(literal, MASK)
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(MASK, text)
    text = _ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}{m.group(3)}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value with secrets masked in every string it contains."""
    known = tuple(secrets)
    if isinstance(value, str):
        return redact(value, known)
    if isinstance(value, Mapping):
        return {str(k): redact_value(v, known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, known) for v in value]
    return value
