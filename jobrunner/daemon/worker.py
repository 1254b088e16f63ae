"""One long-lived worker process: receives a job down its pipe, runs it, reports back.

Python callables run in this process (so a timeout or cancel kills the worker, and the
supervisor starts a new one), except those with memory or cpu_time limits, which run in a
child that carries them (limits.py, childcall.py); shell commands run as a child in their own
session, so the supervisor can stop the whole process tree with killpg.
"""

from __future__ import annotations

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

from jobrunner.cli.fast import POSTGRES_DRIVERS
from jobrunner.daemon import limits, tree
from jobrunner.daemon.childcall import call, run_in_child
from jobrunner.daemon.childcall import exception_names as _exception_names
from jobrunner.daemon.childcall import wants_job_argument as _wants_job_argument
from jobrunner.daemon.jobenv import (
    enter_job,
    open_progress_pipe,
    prepare_environment,
    progress_path,
    with_our_bin,
)
from jobrunner.daemon.joblogs import Logs
from jobrunner.daemon.startlog import StartLog, note_start
from jobrunner.daemon.streams import job_failed_here, output_to
from jobrunner.daemon.watch import FENCED, Watch
from jobrunner.domain.failures import FailureKind, describe_exit
from jobrunner.jobcontext import JobContext, _set_current

# Messages (tuples keep the pipe cheap):
#   supervisor -> worker: ("run", [job dict, ...]), ("warm",) or None to exit. Jobs run in the
#                         order sent (each carries its "seq" and the "fence" of its claim). For
#                         short jobs the supervisor sends a few ahead, so the worker never waits
#                         for a round trip between them. The control pipe: see watch.py.
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
        tree.signal_all(tree.descendants(os.getpid()), signal.SIGKILL)  # those that left its group
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


def worker_main(conn: Any, db_target: str, log_dir: str | None = None, ctl: Any = None,
                kill_grace: float = 5.0, python_path: tuple[str, ...] = (), daemon_pid: int | None = None) -> None:
    """Entry point of a worker process: run jobs in the order they arrive until told to exit.

    `ctl` is the control pipe its watcher thread answers on (see watch.py). The worker is a
    child subreaper: what a job leaves behind comes back to it and is ended before the job's
    end is reported (see tree.py), so a job is recorded as finished only once its processes
    are gone. `python_path` ([daemon] python_path) goes first on sys.path for job callables.
    Each attempt is noted in the worker's start log just before it starts (startlog.py).
    """
    os.setsid()  # our own process group: killpg stops a Python job and anything it started
    _let_the_forkserver_go()
    die_with_parent()
    tree.become_subreaper()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a worker forked from the daemon has its handler
    prepare_environment(db_target)
    _unblock_drivers()
    sys.path[:0] = python_path  # before any job's import: the config's directories win
    progress_read = open_progress_pipe(log_dir)  # jobs report progress on it (progress.py)
    logs = Logs(log_dir)
    starts: StartLog | None = None
    with suppress(OSError):  # a full disk: tried again before each job (note_start)
        starts = note_start(None, log_dir, daemon_pid, 0, 0)  # made before any job, with an empty slot
    watch = Watch(ctl, logs, progress_read)
    if ctl is not None:
        watch.start()
    inbox: deque[Any] = deque()
    try:
        while True:
            try:
                ahead = bool(inbox)  # this job waited in line behind another: a run of short jobs
                if not inbox:
                    logs.prepare()  # while there is nothing else to do
                    _receive(inbox, conn.recv())
                else:  # read whatever else has come, without waiting
                    while conn.poll():
                        _receive(inbox, conn.recv())
            except (EOFError, OSError):
                return  # the supervisor is gone
            if not inbox:  # only a heads-up came
                continue
            job = inbox.popleft()
            if job is None:
                return
            if not watch.begin(job):  # the daemon took it back before it started
                continue
            if watch.expired(job):  # its lease may have passed to another daemon: never start it
                watch.end()
                conn.send(("done", job["id"], job["attempt"], None, _failure(FailureKind.LOST, FENCED), None))
                continue
            try:
                starts = note_start(starts, log_dir, daemon_pid, job["id"], job["attempt"])
            except OSError as exc:  # unnoted, a start could be taken for none (see startlog.py)
                watch.end()
                message = f"cannot note the job's start in {log_dir}: {exc.strerror or exc}"
                conn.send(("done", job["id"], job["attempt"], None,
                           _failure(FailureKind.EXCEPTION, message, exception_names=["OSError"]), None))  # fmt: skip
                continue
            try:
                if job["kind"] == "shell":
                    reply = run_shell(conn, job, db_target, logs, watch)
                else:
                    reply = run_python(conn, job, logs, ahead, watch if ctl is not None else None)
            except OSError as exc:  # its log could not be opened (a full disk): worth another try
                message = f"cannot open the job's log {job['log_path']}: {exc.strerror or exc}"
                failure = _failure(FailureKind.EXCEPTION, message, exception_names=["OSError"])
                reply = ("done", job["id"], job["attempt"], None, failure, None)
            if tree.reap_children():  # the job left processes: end them (dying with us meanwhile)
                with _child_dies_with_us(lambda: None):
                    tree.end_descendants(kill_grace)
            reply = limits.settle(reply)  # its log finished, and a limit it hit named
            if watch.end():
                reply = ("done", job["id"], job["attempt"], None, _failure(FailureKind.LOST, FENCED), reply[5])
            conn.send(reply)
    finally:
        logs.close()
        if starts is not None:
            starts.close()
        if progress_read is not None and log_dir:
            with suppress(OSError):
                os.unlink(progress_path(log_dir, os.getpid()))


