"""`jobrunner submit`: one job from options, a named task, or many from a JSON-lines file.

No Typer here: the command's options are declared in jobrunner.cli.jobs, and the fast path
(jobrunner.cli.fast) calls submit_job directly.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobrunner.cli.context import parse_job_ids
from jobrunner.cli.output import note
from jobrunner.domain.jobspec import (
    MAX_JOB_ID,
    MAX_NESTING,
    JobSpec,
    SpecError,
    build_spec,
)
from jobrunner.domain.starttime import run_time
from jobrunner.errors import NotFoundError, UsageError
from jobrunner.machine_checks import check_runs_here

if TYPE_CHECKING:
    from jobrunner.cli.context import AppState

OPTION_NAMES = {
    "name": "--name", "queue": "--queue", "priority": "--priority", "retries": "--retries",
    "timeout": "--timeout", "backoff": "--backoff", "tags": "--tag", "metadata": "--meta",
    "env": "--env", "cwd": "--cwd", "callable": "--call", "kwargs": "--arg",
    "unique_key": "--unique-key", "on_conflict": "--on-conflict", "memory": "--memory",
    "cpu_time": "--cpu-time", "max_log_size": "--max-log-size",
}  # fmt: skip


def parse_pairs(values: list[str] | None, option: str, decode: bool) -> dict[str, Any]:
    """KEY=VALUE options into a dict; with `decode`, VALUE is JSON when it parses (5, true, [1])."""
    pairs: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {item!r}")
        pairs[key] = _json_or_text(value) if decode else value
    return pairs


def parse_env(values: list[str]) -> dict[str, str]:
    """--env KEY=VALUE, or --env KEY for KEY's value in this environment: a secret then never
    shows in `ps` while submit runs. What the values may hold, build_spec checks (jobspec._env)."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"--env expects KEY=VALUE or KEY, got {item!r}")
        if not sep:
            if key not in os.environ:
                raise UsageError(f"--env {key}: {key} is not set in this environment: set it, or give {key}=VALUE")
            value = os.environ[key]
        pairs[key] = value
    return pairs


