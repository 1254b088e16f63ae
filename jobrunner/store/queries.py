"""Read models for list, show and stats (and later the TUI): plain dicts in the JSON contract."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobrunner.domain.priority import priority_label
from jobrunner.domain.states import ALL_STATUSES, Status
from jobrunner.errors import NotFoundError, UsageError
from jobrunner.processes import pid_alive
from jobrunner.store import pages, search
from jobrunner.store.db import Store, guarded
from jobrunner.store.migrations import NOT_QUEUED

JOB_COLUMNS = (
    "id", "name", "kind", "task", "command", "callable", "args", "kwargs", "queue", "priority",
    "status", "attempts", "max_retries", "retry_offset", "timeout", "backoff_base",
    "backoff_factor", "backoff_max", "retry_on", "retry_on_exit_codes", "tags", "metadata",
    "cwd", "env", "created_at", "run_at", "started_at", "finished_at", "updated_at",
    "lease_owner", "lease_until", "cancel_requested", "progress", "progress_message",
    "exit_code", "result", "error", "log_path", "unique_key", "memory_limit", "cpu_time_limit",
    "max_log_size",
)  # fmt: skip
_JSON_COLUMNS = frozenset(
    {"command", "args", "kwargs", "retry_on", "retry_on_exit_codes", "tags", "metadata", "env", "result"}
)
# When the last attempt that ran ended. A finish records it in finished_at, but a job that is
# retrying, re-queued or cancelled after a retry kept its last start and has no finish of that
# attempt (or a cancel's time): there it is the last event that left `running`. The CASE keeps
# the look-up off the common rows (a release clears started_at, so that attempt never counts).
_ATTEMPT_ENDED = (
    "CASE WHEN started_at IS NULL OR status IN ('running', 'succeeded', 'dead') THEN finished_at "
    "ELSE (SELECT e.at FROM event e WHERE e.job_id = job.id AND e.from_status = 'running' "
    "AND e.to_status <> 'running' ORDER BY e.id DESC LIMIT 1) END"
)
_SELECT = f"SELECT {', '.join(JOB_COLUMNS)}, {_ATTEMPT_ENDED} FROM job"


#: A stored time no date can show (written before times were checked at submit, or by hand).
OUT_OF_RANGE = "out of range"


def iso(ts: float | None) -> str | None:
    """ISO 8601 in UTC with its offset, as the JSON contract promises; OUT_OF_RANGE for a time
    past the year 9999 (or before year 1), so one bad row cannot break every `list`."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError):
        return OUT_OF_RANGE


def job_to_dict(row: tuple | list) -> dict[str, Any]:
    """A job row as the stable JSON shape documented in README."""
    raw = dict(zip(JOB_COLUMNS, row[: len(JOB_COLUMNS)], strict=True))
    attempt_ended = row[len(JOB_COLUMNS)] if len(row) > len(JOB_COLUMNS) else raw["finished_at"]
    for key in _JSON_COLUMNS:
        if raw[key] is not None:
            raw[key] = json.loads(raw[key])
    started, finished = raw["started_at"], raw["finished_at"]
    # a manual retry starts a fresh budget; an interrupted attempt never counts against one
    tries_used = max(raw["attempts"] - raw["retry_offset"], 0)
    return {
        "id": raw["id"],
        "name": raw["name"],
        "kind": raw["kind"],
        "task": raw["task"],
        "command": raw["command"],
        "callable": raw["callable"],
        "args": raw["args"],
        "kwargs": raw["kwargs"],
        "queue": raw["queue"],
        "priority": raw["priority"],
        "priority_name": priority_label(raw["priority"]),
        "status": raw["status"],
        "attempts": raw["attempts"],
        "max_retries": raw["max_retries"],
        "retries_left": max(raw["max_retries"] - max(raw["attempts"] - raw["retry_offset"] - 1, 0), 0),
        "tries_used": tries_used,
        "tries_allowed": raw["max_retries"] + 1,
        "timeout": raw["timeout"],
        "backoff": {"base": raw["backoff_base"], "factor": raw["backoff_factor"], "max": raw["backoff_max"]},
        "retry_on": raw["retry_on"],
        "retry_on_exit_codes": raw["retry_on_exit_codes"],
        "progress": raw["progress"],
        "progress_message": raw["progress_message"],
        "created_at": iso(raw["created_at"]),
        "scheduled_at": iso(raw["run_at"]),
        "started_at": iso(started),
        "finished_at": iso(finished),
        "updated_at": iso(raw["updated_at"]),
        "duration": _attempt_duration(raw["status"], started, attempt_ended),
        "exit_code": raw["exit_code"],
        "result": raw["result"],
        "error": raw["error"],
        "tags": raw["tags"],
        "metadata": raw["metadata"],
        "cwd": raw["cwd"],
        "env": raw["env"],
        "lease_owner": raw["lease_owner"],
        "lease_until": iso(raw["lease_until"]),
        "cancel_requested": bool(raw["cancel_requested"]),
        "log_path": raw["log_path"],
        "unique_key": raw["unique_key"],
        "memory": raw["memory_limit"],  # bytes, or None: no limit
        "cpu_time": raw["cpu_time_limit"],  # seconds, or None
        "max_log_size": raw["max_log_size"],  # bytes, or None: the daemon's default, if it has one
    }


