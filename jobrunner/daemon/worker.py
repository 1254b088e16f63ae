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
from contextlib import contextmanager, suppress
from typing import Any

from jobrunner.domain.failures import FailureKind, describe_exit
from jobrunner.jobcontext import JobContext, _set_current

# Messages (tuples keep the pipe cheap):
#   supervisor -> worker: ("run", [job dict, ...]), ("skip", id, attempt), ("warm",) or None to exit.
#                         Jobs run in the order sent. For short jobs the supervisor sends a few
#                         ahead, so the worker never waits for a round trip between them.
#   worker -> supervisor: ("started", id, attempt, child_pid)
#                         ("progress", id, attempt, fraction, message)
#                         ("done", id, attempt, result, failure dict or None, exit_code)


_prctl: Any = None


def _set_death_signal(signum: int) -> None:
    """Linux: `signum` for us when our parent dies (PR_SET_PDEATHSIG); elsewhere nothing."""
    global _prctl
    if not sys.platform.startswith("linux"):
        return
    if _prctl is None:
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False
    if _prctl:
        _prctl(1, signum)  # PR_SET_PDEATHSIG


def die_with_parent() -> None:
    """Get SIGKILL when our parent dies, so a kill -9'd daemon leaves no job running
    unsupervised (its attempts are recovered and run again)."""
    _set_death_signal(signal.SIGKILL)


def _let_the_forkserver_go() -> None:
    """Drop the forkserver's "a client is alive" descriptor that multiprocessing hands us.

    The forkserver exits when no process holds it; while workers hold it, a kill -9'd daemon
    leaves the forkserver alive, so the workers (whose parent it is) never get their death
    signal and go on running jobs nobody supervises. The daemon's own copy keeps the
    forkserver up for as long as the daemon lives.
    """
    try:
        from multiprocessing import forkserver

        server = forkserver._forkserver
        fd = server._forkserver_alive_fd
    except (ImportError, AttributeError):
        return
    if fd is not None:
        with suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None


@contextmanager
def _child_dies_with_us(child: Callable[[], int | None]) -> Iterator[None]:
    """While a shell job runs, the daemon's death takes its process group down too.

    The child could ask for a death signal itself, but only from a preexec_fn, and any
    preexec_fn makes subprocess fork this whole process instead of using vfork: shell jobs
    started at a quarter of the speed. So for the job's length we take SIGTERM (not SIGKILL)
    when our parent dies, and our handler kills the job's group before we exit.
    """

    def on_term(signum: int, _frame: Any) -> None:
        pid = child()
        if pid is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        os._exit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    _set_death_signal(signal.SIGTERM)
    try:
        if os.getppid() == 1:  # the parent died before the death signal was set
            on_term(signal.SIGTERM, None)
        yield
    finally:
        _set_death_signal(signal.SIGKILL)
        signal.signal(signal.SIGTERM, previous)


def worker_main(conn: Any, db_target: str, log_dir: str | None = None) -> None:
    """Entry point of a worker process: run jobs in the order they arrive until told to exit."""
    os.setsid()  # our own process group: killpg stops a Python job and anything it started
    _let_the_forkserver_go()
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a worker forked from the daemon has its handler
    _prepare_environment(db_target)
    logs = Logs(log_dir)
    inbox: deque[Any] = deque()
    try:
        while True:
            try:
                ahead = bool(inbox)  # this job waited in line behind another: a run of short jobs
                if not inbox:
                    logs.prepare()  # while there is nothing else to do
                    _receive(inbox, conn.recv())  # the first job of these starts now: no skip can
                else:  # concern it; a skip for a job sent ahead must be seen before that job starts
                    while conn.poll():
                        _receive(inbox, conn.recv())
            except (EOFError, OSError):
                return  # the supervisor is gone
            if not inbox:  # the only job waiting was skipped
                continue
            job = inbox.popleft()
            if job is None:
                return
            try:
                if job["kind"] == "shell":
                    reply = run_shell(conn, job, db_target, logs)
                else:
                    reply = run_python(conn, job, logs, quiet_log=ahead)
            except OSError as exc:  # its log could not be opened (a full disk): worth another try
                message = f"cannot open the job's log {job['log_path']}: {exc.strerror or exc}"
                failure = _failure(FailureKind.EXCEPTION, message, exception_names=["OSError"])
                reply = ("done", job["id"], job["attempt"], None, failure, None)
            conn.send(reply)
    finally:
        logs.close()


