"""Jobs that run after others: `waiting` until every dependency succeeded.

A dependency that ends dead or cancelled cancels its dependents ("dependency 41
failed"), and theirs in turn; retrying it puts those dependents back to waiting.
Every function here runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobrunner.domain.states import Status
from jobrunner.errors import NotFoundError
from jobrunner.store.db import Store

FAILED = (Status.DEAD.value, Status.CANCELLED.value)
REASON_PREFIX = "dependency "


def failure_reason(dependency: int) -> str:
    return f"{REASON_PREFIX}{dependency} failed"


def initial_status(store: Store, after: Sequence[int], ready: Status) -> tuple[Status, str | None]:
    """The status a new job starts in, given its dependencies; unknown ids are a usage error."""
    if not after:
        return ready, None
    p = store.backend.param
    ids = list(dict.fromkeys(after))
    rows = dict(
        store.execute(f"SELECT id, status FROM job WHERE id IN ({', '.join([p] * len(ids))})", ids).fetchall()
    )
    missing = [i for i in ids if i not in rows]
    if missing:
        raise NotFoundError(f"--after: no job with id {', '.join(map(str, missing))}")
    failed = [i for i in ids if rows[i] in FAILED]
    if failed:
        return Status.CANCELLED, failure_reason(failed[0])
    if all(rows[i] == Status.SUCCEEDED.value for i in ids):
        return ready, None
    return Status.WAITING, None


def link(store: Store, job_id: int, after: Sequence[int]) -> None:
    if after:
        store.cursor().executemany(
            f"INSERT INTO job_dependency (job_id, depends_on) VALUES ({store.backend.param}, {store.backend.param})",
            [(job_id, dep) for dep in dict.fromkeys(after)],
        )


def _dependents(store: Store, job_id: int, status: str) -> list[tuple[int, int, float]]:
    p = store.backend.param
    return store.execute(
        "SELECT j.id, j.attempts, j.run_at FROM job_dependency d JOIN job j ON j.id = d.job_id "
        f"WHERE d.depends_on = {p} AND j.status = {p}",
        (job_id, status),
    ).fetchall()


def _move(store: Store, job_id: int, attempts: int, old: Status, new: Status, message: str,
          now: float, error: str | None = None) -> None:  # fmt: skip
    p = store.backend.param
    finished = now if new is Status.CANCELLED else None
    store.execute(
        f"UPDATE job SET status={p}, updated_at={p}, finished_at={p}, error={p} WHERE id={p}",
        (new.value, now, finished, error, job_id),
    )
    store.execute(store.backend.insert_event, (job_id, now, attempts, old.value, new.value, message, None))


def any_waiting_on(store: Store, job_ids: Sequence[int]) -> bool:
    """Whether any job depends on one of these: one indexed look-up spares a query per job."""
    marks = ", ".join([store.backend.param] * len(job_ids))
    sql = f"SELECT 1 FROM job_dependency WHERE depends_on IN ({marks}) LIMIT 1"
    return store.execute(sql, list(job_ids)).fetchone() is not None


def on_succeeded(store: Store, job_id: int, now: float) -> list[int]:
    """Dependents whose last dependency just succeeded become queued (or scheduled)."""
    p = store.backend.param
    released = []
    for dependent, attempts, run_at in _dependents(store, job_id, Status.WAITING.value):
        pending = store.execute(
            "SELECT COUNT(*) FROM job_dependency d JOIN job j ON j.id = d.depends_on "
            f"WHERE d.job_id = {p} AND j.status != 'succeeded'",
            (dependent,),
        ).fetchone()[0]
        if pending == 0:
            new = Status.SCHEDULED if run_at > now else Status.QUEUED
            _move(store, dependent, attempts, Status.WAITING, new, "dependencies succeeded", now)
            released.append(dependent)
    return released


def on_failed(store: Store, job_id: int, now: float) -> list[int]:
    """Cancel waiting dependents of a dead or cancelled job, and theirs, transitively."""
    cancelled: list[int] = []
    frontier = [job_id]
    while frontier:
        failed = frontier.pop()
        for dependent, attempts, _ in _dependents(store, failed, Status.WAITING.value):
            _move(store, dependent, attempts, Status.WAITING, Status.CANCELLED, failure_reason(failed), now,
                  error=failure_reason(failed))  # fmt: skip
            cancelled.append(dependent)
            frontier.append(dependent)
    return cancelled


def unmet(store: Store, job_id: int) -> bool:
    """True while some dependency of the job has not succeeded."""
    p = store.backend.param
    return bool(
        store.execute(
            "SELECT 1 FROM job_dependency d JOIN job j ON j.id = d.depends_on "
            f"WHERE d.job_id = {p} AND j.status != 'succeeded' LIMIT 1",
            (job_id,),
        ).fetchone()
    )


def on_retried(store: Store, job_id: int, now: float) -> list[int]:
    """Dependents cancelled because this job failed go back to waiting, transitively."""
    p = store.backend.param
    restored: list[int] = []
    frontier = [job_id]
    while frontier:
        retried = frontier.pop()
        rows = store.execute(
            "SELECT j.id, j.attempts FROM job_dependency d JOIN job j ON j.id = d.job_id "
            f"WHERE d.depends_on = {p} AND j.status = 'cancelled' AND j.error = {p}",
            (retried, failure_reason(retried)),
        ).fetchall()
        for dependent, attempts in rows:
            _move(store, dependent, attempts, Status.CANCELLED, Status.WAITING,
                  f"dependency {retried} retried", now)  # fmt: skip
            restored.append(dependent)
            frontier.append(dependent)
    return restored


def links(store: Store, job_id: int) -> dict[str, list[int]]:
    """What a job waits for and what waits for it, for `show`."""
    p = store.backend.param
    after = [
        r[0]
        for r in store.execute(
            f"SELECT depends_on FROM job_dependency WHERE job_id={p} ORDER BY depends_on", (job_id,)
        ).fetchall()
    ]
    before = [
        r[0]
        for r in store.execute(
            f"SELECT job_id FROM job_dependency WHERE depends_on={p} ORDER BY job_id", (job_id,)
        ).fetchall()
    ]
    return {"after": after, "dependents": before}