def _attempt_duration(status: str, started: float | None, ended: float | None) -> float | None:
    """How long the last attempt ran: None while it runs, or when no attempt ever ran."""
    if status == Status.RUNNING.value or started is None or ended is None:
        return None
    return max(ended - started, 0.0)


@dataclass
class JobFilter:
    """What `list` (and the TUI) narrows by; empty means everything."""

    statuses: list[Status] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    search: str | None = None
    since: float | None = None  # bulk actions: finished at or after this (unfinished: submitted)
    before: int | None = None  # a page from a cursor on: ids below it (newest first)
    after: int | None = None  # ... or above it (oldest first)

    def terms(self, param: str) -> list[tuple[str, str, list[Any]]]:
        """Each condition as (kind, SQL, params): kinds status, queue, tag, search, since, bound.
        store/pages.py reads the status and queue ones from indexes instead."""
        terms: list[tuple[str, str, list[Any]]] = []
        if self.statuses:
            # Spelled out, not bound: SQLite picks a partial index only for literal conditions.
            # Queued jobs alone: the claim index; none queued: say so, for the other index.
            values = sorted({s.value for s in self.statuses})
            if len(values) == 1:
                terms.append(("status", f"status = {_quote(values[0])}", []))  # `IN` of one matches no partial index
            else:
                terms.append(("status", f"status IN ({', '.join(_quote(v) for v in values)})", []))
            if Status.QUEUED.value not in values:
                terms.append(("status", NOT_QUEUED, []))
        if self.queues:
            terms.append(("queue", f"queue IN ({', '.join([param] * len(self.queues))})", list(self.queues)))
        for tag in self.tags:
            terms.append(("tag", *search.tag_condition(param, tag)))
        if self.search:
            terms.append(("search", *search.search_condition(param, self.search)))
        if self.since is not None:
            terms.append(("since", f"COALESCE(finished_at, created_at) >= {param}", [self.since]))
        for op, bound in (("<", self.before), (">", self.after)):
            if bound is not None:
                terms.append(("bound", f"id {op} {param}", [bound]))
        return terms

    def where(self, param: str) -> tuple[str, list[Any]]:
        terms = self.terms(param)
        clause = " WHERE " + " AND ".join(sql for _, sql, _ in terms) if terms else ""
        return clause, [value for _, _, values in terms for value in values]


#: Columns a list may be sorted by (never user text in SQL); ties go by id, the same way.
SORTABLE = (
    "id", "name", "queue", "priority", "status", "attempts", "progress",
    "created_at", "run_at", "started_at", "finished_at", "updated_at",
)  # fmt: skip


#: SORTABLE columns that may be NULL (a job not started, or one that never reported progress).
NULLABLE = frozenset({"progress", "started_at", "finished_at"})


