"""Unique keys: at most one unfinished job holds a key, because the database says so.

The insert itself asks (`INSERT ... ON CONFLICT DO NOTHING` on the partial unique index
job_unique_key): a submit never checks first and inserts after, so submitters racing on one key,
from any number of processes and hosts, end with one job. Only when the insert finds the key
held does the submit look at the holder, in the same transaction, and do what `on_conflict`
says: reuse it, replace it (cancelled, if it has not started), or reject the submit. A job that
finished (succeeded, dead, cancelled) holds nothing, so its key is free again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from jobrunner.domain.jobspec import JobSpec
from jobrunner.domain.states import Status
from jobrunner.errors import KeyHeldError, StoreError
from jobrunner.store import dependencies
from jobrunner.store.db import Store, guarded
from jobrunner.store.migrations import KEY_HELD

#: Rounds of insert / find the holder: each further round means another submitter's commit
#: changed the holder meanwhile (PostgreSQL; SQLite's write lock allows none).
_ROUNDS = 100
_FINAL = frozenset({Status.SUCCEEDED.value, Status.DEAD.value, Status.CANCELLED.value})


@dataclass(frozen=True)
class Submitted:
    """What a submit with a unique key did."""

    job_id: int  # the new job's, or (reused) the one holding the key
    created: bool  # False: an unfinished job held the key and is the answer
    replaced: int | None = None  # the job this one cancelled and took the key from


@guarded
def submit_keyed(store: Store, spec: JobSpec, now: float) -> Submitted:
    """Store a job with a unique key, or settle the conflict as `spec.on_conflict` says; one
    transaction. Raises KeyHeldError when it rejects (nothing is written)."""
    from jobrunner.store.repo import _job_row

    row = _job_row(spec, now)
    with store.write():
        if not spec.after:
            return insert_keyed(store, spec, row, now)
        status, reason = dependencies.initial_status(store, spec.after, Status(row[9]))
        row = (*row[:9], status.value, *row[10:])
        waits = ", ".join(str(i) for i in dict.fromkeys(spec.after))
        done = insert_keyed(store, spec, row, now, reason or f"submitted; runs after {waits}")
        if done.created:
            if status is Status.CANCELLED:
                p = store.backend.param
                store.execute(f"UPDATE job SET finished_at={p}, error={p} WHERE id={p}", (now, reason, done.job_id))
            dependencies.link(store, done.job_id, spec.after)
        return done


def submit_many_keyed(store: Store, specs: Sequence[JobSpec], rows: list[tuple], now: float) -> list[int]:
    """Bulk submit when some lines carry a unique key (inside the caller's transaction): row by
    row, so a line whose key is held is settled as it says; a reused line links nothing."""
    from jobrunner.store.repo import _insert, _link_bulk

    ids: list[int] = []
    linked: list[JobSpec] = []
    for spec, row in zip(specs, rows, strict=True):
        if spec.unique_key is None:
            ids.append(_insert(store, row, now))
            linked.append(spec)
            continue
        done = insert_keyed(store, spec, row, now)
        ids.append(done.job_id)
        linked.append(spec if done.created or not spec.after else replace(spec, after=[]))
    if any(spec.after for spec in linked):
        _link_bulk(store, linked, ids, now)
    return ids


def insert_keyed(store: Store, spec: JobSpec, row: tuple, now: float, message: str = "submitted") -> Submitted:
    """One keyed job and its event, inside the caller's transaction: the insert first, and the
    holder looked at only when the insert found the key taken."""
    key = spec.unique_key
    assert key is not None
    backend = store.backend
    values = (*row, key)
    replaced: int | None = None
    for _ in range(_ROUNDS):
        if row[9] not in _FINAL:
            inserted = store.execute(backend.insert_keyed_job, values).fetchone()
            if inserted is not None:
                store.execute(backend.insert_event, (inserted[0], now, 0, None, row[9], message, None))
                return Submitted(int(inserted[0]), True, replaced)
        holder = _holder(store, key)
        if holder is None:
            if row[9] in _FINAL:  # born cancelled (a failed dependency): it never holds the key
                return Submitted(_insert_final(store, values, row[9], now, message), True, replaced)
            continue  # the holder finished since the insert looked: try again
        held_id, held_status = holder
        if spec.on_conflict == "reuse":
            return Submitted(held_id, False, replaced)
        if spec.on_conflict == "reject":
            raise KeyHeldError(
                f"unique key {key!r} is held by job {held_id} ({held_status}): nothing submitted "
                "(--on-conflict reuse answers with its id, replace cancels it if it has not started)",
                held_id, held_status,
            )  # fmt: skip
        if held_status == Status.RUNNING.value:
            raise KeyHeldError(
                f"unique key {key!r} is held by job {held_id}, which is running: not replaced, "
                f"nothing submitted (wait for it to end, or `jobrunner cancel {held_id}` first)",
                held_id, held_status,
            )  # fmt: skip
        _cancel_replaced(store, held_id, Status(held_status), now)
        replaced = held_id
    raise StoreError(f"unique key {key!r} changed hands {_ROUNDS} times while this submit waited: try again")


def _holder(store: Store, key: str) -> tuple[int, str] | None:
    """(id, status) of the unfinished job holding `key`; on PostgreSQL locked until the commit,
    so it cannot start or end while this submit decides about it."""
    p = store.backend.param
    lock = "" if store.is_sqlite else " FOR UPDATE"
    row = store.execute(f"SELECT id, status FROM job WHERE unique_key = {p} AND {KEY_HELD}{lock}", (key,)).fetchone()
    return None if row is None else (int(row[0]), row[1])


def _insert_final(store: Store, values: tuple, status: str, now: float, message: str) -> int:
    backend = store.backend
    (job_id,) = store.execute(backend.insert_keyed_job, values).fetchone()
    store.execute(backend.insert_event, (job_id, now, 0, None, status, message, None))
    return int(job_id)


def _cancel_replaced(store: Store, job_id: int, status: Status, now: float) -> None:
    """Cancel the job a replace takes the key from (it has not started), as `cancel` would:
    its dependents are cancelled with it."""
    p = store.backend.param
    reason = "replaced by a new job with its unique key"
    row = store.execute(
        f"UPDATE job SET status='cancelled', finished_at={p}, updated_at={p}, error={p}, lease_owner=NULL, "
        f"lease_until=NULL WHERE id={p} RETURNING attempts",
        (now, now, reason, job_id),
    ).fetchone()
    store.execute(store.backend.insert_event, (job_id, now, row[0], status.value, "cancelled", reason, None))
    dependencies.on_failed(store, job_id, now)
