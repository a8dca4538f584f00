"""Drift: compare each stack's state with the cloud (preview-only refresh), silence known noise, report.

The ignore file (`drift-ignore.yaml` at the repository root, or `--ignore-file PATH`) maps resource
type tokens to property path patterns::

    # Lambda bumps these on every deploy and on its own.
    aws:lambda/function:Function:
      - lastModified
      - "environment.variables.DD_*"
    # Any type: tags the AWS console adds.
    "*":
      - "tags.aws:*"
      - "tagsAll.aws:*"

Type keys are shell-style globs over the full type token (`aws:s3/*` matches every S3 type). In a path
pattern `*` matches within one path segment, `**` matches across segments, and a pattern also covers
everything below the path it names (`tags` silences `tags.Owner`). `["quoted.keys"]` in engine paths
are read as plain segments: `tags.aws:cloudformation:*` matches `tags["aws:cloudformation:stack-name"]`.
A resource deleted outside Pulumi is always reported: a path rule cannot silence a missing resource;
nor one the engine reports as changed without naming a property.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from automation.engine.model import DriftReport, ProgressFn, ResourceDrift, Terminated, UpdateRecord
from automation.engine.process import child_pids, is_pulumi_process, signal_processes
from automation.engine.protocol import Engine
from automation.errors import ConfigurationError, Interrupted, StagelineError
from automation.markdown import cell
from automation.operate.updates import RetryPolicy, sigterm_as_interrupt, with_lock_retry

DEFAULT_IGNORE_FILE = "drift-ignore.yaml"
DEFAULT_PARALLEL = 4


# --- ignore rules -------------------------------------------------------------------------------


def _normalise_path(path: str) -> str:
    """`a["b.c"][0]` -> `a.b.c.0`: one spelling for matching."""
    path = re.sub(r'\["((?:[^"\\]|\\.)*)"\]', lambda m: "." + m.group(1), path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    return path.lstrip(".")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    text = _normalise_path(pattern)
    while i < len(text):
        if text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append(r"[^.]*")
            i += 1
        elif text[i] == "?":
            out.append(r"[^.]")
            i += 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    # A rule for a path also covers what is below it.
    return re.compile("".join(out) + r"(?:\..*)?")


@dataclass(frozen=True)
class IgnoreRule:
    type_pattern: str
    path_pattern: str
    regex: re.Pattern[str]

    def matches(self, type_token: str, path: str) -> bool:
        return fnmatch.fnmatchcase(type_token, self.type_pattern) and bool(
            self.regex.fullmatch(_normalise_path(path))
        )


@dataclass(frozen=True)
class IgnoreRules:
    rules: tuple[IgnoreRule, ...] = ()
    source: str = ""  # the file they came from, for the report

    def ignores(self, type_token: str, path: str) -> bool:
        return any(rule.matches(type_token, path) for rule in self.rules)


def parse_ignore(document: Any, source: str) -> IgnoreRules:
    """Validate an ignore document (already loaded from YAML). Errors name the file and the key."""
    if document is None:
        return IgnoreRules(source=source)
    if not isinstance(document, dict):
        raise ConfigurationError(
            f"{source}: must map resource types to lists of property paths, got {type(document).__name__}"
        )
    rules = []
    for type_pattern, paths in document.items():
        if not isinstance(type_pattern, str) or not type_pattern.strip():
            raise ConfigurationError(f"{source}: resource type keys must be strings, got {type_pattern!r}")
        if not isinstance(paths, list) or not paths:
            raise ConfigurationError(f"{source}: {type_pattern} must be a non-empty list of property paths")
        for i, path in enumerate(paths):
            if not isinstance(path, str) or not path.strip():
                raise ConfigurationError(
                    f"{source}: {type_pattern}[{i}] must be a property path pattern, got {path!r}"
                )
            rules.append(IgnoreRule(type_pattern, path.strip(), _pattern_regex(path.strip())))
    return IgnoreRules(rules=tuple(rules), source=source)


def load_ignore(path: Path | None, project_dir: Path) -> IgnoreRules:
    """Rules from `path` (must exist), else from <project>/drift-ignore.yaml when present, else none.

    Read through the stack files' reader (size, depth and alias limits, UTF-8, no duplicate keys).
    """
    from infra.config.model import ConfigError
    from infra.config.stack_file import read_yaml

    explicit = path is not None
    target = path if path is not None else project_dir / DEFAULT_IGNORE_FILE
    if not target.exists():
        if explicit:
            raise ConfigurationError(f"--ignore-file: {target} does not exist")
        return IgnoreRules()
    if not target.is_file():
        raise ConfigurationError(f"--ignore-file: {target} is not a regular file")
    try:
        document = read_yaml(target, name=str(target) if explicit else target.name)
    except ConfigError as exc:
        raise ConfigurationError(f"--ignore-file: {exc}" if explicit else str(exc)) from None
    return parse_ignore(document, target.name)


def apply_ignore(report: DriftReport, rules: IgnoreRules) -> DriftReport:
    """The report without the property drifts the rules silence; resources left with none are dropped."""
    if not rules.rules:
        return report
    kept: list[ResourceDrift] = []
    ignored: list[str] = list(report.ignored)
    for resource in report.resources:
        if resource.kind == "delete" or not resource.properties:
            kept.append(resource)  # nothing a path rule could name: always reported
            continue
        props = []
        for prop in resource.properties:
            if rules.ignores(resource.type, prop.path):
                ignored.append(f"{resource.urn} {prop.path}")
            else:
                props.append(prop)
        if props:
            kept.append(replace(resource, properties=tuple(props)))
    return replace(report, resources=tuple(kept), ignored=tuple(ignored))


# --- running ------------------------------------------------------------------------------------


def default_parallel(count: int) -> int:
    # Each check is a pulumi process with provider plugins: I/O-bound but memory-hungry, so a few at a time.
    return max(1, min(DEFAULT_PARALLEL, count))


def map_in_order(items: Sequence[str], work: Callable[[str], Any], parallel: int) -> list[Any]:
    """`work(item)` for every item on `parallel` threads; results in input order.

    Ctrl-C or SIGTERM -> Interrupted (exit 130). These are read-only engine calls, so nothing needs
    cancelling; on SIGTERM, which reaches only us, the Pulumi CLIs still running are told to stop.
    """
    with sigterm_as_interrupt():
        if parallel <= 1 or len(items) <= 1:
            try:
                return [work(item) for item in items]
            except KeyboardInterrupt as exc:
                raise _interrupted(exc) from None
        pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="stageline")
        try:
            futures: list[Future[Any]] = [pool.submit(work, item) for item in items]
            results = [f.result() for f in futures]
        except KeyboardInterrupt as exc:
            pool.shutdown(wait=False, cancel_futures=True)
            raise _interrupted(exc) from None
        pool.shutdown(wait=True)
        return results


def _interrupted(exc: KeyboardInterrupt) -> Interrupted:
    if isinstance(exc, Terminated):
        pids = [pid for pid in child_pids(os.getpid()) if is_pulumi_process(pid)]
        signal_processes(pids, signal.SIGINT)
    return Interrupted("interrupted; nothing was changed")


def check_stacks(
    engine: Engine,
    stacks: Sequence[str],
    *,
    parallel: int,
    rules: IgnoreRules,
    policy: RetryPolicy,
    progress: ProgressFn | None = None,
) -> list[DriftReport]:
    """A drift report per stack, in the order given. A stack whose check fails gets a report with `error`."""

    def one(stack: str) -> DriftReport:
        if progress is not None:
            progress(f"{stack}: checking for drift (preview-only refresh) …")
        try:
            report = with_lock_retry(stack, lambda: engine.preview_refresh(stack), policy, progress=progress)
        except ConfigurationError:
            raise  # the backend or the project is unusable: a usage error for every stack (exit 2)
        except StagelineError as exc:
            if progress is not None:
                progress(f"{stack}: drift check failed")
            return DriftReport(stack=stack, error=exc.format_message())
        report = apply_ignore(report, rules)
        if progress is not None:
            state = f"{len(report.resources)} resource(s) drifted" if report.drifted else "clean"
            progress(f"{stack}: {state}")
        return report

    return map_in_order(stacks, one, parallel)


def exit_code(reports: Iterable[DriftReport]) -> int:
    """1 if any check failed (the job is broken), else 3 if anything drifted, else 0."""
    reports = list(reports)
    if any(r.error for r in reports):
        return 1
    if any(r.drifted for r in reports):
        return 3
    return 0


# --- rendering ----------------------------------------------------------------------------------


def _show(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if value is not None else "(none)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_text(reports: Sequence[DriftReport], rules: IgnoreRules) -> str:
    lines: list[str] = []
    for report in reports:
        if report.error:
            lines.append(f"{report.stack}: check failed: {report.error}")
            continue
        if not report.drifted:
            lines.append(f"{report.stack}: clean")
        else:
            lines.append(f"{report.stack}: drifted: {len(report.resources)} resource(s)")
        for resource in report.resources:
            if resource.kind == "delete":
                lines.append(f"  - {resource.type} {resource.name}: deleted outside Pulumi")
                continue
            lines.append(f"  ~ {resource.type} {resource.name}")
            if not resource.properties:
                lines.append("      (changed; the engine did not say which properties)")
            for prop in resource.properties:
                lines.append(f"      {prop.path}: {_show(prop.old)} -> {_show(prop.new)}")
        if report.ignored:
            lines.append(
                f"  ({len(report.ignored)} property change(s) ignored by {rules.source or 'ignore rules'})"
            )
    return "\n".join(lines)


def render_markdown(reports: Sequence[DriftReport], rules: IgnoreRules) -> str:
    drifted = [r for r in reports if r.drifted]
    failed = [r for r in reports if r.error]
    title = "Drift detected" if drifted else ("Drift check failed" if failed else "No drift")
    out = [
        f"## {title}",
        "",
        "| Stack | Result | Resources drifted | Ignored changes |",
        "| --- | --- | --- | --- |",
    ]
    for r in reports:
        result = "❌ check failed" if r.error else ("⚠️ drifted" if r.drifted else "✅ clean")
        out.append(f"| {r.stack} | {result} | {len(r.resources)} | {len(r.ignored)} |")
    for r in reports:
        if r.error:
            out += ["", f"### {r.stack}: check failed", "", "```", r.error, "```"]
            continue
        if not r.drifted:
            continue
        out += [
            "",
            f"### {r.stack}",
            "",
            "| Resource | Type | Property | Recorded (code) | Actual (cloud) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for res in r.resources:
            if res.kind == "delete":
                out.append(f"| {cell(res.name)} | `{res.type}` | *(whole resource)* | exists | **deleted** |")
                continue
            if not res.properties:
                out.append(
                    f"| {cell(res.name)} | `{res.type}` | *(not reported by the engine)* | | changed |"
                )
            for p in res.properties:
                out.append(
                    f"| {cell(res.name)} | `{res.type}` | `{cell(p.path)}` | `{cell(_show(p.old, 60))}` "
                    f"| `{cell(_show(p.new, 60))}` |"
                )
    if any(r.ignored for r in reports):
        out += [
            "",
            f"_Ignored by {rules.source or 'ignore rules'}: "
            f"{sum(len(r.ignored) for r in reports)} property change(s)._",
        ]
    if drifted:
        names = " ".join(r.stack for r in drifted)
        out += [
            "",
            f"To put resources back as the code says: `python -m automation drift {names} --remediate`. "
            "To keep a manual change, change the code (or the stack config) to match it.",
        ]
    return "\n".join(out) + "\n"


def to_json(reports: Sequence[DriftReport], code: int) -> dict[str, Any]:
    return {
        "drifted": any(r.drifted for r in reports),
        "exitCode": code,
        "stacks": [r.to_json() for r in reports],
    }


# --- remediation -----------------------------------------------------------------------------------


def remediate(
    engine: Engine,
    report: DriftReport,
    *,
    ask: Callable[[str], None] | None,
    clear_pending: bool,
    retry: RetryPolicy,
    progress: ProgressFn,
) -> UpdateRecord:
    """`up --refresh` one drifted stack; with `ask`, first show what it would change and ask.

    The refresh is what puts drift back: a plain `up` compares the program with the state, which
    drift does not touch, so it would change nothing and still report success. `ask` raises to refuse.
    """
    from automation.gitinfo import head_commit
    from automation.operate import updates
    from automation.operate.preview import render_text as render_preview

    stack = report.stack
    updates.check_pending(engine, stack, clear=clear_pending, progress=progress)
    if ask is not None:
        progress(f"{stack}: the drift the update puts back (it refreshes first), and what else it changes:")
        progress(render_text([report], IgnoreRules()))
        summary = with_lock_retry(stack, lambda: engine.preview(stack), retry, progress=progress)
        progress(render_preview([summary]))
        ask(f"Put {len(report.resources)} drifted resource(s) of {stack} back as code says?")
    return updates.run_update(
        engine,
        stack,
        message=updates.update_message(
            f"drift remediation of {stack}", head_commit(engine.project_dir), updates.current_actor()
        ),
        policy=retry,
        progress=progress,
        refresh=True,
    )
