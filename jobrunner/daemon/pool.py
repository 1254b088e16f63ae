"""Supervised worker processes: started from forkserver, one pipe each, replaced when they die.

Not multiprocessing.Pool: it hangs when a worker is killed. Here the supervisor waits on
every pipe and every process sentinel, so a dead worker is seen at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobrunner.daemon.worker import spare_log_path, worker_main
from jobrunner.domain.failures import FailureKind

if TYPE_CHECKING:  # not at run time: the pool must start before the store's imports are done
    from jobrunner.store.runs import Claim


#: Lines.warm's message, pickled once: it goes out on the way to a claim.
WARM = pickle.dumps(("warm",), pickle.HIGHEST_PROTOCOL)


@dataclass
class Stop:
    """Why and how the supervisor is stopping a running job."""

    kind: FailureKind  # TIMEOUT, CANCELLED or INTERRUPTED
    message: str
    kill_at: float  # SIGKILL after this moment if still alive


@dataclass(eq=False)  # identity: a worker is a process, and a key for the loop's selector
class Worker:
    """One worker process and the jobs sent down its pipe: the first is running, the rest
    (sent ahead for short jobs) start in order as soon as the one before ends."""

    index: int
    process: Any
    conn: Any
    jobs: deque[Claim] = field(default_factory=deque)
    started: float = 0.0  # when the first job started (or when we learnt it did)
    child_pid: int | None = None  # a shell job's process group
    stop: Stop | None = field(default=None)
    sent_term: bool = False
    inbox: bytearray = field(default_factory=bytearray)  # bytes read but not yet a whole message
    warmed: float = 0.0  # when it was last told a job is probably coming (Lines.warm)

    def receive(self) -> list[Any]:
        """Every message the worker has sent so far, from one read of its pipe.

        The pipe is a multiprocessing Connection (a 4-byte big-endian length, then a pickle);
        reading what is there at once costs one system call where poll() and recv() cost three
        per message. Call only when the pipe is readable (the loop's selector says so).
        EOFError: the worker is gone.
        """
        data = os.read(self.conn.fileno(), 1 << 16)
        if not data:
            raise EOFError
        buffer = self.inbox
        buffer += data
        messages, at = [], 0
        while len(buffer) - at >= 4:
            size, head = int.from_bytes(buffer[at : at + 4], "big", signed=True), 4
            if size == -1:  # over 2 GiB: an 8-byte length follows
                if len(buffer) - at < 12:
                    break
                size, head = int.from_bytes(buffer[at + 4 : at + 12], "big"), 12
            if len(buffer) - at - head < size:
                break
            messages.append(pickle.loads(buffer[at + head : at + head + size]))
            at += head + size
        del buffer[:at]
        return messages

    @property
    def job(self) -> Claim | None:
        return self.jobs[0] if self.jobs else None

    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    def assign(self, claims: list[Claim], now: float) -> bool:
        """Send jobs in one message; the first starts now if the worker is idle, each of the
        others as soon as the one before it ends. False: the worker is gone, they were not sent."""
        if not self.send(("run", [_job_message(claim) for claim in claims])):
            return False
        if not self.jobs:
            self.started, self.child_pid, self.stop, self.sent_term = now, None, None, False
        self.jobs.extend(claims)
        return True

    def send(self, message: Any) -> bool:
        """conn.send without multiprocessing's pickler (it copies a dispatch table per call):
        the messages are plain tuples, dicts and JSON values; the framing is the same.

        False: the worker died since the loop last looked (its death is dealt with on the
        next turn); writing to its pipe fails, and must not end the daemon.
        """
        return self._send_pickled(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def warm(self, now: float) -> None:
        """Wake the worker: a job is probably coming (see Lines.warm)."""
        self.warmed = now
        self._send_pickled(WARM)

    def _send_pickled(self, data: bytes) -> bool:
        try:
            self.conn.send_bytes(data)
        except OSError:
            return False
        return True

    def release(self, now: float) -> Claim | None:
        """The first job ended: the next one sent ahead (if any) is running from now."""
        job = self.jobs.popleft() if self.jobs else None
        self.started, self.child_pid, self.stop, self.sent_term = now, None, None, False
        return job

    def take_back(self) -> list[Claim]:
        """Jobs sent ahead that have not started: the worker is told to skip them."""
        ahead = list(self.jobs)[1:]
        for claim in ahead:
            self.jobs.remove(claim)
            self.send(("skip", claim.id, claim.attempt))
        return ahead

    def signal_job(self, signum: int) -> None:
        """Signal the job's whole process tree: a shell job's session, or this Python worker's group."""
        if self.job is None:
            return
        if self.job.kind == "shell":
            if self.child_pid is None:
                return  # not started yet: try again on the next turn of the loop
            target = self.child_pid
        else:
            target = self.process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(target, signum)


def _job_message(claim: Claim) -> dict[str, Any]:
    return {
        "id": claim.id, "attempt": claim.attempt, "kind": claim.kind, "command": claim.command,
        "callable": claim.callable, "args": claim.args, "kwargs": claim.kwargs, "cwd": claim.cwd,
        "env": claim.env, "log_path": claim.log_path,
    }  # fmt: skip


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Start a child without it running our main script again.

    multiprocessing makes each new process import the parent's __main__ by path (`jobrunner`,
    the console script, imports the whole CLI: ~60 ms per worker). Workers only need
    jobrunner.daemon.worker, which the forkserver has already imported; jobs never live in
    __main__ (the API refuses them).
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) if getattr(main, "__spec__", None) is None else None
    if path is None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _clear_dead_spares(log_dir: str) -> None:
    """Spare log files left by workers that died with a kill -9'd daemon (live ones stay)."""
    try:
        names = [name for name in os.listdir(log_dir) if name.startswith(".spare-") and name.endswith(".log")]
    except OSError:
        return
    for name in names:
        pid = name[len(".spare-") : -len(".log")]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(log_dir, name))


