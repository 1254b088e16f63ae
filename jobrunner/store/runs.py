"""The daemon's writes: claim, finish, renew leases, recover, promote due jobs, progress.

Every finish is guarded by (id, lease_owner, attempts): a stale worker whose lease was
taken over changes nothing, because attempt numbers are never reused.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from jobrunner.domain.failures import Failure, FailureKind, RetryPolicy, after_failure
from jobrunner.domain.retry import Backoff
from jobrunner.domain.states import Status
from jobrunner.progress import check_fraction, clean_message
from jobrunner.store import dependencies
from jobrunner.store.backends import EVENT_INSERT_COLUMNS
from jobrunner.store.db import Store, guarded
from jobrunner.store.migrations import NOT_QUEUED  # with status='running': lets SQLite use its index

CLAIM_COLUMNS = (
    "id", "attempts", "priority", "name", "kind", "command", "callable", "args", "kwargs",
    "cwd", "env", "timeout", "queue", "log_path", "memory_limit", "cpu_time_limit", "max_log_size",
)  # fmt: skip


class Attempt(NamedTuple):
    """One attempt of a job, as release() needs it."""

    id: int
    attempt: int


@dataclass
class Claim:
    """A job this daemon now holds: what to run and the attempt it is."""

    id: int
    attempt: int
    priority: int
    name: str
    kind: str
    command: list[str] | None
    callable: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    cwd: str | None
    env: dict[str, str]
    timeout: float | None
    queue: str
    log_path: str
    fence: float = 0.0  # the daemon's: time.monotonic() past which the worker must not run it
    memory_limit: int | None = None  # bytes; the worker applies the limits (daemon/limits.py)
    cpu_time_limit: float | None = None  # seconds
    max_log_size: int | None = None  # bytes; None: the daemon's [daemon] max_log_size, if any


@dataclass
class Outcome:
    """How an attempt ended, reported by a worker or decided by the supervisor."""

    job_id: int
    attempt: int
    failure: Failure | None = None  # None: it succeeded
    result: Any = None
    exit_code: int | None = None


@dataclass(frozen=True)
class Recorded:
    """What a finish did, for the daemon's log line (None status: the attempt was stale)."""

    job_id: int
    attempt: int
    status: Status | None
    message: str


_claim_sql: dict[tuple[str, int, int], str] = {}


def _claim_statement(store: Store, only: int, exclude: int) -> str:
    """Built once per shape: the query builder costs more than the claim itself."""
    key = (store.backend.name, only, exclude)
    if key not in _claim_sql:
        p = store.backend.param
        filters = ""
        if only:
            filters += f" AND queue IN ({', '.join([p] * only)})"
        if exclude:
            filters += f" AND queue NOT IN ({', '.join([p] * exclude)})"
        postgres = store.backend.name == "postgresql"
        lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
        hint = store.indexed_by("job_claim_queued")  # not every queued row, sorted
        columns = ", ".join(CLAIM_COLUMNS)
        statement = (
            f"UPDATE job SET status='running', attempts=attempts+1, lease_owner={p}, "
            f"lease_until={p}, started_at={p}, updated_at={p}, finished_at=NULL, progress=NULL, "
            "progress_message=NULL, exit_code=NULL, result=NULL, error=NULL, "
            f"log_path=COALESCE(log_path, {p} || id || '.log') "
            # queued means due (scheduled/retrying jobs are promoted when due), so no run_at
            # test here: that keeps the planner on job_claim (status, priority DESC, id), no sort
            f"WHERE id IN (SELECT id FROM job{hint} WHERE status='queued' "
            "AND queue NOT IN (SELECT name FROM queue_state WHERE paused)"
            f"{filters} ORDER BY priority DESC, id LIMIT {p}{lock}) "
            f"RETURNING {columns}"
        )
        if postgres:  # the claims' events in the same statement: one round trip, not one per job
            events = ", ".join(EVENT_INSERT_COLUMNS)
            statement = (
                f"WITH c AS ({statement}), e AS (INSERT INTO event ({events}) SELECT id, {p}, attempts, "
                f"'queued', 'running', 'attempt ' || attempts || ' started by ' || {p}, NULL FROM c) "
                f"SELECT {columns} FROM c"
            )
        _claim_sql[key] = statement
    return _claim_sql[key]


