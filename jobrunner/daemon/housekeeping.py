"""Retention and WAL checkpoints on a timer, for the daemon's loop: `tick(now)` on every turn.

Each run purges at most a batch per status (see store/retention.py); while a run finds a
full batch the next one comes soon, so a backlog drains in short steps between jobs.
Errors are logged, never raised: housekeeping must not stop the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from jobrunner.domain.states import Status
from jobrunner.errors import JobrunnerError
from jobrunner.store.db import Store
from jobrunner.store.retention import apply_retention, checkpoint

log = logging.getLogger("jobrunner.daemon")


class Housekeeping:
    def __init__(self, store: Store, policy: Mapping[Status, float], *, every: float = 60.0,
                 backlog_every: float = 1.0, checkpoint_every: float = 300.0, batch: int = 500) -> None:  # fmt: skip
        self.store = store
        self.policy = dict(policy)
        self.every, self.backlog_every, self.checkpoint_every = every, backlog_every, checkpoint_every
        self.batch = batch
        self.next_purge = 0.0
        self.next_checkpoint = 0.0

    def replace(self, policy: Mapping[Status, float]) -> None:
        """A new policy (SIGHUP); applied at the next run, which comes now."""
        self.policy = dict(policy)
        self.next_purge = 0.0

    def next_at(self) -> float:
        """When `tick` has work next (for the loop's sleep)."""
        return min(self.next_purge if self.policy else float("inf"), self.next_checkpoint)

    def tick(self, now: float) -> list[int]:
        """Purge and checkpoint if due; returns the ids purged."""
        removed: list[int] = []
        if self.policy and now >= self.next_purge:
            try:
                removed = apply_retention(self.store, self.policy, now, self.batch)
            except JobrunnerError as exc:
                log.warning("retention: %s", exc)
            if removed:
                log.info("retention: purged %d old job(s) and their logs", len(removed))
            full = len(removed) >= self.batch
            self.next_purge = now + (self.backlog_every if full else self.every)
            if full:
                self.next_checkpoint = min(self.next_checkpoint, now + self.every)
        if now >= self.next_checkpoint:
            self.next_checkpoint = now + self.checkpoint_every
            try:
                result = checkpoint(self.store)
            except JobrunnerError as exc:
                log.warning("WAL checkpoint: %s", exc)
            else:
                if result and result[0]:
                    log.debug("WAL checkpoint: readers still busy; %d of %d pages done", result[2], result[1])
        return removed
