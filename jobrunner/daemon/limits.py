"""A job's resource limits in its worker: memory and cpu_time (setrlimit), max_log_size (logcap).

Limits are set in the job's own process between fork and exec (a preexec function), before
any of its code runs, and never in the worker: a long-lived worker limited by one job would
carry the limit into every job after it. So a Python job with memory or cpu_time runs in a
child interpreter (childcall.py) instead of in the worker; one with only max_log_size still runs
in the worker, its output through the log cap.

No cgroup is delegated to us where jobrunner runs (machine_checks.delegated_cgroup), so the
limits bind each process of the job on its own: RLIMIT_AS caps a process's virtual address
space (more than the memory it touches: a program that maps much and uses little can hit it),
and RLIMIT_CPU its CPU seconds. Every process the job starts inherits them, and each gets the
whole amount: the sum over the job's processes is not capped.

How an attempt that hit one is told: the kernel does not say why a process died, so the
worker judges by the evidence. SIGXCPU (or exit status 152 from a shell whose command got it),
or SIGKILL once the job's processes used the CPU time, is the CPU limit. A failed attempt whose
last output holds an allocation failure (MemoryError, "Cannot allocate memory", bad_alloc, ...)
with a memory limit set is the memory limit. Only then does the error name the limit; the
retry policy treats the failure as it would have anyway.
"""

from __future__ import annotations

import math
import os
import re
import resource
import signal
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from jobrunner.daemon.logcap import RECENT_BYTES, LogCap
from jobrunner.domain.edits import duration_text
from jobrunner.domain.sizes import format_size

CPU_GRACE_S = 2  # SIGXCPU at the limit; SIGKILL this much CPU time later, for a process that ignores it
_SHELL_SIGNAL = 128  # a shell's exit status for a command killed by signal N is 128 + N
_OUT_OF_MEMORY = re.compile(
    rb"MemoryError|Cannot allocate memory|out of memory|bad_alloc|memory exhausted|"
    rb"failed to allocate|allocation failed|ENOMEM|failed to map segment",  # the last: ld.so, at exec
    re.IGNORECASE,
)


def apply(memory: int | None, cpu_time: float | None) -> None:
    """Limit this process (and what it starts): for the child of a worker, before it execs."""
    if memory is not None:
        _set(resource.RLIMIT_AS, memory, memory)
    if cpu_time is not None:
        seconds = max(math.ceil(cpu_time), 1)
        _set(resource.RLIMIT_CPU, seconds, seconds + CPU_GRACE_S)


def _set(which: int, soft: int, hard: int) -> None:
    """Lower a limit, never raise it past the hard limit we were given (only root could)."""
    _, ceiling = resource.getrlimit(which)
    if ceiling != resource.RLIM_INFINITY:
        hard = min(hard, ceiling)
        soft = min(soft, hard)
    with suppress(ValueError, OSError):
        resource.setrlimit(which, (soft, hard))


def children_cpu() -> float:
    """CPU seconds used by this process's children (and theirs) that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Guard:
    """One attempt's limits as its worker keeps them: the log cap its output goes through, what
    the child applies before it runs, and the verdict on how the attempt ended."""

    def __init__(self, job: dict[str, Any], log_fd: int) -> None:
        self.memory: int | None = job.get("memory_limit")
        self.cpu_time: float | None = job.get("cpu_time_limit")
        log_size: int | None = job.get("max_log_size")
        self.cap = LogCap(log_fd, log_size) if log_size is not None else None
        # without a cap the log itself holds the output: read its end back for the verdict
        self.log_fd = os.dup(log_fd) if self.memory is not None and self.cap is None else None
        self.cpu_before = children_cpu() if self.cpu_time is not None else 0.0

    @property
    def output(self) -> int | None:
        """Where the job's stdout and stderr go instead of its log file, if anywhere."""
        return None if self.cap is None else self.cap.write_fd

    def preexec(self) -> Callable[[], None] | None:
        """What the job's child runs before exec; None when there is nothing to limit (a child
        started without one is spawned the fast way, with vfork)."""
        if self.memory is None and self.cpu_time is None:
            return None
        memory, cpu_time = self.memory, self.cpu_time
        return lambda: apply(memory, cpu_time)

    def started(self) -> None:
        """The job's child has the output pipe: the worker's copy goes."""
        if self.cap is not None:
            self.cap.close_writer()

    def close(self, reply: tuple) -> tuple:
        """After the job's processes are gone: finish its log, and say in the reply's error which
        limit ended the attempt, where the evidence shows one did."""
        recent = self.cap.finish() if self.cap is not None else b""
        if self.log_fd is not None:
            recent = _file_end(self.log_fd)
            os.close(self.log_fd)
        failure = reply[4] if len(reply) > 4 else None
        if not failure or failure.get("kind") not in ("exit", "exception", "permanent"):
            return reply
        if failure["kind"] == "permanent":  # exec itself failed: a limit too small to start the program
            recent = failure.get("message", "").encode()
        reason = self.reason(failure, recent, children_cpu() - self.cpu_before)
        if reason is None:
            return reply
        return (*reply[:4], {**failure, "message": f"{reason} ({failure['message']})"}, *reply[5:])

    def reason(self, failure: dict[str, Any], recent: bytes, cpu_used: float) -> str | None:
        """`cpu time limit 10s exceeded` or `memory limit 200M exceeded`, or None."""
        code = failure.get("exit_code")
        if self.cpu_time is not None and isinstance(code, int):
            xcpu, kill = int(signal.SIGXCPU), int(signal.SIGKILL)
            killed = code in (-kill, _SHELL_SIGNAL + kill) and cpu_used >= math.ceil(self.cpu_time) - 0.05
            if code in (-xcpu, _SHELL_SIGNAL + xcpu) or killed:
                return f"cpu time limit {duration_text(self.cpu_time)} exceeded"
        if self.memory is not None:
            names = failure.get("exception_names") or []
            if "MemoryError" in names or _OUT_OF_MEMORY.search(recent):
                return f"memory limit {format_size(self.memory)} exceeded"
        return None


def _file_end(fd: int) -> bytes:
    """The last RECENT_BYTES of the file behind a write-only descriptor (reopened to read)."""
    try:
        reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
    except OSError:
        return b""
    try:
        size = os.fstat(reader).st_size
        return os.pread(reader, RECENT_BYTES, max(size - RECENT_BYTES, 0))
    except OSError:
        return b""
    finally:
        os.close(reader)


_active: Guard | None = None


def guard(job: dict[str, Any], log_fd: int) -> Guard | None:
    """The guard of the attempt starting now, if the job has limits (settle() ends it)."""
    global _active
    if job.get("memory_limit") is None and job.get("cpu_time_limit") is None and job.get("max_log_size") is None:
        return None
    _active = Guard(job, log_fd)
    return _active


def settle(reply: tuple) -> tuple:
    """The reply of the attempt that just ended, its guard (if any) closed: see Guard.close."""
    global _active
    current, _active = _active, None
    return reply if current is None else current.close(reply)
