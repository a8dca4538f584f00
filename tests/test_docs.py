"""The README and docs/ are part of the product: they must match the code they describe.

- docs/cli.md is exactly what scripts/cli-reference.py generates from the click declarations, and
  names every argument and option of every command (so a stale page fails twice: once as a diff,
  once naming what is missing).
- docs/config.md documents every config key the parser accepts.
- The README and docs/*.md name only files that exist in the repository, link only to files (and
  headings) that exist, and never cite a file outside the repository.
- The README stays short, with its quick start (set-up and test commands) at the top.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CLI_MD = DOCS / "cli.md"
CONFIG_MD = DOCS / "config.md"
SCRIPT = ROOT / "scripts" / "cli-reference.py"


def _doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- Markdown scanning (shared by the tests below) ---------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for every line outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def code_spans(line: str) -> list[str]:
    return [m.group(2).strip() for m in _CODE_SPAN.finditer(line)]


def links(line: str) -> list[str]:
    return _LINK.findall(_CODE_SPAN.sub("", line))


def headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of every heading outside fenced code blocks."""
    out = []
    for _, line in prose_lines(text):
        m = _HEADING.match(line)
        if m:
            out.append((len(m.group(1)), m.group(2)))
    return out


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen."""
    text = title.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, title in headings(text):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


# --- 1. the CLI reference ----------------------------------------------------------------------------


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", SCRIPT)
    assert spec and spec.loader, f"cannot load {_rel(SCRIPT)}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _walk(command: click.Command, path: list[str], parent: click.Context | None) -> Iterator[tuple]:
    ctx = click.Context(command, info_name=path[-1], parent=parent, **command.context_settings)
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from _walk(command.commands[name], [*path, name], ctx)


def _cli_sections(text: str) -> dict[str, str]:
    """docs/cli.md split at its `## ` headings: heading's code text (the command line) → section."""
    sections: dict[str, str] = {}
    current: str | None = None
    for _, line in prose_lines(text):
        m = _HEADING.match(line)
        if m and len(m.group(1)) == 2:
            spans = code_spans(m.group(2))
            current = spans[0] if spans else m.group(2)
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def test_the_cli_reference_is_generated_from_the_current_commands() -> None:
    from automation.cli import cli

    expected = _script().render(cli)
    assert CLI_MD.exists(), "docs/cli.md is missing: run `python scripts/cli-reference.py`"
    assert CLI_MD.read_text(encoding="utf-8") == expected, (
        "docs/cli.md is stale: run `python scripts/cli-reference.py`"
    )


def test_the_cli_reference_names_every_command_argument_and_option() -> None:
    """Walks click's own params (`get_params`, so the help option too) of the group and of every
    command, hidden ones included: each command needs its `## `python -m automation …`` section,
    and each argument (its metavar) and option spelling (`--yes`, `-y`) a code span in it."""
    from automation.cli import cli

    sections = _cli_sections(CLI_MD.read_text(encoding="utf-8"))
    missing = []
    for path, command, ctx in _walk(cli, ["python -m automation"], None):
        name = " ".join(path)
        if name not in sections:
            missing.append(f"command `{name}`: no section")
            continue
        documented = set(code_spans(sections[name].replace("\\|", "|")))
        for param in command.get_params(ctx):
            if isinstance(param, click.Argument):
                spellings = [param.human_readable_name]
            else:
                spellings = [*param.opts, *param.secondary_opts]
            missing += [f"`{name}`: {s}" for s in spellings if s not in documented]
    assert not missing, "docs/cli.md does not document (run `python scripts/cli-reference.py`):\n" + (
        "\n".join(missing)
    )


