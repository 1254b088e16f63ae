"""Every write to jobs: submit, cancel, retry, purge, pause. Each call is one transaction,
checks everything before it writes, and records an event row per state change."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from jobrunner.domain.jobspec import JobSpec
from jobrunner.domain.states import CANCELLABLE, FINISHED, RETRYABLE, Status
from jobrunner.errors import NotFoundError, UsageError
from jobrunner.store import dependencies
from jobrunner.store.backends import RAISE_JOB_ID_FLOOR, SQLITE
from jobrunner.store.db import Store, guarded

PURGE_BATCH = 500
_SQLITE_INSERT_JOB, _SQLITE_INSERT_EVENT = SQLITE.insert_job, SQLITE.insert_event  # text built once


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_quote = json.encoder.encode_basestring_ascii  # what the encoder writes for a str, in C
_QUEUED, _SCHEDULED = Status.QUEUED.value, Status.SCHEDULED.value


def _c_encoder() -> Any:
    """json.dumps(value, separators=(",", ":"), default=str), minus building an encoder per call.

    One C encoder serves every call: without a markers dict it keeps no state between calls
    (so threads can share it). It skips the check for circular containers, which jobs cannot
    hold: JSON lines and TOML cannot express them and the Python API refuses them up front.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator
        return _ENCODER.encode
    encoder = make(None, str, _quote, None, ":", ",", False, False, True)
    return lambda value: "".join(encoder(value, 0))


_encode = _c_encoder()


def _dumps(value: object) -> str:
    return _encode(value)


def _dumps_strings(value: object) -> str:
    """json.dumps of a list of strings (command, tags, retry_on), without the general encoder."""
    if type(value) is list:
        try:
            return "[" + ",".join(map(_quote, value)) + "]"
        except TypeError:  # not all strings: the general encoder decides
            pass
    return _encode(value)


def _job_row(spec: JobSpec, now: float) -> tuple:
    """The values of JOB_INSERT_COLUMNS for a spec; the JSON text is what json.dumps writes."""
    run_at = spec.run_at if spec.run_at is not None else now
    command, backoff, args, kwargs = spec.command, spec.backoff, spec.args, spec.kwargs
    retry_on, exit_codes, tags, metadata, env = (
        spec.retry_on, spec.retry_on_exit_codes, spec.tags, spec.metadata, spec.env,
    )  # fmt: skip
    # Empty lists and dicts, the usual case, are spelled out rather than encoded.
    return (
        spec.name, spec.kind, spec.task,
        None if command is None else _dumps_strings(command), spec.callable,
        "[]" if not args and type(args) is list else _encode(args),
        "{}" if not kwargs and type(kwargs) is dict else _encode(kwargs),
        spec.queue, spec.priority, _SCHEDULED if run_at > now else _QUEUED,
        spec.max_retries, spec.timeout, backoff.base, backoff.factor, backoff.max,
        "[]" if not retry_on and type(retry_on) is list else _dumps_strings(retry_on),
        "[]" if not exit_codes and type(exit_codes) is list else _encode(exit_codes),
        "[]" if not tags and type(tags) is list else _dumps_strings(tags),
        "{}" if not metadata and type(metadata) is dict else _encode(metadata),
        spec.cwd,
        "{}" if not env and type(env) is dict else _encode(env),
        now, run_at, now, spec.memory_limit, spec.cpu_time_limit, spec.max_log_size,
    )  # fmt: skip


