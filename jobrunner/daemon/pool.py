"""Supervised worker processes: started from forkserver, one pipe each, replaced when they die.

Not multiprocessing.Pool: it hangs when a worker is killed. Here the supervisor waits on
every pipe and every process sentinel, so a dead worker is seen at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from jobrunner.daemon.worker import worker_main
from jobrunner.domain.failures import FailureKind
from jobrunner.store.runs import Claim


@dataclass
class Stop:
    """Why and how the supervisor is stopping a running job."""

    kind: FailureKind  # TIMEOUT, CANCELLED or INTERRUPTED
    message: str
    kill_at: float  # SIGKILL after this moment if still alive


@dataclass
class Worker:
    index: int
    process: Any
    conn: Any
    job: Claim | None = None
    started: float = 0.0
    child_pid: int | None = None  # a shell job's process group
    stop: Stop | None = field(default=None)
    sent_term: bool = False

    @property
    def busy(self) -> bool:
        return self.job is not None

    def assign(self, claim: Claim, now: float) -> None:
        self.job, self.started, self.child_pid, self.stop, self.sent_term = claim, now, None, None, False
        self.conn.send(("run", _job_message(claim)))

    def release(self) -> Claim | None:
        job, self.job, self.child_pid, self.stop, self.sent_term = self.job, None, None, None, False
        return job

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


class Pool:
    """N workers; `start_worker` replaces one in place."""

    def __init__(self, size: int, db_target: str) -> None:
        self.db_target = db_target
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["jobrunner.daemon.worker"])
        self.workers: list[Worker] = []
        for index in range(size):
            self.workers.append(self._spawn(index))

    def _spawn(self, index: int) -> Worker:
        parent, child = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=worker_main, args=(child, self.db_target), name=f"jobrunner-worker-{index}", daemon=True
        )
        process.start()
        child.close()
        return Worker(index=index, process=process, conn=parent)

    def replace(self, worker: Worker) -> Worker:
        with contextlib.suppress(OSError):
            worker.conn.close()
        worker.process.join(timeout=1)
        fresh = self._spawn(worker.index)
        self.workers[worker.index] = fresh
        return fresh

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
            worker.conn.close()