def _receive(inbox: deque[Any], message: Any) -> None:
    """Queue the jobs a message brings. A "warm" message has done its work by waking us (see
    Lines.warm); skips come over the control pipe (watch.py)."""
    if message is None:
        inbox.append(None)
    elif message[0] == "run":
        inbox.extend(message[1])


def _failure(kind: FailureKind, message: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind.value, "message": message, **extra}


def _header(job: dict[str, Any]) -> bytes:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"=== jobrunner: job {job['id']} attempt {job['attempt']} started {stamp} ===\n".encode()


def run_shell(conn: Any, job: dict[str, Any], db_target: str, logs: Logs, watch: Watch | None = None) -> tuple:
    """Run a command in its own session with output to the job's log; report its exit."""
    enter_job(job)
    env = None  # inherited as it is: subprocess encodes every variable of a dict it is given
    if job["env"]:
        env = {**os.environ, **job["env"]}
        env["PATH"] = with_our_bin(env.get("PATH"))
        env.update(JOBRUNNER_JOB_ID=os.environ["JOBRUNNER_JOB_ID"], JOBRUNNER_DB=os.environ["JOBRUNNER_DB"],
                   JOBRUNNER_ATTEMPT=os.environ["JOBRUNNER_ATTEMPT"])  # fmt: skip
    started: list[int] = []
    log_fd = logs.open(job["log_path"], job["attempt"])
    try:
        with suppress(OSError):  # a full disk: the command still runs
            os.write(log_fd, _header(job))
        guard = limits.guard(job, log_fd)  # memory, cpu_time, max_log_size: see limits.py
        output = log_fd if guard is None or guard.output is None else guard.output
        with _child_dies_with_us(lambda: started[0] if started else None):
            try:
                child = subprocess.Popen(
                    job["command"], cwd=job["cwd"] or None, env=env, stdin=subprocess.DEVNULL,
                    stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=None if guard is None else guard.preexec(),
                )  # fmt: skip
            except OSError as exc:
                what = "working directory" if job["cwd"] and not os.path.isdir(job["cwd"]) else "command"
                target = job["cwd"] if what == "working directory" else job["command"][0]
                message = f"cannot start: {what} {target!r}: {exc.strerror}"
                with suppress(OSError):
                    os.write(log_fd, f"{message}\n".encode())
                return ("done", job["id"], job["attempt"], None, _failure(FailureKind.PERMANENT, message), None)
            started.append(child.pid)
            if guard is not None:
                guard.started()
            if watch is not None and not watch.started_child(child.pid):  # fenced as it started
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
            conn.send(("started", job["id"], job["attempt"], child.pid))
            code = child.wait()
    finally:
        os.close(log_fd)
    if code == 0:
        return ("done", job["id"], job["attempt"], None, None, 0)
    failure = _failure(FailureKind.EXIT, describe_exit(code), exit_code=code)
    return ("done", job["id"], job["attempt"], None, failure, code)


_functions: dict[str, tuple[Callable[..., Any], bool]] = {}


def _unblock_drivers() -> None:
    """A worker forked from the daemon before the daemon imported peewee still has the console
    script's block on the PostgreSQL drivers (cli/fast.py), under which a job's own `import
    psycopg2` fails: lifted before any job runs."""
    for name in POSTGRES_DRIVERS:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


_peewee_checked = False


