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
from dataclasses import dataclass, field
from typing import Any

from jobrunner import __version__
from jobrunner.config import Config
from jobrunner.daemon import clock, startlog, tree
from jobrunner.daemon.ahead import HOLD_S, ClaimAhead
from jobrunner.daemon.handover import Handover
from jobrunner.daemon.housekeeping import Housekeeping
from jobrunner.daemon.lines import Lines
from jobrunner.daemon.notify import Dispatcher, notifiers_from_config
from jobrunner.daemon.periodic import PeriodicWork, fence_after
from jobrunner.daemon.pokegate import PokeGate
from jobrunner.daemon.pool import StartingPool, Worker
from jobrunner.daemon.systemd import Notifier
from jobrunner.domain.durations import format_duration
from jobrunner.domain.failures import FailureKind
from jobrunner.domain.states import Status
from jobrunner.errors import JobrunnerError, StoreError
from jobrunner.secrets import redact_target
from jobrunner.store import queries, rates, runs
from jobrunner.store.db import Store
from jobrunner.store.pgwake import PgListener
from jobrunner.store.retention import retention_from_config
from jobrunner.trust import ensure_log_dir
from jobrunner.wakeup import Listener

log = logging.getLogger("jobrunner.daemon")
FLUSH_S = 0.005  # while every worker has its next job, finished jobs are written this often
FLUSH_MAX = 256  # ... or as soon as this many are waiting
NAP_S = 0.002  # while every worker has its next job, how long the loop waits between turns
PROGRESS_S = 0.2  # progress alone is written this often (the latest per job); sooner with any other write
DB_ERROR_LOG_S = 30.0  # while the database fails us, each kind of failure is logged this often


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


def bound_lock_waits(store: Store, lease: float) -> None:
    """On PostgreSQL, the daemon's sessions neither hold row locks nor wait for one longer than a
    quarter of the lease (at least 1 s). A daemon cut off from the server in the middle of a
    transaction would otherwise keep its rows locked for as long as the partition lasts, and the
    first other daemon to recover one of its jobs would wait that long, its whole loop with it.
    The server ends such a session (idle_in_transaction_session_timeout, its transaction rolled
    back), and a wait on a lock held by someone else fails and is retried (lock_timeout)."""
    if store.is_sqlite:
        return
    ms = max(int(lease * 250), 1000)
    params = store.db.connect_params
    params["options"] = " ".join(filter(None, [params.get("options"), f"-c idle_in_transaction_session_timeout={ms}",
                                               f"-c lock_timeout={ms}"]))  # fmt: skip
    store.close()  # the next statement connects again, with them


