"""Jobs that run after others: `waiting` until every dependency succeeded.

A dependency that ends dead or cancelled cancels its dependents, and theirs in turn, each
with an error naming the job at the root of the chain and how it ended ("dependency 41
(extract) died: exit code 3"). Retrying it puts back to waiting those of them with no other
failed dependency; `retry` of a job with a failed dependency is refused. Nothing waits for a
dependency that will never succeed. Every function here runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from jobrunner.domain.states import Status
from jobrunner.errors import NotFoundError
from jobrunner.store.db import Store

FAILED = (Status.DEAD.value, Status.CANCELLED.value)
#: The start of every error a job is cancelled with because a dependency failed (and only those).
REASON_PREFIX = "dependency "


class Dependent(NamedTuple):
    """A dependent cancelled because a dependency failed, and the error it was given."""

    job_id: int
    attempts: int
    reason: str


def _row(store: Store, job_id: int) -> tuple[str, str, str | None]:
    """(name, status, error) of a job."""
    return store.execute(f"SELECT name, status, error FROM job WHERE id={store.backend.param}", (job_id,)).fetchone()


def _cancelled_for_a_dependency(status: str, error: str | None) -> bool:
    return status == Status.CANCELLED.value and error is not None and error.startswith(REASON_PREFIX)


def failure_reason(store: Store, dependency: int) -> str:
    """The error for a dependent of this dead or cancelled job: the job at the root of the chain
    and how it ended, however deep ("dependency 41 (extract) died: exit code 3")."""
    name, status, error = _row(store, dependency)
    if error is not None and _cancelled_for_a_dependency(status, error):
        return error  # cancelled for its own failed dependency: its error already names the root
    how = "died" if status == Status.DEAD.value else "was cancelled"
    detail = error.strip().splitlines()[0] if error and error.strip() else ""
    return f"{REASON_PREFIX}{dependency} ({name}) {how}" + (f": {detail}" if detail else "")


def _failed_dependencies(store: Store, job_id: int) -> list[int]:
    p = store.backend.param
    return [
        row[0]
        for row in store.execute(
            "SELECT j.id FROM job_dependency d JOIN job j ON j.id = d.depends_on "
            f"WHERE d.job_id = {p} AND j.status IN ({p}, {p}) ORDER BY j.id",
            (job_id, *FAILED),
        ).fetchall()
    ]


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
        return Status.CANCELLED, failure_reason(store, failed[0])
    if all(rows[i] == Status.SUCCEEDED.value for i in ids):
        return ready, None
    return Status.WAITING, None


def link(store: Store, job_id: int, after: Sequence[int]) -> None:
    if after:
        store.execute_many(
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
    if released:
        from jobrunner.store.pgwake import notify

        notify(store)  # on PostgreSQL: an idle daemon on another host may take them
    return released


def on_failed(store: Store, job_id: int, now: float) -> list[Dependent]:
    """Cancel waiting dependents of a dead or cancelled job, and theirs, transitively: each
    one's error names the job at the root of the chain and how it ended."""
    reason = ""  # read once there is a dependent to give it to: most jobs have none
    cancelled: list[Dependent] = []
    frontier = [job_id]
    while frontier:
        failed = frontier.pop()
        for dependent, attempts, _ in _dependents(store, failed, Status.WAITING.value):
            reason = reason or failure_reason(store, job_id)
            _move(store, dependent, attempts, Status.WAITING, Status.CANCELLED, reason, now, error=reason)
            cancelled.append(Dependent(dependent, attempts, reason))
            frontier.append(dependent)
    return cancelled