def order_clause(order_by: str | None, newest_first: bool = True, spell_nulls: bool = False) -> str:
    """`ORDER BY col DIR, id DIR` for "col" (ascending) or "-col" (descending); None: by id.
    `spell_nulls` (PostgreSQL): NULLs where SQLite puts them, first going up and last going
    down, so "most progress first" starts with the jobs that have some on either backend."""
    if not order_by:
        return f" ORDER BY id {'DESC' if newest_first else 'ASC'}"
    column = order_by.removeprefix("-")
    if column not in SORTABLE:
        raise UsageError(f"cannot sort by {column!r}: choose from {', '.join(SORTABLE)}")
    direction = "DESC" if order_by.startswith("-") else "ASC"
    if column == "id":
        return f" ORDER BY id {direction}"
    nulls = (" NULLS LAST" if direction == "DESC" else " NULLS FIRST") if spell_nulls and column in NULLABLE else ""
    return f" ORDER BY {column} {direction}{nulls}, id {direction}"


def _flipped(order_by: str) -> str:
    return order_by[1:] if order_by.startswith("-") else f"-{order_by}"


def _page(store: Store, where: JobFilter, limit: int, offset: int, newest_first: bool, order_by: str | None,
          from_end: bool) -> tuple[str, list[Any]]:  # fmt: skip
    """A query of one page's ids: from the filter's index ranges (pages.py), else one plain
    query. From the end, it is the first page of the reverse order."""
    sort = order_by.removeprefix("-") if order_by else "id"
    descending = order_by.startswith("-") if order_by else newest_first
    found = pages.page_query(store, where, limit, offset, descending != from_end, sort)
    if found is not None:
        return found
    order = order_clause(_flipped(order_by) if from_end and order_by else order_by, newest_first != from_end,
                         not store.is_sqlite)  # fmt: skip
    clause, params = where.where(store.backend.param)
    return f"SELECT id FROM job{clause}{order} LIMIT {int(limit)} OFFSET {int(offset)}", params


