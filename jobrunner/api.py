"""The Python API: `submit(...)` and the `@task` decorator, over the same store the CLI uses."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from jobrunner.domain.jobspec import CALLABLE_PATTERN, JobSpec, SpecError, build_spec
from jobrunner.errors import UsageError

if TYPE_CHECKING:
    from jobrunner.store.db import Store

P = ParamSpec("P")
R = TypeVar("R")
_stores: dict[tuple[int, str], Store] = {}


def connect(db: str | None = None, config: str | None = None) -> Store:
    """The store this process uses for `db` (or the configured default), opened once per process."""
    from jobrunner.config import load_config, resolve_db_target
    from jobrunner.store import open_store

    cfg = load_config(config) if db is None or config else None
    target = resolve_db_target(db, cfg)
    key = (os.getpid(), target)  # a forked child opens its own connection
    if key not in _stores:
        _stores[key] = open_store(target, durability=cfg.durability if cfg else "normal")
    return _stores[key]


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
    run_at: float | None = None,
    **options: Any,
) -> int:
    """Store a job and return its id once committed.

    `target` is a function, a "pkg.mod:func" path, an argv list (shell job) or a shell
    string; or pass `task=` to use a [tasks.NAME] from jobs.toml. Options: name, queue,
    priority, retries, timeout, backoff, tags, metadata, cwd, env, retry_on,
    retry_on_exit_codes.
    """
    fields: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    if target is not None:
        if callable(target):
            fields["callable"] = callable_path(target)
        elif isinstance(target, str) and CALLABLE_PATTERN.match(target):
            fields["callable"] = target
        else:
            fields["command"] = target if isinstance(target, str) else list(target)
    if args:
        fields["args"] = list(args)
    if kwargs:
        fields["kwargs"] = dict(kwargs)
    _check_json(fields)
    spec = _spec(fields, task)
    spec.run_at = run_at
    if spec.kind == "shell" and spec.cwd is None:
        spec.cwd = os.getcwd()
    from jobrunner.store import repo

    return repo.submit(connect(db), spec, time.time())


def _spec(fields: dict[str, Any], task: str | None) -> JobSpec:
    if task is not None:
        from jobrunner.config import load_config

        return load_config().task_spec(task, fields)
    try:
        return build_spec(fields)
    except SpecError as exc:
        raise UsageError(str(exc)) from None


def _check_json(fields: dict[str, Any]) -> None:
    for key in ("args", "kwargs", "metadata"):
        try:
            json.dumps(fields.get(key))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{key} must be JSON-serialisable: {exc}") from None


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
        return submit(self.path, args=args, kwargs=kwargs, **self.options)

    def with_options(self, **options: Any) -> Task[P, R]:
        """The same task with some options changed for the next submits (priority, queue, ...)."""
        return Task(self.func, {**self.options, **options})


def task(
    func: Callable[P, R] | None = None, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """`@task` or `@task(retries=3, timeout="5m", queue="emails")`."""
    build_spec({"callable": "a:b", **{k: v for k, v in options.items() if k not in ("db",)}})

    def wrap(f: Callable[P, R]) -> Task[P, R]:
        return Task(f, options)

    return wrap(func) if func is not None else wrap
