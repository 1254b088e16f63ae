"""The Python API: `submit(...)` and the `@task` decorator, over the same store the CLI uses."""

from __future__ import annotations

import functools
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from jobrunner.domain.jobspec import (
    CALLABLE_PATTERN,
    JobSpec,
    SpecError,
    build_spec,
    job_ids,
)
from jobrunner.domain.starttime import run_time
from jobrunner.errors import UsageError
from jobrunner.machine_checks import check_runs_here

if TYPE_CHECKING:
    from jobrunner.config import Config
    from jobrunner.store.db import Store

P = ParamSpec("P")
R = TypeVar("R")
_stores: dict[tuple[int, str], Store] = {}
# What connect() and _current_config() found, keyed on everything that decides it: arguments,
# environment variables and working directory; valid while the config files it could read
# (their stamps) are unchanged. Looking again costs two stat calls instead of a config load.
_places: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[Any, ...], str, str]] = {}
_configs: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[Any, ...], Config]] = {}
SETTLED_S = 2.0  # a config file changed this recently is read again on every call (mtimes are coarse)
RECHECK_S = 1.0  # a cached answer looks at the config files again after this long: a submit
# after an idle moment pays ~30 us per system call on a VM, and a config edit shows within 1 s
_checked: dict[tuple[Any, ...], float] = {}
# The cache keys read the environment's own dict (encoded names and values, kept in step by
# os.environ[...] = ...): os.environ.get encodes and decodes on every call, a sixth of a submit.
_RAW_ENVIRON: Any = getattr(os.environ, "_data", None)
if isinstance(_RAW_ENVIRON, dict) and isinstance(next(iter(_RAW_ENVIRON), b""), bytes):
    _JOBRUNNER_DB, _JOBRUNNER_CONFIG, _XDG_CONFIG_HOME, _XDG_STATE_HOME, _HOME = (
        os.environ.encodekey(name)  # type: ignore[attr-defined]
        for name in ("JOBRUNNER_DB", "JOBRUNNER_CONFIG", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "HOME")
    )
else:  # not CPython on POSIX: the public mapping, by name
    _RAW_ENVIRON = os.environ
    _JOBRUNNER_DB, _JOBRUNNER_CONFIG, _XDG_CONFIG_HOME, _XDG_STATE_HOME, _HOME = (
        "JOBRUNNER_DB", "JOBRUNNER_CONFIG", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "HOME"
    )


def connect(db: str | None = None, config: str | None = None) -> Store:
    """The store this process uses for `db` (or the configured default), opened once per process.

    Which database and durability apply is decided as before on every call (arguments,
    $JOBRUNNER_DB, the config file, XDG directories), but answered from a cache while
    none of what decides it has changed.
    """
    target, durability = _db_place(db, config)
    store_key = (os.getpid(), target)  # a forked child opens its own connection
    store = _stores.get(store_key)
    if store is None:
        with _opening:  # threads of a new process: one opens (and migrates), the others use it
            store = _stores.get(store_key)
            if store is None:
                from jobrunner.store import open_store

                store = _stores[store_key] = open_store(target, durability=durability)
    return store


_opening = threading.Lock()


def _fresh_lock_in_child() -> None:
    """In a forked child (gunicorn --preload, multiprocessing): a fresh lock (a fork while
    another thread opened a store must not leave it held), and the parent's stores set aside,
    never used and never closed here: closing them in the child would finalise SQLite
    connections the parent still uses. The child opens its own on first use."""
    global _opening
    _opening = threading.Lock()
    _inherited.extend(_stores.values())
    _stores.clear()


_inherited: list[Store] = []  # a forked child's copies of the parent's stores: kept, untouched


os.register_at_fork(after_in_child=_fresh_lock_in_child)


def _db_place(db: str | None, config: str | None) -> tuple[str, str]:
    """(database target, durability) for connect(db, config), without opening anything."""
    if db is not None and type(db) is not str:
        db = _path_text("db", db)
    env = _RAW_ENVIRON.get
    if db is not None and not config:  # no config involved, as before
        key: tuple[Any, ...] = (db, env(_HOME))
    else:
        key = (db, config, env(_JOBRUNNER_DB), env(_JOBRUNNER_CONFIG), os.getcwd(),
               env(_XDG_CONFIG_HOME), env(_XDG_STATE_HOME), env(_HOME))  # fmt: skip
    place = _places.get(key)
    if place is None or _changed(key, place[0], place[1]):
        place = _find_place(key, db, config)
    return place[2], place[3]


