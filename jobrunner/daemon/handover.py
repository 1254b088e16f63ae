"""The daemon's side of its workers: what they report, jobs handed over and taken back, dead
workers and the processes their jobs left.

A job handed to a worker is the worker's until it reports the job done, or confirms it never
started it: "not started" is the worker's word, never the daemon's guess (watch.py). A dead
worker's job fails that attempt only once every process of it is gone (tree.py): the daemon
is the subreaper of its workers' jobs.

A mixin of Service (service.py), which owns the state it uses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING

from jobrunner.daemon import clock, tree
from jobrunner.daemon.notify import running_commands
from jobrunner.daemon.pool import Stop, Worker
from jobrunner.daemon.watch import FENCED
from jobrunner.domain.failures import Failure, FailureKind, describe_exit
from jobrunner.errors import StoreError
from jobrunner.store import runs

if TYPE_CHECKING:
    from jobrunner.daemon.service import Service

log = logging.getLogger("jobrunner.daemon")


class Handover:
    def _collect(self: Service, ready: dict[Worker, set[str]]) -> None:
        """Read every message waiting on the pipes that woke us, then deal with workers that died.
        The control pipe first: a job given back must be known before the next one's report."""
        for worker, handles in ready.items():
            ended = "end" in handles
            for control in (True, False):
                if ("ctl" if control else "conn") not in handles:
                    continue
                try:
                    self._read(worker, control)
                except (EOFError, OSError):
                    ended = True
            if ended and not worker.process.is_alive():
                for control in (True, False):  # whatever it said before it died
                    with contextlib.suppress(EOFError, OSError):
                        while (worker.ctl if control else worker.conn).poll(0):
                            self._read(worker, control)
                self._on_worker_death(worker)

    def _read(self: Service, worker: Worker, control: bool) -> None:
        for message in worker.receive(control):
            if control:
                self._on_control(worker, message)
            else:
                self._on_message(worker, message)

    def _on_control(self: Service, worker: Worker, message: tuple) -> None:
        """The watcher's messages (watch.py): a job given back or not, a shell job's progress,
        a job it fenced."""
        now = clock.now()
        if message[0] == "skipped":
            claim, why = worker.on_skipped(message[1], message[2], now)
            if claim is None:
                return  # it had started it: it runs, and is reported like any other
            self.started.pop((claim.id, claim.attempt), None)
            if why == "cancel":
                self._pend(runs.Outcome(claim.id, claim.attempt, failure=Failure(FailureKind.CANCELLED, "cancelled by user")))
            elif why == "release":
                self._give_back([claim])
            self.maybe_work = True  # room in its line; "lost": not ours any more, nothing to record
        elif message[0] == "progress":  # from a shell job's progress pipe
            job = worker.job
            if job is not None and worker.seqs.get((job.id, job.attempt)) == message[1]:
                self.progress[(job.id, job.attempt)] = (message[2], message[3])
        elif message[0] == "fenced" and worker.job is not None:
            worker.fenced = True
            log.warning("job %d: stopped by its worker: this daemon's lease lapsed (stalled?)", worker.job.id)

    def _on_message(self: Service, worker: Worker, message: tuple) -> None:
        kind = message[0]
        job = worker.job
        if job is None or message[1] != job.id or message[2] != job.attempt:
            return
        if kind == "started":
            worker.child_pid = message[3]
            if worker.stop is not None:  # asked to stop before we knew the process group
                worker.signal_job(signal.SIGTERM)
                worker.sent_term = True
        elif kind == "progress":
            self.progress[(job.id, job.attempt)] = (message[3], message[4])
        elif kind == "done":
            _, job_id, attempt, result, failure, exit_code = message
            outcome = runs.Outcome(job_id, attempt, result=result, exit_code=exit_code)
            if failure is not None:
                outcome.failure = Failure(
                    kind=FailureKind(failure["kind"]), message=failure["message"],
                    exception_names=failure.get("exception_names", []),
                    exit_code=failure.get("exit_code"), traceback=failure.get("traceback"),
                )  # fmt: skip
                if worker.stop is not None:  # it failed because we stopped it: say why
                    outcome.failure = Failure(worker.stop.kind, worker.stop.message, exit_code=exit_code)
            self._finished(worker, outcome)

    def _on_worker_death(self: Service, worker: Worker) -> None:
        """Its job failed (or was stopped, as asked), once every process of it is gone; the jobs
        behind it in its line never started (it starts one only after reporting the one before)."""
        job = worker.job
        worker.process.join(timeout=5)  # reaped: what it left is now ours (we are its subreaper)
        code = worker.process.exitcode
        self._end_job_processes(worker)
        if job is not None:
            if worker.fenced:
                failure = Failure(FailureKind.LOST, FENCED)
            elif worker.stop is not None:
                failure = Failure(worker.stop.kind, worker.stop.message)
            else:
                failure = Failure(FailureKind.WORKER_DIED, f"worker died: {describe_exit(code or 0)}")
            not_started = list(worker.jobs)[1:]
            self._pend(runs.Outcome(job.id, job.attempt, failure=failure))
            self.maybe_work = True
            self._give_back(not_started)
        else:
            log.warning("worker %d exited (%s) while idle; starting a new one", worker.index, describe_exit(code or 0))
        if worker.process.pid:  # its start log goes once what it ran is recorded (_forget_dead_workers)
            self.dead_workers.append((worker.process.pid, {(o.job_id, o.attempt) for o in self.pending}))
        self._unwatch(worker)
        self._watch(self.pool.replace(worker))

    def _end_job_processes(self: Service, worker: Worker) -> None:
        """Stop means stop: a dead worker's job may have left processes (its shell child's
        session, children that left it with setsid). They are ours now: end them all."""
        if worker.child_pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.child_pid, signal.SIGKILL)
        known = self.pool.own_children() | running_commands
        ended = tree.end_orphans(known)
        if ended and worker.job is not None:
            log.info("job %d: ended %d process(es) its dead worker left", worker.job.id, len(ended))

    def _kill_worker(self: Service, worker: Worker) -> None:
        """SIGKILL a worker and every process of its job, and wait until they are gone."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.join(timeout=5)
        self._end_job_processes(worker)

    def _finished(self: Service, worker: Worker, outcome: runs.Outcome) -> None:
        now = clock.now()
        self.ahead.record_duration(now - worker.started)
        worker.release(now)
        self._pend(outcome)
        self.maybe_work = True
        if worker.job is not None:
            self.started[(worker.job.id, worker.job.attempt)] = now

    def _unsendable(self: Service, claim: runs.Claim, reason: str) -> None:
        """A claimed job that cannot reach a worker fails that attempt, for good."""
        log.error("job %d cannot be handed to a worker: %s", claim.id, reason)
        failure = Failure(FailureKind.PERMANENT, f"cannot be handed to a worker: {reason}")
        self._pend(runs.Outcome(claim.id, claim.attempt, failure=failure))

    def _give_back(self: Service, claims: list[runs.Claim]) -> None:
        """Jobs sent ahead to a worker (or held) but not started: queued again as if never claimed.

        Should a worker start one in the instant before it reads the skip, its report is
        ignored: only the job at the head of a worker's line is ever recorded from it.
        """
        if not claims:
            return
        try:
            runs.release(self.store, self.owner, claims, clock.now())
        except StoreError as exc:  # they stay claimed by us: recovered like any lost attempt
            log.error("could not give back %d job(s) not started: %s", len(claims), exc)
        self.maybe_work = True
        for claim in claims:
            self.started.pop((claim.id, claim.attempt), None)

    def _stop(self: Service, worker: Worker, kind: FailureKind, message: str, now: float, kill_now: bool = False) -> None:
        """SIGTERM the job's process tree now and SIGKILL it after the grace period."""
        worker.stop = Stop(kind, message, kill_at=now if kill_now else now + self.options.kill_grace)
        worker.signal_job(signal.SIGTERM)
        worker.sent_term = worker.job is not None and (worker.job.kind != "shell" or worker.child_pid is not None)
