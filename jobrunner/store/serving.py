"""What `jobrunner serve` needs of the store beyond queries and repo: the live feed of state
changes and progress (GET /api/events), deleting one finished job (DELETE /api/jobs/ID), and
the figures /metrics shows. Reads are one statement each, so each sees one snapshot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobrunner.domain.states import FINISHED, Status
from jobrunner.errors import NotFoundError, UsageError
from jobrunner.store.backends import RAISE_JOB_ID_FLOOR
from jobrunner.store.db import Store, guarded
from jobrunner.store.migrations import NOT_QUEUED
from jobrunner.store.queries import iso

FEED_BATCH = 500  # event rows read per poll; a backlog (a resume long after) comes in batches


@dataclass(frozen=True)
class FeedRow:
    """One row of a poll: an event row ("event"), a running job's progress ("progress")."""

    kind: str
    event_id: int | None
    job_id: int
    at: float | None
    attempt: int
    old: str | None
    new: str | None
    message: str | None
    details: str | None
    queue: str | None
    status: str | None  # the job's status now (None: purged since)
    progress: float | None
    progress_message: str | None
    updated_at: float | None

    def state_data(self) -> dict[str, Any]:
        """The event as `show --json` lists it, with its id, job and queue."""
        return {
            "event_id": self.event_id, "job_id": self.job_id, "queue": self.queue, "at": iso(self.at),
            "attempt": self.attempt, "from": self.old, "to": self.new, "message": self.message,
            "details": json.loads(self.details) if self.details else None,
        }  # fmt: skip

    def progress_data(self, attempt: int | None = None) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "queue": self.queue, "attempt": self.attempt if attempt is None else attempt,
            "progress": self.progress, "progress_message": self.progress_message, "at": iso(self.updated_at),
        }  # fmt: skip


def _filters(store: Store, jobs: Sequence[int], queues: Sequence[str], id_column: str,
             queue_column: str) -> tuple[str, list[Any]]:  # fmt: skip
    p = store.backend.param
    clauses, params = "", []
    if jobs:
        clauses += f" AND {id_column} IN ({', '.join([p] * len(jobs))})"
        params += list(jobs)
    if queues:
        clauses += f" AND {queue_column} IN ({', '.join([p] * len(queues))})"
        params += list(queues)
    return clauses, params


@guarded
def last_event_id(store: Store) -> int:
    return int(store.execute("SELECT COALESCE(MAX(id), 0) FROM event").fetchone()[0])


@guarded
def event_ids_after(store: Store, after: int, limit: int = 1000) -> list[int]:
    """Ids of the events after `after`, unfiltered (from the primary key alone): on PostgreSQL a
    gap may be a transaction that has not committed yet (sequence values commit out of order)."""
    p = store.backend.param
    return [row[0] for row in store.execute(f"SELECT id FROM event WHERE id > {p} ORDER BY id LIMIT {int(limit)}",
                                            (after,)).fetchall()]  # fmt: skip


@guarded
def poll_feed(store: Store, after: int, upto: int | None, jobs: Sequence[int] = (),
              queues: Sequence[str] = ()) -> tuple[list[FeedRow], int]:  # fmt: skip
    """The events after `after` (up to `upto`, if given) that match the filters, oldest first,
    at most FEED_BATCH, then every running job's progress; and the newest event id there is.

    One statement, so one snapshot: a progress row never runs ahead of the state changes read
    with it, and the newest id is the one the rows were read against."""
    p = store.backend.param
    event_filter, event_params = _filters(store, jobs, queues, "e.job_id", "j.queue")
    job_filter, job_params = _filters(store, jobs, queues, "id", "queue")
    bound = "" if upto is None else f" AND e.id <= {p}"
    sql = (
        "SELECT * FROM (SELECT 'event', e.id, e.job_id, e.at, e.attempt, e.from_status, e.to_status, "
        "e.message, e.details, j.queue, j.status, j.progress, j.progress_message, j.updated_at "
        f"FROM event e LEFT JOIN job j ON j.id = e.job_id WHERE e.id > {p}{bound}{event_filter} "
        f"ORDER BY e.id LIMIT {FEED_BATCH}) AS events "
        "UNION ALL SELECT 'progress', NULL, id, NULL, attempts, NULL, NULL, NULL, NULL, queue, status, progress, "
        f"progress_message, updated_at FROM job WHERE status = 'running' AND {NOT_QUEUED} "
        f"AND progress IS NOT NULL{job_filter} "
        "UNION ALL SELECT 'head', COALESCE(MAX(id), 0), 0, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
        "NULL, NULL FROM event"
    )
    params = [after, *([] if upto is None else [upto]), *event_params, *job_params]
    rows, head = [], 0
    for row in store.execute(sql, params).fetchall():
        if row[0] == "head":
            head = int(row[1])
        else:
            rows.append(FeedRow(*row))
    return rows, head


@guarded
def delete_finished(store: Store, job_id: int) -> str | None:
    """Delete one finished job and its history (as `purge` does); returns its log path. A job
    that is not finished is refused: cancel it first."""
    p = store.backend.param
    with store.write():
        row = store.execute(f"SELECT status, log_path FROM job WHERE id = {p}", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no job with id {job_id}; `jobrunner list` shows the ids")
        if Status(row[0]) not in FINISHED:
            raise UsageError(f"job {job_id} is {row[0]}: only a finished job (succeeded, dead or cancelled) "
                             "can be deleted; cancel it first")  # fmt: skip
        if store.is_sqlite:  # the id is never handed out again (backends.NEXT_JOB_ID)
            store.execute(RAISE_JOB_ID_FLOOR)
        store.execute(f"DELETE FROM event WHERE job_id = {p}", (job_id,))
        store.execute(f"DELETE FROM job WHERE id = {p}", (job_id,))
    return row[1]


@guarded
def finished_since(store: Store, since: float) -> dict[str, int]:
    """How many jobs reached each final status at or after `since`."""
    counts = {status.value: 0 for status in sorted(FINISHED)}
    sql = (
        f"SELECT status, COUNT(*) FROM job{store.indexed_by('job_finished_at')} "
        f"WHERE finished_at >= {store.backend.param} GROUP BY status"
    )
    for status, count in store.execute(sql, (since,)).fetchall():
        if status in counts:
            counts[status] = int(count)
    return counts


@guarded
def oldest_queued(store: Store) -> dict[str, float]:
    """Per queue, since when its oldest queued job has been ready to run (epoch seconds)."""
    firsts = store.execute(  # the lowest id per queue, from the claim index alone
        f"SELECT MIN(id) FROM job{store.indexed_by('job_claim_queued')} WHERE status = 'queued' GROUP BY queue"
    ).fetchall()
    ids = [row[0] for row in firsts]
    if not ids:
        return {}
    p = store.backend.param
    rows = store.execute(f"SELECT queue, run_at FROM job WHERE id IN ({', '.join([p] * len(ids))})", ids)
    return {queue: float(run_at) for queue, run_at in rows.fetchall()}