def _path_text(name: str, value: Any) -> str:
    """A path argument as text: a str or a pathlib.Path; anything else is a usage error."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise UsageError(f"{name}: must be a path or URL string, got {type(value).__name__}")
    return value


def _changed(key: tuple[Any, ...], paths: tuple[str, ...], stamps: tuple[Any, ...]) -> bool:
    """Whether a config file behind a cached answer changed; looked at once per RECHECK_S."""
    now = time.monotonic()
    if now - _checked.get(key, -RECHECK_S) < RECHECK_S:
        return False
    _checked[key] = now
    return _file_stamps(paths) != stamps


def _find_place(key: tuple[Any, ...], db: str | None, config: str | None) -> tuple[Any, ...]:
    from jobrunner.config import resolve_db_target

    if db is not None and not config:
        place: tuple[Any, ...] = ((), (), resolve_db_target(db, None), "normal")
    else:
        paths, stamps, cfg = _load_config(config)
        place = (paths, stamps, resolve_db_target(db, cfg), cfg.durability)
    if _settled(place[1]):
        _places[key] = place
    return place


def _current_config(explicit: str | None = None) -> Config:
    """load_config(explicit), read again only when a file it could find has changed or appeared."""
    environ = os.environ
    key = (explicit, environ.get("JOBRUNNER_CONFIG"), os.getcwd(), environ.get("XDG_CONFIG_HOME"),
           environ.get("HOME"))  # fmt: skip
    cached = _configs.get(key)
    if cached is not None and _file_stamps(cached[0]) == cached[1]:
        return cached[2]
    loaded = _load_config(explicit)
    if _settled(loaded[1]):
        _configs[key] = loaded
    return loaded[2]


def _load_config(explicit: str | None) -> tuple[tuple[str, ...], tuple[Any, ...], Config]:
    """load_config(explicit), with the files it could have read and their stamps beforehand."""
    from pathlib import Path

    from jobrunner.config import default_config_path, load_config

    chosen = explicit or os.environ.get("JOBRUNNER_CONFIG")  # the files config.find_config looks at
    if chosen:
        paths: tuple[str, ...] = (str(Path(chosen).expanduser()),)
    else:
        paths = (str(Path.cwd() / "jobs.toml"), str(default_config_path()))
    stamps = _file_stamps(paths)  # before reading: a change while we read shows up next time
    return paths, stamps, load_config(explicit)


def _settled(stamps: tuple[Any, ...]) -> bool:
    """No file changed within SETTLED_S: a later change will show in its stamp."""
    recent = (time.time() - SETTLED_S) * 1e9
    return all(stamp is None or max(stamp[0], stamp[1]) < recent for stamp in stamps)


def _file_stamps(paths: tuple[str, ...]) -> tuple[Any, ...]:
    """What tells a changed file apart, per path; None for no regular file there."""
    return tuple([_file_stamp(path) for path in paths])


def _file_stamp(path: str) -> Any:
    if not os.access(path, os.F_OK):  # the usual case, answered without raising an exception
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


def callable_path(func: Callable[..., Any]) -> str:
    """'package.module:function' for an importable function; refuses lambdas and __main__."""
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise UsageError(
            f"{qualname or func!r} cannot be run by a worker: define it at the top level of an "
            "importable module (not __main__, not a lambda or nested function)"
        )
    return f"{module}:{qualname}"


def submit(
    target: str | Sequence[str] | Callable[..., Any] | None = None,
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    task: str | None = None,
    db: str | None = None,
    at: Any = None,
    delay: str | float | None = None,
    after: int | Sequence[int] = (),
    run_at: Any = None,
    **options: Any,
) -> int:
    """Store a job and return its id once committed.

    `target` is a function, a "pkg.mod:func" path, an argv list (shell job) or a shell
    string; or pass `task=` to use a [tasks.NAME] from jobs.toml. `at` is when it may start
    (a datetime, ISO 8601 text as `submit --at` takes, or epoch seconds), `delay` how long
    from now ("10m" or seconds; `in` is a Python keyword), `after` the ids it waits for.
    Options: name, queue, priority, retries, timeout, backoff, tags, metadata, cwd, env,
    retry_on, retry_on_exit_codes, unique_key, on_conflict, memory ("2G"), cpu_time ("10m"),
    max_log_size ("50M"). A bad value raises UsageError
    naming it; nothing is stored. With `unique_key`, at most one unfinished job holds the key:
    while one does, `on_conflict` "reuse" (the default) returns its id, "replace" cancels it
    (if it has not started) and stores this one, "reject" raises KeyHeldError (its `job_id`).
    `run_at` is the old name of `at`.
    """
    fields: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    cwd = fields.get("cwd") if options else None
    if cwd is not None and type(cwd) is not str and isinstance(cwd, os.PathLike):
        fields["cwd"] = _path_text("cwd", cwd)  # a pathlib.Path
    found_here = False  # a function object's module is imported already: nothing to look up
    if target is not None:
        if callable(target):
            fields["callable"] = callable_path(target)
            found_here = True
        elif isinstance(target, str):
            fields["callable" if CALLABLE_PATTERN.match(target) else "command"] = target
        elif isinstance(target, _LIST_OR_TUPLE):
            fields["command"] = list(target)
        else:
            raise UsageError(
                f"target: {type(target).__name__} is not a job: give a function, 'package.module:function', "
                "an argv list or a shell string"
            )  # fmt: skip
    if args:
        fields["args"] = list(args) if isinstance(args, _LIST_OR_TUPLE) else args
    if kwargs:
        fields["kwargs"] = kwargs
    spec = _spec(fields, task)
    if at is not None or delay is not None or run_at is not None or after != ():
        _when_and_after(spec, at, delay, run_at, after)
    if spec.cwd is not None or (spec.callable is not None and not found_here):
        _check_here(spec, db)
    if spec.kind == "shell" and spec.cwd is None:
        spec.cwd = os.getcwd()
    return _repo().submit(connect(db), spec, time.time())


_LIST_OR_TUPLE = (list, tuple)  # built once: `list | tuple` in an isinstance costs a new union per call


@functools.cache
def _repo() -> Any:
    """jobrunner.store.repo, imported on first use (importing jobrunner stays cheap)."""
    from jobrunner.store import repo

    return repo


def _spec(fields: dict[str, Any], task: str | None) -> JobSpec:
    try:
        if task is not None:
            return _current_config().task_spec(task, fields)
        return build_spec(fields)
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def _when_and_after(spec: JobSpec, at: Any, delay: Any, run_at: Any, after: Any) -> None:
    """Set when the job may start and what it waits for, as submit's arguments say."""
    at_key = "at"
    if run_at is not None:
        import warnings

        warnings.warn("submit(run_at=...) is deprecated: use at=", DeprecationWarning, stacklevel=3)
        if at is not None:
            raise UsageError("give at or run_at (its old name), not both")
        at, at_key = run_at, "run_at"
    try:
        spec.run_at = run_time(at, delay, time.time(), at_key, "delay")
        if after is not None and (after or not isinstance(after, _LIST_OR_TUPLE)):  # 0 is no id
            spec.after = job_ids("after", after)
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def _check_here(spec: JobSpec, db: str | None) -> None:
    """check_runs_here: its refusals where the daemon shares this machine (a SQLite file, not a
    URL); a relative cwd made absolute either way."""
    try:
        check_runs_here(spec, _current_config, "://" not in _db_place(db, None)[0])
    except SpecError as exc:
        raise UsageError(str(exc)) from None


