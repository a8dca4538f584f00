"""A property of `check` over mutated stack files (issue 11): whatever the file, the answer is exit 0,
2 or 3, never a traceback, in bounded time, and a clean check never coexists with a wildcard scope
or a plain-text secret.

The mutations start from the shipped stack files and change what a careless or hostile user could:
value types and sizes, keys (unknown, numeric, without namespace, set twice), encodings (Latin-1,
UTF-16, a BOM, control characters, truncation), YAML features (anchors and aliases up to a bomb, tags,
deep nesting, several documents) and, on purpose, hostile values (grants and state keys that reach
beyond the stack, secrets in plain text). Derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.cli import cli

ROOT = Path(__file__).resolve().parents[3]
STACKS = ("dev", "staging", "prod")

# Resources that reach beyond the stack however they are spelt: a check must never be clean with one.
WIDE_RESOURCES = (
    "*",
    "arn:*",
    "arn:aws:s3:::*",
    "arn:aws:kms:*",
    "arn:aws:kms:eu-west-1:111111111111:key/*",
    "arn:aws:secretsmanager:eu-west-1:111111111111:secret:*",
    "arn:aws:lambda:*:*:function:*",
    "arn:aws:lambda:eu-west-1:111111111111:function:stageline-*",
    "arn:aws:dynamodb:*:111111111111:table/orders",
)
WIDE_ACTIONS = ("s3:GetObject", "s3:Put*", "kms:Decrypt", "lambda:UpdateFunctionCode", "*", "organizations:*")
SECRET_KEYS = ("github:token", "aws:secretKey", "aws:accessKey", "stageline:slackWebhookUrl")
SECRET_ENV = ("DB_PASSWORD", "STRIPE_API_KEY", "AUTH_TOKEN", "CLIENT_SECRET")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet="ab*?:/-", max_size=8),
    st.sampled_from(["", " ", "yes", "2024-01-01", "0x1f", "1e400", "~", "sha256:" + "0" * 64]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*path, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _paths(child, (*path, i))
    return found


def _set(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return document


@st.composite
def value_mutation(draw: st.DrawFn, document: dict[str, Any]) -> tuple[bytes, bool]:
    """The document with one value replaced, a key dropped or a key added; dumped as YAML."""
    paths = _paths(document["config"], ("config",))
    path = draw(st.sampled_from(paths))
    kind = draw(st.sampled_from(["replace", "drop", "add"]))
    if kind == "replace":
        document = _set(document, path, draw(values))
    elif kind == "drop" and len(path) > 1:
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
    else:
        node = document
        for key in path:
            node = node[key]
        if isinstance(node, dict):
            key = draw(
                st.one_of(st.text(max_size=20), st.integers(), st.sampled_from(["stageline:x", "memory"]))
            )
            node[key] = draw(values)
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode("utf-8"), False


@st.composite
def hostile_mutation(draw: st.DrawFn, document: dict[str, Any]) -> tuple[bytes, bool]:
    """A value that must never pass: a wide grant, a wide state key, a secret in plain text."""
    config = document["config"]
    kind = draw(st.sampled_from(["grant", "state-key", "secret", "environment"]))
    if kind == "grant":
        service = draw(st.sampled_from(config["stageline:services"]))
        service["grants"] = [
            {
                "actions": [draw(st.sampled_from(WIDE_ACTIONS))],
                "resources": [draw(st.sampled_from(WIDE_RESOURCES))],
            }
        ]
    elif kind == "state-key":
        config["stageline:state"] = {"kmsKeyArn": draw(st.sampled_from(WIDE_RESOURCES))}
    elif kind == "secret":
        config[draw(st.sampled_from(SECRET_KEYS))] = draw(st.text(min_size=1, max_size=30))
    else:
        service = draw(st.sampled_from(config["stageline:services"]))
        service.setdefault("environment", {})[draw(st.sampled_from(SECRET_ENV))] = "hunter2"
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode("utf-8"), True


@st.composite
def byte_mutation(draw: st.DrawFn, data: bytes) -> tuple[bytes, bool]:
    """Encodings and YAML features, applied to the file's bytes."""
    kind = draw(
        st.sampled_from(
            [
                "latin1",
                "utf16",
                "bom",
                "control",
                "truncate",
                "duplicate",
                "bomb",
                "nest",
                "tag",
                "documents",
                "comments",
                "alias",
                "noise",
            ]
        )
    )
    config_at = data.index(b"config:\n") + len(b"config:\n")
    head, body = data[:config_at], data[config_at:]
    if kind == "latin1":
        return data.replace(b"# ", b"# caf\xe9 ", 1), False
    if kind == "utf16":
        return data.decode("utf-8").encode("utf-16"), False
    if kind == "bom":
        return b"\xef\xbb\xbf" + data, False
    if kind == "control":
        at = draw(st.integers(0, len(data)))
        return data[:at] + bytes([draw(st.integers(0, 31))]) + data[at:], False
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data)))], False
    if kind == "duplicate":
        lines = [line for line in body.split(b"\n") if line.startswith(b"  ") and b":" in line]
        return data + draw(st.sampled_from(lines)) + b"\n", False
    if kind == "bomb":
        width, depth = draw(st.integers(2, 12)), draw(st.integers(1, 9))
        lines = [b"  bomb:l0: &l0 [" + b", ".join([b"x"] * width) + b"]"]
        for level in range(1, depth + 1):
            refs = b", ".join([f"*l{level - 1}".encode()] * width)
            lines.append(f"  bomb:l{level}: &l{level} [".encode() + refs + b"]")
        return head + b"\n".join(lines) + b"\n" + body, False
    if kind == "nest":
        depth = draw(st.integers(1, 20_000))
        return head + b"  stageline:tags: " + b"[" * depth + b"]" * depth + b"\n" + body, False
    if kind == "tag":
        tag = draw(st.sampled_from([b"!!python/object:os.system", b"!custom", b"!!binary", b"!!set"]))
        return head + b"  other:tagged: " + tag + b" x\n" + body, False
    if kind == "documents":
        return data + b"---\n" + data, False
    if kind == "comments":
        return data + b"#" * draw(st.integers(0, 200_000)) + b"\n", False
    if kind == "alias":
        return head + b"  other:a: &a {k: v}\n  other:b: *a\n  other:c: *missing\n" * draw(
            st.integers(0, 1)
        ) + body, False
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(max_size=20)) + data[at:], False