def _peewee_as_anywhere() -> None:
    """A worker forked from the daemon may hold the daemon's peewee, imported with the drivers
    blocked: before a job's Python code first runs here, peewee gets them back, so a job that
    uses peewee with PostgreSQL finds the driver it would find anywhere else. Paid once per
    such worker, by its first Python job, never by shell jobs."""
    global _peewee_checked
    _peewee_checked = True
    peewee = sys.modules.get("peewee")
    if peewee is not None:
        from jobrunner.store.backends import restore_drivers

        restore_drivers(peewee)


def _resolve(path: str) -> tuple[Callable[..., Any], bool]:
    """The function a job names and whether it takes `job`, looked up once per worker."""
    found = _functions.get(path)
    if found is None:
        func = pkgutil.resolve_name(path)
        found = _functions[path] = (func, _wants_job_argument(func))
    return found


def run_python(conn: Any, job: dict[str, Any], logs: Logs, quiet_log: bool = False,
               watch: Watch | None = None) -> tuple:  # fmt: skip
    """Import and call the job's function here, with its output in the job's log.

    `quiet_log` (a job from a run of short ones): the output goes to the worker's spare file
    and becomes the job's log when the job ends, if there was any; a silent job leaves no log.
    Creating a file per job cost about a quarter of the time of a run of no-op jobs.
    """
    job_id, attempt = job["id"], job["attempt"]
    enter_job(job)  # for the processes it starts
    if job.get("memory_limit") is not None or job.get("cpu_time_limit") is not None:
        return _run_python_child(job, logs)  # limits bind a child: never this worker (limits.py)

    def send_progress(fraction: float, message: str | None) -> None:
        conn.send(("progress", job_id, attempt, fraction, message))

    # with a watcher, a report only replaces the latest, which the watcher passes on (watch.py)
    report = send_progress if watch is None else watch.reporter(job)
    context = JobContext(id=job_id, attempt=attempt, _send=report)
    header = _header(job)
    capped = job.get("max_log_size") is not None
    log_fd = logs.borrow(job["log_path"], attempt) if quiet_log and not capped else None
    if log_fd is None:
        log_fd = logs.open(job["log_path"], attempt)
        quiet_log = False
    output = log_fd
    try:
        with suppress(OSError):  # a full disk: the job still runs (its output may fail to write)
            os.write(log_fd, header)
        guard = limits.guard(job, log_fd) if capped else None  # the output through the log cap
        if guard is not None and guard.output is not None:
            output = guard.output
        with output_to(output):
            try:
                if not _peewee_checked:
                    _peewee_as_anywhere()
                func, wants_job = _resolve(job["callable"])
            except (ImportError, AttributeError, ValueError) as exc:
                message = f"unknown callable {job['callable']!r}: {type(exc).__name__}: {exc}"
                print(message, file=sys.stderr)
                return ("done", job_id, attempt, None, _failure(FailureKind.PERMANENT, message), None)
            try:
                result = call(func, wants_job, job, context)
            except BaseException as exc:
                text = traceback.format_exc()
                job_failed_here(output, text)
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


def _run_python_child(job: dict[str, Any], logs: Logs) -> tuple:
    """A Python job with memory or cpu_time: called in a child interpreter that carries the
    limits (childcall.py), its output in the job's log (through the log cap, if it has one)."""
    job_id, attempt = job["id"], job["attempt"]
    log_fd = logs.open(job["log_path"], attempt)
    try:
        with suppress(OSError):
            os.write(log_fd, _header(job))
        guard = limits.guard(job, log_fd)
        assert guard is not None
        output = log_fd if guard.output is None else guard.output
        with _child_dies_with_us(lambda: None):  # our death ends it (as it ends a shell job's tree)
            try:
                said, code = run_in_child(job, output, guard.preexec())
            except OSError as exc:  # no interpreter could start (a memory limit too small to map it)
                message = f"cannot start: {sys.executable}: {exc.strerror or exc}"
                with suppress(OSError):
                    os.write(log_fd, f"{message}\n".encode())
                return ("done", job_id, attempt, None, _failure(FailureKind.PERMANENT, message), None)
    finally:
        os.close(log_fd)
    if said is not None and "failure" in said:
        return ("done", job_id, attempt, None, said["failure"], None)
    if said is not None and "result" in said:
        return ("done", job_id, attempt, said["result"], None, None)
    failure = _failure(FailureKind.EXIT, describe_exit(code), exit_code=code)  # it died without a word
    return ("done", job_id, attempt, None, failure, code)


