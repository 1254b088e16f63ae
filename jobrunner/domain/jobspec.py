"""A validated request to run a job, built from CLI options, a JSON line, the Python API,
the TUI's form, a config task or a schedule.

Every source goes through `build_spec` (and `run_time`, `job_ids` for when and after what),
so a bad value gets the same message wherever it came from, prefixed with where it was
(file:line, config key, option). Whatever passes can be stored, listed and run: times and
durations are in range, strings hold no NUL byte, JSON is not nested absurdly deep.
`check_runs_here` adds the checks that look at this machine (a cwd, a callable's module).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from jobrunner.domain.durations import MAX_DURATION_S, parse_duration
from jobrunner.domain.priority import DEFAULT_PRIORITY, NAMED_PRIORITIES, parse_priority
from jobrunner.domain.retry import Backoff
from jobrunner.domain.sizes import parse_size

# \Z, not $: "$" also matches before a trailing newline
CALLABLE_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][\w.\-]*\Z")
DEFAULT_QUEUE = "default"
MAX_NESTING = 100  # JSON deeper than this cannot be pickled to a worker (or parsed back) reliably
MAX_JOB_ID = 2**63 - 1  # ids are SQLite/PostgreSQL 64-bit integers
EARLIEST_TIME = 0.0  # 1970-01-01T00:00Z
LATEST_TIME = 253_402_214_400.0  # 9999-12-31T00:00Z: shown in any local zone, it is still year 9999
TIME_RANGE_TEXT = "from 1970 to 9999-12-30"

#: Keys a job may set, in JSON lines and in `[tasks.NAME]` tables.
JOB_KEYS = (
    "name", "command", "callable", "args", "kwargs", "queue", "priority", "retries",
    "timeout", "backoff", "retry_on", "retry_on_exit_codes", "tags", "metadata", "cwd", "env",
    "unique_key", "on_conflict", "memory", "cpu_time", "max_log_size",
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
    unique_key: str | None = None  # held by at most one unfinished job (the database enforces it)
    on_conflict: str = "reuse"  # when a job holds the key already: one of ON_CONFLICT
    memory_limit: int | None = None  # bytes its processes may use (`memory`); over it the attempt fails
    cpu_time_limit: float | None = None  # seconds of CPU (`cpu_time`), counted per process without a cgroup
    max_log_size: int | None = None  # bytes its log may hold: head and tail kept, the middle cut


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
    args = [] if args is None else _json_container("args", args, list, "a list")
    if command is not None and args:
        raise SpecError("args", "args are for callables; put a shell job's arguments in its command")
    name = _name(get("name"), task, command, target)
    kwargs = get("kwargs")
    kwargs = {} if kwargs is None else _json_container("kwargs", kwargs, dict, "a table/object of arguments")
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
    spec = JobSpec(
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
        {} if metadata is None else _json_container("metadata", metadata, dict, "a table/object", True),
        None if cwd is None else _text("cwd", _optional_str("cwd", cwd)),
        {} if env is None else _env(env),
        task,
    )
    unique_key, on_conflict = get("unique_key"), get("on_conflict")
    if unique_key is not None or on_conflict is not None:
        spec.unique_key, spec.on_conflict = _uniqueness(unique_key, on_conflict)
    memory, cpu_time, log_size = get("memory"), get("cpu_time"), get("max_log_size")
    if memory is not None:
        spec.memory_limit = _memory(memory)
    if cpu_time is not None:
        spec.cpu_time_limit = _cpu_time(cpu_time)
    if log_size is not None:
        spec.max_log_size = log_size_limit("max_log_size", log_size)
    return spec


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
        if "\0" in value:
            raise SpecError("command", _NUL)
        return ["/bin/sh", "-c", value]
    if isinstance(value, list) and value and all([isinstance(part, str) for part in value]):
        if "\0" in "".join(value):  # no system call takes it: the worker would fail every attempt
            raise SpecError("command", _NUL)
        return list(value)  # not UTF-8 (from argv) is fine: stored escaped, run as the same bytes
    raise SpecError("command", "must be a non-empty list of strings or a shell string")


_NUL = "must not contain a NUL byte (\\0)"


def _text(key: str, value: str) -> str:
    """A string for a text column: no NUL byte, and UTF-8 (argv can carry bytes that are not)."""
    if "\0" in value:
        raise SpecError(key, _NUL)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise SpecError(key, f"{value!r} is not valid UTF-8 text") from None
    return value


def _json_container(key: str, value: Any, kind: type, what: str, no_nul: bool = False) -> Any:
    """A copy of `value`, which must be a `kind` (list or dict) holding only JSON (see _json)."""
    if not isinstance(value, kind):
        raise SpecError(key, f"must be {what}, got {type(value).__name__}")
    _json(key, value, no_nul)
    return kind(value)


def _json(key: str, value: Any, no_nul: bool = False, depth: int = 1) -> None:
    """Refuse `value` (a list or dict) unless JSON holds it as it is: strings, finite numbers,
    true/false, null, lists and objects with string keys, at most MAX_NESTING deep; with
    `no_nul`, no NUL byte in any string. Recursion stops at MAX_NESTING, cycles included."""
    if depth > MAX_NESTING:
        raise SpecError(key, f"nested more than {MAX_NESTING} levels deep")
    if isinstance(value, dict):
        for name in value:
            if type(name) is not str:
                raise SpecError(key, f"keys must be strings, got {type(name).__name__} {name!r}")
        if no_nul and "\0" in "".join(value):
            raise SpecError(key, _NUL)
        value = value.values()
    for item in value:
        kind = type(item)
        if kind is str:
            if no_nul and "\0" in item:
                raise SpecError(key, _NUL)
        elif kind is int or kind is bool or item is None:
            pass
        elif kind is dict or kind is list or kind is tuple:
            _json(key, item, no_nul, depth + 1)
        elif kind is float:
            if item != item or item in (_INF, -_INF):
                raise SpecError(key, f"{item!r} is not a JSON number")
        else:
            _json_other(key, item, no_nul, depth)


_INF = float("inf")


def _json_other(key: str, item: Any, no_nul: bool, depth: int) -> None:
    """The rare case: subclasses of JSON's types (an IntEnum, an OrderedDict) or something else."""
    if isinstance(item, str):
        if no_nul and "\0" in item:
            raise SpecError(key, _NUL)
    elif isinstance(item, bool | int):
        pass
    elif isinstance(item, float):
        _json(key, [float(item)], no_nul, depth)
    elif isinstance(item, dict | list | tuple):
        _json(key, item, no_nul, depth + 1)
    else:
        raise SpecError(
            key, f"{type(item).__name__} is not JSON-serialisable (use strings, numbers, "
            "true/false, null, lists and dicts with string keys)"
        )  # fmt: skip


