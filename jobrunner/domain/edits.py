"""A stored job as the fields a user can edit, and what an edit changed, in words.

The fields are those of a line of `submit --from-file` (JOB_KEYS): `edit`, `retry --edit`'s
JSON, the TUI's edit form and `dlq export` all speak them, and `build_spec` checks them, so
an edit is refused with the same words as a submit. Pure: no store, no I/O.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from typing import Any

from jobrunner.domain.jobspec import DEFAULT_QUEUE, JOB_KEYS, JobSpec
from jobrunner.domain.priority import DEFAULT_PRIORITY, priority_label
from jobrunner.domain.retry import Backoff
from jobrunner.domain.sizes import format_size, parse_size
from jobrunner.domain.states import Status

#: A job that has not started its attempt, or a dead or cancelled one (before a retry), can
#: be edited; a running one belongs to its worker, and a succeeded one is history.
EDITABLE = frozenset({Status.QUEUED, Status.SCHEDULED, Status.WAITING, Status.RETRYING,
                      Status.DEAD, Status.CANCELLED})  # fmt: skip
EDITABLE_TEXT = (
    "only a job that has not started (queued, scheduled, waiting, retrying) or a dead or cancelled one"
)
#: Keys a submit takes that an edit does not: a key is the identity of its job (submit another).
NOT_EDITABLE = ("unique_key", "on_conflict")
#: Keys whose value is a JSON object of names: --arg, --env and --meta add to them.
MAPPINGS = ("kwargs", "env", "metadata")
#: The value each key has when a submit leaves it out: an export leaves these out too.
DEFAULTS: dict[str, Any] = {
    "args": [], "kwargs": {}, "queue": DEFAULT_QUEUE, "priority": DEFAULT_PRIORITY, "retries": 0,
    "timeout": None, "backoff": asdict(Backoff()), "retry_on": [], "retry_on_exit_codes": [],
    "tags": [], "metadata": {}, "cwd": None, "env": {}, "unique_key": None, "memory": None,
    "cpu_time": None, "max_log_size": None,
}  # fmt: skip
#: field key -> JobSpec attribute, where they differ
_SPEC_NAMES = {"retries": "max_retries", "memory": "memory_limit", "cpu_time": "cpu_time_limit"}
_SIZES = ("memory", "max_log_size")  # bytes: shown as 200M
MASK = "***"
_SHELL = ["/bin/sh", "-c"]


def editable_keys() -> tuple[str, ...]:
    """The keys an edit may change: every key of a submit but a unique key's."""
    return tuple(key for key in JOB_KEYS if key not in NOT_EDITABLE)


def export_keys() -> tuple[str, ...]:
    """The keys an exported line carries: what an edit may change, and the unique key."""
    return tuple(key for key in JOB_KEYS if key != "on_conflict")


