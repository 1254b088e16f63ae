"""Pages and counts of jobs read from indexes, never from every row: the TUI, `list` and the
API at a million jobs.

A filter by status or queue is a set of index ranges ("arms"), each holding its jobs in id
order: every status but queued sits in job_status_not_queued by (status, queue, id), queued
jobs in the claim index by (priority, id). The newest-first page of a filter is a merge of its
arms (UNION ALL ... ORDER BY id: SQLite merges them, PostgreSQL a Merge Append), so reading
it, even `offset` rows deep, costs index steps, not a sort of every match. An arm whose status,
queue or priority is one value is in (that column, id) order too, so a page sorted by status,
queue or priority merges the same way (jobs that left the queue by job_priority_done). On
SQLite a search or a tag drives its own index (search.py) in id order, and a page sorted by
name or age reads that column's sort table (sort_tables.py). Counts stop past a cap:
past it, callers say "over N".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobrunner.domain.states import ALL_STATUSES, Status
from jobrunner.store import search, sort_tables
from jobrunner.store.db import Store
from jobrunner.store.migrations import NOT_QUEUED

if TYPE_CHECKING:
    from jobrunner.store.queries import JobFilter

#: Counts past this say "over 10,000" (the TUI, `list`'s footer): counting reads an index entry per job.
COUNT_CAP = 10_000
PRIORITIES = range(10)  # the claim index's ranges; a priority outside 0-9 (a hand edit) has arms of its own
MAX_ARMS = 200  # more (hundreds of queues): one plain query, sorted, instead
#: Queued jobs read per refresh to name the queues that have some (the claim index does not lead by queue).
QUEUED_NAMES_SCAN = 200_000
#: How far the two ways of reading a tag or search with a status or queue are counted, to take
#: the one that reads fewer rows (a dead-letter search of a word every job has: the dead jobs).
COMPARE_UP_TO = 100_000
#: Sorts the arms serve (name and created_at: sort_tables.py; queries.SORTABLE's others sort every match).
ARM_SORTS = ("id", "status", "queue", "priority")


@dataclass(frozen=True)
class Arm:
    """`SELECT {key} AS id FROM {source} WHERE {conditions}`: one index range, in id order."""

    source: str
    conditions: tuple[str, ...]
    params: tuple[Any, ...]
    key: str = "id"
    sort_key: str = ""  # where the sort column's value comes from: job's own column if empty

    def sql(self, sort: str | None = None) -> str:
        first = f"{self.sort_key or f'job.{sort}'} AS k, " if sort and sort != "id" else ""
        return f"SELECT {first}{self.key} AS id FROM {self.source} WHERE {' AND '.join(self.conditions)}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _status_arms(store: Store, where: JobFilter, checks: tuple[str, ...], params: tuple[Any, ...],
                 sort: str | None = None) -> list[Arm]:  # fmt: skip
    """The index ranges of the filter's statuses and queues, each with the other conditions.
    Sorted by queue, queued jobs get a range per queue too; by priority, jobs that left the
    queue come from job_priority_done in one range."""
    p = store.backend.param
    statuses = sorted({s.value for s in where.statuses}) or [s.value for s in ALL_STATUSES]
    queues = list(dict.fromkeys(where.queues))
    arms: list[Arm] = []
    if Status.QUEUED.value in statuses:
        claim = f"job{store.indexed_by('job_claim_queued')}"
        ranges = [f"priority = {n}" for n in PRIORITIES] + [
            f"priority < {PRIORITIES[0]}",
            f"priority > {PRIORITIES[-1]}",
        ]
        if sort == "queue":  # one queue per range, so each range is in (queue, id) order
            names = queues or sorted(
                q for q, found in queue_statuses(store).items() if Status.QUEUED.value in found
            )
            for priority in ranges:
                for name in names:
                    arms.append(
                        Arm(claim, ("status = 'queued'", priority, f"queue = {p}", *checks), (name, *params))
                    )
        else:
            by_queue = (f"queue IN ({', '.join([p] * len(queues))})",) if queues else ()
            for priority in ranges:
                arms.append(
                    Arm(claim, ("status = 'queued'", priority, *by_queue, *checks), (*queues, *params))
                )
    others = [s for s in statuses if s != Status.QUEUED.value]
    if sort == "priority" and others:
        only = f"status IN ({', '.join(_quote(s) for s in others)})" if where.statuses else None
        by_queue = (f"queue IN ({', '.join([p] * len(queues))})",) if queues else ()
        conditions = (NOT_QUEUED, *((only,) if only else ()), *by_queue, *checks)
        arms.append(Arm(f"job{store.indexed_by('job_priority_done')}", conditions, (*queues, *params)))
        return arms
    if queues:
        pairs = [(s, q) for s in others for q in queues]
    elif others:
        present = queue_statuses(store, queued=False)
        pairs = [(s, q) for q, found in sorted(present.items()) for s in others if s in found]
    else:
        pairs = []
    # PostgreSQL takes `col = value` for a constant and then no longer sees the range as ordered
    # by (col, id) when the arms are merged by it: the column sorted by is bounded both ways instead
    ranged = sort if not store.is_sqlite and sort in ("status", "queue") else None
    for status, queue in pairs:
        at = (f"status >= {_quote(status)} AND status <= {_quote(status)}" if ranged == "status"
              else f"status = {_quote(status)}")  # fmt: skip
        if ranged == "queue":
            arms.append(
                Arm(
                    "job",
                    (at, NOT_QUEUED, f"queue >= {p} AND queue <= {p}", *checks),
                    (queue, queue, *params),
                )
            )
        else:
            arms.append(Arm("job", (at, NOT_QUEUED, f"queue = {p}", *checks), (queue, *params)))
    return arms or [Arm("job", ("1 = 0",), ())]  # no job has these statuses


def _row_checks(
    store: Store, where: JobFilter, skip_tags: int = 0
) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The filter's conditions other than status and queue, each checked on the row at hand
    (JobFilter.terms words them so), leaving out the first `skip_tags` tags: they drive."""
    conditions: list[str] = []
    params: list[Any] = []
    tags = 0
    for kind, sql, values in where.terms(store.backend.param):
        if kind == "tag":
            tags += 1
            if tags <= skip_tags:
                continue
        if kind not in ("status", "queue"):
            conditions.append(sql)
            params += values
    return tuple(conditions), tuple(params)