@guarded
def claim(store: Store, owner: str, now: float, limit: int, lease_s: float, log_dir: str,
          only_queues: Sequence[str] = (), exclude_queues: Sequence[str] = (),
          on_claimed: Callable[[list[Claim]], None] | None = None) -> list[Claim]:  # fmt: skip
    """Claim up to `limit` due jobs, highest priority first, FIFO within a priority: one transaction.

    `on_claimed` gets the claims as soon as their rows are updated, inside the transaction, to
    fill in what the daemon adds to them; nothing of them may start before the commit (a claim
    rolled back would have started an attempt the database never counted).
    """
    if limit <= 0:
        return []
    sql = _claim_statement(store, len(only_queues), len(exclude_queues))
    params = [owner, now + lease_s, now, now, log_dir.rstrip("/") + "/",
              *only_queues, *exclude_queues, limit]  # fmt: skip
    events_written = not store.is_sqlite  # by the statement itself (_claim_statement)
    if events_written:
        params += [now, owner]
    with store.joined():
        rows = store.execute_hot(f"jobrunner_claim_{len(only_queues)}_{len(exclude_queues)}", sql, params).fetchall()
        claims = [_claim_from_row(row) for row in rows]
        claims.sort(key=lambda c: (-c.priority, c.id))
        if claims and on_claimed is not None:
            on_claimed(claims)
        if claims and not events_written:
            store.cursor().executemany(
                store.backend.insert_event,
                [(c.id, now, c.attempt, "queued", "running", f"attempt {c.attempt} started by {owner}", None)
                 for c in claims],
            )  # fmt: skip
    return claims


def _json(text: str | None, empty: Any) -> Any:
    """json.loads, skipping the parser for the empty list or object most jobs carry."""
    if text is None:
        return None
    if text == "[]" or text == "{}":
        return type(empty)()
    return json.loads(text)


def _claim_from_row(row: Sequence[Any]) -> Claim:
    (job_id, attempts, priority, name, kind, command, callable_, args, kwargs, cwd, env, timeout, queue,
     log_path, memory_limit, cpu_time_limit, max_log_size) = row  # the order of CLAIM_COLUMNS  # fmt: skip
    return Claim(
        id=job_id, attempt=attempts, priority=priority, name=name, kind=kind,
        command=json.loads(command) if command else None, callable=callable_, args=_json(args, []),
        kwargs=_json(kwargs, {}), cwd=cwd, env=_json(env, {}), timeout=timeout, queue=queue,
        log_path=log_path, memory_limit=memory_limit, cpu_time_limit=cpu_time_limit, max_log_size=max_log_size,
    )  # fmt: skip


@guarded
def finish(store: Store, owner: str | None, outcomes: Sequence[Outcome], now: float,
           rng: random.Random | None = None, *, expired: bool = False) -> list[Recorded]:  # fmt: skip
    """Record how attempts ended, all in one transaction. `owner` None: whoever holds the lease.
    `expired`: only attempts whose lease has run out by `now` (checked again under the row lock).

    Dependents cancelled because a job failed are recorded too (status cancelled), after it.
    """
    if not outcomes:
        return []
    recorded: list[Recorded] = []
    with store.joined():
        succeeded = [outcome for outcome in outcomes if outcome.failure is None]
        if succeeded:
            recorded += _succeed(store, owner, succeeded, now, rng)
        failed = [outcome for outcome in outcomes if outcome.failure is not None]
        if failed:
            recorded += _fail(store, owner, failed, now, rng, expired)
    return recorded