class Service(Handover, PeriodicWork):
    """One daemon: a pool of workers bound to one database."""

    def __init__(self, store: Store, config: Config, options: Options, log_dir: str,
                 starting: StartingPool | None = None) -> None:  # fmt: skip
        self.store = store
        self.store.poke_on_commit = False  # our own writes must not wake us
        bound_lock_waits(store, options.lease)
        self.config = config
        self.options = options
        self.log_dir = log_dir
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(3)}"
        self.rng = random.Random()
        self.pending: list[runs.Outcome] = []
        self.pending_since = 0.0
        self.flushed = 0  # how many of `pending` the transaction being written holds
        self.recorded: list[runs.Recorded] = []
        self.finished_at = 0.0
        self.failed_writes = 0
        self.db_trouble: tuple[float, str] | None = None  # since when the database fails us, and the STATUS= text
        self.db_logged: dict[str, float] = {}  # kind of failure -> when it may be logged again
        self.progress: dict[tuple[int, int], tuple[float, str | None]] = {}
        self.progress_at = 0.0  # when progress was last written
        self.started: dict[tuple[int, int], float] = {}  # for the duration in each log line
        self.signals: list[int] = []
        self.stopping = False
        self.drain_deadline = math.inf
        self.maybe_work = True
        self.pokes = PokeGate()
        self.unwatched: socket.socket | None = None  # the local socket, during a quiet interval
        self.pg: PgListener | None = None  # LISTEN on PostgreSQL (pgwake.py)
        self.pg_fd: int | None = None
        self.claimed = 0  # jobs the last turn claimed
        self.retry_write_at = 0.0  # after a failed write: when the next try is due
        self.next_due: float | None = None
        self.rate_due: float | None = None  # when a rate-limited queue's next token is due (jobs wait for it)
        self.timers = {"heartbeat": 0.0, "recover": 0.0, "cancel": 0.0, "poll": 0.0}
        self.renewed_at = time.time()  # clock.now() of the last heartbeat that renewed our leases
        self.beat_missed = False  # the last heartbeat failed: beat as soon as a write goes through
        self.dead_workers: list[tuple[int, set[tuple[int, int]]]] = []  # pid, outcomes unrecorded at its death
        self.unrecorded = 0  # job ends given up on at a stop, the database refusing every write
        self.ahead = ClaimAhead(options.workers)
        self.lost: set[tuple[int, int]] = set()  # attempts another daemon took over: stop them
        # a bad [notify.*] or retention table fails here, before READY: the daemon exits 2
        self.systemd = Notifier()
        self.notify = Dispatcher(notifiers_from_config(config))
        self.housekeeping = Housekeeping(store, retention_from_config(config))
        self.starting = starting or StartingPool(options.workers, store.target, log_dir, kill_grace=options.kill_grace,
                                                 python_path=config.python_path)  # last: nothing left to refuse

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> int:
        """Run until stopped by a signal; returns the process exit code."""
        ensure_log_dir(self.log_dir)  # 0700 with O_EXCL semantics; an existing one must be trusted
        tree.become_subreaper()  # a dead worker's job processes come to us, to be ended
        # The workers have been starting since before the database was opened (forked from this
        # process, or from the forkserver): none of them holds our database handle.
        self.pool = self.starting.result()
        self.lines = Lines(self.pool, self.ahead, self.started, self.options.workers, self._unsendable)
        sig_read, sig_write = socket.socketpair()
        sig_read.setblocking(False)
        sig_write.setblocking(False)
        previous = self._install_signals(sig_write)
        listener = Listener(self.log_dir)
        registered = False
        try:
            if not listener.bound and self.store.is_sqlite:  # on PostgreSQL, LISTEN wakes it (pgwake.py)
                log.warning("another daemon on this host listens for wake-ups on this database; polling instead")
                self.options.poll = min(self.options.poll, 0.1)
            clock.sync(self.store)  # before the first time is read or written (PostgreSQL: the server's)
            now = clock.now()
            self._recover(now)
            from jobrunner.daemon.scheduler import Scheduler

            self.scheduler = Scheduler(self.store, self.config)
            self.scheduler.load(self.config, now)
            runs.register_daemon(self.store, self.owner, self.host, os.getpid(), __version__,
                                 self.options.workers, self.options.queues, now, self.options.heartbeat)  # fmt: skip
            registered = True
            rates.keep_only(self.store, self._rated_queues())
            log.info(
                "daemon %s started: %d workers, queues %s, database %s",
                self.owner, self.options.workers, ", ".join(self.options.queues) or "all", redact_target(self.store.target),
            )  # fmt: skip
            self.notify.start()
            self.systemd.ready(self._status_text())
            self._loop(listener, sig_read)
        finally:
            self.systemd.stopping("stopping")
            self.pool.close()
            startlog.forget(self.log_dir, os.getpid())  # those of workers that died on the way
            self.notify.close(timeout=5)
            if registered:  # a set-up that failed on the database must not fail here again
                try:
                    runs.mark_stopped(self.store, self.owner, clock.now())
                except StoreError as exc:  # its heartbeat goes silent instead: nothing else is lost
                    log.error("could not record this daemon's stop: %s", exc)
            listener.close()
            if self.pg is not None:
                self.pg.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(-1)
            sig_read.close()
            sig_write.close()
        log.info("daemon %s stopped", self.owner)
        return 1 if self.unrecorded else 0

    def _give_up_recording(self) -> bool:
        """Stopping with every job ended but some ends unrecorded, the database refusing writes:
        wait no longer than our leases last. Once they lapse, another daemon may recover those
        jobs as lost attempts (and run them again), so our records could not stand anyway; a
        daemon told to stop must not wait for a database that may never come back."""
        if not self.failed_writes or clock.now() < self.renewed_at + self.options.lease:
            return False
        self.unrecorded = len(self.pending)
        log.error("stopping with %d job end(s) unrecorded: the database refused every write and this "
                  "daemon's leases have lapsed, so the next daemon recovers those jobs as lost attempts: %s",
                  self.unrecorded, ", ".join(f"job {o.job_id} attempt {o.attempt}" for o in self.pending))  # fmt: skip
        return True

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
                if self.stopping and not self.pool.busy() and (not self.pending or self._give_up_recording()):
                    return
                if self.lines.stocked(NAP_S):
                    # Every worker has its next job: let reports pile up a moment and take them in
                    # one turn, rather than wake (and maybe commit) for every job that ends.
                    time.sleep(NAP_S)
                ready: dict[Worker, set[str]] = {}  # worker -> which of its handles woke us
                if self.pokes.due(clock.now()):
                    if self.unwatched is not None:
                        self.selector.register(self.unwatched, selectors.EVENT_READ, "wakeup")
                        self.unwatched = None
                    self._poked()  # answer the pokes that waited out the quiet interval
                self._listen_across_hosts(clock.now())
                for key, _ in self.selector.select(self._sleep_time(clock.now())):
                    if key.data == "wakeup":
                        if listener.drain():
                            self._poked(listener.sock)
                    elif key.data == "wakeup-pg":
                        if self._pg_drain():
                            self._poked()
                    elif key.data == "signal":
                        self._drain_socket(sig_read)
                        self._handle_signals()
                    else:
                        worker, handle = key.data
                        ready.setdefault(worker, set()).add(handle)
                self._collect(ready)
                self.lines.assign([])  # freed workers take held jobs before anything is written
                self._record_and_claim(clock.now())  # before the timers: a poke means a job waits
                self.pokes.claimed(clock.now(), self.claimed)
                try:
                    self._tick(clock.now())
                except StoreError as exc:  # a full disk, a lock held too long: the next turn tries again
                    self._trouble(exc, "database error in the periodic work (heartbeat, timers)")
                if self.maybe_work:  # the timers found work (due jobs, a schedule, a give-back)
                    self._record_and_claim(clock.now())
        finally:
            self.selector.close()

    def _poked(self, sock: socket.socket | None = None) -> None:
        """Work may be waiting: claim now, or, in a flood of pokes that find nothing, once the
        quiet interval ends (the local socket unwatched meanwhile, see pokegate)."""
        now = clock.now()
        if not self.pokes.admit(now):
            if sock is not None and self.unwatched is None:
                self.selector.unregister(sock)
                self.unwatched = sock
            return
        self.lines.warm(now)  # before the claim: it wakes meanwhile
        self.maybe_work = True
        self.timers["cancel"] = 0.0  # a cancel also pokes: look now
        self.timers["poll"] = 0.0

    def _listen_across_hosts(self, now: float) -> None:
        """On PostgreSQL, keep the loop's connection LISTENing with its socket in the selector
        (again after the store reconnects, with backoff while the server is away), and answer
        the notifications the loop's own statements read meanwhile (pgwake.py)."""
        if self.store.is_sqlite:
            return
        if self.pg is None:
            self.pg = PgListener(self.store, self.owner)
        elif not self.pg.current():  # the store dropped or replaced the connection
            self._unwatch_pg()
            self.pg.reconnect(now)
        if self.pg.conn is None:
            return
        fresh = self.pg_fd is None  # a notification may have come while it was down: look now
        if fresh:
            self.pg_fd = self.pg.fileno()
            self.selector.register(self.pg_fd, selectors.EVENT_READ, "wakeup-pg")
        if self.pg.pending() or fresh:
            self._poked()

    def _pg_drain(self) -> int:
        assert self.pg is not None
        count = self.pg.drain()
        if self.pg.conn is None:  # the connection broke: it reconnects with backoff
            self._unwatch_pg()
        return count

    def _unwatch_pg(self) -> None:
        if self.pg_fd is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.unregister(self.pg_fd)
            self.pg_fd = None

    def _watch(self, worker: Worker) -> None:
        self.selector.register(worker.conn, selectors.EVENT_READ, (worker, "conn"))
        self.selector.register(worker.ctl, selectors.EVENT_READ, (worker, "ctl"))
        self.selector.register(worker.process.sentinel, selectors.EVENT_READ, (worker, "end"))

    def _unwatch(self, worker: Worker) -> None:
        for handle in (worker.conn, worker.ctl, worker.process.sentinel):
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.unregister(handle)

    def _record_and_claim(self, now: float) -> None:
        """One commit for what finished and what starts next; workers get their jobs once it
        is committed, never before: a claim that rolls back (the daemon killed mid-commit, the
        database refusing) must not have started anything, or its attempt number would be
        used twice and, after a kill -9, a copy nobody holds would run beside the next.

        While every worker has its next job already, finished jobs wait a few milliseconds to
        share a commit. If the database refuses (locked for too long, disk full), nothing is
        lost: the outcomes stay pending and are written on a later turn of the loop, and the
        jobs stay queued.
        """
        if self.rate_due is not None and now >= self.rate_due:
            self.rate_due = None
            self.maybe_work = True  # a rate-limited queue has its next token: claim again
        self.claimed = 0
        if self.failed_writes and now < self.retry_write_at:
            return  # backing off a refused write (the sleep time wakes us for the retry)
        wants_claim = not self.stopping and self.maybe_work and self.lines.wants_claim()
        progress_due = self.progress and now >= self.progress_at + PROGRESS_S
        if not (self.pending or progress_due or wants_claim):
            return
        if (not wants_claim and not self.stopping and len(self.pending) < FLUSH_MAX
                and now < self.pending_since + FLUSH_S and all(w.busy for w in self.pool.workers)):  # fmt: skip
            return
        try:
            with self.store.write():
                self._flush(now)
                claims = self._claim(now) if wants_claim else []
        except StoreError as exc:
            self._trouble(exc, "database write failed")
            self.failed_writes += 1
            self.retry_write_at = clock.now() + min(0.05 * self.failed_writes, 1.0)  # see _sleep_time
            return
        self.failed_writes = 0
        self._trouble(None)
        self.claimed = len(claims)
        self._log_records(self.recorded)
        self.pending, self.recorded = self.pending[self.flushed :], []  # some may have failed meanwhile
        if self.dead_workers:
            self._forget_dead_workers()
        if self.pending:
            self.pending_since = now
        self.lines.assign(claims)

    def _forget_dead_workers(self) -> None:
        """Delete the start logs of dead workers whose every attempt's end is now recorded."""
        unrecorded = {(o.job_id, o.attempt) for o in self.pending}
        keep = []
        for pid, waiting in self.dead_workers:
            if waiting & unrecorded:
                keep.append((pid, waiting))
            else:
                startlog.forget_worker(self.log_dir, os.getpid(), pid)
        self.dead_workers = keep

    def _sleep_time(self, now: float) -> float:
        deadlines = [self.timers["heartbeat"] + self.options.heartbeat, self.timers["poll"] + self.options.poll]
        if self.pool.busy():
            deadlines.append(self.timers["cancel"] + self.options.cancel_poll)
        if self.next_due is not None:
            deadlines.append(self.next_due)
        if self.rate_due is not None:
            deadlines.append(self.rate_due)
        if self.scheduler.next_at is not None:
            deadlines.append(self.scheduler.next_at)
        for worker in self.pool.busy():
            if worker.stop is not None:
                deadlines.append(worker.stop.kill_at)
            elif worker.job and worker.job.timeout:
                deadlines.append(worker.started + worker.job.timeout)
        if self.stopping:
            deadlines.append(self.drain_deadline)
        if self.pokes.waiting:
            deadlines.append(self.pokes.quiet_until)
        if self.failed_writes and (self.maybe_work or self.pending):
            deadlines.append(self.retry_write_at)  # a refused write (lock, full disk, lost server) is retried soon
        if self.pg is not None and self.pg.conn is None:
            deadlines.append(self.pg.retry_at)
        watchdog = self.systemd.next_watchdog_in()
        if watchdog is not None:
            deadlines.append(now + watchdog)
        deadlines.append(self.housekeeping.next_at())
        if len(self.ahead):
            deadlines.append(self.ahead.held[0][1] + HOLD_S)  # give a held job back in time
        if self.pending:
            deadlines.append(self.pending_since + FLUSH_S)
        if self.progress:
            deadlines.append(self.progress_at + PROGRESS_S)
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
            now = clock.now()
            if signum == signal.SIGHUP:
                self._reload()
            elif not self.stopping:
                self.stopping = True
                self.drain_deadline = now + self.options.grace
                self._give_back(self.ahead.drain())  # never sent: straight back to the queue
                for worker in self.pool.workers:
                    worker.take_back("release")  # back to the queue once each worker says so
                busy = len(self.pool.busy())
                log.info(
                    "%s: stopping; %d running job(s) get %s to finish (signal again to stop now)",
                    signal.Signals(signum).name, busy, format_duration(self.options.grace),
                )  # fmt: skip
                try:
                    runs.heartbeat(self.store, self.owner, now, self.options.lease, busy, state="stopping")
                except StoreError as exc:  # the database is away: stop all the same
                    log.error("could not record that this daemon is stopping: %s", exc)
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
        try:
            rates.keep_only(self.store, self._rated_queues())
        except StoreError as exc:  # their buckets are forgotten on the next reload or start
            log.error("SIGHUP: could not forget the buckets of queues no longer rate-limited: %s", exc)
        try:
            self.scheduler.load(config, clock.now())
        except StoreError as exc:  # the schedules are read again on the next reload
            log.error("SIGHUP: schedules not reloaded: %s", exc)
        log.info("SIGHUP: config reloaded from %s", config.path or "(no file)")

    def _pend(self, outcome: runs.Outcome) -> None:
        if not self.pending:
            self.pending_since = clock.now()
        self.pending.append(outcome)

    # ------------------------------------------------------------------ store
    def _flush(self, now: float) -> None:
        """Write progress and finished attempts (inside the caller's transaction)."""
        if self.progress:
            updates = [(job_id, attempt, f, m) for (job_id, attempt), (f, m) in self.progress.items()]
            runs.save_progress(self.store, updates, now)
            self.progress.clear()
            self.progress_at = now
        self.flushed = len(self.pending)
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
        if self.db_trouble is None:
            try:
                queued = queries.count_jobs(self.store, queries.JobFilter(statuses=[Status.QUEUED]))
                return f"{len(self.pool.busy())} running, {queued} queued"
            except StoreError as exc:
                self._trouble(exc)
        assert self.db_trouble is not None
        return self.db_trouble[1]

    def _trouble(self, exc: StoreError | None, what: str = "database error") -> None:
        """A write failed (exc), or one went through (None): STATUS= says the daemon is reconnecting
        (or retrying) while the database fails it, and what it does once it is back. Each kind
        of failure (`what`) is logged once every DB_ERROR_LOG_S meanwhile, not on every try."""
        if exc is None:
            if self.db_trouble is not None:
                since, said = self.db_trouble
                back = "reachable again" if said.startswith("reconnecting") else "writes go through again"
                log.info("database %s after %s", back, format_duration(time.time() - since))
                self.db_trouble = None
                if self.beat_missed:  # a claim or a record went through first: beat on this turn
                    self.timers["heartbeat"] = 0.0
                self.db_logged.clear()
                self.systemd.status(self._status_text())
            return
        if time.monotonic() >= self.db_logged.get(what, 0.0):
            self.db_logged[what] = time.monotonic() + DB_ERROR_LOG_S
            log.error("%s, will retry: %s", what, exc)
        since = self.db_trouble[0] if self.db_trouble is not None else time.time()
        lost = not self.store.is_sqlite and self.store.db.is_closed()  # its connection is gone
        doing = "reconnecting to the database" if lost else "database writes failing, retrying"
        self.db_trouble = (since, f"{doing} since {time.strftime('%H:%M:%S', time.localtime(since))}: {exc}")
        self.systemd.status(self.db_trouble[1])

    def _claim(self, now: float) -> list[runs.Claim]:
        """Claim as many jobs as there is room for, within the queues' concurrency limits, in
        the caller's transaction (the caller sends them to workers once it is committed)."""
        fence = time.monotonic() + fence_after(self.options.lease)

        log_size = self.config.max_log_size  # [daemon] max_log_size: for jobs that set none

        def claimed(batch: list[runs.Claim]) -> None:
            for claim in batch:
                claim.fence = fence
                if claim.max_log_size is None:
                    claim.max_log_size = log_size

        idle = self.lines.capacity()
        running: dict[str, int] = {}
        busy_queues = [claim.queue for w in self.pool.workers for claim in w.jobs]  # sent ahead too
        for queue in busy_queues + self.ahead.queues():
            running[queue] = running.get(queue, 0) + 1
        limited = [q for q in self.config.queues.values() if q.concurrency or q.rate]
        only = self.options.queues
        claims = runs.claim(self.store, self.owner, now, idle, self.options.lease, self.log_dir, only_queues=only,
                            exclude_queues=[q.name for q in limited], on_claimed=claimed)  # fmt: skip
        self.rate_due = None
        for queue in limited:
            if only and queue.name not in only:
                continue
            free = idle - len(claims)
            if queue.concurrency and queue.scope == "global":  # every daemon's running jobs count
                free = min(queue.concurrency - runs.running_in_queue(self.store, queue.name), free)
            elif queue.concurrency:
                free = min(queue.concurrency - running.get(queue.name, 0), free)
            if queue.rate is not None:
                # a token is spent on a job that starts now: none sent ahead to wait behind another
                free = min(free, sum(not w.jobs for w in self.pool.workers) - len(self.ahead) - len(claims))
                if free > 0:
                    batch, due = rates.claim(self.store, self.owner, now, free, self.options.lease, self.log_dir,
                                             queue.name, queue.rate, on_claimed=claimed)  # fmt: skip
                    claims += batch
                    if due is not None:  # its jobs wait for a token: the loop sleeps until then
                        self.rate_due = due if self.rate_due is None else min(self.rate_due, due)
            elif free > 0:
                claims += runs.claim(self.store, self.owner, now, free, self.options.lease, self.log_dir,
                                     only_queues=[queue.name], on_claimed=claimed)  # fmt: skip
        self.maybe_work = len(claims) >= idle  # a short claim means the queue is empty for now
        return claims

    def _rated_queues(self) -> list[str]:
        return [q.name for q in self.config.queues.values() if q.rate is not None]
