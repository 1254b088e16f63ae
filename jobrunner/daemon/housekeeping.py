"""Retention, WAL checkpoints and the search index on timers, for the daemon's loop: `tick(now)`
on every turn.

Retention runs every `retention.every` (a minute unless jobs.toml says). Each run purges at
most a batch per status (see store/retention.py); while a run finds a full batch the next one
comes soon, so a backlog drains in short steps between jobs. A log file some process still
has open is kept, and deleted by a later run once nothing has it open; the first run after a
start (and one an hour) also looks for such logs left by a previous daemon or `jobrunner purge`.
New jobs go into the search index (SQLite; store/search.py) a batch at a time, every second,
and every few turns while a backlog lasts. On PostgreSQL, every 5 s, waiting jobs a race left
with every dependency ended are released or cancelled (dependencies.settle_stranded). Errors
are logged, never raised: housekeeping must not stop the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from jobrunner.config_checks import RETENTION_EVERY
from jobrunner.domain.states import Status
from jobrunner.errors import JobrunnerError
from jobrunner.store import search
from jobrunner.store.db import Store
from jobrunner.store.dependencies import settle_stranded
from jobrunner.store.retention import apply_retention, checkpoint, delete_kept, orphan_logs

log = logging.getLogger("jobrunner.daemon")


class Housekeeping:
    def __init__(self, store: Store, policy: Mapping[Status, float], *, every: float | None = None,
                 backlog_every: float = 1.0, checkpoint_every: float = 300.0, batch: int = 500,
                 sweep_every: float = 3600.0, index_every: float = 1.0,
                 index_backlog_every: float = 0.05, settle_every: float = 5.0) -> None:  # fmt: skip
        """`every`: seconds between retention runs; by default the policy's own `every`
        (config_checks.RetentionPolicy), else a minute."""
        self.store = store
        self.policy = dict(policy)
        self.every = every if every is not None else getattr(policy, "every", RETENTION_EVERY)
        self.backlog_every, self.checkpoint_every = backlog_every, checkpoint_every
        self.batch = batch
        self.sweep_every = sweep_every
        self.next_purge = 0.0
        self.next_checkpoint = 0.0
        self.next_sweep = 0.0
        self.index_every, self.index_backlog_every = index_every, index_backlog_every
        self.next_index = 0.0
        self.index_backlog = False
        self.settle_every, self.next_settle = settle_every, 0.0
        self.kept: list[Path] = []  # logs of purged jobs that a process still had open

    def replace(self, policy: Mapping[Status, float]) -> None:
        """A new policy (SIGHUP), with its `every`; applied at the next run, which comes now."""
        self.policy = dict(policy)
        self.every = getattr(policy, "every", self.every)
        self.next_purge = 0.0

    def next_at(self) -> float:
        """When `tick` has work next (for the loop's sleep)."""
        # the index's timer moves the sleep only with a backlog: else the loop's own wake-ups (its
        # poll, at least every second) come often enough for a check that costs one read
        backlog = self.next_index if self.index_backlog else float("inf")
        return min(self.next_purge if self.policy else float("inf"), self.next_checkpoint, backlog)

    def tick(self, now: float) -> list[int]:
        """Purge and checkpoint if due; returns the ids purged."""
        removed: list[int] = []
        if self.policy and now >= self.next_purge:
            self._retry_kept(now)
            before = len(self.kept)
            try:
                removed = apply_retention(self.store, self.policy, now, self.batch, self.kept)
            except JobrunnerError as exc:
                log.warning("retention: %s", exc)
            if len(self.kept) > before:
                log.info("retention: kept %d log file(s) a process still has open (%s); deleting them later",
                         len(self.kept) - before, ", ".join(p.name for p in self.kept[before:][:5]))  # fmt: skip
            if removed:
                log.info("retention: purged %d old job(s) and their logs", len(removed))
            full = len(removed) >= self.batch
            self.next_purge = now + (self.backlog_every if full else self.every)
            if full:
                self.next_checkpoint = min(self.next_checkpoint, now + self.every)
        if now >= self.next_index:
            self._index(now)
        if now >= self.next_settle and not self.store.is_sqlite:
            self.next_settle = now + self.settle_every
            self._settle(now)
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

    def _settle(self, now: float) -> None:
        """Release or cancel waiting jobs a race stranded (dependencies.settle_stranded)."""
        try:
            with self.store.write():
                settled = settle_stranded(self.store, now)
        except JobrunnerError as exc:
            log.warning("looking for jobs stranded waiting: %s", exc)
            return
        if settled:
            log.warning("job(s) %s waited on dependencies that had all ended: settled now",
                        ", ".join(map(str, settled)))  # fmt: skip

    def _index(self, now: float) -> None:
        """One batch of new jobs into the search index; with more waiting, the next soon."""
        try:
            indexed = search.index_new(self.store)
        except JobrunnerError as exc:
            log.warning("search index: %s", exc)
            indexed = 0
        self.index_backlog = indexed >= search.INDEX_BATCH
        self.next_index = now + (self.index_backlog_every if self.index_backlog else self.index_every)

    def _retry_kept(self, now: float) -> None:
        """Delete the kept logs nothing has open any more; now and then look for kept logs of
        purged jobs this daemon does not know of (a restart, `jobrunner purge`)."""
        if now >= self.next_sweep:
            self.next_sweep = now + self.sweep_every
            try:
                found = orphan_logs(self.store)
            except JobrunnerError as exc:
                log.warning("retention: looking for logs of purged jobs: %s", exc)
            else:
                self.kept += [path for path in found if path not in self.kept]
        if self.kept:
            count = len(self.kept)
            self.kept = delete_kept(self.kept)
            if len(self.kept) < count:
                log.info(
                    "retention: deleted %d kept log file(s) nothing has open any more", count - len(self.kept)
                )