def _plain_status_queue(store: Store, where: JobFilter) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    conditions, params = [], []
    for kind, sql, values in where.terms(store.backend.param):
        if kind in ("status", "queue"):
            conditions.append(sql)
            params += values
    return tuple(conditions), tuple(params)


def _driven(store: Store, where: JobFilter, counted: bool) -> tuple[list[Arm], int] | None:
    """The arms of a filter with a tag or (SQLite) a search, driven by its own index in job id
    order (job_tag's rows, or job_search's plus the jobs past its mark) with every other
    condition checked per job, the index that offers fewer candidates first; and (`counted`,
    else 0) how many it offers, up to COMPARE_UP_TO + 1. None: no such index (PostgreSQL's
    search: its planner weighs the trigram index)."""
    p = store.backend.param
    status_part, status_params = _plain_status_queue(store, where)
    query = search.fts_query(where.search) if where.search and store.is_sqlite else None
    if query is not None and not search.has_search_table(store):
        query = None
    both = bool(where.tags and query)
    tag_rows = text_rows = 0
    if where.tags and (counted or both):
        tag_rows = _count_query(store, f"SELECT 1 FROM job_tag WHERE tag = {p}", [where.tags[0]])
    if query and (counted or both):
        text_rows = _count_query(store, "SELECT 1 FROM job_search WHERE job_search MATCH ?", [query])
    if where.tags and (not query or tag_rows <= text_rows):
        checks, params = _row_checks(store, where, skip_tags=1)
        join = "CROSS JOIN" if store.is_sqlite else "JOIN"  # SQLite: the tag's rows stay the outer loop
        arm = Arm(f"job_tag AS t {join} job ON job.id = t.job_id", (f"t.tag = {p}", *status_part, *checks),
                  (where.tags[0], *status_params, *params), key="t.job_id")  # fmt: skip
        if not store.is_sqlite:
            return [arm], tag_rows
        tail = Arm("job NOT INDEXED", (f"job.id > COALESCE({search.MARK_SQL}, 0)", search.tag_check(),
                                       *status_part, *checks), (where.tags[0], *status_params, *params))  # fmt: skip
        return [arm, tail], tag_rows
    if not query:
        return None
    checks, params = _row_checks(store, where)  # the search's LIKE among them: the index only narrows
    # CROSS JOIN: the index stays the outer loop (SQLite would rather walk a status's every job)
    indexed = Arm("job_search AS s CROSS JOIN job ON job.id = s.rowid", ("job_search MATCH ?", *status_part, *checks),
                  (query, *status_params, *params), key="s.rowid")  # fmt: skip
    # the jobs the daemon has not indexed yet, by the primary key (not a status's every row)
    tail = Arm("job NOT INDEXED", (f"job.id > COALESCE({search.MARK_SQL}, 0)", *status_part, *checks),
               (*status_params, *params))  # fmt: skip
    return [indexed, tail], text_rows