def _succeed(store: Store, owner: str | None, outcomes: list[Outcome], now: float,
             rng: random.Random | None) -> list[Recorded]:  # fmt: skip
    """Successes in three statements however many there are (PostgreSQL: one): the daemon's hot path."""
    rows, refused = [], []
    for outcome in outcomes:
        try:
            result = None if outcome.result is None else json.dumps(outcome.result, separators=(",", ":"))
        except (TypeError, ValueError) as exc:  # the worker checks; this is the last line of defence
            failure = Failure(FailureKind.PERMANENT, f"result is not JSON-serialisable: {exc}")
            refused.append(Outcome(outcome.job_id, outcome.attempt, failure))
            continue
        rows.append((now, now, outcome.exit_code, result, outcome.job_id, outcome.attempt))
    if not store.is_sqlite:
        done, waited_on = _succeed_postgresql(store, owner, rows, now) if rows else ([], set())
        unclaimed, stale = set(done), []
        for pair in ((row[4], row[5]) for row in rows):  # the same attempt twice: the second is stale
            if pair in unclaimed:
                unclaimed.discard(pair)
            else:
                stale.append(pair)
        return _succeeded(store, done, stale, refused, owner, now, rng, waited_on)
    clause, extra = _owner_clause(store, owner)
    p = store.backend.param
    cursor = store.cursor()
    cursor.executemany(
        f"UPDATE job SET status='succeeded', finished_at={p}, updated_at={p}, exit_code={p}, "
        f"result={p}, error=NULL, lease_owner=NULL, lease_until=NULL, cancel_requested=FALSE, "
        "progress=CASE WHEN progress IS NULL THEN NULL ELSE 1.0 END "
        f"WHERE id={p} AND attempts={p} AND status='running'{clause}",
        [(*row, *extra) for row in rows],
    )
    done = [(row[4], row[5]) for row in rows]
    if done and cursor.rowcount != len(rows):  # some were stale: keep those this update changed
        marks = ", ".join([p] * len(done))
        changed = set(store.execute(
            f"SELECT id, attempts FROM job WHERE id IN ({marks}) AND status='succeeded' AND finished_at={p}",
            [job_id for job_id, _ in done] + [now],
        ).fetchall())  # fmt: skip
        stale = [pair for pair in done if pair not in changed]
        done = [pair for pair in done if pair in changed]
    else:
        stale = []
    cursor.executemany(
        store.backend.insert_event,
        [(job_id, now, attempt, "running", "succeeded", "succeeded", None) for job_id, attempt in done],
    )
    waited_on = None
    if done and dependencies.any_waiting_on(store, [job_id for job_id, _ in done]):
        waited_on = {job_id for job_id, _ in done}
    return _succeeded(store, done, stale, refused, owner, now, rng, waited_on)


HOT_SUCCEED_ROWS = 8  # PostgreSQL: successes recorded a few at a time run a prepared statement


def _succeed_postgresql(store: Store, owner: str | None, rows: list[tuple], now: float,
                        ) -> tuple[list[tuple[int, int]], set[int]]:  # fmt: skip
    """PostgreSQL: the successes, their events and whether any job waits on them, in one
    statement however many there are (a statement a job and an event made a turn of one job
    four round trips). Returns the attempts it recorded, in the order given (each once), and
    the ids among them that other jobs wait on."""
    owner_test = " AND job.lease_owner = %s" if owner is not None else ""
    values = ", ".join(["(%s::bigint, %s::integer, %s::integer, %s::text)"] * len(rows))
    events = ", ".join(EVENT_INSERT_COLUMNS)
    sql = (
        f"WITH v (id, attempt, exit_code, result) AS (VALUES {values}), "
        "done AS (UPDATE job SET status='succeeded', finished_at=%s, updated_at=%s, exit_code=v.exit_code, "
        "result=v.result, error=NULL, lease_owner=NULL, lease_until=NULL, cancel_requested=FALSE, "
        "progress=CASE WHEN job.progress IS NULL THEN NULL ELSE 1.0 END FROM v "
        f"WHERE job.id = v.id AND job.attempts = v.attempt AND job.status = 'running'{owner_test} "
        "RETURNING job.id, job.attempts), "
        f"e AS (INSERT INTO event ({events}) SELECT id, %s, attempts, 'running', 'succeeded', 'succeeded', NULL "
        "FROM done ORDER BY id) "
        "SELECT id, attempts, EXISTS (SELECT 1 FROM job_dependency WHERE depends_on = done.id) FROM done"
    )
    params: list[Any] = [v for (_, _, exit_code, result, job_id, attempt) in rows
                         for v in (job_id, attempt, exit_code, result)]  # fmt: skip
    params += [now, now, *([owner] if owner is not None else []), now]
    if len(rows) <= HOT_SUCCEED_ROWS:  # the daemon's usual turn: prepared, planned once per size
        cursor = store.execute_hot(f"jobrunner_succeed_{len(rows)}_{owner is not None}", sql, params)
    else:
        cursor = store.execute(sql, params)
    changed = {(job_id, attempt): waited for job_id, attempt, waited in cursor.fetchall()}
    done = list(dict.fromkeys(pair for pair in ((row[4], row[5]) for row in rows) if pair in changed))
    return done, {job_id for (job_id, _), waited in changed.items() if waited}


