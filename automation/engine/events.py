"""Pure conversion of engine data: engine events into previews and drift reports, update summaries
into numbered history, deployments into pending operations, and engine messages into one-line errors.

Nothing here runs the engine; the SDK's types appear only in annotations.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from automation.redact import redact, redact_value
from infra.config.model import MASK
from infra.config.stack_file import decode_config_value

if TYPE_CHECKING:
    from pulumi.automation import EngineEvent, UpdateSummary
    from pulumi.automation.events import StepEventMetadata, StepEventStateMetadata
from automation.engine.model import (
    SECRET_SIG,
    DriftReport,
    PendingOperation,
    PolicyResult,
    PreviewSummary,
    PropertyDrift,
    ResourceDrift,
    ResourceStep,
    UpdateRecord,
    child_path,
    is_stateful,
    normal_op,
    parse_urn,
    split_property_path,
    value_at,
)

# --- pure helpers over engine data --------------------------------------------------------------


def _mask_engine_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        if SECRET_SIG in value:
            return MASK
        return {str(k): _mask_engine_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_engine_secrets(v) for v in value]
    return value


def _state(meta: StepEventStateMetadata | None) -> Mapping[str, Any]:
    if meta is None:
        return {}
    return meta.outputs or meta.inputs or {}


def _metadata(event: EngineEvent) -> StepEventMetadata | None:
    if event.resource_pre_event is not None:
        return event.resource_pre_event.metadata
    if event.res_outputs_event is not None:
        return event.res_outputs_event.metadata
    return None


def skip_resource(type_token: str) -> bool:
    # The stack itself and provider resources are engine bookkeeping, not infrastructure.
    return type_token.startswith(("pulumi:pulumi:Stack", "pulumi:providers:"))


def op_value(op: Any) -> str:
    return str(getattr(op, "value", op))


def _diff_kind(value: Any) -> str:
    kind = str(getattr(value, "value", value))
    return kind.split("-", 1)[0]  # "update-replace" -> "update"


def _secret_at(document: Any, path: str) -> bool:
    """Whether the value at `path`, or anything on the way to it, is an engine-marked secret."""
    current = document
    for part in [None, *split_property_path(path)]:
        if isinstance(current, Mapping) and SECRET_SIG in current:
            return True
        if part is None:
            continue
        if isinstance(part, int) and isinstance(current, list) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(current, Mapping) and str(part) in current:
            current = current[str(part)]
        else:
            return False
    return isinstance(current, Mapping) and SECRET_SIG in current


def diff_paths(old: Any, new: Any, prefix: str = "") -> dict[str, str]:
    """Property paths where two JSON-like states differ: path -> add | delete | update.

    Used when the engine reports a changed resource without saying which properties changed (a
    refresh step with an empty diff). Secrets are compared as opaque leaves.
    """
    if (
        isinstance(old, Mapping)
        and isinstance(new, Mapping)
        and SECRET_SIG not in old
        and SECRET_SIG not in new
    ):
        out: dict[str, str] = {}
        for key in sorted({str(k) for k in old} | {str(k) for k in new}):
            if key.startswith("__"):  # engine bookkeeping such as __meta
                continue
            path = child_path(prefix, key)
            if key not in new:
                out[path] = "delete"
            elif key not in old:
                out[path] = "add"
            else:
                out.update(diff_paths(old[key], new[key], path))
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = {}
        for i in range(max(len(old), len(new))):
            path = child_path(prefix, i)
            if i >= len(new):
                out[path] = "delete"
            elif i >= len(old):
                out[path] = "add"
            else:
                out.update(diff_paths(old[i], new[i], path))
        return out
    if old == new:
        return {}
    return {prefix or "(resource)": "update"}


def drift_report_from_events(
    stack: str, events: Iterable[EngineEvent], secrets: Iterable[str] = ()
) -> DriftReport:
    """Build the drift report from the events of a preview-only refresh.

    A refresh sends, per resource, a ResourcePreEvent with op "refresh" (nothing known yet) and then a
    ResOutputsEvent whose op is the result: "same", "update" (drifted) or "delete" (gone from the cloud).
    For a refresh, a step's `old` is the state Pulumi recorded and `new` is what the provider read.
    The changed paths come from `detailed_diff`, else `diffs`; when an update carries neither, they
    are computed from old vs new state, and an update or delete is never dropped (a resource whose
    differences cannot be named is reported with no properties).

    Where the values come from: a refresh's detailed diff is the diff an `up` would show, framed on the
    *inputs* (pkg/resource/deploy/step.go, RefreshStep), so a path flagged `input_diff` is read from the
    recorded and refreshed inputs; other paths from the outputs (inputs when the outputs lack the path).

    Secrets: a property whose value is secret on either side (engine-marked, a known secret string,
    or credential-shaped) has *both* sides masked, so the cloud's value of a secret never shows.
    """
    known = tuple(secrets)
    found: dict[str, ResourceDrift] = {}
    order: list[str] = []
    for event in events:
        meta = _metadata(event)
        if meta is None or skip_resource(meta.type):
            continue
        op = normal_op(op_value(meta.op))
        old_state, new_state = _state(meta.old), _state(meta.new)
        old_inputs, new_inputs = _inputs(meta.old), _inputs(meta.new)
        paths: dict[str, str] = {}
        input_paths: set[str] = set()
        for path, diff in (meta.detailed_diff or {}).items():
            paths[path] = _diff_kind(diff.diff_kind)
            if getattr(diff, "input_diff", False):
                input_paths.add(path)
        for path in meta.diffs or ():
            paths.setdefault(path, "update")
        if op == "delete":
            kind = "delete"
        elif op in ("update", "replace") or (op == "refresh" and paths):
            kind = "update"
            if not paths:
                paths = diff_paths(old_state, new_state)
        else:
            continue
        props = tuple(
            _property_drift(
                path,
                paths[path],
                *_sides(path, path in input_paths, (old_state, new_state), (old_inputs, new_inputs)),
                known,
            )
            for path in sorted(paths)
        )
        type_token = meta.type or parse_urn(meta.urn)[0]
        previous = found.get(meta.urn)
        if previous is not None:
            # ResourcePreEvent and ResOutputsEvent both describe the step; keep every path seen.
            seen = {p.path for p in previous.properties}
            props = previous.properties + tuple(p for p in props if p.path not in seen)
            kind = "delete" if "delete" in (kind, previous.kind) else kind
        else:
            order.append(meta.urn)
        found[meta.urn] = ResourceDrift(
            urn=meta.urn, type=type_token, name=parse_urn(meta.urn)[1], kind=kind, properties=props
        )
    return DriftReport(stack=stack, resources=tuple(found[u] for u in order))


def _inputs(meta: StepEventStateMetadata | None) -> Mapping[str, Any]:
    return (meta.inputs or {}) if meta is not None else {}


_States = tuple[Mapping[str, Any], Mapping[str, Any]]


def _sides(path: str, input_diff: bool, outputs: _States, inputs: _States) -> _States:
    """The (recorded, refreshed) documents to read `path` from: inputs for an input diff, else outputs;
    the other pair when the chosen one holds the path on neither side."""
    first, second = (inputs, outputs) if input_diff else (outputs, inputs)

    def holds(pair: _States) -> bool:
        return any(value_at(doc, path) is not None or _secret_at(doc, path) for doc in pair)

    return first if holds(first) or not holds(second) else second


def _property_drift(
    path: str, kind: str, old_state: Mapping[str, Any], new_state: Mapping[str, Any], known: Sequence[str]
) -> PropertyDrift:
    raw_old, raw_new = value_at(old_state, path), value_at(new_state, path)
    old = redact_value(_mask_engine_secrets(raw_old), known)
    new = redact_value(_mask_engine_secrets(raw_new), known)
    secret = _secret_at(old_state, path) or _secret_at(new_state, path) or old != raw_old or new != raw_new
    if secret:
        # The recorded value being secret makes the cloud's value secret too (and the other way round).
        old = MASK if raw_old is not None or _secret_at(old_state, path) else None
        new = MASK if raw_new is not None or _secret_at(new_state, path) else None
    return PropertyDrift(path=path, kind=kind, old=old, new=new)


def preview_summary_from_events(
    stack: str,
    events: Iterable[EngineEvent],
    change_summary: Mapping[Any, int] | None = None,
    *,
    protected: Mapping[str, str] | None = None,
) -> PreviewSummary:
    """Build the preview summary from a preview's ResourcePreEvents and its change summary.

    `protected`: URN -> op of the protected resources a failed preview refused to replace or delete
    (protected_step_urns); their steps are marked protected, and added if the engine sent none.
    """
    protected = dict(protected or {})
    steps: dict[str, ResourceStep] = {}
    order: list[str] = []
    for event in events:
        if event.resource_pre_event is None:
            continue
        meta = event.resource_pre_event.metadata
        if skip_resource(meta.type):
            continue
        op = normal_op(op_value(meta.op))
        if op == "same":
            continue
        changed = tuple(sorted((meta.detailed_diff or {}).keys())) or tuple(meta.diffs or meta.keys or ())
        is_protected = bool(
            (meta.old and meta.old.protect) or (meta.new and meta.new.protect) or meta.urn in protected
        )
        retained = bool((meta.old and meta.old.retain_on_delete) or (meta.new and meta.new.retain_on_delete))
        type_token = meta.type or parse_urn(meta.urn)[0]
        previous = steps.get(meta.urn)
        if previous is not None:  # the parts of one replacement
            changed = tuple(dict.fromkeys(previous.changed + changed))
            is_protected = is_protected or previous.protected
        else:
            order.append(meta.urn)
        steps[meta.urn] = ResourceStep(
            urn=meta.urn,
            type=type_token,
            name=parse_urn(meta.urn)[1],
            op=op,
            changed=changed,
            protected=is_protected,
            stateful=is_stateful(type_token, protected=is_protected, retain_on_delete=retained)
            or (previous.stateful if previous else False),
        )
    for urn_, op in protected.items():
        if urn_ not in steps:
            type_token, name = parse_urn(urn_)
            order.append(urn_)
            steps[urn_] = ResourceStep(
                urn=urn_, type=type_token, name=name, op=op, protected=True, stateful=True
            )
    counts: dict[str, int] = {}
    for op, n in (change_summary or {}).items():
        name = normal_op(op_value(op))
        if name in ("create-replacement", "delete-replaced"):
            continue
        counts[name] = counts.get(name, 0) + int(n)
    # Every step counted: a failed preview's summary leaves out the step it refused.
    by_op: dict[str, int] = {}
    for step in steps.values():
        by_op[step.op] = by_op.get(step.op, 0) + 1
    for op, n in by_op.items():
        counts[op] = max(counts.get(op, 0), n)
    return PreviewSummary(stack=stack, counts=counts, steps=tuple(steps[u] for u in order))


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def update_record_from_summary(summary: UpdateSummary, secrets: Iterable[str] = ()) -> UpdateRecord:
    """Convert one `UpdateSummary` (from `Stack.history` or `UpResult.summary`) to an UpdateRecord."""
    known = tuple(secrets)
    config: dict[str, Any] = {}
    for key, cv in (summary.config or {}).items():
        config[key] = MASK if cv.secret else redact_value(decode_config_value(cv.value), known)
    return UpdateRecord(
        version=int(summary.version or 0),
        kind=str(summary.kind),
        result=str(summary.result),
        start=aware(summary.start_time),
        end=aware(summary.end_time) if summary.end_time else None,
        message=redact(summary.message or "", known),
        environment={str(k): str(v) for k, v in (summary.environment or {}).items()},
        config=config,
        resource_changes={op_value(op): int(n) for op, n in (summary.resource_changes or {}).items()},
    )


def number_history(records: Sequence[UpdateRecord]) -> list[UpdateRecord]:
    """History (newest first) with the versions the user types: Pulumi Cloud's own, else by position.

    A self-managed backend (file://, s3:// …) records no version (`stack history` reports 0 for every
    entry) and lists its entries newest first, one file per entry named by start time; numbering them
    oldest = 1 gives each entry a number that stays put as later entries are added.
    """
    if any(r.version for r in records):
        return list(records)
    total = len(records)
    return [dataclasses.replace(r, version=total - i) for i, r in enumerate(records)]


def pending_from_deployment(deployment: Mapping[str, Any] | None) -> list[PendingOperation]:
    """Pending operations from an exported deployment (`Stack.export_stack().deployment`)."""
    out = []
    for item in (deployment or {}).get("pending_operations") or []:
        resource = item.get("resource") or {}
        urn = str(resource.get("urn", ""))
        out.append(
            PendingOperation(
                urn=urn,
                type=str(resource.get("type") or parse_urn(urn)[0]),
                kind=str(item.get("type", "unknown")),
            )
        )
    return out


_MARKUP = re.compile(r"<\{%[^%]*%\}>|\x1b\[[0-9;]*[A-Za-z]")


def clean_diagnostic(message: str) -> str:
    """One line from an engine diagnostic: colour markup gone, the `error:` prefix dropped, blanks folded."""
    text = " ".join(_MARKUP.sub("", message).split())
    return text[len("error:") :].strip() if text.lower().startswith("error:") else text


def _command_parts(text: str) -> tuple[str, str]:
    """(stdout, stderr) of a CommandError's text (`code: …  stdout: …  stderr: …`); all as stderr if not."""
    if "stderr:" not in text:
        return "", text
    head, stderr = text.split("stderr:", 1)
    stdout = head.split("stdout:", 1)[1] if "stdout:" in head else ""
    return stdout, stderr


