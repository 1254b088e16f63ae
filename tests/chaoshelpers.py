"""Helpers for tests/test_chaos.py: the jobs' ledger, a watcher that notes when each job
process is seen alive and when it vanishes, and how to tell a daemon's workers from its
other processes. Linux only (/proc).

Every time here is CLOCK_REALTIME: `date +%s.%N` in the jobs, time.time() in the test.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import wait_until

CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------------------- ledger
#
# Each job process appends one line when it starts and (the job's own shell) one when it ends:
#   start <job> <attempt> <pid> <epoch>        the job's shell, first thing it does
#   child <job> <attempt> <pid> <epoch>        a grandchild the job leaves behind
#   end   <job> <attempt> <pid> <epoch> <rc>   the job's shell, last thing before it exits
# A line is one write(2) of well under PIPE_BUF to an O_APPEND file: lines never interleave.

_STAMP = 'echo "{kind} $JOBRUNNER_JOB_ID $JOBRUNNER_ATTEMPT $$ $(date +%s.%N){extra}" >> "$L"'


def job_script(ledger: Path, sleep: float, outcome: str, grandchild: str | None) -> str:
    """The `sh -c` text of one chaos job.

    outcome: "ok" exits 0, "fail" exits 3, "flaky" exits 3 before attempt 2 and 0 from it.
    grandchild: None, "trap" (a child in the job's process group that ignores SIGTERM) or
    "setsid" (a child in a session of its own, out of the job's process group); either sleeps
    5 s and writes its own `child` line, so a leftover is seen.
    """
    lines = [f"L={shlex.quote(str(ledger))}", _STAMP.format(kind="start", extra="")]
    if grandchild is not None:
        child = 'L="$1"; ' + ('trap "" TERM; ' if grandchild == "trap" else "")
        child += _STAMP.format(kind="child", extra="") + "; exec sleep 5"
        prefix = "setsid " if grandchild == "setsid" else ""
        lines.append(f'{prefix}sh -c {shlex.quote(child)} grandchild "$L" &')
    if sleep > 0:
        lines.append(f"sleep {sleep:.2f}")
    if outcome == "ok":
        lines.append("rc=0")
    elif outcome == "fail":
        lines.append("rc=3")
    else:  # flaky
        lines.append('rc=3; [ "$JOBRUNNER_ATTEMPT" -ge 2 ] && rc=0')
    lines.append(_STAMP.format(kind="end", extra=" $rc"))
    lines.append('exit "$rc"')
    return "\n".join(lines)


@dataclass(frozen=True)
class LedgerLine:
    kind: str  # start, child or end
    job: int
    attempt: int
    pid: int
    at: float
    rc: int | None
    raw: str


def parse_line(raw: str) -> LedgerLine | None:
    """One ledger line, or None if it is malformed (reported by the test, never skipped silently)."""
    parts = raw.split()
    try:
        if parts[0] in ("start", "child") and len(parts) == 5:
            return LedgerLine(
                parts[0], int(parts[1]), int(parts[2]), int(parts[3]), float(parts[4]), None, raw
            )
        if parts[0] == "end" and len(parts) == 6:
            return LedgerLine(
                "end", int(parts[1]), int(parts[2]), int(parts[3]), float(parts[4]), int(parts[5]), raw
            )
    except (ValueError, IndexError):
        return None
    return None


# ------------------------------------------------------------------------------------ /proc


@dataclass(frozen=True)
class Stat:
    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    starttime: int  # clock ticks after boot (CLOCK_BOOTTIME)

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X", "x")  # a zombie has ended; only its exit status is left


def read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data.rpartition(b") ")[2].split()  # after the command name, which may hold spaces
    try:
        return Stat(pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.alive


def boot_epoch() -> float:
    """The epoch time of boot, to turn a process's start time (ticks after boot) into epoch time."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def cmdline(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()


def _exe(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/exe")
    return None


def process_table() -> dict[int, Stat]:
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = read_stat(int(name))
            if stat is not None and stat.alive:
                table[stat.pid] = stat
    return table


def worker_pids(daemon_pid: int, exclude: Collection[int] = ()) -> dict[int, list[int]]:
    """The daemon's worker processes, each with the pids of its own children (its running job).

    How a worker is told apart, from what the daemon's process tree looks like:
      daemon (python -m jobrunner daemon ...)
        +- worker 0..N-1    forked from the daemon at start: same cmdline as the daemon
        +- resource_tracker python -c 'from multiprocessing.resource_tracker import main...'
        +- forkserver       python -c 'from multiprocessing.forkserver import main...'
             +- worker ...   every replacement worker, forked from the forkserver
                  +- sh -c ...   a job (its own session) -> sleep, date, grandchildren
    So a worker is a live direct child of the daemon, or of a forkserver that is the daemon's
    child, that runs the daemon's own Python executable and is neither the forkserver nor the
    resource tracker (their cmdlines name them). Job processes are never picked: they sit a
    level below a worker, run sh/sleep/date (not Python), and every pid the ledger names is
    excluded as well. Nothing here relies on process names: "jobrunner-worker-N" is
    multiprocessing's name inside Python, and the OS may show any of them as `python`.
    """
    table = process_table()
    if daemon_pid not in table:
        return {}
    children: dict[int, list[int]] = {}
    for stat in table.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    python = _exe(daemon_pid)
    candidates: list[int] = []
    for pid in children.get(daemon_pid, []):
        line = cmdline(pid)
        if "multiprocessing.forkserver" in line:
            candidates += children.get(pid, [])
        elif "multiprocessing.resource_tracker" not in line:
            candidates.append(pid)
    return {
        pid: sorted(children.get(pid, []))
        for pid in candidates
        if pid not in exclude and python is not None and _exe(pid) == python
    }


def job_processes(db_path: Path) -> list[tuple[int, str, str, str]]:
    """Live processes of jobs on this database, found by their environment (JOBRUNNER_DB is
    this test's own database; JOBRUNNER_JOB_ID is set for a job's processes only): every
    process of a job, the ones the ledger does not name (sleep, date) included.
    Returns (pid, job id, attempt, cmdline)."""
    wanted = {f"JOBRUNNER_DB={db_path}".encode(), f"JOBRUNNER_DB={os.path.realpath(db_path)}".encode()}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        env = _read(f"/proc/{name}/environ").split(b"\0")
        if not wanted.intersection(env):
            continue
        values = dict(item.split(b"=", 1) for item in env if b"=" in item)
        if b"JOBRUNNER_JOB_ID" not in values:
            continue
        line = cmdline(int(name))
        if "-m jobrunner" in line or "multiprocessing" in line or not pid_alive(int(name)):
            continue  # a daemon or worker (never expected here: they have no job id), or a zombie
        found.append(
            (
                int(name),
                values[b"JOBRUNNER_JOB_ID"].decode(),
                values.get(b"JOBRUNNER_ATTEMPT", b"?").decode(),
                line,
            )
        )
    return found


# ---------------------------------------------------------------------------------- watcher


@dataclass
class Watched:
    """One job process the ledger named, and what the watcher saw of it."""

    line: LedgerLine  # its start or child line
    starttime: int | None = None  # from /proc when first seen alive: tells a reused pid apart
    forked_at: float | None = None  # epoch time of its fork (10 ms ticks, rounded down)
    last_alive: float | None = None  # a time at which it was certainly alive (read before /proc)
    gone_at: float | None = None  # the first time it was seen gone (read after /proc)
    end: LedgerLine | None = None  # the job shell's own end line

    @property
    def alive_until(self) -> float:
        """The latest time it was certainly alive: its end line, or the watcher's last sight."""
        return max(self.line.at, self.end.at if self.end else 0.0, self.last_alive or 0.0)

    @property
    def started(self) -> float:
        """When it certainly existed: its fork if the watcher saw it, else its first line."""
        return self.forked_at if self.forked_at is not None else self.line.at

    def describe(self) -> str:
        role = "shell" if self.line.kind == "start" else "grandchild"
        end = f"end line {self.end.at:.3f} rc={self.end.rc}" if self.end else "no end line"
        seen = f"last seen alive {self.last_alive:.3f}" if self.last_alive else "never seen alive"
        gone = f"seen gone {self.gone_at:.3f}" if self.gone_at else "not seen gone"
        return f"{role} pid {self.line.pid} [{self.line.at:.3f} {end}; {seen}; {gone}]"


@dataclass
class PidWatcher:
    """Tails the ledger and polls every process it names, every `interval` seconds, from a thread.

    A SIGKILLed job never writes its end line, so its end is the watcher's: `last_alive` is a
    time it was certainly alive (read before looking at /proc), `gone_at` a time it was
    certainly gone (gone from /proc, a zombie, or its pid now belongs to a younger process).
    """

    ledger: Path
    interval: float = 0.02
    lines: list[LedgerLine] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    procs: list[Watched] = field(default_factory=list)
    max_gap: float = 0.0  # the longest time between two polls: how late a `gone_at` can be
    _active: dict[int, Watched] = field(default_factory=dict)
    _mains: dict[tuple[int, int, int], Watched] = field(default_factory=dict)
    _offset: int = 0
    _partial: bytes = b""
    _boot: float = field(default_factory=boot_epoch)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> PidWatcher:
        self._thread = threading.Thread(target=self._run, name="chaos-pid-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.poll()  # the last lines and the last look

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.interval):
            self.poll()
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            last = now

    def poll(self) -> None:
        with self._lock:
            self._boot = boot_epoch()  # per poll: a step of the realtime clock moves it
            self._read_ledger()
            for watched in list(self._active.values()):
                self._look(watched)

    def alive(self) -> list[Watched]:
        """Processes the watcher still believes alive (after one more look)."""
        self.poll()
        with self._lock:
            return list(self._active.values())

    def pids(self) -> set[int]:
        """Every pid the ledger has named so far."""
        with self._lock:
            return {watched.line.pid for watched in self.procs}

    def job_of(self, pid: int) -> Watched | None:
        with self._lock:
            return self._active.get(pid)

    def _read_ledger(self) -> None:
        try:
            with open(self.ledger, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            text = raw.decode(errors="replace")
            line = parse_line(text)
            if line is None:
                self.bad.append(text)
                continue
            self.lines.append(line)
            if line.kind == "end":
                main = self._mains.get((line.job, line.attempt, line.pid))
                if main is not None:
                    main.end = line
                continue
            old = self._active.pop(line.pid, None)
            if old is not None:  # the pid was reused, so that process has gone
                old.gone_at = time.time()
            watched = Watched(line)
            self.procs.append(watched)
            if line.kind == "start":
                self._mains[(line.job, line.attempt, line.pid)] = watched
            self._active[line.pid] = watched
            self._look(watched)

    def _look(self, watched: Watched) -> None:
        before = time.time()
        stat = read_stat(watched.line.pid)
        if stat is not None and stat.alive:
            if watched.starttime is None:
                forked_at = self._boot + stat.starttime / CLK_TCK
                if forked_at <= watched.line.at + 0.05:  # else a younger process took the pid
                    watched.starttime, watched.forked_at = stat.starttime, forked_at
            if watched.starttime == stat.starttime:
                watched.last_alive = before
                return
        watched.gone_at = time.time()
        self._active.pop(watched.line.pid, None)


def kill_leftovers(watcher: PidWatcher | None, db_path: Path) -> list[str]:
    """SIGKILL every job process still alive: those the ledger names (only while /proc shows the
    very process the watcher saw, so no unrelated process with a reused pid is touched), their
    process groups, and any process whose environment says it belongs to a job on this test's
    database. Returns what was killed."""
    killed = []
    for _ in range(3):  # a killed shell's children are found on the next pass
        targets: list[tuple[int, str]] = []
        if watcher is not None:
            for watched in watcher.alive():
                stat = read_stat(watched.line.pid)
                if stat is not None and stat.starttime == watched.starttime:
                    targets.append((watched.line.pid, f"ledger {watched.line.raw}"))
                    if stat.pgid == stat.pid:  # the job's own group: its sleep and date too
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(stat.pid, signal.SIGKILL)
        targets += [
            (pid, f"job {job} attempt {attempt}: {line}")
            for pid, job, attempt, line in job_processes(db_path)
        ]
        if not targets:
            break
        for pid, what in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(f"pid {pid} ({what})")
        wait_until(lambda pids=[pid for pid, _ in targets]: not any(_alive(pid) for pid in pids), timeout=5)
        # gone (or zombies) before the next pass looks for their children
    return killed


def _alive(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.alive