def test_the_cli_reference_script_checks_staleness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _script()
    target = tmp_path / "docs" / "cli.md"
    monkeypatch.setattr(script, "ROOT", tmp_path)
    monkeypatch.setattr(script, "TARGET", target)
    assert script.main(["--check"]) == 1  # missing
    assert script.main([]) == 0
    assert script.main(["--check"]) == 0
    target.write_text(target.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    assert script.main(["--check"]) == 1


# --- 2. config keys ----------------------------------------------------------------------------------


def _config_sources() -> list[Path]:
    """The config package's modules: `schema` holds the keys, but any module may read some."""
    return sorted((ROOT / "infra" / "config").glob("*.py"))


def _str_template(node: ast.expr) -> str | None:
    """A str literal, or an f-string with each placeholder rendered as `<name>`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append(f"<{ast.unparse(value.value)}>")
        return "".join(parts)
    return None


def _str_tuple(node: ast.expr, constants: dict[str, ast.expr]) -> tuple[str, ...] | None:
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    if isinstance(node, ast.Tuple | ast.List) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return tuple(e.value for e in node.elts)  # type: ignore[attr-defined]
    return None


def _path_of(node: ast.expr, strings: dict[str, str], objs: dict[str, str]) -> str | None:
    """The config path a `_Obj`'s first argument names, or None when this test cannot tell."""
    template = _str_template(node)
    if template is None and isinstance(node, ast.Name):
        template = strings.get(node.id)
    if (
        template is None
        and isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "sub"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in objs
        and len(node.args) == 1
    ):
        inner = _str_template(node.args[0])
        if inner is not None:
            template = f"{objs[node.func.value.id]}.{inner}"
    return template


def _own_scope(scope: ast.AST) -> list[ast.AST]:
    """The nodes of one function (or module) body, not those of functions nested in it, in order."""
    out: list[ast.AST] = []
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        out.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))
    located = [n for n in out if hasattr(n, "lineno")]
    return sorted(located, key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))