def _callable(value: Any) -> str:
    if not isinstance(value, str) or not CALLABLE_PATTERN.match(value):
        raise SpecError("callable", f"{value!r} is not an import path like 'package.module:function'")
    return value


def _name(value: Any, task: str | None, command: list[str] | None, target: str | None) -> str:
    if value is not None:
        if not isinstance(value, str) or not value.strip():
            raise SpecError("name", "must be a non-empty string")
        return _text("name", value.strip())
    if task:
        return task
    if target:
        return target.rpartition(":")[2]
    assert command is not None
    if command[:2] == ["/bin/sh", "-c"]:
        name = command[2].split()[0].rsplit("/", 1)[-1] if command[2].split() else "sh"
    else:
        name = command[0].rsplit("/", 1)[-1]
    return name if name.isascii() else _displayable(name)


def _displayable(text: str) -> str:
    """A derived name as UTF-8 text: bytes from argv that are not UTF-8 shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


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


def _duration(value: Any) -> float:
    return parse_duration(value, MAX_DURATION_S)


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    seconds = _convert("timeout", _duration, value)
    if seconds <= 0:
        raise SpecError("timeout", "must be longer than zero (leave it out for no timeout)")
    return seconds


def _backoff(value: Any) -> Backoff:
    if value is None:
        return Backoff()
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return Backoff(base=_convert("backoff", _duration, value))
    if not isinstance(value, dict):
        raise SpecError("backoff", 'must be a duration ("5s") or a table {base, factor, max}')
    allowed = ("base", "factor", "max")
    for key in value:
        if key not in allowed:
            raise SpecError(f"backoff.{key}", unknown_key_message(key, allowed))
    base = _convert("backoff.base", _duration, value.get("base", Backoff.base))
    top = _convert("backoff.max", _duration, value.get("max", Backoff.max))
    factor = value.get("factor", Backoff.factor)
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not 1 <= factor <= 100:
        raise SpecError("backoff.factor", f"{factor!r} must be a number from 1 to 100")
    return Backoff(base=base, factor=float(factor), max=top)


def _str_list(key: str, value: Any) -> list[str]:
    _of_type(key, value, list, "a list of strings")
    for item in value:
        if not isinstance(item, str) or not item:
            raise SpecError(key, "must be a list of non-empty strings")
        if "\0" in item:
            raise SpecError(key, _NUL)
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
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise SpecError("env", f"{key!r} is not a variable name (non-empty, without '=' or NUL)")
        if not isinstance(item, str):
            raise SpecError(f"env.{key}", "environment values must be strings")
        if "\0" in item:
            raise SpecError(f"env.{key}", _NUL)
    return dict(value)


#: What a submit does when an unfinished job holds its unique key: `reuse` that job (its id is
#: the answer), `replace` it (cancelled, if it has not started), or `reject` the submit.
ON_CONFLICT = ("reuse", "replace", "reject")
MAX_UNIQUE_KEY = 500  # characters: a PostgreSQL index entry must stay under about 2,700 bytes


def _uniqueness(key: Any, on_conflict: Any) -> tuple[str | None, str]:
    if key is not None:
        if not isinstance(key, str) or not key.strip():
            raise SpecError("unique_key", "must be a non-empty string")
        if len(key) > MAX_UNIQUE_KEY:
            raise SpecError("unique_key", f"is {len(key)} characters long: at most {MAX_UNIQUE_KEY}")
        key = _text("unique_key", key)
    if on_conflict is None:
        return key, "reuse"
    if not isinstance(on_conflict, str) or on_conflict not in ON_CONFLICT:
        raise SpecError("on_conflict", f"{on_conflict!r} is not one of {', '.join(ON_CONFLICT)}")
    if key is None:
        raise SpecError("on_conflict", "goes with a unique key: give unique_key (--unique-key) too")
    return key, on_conflict


#: Below these a limit is a typo ("memory = 512" meant megabytes): no interpreter starts in
#: less than a mebibyte, and a log needs room for its header and the note where it was cut.
MIN_MEMORY = 1 << 20
MIN_LOG_SIZE = 1 << 10
MIN_CPU_TIME_S = 1.0  # the system counts CPU time in whole seconds


def _memory(value: Any) -> int:
    size = _convert("memory", parse_size, value)
    if size < MIN_MEMORY:
        raise SpecError("memory", f"{value!r} is less than 1M: give a size like \"512M\" or \"2G\"")
    return size


def _cpu_time(value: Any) -> float:
    seconds = _convert("cpu_time", _duration, value)
    if seconds < MIN_CPU_TIME_S:
        raise SpecError("cpu_time", f"{value!r} is less than 1s (CPU time is counted in whole seconds)")
    return seconds


def log_size_limit(key: str, value: Any) -> int:
    """max_log_size (of a job, or [daemon]'s default): a size of at least 1K."""
    size = _convert(key, parse_size, value)
    if size < MIN_LOG_SIZE:
        raise SpecError(key, f"{value!r} is less than 1K: give a size like \"50M\"")
    return size


def job_ids(key: str, value: Any) -> list[int]:
    """Ids of existing jobs (`after`): one or a list of whole numbers from 1 to 2**63-1."""
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 0 < item <= MAX_JOB_ID:
            raise SpecError(key, f"{item!r} is not a job id (a whole number from 1 to {MAX_JOB_ID})")
    return list(items)