@guarded
def submit(store: Store, spec: JobSpec, now: float) -> int:
    """Store one job and its 'submitted' event; returns the new id once committed.

    With a unique key: the id of the job that holds it, as its `on_conflict` says (keys.py)."""
    if spec.unique_key is not None:
        from jobrunner.store.keys import submit_keyed

        return submit_keyed(store, spec, now).job_id
    row = _job_row(spec, now)
    backend = store.backend
    if spec.after:
        return _submit_after(store, spec, row, now)
    if backend is SQLITE:
        conn = store.db.connection()
        if not conn.in_transaction:  # inside a caller's transaction peewee nests with a savepoint
            with store.write_lock:  # this process's threads take turns (see Store.__init__)
                job_id = _submit_sqlite(conn, row, now)
            if store.poke_on_commit:  # wake an idle daemon, as store.write() does
                from jobrunner.wakeup import poke

                poke(store.target)
            return job_id
    elif not store.db.transaction_depth():  # PostgreSQL, on its own: one statement, one round trip
        from jobrunner.store.pgwake import CHANNEL

        notify = store.poke_on_commit
        with store.write_lock:
            cursor = store.execute_hot(f"jobrunner_submit_{int(notify)}", backend.submit_statement(notify),
                                       (*row, now, *((CHANNEL, "") if notify else ())))  # fmt: skip
        return int(cursor.fetchone()[0])
    with store.write():
        cursor = store.cursor()
        cursor.execute(backend.insert_job, row)
        job_id = cursor.fetchone()[0] if backend.name == "postgresql" else cursor.lastrowid
        cursor.execute(backend.insert_event, (job_id, now, 0, None, row[9], "submitted", None))
    return int(job_id)


def _insert(store: Store, row: tuple, now: float, message: str = "submitted") -> int:
    cursor = store.cursor()
    cursor.execute(store.backend.insert_job, row)
    job_id = cursor.fetchone()[0] if store.backend.name == "postgresql" else cursor.lastrowid
    cursor.execute(store.backend.insert_event, (job_id, now, 0, None, row[9], message, None))
    return int(job_id)


def _submit_after(store: Store, spec: JobSpec, row: tuple, now: float) -> int:
    """A job with dependencies starts waiting (or cancelled, if one already failed)."""
    with store.write():
        status, reason = dependencies.initial_status(store, spec.after, Status(row[9]))
        row = (*row[:9], status.value, *row[10:])
        waits = ", ".join(str(i) for i in dict.fromkeys(spec.after))
        job_id = _insert(store, row, now, reason or f"submitted; runs after {waits}")
        if status is Status.CANCELLED:
            p = store.backend.param
            store.execute(f"UPDATE job SET finished_at={p}, error={p} WHERE id={p}", (now, reason, job_id))
        dependencies.link(store, job_id, spec.after)
    return job_id


def _link_bulk(store: Store, specs: Sequence[JobSpec], ids: list[int], now: float) -> None:
    """Dependencies of a bulk submit: negative numbers point at earlier lines (-1 is the first)."""
    p = store.backend.param
    for spec, job_id in zip(specs, ids, strict=True):
        if not spec.after:
            continue
        after = [ids[-dep - 1] if dep < 0 else dep for dep in spec.after]
        status, reason = dependencies.initial_status(store, after, Status.QUEUED)
        if status is not Status.QUEUED:
            finished = now if status is Status.CANCELLED else None
            store.execute(
                f"UPDATE job SET status=CASE WHEN {p}='waiting' AND status='scheduled' THEN 'waiting' "
                f"ELSE {p} END, finished_at={p}, error={p} WHERE id={p}",
                (status.value, status.value, finished, reason, job_id),
            )
            store.execute(
                f"UPDATE event SET to_status={p}, message={p} WHERE job_id={p}",
                (status.value, reason or "submitted; runs after " + ", ".join(map(str, after)), job_id),
            )
        dependencies.link(store, job_id, after)


def _submit_sqlite(conn: Any, row: tuple, now: float) -> int:
    """The hot path: two prepared statements (sqlite3 caches them by text) in one BEGIN IMMEDIATE.

    The same transaction store.write() makes, without peewee's per-call bookkeeping,
    which costs more than the statements themselves.
    """
    cursor = conn.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        cursor.execute(_SQLITE_INSERT_JOB, row)
        job_id = cursor.lastrowid
        cursor.execute(_SQLITE_INSERT_EVENT, (job_id, now, 0, None, row[9], "submitted", None))
        cursor.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return job_id