def _receive(inbox: deque[Any], message: Any) -> None:
    """Queue the jobs a message brings; a skip takes its job out if it has not started.
    A "warm" message has done its work by waking us (see Lines.warm)."""
    if message is None:
        inbox.append(None)
    elif message[0] == "run":
        inbox.extend(message[1])
    elif message[0] == "skip":
        for job in inbox:
            if job is not None and (job["id"], job["attempt"]) == message[1:]:
                inbox.remove(job)
                return


class Logs:
    """Opens each job's log, owner-only (job output may hold secrets).

    Creating a file is the slowest step between a job arriving and its code starting (0.3 to
    0.6 ms on a VM's ext4, more than all the rest together). So a worker about to wait for
    work creates a spare file beside the logs, and the next job whose log does not exist yet
    gets it by a rename. In a run of short jobs each job borrows the spare instead (see
    run_python's quiet_log), and only a job that printed something gets a file of its own.
    """

    FLAGS = os.O_WRONLY | os.O_APPEND

    def __init__(self, log_dir: str | None) -> None:
        self.spare = spare_log_path(log_dir, os.getpid()) if log_dir else None
        self.spare_fd: int | None = None
        self.dirty = False  # the spare holds a silent job's header

    def prepare(self) -> None:
        """Before waiting for work: make sure a spare is there."""
        if self.spare is None or self.spare_fd is not None:
            return
        with suppress(OSError):  # no log directory (yet), or a read-only one: jobs will say so
            self.spare_fd = os.open(self.spare, self.FLAGS | os.O_CREAT | os.O_TRUNC, 0o600)
            self.dirty = False

    def open(self, path: str, attempt: int) -> int:
        """An append descriptor on `path`, created if need be."""
        fd = self.spare_fd
        if fd is not None and self._is_new(path, attempt):
            try:
                if self.dirty:
                    os.ftruncate(fd, 0)  # a silent job before left its header there
                os.rename(self.spare, path)  # type: ignore[arg-type]
            except OSError:
                pass
            else:
                self.spare_fd = None
                return fd
        return os.open(path, self.FLAGS | os.O_CREAT, 0o600)

    def borrow(self, path: str, attempt: int) -> int | None:
        """The spare, emptied, to write a job's output into; None: open the log itself."""
        if self.spare_fd is None:
            self.prepare()
        if self.spare_fd is None or not self._is_new(path, attempt):  # a retry appends to its log
            return None
        os.ftruncate(self.spare_fd, 0)
        self.dirty = True
        return self.spare_fd

    @staticmethod
    def _is_new(path: str, attempt: int) -> bool:
        """No log yet: a first attempt has none (one system call less on the way to its start)."""
        return attempt <= 1 or not os.path.lexists(path)

    def give_back(self, path: str, header: int) -> None:
        """After a borrowed run: output (past the header) becomes the job's log; else nothing."""
        fd = self.spare_fd
        assert fd is not None
        if os.fstat(fd).st_size <= header:
            return  # silent: the spare is emptied again before its next use
        try:
            os.rename(self.spare, path)  # type: ignore[arg-type]
        except OSError:  # a log appeared meanwhile, or another file system: append a copy
            os.lseek(fd, 0, os.SEEK_SET)
            target = os.open(path, self.FLAGS | os.O_CREAT, 0o600)
            try:
                while chunk := os.read(fd, 1 << 16):
                    os.write(target, chunk)
            finally:
                os.close(target)
            return
        os.close(fd)
        self.spare_fd = None

    def close(self) -> None:
        if self.spare_fd is not None:
            os.close(self.spare_fd)
            with suppress(OSError):
                os.unlink(self.spare)  # type: ignore[arg-type]
            self.spare_fd = None