class Task(Generic[P, R]):
    """A function that can also be queued: `fn.submit(*args, **kwargs)` stores a job that runs it."""

    def __init__(self, func: Callable[P, R], options: dict[str, Any]) -> None:
        self.func = func
        self.options = options
        functools.update_wrapper(self, func)

    @property
    def path(self) -> str:
        return callable_path(self.func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Queue a run of this function with these arguments; returns the job id."""
        return submit(self.func, args=args, kwargs=kwargs, **self.options)

    def with_options(self, **options: Any) -> Task[P, R]:
        """The same task with some options changed for the next submits (priority, queue, ...)."""
        return Task(self.func, {**self.options, **options})


_SUBMIT_ONLY = ("db", "at", "delay", "run_at", "after")  # submit's own arguments, not job fields


def task(
    func: Callable[P, R] | None = None, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """`@task` or `@task(retries=3, timeout="5m", queue="emails")`; bad options raise UsageError here."""
    job_options = {k: v for k, v in options.items() if k not in _SUBMIT_ONLY and v is not None}
    spec = _spec({"callable": "a:b", **job_options}, None)
    _when_and_after(spec, *(options.get(k) for k in ("at", "delay", "run_at")), options.get("after", ()))

    def wrap(f: Callable[P, R]) -> Task[P, R]:
        return Task(f, options)

    return wrap(func) if func is not None else wrap
