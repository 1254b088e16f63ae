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

from jobrunner.daemon import startlog
from jobrunner.daemon.jobenv import progress_path
from jobrunner.daemon.joblogs import spare_log_path
from jobrunner.daemon.worker import worker_main
from jobrunner.domain.failures import FailureKind
from jobrunner.processes import pid_alive
from jobrunner.trust import ensure_log_dir

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
    (sent ahead for short jobs) start in order as soon as the one before ends.

    A job sent is the worker's until it reports the job done, or confirms on its control
    pipe that it never started it (`take_back` asks; see watch.py): only then may the job
    be queued again.
    """

    index: int
    process: Any
    conn: Any
    ctl: Any = None  # the control pipe: skips, lease renewals, fences (watch.py)
    jobs: deque[Claim] = field(default_factory=deque)
    seqs: dict[tuple[int, int], int] = field(default_factory=dict)  # (id, attempt) -> seq sent
    next_seq: int = 0
    skipping: dict[int, str] = field(default_factory=dict)  # seq -> why it was asked back
    fenced: bool = False  # it stopped its job itself: the daemon's lease lapsed
    ctl_inbox: bytearray = field(default_factory=bytearray)
    started: float = 0.0  # when the first job started (or when we learnt it did)
    child_pid: int | None = None  # a shell job's process group
    stop: Stop | None = field(default=None)
    sent_term: bool = False
    inbox: bytearray = field(default_factory=bytearray)  # bytes read but not yet a whole message
    warmed: float = 0.0  # when it was last told a job is probably coming (Lines.warm)

    def receive(self, control: bool = False) -> list[Any]:
        """Every message the worker has sent so far, from one read of its pipe (or its
        control pipe).

        The pipe is a multiprocessing Connection (a 4-byte big-endian length, then a pickle);
        reading what is there at once costs one system call where poll() and recv() cost three
        per message. Call only when the pipe is readable (the loop's selector says so).
        EOFError: the worker is gone.
        """
        conn, buffer = (self.ctl, self.ctl_inbox) if control else (self.conn, self.inbox)
        data = os.read(conn.fileno(), 1 << 16)
        if not data:
            raise EOFError
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
        others as soon as the one before it ends. False: the worker is gone, they were not sent.
        A job that cannot be pickled raises ValueError naming it (see Lines.assign)."""
        first = self.next_seq
        messages = [_job_message(claim, first + n) for n, claim in enumerate(claims)]
        try:
            data = pickle.dumps(("run", messages), pickle.HIGHEST_PROTOCOL)
        except Exception:  # a job whose arguments nest too deep, say: find it
            for claim, message in zip(claims, messages, strict=True):
                try:
                    pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
                except Exception as exc:
                    raise Unsendable(claim, f"{type(exc).__name__}: {exc}") from None
            raise
        if not self._send_pickled(data):
            return False
        self.next_seq += len(claims)
        for n, claim in enumerate(claims):
            self.seqs[(claim.id, claim.attempt)] = first + n
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
        if job is not None:
            self.skipping.pop(self.seqs.pop((job.id, job.attempt), -1), None)
        self.started, self.child_pid, self.stop, self.sent_term = now, None, None, False
        self.fenced = False
        return job

    def take_back(self, why: str, claims: list[Claim] | None = None) -> int:
        """Ask for jobs sent ahead (default: all of them) back. Nothing changes until the worker
        answers (`on_skipped`): it may have started one already. Returns how many were asked."""
        asked = 0
        for claim in list(self.jobs)[1:] if claims is None else claims:
            seq = self.seqs.get((claim.id, claim.attempt))
            if seq is None or seq in self.skipping or claim is self.job:
                continue
            self.skipping[seq] = why
            asked += 1
            with contextlib.suppress(OSError):  # it died: its death gives back what it never started
                self.ctl.send(("skip", seq))
        return asked

    def on_skipped(self, seq: int, given: bool, now: float) -> tuple[Claim | None, str]:
        """The worker's answer to a take_back: the claim it gave back (None if it had started
        it, or it is unknown) and why it was asked for."""
        why = self.skipping.pop(seq, "")
        claim = next((c for c in self.jobs if self.seqs.get((c.id, c.attempt)) == seq), None)
        if claim is None or not given:
            return None, why
        head = claim is self.job
        self.jobs.remove(claim)
        del self.seqs[(claim.id, claim.attempt)]
        if head:  # we took it for running (the job before it ended); it never started
            self.started, self.child_pid, self.stop, self.sent_term = now, None, None, False
        return claim, why

    def lease(self, deadline: float) -> None:
        """Every lease this worker's jobs hold was renewed: they may run until `deadline`."""
        with contextlib.suppress(OSError):
            self.ctl.send(("lease", deadline))

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


class Unsendable(Exception):
    """A claimed job that cannot be handed to a worker (it does not pickle)."""

    def __init__(self, claim: Claim, reason: str) -> None:
        super().__init__(reason)
        self.claim, self.reason = claim, reason


def _job_message(claim: Claim, seq: int) -> dict[str, Any]:
    return {
        "id": claim.id, "attempt": claim.attempt, "kind": claim.kind, "command": claim.command,
        "callable": claim.callable, "args": claim.args, "kwargs": claim.kwargs, "cwd": claim.cwd,
        "env": claim.env, "log_path": claim.log_path, "seq": seq, "fence": claim.fence,
        "memory_limit": claim.memory_limit, "cpu_time_limit": claim.cpu_time_limit,
        "max_log_size": claim.max_log_size,
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
    """Spare log files and progress FIFOs left by workers that died with a kill -9'd daemon (live ones stay)."""
    try:
        names = [name for name in os.listdir(log_dir) if name.startswith((".spare-", ".progress-"))]
    except OSError:
        return
    for name in names:
        pid = name.removesuffix(".log").rpartition("-")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(log_dir, name))


class Pool:
    """N workers; `replace` starts a new one in place of a dead one.

    The first workers may be forked straight from the daemon (`fork_first`), which takes a
    millisecond or two where the forkserver takes ~0.1 s to boot; only a process with no
    threads and no open database may do that. Replacements always come from the forkserver,
    since by then the daemon has both.
    """

    def __init__(self, size: int, db_target: str, log_dir: str | None = None, fork_first: bool = False,
                 kill_grace: float = 5.0, python_path: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.db_target = db_target
        self.python_path = tuple(python_path)  # [daemon] python_path: where job callables import from
        self.log_dir = log_dir
        self.daemon_pid = os.getpid()  # named in each worker's start log (startlog.py)
        self.kill_grace = kill_grace
        if log_dir:  # before the workers: each keeps a spare log file there (Service.run reports failures)
            with contextlib.suppress(OSError):
                ensure_log_dir(log_dir)  # 0700 with O_EXCL semantics; an existing one must be trusted
            _clear_dead_spares(log_dir)
            # start logs under our pid are an earlier daemon's that had it (a reboot): one no
            # successor gives back by pid (the pid is alive: ours), so they are nobody's evidence
            startlog.forget(log_dir, self.daemon_pid)
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["jobrunner.daemon.worker"])
        first = multiprocessing.get_context("fork") if fork_first else self.context
        self.workers: list[Worker] = []
        for index in range(size):
            self.workers.append(self._spawn(index, first))

    def _spawn(self, index: int, context: Any = None) -> Worker:
        context = context or self.context
        parent, child = context.Pipe(duplex=True)
        ctl_parent, ctl_child = context.Pipe(duplex=True)
        process = context.Process(
            target=worker_main,
            args=(child, self.db_target, self.log_dir, ctl_child, self.kill_grace, self.python_path, self.daemon_pid),
            name=f"jobrunner-worker-{index}", daemon=True,
        )  # fmt: skip
        with _main_script_hidden():
            process.start()
        child.close()
        ctl_child.close()
        return Worker(index=index, process=process, conn=parent, ctl=ctl_parent)

    def replace(self, worker: Worker) -> Worker:
        with contextlib.suppress(OSError):
            worker.conn.close()
        with contextlib.suppress(OSError):
            worker.ctl.close()
        worker.process.join(timeout=1)
        self._clear_spare(worker)
        fresh = self._spawn(worker.index)
        self.workers[worker.index] = fresh
        return fresh

    def _clear_spare(self, worker: Worker) -> None:
        """A worker that did not exit cleanly leaves its spare log file and progress FIFO behind."""
        if self.log_dir and worker.process.pid:
            for path in (spare_log_path(self.log_dir, worker.process.pid), progress_path(self.log_dir, worker.process.pid)):
                with contextlib.suppress(OSError):
                    os.unlink(path)

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
            worker.ctl.close()

    def own_children(self) -> set[int]:
        """Processes the daemon started itself (workers, forkserver, resource tracker): any
        other child it has is what a dead worker's job left behind (see tree.end_orphans)."""
        pids = {w.process.pid for w in self.workers if w.process.pid}
        with contextlib.suppress(ImportError, AttributeError):
            from multiprocessing import forkserver, resource_tracker

            pids.add(forkserver._forkserver._forkserver_pid)
            pids.add(resource_tracker._resource_tracker._pid)
        pids.discard(None)  # type: ignore[arg-type]
        return pids


class StartingPool:
    """Workers starting while the daemon imports its modules and opens the database.

    With `fork` (the caller has no threads and no open database yet) they are forked on the
    spot; otherwise a thread waits for the forkserver to boot and start them (about 0.1 s).
    """

    def __init__(self, size: int, db_target: str, log_dir: str | None = None, fork: bool = False,
                 kill_grace: float = 5.0, python_path: tuple[str, ...] = ()) -> None:  # fmt: skip
        self._pool: Pool | None = None
        self._error: BaseException | None = None
        if fork:
            self._pool = Pool(size, db_target, log_dir, fork_first=True, kill_grace=kill_grace,
                              python_path=python_path)  # fmt: skip
            self._thread = None
            return
        self._thread = threading.Thread(target=self._start, args=(size, db_target, log_dir, kill_grace, python_path),
                                        name="jobrunner-pool-start", daemon=True)  # fmt: skip
        self._thread.start()

    def _start(self, size: int, db_target: str, log_dir: str | None, kill_grace: float,
               python_path: tuple[str, ...] = ()) -> None:  # fmt: skip
        try:
            self._pool = Pool(size, db_target, log_dir, kill_grace=kill_grace, python_path=python_path)
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