def engine_message(text: str, secrets: Iterable[str] = (), diagnostics: Sequence[str] = ()) -> str:
    """The engine's own error, secrets redacted.

    In order of preference: the engine's error diagnostics (resource failures are reported there, as
    events), the `error:` lines of the CLI's stdout, those of its stderr, and the tail of stderr.
    """
    if diagnostics:
        chosen = list(dict.fromkeys(d for d in diagnostics if d))
        more = f" (and {len(chosen) - 3} more errors)" if len(chosen) > 3 else ""
        return redact("; ".join(chosen[:3]) + more, secrets)
    stdout, stderr = _command_parts(text)
    out_lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    err_lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in out_lines + err_lines if ln.lower().startswith("error:")]
    chosen = list(dict.fromkeys(errors)) or err_lines[-3:] or out_lines[-3:]
    chosen = chosen or ["the engine failed without a message"]
    message = " ".join(
        ln[len("error:") :].strip() if ln.lower().startswith("error:") else ln for ln in chosen
    )
    return redact(message, secrets)


# Error diagnostics of a preview that refuses to replace or delete a protected resource
# (pkg/resource/deploy/step_generator.go, step.go), and the summary line every failed preview ends with.
_PROTECTED = re.compile(r"as it is currently marked for protection|cannot be deleted because it is protected")
_QUOTED_URN = re.compile(r'"(urn:pulumi:[^"]+)"')
_PREVIEW_FAILED = "preview failed"


