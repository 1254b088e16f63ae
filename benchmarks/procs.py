"""Processes the benchmarks start and watch: daemons in their own session, deadlines, /proc readings.

A daemon or consumer runs as `python -m ...` in a new session with its output in a log file;
on the way out it gets its graceful stop signal, then its whole process group is killed.
Waits poll a condition against a deadline and fail loudly (with the log's tail) instead of
hoping a sleep was long enough.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
DEADLINE_S = 600.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- starting and stopping ---------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The current (isolated) environment, with this checkout importable by the workers."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@contextmanager
def running(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path, stop: int
) -> Iterator[subprocess.Popen]:
    """Start `argv` in a new session; afterwards send `stop` to it, then SIGKILL whatever is left of its group."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        end_group(proc, stop)


def end_group(proc: subprocess.Popen, stop: int, grace: float = 20.0) -> None:
    """Stop the leader gracefully, then kill every process still in its group (orphaned workers too)."""
    if proc.poll() is None:
        try:
            proc.send_signal(stop)
            proc.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    with suppress(ProcessLookupError, PermissionError):  # nothing left in the group
        os.killpg(proc.pid, signal.SIGKILL)  # the group keeps the leader's pid as its id
    proc.wait()


def check_alive(proc: subprocess.Popen, log: Path | None) -> None:
    if proc.poll() is not None:
        tail = log.read_text(errors="replace")[-1500:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{' '.join(map(str, proc.args))} exited {proc.returncode}:\n{tail}")


@contextmanager
def jobrunner_daemon(
    db: Path, log: Path, workers: int = WORKERS, level: str = "warning"
) -> Iterator[subprocess.Popen]:
    """`jobrunner daemon --workers N` on `db` (JOBRUNNER_DB), in its own session; warnings only by default."""
    argv = [sys.executable, "-m", "jobrunner", "daemon", "--workers", str(workers), "--log-level", level]
    with running(argv, child_env(JOBRUNNER_DB=str(db)), db.parent, log, signal.SIGTERM) as proc:
        yield proc


# -- waiting -----------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE_S,
               proc: subprocess.Popen | None = None, log: Path | None = None,
               interval: float = 0.005) -> None:  # fmt: skip
    """Poll `predicate` until true; fail if the deadline passes or `proc` exits first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None:
            check_alive(proc, log)
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Counter:
    """A read-only connection that answers one COUNT query, again and again (WAL: never blocks writers)."""

    def __init__(self, db: Path, query: str, params: tuple = ()) -> None:
        self.conn = sqlite3.connect(str(db), timeout=30)
        self.query, self.params = query, params

    def __call__(self) -> int:
        try:
            return self.conn.execute(self.query, self.params).fetchone()[0]
        except sqlite3.OperationalError:  # a table not created yet, a lock held for too long
            return -1

    def close(self) -> None:
        self.conn.close()


SUCCEEDED = "SELECT COUNT(*) FROM job WHERE status = 'succeeded'"


def wait_for_count(db: Path, query: str, target: int, proc: subprocess.Popen, log: Path,
                   timeout: float = DEADLINE_S) -> None:  # fmt: skip
    count = Counter(db, query)
    try:
        wait_until(lambda: count() >= target, f"{target} rows of {query!r} in {db}", timeout, proc, log)
    finally:
        count.close()


def wait_daemon_ready(db: Path, proc: subprocess.Popen, log: Path, workers: int = WORKERS) -> None:
    """The daemon has registered itself and its worker processes exist."""
    row = Counter(db, "SELECT COUNT(*) FROM daemon WHERE pid = ? AND state = 'running'", (proc.pid,))
    try:
        wait_until(lambda: row() > 0, "the daemon to register", 60, proc, log)
    finally:
        row.close()
    wait_until(lambda: len(daemon_tree(proc.pid)[1]) >= workers, f"{workers} worker processes", 60, proc, log)


# -- /proc -------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from `state` on (the command name may hold spaces and parens)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields is not None:
                parents[int(name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren, ...): workers need not be children."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, ())
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def daemon_tree(pid: int) -> tuple[int, list[int], list[int]]:
    """(daemon, its workers, its other helpers): the first workers are forked from the daemon
    (its children with its command line), replacements are the forkserver's children."""
    below = descendants(pid)
    lines = {p: cmdline(p) for p in below}
    own = cmdline(pid)
    servers = {p for p, line in lines.items() if "forkserver" in line and _parent(p) == pid}
    workers = [p for p in below if _parent(p) in servers or "spawn_main" in lines[p]
               or (_parent(p) == pid and lines[p] == own)]  # fmt: skip
    others = [p for p in below if p not in workers]
    return pid, sorted(workers), sorted(others)


def _parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes, from /proc/<pid>/stat (utime + stime)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def status_kb(pid: int, key: str = "VmRSS") -> int:
    """A kB figure from /proc/<pid>/status (VmRSS, VmHWM, RssAnon, ...); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def read_line(proc: subprocess.Popen, timeout: float, what: str) -> str:
    """The next line `proc` writes to its stdout pipe (text mode), within `timeout` seconds."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        if not selector.select(timeout):
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"{' '.join(map(str, proc.args))} exited {proc.returncode} before {what}")
    return line.strip()


def pickup_once(submit_mark: Callable[[str], object], path: Path, proc: subprocess.Popen,
                log: Path | None, timeout: float = 30.0) -> float:  # fmt: skip
    """Seconds from just before a submit of a marker job to the moment its code started (its own clock)."""
    sent = time.time()
    submit_mark(str(path))
    wait_until(path.exists, f"marker job {path.name} to start", timeout, proc, log, interval=0.0002)
    return float(path.read_text()) - sent
