"""A worker's watcher thread: answers the daemon while a job runs, and fences the job.

The worker's main thread runs jobs (a Python job runs right there), so it cannot answer the
daemon mid-job. The watcher owns a second pipe, the control pipe, and answers on it:

- ("skip", seq): the daemon wants a job it sent ahead back. The watcher gives it back only
  if the main thread has not started it, and says which: ("skipped", seq, True|False).
  The daemon re-queues a job as "not started" only on that word, so a job is never both
  running here and queued again (issue 12: at most one running copy).
- Progress lines a shell job writes to its worker's progress pipe (progress.py): the last
  whole line of each read goes to the daemon as ("progress", seq, fraction, message).
- ("lease", deadline): the daemon renewed every lease it holds; jobs here may run until
  `deadline` (time.monotonic(), which every process on the host shares). Each job also
  carries the deadline of its claim ("fence"). A job still running past both deadlines
  belongs to a daemon that stalled, hung or lost the write lock for most of a lease: the
  watcher ends the job's whole process tree itself, before another daemon may claim it.

The main thread and the watcher share only what `lock` guards: which jobs were skipped,
the last job started, and the one running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from multiprocessing.connection import wait
from typing import Any

from jobrunner.daemon import tree
from jobrunner.progress import MAX_LINE, parse_line

IDLE_CHECK_S = 0.25  # how often an idle watcher looks for a newly started job's deadline
LIVE_LOG_AFTER_S = 0.2  # a job running this long in a borrowed log file gets its own (joblogs.py)
FENCED = "lost: the daemon did not renew its lease in time (stalled or stopped); the attempt was stopped"


class Watch:
    def __init__(self, ctl: Any, logs: Any = None, progress: int | None = None) -> None:
        self.ctl = ctl
        self.progress = progress  # the read end of the progress pipe
        self.partial = b""  # a progress line not yet ended
        self.logs = logs  # joblogs.Logs: a long job's borrowed log is made its own while it runs
        self.began = 0.0
        self.lock = threading.Lock()
        self.skipped: set[int] = set()
        self.started_seq = -1  # the last job the main thread started (jobs start in seq order)
        self.lease_until = 0.0  # the daemon's last renewal of every lease, as a deadline
        self.job: dict[str, Any] | None = None  # the job running now
        self.child_pid: int | None = None  # a shell job's process group
        self.fenced = False

    def start(self) -> None:
        threading.Thread(target=self._run, name="jobrunner-watch", daemon=True).start()

    # --------------------------------------------------------------- main thread
    def begin(self, job: dict[str, Any]) -> bool:
        """The main thread is about to start `job`: False if the daemon took it back."""
        with self.lock:
            seq = job["seq"]
            if seq in self.skipped:
                self.skipped.discard(seq)
                return False
            self.started_seq = seq
            self.job, self.child_pid, self.fenced = job, None, False
            self.began = time.monotonic()
            return True

    def expired(self, job: dict[str, Any]) -> bool:
        return time.monotonic() >= max(job["fence"], self.lease_until)

    def started_child(self, pid: int) -> bool:
        """A shell job's child started; False if the job was fenced meanwhile (kill it)."""
        with self.lock:
            self.child_pid = pid
            return not self.fenced

    def end(self) -> bool:
        """The job ended; True if the watcher had fenced it."""
        with self.lock:
            fenced, self.job, self.child_pid, self.fenced = self.fenced, None, None, False
            return fenced

    # --------------------------------------------------------------- watcher thread
    def _run(self) -> None:
        while True:
            job = self.job
            timeout = IDLE_CHECK_S
            if job is not None:
                timeout = min(max(max(job["fence"], self.lease_until) - time.monotonic(), 0.0), IDLE_CHECK_S)
            handles = [self.ctl] if self.progress is None else [self.ctl, self.progress]
            try:
                for ready in wait(handles, timeout):
                    if ready is self.ctl:
                        self._handle(self.ctl.recv())
                    else:
                        self._read_progress()
            except (EOFError, OSError):
                return  # the daemon is gone; the main thread (and the death signal) see to the rest
            job = self.job
            if job is not None and self.expired(job):
                self._fence(job)
            elif job is not None and self.logs is not None and time.monotonic() - self.began > LIVE_LOG_AFTER_S:
                self.logs.publish()

    def _handle(self, message: Any) -> None:
        if message[0] == "skip":
            seq = message[1]
            with self.lock:
                given = seq > self.started_seq
                if given:
                    self.skipped.add(seq)
            self.ctl.send(("skipped", seq, given))
        elif message[0] == "lease":
            self.lease_until = max(self.lease_until, message[1])

    def _read_progress(self) -> None:
        """Pass on the last progress line of what the pipe holds (a job may report far faster
        than anyone reads: only the latest matters), for the job running now."""
        try:
            data = os.read(self.progress, 1 << 16)  # type: ignore[arg-type]
        except BlockingIOError:
            return
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()[-MAX_LINE:]
        job = self.job
        for line in reversed(lines):
            parsed = parse_line(line)
            if parsed is not None:
                if job is not None:
                    self.ctl.send(("progress", job["seq"], *parsed))
                return

    def _fence(self, job: dict[str, Any]) -> None:
        """End the job's processes before its lease can pass to another daemon."""
        with self.lock:
            if self.job is not job or self.fenced:
                return
            self.fenced = True
            child = self.child_pid
        with contextlib.suppress(OSError):
            self.ctl.send(("fenced", job["seq"]))
        if child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)
        tree.signal_all(tree.descendants(os.getpid()), signal.SIGKILL)
        if job["kind"] != "shell":  # a Python job runs in this process: it ends with it
            os.kill(os.getpid(), signal.SIGKILL)