@guarded
def list_jobs(store: Store, where: JobFilter | None = None, limit: int | None = 50, offset: int = 0,
              newest_first: bool = True, order_by: str | None = None,
              from_end: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """One page of jobs, newest first by default; `order_by` sorts by a SORTABLE column
    ("-priority": highest first), ties by id in the same direction. `from_end`: the page
    `offset` rows before the end (the last page at 0), in the same order."""
    where = where or JobFilter()
    order = order_clause(order_by, newest_first, not store.is_sqlite)
    if limit:
        # The page's ids first, from indexes alone (pages.py), then only those rows: skipping
        # `offset` rows costs index steps, not whole rows, and no filter sorts every match.
        page, params = _page(store, where, limit, offset, newest_first, order_by, from_end)
        sql = f"{_SELECT} WHERE id IN (SELECT id FROM ({page}) AS p){order}"
    else:
        clause, params = where.where(store.backend.param)
        sql = f"{_SELECT}{clause}{order}"
    return [job_to_dict(row) for row in store.execute(sql, params).fetchall()]


@guarded
def list_jobs_counted(store: Store, where: JobFilter, limit: int, offset: int = 0,
                      order_by: str | None = None) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """A page and how many jobs match in all (an exact count: the TUI counts up to a cap instead)."""
    return list_jobs(store, where, limit, offset, order_by=order_by), count_jobs(store, where)


@guarded
def count_jobs(store: Store, where: JobFilter | None = None, up_to: int | None = None) -> int:
    """How many jobs match; with `up_to`, counting stops past it (a count reads an index entry
    per job: 17 ms at a million, where `list`'s footer only needs to know it is a lot)."""
    where = where or JobFilter()
    clause, params = where.where(store.backend.param)
    if clause:
        ranged = pages.count(store, where, up_to)  # from the filter's index ranges, where it has some
        if ranged is not None:
            return ranged if up_to is None else min(ranged, up_to + 1)
        parts = [f"FROM job{clause}"]
    else:  # every job: counted from the two partial indexes, not by reading every row
        parts = [f"FROM job{store.indexed_by('job_claim_queued')} WHERE status='queued'", f"FROM job WHERE {NOT_QUEUED}"]
    if up_to is None:
        counts = [f"(SELECT COUNT(*) {part})" for part in parts]
    else:
        counts = [f"(SELECT COUNT(*) FROM (SELECT 1 {part} LIMIT {int(up_to) + 1}) AS m)" for part in parts]
    total = int(store.execute("SELECT " + " + ".join(counts), params).fetchone()[0])
    return total if up_to is None else min(total, up_to + 1)


@guarded
def get_job(store: Store, job_id: int) -> dict[str, Any]:
    """One job, or NotFoundError."""
    row = store.execute(f"{_SELECT} WHERE id = {store.backend.param}", (job_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no job with id {job_id}; `jobrunner list` shows the ids")
    return job_to_dict(row)


@guarded
def job_events(store: Store, job_id: int) -> list[dict[str, Any]]:
    """The job's history, oldest first."""
    sql = (
        "SELECT at, attempt, from_status, to_status, message, details FROM event "
        f"WHERE job_id = {store.backend.param} ORDER BY id"
    )
    return [
        {
            "at": iso(at),
            "attempt": attempt,
            "from": old,
            "to": new,
            "message": message,
            "details": json.loads(details) if details else None,
        }
        for at, attempt, old, new, message, details in store.execute(sql, (job_id,)).fetchall()
    ]


@guarded
def dependency_links(store: Store, job_id: int) -> dict[str, list[dict[str, Any]]]:
    """What a job waits for (`after`) and what waits for it (`dependents`), each with its name and
    status (None for one purged since), for `show` and the TUI's detail view."""
    p = store.backend.param
    found: dict[str, list[dict[str, Any]]] = {}
    for key, mine, theirs in (("after", "job_id", "depends_on"), ("dependents", "depends_on", "job_id")):
        rows = store.execute(
            f"SELECT d.{theirs}, j.name, j.status FROM job_dependency d LEFT JOIN job j ON j.id = d.{theirs} "
            f"WHERE d.{mine} = {p} ORDER BY d.{theirs}",
            (job_id,),
        ).fetchall()
        found[key] = [{"id": other, "name": name, "status": status} for other, name, status in rows]
    return found


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


#: Up to this many queues `stats` counts queued jobs per queue in one read of the claim index;
#: past it (each adds a comparison per queued job) a GROUP BY's sort costs less.
FILTERED_QUEUES = 8


@guarded
def stats(store: Store) -> dict[str, Any]:
    """Counts per status, overall and per queue; every status appears, zero or not."""
    # Each from an index alone: queued jobs grouped in the claim index; on SQLite every other
    # (status, queue) found by skipping through its index, then counted as a range (half the
    # time a GROUP BY takes over the whole index: 45 against 100 ms at a million jobs), while
    # PostgreSQL's GROUP BY reads the index with parallel workers (its ranges, one by one, not).
    queued = (f"SELECT queue, 'queued', COUNT(*) FROM job{store.indexed_by('job_claim_queued')} "
              "WHERE status='queued' GROUP BY queue")  # fmt: skip
    if not store.is_sqlite:
        counts = store.execute(
            f"{queued} UNION ALL SELECT queue, status, COUNT(*) FROM job WHERE {NOT_QUEUED} GROUP BY status, queue"
        ).fetchall()
        return _stats_of(store, counts)
    known = pages.queue_statuses(store, queued=False)
    p = store.backend.param
    counts: list[Any] | None = None
    if 0 < len(known) <= FILTERED_QUEUES:
        # queued jobs of the queues other statuses name, each counted as the claim index is read
        # once, with no sort to group them (14 against 30 ms for 4 queues of 120,000 queued jobs);
        # grouped as above if any queued job is in another queue
        names = sorted(known)
        *per_queue, total = store.execute(
            "SELECT " + ", ".join([f"COUNT(*) FILTER (WHERE queue = {p})"] * len(names)) + ", COUNT(*) "
            f"FROM job{store.indexed_by('job_claim_queued')} WHERE status='queued'",
            names,
        ).fetchone()
        if sum(per_queue) == total:
            counts = [(queue, "queued", n) for queue, n in zip(names, per_queue, strict=True) if n]
    if counts is None:
        counts = store.execute(queued).fetchall()
    pairs = [(status, queue) for queue, found in known.items() for status in found]
    for start in range(0, len(pairs), 200):
        chunk = pairs[start : start + 200]
        ranges = [f"(SELECT COUNT(*) FROM job WHERE status = {_quote(status)} AND {NOT_QUEUED} AND queue = {p})"
                  for status, _ in chunk]  # fmt: skip
        row = store.execute("SELECT " + ", ".join(ranges), [queue for _, queue in chunk]).fetchone()
        counts += [(queue, status, n) for (status, queue), n in zip(chunk, row, strict=True)]
    return _stats_of(store, counts)


def _stats_of(store: Store, counts: list[tuple[str, str, int]]) -> dict[str, Any]:
    by_status = {s.value: 0 for s in ALL_STATUSES}
    by_queue: dict[str, dict[str, int]] = {}
    for queue, status, count in counts:
        by_status[status] = by_status.get(status, 0) + count
        by_queue.setdefault(queue, {s.value: 0 for s in ALL_STATUSES})[status] = count
    paused = {name for (name,) in store.execute("SELECT name FROM queue_state WHERE paused").fetchall()}
    queues = {
        name: {"total": sum(counts.values()), "paused": name in paused, "by_status": counts}
        for name, counts in sorted(by_queue.items())
    }
    return {"total": sum(by_status.values()), "by_status": by_status, "queues": queues}


@guarded
def finished_since(store: Store, since: float) -> int:
    """How many jobs reached a final status at or after `since` (the header's rate)."""
    hint = store.indexed_by("job_finished_at")  # not every finished job of a status
    sql = (
        f"SELECT COUNT(*) FROM job{hint} WHERE status IN ('succeeded', 'dead', 'cancelled') "
        f"AND finished_at >= {store.backend.param}"
    )
    return int(store.execute(sql, (since,)).fetchone()[0])


#: The heartbeat interval of a daemon whose row does not say (one older than schema v12).
DEFAULT_HEARTBEAT_S = 5.0
#: A daemon not heard from for this many of its heartbeat intervals is taken for dead (15 s at
#: the default); after SILENT_BEATS it is taken to be cut off from the database, or stalled: a
#: daemon that cannot reach the database keeps trying, and its row cannot say so.
DEAD_BEATS, SILENT_BEATS = 3.0, 1.5


@guarded
def daemons(store: Store, now: float) -> list[dict[str, Any]]:
    """Known daemons, newest heartbeat first, with `alive` and `silent` judged from the
    heartbeat's age against the daemon's own interval."""
    sql = (
        "SELECT id, host, pid, version, started_at, heartbeat_at, workers, busy, queues, state, heartbeat_every "
        "FROM daemon ORDER BY heartbeat_at DESC"
    )
    import socket  # here: `list` and `stats` need none of it

    result = []
    here = socket.gethostname()
    for row in store.execute(sql).fetchall():
        ident, host, pid, version, started, beat, workers, busy, queues, daemon_state, every = row
        age, every = now - beat, every or DEFAULT_HEARTBEAT_S
        alive = daemon_state != "stopped" and age < DEAD_BEATS * every
        if alive and host == here:  # on this host a dead daemon is known at once: its pid is gone
            alive = pid_alive(pid)
        result.append(
            {
                "id": ident, "host": host, "pid": pid, "version": version,
                "started_at": iso(started), "heartbeat_at": iso(beat),
                "heartbeat_age": round(age, 3), "heartbeat_every": every,
                "alive": alive, "silent": alive and age >= SILENT_BEATS * every,
                "workers": workers, "busy": busy, "queues": json.loads(queues), "state": daemon_state,
            }
        )  # fmt: skip
    return result


@guarded
def paused_queues(store: Store) -> list[str]:
    return sorted(name for (name,) in store.execute("SELECT name FROM queue_state WHERE paused").fetchall())