def arms(store: Store, where: JobFilter, sort: str = "id") -> list[Arm] | None:
    """The index ranges that together hold exactly the filter's jobs, each in (sort, id) order;
    None when one plain query does as well (no filter, or nothing an index narrows)."""
    narrowed = bool(where.statuses or where.queues)
    if where.tags or where.search:
        driven = _driven(store, where, narrowed)
        if driven is None or sort != "id":
            return None
        found, candidates = driven
        if not narrowed:
            return found
        ranges = _status_arms(store, where, (), ())
        if len(ranges) > MAX_ARMS or _count(store, ranges, COMPARE_UP_TO) >= candidates:
            return found
    elif not narrowed and sort == "id":
        return None  # the primary key, in id order
    checks, params = _row_checks(store, where)
    found = _status_arms(store, where, checks, params, sort)
    return found if len(found) <= MAX_ARMS else None


def _sort_table_arms(store: Store, where: JobFilter, sort: str, reach: int) -> list[Arm] | None:
    """A page sorted by name, age, tries, progress or finish time (SQLite): the column's sort
    table in order, every condition of the filter checked on each job, merged with the jobs past
    the mark (and, for the last three, a range of the table per status, the running jobs and those changed
    since the table's feed mark, from their rows). None (sort the matches instead) when the
    filter keeps too few jobs for that: reaching `reach` matches reads about reach * jobs /
    matches pairs, where sorting reads the matches."""
    if not store.is_sqlite or not sort_tables.present(store):
        return None
    followed = sort in sort_tables.FOLLOWED
    terms = where.terms(store.backend.param)
    # a status is a range of its own in RUN_TABLE: only the rest is checked
    if any(kind != "status" for kind, _, _ in terms) or (terms and not followed):
        (top,) = store.execute("SELECT COALESCE(MAX(id), 0) FROM job").fetchone()
        enough = min(COMPARE_UP_TO, math.isqrt(reach * int(top)))  # more matches than this: walk
        matches = count(store, where, enough)
        if matches is not None and matches <= enough and reach * int(top) >= matches * matches:
            return None
    conditions = tuple(sql for _, sql, _ in terms)
    params = tuple(value for _, _, values in terms for value in values)
    tail = Arm("job NOT INDEXED", (f"job.id > COALESCE({search.MARK_SQL}, 0)", *conditions), params)
    if followed:
        return [*_run_table_arms(store, where, sort), tail]
    table = sort_tables.TABLES[sort]
    # CROSS JOIN: the pairs stay the outer loop, in order (SQLite would rather walk a status's jobs)
    source = f"{table} AS s CROSS JOIN job ON job.id = s.job_id" if terms else f"{table} AS s"
    return [Arm(source, conditions or ("1 = 1",), params, key="s.job_id", sort_key="s.k"), tail]


def _run_table_arms(store: Store, where: JobFilter, sort: str) -> list[Arm]:
    """Sorted by tries, progress or finish time, the jobs up to the mark: a range of the table per status
    (in (value, id) order), less the jobs changed since its feed mark, which are read from
    their rows with the running jobs (store/sort_tables.py)."""
    p = store.backend.param
    statuses = sorted({s.value for s in where.statuses}) or [s.value for s in ALL_STATUSES]
    checks, check_params = _row_checks(store, where)  # the filter's terms but status and queue
    by_queue = (f"s.queue IN ({', '.join([p] * len(where.queues))})",) if where.queues else ()
    source = f"{sort_tables.RUN_TABLE} AS s INDEXED BY {sort_tables.run_index(sort)}"
    if checks:  # CROSS JOIN: the table's range stays the outer loop, in order
        source += " CROSS JOIN job ON job.id = s.job_id"
    changed, below = sort_tables.CHANGED_SQL, f"job.id <= COALESCE({search.MARK_SQL}, 0)"
    arms = [
        Arm(source, (f"s.status = {_quote(status)}", f"s.job_id NOT IN {changed}", *by_queue, *checks),
            (*where.queues, *check_params), key="s.job_id", sort_key=f"s.{sort}")
        for status in statuses if status != Status.RUNNING.value
    ]  # fmt: skip
    terms = where.terms(p)
    conditions = tuple(sql for _, sql, _ in terms)
    params = tuple(value for _, _, values in terms for value in values)
    # NOT INDEXED: by id, from the few changed (not every job a status or tag index holds)
    arms.append(Arm("job NOT INDEXED", (f"job.id IN {changed}", below, *conditions), params))
    if Status.RUNNING.value in statuses:
        arms.append(Arm("job", ("status = 'running'", NOT_QUEUED, below, f"job.id NOT IN {changed}", *conditions), params))
    return arms


def _count(store: Store, found: list[Arm], up_to: int) -> int:
    union, params = merged(found)
    return _count_query(store, f"SELECT 1 FROM ({union}) AS u", params, up_to)


def _count_query(store: Store, rows: str, params: list[Any], up_to: int = COMPARE_UP_TO) -> int:
    sql = f"SELECT COUNT(*) FROM ({rows} LIMIT {int(up_to) + 1}) AS c"
    return int(store.execute(sql, params).fetchone()[0])


