"""The daemon's periodic work, between turns of its loop: lease renewal and the fence,
recovery of dead daemons' jobs, cancels, timeouts, due jobs and schedules.

Leases are the fence of "at most one running copy": a daemon whose heartbeat renews fewer
leases than it holds stops those jobs at once, and tells each worker whose jobs were all
renewed how long they may run; a worker not told in time stops its job itself (watch.py),
before the lease can pass to another daemon.

A mixin of Service (service.py), which owns the state it uses.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import TYPE_CHECKING

from jobrunner.daemon import clock, startlog, tree
from jobrunner.daemon.ahead import HOLD_S
from jobrunner.domain.durations import format_duration
from jobrunner.domain.failures import Failure, FailureKind
from jobrunner.domain.states import Status
from jobrunner.errors import StoreError
from jobrunner.processes import pid_alive
from jobrunner.store import runs

if TYPE_CHECKING:
    from jobrunner.daemon.service import Service

#: Give a dead daemon's never-started attempts back uncounted. Off once, while a PostgreSQL chaos
#: run showed an attempt given back that a worker had started: that worker, exiting cleanly when
#: its dead daemon's pipe closed, had deleted its start log (startlog.py: only daemons delete them
#: now). Set to False, every attempt a dead daemon held counts as lost: the safe side.
GIVE_BACK_UNSTARTED = True

log = logging.getLogger("jobrunner.daemon")

#: After a heartbeat the database refused: how soon the next one is tried.
BEAT_RETRY_S = 1.0


def fence_after(lease: float) -> float:
    """How long after a lease is written its jobs may run without a renewal: a quarter of the
    lease short of it, so they are gone before another daemon may take the job over."""
    return lease * 0.75


class PeriodicWork:
    def _tick(self: Service, now: float) -> None:
        opts = self.options
        self.systemd.watchdog()  # rate-limited inside: half of WATCHDOG_USEC
        if now - self.timers["heartbeat"] >= opts.heartbeat:
            self.timers["heartbeat"] = now
            try:
                self._heartbeat(now)
            except StoreError:
                # Tried again within a second, not a whole interval later: from another host a
                # daemon's state is its heartbeat's age, and "reconnecting" should end with the outage.
                self.beat_missed = True
                self.timers["heartbeat"] = now - opts.heartbeat + min(BEAT_RETRY_S, opts.heartbeat)
                raise
            self.beat_missed = False
            self._trouble(None)  # the database is there: STATUS= says what runs, not "reconnecting"
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
                if self.ahead.remove(job_id, attempt) is not None:  # never sent
                    failure = Failure(FailureKind.CANCELLED, "cancelled by user")
                    self._pend(runs.Outcome(job_id, attempt, failure=failure))
                else:  # sent ahead: cancelled once its worker gives it back (else stopped below)
                    self.lines.skip(job_id, attempt, "cancel")
            for worker in self.pool.busy():
                if worker.job and worker.stop is None and (worker.job.id, worker.job.attempt) in wanted:
                    log.info("job %d: cancel requested; stopping it", worker.job.id)
                    self._stop(worker, FailureKind.CANCELLED, "cancelled by user while running", now)
        for worker in self.pool.busy():
            if len(worker.jobs) > 1 and now - worker.started >= HOLD_S:  # a long job: let others run those
                worker.take_back("release")
            job = worker.job
            assert job is not None
            if worker.stop is None and (job.id, job.attempt) in self.lost:
                log.warning("job %d: attempt %d is no longer this daemon's (its lease lapsed); stopping it",
                            job.id, job.attempt)  # fmt: skip
                self._stop(worker, FailureKind.LOST, "lost: this daemon's lease lapsed", now, kill_now=True)
            elif worker.stop is None and job.timeout and now - worker.started >= job.timeout:
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

    def _heartbeat(self: Service, now: float) -> None:
        """Renew our leases. Jobs whose lease another daemon took over meanwhile (we were
        stalled past it) are stopped at once; workers whose every job was renewed are told,
        so they do not fence their jobs themselves (watch.py)."""
        opts = self.options
        started = time.monotonic()
        clock.sync(self.store)  # PostgreSQL: the server's clock, which leases are judged by
        now = clock.now()
        state = "stopping" if self.stopping else "running"
        renewed = runs.heartbeat(self.store, self.owner, now, opts.lease, len(self.pool.busy()), state)
        self.renewed_at = now
        held = {(c.id, c.attempt) for w in self.pool.workers for c in w.jobs}
        held |= {(c.id, c.attempt) for c, _ in self.ahead.held}
        self.lost = held - renewed
        self._give_back_unknown(renewed - held - {(o.job_id, o.attempt) for o in self.pending}, now)
        for claim, _ in list(self.ahead.held):
            if (claim.id, claim.attempt) in self.lost:
                self.ahead.remove(claim.id, claim.attempt)
        deadline = started + fence_after(opts.lease)
        for worker in self.pool.workers:
            if any((c.id, c.attempt) in self.lost for c in worker.jobs):
                worker.take_back("lost", [c for c in list(worker.jobs)[1:] if (c.id, c.attempt) in self.lost])
            else:
                worker.lease(deadline)

    def _give_back_unknown(self: Service, unknown: set[tuple[int, int]], now: float) -> None:
        """Jobs the database says we hold that we do not: a give-back refused by the database
        (locked past lock_timeout, say), or a claim committed although the commit reported an
        error (the connection lost as it committed). None was ever sent to a worker (jobs go out
        only once their claim is committed, and one a worker has stays in its line until its
        end is recorded), so each goes back uncounted. Kept, its lease would be renewed by every
        heartbeat and the job would never end."""
        if not unknown:
            return
        try:
            given = runs.release(self.store, self.owner, [runs.Attempt(*a) for a in sorted(unknown)], now,
                                 "given back: the daemon held it unknowingly (never started)")  # fmt: skip
        except StoreError as exc:  # the next heartbeat tries again
            log.error("could not give back %d job(s) held unknowingly: %s", len(unknown), exc)
            return
        if given:
            log.warning("gave back %d job(s) this daemon held without knowing it (never started): %s", given,
                        ", ".join(str(job_id) for job_id, _ in sorted(unknown)))  # fmt: skip
            self.maybe_work = True

    def _recover(self: Service, now: float) -> None:
        """Take back jobs of dead daemons: on this host by pid at once, elsewhere when leases expire."""
        for owner, pid in runs.stale_daemons(self.store, self.host, self.owner):
            if not pid_alive(pid):
                held = runs.held_by(self.store, owner)
                self._end_stray_processes(held)
                self._give_back_unstarted(owner, pid, held, now)
                for record in runs.recover_owner(self.store, owner, f"lost: daemon pid {pid} died", now, self.rng):
                    self._log_recovered(record, f"recovered from dead daemon {owner}")
                startlog.forget(self.log_dir, pid)
        expired = runs.expired_leases(self.store, now)
        if expired:
            self._end_stray_processes(set(expired))
            for record in runs.recover_expired(self.store, now, self.rng):
                self._log_recovered(record, "recovered (lease expired)")
        self.maybe_work = True

    def _give_back_unstarted(self: Service, owner: str, pid: int, held: set[tuple[int, int]], now: float) -> None:
        """A dead daemon's attempts that none of its workers started (held ahead, sent but not
        begun) go back to the queue uncounted: a job with no retries left must not go dead
        without ever running. Its workers' start logs say which (startlog.py)."""
        if not GIVE_BACK_UNSTARTED:
            return
        started = startlog.started_by(self.log_dir, pid, runs.daemon_workers(self.store, owner))
        if started is None:  # cannot tell: every attempt counts, as lost
            return
        unstarted = sorted(held - started)
        if unstarted:
            given = runs.release(self.store, owner, [runs.Attempt(*a) for a in unstarted], now,
                                 f"given back: daemon pid {pid} died before starting it")  # fmt: skip
            log.info("gave back %d job(s) the dead daemon %s never started: %s", given, owner,
                     ", ".join(str(job_id) for job_id, _ in unstarted))  # fmt: skip
            self.maybe_work = True

    def _end_stray_processes(self: Service, attempts: set[tuple[int, int]]) -> None:
        """Before a lost attempt is recorded (and may be retried): end whatever of it still runs on
        this host. A kill -9'd daemon's workers die with it, but a process its job started may
        live on (a child that ignores SIGTERM while its worker was ending it, say)."""
        pids = tree.job_processes(self.store.target, attempts)
        if pids:
            log.warning("ending %d process(es) of lost attempts still running: %s", len(pids),
                        ", ".join(map(str, pids)))  # fmt: skip
            tree.end_processes(pids)

    def _log_recovered(self: Service, record: runs.Recorded, how: str) -> None:
        """A lost attempt's record, or that of a dependent it cancelled (said as such)."""
        if record.status is None:  # renewed by its owner after all, or recorded meanwhile: not lost
            return
        if record.status is Status.CANCELLED and record.message.startswith("dependency "):
            log.info("job %d cancelled: %s", record.job_id, record.message)
        else:
            log.info("job %d %s: %s", record.job_id, how, record.message)
        self._notify(record)
