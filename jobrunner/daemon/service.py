"""The daemon's main loop: wake up, collect what workers report, record it, claim, dispatch.

Only the supervisor writes job state (workers report over their pipes), in small
batches. Signals only set a flag and write to a wake-up socket; the loop acts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import secrets
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobrunner import __version__
from jobrunner.config import Config
from jobrunner.daemon.ahead import HOLD_S, ClaimAhead
from jobrunner.daemon.housekeeping import Housekeeping
from jobrunner.daemon.lines import Lines
from jobrunner.daemon.notify import Dispatcher, notifiers_from_config
from jobrunner.daemon.pool import StartingPool, Stop, Worker, pid_alive
from jobrunner.daemon.systemd import Notifier
from jobrunner.domain.durations import format_duration
from jobrunner.domain.failures import Failure, FailureKind, describe_exit
from jobrunner.domain.states import Status
from jobrunner.errors import JobrunnerError, StoreError
from jobrunner.store import queries, runs
from jobrunner.store.db import Store
from jobrunner.store.retention import retention_from_config
from jobrunner.wakeup import Listener

log = logging.getLogger("jobrunner.daemon")
FLUSH_S = 0.005  # while every worker has its next job, finished jobs are written this often
FLUSH_MAX = 256  # ... or as soon as this many are waiting
NAP_S = 0.002  # while every worker has its next job, how long the loop waits between turns


@dataclass
class Options:
    workers: int = field(default_factory=lambda: os.cpu_count() or 2)
    queues: list[str] = field(default_factory=list)  # empty: every queue
    grace: float = 30.0  # how long running jobs may finish after SIGTERM
    kill_grace: float = 5.0  # SIGTERM -> SIGKILL for a timed-out or cancelled job
    lease: float = 30.0
    heartbeat: float = 5.0
    recover_every: float = 10.0
    poll: float = 1.0  # the slow fallback when no poke arrives
    cancel_poll: float = 0.5


class Service:
    """One daemon: a pool of workers bound to one database."""

    def __init__(self, store: Store, config: Config, options: Options, log_dir: str,
                 starting: StartingPool | None = None) -> None:  # fmt: skip
        self.store = store
        self.store.poke_on_commit = False  # our own writes must not wake us
        self.config = config
        self.options = options
        self.log_dir = log_dir
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(3)}"
        self.rng = random.Random()
        self.pending: list[runs.Outcome] = []
        self.pending_since = 0.0
        self.recorded: list[runs.Recorded] = []
        self.finished_at = 0.0
        self.failed_writes = 0
        self.progress: dict[tuple[int, int], tuple[float, str | None]] = {}
        self.started: dict[tuple[int, int], float] = {}  # for the duration in each log line
        self.signals: list[int] = []
        self.stopping = False
        self.drain_deadline = math.inf
        self.maybe_work = True
        self.next_due: float | None = None
        self.timers = {"heartbeat": 0.0, "recover": 0.0, "cancel": 0.0, "poll": 0.0}
        self.ahead = ClaimAhead(options.workers)
        # a bad [notify.*] or retention table fails here, before READY: the daemon exits 2
        self.systemd = Notifier()
        self.notify = Dispatcher(notifiers_from_config(config))
        self.housekeeping = Housekeeping(store, retention_from_config(config))
        self.starting = starting or StartingPool(options.workers, store.target, log_dir)  # last: nothing left to refuse

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> int:
        """Run until stopped by a signal; returns the process exit code."""
        os.makedirs(self.log_dir, mode=0o700, exist_ok=True)
        # The workers have been starting since before the database was opened (forked from this
        # process, or from the forkserver): none of them holds our database handle.
        self.pool = self.starting.result()
        self.lines = Lines(self.pool, self.ahead, self.started, self.options.workers)
        sig_read, sig_write = socket.socketpair()
        sig_read.setblocking(False)
        sig_write.setblocking(False)
        previous = self._install_signals(sig_write)
        listener = Listener(self.store.target)
        registered = False
        try:
            if not listener.bound:
                log.warning("another daemon on this host listens for wake-ups on this database; polling instead")
                self.options.poll = min(self.options.poll, 0.1)
            now = time.time()
            self._recover(now)
            from jobrunner.daemon.scheduler import Scheduler

            self.scheduler = Scheduler(self.store, self.config)
            self.scheduler.load(self.config, now)
            runs.register_daemon(self.store, self.owner, self.host, os.getpid(), __version__,
                                 self.options.workers, self.options.queues, now)  # fmt: skip
            registered = True
            log.info(
                "daemon %s started: %d workers, queues %s, database %s",
                self.owner, self.options.workers, ", ".join(self.options.queues) or "all", self.store.target,
            )  # fmt: skip
            self.notify.start()
            self.systemd.ready(self._status_text())
            self._loop(listener, sig_read)
        finally:
            self.systemd.stopping("stopping")
            self.pool.close()
            self.notify.close(timeout=5)
            if registered:  # a set-up that failed on the database must not fail here again
                try:
                    runs.mark_stopped(self.store, self.owner, time.time())
                except StoreError as exc:  # its heartbeat goes silent instead: nothing else is lost
                    log.error("could not record this daemon's stop: %s", exc)
            listener.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(-1)
            sig_read.close()
            sig_write.close()
        log.info("daemon %s stopped", self.owner)
        return 0

    def _install_signals(self, sig_write: socket.socket) -> dict[int, Any]:
        signal.set_wakeup_fd(sig_write.fileno(), warn_on_full_buffer=False)
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[signum] = signal.signal(signum, lambda n, _f: self.signals.append(n))
        return previous

    def _loop(self, listener: Listener, sig_read: socket.socket) -> None:
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener.sock, selectors.EVENT_READ, "wakeup")
        self.selector.register(sig_read, selectors.EVENT_READ, "signal")
        for worker in self.pool.workers:
            self._watch(worker)
        try:
            while True:
                if self.stopping and not self.pool.busy() and not self.pending:
                    return
                if self.lines.stocked(NAP_S):
                    # Every worker has its next job: let reports pile up a moment and take them in
                    # one turn, rather than wake (and maybe commit) for every job that ends.
                    time.sleep(NAP_S)
                ready: dict[Worker, bool] = {}  # worker -> its process ended
                for key, _ in self.selector.select(self._sleep_time(time.time())):
                    if key.data == "wakeup":
                        if listener.drain():
                            self.lines.warm(time.time())  # before the claim: it wakes meanwhile
                            self.maybe_work = True
                            self.timers["cancel"] = 0.0  # a cancel also pokes: look now
                            self.timers["poll"] = 0.0
                    elif key.data == "signal":
                        self._drain_socket(sig_read)
                        self._handle_signals()
                    else:
                        ready[key.data] = ready.get(key.data, False) or key.fileobj is not key.data.conn
                self._collect(ready)
                self.lines.assign([])  # freed workers take held jobs before anything is written
                self._record_and_claim(time.time())  # before the timers: a poke means a job waits
                try:
                    self._tick(time.time())
                except StoreError as exc:  # a full disk, a lock held too long: the next turn tries again
                    log.error("database error in the periodic work (heartbeat, timers), will retry: %s", exc)
                if self.maybe_work:  # the timers found work (due jobs, a schedule, a give-back)
                    self._record_and_claim(time.time())
        finally:
            self.selector.close()

    def _watch(self, worker: Worker) -> None:
        self.selector.register(worker.conn, selectors.EVENT_READ, worker)
        self.selector.register(worker.process.sentinel, selectors.EVENT_READ, worker)

    def _unwatch(self, worker: Worker) -> None:
        for handle in (worker.conn, worker.process.sentinel):
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.unregister(handle)

    def _record_and_claim(self, now: float) -> None:
        """One commit for what finished and what starts next; workers get their jobs in it,
        as soon as the claim's rows are updated (see _claim).

        While every worker has its next job already, finished jobs wait a few milliseconds to
        share a commit. If the database refuses (locked for too long, disk full), nothing is
        lost: the outcomes stay pending and are written on a later turn of the loop, and the
        jobs this transaction claimed are taken back from the workers (_void).
        """
        wants_claim = not self.stopping and self.maybe_work and self.lines.wants_claim()
        if not (self.pending or self.progress or wants_claim):
            return
        if (not wants_claim and not self.stopping and len(self.pending) < FLUSH_MAX
                and now < self.pending_since + FLUSH_S and all(w.busy for w in self.pool.workers)):  # fmt: skip
            return
        sent: list[runs.Claim] = []  # claimed in this transaction, already with the workers

        def send_early(claims: list[runs.Claim]) -> None:
            sent.extend(claims)
            self.lines.assign(claims)

        early = not self.failed_writes  # after a failed write, jobs go out only once committed
        try:
            with self.store.write():
                self._flush(now)
                claims = self._claim(now, send_early if early else None) if wants_claim else []
        except StoreError as exc:
            log.error("database write failed, will retry: %s", exc)
            self._void(sent)
            self.failed_writes += 1
            time.sleep(min(0.05 * self.failed_writes, 1.0))
            return
        self.failed_writes = 0
        self._log_records(self.recorded)
        self.pending, self.recorded = [], []
        if not early:
            self.lines.assign(claims)

    def _void(self, claims: list[runs.Claim]) -> None:
        """Jobs sent to workers by a transaction that then failed: the database still has them
        queued, so they must not run here. Held or sent ahead, they are dropped; one that has
        started is stopped by killing its worker, which is replaced (whatever it reports is
        stale). Such a job may have begun: it runs again later, as after a crash."""
        for claim in claims:
            self.started.pop((claim.id, claim.attempt), None)
            if self.ahead.remove(claim.id, claim.attempt) or self.lines.skip(claim.id, claim.attempt):
                continue
            worker = next((w for w in self.pool.workers if w.job is claim), None)
            if worker is None:
                continue
            log.warning("job %d: stopped attempt %d, its start could not be recorded", claim.id, claim.attempt)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.process.pid, signal.SIGKILL)
            earlier = [c for c in list(worker.jobs)[1:] if c not in claims]  # committed, sent ahead
            self._unwatch(worker)
            self._watch(self.pool.replace(worker))
            self._give_back(earlier)

    def _sleep_time(self, now: float) -> float:
        deadlines = [self.timers["heartbeat"] + self.options.heartbeat, self.timers["poll"] + self.options.poll]
        if self.pool.busy():
            deadlines.append(self.timers["cancel"] + self.options.cancel_poll)
        if self.next_due is not None:
            deadlines.append(self.next_due)
        if self.scheduler.next_at is not None:
            deadlines.append(self.scheduler.next_at)
        for worker in self.pool.busy():
            if worker.stop is not None:
                deadlines.append(worker.stop.kill_at)
            elif worker.job and worker.job.timeout:
                deadlines.append(worker.started + worker.job.timeout)
        if self.stopping:
            deadlines.append(self.drain_deadline)
        watchdog = self.systemd.next_watchdog_in()
        if watchdog is not None:
            deadlines.append(now + watchdog)
        deadlines.append(self.housekeeping.next_at())
        if len(self.ahead):
            deadlines.append(self.ahead.held[0][1] + HOLD_S)  # give a held job back in time
        if self.pending:
            deadlines.append(self.pending_since + FLUSH_S)
        for worker in self.pool.workers:
            if len(worker.jobs) > 1:
                deadlines.append(worker.started + HOLD_S)  # jobs sent ahead wait behind this one
        return min(max(min(deadlines) - now, 0.0), self.options.poll)

    @staticmethod
    def _drain_socket(sock: socket.socket) -> None:
        try:
            while sock.recv(256):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            now = time.time()
            if signum == signal.SIGHUP:
                self._reload()
            elif not self.stopping:
                self.stopping = True
                self.drain_deadline = now + self.options.grace
                not_started = self.ahead.drain()  # never started: straight back to the queue
                for worker in self.pool.workers:
                    not_started += worker.take_back()
                self._give_back(not_started)
                busy = len(self.pool.busy())
                log.info(
                    "%s: stopping; %d running job(s) get %s to finish (signal again to stop now)",
                    signal.Signals(signum).name, busy, format_duration(self.options.grace),
                )  # fmt: skip
                runs.heartbeat(self.store, self.owner, now, self.options.lease, busy, state="stopping")
                self.systemd.stopping(f"draining {busy} job(s)")
                grace_us = int((self.options.grace + self.options.kill_grace + 10) * 1_000_000)
                self.systemd.extend_timeout(grace_us)
            else:
                log.info("%s again: stopping running jobs now", signal.Signals(signum).name)
                for worker in self.pool.busy():
                    self._stop(worker, FailureKind.INTERRUPTED, "interrupted: daemon stopped", now, kill_now=True)

    def _reload(self) -> None:
        """SIGHUP: read the config again; a broken one is logged and the old one kept."""
        from jobrunner.config import load_config

        try:
            config = load_config(self.config.path)
            notifiers = notifiers_from_config(config)
            policy = retention_from_config(config)
        except JobrunnerError as exc:
            log.error("SIGHUP: config not reloaded, keeping the old one: %s", exc)
            return
        self.config = config
        self.notify.replace(notifiers)
        self.housekeeping.replace(policy)
        self.scheduler.load(config, time.time())
        log.info("SIGHUP: config reloaded from %s", config.path or "(no file)")

    # ------------------------------------------------------------------ workers
    def _collect(self, ready: dict[Worker, bool]) -> None:
        """Read every message waiting on the pipes that woke us, then deal with workers that died."""
        for worker, ended in ready.items():
            try:
                for message in worker.receive():
                    self._on_message(worker, message)
            except (EOFError, OSError):
                ended = True
            if ended and not worker.process.is_alive():
                self._on_worker_death(worker)

    def _on_message(self, worker: Worker, message: tuple) -> None:
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

    def _on_worker_death(self, worker: Worker) -> None:
        job = worker.job
        code = worker.process.exitcode
        if job is not None:
            if worker.stop is not None:
                failure = Failure(worker.stop.kind, worker.stop.message)
            else:
                failure = Failure(FailureKind.WORKER_DIED, f"worker died: {describe_exit(code or 0)}")
            not_started = list(worker.jobs)[1:]
            self._pend(runs.Outcome(job.id, job.attempt, failure=failure))
            self.maybe_work = True
            self._give_back(not_started)  # the dead worker never started them
        else:
            log.warning("worker %d exited (%s) while idle; starting a new one", worker.index, describe_exit(code or 0))
        self._unwatch(worker)
        self._watch(self.pool.replace(worker))

    def _finished(self, worker: Worker, outcome: runs.Outcome) -> None:
        now = time.time()
        self.ahead.record_duration(now - worker.started)
        worker.release(now)
        self._pend(outcome)
        self.maybe_work = True
        if worker.job is not None:
            self.started[(worker.job.id, worker.job.attempt)] = now

    def _give_back(self, claims: list[runs.Claim]) -> None:
        """Jobs sent ahead to a worker (or held) but not started: queued again as if never claimed.

        Should a worker start one in the instant before it reads the skip, its report is
        ignored: only the job at the head of a worker's line is ever recorded from it.
        """
        if not claims:
            return
        try:
            runs.release(self.store, self.owner, claims, time.time())
        except StoreError as exc:  # they stay claimed by us: recovered like any lost attempt
            log.error("could not give back %d job(s) not started: %s", len(claims), exc)
        self.maybe_work = True
        for claim in claims:
            self.started.pop((claim.id, claim.attempt), None)

    def _pend(self, outcome: runs.Outcome) -> None:
        if not self.pending:
            self.pending_since = time.time()
        self.pending.append(outcome)

    def _stop(self, worker: Worker, kind: FailureKind, message: str, now: float, kill_now: bool = False) -> None:
        """SIGTERM the job's process tree now and SIGKILL it after the grace period."""
        worker.stop = Stop(kind, message, kill_at=now if kill_now else now + self.options.kill_grace)
        worker.signal_job(signal.SIGTERM)
        worker.sent_term = worker.job is not None and (worker.job.kind != "shell" or worker.child_pid is not None)

    # ------------------------------------------------------------------ store
    def _flush(self, now: float) -> None:
        """Write progress and finished attempts (inside the caller's transaction)."""
        if self.progress:
            updates = [(job_id, attempt, f, m) for (job_id, attempt), (f, m) in self.progress.items()]
            runs.save_progress(self.store, updates, now)
            self.progress.clear()
        if self.pending:
            self.recorded = runs.finish(self.store, self.owner, self.pending, now, self.rng)
            self.finished_at = now

    def _log_records(self, records: list[runs.Recorded]) -> None:
        now = self.finished_at
        for record in records:
            started = self.started.pop((record.job_id, record.attempt), None)
            took = f" after {format_duration(now - started)}" if started else ""
            if record.status is None:
                log.warning("job %d attempt %d: %s", record.job_id, record.attempt, record.message)
            elif record.status is Status.SUCCEEDED:
                extra = record.message[len("succeeded"):]  # "; released 12, 13" when dependents start
                log.info("job %d succeeded%s%s", record.job_id, took, extra)
            else:
                log.info("job %d %s%s: %s", record.job_id, record.status.value, took, record.message)
            if record.status is Status.RETRYING:
                self.timers["poll"] = 0.0  # recompute the next due time
            self._notify(record)

    def _notify(self, record: runs.Recorded) -> None:
        """Hand a committed transition to the notifiers' thread; never blocks the loop."""
        if record.status is None or not self.notify.wants(record.status.value):
            return
        try:
            job = queries.get_job(self.store, record.job_id)
        except JobrunnerError:
            return
        self.notify.dispatch(record.status.value, job)

    def _status_text(self) -> str:
        queued = self.store.execute("SELECT COUNT(*) FROM job WHERE status='queued'").fetchone()[0]
        return f"{len(self.pool.busy())} running, {queued} queued"

    def _tick(self, now: float) -> None:
        opts = self.options
        self.systemd.watchdog()  # rate-limited inside: half of WATCHDOG_USEC
        if now - self.timers["heartbeat"] >= opts.heartbeat:
            self.timers["heartbeat"] = now
            state = "stopping" if self.stopping else "running"
            runs.heartbeat(self.store, self.owner, now, opts.lease, len(self.pool.busy()), state)
            self.systemd.status(self._status_text())
        if not self.stopping:
            self.housekeeping.tick(now)
        if now - self.timers["recover"] >= opts.recover_every:
            self.timers["recover"] = now
            self._recover(now)
        stale = self.ahead.stale(now)
        if stale:
            runs.release(self.store, self.owner, stale, now)
            self.maybe_work = True
        if (self.pool.busy() or len(self.ahead)) and now - self.timers["cancel"] >= opts.cancel_poll:
            self.timers["cancel"] = now
            wanted = set(runs.cancel_requests(self.store, self.owner))
            for job_id, attempt in wanted:
                if self.ahead.remove(job_id, attempt) is not None or self.lines.skip(job_id, attempt):
                    failure = Failure(FailureKind.CANCELLED, "cancelled by user")  # never started
                    self._pend(runs.Outcome(job_id, attempt, failure=failure))
            for worker in self.pool.busy():
                if worker.job and worker.stop is None and (worker.job.id, worker.job.attempt) in wanted:
                    log.info("job %d: cancel requested; stopping it", worker.job.id)
                    self._stop(worker, FailureKind.CANCELLED, "cancelled by user while running", now)
        for worker in self.pool.busy():
            if len(worker.jobs) > 1 and now - worker.started >= HOLD_S:  # a long job: let others run those
                self._give_back(worker.take_back())
            job = worker.job
            assert job is not None
            if worker.stop is None and job.timeout and now - worker.started >= job.timeout:
                log.info("job %d: over its timeout of %s; stopping it", job.id, format_duration(job.timeout))
                self._stop(worker, FailureKind.TIMEOUT, f"timed out after {format_duration(job.timeout)}", now)
            elif worker.stop is None and self.stopping and now >= self.drain_deadline:
                self._stop(worker, FailureKind.INTERRUPTED, "interrupted: daemon stopped", now)
            elif worker.stop is not None:
                if not worker.sent_term:
                    worker.signal_job(signal.SIGTERM)
                    worker.sent_term = worker.child_pid is not None or job.kind != "shell"
                if now >= worker.stop.kill_at:
                    worker.signal_job(signal.SIGKILL)
                    worker.stop.kill_at = now + 1.0  # and again, should it somehow survive
        if now - self.timers["poll"] >= opts.poll:
            self.timers["poll"] = now
            self.maybe_work = True
            self.next_due = runs.next_due(self.store)
            self.scheduler.refresh()
        due = self.scheduler.next_at
        if due is not None and due <= now and not self.stopping and self.scheduler.run_due(now):
            self.maybe_work = True
        if self.next_due is not None and self.next_due <= now:
            if runs.promote_due(self.store, now):
                self.maybe_work = True
            self.next_due = runs.next_due(self.store)

    def _recover(self, now: float) -> None:
        """Take back jobs of dead daemons: on this host by pid at once, elsewhere when leases expire."""
        for owner, pid in runs.stale_daemons(self.store, self.host, self.owner):
            if not pid_alive(pid):
                for record in runs.recover_owner(self.store, owner, f"lost: daemon pid {pid} died", now, self.rng):
                    log.info("job %d recovered from dead daemon %s: %s", record.job_id, owner, record.message)
                    self._notify(record)
        for record in runs.recover_expired(self.store, now, self.rng):
            log.info("job %d recovered (lease expired): %s", record.job_id, record.message)
            self._notify(record)
        self.maybe_work = True

    def _claim(self, now: float, send: Callable[[list[runs.Claim]], None] | None) -> list[runs.Claim]:
        """Claim as many jobs as there is room for, within the queues' concurrency limits.

        `send` gets each batch as soon as its rows are updated, inside the transaction: the
        jobs start while the commit is written (0.1 ms sooner on an idle daemon).
        """
        idle = self.lines.capacity()
        running: dict[str, int] = {}
        busy_queues = [claim.queue for w in self.pool.workers for claim in w.jobs]  # sent ahead too
        for queue in busy_queues + self.ahead.queues():
            running[queue] = running.get(queue, 0) + 1
        limits = {q.name: q.concurrency for q in self.config.queues.values() if q.concurrency}
        only = self.options.queues
        claims = runs.claim(self.store, self.owner, now, idle, self.options.lease, self.log_dir,
                            only_queues=only, exclude_queues=list(limits), on_claimed=send)  # fmt: skip
        for queue, cap in limits.items():
            free = min(cap - running.get(queue, 0), idle - len(claims))
            if free > 0 and (not only or queue in only):
                claims += runs.claim(self.store, self.owner, now, free, self.options.lease, self.log_dir,
                                     only_queues=[queue], on_claimed=send)  # fmt: skip
        self.maybe_work = len(claims) >= idle  # a short claim means the queue is empty for now
        return claims
