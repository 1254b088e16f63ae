"""Retry, cancel, purge and export the jobs a filter matches, however many: a batch at a time.

Each batch is its own short transaction of at most BATCH jobs, read in id order past the last
one done (never OFFSET), so 100,000 matching jobs never sit in memory at once, the write lock
is never held for long, and the TUI and other commands go on between batches. The jobs that
match when the action starts are the ones acted on: ids past the highest at the start are left
alone, so jobs that fail meanwhile are not chased.

Plain jobs change in a few set-wise statements per batch. A job with dependencies (or
dependents) or a unique key goes through repo's single-job functions (cascades, refusals),
each in a savepoint: a refusal skips that job, names it, and the rest go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from jobrunner.domain.states import CANCELLABLE, FINISHED, RETRYABLE, Status
from jobrunner.errors import UsageError
from jobrunner.store import queries, repo
from jobrunner.store.db import Store, guarded
from jobrunner.store.queries import JobFilter

BATCH = 2000  # jobs per transaction
CHUNK = 500  # ids per statement: within any SQLite's limit on bound values
IDS_KEPT = 1000  # ids a result lists (the first, by id); the count covers them all
SKIPS_KEPT = 100


@dataclass
class BulkResult:
    """What a bulk action did (or, with dry_run, would do)."""

    action: str  # retry, cancel, purge
    dry_run: bool
    count: int = 0  # jobs changed (would change): retried, cancelled, purged
    ids: list[int] = field(default_factory=list)  # the first IDS_KEPT of them
    requested: int = 0  # cancel: running jobs asked to stop (their daemon stops them)
    skipped: int = 0  # jobs refused one by one (a dependency failed, a unique key held)
    reasons: list[str] = field(default_factory=list)  # the first SKIPS_KEPT refusals

    def add(self, ids: list[int]) -> None:
        self.count += len(ids)
        room = IDS_KEPT - len(self.ids)
        if room > 0:
            self.ids.extend(ids[:room])

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < SKIPS_KEPT:
            self.reasons.append(reason)

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action, "dry_run": self.dry_run, "count": self.count,
            "ids": self.ids, "ids_omitted": max(self.count - len(self.ids), 0),
            "cancel_requested": self.requested, "skipped": self.skipped, "skip_reasons": self.reasons,
        }  # fmt: skip


Progress = Callable[[BulkResult], None]


def checked_statuses(where: JobFilter, allowed: frozenset[Status], default: frozenset[Status],
                     verb: str, hint: str) -> JobFilter:  # fmt: skip
    """The filter with its statuses checked against what the action takes (default: `default`)."""
    wanted = list(dict.fromkeys(where.statuses)) or sorted(default)
    refused = [s.value for s in wanted if s not in allowed]
    if refused:
        raise UsageError(f"cannot {verb} {', '.join(refused)} jobs: {hint}")
    return replace(where, statuses=wanted)


def _condition(store: Store, where: JobFilter) -> tuple[str, list[Any]]:
    clause, params = where.where(store.backend.param)
    return (clause.removeprefix(" WHERE ") or "TRUE"), params


def _top(store: Store) -> int:
    return int(store.execute("SELECT COALESCE(MAX(id), 0) FROM job").fetchone()[0])


def _batches(store: Store, where: JobFilter, batch: int) -> Iterator[tuple[str, list[Any]]]:
    """(condition, params) of each batch in turn: the jobs matching `where` with ids in
    (last, last_of_batch], at most `batch` of them when it was read. The caller acts on each
    in one transaction, reading the rows again there (they may have moved since)."""
    cond, params = _condition(store, where)
    p = store.backend.param
    top, last = _top(store), 0
    while last < top:
        row = store.execute(
            f"SELECT id FROM job WHERE {cond} AND id > {p} AND id <= {p} ORDER BY id LIMIT 1 OFFSET {int(batch) - 1}",
            [*params, last, top],
        ).fetchone()
        upto = int(row[0]) if row else top
        yield f"{cond} AND id > {p} AND id <= {p}", [*params, last, upto]
        last = upto


def _locked(store: Store, cond: str, params: list[Any], columns: str = "id, status, attempts") -> list[tuple]:
    """The batch's rows, locked until the commit on PostgreSQL (a claim skips them meanwhile)."""
    lock = "" if store.is_sqlite else " FOR UPDATE"
    return store.execute(f"SELECT {columns} FROM job WHERE {cond} ORDER BY id{lock}", params).fetchall()


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _marks(store: Store, ids: list[int]) -> str:
    return ", ".join([store.backend.param] * len(ids))