def _helpers(tree: ast.Module) -> set[str]:
    """Functions `def f(name, allowed): return _Obj(name, <value>, allowed)`."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef) or len(node.args.args) < 2:
            continue
        a, b = node.args.args[0].arg, node.args.args[1].arg
        for ret in _own_scope(node):
            call = ret.value if isinstance(ret, ast.Return) else None
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Name)
                and call.func.id == "_Obj"
                and len(call.args) == 3
                and isinstance(call.args[0], ast.Name)
                and call.args[0].id == a
                and isinstance(call.args[2], ast.Name)
                and call.args[2].id == b
            ):
                found.add(node.name)
    return found


def accepted_keys() -> tuple[set[str], set[str], list[str]]:
    """(top-level keys, dotted key paths, reads not understood) of the config parser.

    Top-level keys: the module-level `TOP_LEVEL_KEYS` tuple. Key paths: for every
    `_Obj(path, value, ("k1", "k2", …))`, `path.k` for each key. `path` is a str literal or an
    f-string (placeholders shown as `<name>`, e.g. `services[<index>].grants[<i>]`); also understood,
    because the parser uses them: a local variable assigned such a string, `o.sub("…")` of a local
    `o = _Obj(…)`, and a helper `def obj(name, allowed): return _Obj(name, …, allowed)` called with
    a literal. The key tuple may be a module-level constant. A read that is none of these is
    returned as not understood, and fails the test: a key the test cannot see would go unchecked.
    """
    top: set[str] = set()
    paths: set[str] = set()
    unresolved: list[str] = []
    for source in _config_sources():
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
        constants: dict[str, ast.expr] = {}
        for stmt in tree.body:
            if (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                constants[stmt.targets[0].id] = stmt.value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
                constants[stmt.target.id] = stmt.value
        if "TOP_LEVEL_KEYS" in constants:
            keys = _str_tuple(constants["TOP_LEVEL_KEYS"], constants)
            if keys is None:
                unresolved.append(f"{_rel(source)}: TOP_LEVEL_KEYS is not a tuple of str literals")
            else:
                top.update(keys)
        helpers = _helpers(tree)
        scopes: list[ast.AST] = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))]
        for scope in scopes:
            if isinstance(scope, ast.FunctionDef) and scope.name in helpers:
                continue  # the helper's own `_Obj(name, …, allowed)`
            strings: dict[str, str] = {}  # local name → its string template
            objs: dict[str, str] = {}  # local name → the path of the `_Obj` bound to it

            for node in _own_scope(scope):
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                ):
                    name = node.targets[0].id
                    template = _str_template(node.value)
                    if template is not None:
                        strings[name] = template
                    value = node.value
                    if (
                        isinstance(value, ast.Call)
                        and isinstance(value.func, ast.Name)
                        and value.func.id in {"_Obj", *helpers}
                        and value.args
                    ):
                        bound = _path_of(value.args[0], strings, objs)
                        if bound is not None:
                            objs[name] = bound
                    continue
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                    continue
                if node.func.id == "_Obj" and len(node.args) == 3:
                    first, keys_node = node.args[0], node.args[2]
                elif node.func.id in helpers and len(node.args) == 2:
                    first, keys_node = node.args[0], node.args[1]
                elif node.func.id == "_Obj" or node.func.id in helpers:
                    unresolved.append(f"{_rel(source)}:{node.lineno}: {ast.unparse(node)[:100]}")
                    continue
                else:
                    continue
                path = _path_of(first, strings, objs)
                keys = _str_tuple(keys_node, constants)
                if path is None or keys is None:
                    unresolved.append(f"{_rel(source)}:{node.lineno}: {ast.unparse(node)[:100]}")
                    continue
                paths.update(f"{path}.{k}" for k in keys)
    return top, paths, sorted(set(unresolved))


def segments(path: str) -> list[str]:
    """`services[<index>].grants[<i>].actions` → ["services", "grants", "actions"]."""
    return [re.sub(r"\[[^\]]*\]", "", part) for part in path.split(".")]


def config_sections(text: str) -> dict[str, str]:
    """Top-level key → the text of its `## `key`` section (up to the next `##` or `#` heading)."""
    sections: dict[str, str] = {}
    current: str | None = None
    for _, line in prose_lines(text):
        m = _HEADING.match(line)
        if m and len(m.group(1)) <= 2:
            spans = code_spans(m.group(2))
            current = spans[0] if len(m.group(1)) == 2 and spans else None
            if current is not None:
                sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def undocumented_keys(text: str, top: set[str], paths: set[str]) -> list[str]:
    """The accepted keys that `text` (docs/config.md) does not document.

    Matching rule: every top-level key needs a `##` heading holding it in backticks (`## `github``);
    its section runs to the next heading of level 1 or 2. A key path `top.a.b.k` is documented when
    that section has a code span naming the key relative to `top` — `k`, `b.k` or `a.b.k` — with list
    indices left out (`services[<index>].grants[<i>].actions` is matched by `actions` or
    `grants.actions`). A key holding an object is also documented by a sub-key spelled out from the
    top (`environment.reviewers.users` documents `environment` and `environment.reviewers`). So a
    key's own name must appear in the section of the top-level key it belongs to: precise enough
    that deleting its table row fails, loose enough for prose and tables alike.
    """
    sections = config_sections(text)
    missing = [f"`{key}`: no `## `{key}`` section" for key in sorted(top) if key not in sections]
    for path in sorted(paths):
        parts = segments(path)
        section = sections.get(parts[0])
        if section is None:
            if parts[0] not in top:
                missing.append(f"`{path}`: no `## `{parts[0]}`` section")
            continue
        relative = parts[1:]
        spans = {".".join(segments(span)) for span in code_spans(section)}
        full = ".".join(relative)
        named = any(".".join(relative[i:]) in spans for i in range(len(relative)))
        if not named and not any(span.startswith(full + ".") for span in spans):
            missing.append(f"`{path}`: `{relative[-1]}` is not named in the `{parts[0]}` section")
    return missing


def test_the_config_parser_is_understood() -> None:
    top, paths, unresolved = accepted_keys()
    assert _config_sources(), "no infra/config/*.py"
    assert not unresolved, "config reads this test cannot follow (extend accepted_keys):\n" + "\n".join(
        unresolved
    )
    assert len(top) >= 10, f"TOP_LEVEL_KEYS not found, or too short: {sorted(top)}"
    assert len(paths) >= 30, f"too few `_Obj` keys found: {sorted(paths)}"
    assert {segments(p)[0] for p in paths} <= top, "an `_Obj` path outside TOP_LEVEL_KEYS"


def test_every_config_key_is_documented() -> None:
    top, paths, _ = accepted_keys()
    missing = undocumented_keys(CONFIG_MD.read_text(encoding="utf-8"), top, paths)
    assert not missing, "docs/config.md does not document:\n" + "\n".join(missing)


def test_the_key_check_notices_a_key_removed_from_the_doc() -> None:
    top, paths, _ = accepted_keys()
    text = CONFIG_MD.read_text(encoding="utf-8")
    path = sorted(p for p in paths if len(segments(p)) >= 3)[0]  # a nested key, e.g. github.environment.…
    parts = segments(path)
    relative = parts[1:]
    suffixes = {".".join(relative[i:]) for i in range(len(relative))}
    # Drop every table row and line of its section that names the key.
    lines = text.splitlines()
    pruned = [line for line in lines if not ({".".join(segments(s)) for s in code_spans(line)} & suffixes)]
    assert len(pruned) < len(lines)
    missing = undocumented_keys("\n".join(pruned), top, paths)
    assert any(m.startswith(f"`{path}`") for m in missing), missing


# --- 3. files the docs name exist --------------------------------------------------------------------

PATH_LIKE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$")
FILE_SUFFIXES = (".py", ".yaml", ".yml", ".md", ".toml", ".sh")

# Tokens that look like repository paths but name something else, on purpose.
NOT_REPOSITORY_FILES = {
    "drift-ignore.yaml": "the user's optional ignore file at the repository root; none is shipped",
    "Pulumi.old.dev.yaml": "the example of a stray file that is not a stack",
    ".stageline/state": "the driver's default local state backend, created on first use, git-ignored",
    ".stageline/worktrees/": "where rollback --code makes temporary git worktrees, git-ignored",
    ".pulumi/": "the state layout inside the state bucket, not in the repository",
    "releases/": "a key prefix in the frontend bucket",
}


def path_tokens(text: str) -> Iterator[tuple[int, str]]:
    """Code spans outside fenced blocks that look like a repository path: only path characters (so no
    URL, glob, `<placeholder>` such as `Pulumi.<stack>.yaml`, spaces or `…`), not an option (leading
    `-`), not absolute or home-relative, and holding a `/` or ending in a known file suffix."""
    for number, line in prose_lines(text):
        for span in code_spans(line):
            if not PATH_LIKE.match(span) or span.startswith("-"):
                continue
            if "/" in span or span.endswith(FILE_SUFFIXES):
                yield number, span


def _inside_repository(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


@pytest.mark.parametrize("doc", _doc_files(), ids=_rel)
def test_the_docs_name_only_files_that_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = []
    for number, token in path_tokens(text):
        if token in NOT_REPOSITORY_FILES:
            continue
        target = ROOT / token
        if not _inside_repository(target):
            missing.append(f"{_rel(doc)}:{number}: `{token}` is outside the repository")
        elif not target.exists():
            missing.append(f"{_rel(doc)}:{number}: `{token}` does not exist")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("doc", _doc_files(), ids=_rel)
def test_the_docs_link_only_to_files_and_headings_that_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    broken = []
    for number, line in prose_lines(text):
        for target in links(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: …
                continue
            file_part, _, anchor = target.partition("#")
            path = (doc.parent / file_part) if file_part else doc
            where = f"{_rel(doc)}:{number}: ({target})"
            if not _inside_repository(path):
                broken.append(f"{where} points outside the repository")
            elif not path.exists():
                broken.append(f"{where}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path.read_text(encoding="utf-8")):
                broken.append(f"{where}: no heading #{anchor} in {_rel(path.resolve())}")
    assert not broken, "\n".join(broken)


def test_nothing_cites_a_file_outside_the_repository() -> None:
    forbidden = ("../" + "shared", "DESIGN" + ".md", "STYLE" + ".md")
    files = _doc_files() + [
        p
        for folder in ("automation", "infra", "policy", "scripts", "tests", "benchmarks", ".github", ".ci")
        for p in sorted((ROOT / folder).rglob("*"))
        if p.is_file()
        and p.suffix in (".py", ".md", ".yaml", ".yml", ".sh", "")
        and "__pycache__" not in p.parts
    ]
    found = [
        f"{_rel(p)}: {word}"
        for p in files
        if p.resolve() != Path(__file__).resolve()
        for word in forbidden
        if word in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert not found, "\n".join(found)


# --- 4. the README -----------------------------------------------------------------------------------


def test_the_readme_is_short_with_its_quick_start_at_the_top() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"
    top = lines[:40]
    assert any(line.startswith("## Quick start") for line in top), "no Quick start in the first 40 lines"
    assert any('pip install -e ".[dev]"' in line for line in top), "set-up command not in the first 40 lines"
    assert any(line.strip().startswith("python -m pytest") for line in top), (
        "test command not in the first 40 lines"
    )
