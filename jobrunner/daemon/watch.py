"""A worker's watcher thread: answers the daemon while a job runs, and fences the job.

The worker's main thread runs jobs (a Python job runs right there), so it cannot answer the
daemon mid-job. The watcher owns a second pipe, the control pipe, and answers on it:

- ("skip", seq): the daemon wants a job it sent ahead back. The watcher gives it back only
  if the main thread has not started it, and says which: ("skipped", seq, True|False).
  The daemon re-queues a job as "not started" only on that word, so a job is never both
  running here and queued again (issue 12: at most one running copy).
- Progress: a Python job's `job.report()` (offer) and the lines a shell job writes to its
  worker's progress pipe (progress.py) only replace the job's latest report; the watcher
  passes that on as ("progress", seq, fraction, message) at most every REPORT_EVERY_S, so a
  job may report a million times and never wait for the daemon. The last report goes from
  the main thread as the job ends, before its end is reported (end): the final value wins.
- ("lease", deadline): the daemon renewed every lease it holds; jobs here may run until
  `deadline` (time.monotonic(), which every process on the host shares). Each job also
  carries the deadline of its claim ("fence"). A job still running past both deadlines
  belongs to a daemon that stalled, hung or lost the write lock for most of a lease: the
  watcher ends the job's whole process tree itself, before another daemon may claim it.

The main thread and the watcher share only what `lock` guards: which jobs were skipped,
the last job started, and the one running; and the latest report, sent under `send_lock`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from jobrunner.daemon import tree
from jobrunner.progress import MAX_LINE, parse_line

IDLE_CHECK_S = 0.25  # how often an idle watcher looks for a newly started job's deadline
LIVE_LOG_AFTER_S = 0.2  # a job running this long in a borrowed log file gets its own (joblogs.py)
REPORT_EVERY_S = 0.1  # a job's progress goes to the daemon at most this often: only the latest counts
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
        # the running job's latest report not yet passed on, (seq, fraction, message): any thread
        # of the job puts, the watcher (or the main thread, at the end) takes; deque ops are atomic
        self.latest: deque[tuple[int, float, str | None]] = deque(maxlen=1)
        self.reported_at = 0.0  # time.monotonic() of the last report passed on
        self.send_lock = threading.Lock()  # take-and-send of a report, from either thread, in order
        self.fifo_lock = threading.Lock()  # reads of the progress pipe, from either thread
        self.wake_read, self.wake_write = os.pipe()  # a report after a quiet spell wakes the watcher
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)

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
            self.latest.clear()
            self.began = time.monotonic()
            return True

    def expired(self, job: dict[str, Any]) -> bool:
        return time.monotonic() >= max(job["fence"], self.lease_until)

    def started_child(self, pid: int) -> bool:
        """A shell job's child started; False if the job was fenced meanwhile (kill it)."""
        with self.lock:
            self.child_pid = pid
            return not self.fenced

    def reporter(self, job: dict[str, Any]) -> Callable[[float, str | None], None]:
        """`job.report()` for a Python job: its progress, from any of its threads (one left
        running after the job ended reports for nothing, never for the next job)."""
        seq = job["seq"]
        return lambda fraction, message: self.offer(fraction, message, seq)

    def offer(self, fraction: float, message: str | None, seq: int | None = None) -> None:
        """Progress of the running job (of job `seq` only, if given): it replaces the latest,
        and never waits (the watcher passes it on)."""
        job = self.job
        if job is None or (seq is not None and job["seq"] != seq):
            return
        quiet = not self.latest
        self.latest.append((job["seq"], fraction, message))
        if quiet:  # the watcher may sleep for a while: wake it (once per report passed on)
            with contextlib.suppress(OSError):  # full: a wake-up is pending already
                os.write(self.wake_write, b"\0")

    def end(self) -> bool:
        """The job ended; True if the watcher had fenced it. Its last report goes first."""
        if self.ctl is not None and self.job is not None:
            with contextlib.suppress(OSError, ValueError):
                if self.progress is not None:
                    self._read_progress()  # a shell job's last line, written just before it exited
                self._pass_on()
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
            if self.latest:
                timeout = min(timeout, max(self.reported_at + REPORT_EVERY_S - time.monotonic(), 0.0))
            handles = [self.ctl, self.wake_read] + ([] if self.progress is None else [self.progress])
            try:
                for ready in wait(handles, timeout):
                    if ready is self.ctl:
                        self._handle(self.ctl.recv())
                    elif ready == self.wake_read:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wake_read, 4096)
                    else:
                        self._read_progress()
                if self.latest and time.monotonic() >= self.reported_at + REPORT_EVERY_S:
                    self._pass_on()
            except (EOFError, OSError):
                return  # the daemon is gone; the main thread (and the death signal) see to the rest
            job = self.job
            if job is not None and self.expired(job):
                self._fence(job)
            elif (
                job is not None and self.logs is not None and time.monotonic() - self.began > LIVE_LOG_AFTER_S
            ):
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
        """The last progress line of what the pipe holds becomes the running job's latest
        report (a job may write far faster than anyone reads: only the latest matters)."""
        with self.fifo_lock:  # offered under it too: an older line never replaces a newer one
            try:
                data = os.read(self.progress, 1 << 16)  # type: ignore[arg-type]
            except BlockingIOError:
                return
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()[-MAX_LINE:]
            for line in reversed(lines):
                parsed = parse_line(line)
                if parsed is not None:
                    self.offer(*parsed)
                    return

    def _pass_on(self) -> None:
        """Send the latest report, if the control pipe has room: a daemon that stopped reading
        must not block the watcher (it fences) nor the job's last word (the main thread)."""
        with self.send_lock:
            if not self.latest:
                return
            if not select.select([], [self.ctl], [], 0)[1]:
                self.reported_at = time.monotonic()  # try again after the interval
                return
            try:
                seq, fraction, message = self.latest.pop()
            except IndexError:
                return
            self.ctl.send(("progress", seq, fraction, message))
            self.reported_at = time.monotonic()

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