@guarded
def submit_many(store: Store, specs: Sequence[JobSpec], now: float) -> list[int]:
    """Store many jobs in one transaction: all of them or none."""
    if not specs:
        return []
    # the cyclic GC stays as the caller has it (library code flips no process-wide state): the
    # CLI's --from-file pauses it around the whole read and store, `serve` froze its start-up heap
    rows = [_job_row(spec, now) for spec in specs]
    backend = store.backend
    with store.write():
        if any(spec.unique_key is not None for spec in specs):
            from jobrunner.store.keys import submit_many_keyed

            return submit_many_keyed(store, specs, rows, now)
        if backend.name == "postgresql":
            ids = _insert_many_postgresql(store, rows)
        else:
            # Inside BEGIN IMMEDIATE nobody else inserts, so the new ids are consecutive and end
            # at the last one inserted (each is backends.NEXT_JOB_ID: past any purged id)
            store.cursor().executemany(backend.insert_job, rows)
            last = store.execute("SELECT last_insert_rowid()").fetchone()[0]
            before = last - len(rows)
            ids = list(range(before + 1, last + 1))
            store.execute(backend.events_for_new_jobs, ("submitted", before))
        if any(spec.after for spec in specs):
            _link_bulk(store, specs, ids, now)
    return ids


#: Jobs a statement of PostgreSQL's bulk submit (psycopg2 quotes them into its text: ~0.3 MB)
BULK_PAGE = 1000


def _insert_many_postgresql(store: Store, rows: list[tuple]) -> list[int]:
    """Insert jobs with their events a page per statement, where a statement a job made a
    round trip a job (600 jobs: 330 ms). Their ids come back in the order given: one sequence
    numbers a statement's rows in turn, and sorting each page's ids does not hang on the order
    RETURNING lists them in."""
    from psycopg2.extras import execute_values

    cursor = store.cursor()
    ids: list[int] = []
    for start in range(0, len(rows), BULK_PAGE):
        page = rows[start : start + BULK_PAGE]
        returned = execute_values(cursor, store.backend.insert_jobs, page, page_size=len(page), fetch=True)
        ids += sorted(row[0] for row in returned)
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
    # On PostgreSQL the rows stay as read until commit (a claim or a finish in between waits),
    # locked in id order as a finish locks a job and then its dependents; SQLite's BEGIN
    # IMMEDIATE already keeps every other writer out.
    lock = " ORDER BY id FOR UPDATE" if store.backend.name == "postgresql" else ""
    found: dict[int, tuple[Status, int]] = {}
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        sql = f"SELECT id, status, attempts FROM job WHERE id IN ({', '.join([p] * len(chunk))}){lock}"
        for job_id, status, attempts in store.execute(sql, chunk).fetchall():
            found[job_id] = (Status(status), attempts)
    missing = [job_id for job_id in unique if job_id not in found]
    if missing:
        listed = ", ".join(str(i) for i in missing)
        raise NotFoundError(f"no job with id {listed}; `jobrunner list` shows the ids")
    return found


