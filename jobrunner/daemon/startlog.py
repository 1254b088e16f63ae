"""Which attempts a worker started, written where the daemon's successor can read it.

A daemon claims a few jobs ahead of its workers (claim-ahead, sent-ahead jobs): they are
`running` in the database before any process runs them. When the daemon dies with kill -9, its
successor recovers every attempt it held as lost, and a job with no retries left went dead
without ever running. So each worker notes every attempt it starts, just before starting it, in
a small file of its own in the log directory (`.started-DAEMONPID-WORKERPID`: a ring of the
last SLOTS starts, one pwrite each, no fsync: it must outlive a process, not the machine). A
successor on this host reads the dead daemon's files, once its workers are gone, and gives back
the attempts none of them started, uncounted; the others are lost as before. When it cannot be
sure (a worker still alive, a file missing or unreadable), every attempt counts: the safe side.

A file is never deleted by its worker, only by its daemon (once the worker is dead and the
end of every attempt it started is recorded, or at its orderly end) or a successor that
recovered the daemon: a worker that saw its daemon's pipe close and exited cleanly once took its
file with it, and the successor, counting a file left by a worker killed earlier, took that
worker's finished attempt for never started and ran its number again (a PostgreSQL chaos run).
"""

from __future__ import annotations

import contextlib
import os
import struct
import time

from jobrunner.processes import pid_alive

SLOTS = 256  # starts remembered per worker: far more than a daemon holds unrecorded at once
_ENTRY = struct.Struct("<qq")  # (job id, attempt); zeros are an empty slot
_PREFIX = ".started-"


class StartLog:
    """A worker's ring of started attempts. Created (and its blocks reserved, so a full disk
    cannot fail a later write) before the worker takes any job; None without a log directory."""

    def __init__(self, log_dir: str, daemon_pid: int) -> None:
        self.path = os.path.join(log_dir, f"{_PREFIX}{daemon_pid}-{os.getpid()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o600)
        try:
            os.posix_fallocate(self.fd, 0, SLOTS * _ENTRY.size)
        except OSError:  # no room: no file, so the next try can create it
            self.close()
            raise
        self.count = 0

    def started(self, job_id: int, attempt: int) -> None:
        """Say this attempt starts now (before anything of it runs)."""
        os.pwrite(self.fd, _ENTRY.pack(job_id, attempt), (self.count % SLOTS) * _ENTRY.size)
        self.count += 1

    def close(self) -> None:
        """Close the file and leave it: however the worker ends (told to, or because its daemon's
        pipe closed when the daemon died), its daemon may not have recorded its last jobs yet, and
        a successor must see them started. Only the daemon's orderly end, once every outcome is
        recorded, deletes the files (forget); a successor deletes those of a dead daemon."""
        os.close(self.fd)


def note_start(log: StartLog | None, log_dir: str | None, daemon_pid: int | None, job_id: int,
               attempt: int) -> StartLog | None:  # fmt: skip
    """Note a start in the worker's log, creating it first if that failed before (a full disk at
    the worker's start). OSError when it cannot be noted: the job must not start then, or a
    successor would take it for never started."""
    if not log_dir or not daemon_pid:
        return None
    if log is None:
        log = StartLog(log_dir, daemon_pid)
    log.started(job_id, attempt)
    return log


def started_by(log_dir: str, daemon_pid: int, workers: int, wait_s: float = 2.0) -> set[tuple[int, int]] | None:
    """Every attempt the workers of dead daemon `daemon_pid` started, or None when that cannot be
    known: fewer files than the daemon had workers (each makes its file before any job: one is
    missing, or this daemon looks in another log directory than the dead one did), one of its
    workers still alive after `wait_s` (a worker dies with its daemon within milliseconds; a pid
    taken by another process since looks alive too), or a file unreadable."""
    files = _files(log_dir, daemon_pid)
    if workers < 1 or len(files) < workers:
        return None
    deadline = time.monotonic() + wait_s
    for _, worker_pid in files:
        while pid_alive(worker_pid):  # it could still start a held job: wait for it to go
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)
    started: set[tuple[int, int]] = set()
    for path, _ in files:
        try:
            with open(path, "rb") as handle:
                data = handle.read(SLOTS * _ENTRY.size)
        except OSError:
            return None
        started.update(entry for entry in _ENTRY.iter_unpack(data[: len(data) // _ENTRY.size * _ENTRY.size]) if entry[0])
    return started


def forget_worker(log_dir: str | None, daemon_pid: int, worker_pid: int) -> None:
    """Delete a dead worker's file once its daemon has recorded the end of every attempt it
    started: none of them is held any more, so no successor needs to know of them, and a daemon
    that kills a worker per timeout or cancel for months does not gather a file per kill."""
    if log_dir:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(log_dir, f"{_PREFIX}{daemon_pid}-{worker_pid}"))


def forget(log_dir: str, daemon_pid: int) -> None:
    """Delete a recovered daemon's files."""
    for path, _ in _files(log_dir, daemon_pid):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _files(log_dir: str, daemon_pid: int) -> list[tuple[str, int]]:
    prefix = f"{_PREFIX}{daemon_pid}-"
    try:
        names = os.listdir(log_dir)
    except OSError:
        return []
    return [(os.path.join(log_dir, name), int(name[len(prefix) :])) for name in names
            if name.startswith(prefix) and name[len(prefix) :].isdigit()]  # fmt: skip
