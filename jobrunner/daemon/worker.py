"""One long-lived worker process: receives a job down its pipe, runs it, reports back.

Python callables run in this process (so a timeout or cancel kills the worker, and the
supervisor starts a new one); shell commands run as a child in their own session, so the
supervisor can stop the whole process tree with killpg.
"""

from __future__ import annotations

import inspect
import json
import os
import pkgutil
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jobrunner.domain.failures import FailureKind, describe_exit
from jobrunner.jobcontext import JobContext, _set_current

# Messages (tuples keep the pipe cheap):
#   supervisor -> worker: ("run", [job dict, ...]), ("skip", id, attempt) or None to exit.
#                         Jobs run in the order sent. For short jobs the supervisor sends a few
#                         ahead, so the worker never waits for a round trip between them.
#   worker -> supervisor: ("started", id, attempt, child_pid)
#                         ("progress", id, attempt, fraction, message)
#                         ("done", id, attempt, result, failure dict or None, exit_code)


def die_with_parent() -> None:
    """Linux: get SIGKILL when our parent dies, so a kill -9'd daemon leaves no job running
    unsupervised (its attempts are recovered and run again)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_main(conn: Any, db_target: str) -> None:
    """Entry point of a worker process: run jobs in the order they arrive until told to exit."""
    os.setsid()  # our own process group: killpg stops a Python job and anything it started
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    inbox: deque[Any] = deque()
    while True:
        try:
            if not inbox:
                _receive(inbox, conn.recv())
            while conn.poll():  # a skip for a job sent ahead must be seen before that job starts
                _receive(inbox, conn.recv())
        except (EOFError, OSError):
            return  # the supervisor is gone
        if not inbox:  # the only job waiting was skipped
            continue
        job = inbox.popleft()
        if job is None:
            return
        reply = run_shell(conn, job, db_target) if job["kind"] == "shell" else run_python(conn, job)
        conn.send(reply)


def _receive(inbox: deque[Any], message: Any) -> None:
    """Queue the jobs a message brings; a skip takes its job out if it has not started."""
    if message is None:
        inbox.append(None)
    elif message[0] == "run":
        inbox.extend(message[1])
    elif message[0] == "skip":
        for job in inbox:
            if job is not None and (job["id"], job["attempt"]) == message[1:]:
                inbox.remove(job)
                return


def _open_log(path: str) -> Any:
    """The job's log, owner-only: job output may hold secrets."""
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab", buffering=0)


def _failure(kind: FailureKind, message: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind.value, "message": message, **extra}


def _header(job: dict[str, Any]) -> bytes:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"=== jobrunner: job {job['id']} attempt {job['attempt']} started {stamp} ===\n".encode()


def run_shell(conn: Any, job: dict[str, Any], db_target: str) -> tuple:
    """Run a command in its own session with output to the job's log; report its exit."""
    env = {**os.environ, **job["env"]}
    # `jobrunner progress` must work inside a job even when the daemon's venv is not on PATH
    env["PATH"] = os.pathsep.join(filter(None, [env.get("PATH", ""), os.path.dirname(sys.executable)]))
    env.update(
        JOBRUNNER_JOB_ID=str(job["id"]), JOBRUNNER_ATTEMPT=str(job["attempt"]), JOBRUNNER_DB=db_target
    )
    with _open_log(job["log_path"]) as log:
        log.write(_header(job))
        try:
            child = subprocess.Popen(
                job["command"], cwd=job["cwd"] or None, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent,
            )  # fmt: skip
        except OSError as exc:
            what = "working directory" if job["cwd"] and not os.path.isdir(job["cwd"]) else "command"
            target = job["cwd"] if what == "working directory" else job["command"][0]
            message = f"cannot start: {what} {target!r}: {exc.strerror}"
            log.write(f"{message}\n".encode())
            return ("done", job["id"], job["attempt"], None, _failure(FailureKind.PERMANENT, message), None)
        conn.send(("started", job["id"], job["attempt"], child.pid))
        code = child.wait()
    if code == 0:
        return ("done", job["id"], job["attempt"], None, None, 0)
    failure = _failure(FailureKind.EXIT, describe_exit(code), exit_code=code)
    return ("done", job["id"], job["attempt"], None, failure, code)


_saved_std: tuple[int, int] | None = None


@contextmanager
def _output_to(log_fd: int) -> Iterator[None]:
    """Send this process's stdout and stderr (and its children's) to the job's log file."""
    global _saved_std
    sys.stdout.flush()
    sys.stderr.flush()
    if _saved_std is None:  # the worker's own stdout/stderr, kept open for its whole life
        _saved_std = os.dup(1), os.dup(2)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(_saved_std[0], 1)
        os.dup2(_saved_std[1], 2)


def _exception_names(exc: BaseException) -> list[str]:
    names: list[str] = []
    for cls in type(exc).__mro__:
        if cls in (object, BaseException, Exception):
            continue
        names += [f"{cls.__module__}:{cls.__qualname__}", cls.__name__]
    return names


_functions: dict[str, tuple[Callable[..., Any], bool]] = {}


def _resolve(path: str) -> tuple[Callable[..., Any], bool]:
    """The function a job names and whether it takes `job`, looked up once per worker."""
    found = _functions.get(path)
    if found is None:
        func = pkgutil.resolve_name(path)
        found = _functions[path] = (func, _wants_job_argument(func))
    return found


def run_python(conn: Any, job: dict[str, Any]) -> tuple:
    """Import and call the job's function here, with its output in the job's log."""
    job_id, attempt = job["id"], job["attempt"]

    def send_progress(fraction: float, message: str | None) -> None:
        conn.send(("progress", job_id, attempt, fraction, message))

    context = JobContext(id=job_id, attempt=attempt, _send=send_progress)
    log_fd = os.open(job["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(log_fd, _header(job))
        with _output_to(log_fd):
            try:
                func, wants_job = _resolve(job["callable"])
            except (ImportError, AttributeError, ValueError) as exc:
                message = f"unknown callable {job['callable']!r}: {type(exc).__name__}: {exc}"
                print(message, file=sys.stderr)
                return ("done", job_id, attempt, None, _failure(FailureKind.PERMANENT, message), None)
            kwargs = job["kwargs"]
            if wants_job and "job" not in kwargs:
                kwargs = {**kwargs, "job": context}
            _set_current(context)
            try:
                result = func(*job["args"], **kwargs)
                if inspect.isawaitable(result):
                    import asyncio  # only for async jobs: the worker starts faster without it

                    result = asyncio.run(_await(result))
            except BaseException as exc:
                text = traceback.format_exc()
                sys.stderr.write(text)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else None
                failure = _failure(
                    FailureKind.EXCEPTION, f"{type(exc).__name__}: {exc}".rstrip(": "),
                    exception_names=_exception_names(exc), traceback=text, exit_code=code,
                )  # fmt: skip
                return ("done", job_id, attempt, None, failure, None)
            finally:
                _set_current(None)
    finally:
        os.close(log_fd)
    if result is not None:
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            message = f"result is not JSON-serialisable: {exc}"
            return ("done", job_id, attempt, None, _failure(FailureKind.PERMANENT, message), None)
    return ("done", job_id, attempt, result, None, None)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _wants_job_argument(func: Any) -> bool:
    """A function with a parameter named `job` gets its JobContext there."""
    try:
        return "job" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