def settle_stranded(store: Store, now: float, limit: int = 100) -> list[int]:
    """Waiting jobs whose dependencies have all ended, yet nothing released or cancelled them:
    released now (queued, or scheduled for a later start), or cancelled with the dependents of
    the dependency that failed. Returns the ids settled.

    On PostgreSQL a `submit --after X` that commits while X ends strands its job: the submit
    read X still running, and X's end looked for dependents before the new one was committed
    (each transaction reads before the other commits). The daemon looks for such jobs now and
    then (housekeeping); SQLite's one write lock orders the two, so none is ever stranded
    there. Rows are locked, and ones another daemon is settling skipped."""
    p = store.backend.param
    lock = " FOR UPDATE SKIP LOCKED" if not store.is_sqlite else ""
    ended = ", ".join(f"'{status}'" for status in (Status.SUCCEEDED.value, *FAILED))
    # a dependency deleted since (its outcome unknown) keeps the job waiting, as it did before
    stranded = store.execute(
        "SELECT id, attempts, run_at FROM job j WHERE status = 'waiting' "
        "AND EXISTS (SELECT 1 FROM job_dependency d WHERE d.job_id = j.id) "
        "AND NOT EXISTS (SELECT 1 FROM job_dependency d LEFT JOIN job x ON x.id = d.depends_on "
        f"WHERE d.job_id = j.id AND (x.id IS NULL OR x.status NOT IN ({ended}))) "
        f"ORDER BY id LIMIT {int(limit)}{lock}"
    ).fetchall()
    settled: list[int] = []
    for job_id, attempts, run_at in stranded:
        failed = store.execute(
            "SELECT x.id FROM job_dependency d JOIN job x ON x.id = d.depends_on "
            f"WHERE d.job_id = {p} AND x.status IN ({', '.join(repr(s) for s in FAILED)}) ORDER BY x.id LIMIT 1",
            (job_id,),
        ).fetchone()  # fmt: skip
        if failed is not None:  # cancelled by a dead dependency, with every job waiting on it
            settled += [d.job_id for d in on_failed(store, failed[0], now) if d.job_id not in settled]
        else:
            new = Status.SCHEDULED if run_at > now else Status.QUEUED
            _move(store, job_id, attempts, Status.WAITING, new, "dependencies succeeded", now)
            settled.append(job_id)
    if settled:
        from jobrunner.store.pgwake import notify

        notify(store)  # a job released: an idle daemon on any host may take it
    return settled


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
    """Dependents cancelled because a dependency failed, this job's and theirs, go back to waiting
    once none of their dependencies is dead or cancelled; the others stay cancelled, their error
    naming the failure that remains."""
    p = store.backend.param
    restored: list[int] = []
    frontier = [job_id]
    while frontier:
        retried = frontier.pop()
        rows = store.execute(
            "SELECT j.id, j.attempts, j.error FROM job_dependency d JOIN job j ON j.id = d.job_id "
            f"WHERE d.depends_on = {p} AND j.status = 'cancelled' AND j.error LIKE {p} ORDER BY j.id",
            (retried, REASON_PREFIX + "%"),
        ).fetchall()
        for dependent, attempts, error in rows:
            failed = _failed_dependencies(store, dependent)
            if not failed:
                _move(store, dependent, attempts, Status.CANCELLED, Status.WAITING,
                      f"dependency {retried} retried", now)  # fmt: skip
                restored.append(dependent)
                frontier.append(dependent)
                continue
            reason = failure_reason(store, failed[0])
            if reason != error:  # its own dependents named the old root too: they follow
                store.execute(f"UPDATE job SET error={p}, updated_at={p} WHERE id={p}", (reason, now, dependent))
                store.execute(
                    store.backend.insert_event,
                    (dependent, now, attempts, Status.CANCELLED.value, Status.CANCELLED.value,
                     f"dependency {retried} retried; still cancelled: {reason}", None),
                )  # fmt: skip
                frontier.append(dependent)
    return restored


def retry_refusal(store: Store, job_id: int) -> str | None:
    """Why a job cannot wait for its dependencies (one is dead or cancelled), or None.

    Names that dependency, and the job to retry first: the root of its chain.
    """
    failed = _failed_dependencies(store, job_id)
    if not failed:
        return None
    dependency = failed[0]
    name, status, error = _row(store, dependency)
    text = f"job {job_id} cannot be retried: its dependency {dependency} ({name}) is {status}"
    root, root_name, seen = dependency, name, {dependency}
    while _cancelled_for_a_dependency(status, error):  # down the chain to the job that failed
        below = [i for i in _failed_dependencies(store, root) if i not in seen]
        if not below:
            break
        root = below[0]
        seen.add(root)
        root_name, status, error = _row(store, root)
    if root != dependency:
        text += f" because dependency {root} ({root_name}) is {status}"
    return f"{text}: retry {root} first"


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