def _states_allowing(store: Store, ids: Sequence[int], allowed: frozenset[Status], nothing: str,
                     hint: str) -> dict[int, tuple[Status, int]]:  # fmt: skip
    """The jobs' states, or one UsageError naming every job whose state does not allow the action."""
    states = _load_states(store, ids)
    refused = [f"job {i} is {s.value}" for i, (s, _) in states.items() if s not in allowed]
    if refused:
        raise UsageError(f"{nothing}: {'; '.join(refused)} ({hint})")
    return states


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
                for dependent in dependencies.on_failed(store, job_id, now):
                    outcomes.append(Outcome(dependent.job_id, Status.WAITING, Status.CANCELLED,
                                            dependent.reason))  # fmt: skip
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
    """Put dead, cancelled or retrying jobs back in the queue to run now. All or nothing.

    A job with a dead or cancelled dependency (not retried with it) is refused: it would wait forever.
    """
    p = store.backend.param
    outcomes: list[Outcome] = []
    with store.write():
        states = _states_allowing(
            store, ids, RETRYABLE, "nothing retried",
            "only dead, cancelled or retrying jobs can be retried; submit a succeeded job again to rerun it",
        )  # fmt: skip
        waiting = []
        for job_id, (status, attempts) in states.items():
            # A manual retry of a finished job grants a fresh retry budget; a pending
            # automatic retry just runs now.
            offset_sql = "retry_offset=attempts, " if status in FINISHED else ""
            # a job whose own dependencies have not all succeeded waits for them again
            new = Status.WAITING if dependencies.unmet(store, job_id) else Status.QUEUED
            store.execute(
                f"UPDATE job SET status={p}, run_at={p}, updated_at={p}, {offset_sql}"
                "finished_at=NULL, error=NULL, exit_code=NULL, result=NULL, progress=NULL, "
                f"progress_message=NULL, cancel_requested={p}, lease_owner=NULL, lease_until=NULL "
                f"WHERE id={p}",
                (new.value, now, now, False, job_id),
            )
            _event(store, job_id, now, attempts, status, new, "retried by user")
            outcomes.append(Outcome(job_id, status, new, new.value))
            if new is Status.WAITING:
                waiting.append(job_id)
        # after every named job is back, so retrying a job with its failed dependency works
        for job_id in states:
            for dependent in dependencies.on_retried(store, job_id, now):
                outcomes.append(Outcome(dependent, Status.CANCELLED, Status.WAITING,
                                        f"dependency {job_id} retried"))  # fmt: skip
        refused = [why for why in (dependencies.retry_refusal(store, job_id) for job_id in waiting) if why]
        if refused:
            raise UsageError("; ".join(refused))  # rolls the whole retry back
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
            if store.is_sqlite:  # the ids deleted are never handed out again (backends.NEXT_JOB_ID)
                store.execute(RAISE_JOB_ID_FLOOR)
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


@guarded
def known_queues(store: Store) -> list[str]:
    """Queues the database knows: those of its jobs and schedules, and any paused or resumed before."""
    names = {row[0] for row in store.execute("SELECT DISTINCT queue FROM job").fetchall()}
    names.update(row[0] for row in store.execute("SELECT name FROM queue_state").fetchall())
    for (job,) in store.execute("SELECT job FROM schedule").fetchall():
        queue = json.loads(job).get("queue") if job else None
        if isinstance(queue, str):
            names.add(queue)
    return sorted(names)


@guarded
def set_priority(store: Store, ids: Sequence[int], priority: str | int, now: float) -> list[Outcome]:
    """Give jobs that have not started yet a new priority (a name or 0-9). All or nothing."""
    from jobrunner.domain.priority import parse_priority, priority_label

    if not ids:
        raise UsageError("give at least one job id")
    try:
        value = parse_priority(priority)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    p = store.backend.param
    outcomes: list[Outcome] = []
    with store.write():
        states = _states_allowing(
            store, ids, CANCELLABLE, "no priority changed", "only jobs that have not started can be reprioritised"
        )
        for job_id, (status, attempts) in states.items():
            (before,) = store.execute(f"SELECT priority FROM job WHERE id={p}", (job_id,)).fetchone()
            if before == value:
                outcomes.append(Outcome(job_id, status, status, f"priority already {priority_label(value)}"))
                continue
            store.execute(f"UPDATE job SET priority={p}, updated_at={p} WHERE id={p}", (value, now, job_id))
            change = f"priority {priority_label(before)} → {priority_label(value)}"
            _event(store, job_id, now, attempts, status, status, change)
            outcomes.append(Outcome(job_id, status, status, change))
    return outcomes
