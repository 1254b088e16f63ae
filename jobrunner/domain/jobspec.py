"""A validated request to run a job, built from CLI options, a JSON line or a config task.

Every source goes through `build_spec`, so a bad value gets the same message
wherever it came from, prefixed with where it was (file:line, config key, option).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from jobrunner.domain.durations import parse_duration
from jobrunner.domain.priority import DEFAULT_PRIORITY, NAMED_PRIORITIES, parse_priority
from jobrunner.domain.retry import Backoff

CALLABLE_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][\w.\-]*$")
DEFAULT_QUEUE = "default"

#: Keys a job may set, in JSON lines and in `[tasks.NAME]` tables.
JOB_KEYS = (
    "name", "command", "callable", "args", "kwargs", "queue", "priority", "retries",
    "timeout", "backoff", "retry_on", "retry_on_exit_codes", "tags", "metadata", "cwd", "env",
)  # fmt: skip
_JOB_KEY_SET = frozenset(JOB_KEYS)
_MISSING: Any = object()  # a key that is absent, as opposed to present with the value None
_DEFAULT_BACKOFF = Backoff()  # frozen: one instance serves every job that does not set it


class SpecError(ValueError):
    """A bad field in a job request; `key` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


@dataclass
class JobSpec:
    """Everything needed to store a job; defaults are what a plain submit gets."""

    kind: str  # "shell" or "python"
    name: str
    command: list[str] | None = None
    callable: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    max_retries: int = 0
    timeout: float | None = None
    backoff: Backoff = field(default_factory=Backoff)
    retry_on: list[str] = field(default_factory=list)
    retry_on_exit_codes: list[int] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    task: str | None = None
    run_at: float | None = None
    after: list[int] = field(default_factory=list)  # ids that must succeed first


def unknown_key_message(key: str, allowed: tuple[str, ...] | list[str]) -> str:
    """`unknown key 'retires' (did you mean 'retries'?)`."""
    import difflib  # only on the error path: keeps importing this module cheap

    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(allowed)})"
    return f"unknown key {key!r}{hint}"


def build_spec(fields: dict[str, Any], *, task: str | None = None) -> JobSpec:
    """A JobSpec from raw fields (as in JSON or TOML); raises SpecError naming the key.

    Runs once per line of a bulk submit, so an absent key costs a dict lookup and nothing
    more; present keys are checked in the order of JobSpec's fields (the first bad one wins).
    """
    if not _JOB_KEY_SET.issuperset(fields):
        unknown = next(key for key in fields if key not in _JOB_KEY_SET)
        raise SpecError(unknown, unknown_key_message(unknown, JOB_KEYS))
    get = fields.get
    command = get("command")
    if command is not None:
        command = _command(command)
    target = get("callable")
    if command is not None and target is not None:
        raise SpecError("command", "give either a command or a callable, not both")
    if command is None and target is None:
        raise SpecError("command", "a job needs a command (list or string) or a callable")
    if target is not None:
        target = _callable(target)
    args = get("args")
    args = [] if args is None else list(_of_type("args", args, list, "a list"))
    if command is not None and args:
        raise SpecError("args", "args are for callables; put a shell job's arguments in its command")
    name = _name(get("name"), task, command, target)
    kwargs = get("kwargs")
    kwargs = (
        {} if kwargs is None else dict(_of_type("kwargs", kwargs, dict, "a table/object of named arguments"))
    )
    queue = get("queue", _MISSING)
    queue = DEFAULT_QUEUE if queue is _MISSING else _queue(queue)
    priority = get("priority", _MISSING)
    priority = DEFAULT_PRIORITY if priority is _MISSING else _priority(priority)
    retries = get("retries", _MISSING)
    retries = 0 if retries is _MISSING else _retries(retries)
    timeout = get("timeout")
    backoff = get("backoff")
    retry_on = get("retry_on")
    exit_codes = get("retry_on_exit_codes")
    tags = get("tags")
    metadata = get("metadata")
    cwd = get("cwd")
    env = get("env")
    # Positional, in JobSpec's field order (checked below): 18 keywords cost twice the call.
    return JobSpec(
        "shell" if command is not None else "python",
        name,
        command,
        target,
        args,
        kwargs,
        queue,
        priority,
        retries,
        None if timeout is None else _timeout(timeout),
        _DEFAULT_BACKOFF if backoff is None else _backoff(backoff),
        [] if retry_on is None else _str_list("retry_on", retry_on),
        [] if exit_codes is None else _int_list("retry_on_exit_codes", exit_codes),
        [] if tags is None else _tags(tags),
        {} if metadata is None else dict(_of_type("metadata", metadata, dict, "a table/object")),
        None if cwd is None else _optional_str("cwd", cwd),
        {} if env is None else _env(env),
        task,
    )