def protected_step_urns(errors: Sequence[tuple[str, str]]) -> dict[str, str] | None:
    """URN -> "replace" | "delete" for each protected resource a failed preview refused to touch.

    None unless every error of the preview is such a refusal (or the closing "preview failed"): any
    other error is a real failure and is raised.
    """
    found: dict[str, str] = {}
    for urn, text in errors:
        if text.strip().rstrip(".").lower() == _PREVIEW_FAILED:
            continue
        if not _PROTECTED.search(text):
            return None
        quoted = _QUOTED_URN.search(text)
        target = quoted.group(1) if quoted else urn
        if not target:
            return None
        found[target] = "replace" if "unable to replace" in text else "delete"
    return found or None


def summary_changes(events: Iterable[EngineEvent]) -> Mapping[str, int] | None:
    """The resource changes of the engine's summary event, when one was sent."""
    for event in events:
        if event.summary_event is not None:
            return {op_value(op): int(n) for op, n in (event.summary_event.resource_changes or {}).items()}
    return None


def policy_result(event: Any) -> PolicyResult:
    """A policy event as the driver reports it: the rule's message is the last line of the engine's
    (the pack prefixes it with the resource's name, `name: message`, as `check` does not)."""
    urn = str(getattr(event, "resource_urn", None) or "")
    text = _MARKUP.sub("", str(getattr(event, "message", "") or "")).strip()
    last = text.splitlines()[-1].strip() if text else ""
    name = parse_urn(urn)[1] if urn else ""
    if name and last.startswith(f"{name}: "):
        last = last[len(name) + 2 :]
    return PolicyResult(
        rule=str(getattr(event, "policy_name", "") or ""),
        urn=urn,
        level=str(getattr(event, "enforcement_level", "") or ""),
        message=last,
        pack=str(getattr(event, "policy_pack_name", "") or ""),
    )
