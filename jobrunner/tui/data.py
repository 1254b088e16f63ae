"""Everything the TUI reads or writes, run in worker threads through the store's public API.

Nothing here touches a widget: functions take the Store and `now` and return plain data
or a one-line message, so they are safe off the UI thread and easy to test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from jobrunner.domain.states import Status
from jobrunner.store import queries, repo
from jobrunner.store.db import Store
from jobrunner.store.queries import JobFilter

RETRY_BATCH = 500


@contextmanager
def thread_connection(store: Store) -> Iterator[Store]:
    """Use the store from a worker thread and close that thread's connection afterwards.

    peewee keeps one connection per thread; worker threads come from a pool, so closing
    keeps the number of open connections to the UI thread's one between refreshes.
    """
    try:
        yield store
    finally:
        if threading.current_thread() is not threading.main_thread():
            store.close()


@dataclass(frozen=True)
class PageRequest:
    """Which page of which jobs a table wants: results for an older request are dropped."""

    statuses: tuple[Status, ...] = ()
    queues: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    search: str = ""
    offset: int = 0
    limit: int = 20

    @property
    def where(self) -> JobFilter:
        return JobFilter(list(self.statuses), list(self.queues), list(self.tags), self.search or None)

    @property
    def filtered(self) -> bool:
        return bool(self.statuses or self.queues or self.tags or self.search)

    def at(self, offset: int) -> PageRequest:
        return replace(self, offset=max(offset, 0))


@dataclass
class Snapshot:
    """One refresh: the visible page, what it is a page of, and the header's figures."""

    request: PageRequest
    jobs: list[dict[str, Any]]
    offset: int  # the request's offset, clamped to what exists
    total: int  # jobs matching the filter
    stats: dict[str, Any]
    daemons: list[dict[str, Any]]  # freshest heartbeat first, alive or not
    paused: list[str] = field(default_factory=list)


def matching_total(store: Store, request: PageRequest, stats: dict[str, Any]) -> int:
    """How many jobs match, from the stats already read when that is enough (no second scan)."""
    if request.tags or request.search:
        return queries.count_jobs(store, request.where)
    statuses = [s.value for s in request.statuses] or list(stats["by_status"])
    if request.queues:
        queues = [stats["queues"][q] for q in request.queues if q in stats["queues"]]
        return sum(q["by_status"].get(s, 0) for q in queues for s in statuses)
    return sum(stats["by_status"].get(s, 0) for s in statuses)


def fetch_page(store: Store, request: PageRequest, now: float) -> Snapshot:
    """Read one page (never all jobs) plus counts and the daemon's heartbeat."""
    with thread_connection(store):
        stats = queries.stats(store)
        total = matching_total(store, request, stats)
        offset = min(request.offset, max(total - request.limit, 0))
        jobs = queries.list_jobs(store, request.where, limit=request.limit, offset=offset)
        daemons = queries.daemons(store, now)
        paused = queries.paused_queues(store)
    return Snapshot(request, jobs, offset, total, stats, daemons, paused)


def fetch_job(store: Store, job_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with thread_connection(store):
        return queries.get_job(store, job_id), queries.job_events(store, job_id)


def _summary(outcomes: list[repo.Outcome]) -> str:
    if len(outcomes) == 1:
        o = outcomes[0]
        change = o.new.value if o.old == o.new else f"{o.old.value} → {o.new.value}"
        return f"job {o.job_id}: {change}" + ("" if o.message == o.new.value else f" ({o.message})")
    return f"{len(outcomes)} jobs: " + ", ".join(sorted({o.message for o in outcomes}))


def cancel_jobs(store: Store, ids: list[int], now: float) -> str:
    with thread_connection(store):
        return _summary(repo.cancel(store, ids, now))


def retry_jobs(store: Store, ids: list[int], now: float) -> str:
    with thread_connection(store):
        return _summary(repo.retry(store, ids, now))


def toggle_queue_pause(store: Store, queue: str, now: float) -> str:
    with thread_connection(store):
        paused = queue in queries.paused_queues(store)
        repo.set_queue_paused(store, queue, not paused, now)
    if paused:
        return f"queue {queue} resumed"
    return f"queue {queue} paused: running jobs finish, nothing new starts"


def retry_all(store: Store, request: PageRequest, now: float) -> str:
    """Retry every job the request matches, a batch per transaction (never all rows at once).

    Retried jobs leave the dead set, so each batch reads the first page again; the count
    taken first bounds the loop, so jobs that die meanwhile are not chased forever.
    """
    done = 0
    with thread_connection(store):
        budget = queries.count_jobs(store, request.where)
        while done < budget:
            batch = queries.list_jobs(store, request.where, limit=min(RETRY_BATCH, budget - done))
            if not batch:
                break
            done += len(repo.retry(store, [job["id"] for job in batch], now))
    return f"{done} jobs back in the queue" if done != 1 else "1 job back in the queue"


def purge_jobs(store: Store, statuses: list[Status], older_than: float, now: float) -> str:
    with thread_connection(store):
        removed = repo.purge(store, older_than, statuses, now)
    return f"purged {len(removed)} jobs and their history"