def _succeeded(store: Store, done: list[tuple[int, int]], stale: list[tuple[int, int]], refused: list[Outcome],
               owner: str | None, now: float, rng: random.Random | None, waited_on: set[int] | None,
               ) -> list[Recorded]:  # fmt: skip
    """The records of recorded successes (releasing the jobs that waited on them), stale
    attempts and results refused."""
    recorded = [Recorded(job_id, attempt, Status.SUCCEEDED, "succeeded") for job_id, attempt in done]
    if waited_on:
        for index, record in enumerate(recorded):
            if record.job_id not in waited_on:
                continue
            released = dependencies.on_succeeded(store, record.job_id, now)
            if released:
                recorded[index] = Recorded(record.job_id, record.attempt, Status.SUCCEEDED,
                                           "succeeded; released " + ", ".join(map(str, released)))  # fmt: skip
    recorded += [Recorded(job_id, attempt, None, "stale attempt: not recorded") for job_id, attempt in stale]
    if refused:
        recorded += _fail(store, owner, refused, now, rng)
    return recorded


def _owner_clause(store: Store, owner: str | None) -> tuple[str, list[Any]]:
    p = store.backend.param
    return (f" AND lease_owner={p}", [owner]) if owner is not None else ("", [])


FAIL_READ_PAGE = 500  # failed attempts read a page of ids at a time (SQLite's variable limit)


