"""Every write to jobs: submit, cancel, retry, purge, pause. Each call is one transaction,
checks everything before it writes, and records an event row per state change."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from jobrunner.domain.jobspec import JobSpec
from jobrunner.domain.states import CANCELLABLE, FINISHED, RETRYABLE, Status
from jobrunner.errors import NotFoundError, UsageError
from jobrunner.store.db import Store, guarded

PURGE_BATCH = 500


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _job_row(spec: JobSpec, now: float) -> tuple:
    run_at = spec.run_at if spec.run_at is not None else now
    status = Status.SCHEDULED if run_at > now else Status.QUEUED
    return (
        spec.name, spec.kind, spec.task,
        _dumps(spec.command) if spec.command is not None else None, spec.callable,
        _dumps(spec.args), _dumps(spec.kwargs), spec.queue, spec.priority, status.value,
        spec.max_retries, spec.timeout, spec.backoff.base, spec.backoff.factor,
        spec.backoff.max, _dumps(spec.retry_on), _dumps(spec.retry_on_exit_codes),
        _dumps(spec.tags), _dumps(spec.metadata), spec.cwd, _dumps(spec.env),
        now, run_at, now,
    )  # fmt: skip


@guarded
def submit(store: Store, spec: JobSpec, now: float) -> int:
    """Store one job and its 'submitted' event; returns the new id once committed."""
    row = _job_row(spec, now)
    backend = store.backend
    with store.write():
        cursor = store.cursor()
        cursor.execute(backend.insert_job, row)
        job_id = cursor.fetchone()[0] if backend.name == "postgresql" else cursor.lastrowid
        cursor.execute(backend.insert_event, (job_id, now, 0, None, row[9], "submitted", None))
    return int(job_id)


@guarded
def submit_many(store: Store, specs: Sequence[JobSpec], now: float) -> list[int]:
    """Store many jobs in one transaction: all of them or none."""
    if not specs:
        return []
    rows = [_job_row(spec, now) for spec in specs]
    backend = store.backend
    with store.write():
        cursor = store.cursor()
        if backend.name == "postgresql":
            ids = [store.execute(backend.insert_job, row).fetchone()[0] for row in rows]
            before = min(ids) - 1
        else:
            # Inside BEGIN IMMEDIATE nobody else inserts, so the new ids are exactly max(id)+1...
            before = store.execute("SELECT COALESCE(MAX(id), 0) FROM job").fetchone()[0]
            cursor.executemany(backend.insert_job, rows)
            ids = list(range(before + 1, before + 1 + len(rows)))
        store.execute(backend.events_for_new_jobs, ("submitted", before))
    return ids


@dataclass(frozen=True)
class Outcome:
    """What an action did to one job, for the CLI to report."""

    job_id: int
    old: Status
    new: Status
    message: str


def _load_states(store: Store, ids: Sequence[int]) -> dict[int, tuple[Status, int]]:
    unique = list(dict.fromkeys(ids))
    p = store.backend.param
    found: dict[int, tuple[Status, int]] = {}
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        sql = f"SELECT id, status, attempts FROM job WHERE id IN ({', '.join([p] * len(chunk))})"
        for job_id, status, attempts in store.execute(sql, chunk).fetchall():
            found[job_id] = (Status(status), attempts)
    missing = [job_id for job_id in unique if job_id not in found]
    if missing:
        listed = ", ".join(str(i) for i in missing)
        raise NotFoundError(f"no job with id {listed}; `jobrunner list` shows the ids")
    return found


def _event(store: Store, job_id: int, now: float, attempt: int, old: Status, new: Status,
           message: str) -> None:  # fmt: skip
    store.execute(store.backend.insert_event, (job_id, now, attempt, old.value, new.value, message, None))


@guarded
def cancel(store: Store, ids: Sequence[int], now: float, reason: str = "cancelled by user") -> list[Outcome]:
    """Cancel jobs that have not started; ask the daemon to stop running ones. All or nothing."""
    p = store.backend.param
    outcomes: list[Outcome] = []
    with store.write():
        states = _load_states(store, ids)
        refused = [f"job {i} already {s.value}" for i, (s, _) in states.items() if s in FINISHED]
        if refused:
            raise UsageError(f"nothing cancelled: {'; '.join(refused)}")
        for job_id, (status, attempts) in states.items():
            if status in CANCELLABLE:
                store.execute(
                    f"UPDATE job SET status={p}, finished_at={p}, updated_at={p}, error={p}, "
                    f"lease_owner=NULL, lease_until=NULL WHERE id={p}",
                    (Status.CANCELLED.value, now, now, reason, job_id),
                )
                _event(store, job_id, now, attempts, status, Status.CANCELLED, reason)
                outcomes.append(Outcome(job_id, status, Status.CANCELLED, "cancelled"))
            else:  # running: the daemon that holds the lease stops the process tree
                store.execute(
                    f"UPDATE job SET cancel_requested={p}, updated_at={p} WHERE id={p}",
                    (True, now, job_id),
                )
                _event(store, job_id, now, attempts, status, status, f"cancel requested: {reason}")
                outcomes.append(Outcome(job_id, status, status, "cancel requested; the daemon stops it"))
    return outcomes


@guarded
def retry(store: Store, ids: Sequence[int], now: float) -> list[Outcome]:
    """Put dead, cancelled or retrying jobs back in the queue to run now. All or nothing."""
    p = store.backend.param
    outcomes: list[Outcome] = []
    with store.write():
        states = _load_states(store, ids)
        refused = [f"job {i} is {s.value}" for i, (s, _) in states.items() if s not in RETRYABLE]
        if refused:
            raise UsageError(
                f"nothing retried: {'; '.join(refused)} (only dead, cancelled or retrying jobs "
                "can be retried; submit a succeeded job again to rerun it)"
            )
        for job_id, (status, attempts) in states.items():
            # A manual retry of a finished job grants a fresh retry budget; a pending
            # automatic retry just runs now.
            offset_sql = "retry_offset=attempts, " if status in FINISHED else ""
            store.execute(
                f"UPDATE job SET status={p}, run_at={p}, updated_at={p}, {offset_sql}"
                "finished_at=NULL, error=NULL, exit_code=NULL, result=NULL, progress=NULL, "
                f"progress_message=NULL, cancel_requested={p}, lease_owner=NULL, lease_until=NULL "
                f"WHERE id={p}",
                (Status.QUEUED.value, now, now, False, job_id),
            )
            _event(store, job_id, now, attempts, status, Status.QUEUED, "retried by user")
            outcomes.append(Outcome(job_id, status, Status.QUEUED, "queued"))
    return outcomes


@guarded
def purge(store: Store, older_than: float, statuses: Iterable[Status], now: float,
          dry_run: bool = False) -> list[int]:  # fmt: skip
    """Delete finished jobs (and their events) that finished before now - older_than.

    Works in batches, each its own short transaction, so a big purge never holds the
    write lock for long. Returns the ids removed (or that would be, with dry_run).
    """
    wanted = [Status(s) for s in statuses]
    bad = [s.value for s in wanted if s not in FINISHED]
    if bad:
        raise UsageError(
            f"cannot purge {', '.join(bad)} jobs: only succeeded, dead and cancelled jobs are purged"
        )
    p = store.backend.param
    cutoff = now - older_than
    marks = ", ".join([p] * len(wanted))
    select = f"SELECT id FROM job WHERE status IN ({marks}) AND finished_at < {p} ORDER BY id"
    params = [s.value for s in wanted] + [cutoff]
    if dry_run:
        return [row[0] for row in store.execute(select, params).fetchall()]
    removed: list[int] = []
    while True:
        with store.write():
            batch = [r[0] for r in store.execute(f"{select} LIMIT {PURGE_BATCH}", params).fetchall()]
            if not batch:
                break
            id_marks = ", ".join([p] * len(batch))
            store.execute(f"DELETE FROM event WHERE job_id IN ({id_marks})", batch)
            store.execute(f"DELETE FROM job WHERE id IN ({id_marks})", batch)
        removed.extend(batch)
    return removed


@guarded
def set_queue_paused(store: Store, queue: str, paused: bool, now: float) -> bool:
    """Pause or resume a queue: running jobs finish, nothing new starts. Returns the old state."""
    from jobrunner.domain.jobspec import NAME_PATTERN

    if not NAME_PATTERN.match(queue):
        raise UsageError(f"{queue!r} is not a queue name (letters, digits, '_', '-', '.')")
    p = store.backend.param
    with store.write():
        row = store.execute(f"SELECT paused FROM queue_state WHERE name={p}", (queue,)).fetchone()
        if row is None:
            store.execute(
                f"INSERT INTO queue_state (name, paused, updated_at) VALUES ({p}, {p}, {p})",
                (queue, paused, now),
            )
            return False
        store.execute(
            f"UPDATE queue_state SET paused={p}, updated_at={p} WHERE name={p}", (paused, now, queue)
        )
        return bool(row[0])