def _linked(store: Store, ids: list[int], dependents_only: bool = False) -> set[int]:
    """Which of these jobs have dependents (or, unless dependents_only, dependencies or a unique
    key): those take the single-job path."""
    found: set[int] = set()
    for chunk in _chunks(ids):
        marks = _marks(store, chunk)
        found.update(r[0] for r in store.execute(
            f"SELECT DISTINCT depends_on FROM job_dependency WHERE depends_on IN ({marks})", chunk).fetchall())  # fmt: skip
        if not dependents_only:
            found.update(r[0] for r in store.execute(
                f"SELECT DISTINCT job_id FROM job_dependency WHERE job_id IN ({marks})", chunk).fetchall())  # fmt: skip
            if _has_unique_keys(store):
                found.update(r[0] for r in store.execute(
                    f"SELECT id FROM job WHERE id IN ({marks}) AND unique_key IS NOT NULL", chunk).fetchall())  # fmt: skip
    return found


def _has_unique_keys(store: Store) -> bool:
    return "unique_key" in queries.JOB_COLUMNS


def key_conflict(store: Store, job_id: int) -> str | None:
    """Why a retry would put this job's unique key on a second unfinished job, or None."""
    if not _has_unique_keys(store):
        return None
    p = store.backend.param
    row = store.execute(
        "SELECT h.id, h.status, j.unique_key FROM job j JOIN job h ON h.unique_key = j.unique_key AND h.id <> j.id "
        f"WHERE j.id = {p} AND h.status NOT IN ('succeeded', 'dead', 'cancelled') LIMIT 1",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    return f"job {job_id} cannot be retried: job {row[0]} ({row[1]}) holds its unique key {row[2]!r}"


def _events(store: Store, ids: list[int], now: float, new: str | None, message: str) -> None:
    """An event per job, from its current status (to `new`, or to the same status)."""
    p = store.backend.param
    to = p if new is not None else "status"
    for chunk in _chunks(ids):
        store.execute(
            "INSERT INTO event (job_id, at, attempt, from_status, to_status, message) "
            f"SELECT id, {p}, attempts, status, {to}, {p} FROM job WHERE id IN ({_marks(store, chunk)})",
            [now, *([new] if new is not None else []), message, *chunk],
        )


def _one_by_one(
    store: Store, job_id: int, act: Callable[[], list[repo.Outcome]], result: BulkResult
) -> list[repo.Outcome]:
    """A single-job action in a savepoint: refused, it changes nothing and the batch goes on."""
    try:
        with store.write():
            return act()
    except UsageError as exc:
        result.skip(f"job {job_id}: {exc}" if str(job_id) not in str(exc) else str(exc))
        return []


@guarded
def preview(store: Store, where: JobFilter, action: str) -> BulkResult:
    """How many jobs match and the first ids: what a dry run prints; nothing is written."""
    result = BulkResult(action, True)
    cond, params = _condition(store, where)
    result.count = int(store.execute(f"SELECT COUNT(*) FROM job WHERE {cond}", params).fetchone()[0])
    rows = store.execute(f"SELECT id FROM job WHERE {cond} ORDER BY id LIMIT {IDS_KEPT}", params).fetchall()
    result.ids = [int(r[0]) for r in rows]
    return result


def _batch_by_batch(store: Store, where: JobFilter, action: str,
                    change: Callable[[str, list[Any], BulkResult], None], dry_run: bool, batch: int,
                    progress: Progress | None) -> BulkResult:  # fmt: skip
    """What a bulk retry and cancel share around their own statements: a dry run only previews;
    otherwise `change` acts on each batch's (condition, params) in a transaction of its own, and
    `progress` hears of the result after each commit. (purge counts its dry run and reports its
    batches its own way.)"""
    if dry_run:
        return preview(store, where, action)
    result = BulkResult(action, False)
    for cond, params in _batches(store, where, batch):
        with store.write():
            change(cond, params, result)
        if progress is not None:
            progress(result)
    return result


_RETRY_SET = (
    "status={p}, run_at={p}, updated_at={p}, "
    "retry_offset=CASE WHEN status IN ('dead', 'cancelled', 'succeeded') THEN attempts ELSE retry_offset END, "
    "finished_at=NULL, error=NULL, exit_code=NULL, result=NULL, progress=NULL, progress_message=NULL, "
    "cancel_requested={p}, lease_owner=NULL, lease_until=NULL"
)


def retry_filter(where: JobFilter) -> JobFilter:
    """The filter of a retry: dead jobs unless it names statuses, and only those a retry takes."""
    return checked_statuses(where, RETRYABLE, frozenset({Status.DEAD}), "retry",
                            "only dead, cancelled or retrying jobs can be retried")  # fmt: skip


@guarded
def retry_matching(store: Store, where: JobFilter, now: float, *, dry_run: bool = False,
                   batch: int = BATCH, progress: Progress | None = None) -> BulkResult:  # fmt: skip
    """Put every job the filter matches back in the queue (dead only, unless it names retrying
    or cancelled), each with a fresh retry budget, as `retry ID` does."""
    p = store.backend.param

    def retry_batch(cond: str, params: list[Any], result: BulkResult) -> None:
        ids = [int(r[0]) for r in _locked(store, cond, params, "id")]
        linked = _linked(store, ids)
        plain = [i for i in ids if i not in linked]
        _events(store, plain, now, Status.QUEUED.value, "retried by user")
        for chunk in _chunks(plain):
            store.execute(
                f"UPDATE job SET {_RETRY_SET.format(p=p)} WHERE id IN ({_marks(store, chunk)})",
                [Status.QUEUED.value, now, now, False, *chunk],
            )
        result.add(plain)
        for job_id in sorted(linked):
            held = key_conflict(store, job_id)
            if held:
                result.skip(held)
                continue
            done = _one_by_one(store, job_id, lambda j=job_id: repo.retry(store, [j], now), result)
            result.add([o.job_id for o in done if o.job_id == job_id])

    return _batch_by_batch(store, retry_filter(where), "retry", retry_batch, dry_run, batch, progress)


def cancel_filter(where: JobFilter) -> JobFilter:
    """The filter of a cancel: jobs that have not started unless it names statuses (running:
    their daemon is asked to stop them)."""
    return checked_statuses(where, CANCELLABLE | {Status.RUNNING}, CANCELLABLE, "cancel",
                            "they have finished already")  # fmt: skip


@guarded
def cancel_matching(store: Store, where: JobFilter, now: float, *, dry_run: bool = False,
                    reason: str = "cancelled by user", batch: int = BATCH,
                    progress: Progress | None = None) -> BulkResult:  # fmt: skip
    """Cancel every job the filter matches (queued, scheduled, waiting and retrying ones unless it
    names statuses), as `cancel ID` does: a running one is asked to stop."""
    p = store.backend.param

    def cancel_batch(cond: str, params: list[Any], result: BulkResult) -> None:
        rows = _locked(store, cond, params, "id, status")
        running = [int(i) for i, status in rows if status == Status.RUNNING.value]
        waiting = [int(i) for i, status in rows if status != Status.RUNNING.value]
        linked = _linked(store, waiting, dependents_only=True)
        plain = [i for i in waiting if i not in linked]
        _events(store, plain, now, Status.CANCELLED.value, reason)
        _events(store, running, now, None, f"cancel requested: {reason}")
        for chunk in _chunks(plain):
            store.execute(
                f"UPDATE job SET status={p}, finished_at={p}, updated_at={p}, error={p}, lease_owner=NULL, "
                f"lease_until=NULL WHERE id IN ({_marks(store, chunk)})",
                [Status.CANCELLED.value, now, now, reason, *chunk],
            )
        for chunk in _chunks(running):
            store.execute(
                f"UPDATE job SET cancel_requested={p}, updated_at={p} WHERE id IN ({_marks(store, chunk)})",
                [True, now, *chunk],
            )
        result.add(plain)
        result.requested += len(running)
        for job_id in sorted(linked):
            done = _one_by_one(store, job_id, lambda j=job_id: repo.cancel(store, [j], now, reason), result)
            result.add([o.job_id for o in done if o.job_id == job_id])

    return _batch_by_batch(store, cancel_filter(where), "cancel", cancel_batch, dry_run, batch, progress)


def purge_filter(where: JobFilter) -> JobFilter:
    """The filter of a purge: finished jobs only (all three unless it names some)."""
    return checked_statuses(where, FINISHED, FINISHED, "purge",
                            "only succeeded, dead and cancelled jobs are purged")  # fmt: skip


@guarded
def purge_matching(store: Store, where: JobFilter, older_than: float, now: float, *, dry_run: bool = False,
                   batch: int = BATCH, on_purged: Callable[[list[tuple[int, str | None]]], None] | None = None,
                   progress: Progress | None = None, all_ids: list[int] | None = None) -> BulkResult:  # fmt: skip
    """Delete the finished jobs the filter matches that finished before now - older_than, with
    their history; `on_purged` gets each batch's (id, log path) once it is committed (to delete
    the log files). `all_ids`, if given, collects every id removed (`purge --json`)."""
    where = purge_filter(where)
    cutoff = now - older_than
    p = store.backend.param
    if dry_run:
        cond, params = _condition(store, where)
        result = BulkResult("purge", True)
        sql = f"FROM job WHERE {cond} AND finished_at < {p}"
        result.count = int(store.execute(f"SELECT COUNT(*) {sql}", [*params, cutoff]).fetchone()[0])
        rows = store.execute(f"SELECT id {sql} ORDER BY id LIMIT {IDS_KEPT}", [*params, cutoff]).fetchall()
        result.ids = [int(r[0]) for r in rows]
        if all_ids is not None:
            all_ids.extend(
                int(r[0]) for r in store.execute(f"SELECT id {sql} ORDER BY id", [*params, cutoff])
            )
        return result
    result = BulkResult("purge", False)
    for cond, params in _batches(store, where, batch):
        with store.write():
            rows = _locked(store, f"{cond} AND finished_at < {p}", [*params, cutoff], "id, log_path")
            ids = [int(r[0]) for r in rows]
            if ids:
                if store.is_sqlite:  # the ids deleted are never handed out again (backends.NEXT_JOB_ID)
                    from jobrunner.store.backends import RAISE_JOB_ID_FLOOR

                    store.execute(RAISE_JOB_ID_FLOOR)
                for chunk in _chunks(ids):
                    store.execute(f"DELETE FROM event WHERE job_id IN ({_marks(store, chunk)})", chunk)
                    store.execute(f"DELETE FROM job WHERE id IN ({_marks(store, chunk)})", chunk)
        if ids:
            result.add(ids)
            if all_ids is not None:
                all_ids.extend(ids)
            if on_purged is not None:
                on_purged([(int(i), path) for i, path in rows])
        if progress is not None:
            progress(result)
    return result


def matching_jobs(store: Store, where: JobFilter, batch: int = 500) -> Iterator[dict[str, Any]]:
    """Every job the filter matches, oldest first, as queries.job_to_dict gives it: read a batch
    at a time (each its own short read), so an export of 100,000 jobs holds one batch."""
    cond, params = _condition(store, where)
    p = store.backend.param
    columns = ", ".join(queries.JOB_COLUMNS)
    top, last = _top(store), 0
    while True:
        rows = store.execute(
            f"SELECT {columns} FROM job WHERE {cond} AND id > {p} AND id <= {p} ORDER BY id LIMIT {int(batch)}",
            [*params, last, top],
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield queries.job_to_dict(row)
        last = rows[-1][0]
        del rows


def export_fields(job: dict[str, Any]) -> dict[str, Any]:
    """The fields of a `submit --from-file` line that makes this job again (less its id, status,
    times and history): the keys a submit would give another value, a named priority by name."""
    from jobrunner.domain import edits

    return edits.for_user(edits.stored_fields(job, edits.export_keys()), defaults=False)


def export_line(job: dict[str, Any]) -> str:
    """export_fields as one line of JSON."""
    return json.dumps(export_fields(job), ensure_ascii=False, separators=(",", ":"), default=str)
