"""Each worker's line of jobs: how long it may be, who gets the next job, taking one back.

The job at the head of a line runs; while recent jobs are short, a few more wait behind it
in the worker's pipe, so the worker never waits for a round trip to the daemon between
them. ahead.py keeps what the policy rests on: the held jobs and recent durations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from jobrunner.daemon import clock
from jobrunner.daemon.ahead import SHORT_JOB_S, ClaimAhead
from jobrunner.daemon.pool import Pool, Unsendable, Worker
from jobrunner.store.runs import Claim

WARM_AGAIN_S = 0.002  # a burst of pokes sends one heads-up, not one per poke

log = logging.getLogger("jobrunner.daemon")


class Lines:
    def __init__(self, pool: Pool, ahead: ClaimAhead, started: dict[tuple[int, int], float], workers: int,
                 unsendable: Callable[[Claim, str], None] = lambda claim, reason: None) -> None:  # fmt: skip
        self.pool = pool
        self.unsendable = unsendable  # a job that cannot be handed over: the daemon fails that attempt
        self.ahead = ahead
        self.started = started  # (id, attempt) -> when it started, for the daemon's log lines
        self.workers = workers

    def stocked(self, nap: float) -> bool:
        """Every worker has more work in its pipe than a nap lasts (by recent job durations)."""
        typical = self.ahead.typical()
        return typical is not None and all((len(w.jobs) - 1) * typical > 2 * nap for w in self.pool.workers)

    def depth(self, worker: Worker, now: float) -> int:
        """How many jobs a worker may have in its pipe: more than one only while jobs are short."""
        ahead = self.ahead.send_ahead()
        if ahead and (not worker.jobs or now - worker.started < SHORT_JOB_S):
            return 1 + ahead
        return 1

    def capacity(self) -> int:
        """Jobs to claim now: room in the workers' pipes not covered by held jobs, plus what
        claim-ahead wants to hold."""
        now = clock.now()
        room = sum(max(self.depth(w, now) - len(w.jobs), 0) for w in self.pool.workers)
        longest = max((now - w.started for w in self.pool.busy()), default=0.0)
        return max(room - len(self.ahead), 0) + self.ahead.wanted(longest)

    def wants_claim(self) -> bool:
        """Claim when a worker is idle, or (short jobs) when half the room is free: bigger batches."""
        if any(not w.busy for w in self.pool.workers) and not len(self.ahead):
            return True
        capacity = self.capacity()
        return capacity > 0 and capacity * 2 >= self.workers * (1 + self.ahead.send_ahead())

    def assign(self, claims: list[Claim]) -> None:
        """Held jobs first (they were claimed first), then the new ones: to idle workers, then
        (short jobs) ahead into busy workers' pipes; the rest are held."""
        self.ahead.hold(claims, clock.now())
        if not len(self.ahead):
            return
        now = clock.now()
        sends: dict[Worker, list[Claim]] = {}
        while len(self.ahead):
            room = [w for w in self.pool.workers if len(w.jobs) + len(sends.get(w, ())) < self.depth(w, now)]
            if not room:
                break
            worker = min(room, key=lambda w: len(w.jobs) + len(sends.get(w, ())))  # idle ones first
            claim = self.ahead.take()
            assert claim is not None
            sends.setdefault(worker, []).append(claim)
        for worker, batch in sends.items():
            idle = not worker.jobs
            if not self._send(worker, batch, now):  # it died: they wait for its replacement
                self.ahead.hold(batch, now)
                continue
            if not batch:
                continue
            if idle:
                self.started[(batch[0].id, batch[0].attempt)] = now
            if log.isEnabledFor(logging.INFO):
                for claim in batch:
                    log.info("job %d %s: attempt %d on worker %d (%s)", claim.id,
                             "started" if idle else "sent ahead", claim.attempt, worker.index, claim.name)  # fmt: skip
                    idle = False

    def _send(self, worker: Worker, batch: list[Claim], now: float) -> bool:
        """worker.assign, leaving out (and reporting) any job that cannot be pickled: one bad
        job must not stop the daemon, nor the jobs claimed with it."""
        while batch:
            try:
                return worker.assign(batch, now)
            except Unsendable as exc:
                batch.remove(exc.claim)
                self.started.pop((exc.claim.id, exc.claim.attempt), None)
                self.unsendable(exc.claim, exc.reason)
        return True

    def warm(self, now: float) -> None:
        """A job is probably coming (the daemon was poked): wake the worker that would take it
        now, while the claim is written. A process woken from sleep on a VM takes a while to
        wake and runs its first fraction of a millisecond several times slower; woken early it
        is ready when the job comes (about 0.1 to 0.2 ms of a 1.5 ms pickup). Nothing is sent
        when no worker is idle or one was told a moment ago."""
        if len(self.ahead):
            return
        for worker in self.pool.workers:
            if not worker.jobs:
                if now - worker.warmed > WARM_AGAIN_S:
                    worker.warm(now)
                return

    def skip(self, job_id: int, attempt: int, why: str) -> bool:
        """Ask for a job sent ahead back from its worker (it answers: see Worker.on_skipped).
        False: no worker has it waiting (it runs, or it is not here)."""
        for worker in self.pool.workers:
            for claim in list(worker.jobs)[1:]:
                if (claim.id, claim.attempt) == (job_id, attempt):
                    worker.take_back(why, [claim])
                    return True
        return False