def _fail(store: Store, owner: str | None, outcomes: Sequence[Outcome], now: float,
          rng: random.Random | None, expired: bool = False) -> list[Recorded]:  # fmt: skip
    """Failed attempts through the retry policy; a cancel requested meanwhile wins.

    Their rows (and whether any job waits on each) read under lock in one statement, their
    updates and events in one more (SQLite: two): on PostgreSQL two round trips however many
    there are, where each attempt took three and a look-up for dependents. Returns, for each
    attempt in order, its record, then one per dependent cancelled because it ended dead or
    cancelled; an attempt no longer running as that attempt (or given twice) is stale.
    """
    p = store.backend.param
    clause, extra = _owner_clause(store, owner)
    if expired:  # a recovery: its owner may have renewed the lease since it was found expired
        clause, extra = f"{clause} AND lease_until < {p}", [*extra, now]
    # FOR UPDATE on PostgreSQL: a cancel requested between this read and the write below waits;
    # in id order, so two transactions locking the same jobs never wait on each other in a ring
    lock = " ORDER BY id FOR UPDATE" if store.backend.name == "postgresql" else ""
    ids = list(dict.fromkeys(outcome.job_id for outcome in outcomes))
    found: dict[int, tuple] = {}
    for page in range(0, len(ids), FAIL_READ_PAGE):
        chunk = ids[page : page + FAIL_READ_PAGE]
        rows = store.execute(
            "SELECT id, attempts, max_retries, retry_offset, backoff_base, backoff_factor, backoff_max, "
            "retry_on, retry_on_exit_codes, cancel_requested, "
            "EXISTS (SELECT 1 FROM job_dependency WHERE depends_on = job.id) "
            f"FROM job WHERE id IN ({', '.join([p] * len(chunk))}) AND status='running'{clause}{lock}",
            [*chunk, *extra],
        ).fetchall()  # fmt: skip
        found.update((row[0], row) for row in rows)
    decided: list[tuple[Outcome, Any, bool]] = []  # (outcome, its decision or None: stale, cancels dependents)
    updates, events = [], []
    for outcome in outcomes:
        row = found.pop(outcome.job_id, None)  # popped: the same attempt twice is stale the second time
        if row is None or row[1] != outcome.attempt:
            decided.append((outcome, None, False))
            continue
        max_retries, offset, base, factor, cap, retry_on, retry_codes, cancel_requested, waited_on = row[2:]
        policy = RetryPolicy(
            max_retries=max_retries,
            backoff=Backoff(base=base, factor=factor, max=cap),
            retry_on=tuple(json.loads(retry_on)),
            retry_on_exit_codes=tuple(json.loads(retry_codes)),
        )
        failure = outcome.failure
        assert failure is not None
        decision = after_failure(policy, outcome.attempt, offset, failure, now, rng,
                                 cancel_requested=bool(cancel_requested))  # fmt: skip
        ended = decision.status in (Status.DEAD, Status.CANCELLED)
        # a cancelled job's error says it was cancelled (and how the attempt ended)
        error = decision.message if decision.status is Status.CANCELLED else failure.message
        updates.append((decision.status.value, decision.run_at, now if ended else None, now, error,
                        failure.exit_code, 0 if decision.consumes_retry else 1, False, outcome.job_id,
                        outcome.attempt))  # fmt: skip
        events.append((outcome.job_id, now, outcome.attempt, "running", decision.status.value, decision.message,
                       json.dumps(failure.details())))  # fmt: skip
        decided.append((outcome, decision, ended and bool(waited_on)))
    update = (
        f"UPDATE job SET status={p}, run_at=COALESCE({p}, run_at), finished_at={p}, updated_at={p}, "
        f"error={p}, exit_code={p}, retry_offset=retry_offset+{p}, lease_owner=NULL, "
        # progress belonged to the attempt that just failed: no stale bar on a re-queued job
        f"lease_until=NULL, cancel_requested={p}, progress=NULL, progress_message=NULL "
        f"WHERE id={p} AND attempts={p}"
    )
    if updates and store.is_sqlite:
        store.execute_many(update, updates)
        store.execute_many(store.backend.insert_event, events)
    elif updates:  # each job's update and its event, a hundred jobs a message
        store.execute_many(f"{update}; {store.backend.insert_event}", [u + e for u, e in zip(updates, events, strict=True)])
    recorded: list[Recorded] = []
    for outcome, decision, cancels in decided:
        if decision is None:
            recorded.append(Recorded(outcome.job_id, outcome.attempt, None, "stale attempt: not recorded"))
            continue
        message = decision.message
        cancelled = dependencies.on_failed(store, outcome.job_id, now) if cancels else []
        if cancelled:
            message += f"; cancelled dependents {', '.join(str(d.job_id) for d in cancelled)}"
        recorded.append(Recorded(outcome.job_id, outcome.attempt, decision.status, message))
        recorded += [Recorded(d.job_id, d.attempts, Status.CANCELLED, d.reason) for d in cancelled]
    return recorded


@guarded
def recover_expired(store: Store, now: float, rng: random.Random | None = None) -> list[Recorded]:
    """Jobs whose lease ran out (their daemon died) fail this attempt as 'lost' and go on."""
    outcomes = [
        Outcome(job_id, attempt, Failure(FailureKind.LOST, f"lost: daemon {owner} died (lease expired)"))
        for (job_id, attempt), owner in expired_leases(store, now).items()
    ]
    return finish(store, None, outcomes, now, rng, expired=True)


@guarded
def running_in_queue(store: Store, queue: str) -> int:
    """Jobs of `queue` running now on any daemon, for a global concurrency limit. Called inside
    the claim's transaction: on SQLite that holds the write lock already; on PostgreSQL an
    advisory lock per queue makes daemons claiming from it take turns, so two never both see
    room for the last slot."""
    p = store.backend.param
    if not store.is_sqlite:
        store.execute(f"SELECT pg_advisory_xact_lock(hashtext({p}))", ("jobrunner.queue." + queue,))
    return store.execute(
        f"SELECT COUNT(*) FROM job WHERE status='running' AND {NOT_QUEUED} AND queue={p}", (queue,)
    ).fetchone()[0]


@guarded
def held_by(store: Store, owner: str) -> set[tuple[int, int]]:
    """(id, attempt) of the running jobs a daemon holds."""
    p = store.backend.param
    rows = store.execute(
        f"SELECT id, attempts FROM job WHERE status='running' AND {NOT_QUEUED} AND lease_owner={p}", (owner,)
    ).fetchall()
    return {(job_id, attempt) for job_id, attempt in rows}