def stored_fields(job: dict[str, Any], keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The fields of a job as `show --json` (queries.job_to_dict) gives it, every key present
    (None where unset): the same shape as spec_fields, so the two compare key by key."""
    fields: dict[str, Any] = {}
    for key in keys or editable_keys():
        if key == "retries":
            fields[key] = job["max_retries"]
        elif key == "backoff":
            backoff = job["backoff"]
            fields[key] = {name: float(backoff[name]) for name in ("base", "factor", "max")}
        elif key in ("timeout", "cpu_time"):
            fields[key] = None if job[key] is None else float(job[key])
        elif key in job:
            fields[key] = job[key]
    return fields


def spec_fields(spec: JobSpec, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The fields of a checked JobSpec, in stored_fields' shape."""
    fields: dict[str, Any] = {}
    for key in keys or editable_keys():
        if key == "backoff":
            fields[key] = {"base": float(spec.backoff.base), "factor": float(spec.backoff.factor),
                           "max": float(spec.backoff.max)}  # fmt: skip
        elif key in ("timeout", "cpu_time"):
            value = getattr(spec, _SPEC_NAMES.get(key, key))
            fields[key] = None if value is None else float(value)
        elif hasattr(spec, _SPEC_NAMES.get(key, key)):
            fields[key] = getattr(spec, _SPEC_NAMES.get(key, key))
    return fields


def spec_attribute(key: str) -> str:
    """The JobSpec attribute (and job column) a field key is kept in."""
    return _SPEC_NAMES.get(key, key)


def for_user(fields: dict[str, Any], *, defaults: bool = True) -> dict[str, Any]:
    """Fields as a person writes them (and build_spec reads them back): a named priority by its
    name, whole seconds as integers, a shell string (["/bin/sh", "-c", text]) as its text, no
    `command` for a Python job; without `defaults`, the
    keys a submit would give the same value anyway are left out (an export line)."""
    shown: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None and key in ("command", "callable"):
            continue
        if not defaults and key in DEFAULTS and _same(value, DEFAULTS[key]):
            continue
        if key == "command" and isinstance(value, list) and len(value) == 3 and value[:2] == _SHELL:
            value = value[2]  # as it was given: build_spec makes the same list of it again
        elif key == "priority" and isinstance(value, int):
            label = priority_label(value)
            value = value if label.isdigit() else label
        elif key in ("timeout", "cpu_time") and value is not None:
            value = _number(value)
        elif key in _SIZES and isinstance(value, int) and parse_size(format_size(value)) == value:
            value = format_size(value)  # "200M": read back as the same bytes
        elif key == "backoff" and isinstance(value, dict):
            value = {name: _number(part) for name, part in value.items()}
        shown[key] = value
    return shown


def merge(
    current: dict[str, Any], changes: dict[str, Any], *, add_to_mappings: bool = False
) -> dict[str, Any]:
    """The fields after `changes`: each key given replaces the current value (None: back to its
    default), except that with `add_to_mappings` kwargs, env and metadata gain the names given.
    A new command drops the callable (and its args), a new callable drops the command."""
    merged = dict(current)
    for key, value in changes.items():
        if (
            add_to_mappings
            and key in MAPPINGS
            and isinstance(value, dict)
            and isinstance(merged.get(key), dict)
        ):
            value = {**merged[key], **value}
        merged[key] = value
    if changes.get("command") is not None and "callable" not in changes:
        merged.pop("callable", None)
        if "args" not in changes:
            merged.pop("args", None)
    if changes.get("callable") is not None and "command" not in changes:
        merged.pop("command", None)
    return {key: value for key, value in merged.items() if value is not None}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose value differs, in JOB_KEYS order."""
    return [key for key in dict.fromkeys([*old, *new]) if not _same(old.get(key), new.get(key))]


def describe(old: dict[str, Any], new: dict[str, Any], keys: list[str]) -> str:
    """What changed, old -> new, for an event and the CLI: `priority normal → high; timeout none
    → 10m`. Environment values never show (their names do); long values are cut."""
    parts = []
    for key in keys:
        before, after = old.get(key), new.get(key)
        if key in MAPPINGS and isinstance(before, dict) and isinstance(after, dict):
            parts.append(_mapping_change(key, before, after))
        else:
            parts.append(f"{key} {_shown(key, before)} → {_shown(key, after)}")
    return "; ".join(parts)


def change_details(old: dict[str, Any], new: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The event's details: {"changes": {key: {"from": ..., "to": ...}}}, env values masked."""
    changes = {}
    for key in keys:
        before, after = old.get(key), new.get(key)
        if key == "env":
            before, after = _masked(before), _masked(after)
        changes[key] = {"from": before, "to": after}
    return {"changes": changes}


def _mapping_change(key: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    words = []
    for name in dict.fromkeys([*before, *after]):
        if name not in after:
            words.append(f"{name} removed")
        elif name not in before:
            words.append(f"{name} added" if key == "env" else f"{name}={_cut(after[name])} added")
        elif not _same(before[name], after[name]):
            words.append(
                f"{name} changed" if key == "env" else f"{name} {_cut(before[name])} → {_cut(after[name])}"
            )
    return f"{key}: {', '.join(words)}"


def _shown(key: str, value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "none"
    if key == "priority" and isinstance(value, int):
        return priority_label(value)
    if key in ("timeout", "cpu_time"):
        return duration_text(value)
    if key in _SIZES and isinstance(value, int):
        return format_size(value)
    if key == "backoff" and isinstance(value, dict):
        return "/".join(duration_text(value[k]) if k != "factor" else f"x{_number(value[k])}"
                        for k in ("base", "factor", "max") if k in value)  # fmt: skip
    if key == "env" and isinstance(value, dict):
        return " ".join(f"{name}={MASK}" for name in value)
    if key == "command" and isinstance(value, list):
        return _cut(value[2] if value[:2] == _SHELL and len(value) == 3 else shlex.join(map(str, value)))
    if key in ("tags", "retry_on") and isinstance(value, list):
        return _cut(", ".join(map(str, value)))
    return _cut(value)


def duration_text(seconds: Any) -> str:
    """Seconds as a duration parse_duration reads back exactly: 600 -> 10m, 5400 -> 1h30m, 2.5 -> 2.5s."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return str(seconds)
    if seconds != int(seconds) or seconds <= 0:
        return f"{seconds:g}s"
    rest, text = int(seconds), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            text += f"{count}{unit}"
    return text


def _cut(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split()) if isinstance(value, str) else text
    return text if len(text) <= width else text[: width - 1] + "…"


def _masked(env: Any) -> Any:
    return {name: MASK for name in env} if isinstance(env, dict) else env


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**53 else value


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON would store them: 600 and 600.0 are the same timeout; True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b if not (_numeric(a) and _numeric(b)) else a == b


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
