"""The door's checks that look at this machine: a job's working directory exists, and the
module of its callable can be found where the daemon imports from. Kept apart from the pure
rules (domain/jobspec.py) because they do I/O, and callers skip them where the daemon may run
on another host (a database URL)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from jobrunner.domain.jobspec import JobSpec, SpecError

_found_modules: set[str] = set()  # top-level modules found once stay found for this process
_found_callables: set[str] = set()  # and the callables in them: one set lookup per bulk line


def check_runs_here(spec: JobSpec, config: Callable[[], Any] | None = None, local: bool = True) -> None:
    """Refuse, at submit, what a daemon on this machine could not run: a cwd that is not a
    directory here, or a callable whose top-level module is nowhere to import from.

    The one part of the door that looks at the machine, so callers pass local=False where the
    daemon may run elsewhere (a database URL): then nothing is refused. Either way a relative
    cwd becomes absolute: it means "from here", wherever the job runs.
    The module is looked up, never imported (importing runs the user's code); `config` gives
    the config whose `[daemon] python_path` the daemon adds, asked only when sys.path fails.
    """
    cwd, target = spec.cwd, spec.callable
    if cwd is not None:
        if local and not os.path.isdir(cwd):
            what = "is not a directory" if os.path.exists(cwd) else "does not exist"
            raise SpecError("cwd", f"{cwd} {what}")
        spec.cwd = os.path.abspath(cwd)
    if local and target is not None and target not in _found_callables:
        top = target.partition(":")[0].partition(".")[0]
        if top not in _found_modules and not _module_found(top, config):
            raise SpecError(
                "callable", f"no module named {top!r} to import {target!r} from: the daemon "
                "imports callables from its sys.path (installed packages, PYTHONPATH, its working "
                "directory with `python -m jobrunner`) and [daemon] python_path in jobs.toml"
            )  # fmt: skip
        _found_callables.add(target)


def _module_found(top: str, config: Callable[[], Any] | None) -> bool:
    """Whether `top` can be imported from sys.path, the working directory or the configured
    python_path; True when that cannot be told (a finder that fails): refuse only the certain."""
    import importlib
    import importlib.machinery
    import importlib.util

    if top in sys.modules:
        _found_modules.add(top)
        return True
    try:
        for attempt in range(2):
            if attempt:
                importlib.invalidate_caches()  # a module written a moment ago (directory mtimes are coarse)
            if importlib.util.find_spec(top) is not None:
                break
            places = [os.getcwd(), *_python_path(config() if config is not None else None)]
            if importlib.machinery.PathFinder.find_spec(top, places) is not None:
                break
        else:
            return False
    except Exception:  # a finder's own failure: we cannot tell, so we do not refuse
        return True
    _found_modules.add(top)
    return True


def _python_path(config: Any) -> list[str]:
    """`[daemon] python_path` of a config, already resolved to directories by config.py."""
    return list(getattr(config, "python_path", None) or [])


RLIMIT_MECHANISM = "RLIMIT_AS/RLIMIT_CPU per job process"


def delegated_cgroup() -> str | None:
    """This process's own cgroup v2 directory if it is delegated to us (we may write it and its
    memory controller is there), else None: what a cgroup-based limit would need.

    Only looked at, never written: jobrunner applies limits with setrlimit for now."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            path = next((line[3:].strip() for line in handle if line.startswith("0::")), None)
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return None
    # mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ...
    roots = [fields[4] for fields in mounts if "-" in fields and fields[fields.index("-") + 1:][:1] == ["cgroup2"]]
    if path is None or not roots:
        return None
    directory = os.path.join(roots[0], path.lstrip("/"))
    try:
        with open(os.path.join(directory, "cgroup.controllers"), encoding="utf-8") as handle:
            controllers = handle.read().split()
    except OSError:
        return None
    writable = os.access(directory, os.W_OK) and os.access(os.path.join(directory, "cgroup.subtree_control"), os.W_OK)
    return directory if "memory" in controllers and writable else None


def limits_mechanism() -> str:
    """What `doctor` says about how a job's memory and cpu_time limits are enforced here."""
    cgroup = delegated_cgroup()
    if cgroup is None:
        return f"resource limits: {RLIMIT_MECHANISM} (no delegated cgroup v2)"
    return f"resource limits: {RLIMIT_MECHANISM} (a delegated cgroup v2 is at {cgroup}; jobrunner does not use it yet)"