def spare_log_path(log_dir: str, pid: int) -> str:
    """Where worker `pid` keeps its spare log (for the supervisor to clear up after a dead one)."""
    return os.path.join(log_dir, f".spare-{pid}.log")


def _failure(kind: FailureKind, message: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind.value, "message": message, **extra}


def _header(job: dict[str, Any]) -> bytes:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"=== jobrunner: job {job['id']} attempt {job['attempt']} started {stamp} ===\n".encode()


def _with_our_bin(path: str | None) -> str:
    """PATH plus the directory of our Python: `jobrunner progress` works inside a job even when
    the daemon's venv is not on the PATH."""
    return os.pathsep.join(filter(None, [path or "", os.path.dirname(sys.executable)]))


def _prepare_environment(db_target: str) -> None:
    """What every job's processes see, set once in this worker's own environment."""
    os.environ["PATH"] = _with_our_bin(os.environ.get("PATH"))
    os.environ["JOBRUNNER_DB"] = db_target


def _enter_job(job: dict[str, Any]) -> None:
    os.environ["JOBRUNNER_JOB_ID"] = str(job["id"])
    os.environ["JOBRUNNER_ATTEMPT"] = str(job["attempt"])


def run_shell(conn: Any, job: dict[str, Any], db_target: str, logs: Logs) -> tuple:
    """Run a command in its own session with output to the job's log; report its exit."""
    _enter_job(job)
    env = None  # inherited as it is: subprocess encodes every variable of a dict it is given
    if job["env"]:
        env = {**os.environ, **job["env"]}
        env["PATH"] = _with_our_bin(env.get("PATH"))
        env.update(JOBRUNNER_JOB_ID=os.environ["JOBRUNNER_JOB_ID"], JOBRUNNER_DB=db_target,
                   JOBRUNNER_ATTEMPT=os.environ["JOBRUNNER_ATTEMPT"])  # fmt: skip
    started: list[int] = []
    log_fd = logs.open(job["log_path"], job["attempt"])
    try:
        with suppress(OSError):  # a full disk: the command still runs
            os.write(log_fd, _header(job))
        with _child_dies_with_us(lambda: started[0] if started else None):
            try:
                child = subprocess.Popen(
                    job["command"], cwd=job["cwd"] or None, env=env, stdin=subprocess.DEVNULL,
                    stdout=log_fd, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                what = "working directory" if job["cwd"] and not os.path.isdir(job["cwd"]) else "command"
                target = job["cwd"] if what == "working directory" else job["command"][0]
                message = f"cannot start: {what} {target!r}: {exc.strerror}"
                with suppress(OSError):
                    os.write(log_fd, f"{message}\n".encode())
                return ("done", job["id"], job["attempt"], None, _failure(FailureKind.PERMANENT, message), None)
            started.append(child.pid)
            conn.send(("started", job["id"], job["attempt"], child.pid))
            code = child.wait()
    finally:
        os.close(log_fd)
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


def run_python(conn: Any, job: dict[str, Any], logs: Logs, quiet_log: bool = False) -> tuple:
    """Import and call the job's function here, with its output in the job's log.

    `quiet_log` (a job from a run of short ones): the output goes to the worker's spare file
    and becomes the job's log when the job ends, if there was any; a silent job leaves no log.
    Creating a file per job cost about a quarter of the time of a run of no-op jobs.
    """
    job_id, attempt = job["id"], job["attempt"]
    _enter_job(job)  # for the processes it starts

    def send_progress(fraction: float, message: str | None) -> None:
        conn.send(("progress", job_id, attempt, fraction, message))

    context = JobContext(id=job_id, attempt=attempt, _send=send_progress)
    header = _header(job)
    log_fd = logs.borrow(job["log_path"], attempt) if quiet_log else None
    if log_fd is None:
        log_fd = logs.open(job["log_path"], attempt)
        quiet_log = False
    try:
        with suppress(OSError):  # a full disk: the job still runs (its output may fail to write)
            os.write(log_fd, header)
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
        if quiet_log:
            logs.give_back(job["log_path"], len(header))
        else:
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