def pid_alive(pid: int) -> bool:
    """A process that exists (perhaps another user's) and is not a zombie nobody has reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return True


class Pool:
    """N workers; `replace` starts a new one in place of a dead one.

    The first workers may be forked straight from the daemon (`fork_first`), which takes a
    millisecond or two where the forkserver takes ~0.1 s to boot; only a process with no
    threads and no open database may do that. Replacements always come from the forkserver,
    since by then the daemon has both.
    """

    def __init__(self, size: int, db_target: str, log_dir: str | None = None, fork_first: bool = False) -> None:
        self.db_target = db_target
        self.log_dir = log_dir
        if log_dir:  # before the workers: each keeps a spare log file there (Service.run reports failures)
            with contextlib.suppress(OSError):
                os.makedirs(log_dir, mode=0o700, exist_ok=True)
            _clear_dead_spares(log_dir)
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["jobrunner.daemon.worker"])
        first = multiprocessing.get_context("fork") if fork_first else self.context
        self.workers: list[Worker] = []
        for index in range(size):
            self.workers.append(self._spawn(index, first))

    def _spawn(self, index: int, context: Any = None) -> Worker:
        context = context or self.context
        parent, child = context.Pipe(duplex=True)
        process = context.Process(
            target=worker_main, args=(child, self.db_target, self.log_dir), name=f"jobrunner-worker-{index}", daemon=True
        )
        with _main_script_hidden():
            process.start()
        child.close()
        return Worker(index=index, process=process, conn=parent)

    def replace(self, worker: Worker) -> Worker:
        with contextlib.suppress(OSError):
            worker.conn.close()
        worker.process.join(timeout=1)
        self._clear_spare(worker)
        fresh = self._spawn(worker.index)
        self.workers[worker.index] = fresh
        return fresh

    def _clear_spare(self, worker: Worker) -> None:
        """A worker that did not exit cleanly leaves its spare log file behind."""
        if self.log_dir and worker.process.pid:
            with contextlib.suppress(OSError):
                os.unlink(spare_log_path(self.log_dir, worker.process.pid))

    def idle(self) -> list[Worker]:
        return [w for w in self.workers if not w.busy]

    def busy(self) -> list[Worker]:
        return [w for w in self.workers if w.busy]

    def close(self, timeout: float = 5.0) -> None:
        """Ask idle workers to exit, then make sure every one has."""
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.process.join(timeout=max(deadline - time.monotonic(), 0.1))
            if worker.process.is_alive():
                try:
                    os.killpg(worker.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    worker.process.kill()
                worker.process.join(timeout=1)
            self._clear_spare(worker)
            worker.conn.close()


class StartingPool:
    """Workers starting while the daemon imports its modules and opens the database.

    With `fork` (the caller has no threads and no open database yet) they are forked on the
    spot; otherwise a thread waits for the forkserver to boot and start them (about 0.1 s).
    """

    def __init__(self, size: int, db_target: str, log_dir: str | None = None, fork: bool = False) -> None:
        self._pool: Pool | None = None
        self._error: BaseException | None = None
        if fork:
            self._pool = Pool(size, db_target, log_dir, fork_first=True)
            self._thread = None
            return
        self._thread = threading.Thread(target=self._start, args=(size, db_target, log_dir), name="jobrunner-pool-start",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _start(self, size: int, db_target: str, log_dir: str | None) -> None:
        try:
            self._pool = Pool(size, db_target, log_dir)
        except BaseException as exc:  # handed to whoever waits for the pool
            self._error = exc

    def result(self) -> Pool:
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._pool is not None
        return self._pool

    def close(self) -> None:
        """The daemon gave up before running: stop whatever started."""
        if self._thread is not None:
            self._thread.join()
        if self._pool is not None:
            self._pool.close()
