"""Process trees: find every process a job started, and end them all.

A process group is not the whole tree: a job's child may leave it with `setsid`. So every
worker is a child subreaper (PR_SET_CHILD_SUBREAPER): whatever a job leaves behind when
its parent exits is re-parented to the worker instead of to init, so the worker's
descendants are exactly the job's processes. The daemon is a subreaper too, so a worker
killed with SIGKILL hands its job's processes to the daemon, which ends them.

Linux only; elsewhere these are no-ops and a job's process group is all that is stopped.
(A cgroup would also catch a process that double-forks away from a subreaper-less system;
none is delegated to us in the environments we run in, so the subreaper is the mechanism.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator

PR_SET_CHILD_SUBREAPER = 36
_prctl: Callable[..., int] | bool | None = None


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process; False where unsupported."""
    global _prctl
    if not sys.platform.startswith("linux"):
        return False
    if _prctl is None:
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False
    return bool(_prctl) and _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0  # type: ignore[operator]


def _processes(part: str = "stat") -> Iterator[tuple[int, bytes]]:
    """(pid, contents of /proc/PID/`part`) for every process that can be read now."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/{part}", "rb") as handle:
                    yield int(name), handle.read()
            except OSError:  # gone meanwhile, or another user's
                continue


def _states() -> Iterator[tuple[int, bytes, int]]:
    """(pid, state letter, parent pid) of every process."""
    for pid, stat in _processes():
        fields = stat.rsplit(b") ", 1)[-1].split()
        if len(fields) > 1:
            yield pid, fields[0], int(fields[1])


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process, from /proc."""
    return {pid: parent for pid, state, parent in _states() if state != b"Z"}


def descendants(root: int, exclude: Iterable[int] = (), parents: dict[int, int] | None = None) -> list[int]:
    """Every live process below `root` (not `root` itself), skipping the subtrees of `exclude`."""
    children: dict[int, list[int]] = {}
    for pid, parent in (_parents() if parents is None else parents).items():
        children.setdefault(parent, []).append(pid)
    skip = set(exclude)
    found, frontier = [], [root]
    while frontier:
        for pid in children.get(frontier.pop(), ()):
            if pid not in skip:
                found.append(pid)
                frontier.append(pid)
    return found


def signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def reap_children() -> bool:
    """Collect every exited child of this process; True while some child is still alive.

    Call only when no other code waits for this process's children (subprocess, multiprocessing)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def end_descendants(grace: float, term_first: bool = True) -> int:
    """End every process below this one: SIGTERM, then SIGKILL after `grace` seconds, until
    none is left. For a worker between jobs, whose only children are what a job left behind.
    Returns how many processes were found (0 on the fast path: no child at all)."""
    if not reap_children():
        return 0  # one system call: the common case, a job that left nothing behind
    me = os.getpid()
    found = descendants(me)
    if term_first:
        signal_all(found, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while reap_children() and time.monotonic() < deadline:
            if not descendants(me):
                break
            time.sleep(0.01)
    while True:  # SIGKILL whatever is left, again and again: a process may fork meanwhile
        left = descendants(me)
        if not left:
            reap_children()
            return len(found)
        signal_all(left, signal.SIGKILL)
        reap_children()
        time.sleep(0.002)


def end_orphans(known: set[int], deadline_s: float = 5.0) -> list[int]:
    """For the daemon: SIGKILL every child of this process that it did not start itself
    (`known`: its workers, forkserver, resource tracker, notifier commands), with their
    descendants, and wait until they are gone. Such children are what a dead worker's job
    left: the daemon is their subreaper. Returns the pids ended.

    Looked for again after every kill: a process whose parent dies is re-parented to us a
    moment later, so one look would miss it."""
    me = os.getpid()
    ended: list[int] = []
    deadline = time.monotonic() + deadline_s
    while True:
        # One look at /proc decides both: a process killed a moment ago may be a zombie by now,
        # and a zombie still answers `kill -0` (a job's pidfile check would see its last attempt
        # alive), so the loop ends only on a look with neither a live one nor a zombie of ours.
        states = list(_states())
        zombies = [pid for pid, state, parent in states if state == b"Z" and parent == me and pid not in known]
        for pid in zombies:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        parents = {pid: parent for pid, state, parent in states if state != b"Z"}
        roots = [pid for pid, parent in parents.items() if parent == me and pid not in known]
        left = roots + [pid for root in roots for pid in descendants(root, parents=parents)]
        if (not left and not zombies) or time.monotonic() > deadline:
            return ended
        ended += [pid for pid in left if pid not in ended]
        signal_all(left, signal.SIGKILL)
        if left:
            time.sleep(0.002)


def job_processes(db_target: str, attempts: set[tuple[int, int]]) -> list[int]:
    """Processes on this host still running one of `attempts` (job id, attempt) of the database
    `db_target`, found by the variables every job process starts with (JOBRUNNER_DB,
    JOBRUNNER_JOB_ID, JOBRUNNER_ATTEMPT). For a daemon about to record such attempts as lost: a
    kill -9'd daemon's workers die with it, but what their jobs started may live on."""
    if not attempts:
        return []
    wanted = {(str(job_id).encode(), str(attempt).encode()) for job_id, attempt in attempts}
    from jobrunner.daemon.jobenv import job_db_target

    database = job_db_target(db_target).encode()
    found = []
    for pid, environ in _processes("environ"):
        if b"JOBRUNNER_JOB_ID=" not in environ:
            continue
        variables = dict(item.partition(b"=")[::2] for item in environ.split(b"\0") if item)
        if variables.get(b"JOBRUNNER_DB") != database:
            continue
        if (variables.get(b"JOBRUNNER_JOB_ID"), variables.get(b"JOBRUNNER_ATTEMPT")) in wanted:
            found.append(pid)
    return found


def end_processes(pids: list[int], deadline_s: float = 5.0) -> None:
    """SIGKILL these processes and wait (up to `deadline_s`) until none is alive."""
    deadline = time.monotonic() + deadline_s
    while True:
        left = [pid for pid in pids if _alive(pid)]
        if not left or time.monotonic() > deadline:
            return
        signal_all(left, signal.SIGKILL)
        time.sleep(0.005)


def _alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return False