@st.composite
def stack_files(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    stack = draw(st.sampled_from(STACKS))
    data = (ROOT / f"Pulumi.{stack}.yaml").read_bytes()
    document = yaml.safe_load(data)
    kind = draw(st.sampled_from(["value", "hostile", "bytes"]))
    if kind == "value":
        mutated, hostile = draw(value_mutation(document))
    elif kind == "hostile":
        mutated, hostile = draw(hostile_mutation(document))
    else:
        mutated, hostile = draw(byte_mutation(data))
    return stack, mutated, hostile


def _project(tmp: Path) -> Path:
    root = tmp / "project"
    if not root.exists():
        root.mkdir()
        for name in ("Pulumi.yaml", *(f"Pulumi.{s}.yaml" for s in STACKS)):
            shutil.copy(ROOT / name, root / name)
    return root


@settings(
    max_examples=60,
    deadline=timedelta(seconds=10),
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(case=stack_files())
def test_check_answers_every_stack_file_with_0_2_or_3_and_one_line(
    tmp_path: Path, case: tuple[str, bytes, bool]
) -> None:
    stack, data, hostile = case
    root = _project(tmp_path)
    original = (ROOT / f"Pulumi.{stack}.yaml").read_bytes()
    (root / f"Pulumi.{stack}.yaml").write_bytes(data)
    try:
        result = CliRunner().invoke(cli, ["check", stack, "--root", str(root)])
    finally:
        (root / f"Pulumi.{stack}.yaml").write_bytes(original)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2, 3), (result.exit_code, result.stderr[-500:])
    assert "Traceback" not in result.stdout + result.stderr
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and result.stderr.strip() == errors[0], result.stderr
    if hostile:
        assert result.exit_code != 0, "a wide scope or a plain-text secret passed check"
    if result.exit_code == 0:
        text = data.decode("utf-8", "replace")
        assert not any(f'"{r}"' in text or f" {r}\n" in text for r in WIDE_RESOURCES if r != "*")