def merged(found: list[Arm], sort: str | None = None) -> tuple[str, list[Any]]:
    """The arms as one row source of ids (and `k`, the sort column's value; the caller orders
    and limits it)."""
    params: list[Any] = [value for arm in found for value in arm.params]
    return " UNION ALL ".join(arm.sql(sort) for arm in found), params


def page_query(store: Store, where: JobFilter, limit: int, offset: int, descending: bool,
               sort: str = "id") -> tuple[str, list[Any]] | None:  # fmt: skip
    """A query of one page's ids in (sort, id) order (highest first if `descending`), from the
    filter's index ranges; None when the filter has none (a plain query is as good)."""
    if sort in sort_tables.SORTS:
        found = _sort_table_arms(store, where, sort, limit + offset)
    elif sort == "queue" and not store.is_sqlite and not where.terms(store.backend.param):
        return None  # PostgreSQL: every job by queue is its (queue, id) index, in order
    elif sort in ARM_SORTS:
        found = arms(store, where, sort)
    else:
        return None
    if found is None:
        return None
    direction = "DESC" if descending else "ASC"
    # the outer query selects what it orders by: then SQLite merges the arms instead of sorting
    columns, order = (
        ("id", f"id {direction}") if sort == "id" else ("k, id", f"k {direction}, id {direction}")
    )
    if store.is_sqlite:
        union, params = merged(found, sort)
    else:  # PostgreSQL merges (Merge Append) arms that are each ordered and limited, else it sorts them all
        params = [value for arm in found for value in arm.params]
        union = " UNION ALL ".join(f"({arm.sql(sort)} ORDER BY {order} LIMIT {int(limit) + int(offset)})"
                                   for arm in found)  # fmt: skip
    return (
        f"SELECT {columns} FROM ({union}) AS u ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}",
        params,
    )


def count(store: Store, where: JobFilter, up_to: int | None) -> int | None:
    """How many jobs match, from the filter's index ranges, stopping past `up_to`; None when the
    filter has no ranges."""
    found = arms(store, where)
    if found is None:
        return None
    union, params = merged(found)
    if up_to is None:
        return int(store.execute(f"SELECT COUNT(*) FROM ({union}) AS u", params).fetchone()[0])
    return _count_query(store, f"SELECT 1 FROM ({union}) AS u", params, up_to)


def status_counts(store: Store, up_to: int = COUNT_CAP) -> dict[str, int]:
    """Jobs per status, each counted up to `up_to` + 1 (more: "over"), from the two partial
    indexes: 8 short index ranges instead of every job."""
    parts = []
    for status in ALL_STATUSES:
        if status is Status.QUEUED:
            source = f"job{store.indexed_by('job_claim_queued')} WHERE status = 'queued'"
        else:
            source = f"job WHERE status = {_quote(status.value)} AND {NOT_QUEUED}"
        parts.append(f"(SELECT COUNT(*) FROM (SELECT 1 FROM {source} LIMIT {int(up_to) + 1}) AS c)")
    row = store.execute("SELECT " + ", ".join(parts)).fetchone()
    return {status.value: int(n) for status, n in zip(ALL_STATUSES, row, strict=True)}


def queue_statuses(store: Store, queued: bool = True) -> dict[str, set[str]]:
    """Each queue that has jobs, with the statuses it has: the (status, queue) index skipped
    through a queue at a time (a few index seeks per pair, not a row per job); queued jobs'
    queues from the claim index, up to QUEUED_NAMES_SCAN of them."""
    firsts = " UNION ALL ".join(
        f"SELECT {_quote(s.value)} AS status" for s in ALL_STATUSES if s is not Status.QUEUED
    )
    step = f"(SELECT MIN(queue) FROM job WHERE status = {{0}}.status AND {NOT_QUEUED}{{1}})"
    sql = (
        f"WITH RECURSIVE pairs (status, queue) AS (SELECT f.status, {step.format('f', '')} FROM ({firsts}) AS f "
        f"UNION ALL SELECT p.status, {step.format('p', ' AND queue > p.queue')} FROM pairs AS p "
        "WHERE p.queue IS NOT NULL) SELECT status, queue FROM pairs WHERE queue IS NOT NULL"
    )
    found: dict[str, set[str]] = {}
    for status, queue in store.execute(sql).fetchall():
        found.setdefault(queue, set()).add(status)
    if queued:
        hint = store.indexed_by("job_claim_queued")
        rows = store.execute(
            f"SELECT DISTINCT queue FROM (SELECT queue FROM job{hint} WHERE status = 'queued' "
            f"LIMIT {QUEUED_NAMES_SCAN}) AS q"
        ).fetchall()
        for (queue,) in rows:
            found.setdefault(queue, set()).add(Status.QUEUED.value)
    return found