@guarded
def expired_leases(store: Store, now: float) -> dict[tuple[int, int], str]:
    """(id, attempt) -> lease owner of running jobs whose lease ran out (recover_expired's)."""
    p = store.backend.param
    rows = store.execute(
        f"SELECT id, attempts, lease_owner FROM job WHERE status='running' AND {NOT_QUEUED} AND lease_until < {p}",
        (now,),
    ).fetchall()
    return {(job_id, attempt): owner for job_id, attempt, owner in rows}


@guarded
def recover_owner(store: Store, owner: str, reason: str, now: float,
                  rng: random.Random | None = None) -> list[Recorded]:  # fmt: skip
    """All jobs a known-dead daemon held fail this attempt as 'lost', without waiting for leases."""
    p = store.backend.param
    outcomes = [Outcome(job_id, attempt, Failure(FailureKind.LOST, reason)) for job_id, attempt in held_by(store, owner)]
    recorded = finish(store, owner, outcomes, now, rng)
    store.execute(f"UPDATE daemon SET state='stopped' WHERE id={p}", (owner,))
    return recorded


@guarded
def promote_due(store: Store, now: float, limit: int = 1000) -> int:
    """Scheduled and retrying jobs whose time has come become queued."""
    p = store.backend.param
    with store.write():
        rows = store.execute(
            f"SELECT id, status, attempts FROM job{store.indexed_by('job_due_waiting')} WHERE status IN ('scheduled', 'retrying') "
            f"AND run_at <= {p} ORDER BY run_at LIMIT {int(limit)}",
            (now,),
        ).fetchall()
        if not rows:
            return 0
        ids = [row[0] for row in rows]
        store.execute(
            f"UPDATE job SET status='queued', updated_at={p} WHERE id IN ({', '.join([p] * len(ids))})",
            [now, *ids],
        )
        store.execute_many(
            store.backend.insert_event,
            [(job_id, now, attempts, status, "queued", "due", None) for job_id, status, attempts in rows],
        )
    return len(rows)


@guarded
def next_due(store: Store) -> float | None:
    """When the earliest scheduled or retrying job becomes due, so the daemon can sleep until then."""
    row = store.execute(
        f"SELECT MIN(run_at) FROM job{store.indexed_by('job_due_waiting')} WHERE status IN ('scheduled', 'retrying')"
    ).fetchone()
    return row[0] if row else None


@guarded
def register_daemon(store: Store, owner: str, host: str, pid: int, version: str, workers: int,
                    queues: Sequence[str], now: float, heartbeat_every: float | None = None) -> None:  # fmt: skip
    p = store.backend.param
    with store.write():
        store.execute(f"DELETE FROM daemon WHERE id={p}", (owner,))
        store.execute(
            "INSERT INTO daemon (id, host, pid, version, started_at, heartbeat_at, workers, busy, "
            f"queues, state, heartbeat_every) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, 0, {p}, 'running', {p})",
            (owner, host, pid, version, now, now, workers, json.dumps(list(queues)), heartbeat_every),
        )


@guarded
def heartbeat(store: Store, owner: str, now: float, lease_s: float, busy: int,
              state: str = "running") -> set[tuple[int, int]]:  # fmt: skip
    """Renew this daemon's leases and its heartbeat row; returns the (id, attempt) renewed.

    A job the daemon holds that is not among them was taken over by another daemon while this
    one was stalled past the lease: the caller stops it at once.
    """
    p = store.backend.param
    with store.write():
        store.execute(
            f"UPDATE daemon SET heartbeat_at={p}, busy={p}, state={p} WHERE id={p}", (now, busy, state, owner)
        )
        rows = store.execute(
            f"UPDATE job SET lease_until={p} WHERE lease_owner={p} AND status='running' AND {NOT_QUEUED} "
            "RETURNING id, attempts",
            (now + lease_s, owner),
        ).fetchall()
    return {(job_id, attempt) for job_id, attempt in rows}


@guarded
def stale_daemons(store: Store, host: str, exclude: str) -> list[tuple[str, int]]:
    """Daemons recorded as alive on this host (other than us): (owner, pid) for the caller to check."""
    p = store.backend.param
    return [
        (owner, pid)
        for owner, pid in store.execute(
            f"SELECT id, pid FROM daemon WHERE host={p} AND state != 'stopped' AND id != {p}", (host, exclude)
        ).fetchall()
    ]


