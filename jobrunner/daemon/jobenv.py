"""What every job's processes find in their environment: our bin directory on PATH, the
database, and the job's id and attempt, which change with every job.

The last two are set in the worker's own environment (a shell job then inherits it as it is:
subprocess encodes every variable of an env dict it is given). Rewriting them the plain way
leaks in glibc, so they are rewritten in place (see _JobVariable): the one reach into another
library's internals here (os.environ's mapping), and it buys a worker that stays flat over
millions of jobs (benchmarks/memory_long.py: +6.1 MB per 200,000 jobs before, +0.0 after).
"""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from typing import Any


def with_our_bin(path: str | None) -> str:
    """PATH plus the directory of our Python: `jobrunner progress` works inside a job even when
    the daemon's venv is not on the PATH."""
    return os.pathsep.join(filter(None, [path or "", os.path.dirname(sys.executable)]))


def open_progress_pipe(log_dir: str | None) -> int | None:
    """This worker's progress FIFO (see progress.py), named in the environment every job's
    processes inherit; returns a read descriptor for the watcher thread, None if none could be
    made. A write descriptor of our own stays open too, so the reader never sees end-of-file."""
    from jobrunner.progress import PATH_VAR

    if not log_dir:
        return None
    path = progress_path(log_dir, os.getpid())
    try:
        with suppress(FileNotFoundError):
            os.unlink(path)  # a dead worker's with our pid
        os.mkfifo(path, 0o600)
        read = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        os.open(path, os.O_WRONLY | os.O_NOFOLLOW)  # kept for our lifetime, never written
    except OSError:
        return None
    os.environ[PATH_VAR] = path
    return read


def progress_path(log_dir: str, pid: int) -> str:
    """Where worker `pid` keeps its progress FIFO (for the supervisor to clear up after it)."""
    return os.path.join(log_dir, f".progress-{pid}")


def prepare_environment(db_target: str) -> None:
    """What every job's processes see, set once in this worker's own environment."""
    os.environ["PATH"] = with_our_bin(os.environ.get("PATH"))
    os.environ["JOBRUNNER_DB"] = job_db_target(db_target)


def job_db_target(db_target: str) -> str:
    """JOBRUNNER_DB as jobs see it: a URL without its password (a job that talks to the
    database itself finds the password where libpq looks, ~/.pgpass; third-party code a job
    runs, and whatever it prints, never sees it)."""
    from jobrunner.secrets import without_password

    return without_password(db_target)


def enter_job(job: dict[str, Any]) -> None:
    """JOBRUNNER_JOB_ID and JOBRUNNER_ATTEMPT for the job and every process it starts."""
    if not _job_variables:
        _job_variables.extend(_JobVariable.make(name) for name in ("JOBRUNNER_JOB_ID", "JOBRUNNER_ATTEMPT"))
    _job_variables[0].set(str(job["id"]))
    _job_variables[1].set(str(job["attempt"]))


class _JobVariable:
    """One environment variable that changes with every job, rewritten in place.

    `os.environ[name] = value` calls setenv, and glibc's setenv never frees the string it
    replaces (someone may still point at it): a job id that differs every job leaked 64 bytes
    a job, a worker grew by 29 MB in half a million no-op jobs. So the variable's "NAME=value"
    is a buffer of ours, given to putenv once (which keeps the pointer, no copy) and
    overwritten for each job; os.environ's own mapping gets the value beside it.
    """

    WIDTH = 24  # room for any job id or attempt number

    def __init__(self, name: str, libc: Any) -> None:
        import ctypes

        self.name, self.putenv = name, libc.putenv
        self.key = os.environ.encodekey(name)  # type: ignore[attr-defined]
        self.data = os.environ._data  # type: ignore[attr-defined]  # its mapping, without setenv
        self.buffer = ctypes.create_string_buffer(self.key + b"=" + b"\0" * self.WIDTH)
        self.view = memoryview(self.buffer).cast("B")  # type: ignore[arg-type]
        self.start = len(self.key) + 1
        self.value: bytes | None = None  # what os.environ's mapping holds while the C one holds ours

    @classmethod
    def make(cls, name: str) -> Any:
        """In place where the C library allows it (glibc, musl, macOS); else through os.environ."""
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.putenv.argtypes = [ctypes.c_char_p]
            return cls(name, libc)
        except (OSError, AttributeError, ImportError):
            return _PlainVariable(name)

    def set(self, text: str) -> None:
        value = text.encode()
        if len(value) >= self.WIDTH:
            os.environ[self.name] = text  # never for a real id: worth a leak rather than a wrong value
            self.value = None
            return
        self.view[self.start : self.start + len(value) + 1] = value + b"\0"
        if self.value is None or self.data.get(self.key) is not self.value:  # the first job, or one
            self.putenv(self.buffer)  # that set or deleted it through os.environ (so setenv's is there)
        self.data[self.key] = self.value = _Value(value)


class _Value(bytes):
    """A value of ours in os.environ's mapping: never one of the bytes objects Python shares (b"1"),
    so one a job sets, however equal, is not it."""


class _PlainVariable:
    def __init__(self, name: str) -> None:
        self.name = name

    def set(self, text: str) -> None:
        os.environ[self.name] = text


_job_variables: list[Any] = []
