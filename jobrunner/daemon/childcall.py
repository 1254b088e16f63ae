"""A Python job with memory or cpu_time limits, run in a child interpreter of its worker.

The limits are set in the child before it starts (limits.py), so they bind the job and never
the worker, which runs the next job unlimited. The child is a fresh `python -c` (about 40 ms
of start-up per attempt, paid only by jobs with limits): forking the worker itself would copy
its watcher thread's locks mid-use. It gets the worker's sys.path (so [daemon] python_path
works), its environment (the job's variables, the progress pipe) and its process group (a
timeout or cancel that ends the worker's group ends the child too); the job's call, arguments
and result travel as JSON over two pipes; `job.report()` writes to the worker's progress pipe.

This module is what the child imports, so it imports little at the top.
"""

from __future__ import annotations

import inspect
import json
import os
import select
import sys
import traceback
from contextlib import suppress
from typing import Any

POLL_S = 0.05  # how often the worker looks whether a child that has not answered yet is gone
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from jobrunner.daemon.childcall import main; main(*map(int, sys.argv[2:5]))"
)


def run_in_child(job: dict[str, Any], output: int, preexec: Any) -> tuple[dict[str, Any] | None, int]:
    """Run the job's callable in a child with stdout and stderr on `output`, limited by
    `preexec`; returns what the child sent ({"result": ...} or {"failure": {...}}; None if it
    died without a word) and its exit status (negative: the signal that killed it)."""
    import subprocess

    payload = json.dumps({key: job[key] for key in ("id", "attempt", "callable", "args", "kwargs")}).encode()
    payload_read, payload_write = os.pipe()
    result_read, result_write = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(payload_read), str(result_write), str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            pass_fds=(payload_read, result_write), preexec_fn=preexec,
        )  # fmt: skip
    except BaseException:
        for fd in (payload_write, result_read):
            os.close(fd)
        raise
    finally:
        os.close(payload_read)
        os.close(result_write)
    with suppress(OSError):  # BrokenPipeError: it died before reading (a limit too small to start)
        view = memoryview(payload)
        while view:
            view = view[os.write(payload_write, view) :]
    os.close(payload_write)
    chunks = _read_until_exit(result_read, child)
    os.close(result_read)
    code = child.wait()
    try:
        said = json.loads(b"".join(chunks)) if chunks else None
    except ValueError:
        said = None
    return said if isinstance(said, dict) else None, code


def _read_until_exit(fd: int, child: Any) -> list[bytes]:
    """What the child wrote on `fd`: up to end-of-file, or up to its exit (a process the job
    forked may hold the pipe open longer; the child wrote everything before it exited)."""
    chunks: list[bytes] = []
    os.set_blocking(fd, False)
    exited = False
    while True:
        if not exited and not select.select([fd], [], [], POLL_S)[0]:
            exited = child.poll() is not None  # then one more pass reads what is left
            continue
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            if exited:
                return chunks
            continue
        except OSError:
            return chunks
        if not chunk:
            return chunks
        chunks.append(chunk)


def main(payload_fd: int, result_fd: int, worker: int) -> None:
    """The child: read the job, call it, write what came of it, and leave at once (a thread the
    job left running must not keep the attempt open)."""
    _die_with_parent(worker)
    os.set_inheritable(result_fd, False)  # not for the programs the job runs
    with os.fdopen(payload_fd, "rb") as handle:
        job = json.loads(handle.read())
    outcome = _call(job)
    try:
        data = json.dumps(outcome).encode()
    except (TypeError, ValueError) as exc:
        data = json.dumps({"failure": {"kind": "permanent", "message": f"result is not JSON-serialisable: {exc}"}}).encode()
    with suppress(OSError):
        view = memoryview(data)
        while view:
            view = view[os.write(result_fd, view) :]
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    os._exit(0)


def _call(job: dict[str, Any]) -> dict[str, Any]:
    import pkgutil

    from jobrunner.jobcontext import JobContext

    try:
        func = pkgutil.resolve_name(job["callable"])
    except (ImportError, AttributeError, ValueError) as exc:
        message = f"unknown callable {job['callable']!r}: {type(exc).__name__}: {exc}"
        print(message, file=sys.stderr)
        return {"failure": {"kind": "permanent", "message": message}}
    context = JobContext(id=job["id"], attempt=job["attempt"], _send=_Progress().send)
    try:
        result = call(func, wants_job_argument(func), job, context)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the attempt failed
        text = traceback.format_exc()
        with suppress(Exception):
            sys.stderr.write(text)
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else None
        return {"failure": {"kind": "exception", "message": f"{type(exc).__name__}: {exc}".rstrip(": "),
                            "exception_names": exception_names(exc), "traceback": text, "exit_code": code}}  # fmt: skip
    return {"result": result}


def call(func: Any, wants_job: bool, job: dict[str, Any], context: Any) -> Any:
    """Call a job's function with its arguments (and `job=` its JobContext, when it takes one),
    as the current job; an async one is run to its end. Its exceptions are the caller's."""
    from jobrunner.jobcontext import _set_current

    kwargs = job["kwargs"]
    if wants_job and "job" not in kwargs:
        kwargs = {**kwargs, "job": context}
    _set_current(context)
    result = func(*job["args"], **kwargs)
    if inspect.isawaitable(result):
        import asyncio  # only for async jobs: a worker starts faster without it

        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def exception_names(exc: BaseException) -> list[str]:
    """The exception's classes, most specific first, as "module:Qualname" and "Name" (retry_on
    matches either)."""
    names: list[str] = []
    for cls in type(exc).__mro__:
        if cls in (object, BaseException, Exception):
            continue
        names += [f"{cls.__module__}:{cls.__qualname__}", cls.__name__]
    return names


def wants_job_argument(func: Any) -> bool:
    """A function with a parameter named `job` gets its JobContext there."""
    try:
        return "job" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


class _Progress:
    """`job.report()` in the child: a line on the worker's progress pipe, as a shell job writes
    one (progress.py); the pipe is opened once, and a full pipe drops the line (only the latest
    report counts)."""

    def __init__(self) -> None:
        self.fd: int | None = None

    def send(self, fraction: float, message: str | None) -> None:
        from jobrunner.progress import MAX_LINE, PATH_VAR

        if self.fd is None:
            path = os.environ.get(PATH_VAR)
            if not path:
                return
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            except OSError:
                return
        note = " ".join((message or "").split())
        data = f"{fraction:.6g} {note}".rstrip().encode("utf-8", "replace")[: MAX_LINE - 1] + b"\n"
        with suppress(OSError):
            os.write(self.fd, data)


def _die_with_parent(worker: int) -> None:
    """SIGKILL when the worker dies, so a job never outlives the worker that supervises it."""
    if not sys.platform.startswith("linux"):
        return
    import signal

    with suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != worker:  # it died before we asked: we were handed to its subreaper
        os._exit(1)