@guarded
def daemon_workers(store: Store, owner: str) -> int:
    """How many workers a daemon said it runs (0 for an unknown one)."""
    row = store.execute(f"SELECT workers FROM daemon WHERE id={store.backend.param}", (owner,)).fetchone()
    return int(row[0]) if row else 0


@guarded
def cancel_requests(store: Store, owner: str) -> list[tuple[int, int]]:
    """(id, attempt) of running jobs this daemon holds that a user asked to cancel."""
    p = store.backend.param
    return [
        (job_id, attempt)
        for job_id, attempt in store.execute(
            f"SELECT id, attempts FROM job WHERE status='running' AND {NOT_QUEUED} AND lease_owner={p} "
            "AND cancel_requested",
            (owner,),
        ).fetchall()
    ]


@guarded
def save_progress(store: Store, updates: Sequence[tuple[int, int, float, str | None]], now: float) -> None:
    """Latest progress per running attempt, in one transaction: (id, attempt, fraction, message).
    Checked once more here, the one way in: a bad value from anywhere is dropped, a message cut."""
    rows = [
        (fraction, clean_message(message), now, job_id, attempt)
        for job_id, attempt, fraction, message in updates
        if isinstance(fraction, int | float) and 0.0 <= fraction <= 1.0  # NaN fails both comparisons
    ]
    if not rows:
        return
    p = store.backend.param
    with store.joined():
        store.execute_many(
            f"UPDATE job SET progress={p}, progress_message={p}, updated_at={p} "
            f"WHERE id={p} AND attempts={p} AND status='running'",
            rows,
        )


@guarded
def report_progress(store: Store, job_id: int, attempt: int, fraction: float, message: str | None,
                    now: float) -> bool:  # fmt: skip
    """`jobrunner progress` without a worker to pass it on: False if that attempt is not running."""
    p = store.backend.param
    with store.write():
        cursor = store.execute(
            f"UPDATE job SET progress={p}, progress_message={p}, updated_at={p} "
            f"WHERE id={p} AND attempts={p} AND status='running'",
            (check_fraction(fraction), clean_message(message), now, job_id, attempt),
        )
        return cursor.rowcount == 1


@guarded
def mark_stopped(store: Store, owner: str, now: float) -> None:
    p = store.backend.param
    with store.write():
        store.execute(
            f"UPDATE daemon SET state='stopped', busy=0, heartbeat_at={p} WHERE id={p}", (now, owner)
        )


@guarded
def release(store: Store, owner: str, claims: Sequence[Claim | Attempt], now: float,
            message: str = "given back: not started") -> int:  # fmt: skip
    """Give back claimed jobs that never started (held, confirmed not started by their worker,
    or absent from a dead daemon's start logs): queued again, the attempt not counted; one
    whose cancel was asked meanwhile ends cancelled instead (a cancel is durable).

    Reusing the attempt number is safe here: no process ever ran it.
    """
    p = store.backend.param
    released = 0
    with store.write():
        for claim in claims:
            row = store.execute(
                "UPDATE job SET status=CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, "
                f"finished_at=CASE WHEN cancel_requested THEN {p} ELSE finished_at END, "
                "error=CASE WHEN cancel_requested THEN 'cancelled by user' ELSE error END, "
                "attempts=attempts-1, lease_owner=NULL, lease_until=NULL, cancel_requested=FALSE, "
                f"started_at=NULL, updated_at={p} WHERE id={p} AND lease_owner={p} AND attempts={p} "
                "AND status='running' RETURNING status",
                (now, now, claim.id, owner, claim.attempt),
            ).fetchone()
            if row is None:
                continue
            said = "cancelled by user (never started)" if row[0] == "cancelled" else message
            store.execute(
                store.backend.insert_event,
                (claim.id, now, claim.attempt - 1, "running", row[0], said, None),
            )
            if row[0] == "cancelled":
                dependencies.on_failed(store, claim.id, now)
            released += 1
        if released:
            from jobrunner.store.pgwake import notify

            notify(store, owner)  # on PostgreSQL: daemons on other hosts may take them
    return released