def read_env_file(path: str) -> dict[str, str]:
    """--env-file: KEY=VALUE lines (blank lines and # comments skipped), so secrets stay out of
    `ps` and shell history. Values are taken as written: no quotes removed, no expansion."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--env-file {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    pairs: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--env-file {path}:{number}: expected KEY=VALUE, got {line!r}")
        pairs[key.strip()] = value
    return pairs


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_when(at: str | None, delay: str | None, now: float) -> float | None:
    """--at (ISO time, local unless it has an offset) or --in (a duration) as epoch seconds."""
    try:
        return run_time(at, delay, now, "--at", "--in")
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def submit_job(
    app_state: AppState,
    words: list[str] | None = None,
    after_dashdash: int | None = None,
    *,
    call: str | None = None,
    arg: list[str] | None = None,
    name: str | None = None,
    queue: str | None = None,
    priority: str | None = None,
    retries: int | None = None,
    timeout: str | None = None,
    backoff: str | None = None,
    tag: list[str] | None = None,
    meta: list[str] | None = None,
    env: list[str] | None = None,
    env_file: str | None = None,
    cwd: str | None = None,
    at: str | None = None,
    delay: str | None = None,
    after: list[str] | None = None,
    from_file: str | None = None,
    unique_key: str | None = None,
    on_conflict: str | None = None,
    memory: str | None = None,
    cpu_time: str | None = None,
    max_log_size: str | None = None,
) -> None:
    """`jobrunner submit` once its options are parsed, by Typer or by the fast path.

    `words` are the positional words; the last `after_dashdash` of them came after `--`.
    """
    now = time.time()
    words = words or []
    command = words[len(words) - after_dashdash :] if after_dashdash is not None else []
    before = words[: len(words) - len(command)]

    if from_file is not None:
        if words or call:
            raise UsageError("--from-file takes the jobs from the file: drop the task, command or --call")
        if unique_key is not None or on_conflict is not None:
            raise UsageError("--from-file: give each line its own unique_key (and on_conflict) instead")
        if memory is not None or cpu_time is not None or max_log_size is not None:
            raise UsageError("--from-file: give each line its own memory, cpu_time and max_log_size instead")
        ids = submit_file(from_file, app_state, now)
        sys.stdout.write("".join(f"{i}\n" for i in ids))
        if ids:
            note(f"submitted {len(ids)} jobs (ids {ids[0]}-{ids[-1]})")
        return

    fields: dict[str, Any] = {}
    for key, value in (("name", name), ("queue", queue), ("priority", priority),
                       ("retries", retries), ("timeout", timeout), ("backoff", backoff),
                       ("cwd", cwd), ("unique_key", unique_key), ("on_conflict", on_conflict),
                       ("memory", memory), ("cpu_time", cpu_time), ("max_log_size", max_log_size)):  # fmt: skip
        if value is not None:
            fields[key] = value
    if tag:
        fields["tags"] = [t for item in tag for t in item.split(",") if t]
    if meta:
        fields["metadata"] = parse_pairs(meta, "--meta", decode=True)
    if env or env_file:
        fields["env"] = {**(read_env_file(env_file) if env_file else {}), **parse_env(env or [])}
    kwargs = parse_pairs(arg, "--arg", decode=True)

    task_name: str | None = None
    if len(before) > 1 or (before and call):
        raise UsageError(
            f"unexpected words {' '.join(before)!r}: put a shell command after --, "
            "e.g. jobrunner submit -- echo hello"
        )
    if before:
        task_name = before[0]
        if task_name not in app_state.config.tasks:
            raise UsageError(
                f"{task_name!r} is not a task in {app_state.config.path or 'any jobs.toml (none found)'}; "
                f"to run a shell command put it after --: jobrunner submit -- {task_name}"
            )
    if call:
        fields["callable"] = call
        if command:
            fields["args"] = [_json_or_text(word) for word in command]
    elif command:
        if task_name:
            raise UsageError("give a task name or a command after --, not both")
        fields["command"] = command
    elif not task_name:
        raise UsageError("nothing to run: give a task name, --call module:function, or -- COMMAND")
    if kwargs:
        if not call and not (task_name and "callable" in app_state.config.tasks[task_name]):
            raise UsageError("--arg is for Python callables (--call or a callable task)")
        fields["kwargs"] = kwargs

    spec = _spec(fields, task_name, app_state, where="")
    spec.run_at = parse_when(at, delay, now)
    spec.after = parse_job_ids(after or [], "--after: ")
    refuse_after_on_a_new_database(app_state, spec.after)
    if spec.unique_key is not None:
        _submit_keyed(app_state, spec, now)
        return
    from jobrunner.store import repo

    job_id = repo.submit(app_state.store, spec, now)
    sys.stdout.write(f"{job_id}\n")


def _submit_keyed(app_state: AppState, spec: JobSpec, now: float) -> None:
    """A submit with a unique key: the id of the job that holds it afterwards, new or not."""
    from jobrunner.store.keys import submit_keyed

    done = submit_keyed(app_state.store, spec, now)
    sys.stdout.write(f"{done.job_id}\n")
    if not done.created:
        note(f"job {done.job_id} holds unique key {spec.unique_key!r} already: its id, nothing new submitted")
    elif done.replaced is not None:
        note(f"cancelled job {done.replaced}, which held unique key {spec.unique_key!r}")


def _spec(fields: dict[str, Any], task_name: str | None, app_state: Any, where: str,
          local: bool | None = None) -> JobSpec:  # fmt: skip
    try:
        spec = app_state.config.task_spec(task_name, fields) if task_name else build_spec(fields)
        check_here(spec, app_state, local)
    except SpecError as exc:
        key = exc.key.split(".")[0]
        if task_name and key not in fields:
            raise UsageError(f"{where}task {task_name!r}: {exc}") from None
        if not where and key in OPTION_NAMES:  # from the command line: name the option
            raise UsageError(f"{OPTION_NAMES[key]}: {str(exc)[len(exc.key) + 2 :]}") from None
        raise UsageError(f"{where}{exc}") from None
    if spec.kind == "shell" and spec.cwd is None:
        spec.cwd = os.getcwd()  # a shell job runs where it was submitted from, like pueue
    return spec


def check_here(spec: JobSpec, app_state: Any, local: bool | None = None) -> None:
    """check_runs_here, which refuses nothing for a database URL (the daemon that runs the job
    may be on another host, with other directories and modules) but makes a relative cwd absolute."""
    if spec.cwd is None and spec.callable is None:
        return
    check_runs_here(spec, lambda: app_state.config, local if local is not None else "://" not in app_state.db_target)


def submit_file(source: str, app_state: Any, now: float) -> list[int]:
    """`submit --from-file`: validate every line, then store all the jobs in one transaction."""
    with _gc_paused():
        specs = read_job_lines(source, app_state, now)
        first_with_ids = next((s.after for s in specs if any(i > 0 for i in s.after)), [])
        refuse_after_on_a_new_database(app_state, first_with_ids)
        from jobrunner.store import repo

        return repo.submit_many(app_state.store, specs, now)


def refuse_after_on_a_new_database(app_state: AppState, after: list[int]) -> None:
    """A database not created yet holds no job to wait for: refuse now, before the store would
    create the file (a refused submit leaves nothing behind). Worded as dependencies.initial_status."""
    known = [i for i in dict.fromkeys(after) if i > 0]  # negative: earlier lines of the same file
    if known and app_state.database_missing:
        raise NotFoundError(f"--after: no job with id {', '.join(map(str, known))}")


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic GC off while thousands of lines become objects: none of them form cycles,
    and the collections their allocations trigger cost about as much as the parsing itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _resolve_after(after: Any, refs: dict[str, int]) -> list[int]:
    """Job ids, or refs of earlier lines (stored as -(index + 1) until their ids exist)."""
    if not isinstance(after, list):
        after = [after]
    resolved: list[int] = []
    for item in after:
        if isinstance(item, int) and not isinstance(item, bool) and 0 < item <= MAX_JOB_ID:
            resolved.append(item)
        elif isinstance(item, str) and item in refs:
            resolved.append(-(refs[item] + 1))
        else:
            raise UsageError(f"after: {item!r} is neither a job id nor the ref of an earlier line")
    return resolved


def read_job_lines(source: str, app_state: Any, now: float) -> list[JobSpec]:
    """Parse and validate every line before anything is written; errors name file:line and key."""
    label = "<stdin>" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {label}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{label}: not UTF-8 text") from None
    specs: list[JobSpec] = []
    refs: dict[str, int] = {}  # "ref" names of earlier lines -> their index
    cwd: str | None = None  # a shell job runs where it was submitted from: the same for every line
    local = "://" not in app_state.db_target  # check_here's question, answered once per file

    def config() -> Any:  # for check_runs_here: made once for the file, not once per line
        return app_state.config

    for number, line in enumerate(text.splitlines(), start=1):
        if not line or line.isspace():
            continue
        data = _parse_line(line, label, number)
        task_name = data.pop("task", None)
        at, delay = data.pop("at", None), data.pop("in", None)
        ref, after = data.pop("ref", None), data.pop("after", None)
        try:
            if task_name is not None:
                if not isinstance(task_name, str) or task_name not in app_state.config.tasks:
                    raise UsageError(f"task: unknown task {task_name!r}")
                spec = _spec(data, task_name, app_state, f"{label}:{number}: ", local)
            else:
                spec = build_spec(data)  # what _spec does for a line, minus a getcwd() per line
                if spec.cwd is not None or spec.callable is not None:
                    check_runs_here(spec, config, local)  # check_here, inline: it runs per line
                if spec.kind == "shell" and spec.cwd is None:
                    spec.cwd = cwd = cwd or os.getcwd()
            if at is not None or delay is not None:
                spec.run_at = run_time(at, delay, now)
            if after is not None:
                spec.after = _resolve_after(after, refs)
            if ref is not None:
                if not isinstance(ref, str) or not ref or ref in refs:
                    raise UsageError(f"ref: {ref!r} must be a new, non-empty name for this line")
                refs[ref] = len(specs)
        except SpecError as exc:
            raise UsageError(f"{label}:{number}: {exc}") from None
        except UsageError as exc:
            where, message = f"{label}:{number}: ", str(exc)
            raise UsageError(message if message.startswith(where) else where + message) from None
        specs.append(spec)
    if not specs:
        raise UsageError(f"{label}: no jobs in it (one JSON object per line)")
    return specs


_scan_json = json.JSONDecoder().scan_once  # the C scanner json.loads ends up in, minus its wrappers


def _parse_line(line: str, label: str, number: int) -> dict[str, Any]:
    """One line's JSON object; anything unusual (spaces around it, an error) goes through json.loads."""
    try:
        data, end = _scan_json(line, 0)
    except (StopIteration, ValueError, RecursionError):
        end = -1
    if end != len(line):
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{label}:{number}: invalid JSON: {exc}") from None
        except RecursionError:  # thousands of brackets deep: the parser's own limit
            raise UsageError(f"{label}:{number}: nested more than {MAX_NESTING} levels deep") from None
    if not isinstance(data, dict):
        raise UsageError(f"{label}:{number}: expected a JSON object, got {type(data).__name__}")
    return data
