"""Writing a release into `Pulumi.<stack>.yaml`: only the `stageline:release` block changes.

The block is replaced in the text, so every other line (comments included, and comments after the
block's last value) stays as it was, and the
result is read back and compared before it is written: the file either holds the new release or is
untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automation.errors import StagelineError
from infra.config import StackFile, read_stack_file

RELEASE_LINE_RE = re.compile(r"^(?P<indent>[ ]*)stageline:release:[ ]*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def replace_release(text: str, release: Mapping[str, Any]) -> str:
    """`text` with the `stageline:release:` block (block style, as the shipped stack files hold it)
    replaced by `release`."""
    import yaml

    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if RELEASE_LINE_RE.match(line.rstrip("\n"))), None)
    if start is None:
        raise StagelineError("no `stageline:release:` block to replace")
    base = _indent(lines[start])
    end = start + 1
    while end < len(lines):
        line = lines[end]
        if line.strip() and _indent(line) <= base:
            break
        end += 1
    # Blank lines and comments after the block's last value stay (they describe the block).
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    body = yaml.safe_dump(dict(release), sort_keys=False, default_flow_style=False, width=200)
    pad = " " * (base + 2)
    block = "".join(pad + line + "\n" for line in body.splitlines())
    return "".join(lines[: start + 1]) + block + "".join(lines[end:])


def write_release(root: Path, stack: str, release: Mapping[str, Any]) -> Path:
    """Put `release` into Pulumi.<stack>.yaml; raise StagelineError, leaving the file alone, if it cannot."""
    import yaml

    sf: StackFile = read_stack_file(root, stack)
    new = replace_release(sf.path.read_text(encoding="utf-8"), release)
    try:
        document = yaml.safe_load(new) or {}
    except yaml.YAMLError:
        raise StagelineError(f"{sf.path.name}: the new release would not read back as YAML") from None
    if (document.get("config") or {}).get("stageline:release") != dict(release):
        raise StagelineError(f"{sf.path.name}: the new release does not read back as written")
    probe = sf.path.with_name(f".{sf.path.name}.build")
    try:
        probe.write_text(new, encoding="utf-8")
        probe.replace(sf.path)  # atomic: the file holds the old release or the new one
    finally:
        probe.unlink(missing_ok=True)
    return sf.path