_BUILD_ORDER = (
    "kind", "name", "command", "callable", "args", "kwargs", "queue", "priority", "max_retries",
    "timeout", "backoff", "retry_on", "retry_on_exit_codes", "tags", "metadata", "cwd", "env", "task",
)  # fmt: skip
if tuple(f.name for f in dataclass_fields(JobSpec))[: len(_BUILD_ORDER)] != _BUILD_ORDER:
    raise RuntimeError("JobSpec's fields were reordered: update build_spec's positional call")


def _convert(key: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except (TypeError, ValueError) as exc:
        raise SpecError(key, str(exc)) from None


def _of_type(key: str, value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise SpecError(key, f"must be {what}, got {type(value).__name__}")
    return value


def _command(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise SpecError("command", "is empty")
        return ["/bin/sh", "-c", value]
    if isinstance(value, list) and value and all([isinstance(part, str) for part in value]):
        return list(value)
    raise SpecError("command", "must be a non-empty list of strings or a shell string")


def _callable(value: Any) -> str:
    if not isinstance(value, str) or not CALLABLE_PATTERN.match(value):
        raise SpecError("callable", f"{value!r} is not an import path like 'package.module:function'")
    return value


def _name(value: Any, task: str | None, command: list[str] | None, target: str | None) -> str:
    if value is not None:
        if not isinstance(value, str) or not value.strip():
            raise SpecError("name", "must be a non-empty string")
        return value.strip()
    if task:
        return task
    if target:
        return target.rpartition(":")[2]
    assert command is not None
    if command[:2] == ["/bin/sh", "-c"]:
        return command[2].split()[0].rsplit("/", 1)[-1] if command[2].split() else "sh"
    return command[0].rsplit("/", 1)[-1]


def _queue(value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise SpecError("queue", f"{value!r} is not a queue name (letters, digits, '_', '-', '.')")
    return value


def _priority(value: Any) -> int:
    if type(value) is int and 0 <= value <= 9:  # the common forms, without parsing
        return value
    if type(value) is str and value in NAMED_PRIORITIES:
        return NAMED_PRIORITIES[value]
    return _convert("priority", parse_priority, value)


def _retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
        raise SpecError("retries", f"{value!r} is not a number of retries (0-1000)")
    return value


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    seconds = _convert("timeout", parse_duration, value)
    if seconds <= 0:
        raise SpecError("timeout", "must be longer than zero (leave it out for no timeout)")
    return seconds


def _backoff(value: Any) -> Backoff:
    if value is None:
        return Backoff()
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return Backoff(base=_convert("backoff", parse_duration, value))
    if not isinstance(value, dict):
        raise SpecError("backoff", 'must be a duration ("5s") or a table {base, factor, max}')
    allowed = ("base", "factor", "max")
    for key in value:
        if key not in allowed:
            raise SpecError(f"backoff.{key}", unknown_key_message(key, allowed))
    base = _convert("backoff.base", parse_duration, value.get("base", Backoff.base))
    top = _convert("backoff.max", parse_duration, value.get("max", Backoff.max))
    factor = value.get("factor", Backoff.factor)
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not 1 <= factor <= 100:
        raise SpecError("backoff.factor", f"{factor!r} must be a number from 1 to 100")
    return Backoff(base=base, factor=float(factor), max=top)


def _str_list(key: str, value: Any) -> list[str]:
    _of_type(key, value, list, "a list of strings")
    for item in value:
        if not isinstance(item, str) or not item:
            raise SpecError(key, "must be a list of non-empty strings")
    return list(value)


def _int_list(key: str, value: Any) -> list[int]:
    _of_type(key, value, list, "a list of integers")
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 255 for i in value):
        raise SpecError(key, "must be a list of exit codes (integers 0-255)")
    return list(value)


def _tags(value: Any) -> list[str]:
    tags = _str_list("tags", value)
    for tag in tags:
        if not NAME_PATTERN.match(tag):
            raise SpecError("tags", f"{tag!r} is not a tag (letters, digits, '_', '-', '.')")
    return tags if len(tags) < 2 else sorted(set(tags), key=tags.index)


def _optional_str(key: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise SpecError(key, "must be a non-empty string")
    return value


def _env(value: Any) -> dict[str, str]:
    _of_type("env", value, dict, "a table/object of NAME = value")
    for key, item in value.items():
        if not isinstance(item, str) or not key or "=" in key:
            raise SpecError(f"env.{key}", "environment values must be strings")
    return dict(value)
