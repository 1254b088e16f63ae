"""Pages read from index ranges (store/pages.py) are the pages a plain ORDER BY gives: every
filter, sort and offset, from either end; counts stop past their cap; a cursor walks every job
once while new ones arrive."""

from __future__ import annotations

import random
import time

import pytest

from jobrunner.domain.failures import Failure, FailureKind
from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.states import ALL_STATUSES, Status
from jobrunner.store import pages, queries, repo, runs, search, sort_tables
from jobrunner.store.queries import JobFilter
from tests.conftest import ON_POSTGRES, sql
from tests.servehelpers import client_for

QUEUES = ["a", "b", "c"]


@pytest.fixture
def mixed(store):
    """60 jobs over three queues, every status, priorities 0-9 (one out of range, as a hand edit)."""
    rng = random.Random(3)
    specs = [build_spec({"command": ["true"], "name": f"job-{n:02}", "queue": rng.choice(QUEUES),
                         "priority": rng.randint(0, 9), "tags": ["t"] if n % 4 == 0 else []})
             for n in range(60)]  # fmt: skip
    repo.submit_many(store, specs, 1000.0)
    for job_id in range(1, 61):
        status = ALL_STATUSES[rng.randrange(len(ALL_STATUSES))].value
        if status != "queued":
            sql(store, "UPDATE job SET status=? WHERE id=?", (status, job_id))
    sql(store, "UPDATE job SET priority=12 WHERE id=7")
    return store


def plain(store, where: JobFilter, order_by: str | None) -> list[int]:
    """The page order as one ORDER BY over every match (what pages.py must equal)."""
    clause, params = where.where(store.backend.param)
    order = queries.order_clause(order_by, spell_nulls=not store.is_sqlite)
    rows = store.execute(f"SELECT id FROM job{clause}{order}", params).fetchall()
    return [row[0] for row in rows]


def ids(jobs) -> list[int]:
    return [job["id"] for job in jobs]


FILTERS = [
    JobFilter(),
    JobFilter(statuses=[Status.QUEUED]),
    JobFilter(statuses=[Status.SUCCEEDED, Status.DEAD]),
    JobFilter(statuses=[Status.QUEUED, Status.RUNNING], queues=["b"]),
    JobFilter(queues=["a", "c"]),
    JobFilter(statuses=[Status.WAITING], queues=["nope"]),
    JobFilter(tags=["t"], statuses=[Status.QUEUED, Status.DEAD]),
    JobFilter(search="job-1", queues=["a"]),
]


@pytest.mark.parametrize(
    "order_by", [None, "id", "-priority", "priority", "status", "-status", "queue", "-queue"]
)
@pytest.mark.parametrize("where", FILTERS, ids=range(len(FILTERS)))
def test_pages_from_indexes_are_the_plain_sort_page_by_page(mixed, where, order_by):
    expected = plain(mixed, where, order_by)
    for limit in (1, 4, 9):
        got = [
            i
            for offset in range(0, 64, limit)
            for i in ids(queries.list_jobs(mixed, where, limit, offset, order_by=order_by))
        ]
        assert got == expected, (limit, order_by)
        back = [ids(queries.list_jobs(mixed, where, limit, offset, order_by=order_by, from_end=True))
                for offset in range(0, 64, limit)]  # fmt: skip
        assert [i for page in reversed(back) for i in page] == expected
    assert queries.count_jobs(mixed, where) == len(expected)
    assert queries.count_jobs(mixed, where, up_to=3) == min(len(expected), 4)


@pytest.mark.parametrize("order_by", ["name", "-name", "created_at", "-created_at"])
@pytest.mark.parametrize("drive", [False, True], ids=["filters-sort-their-matches", "filters-walk-the-sort-table"])
@pytest.mark.parametrize("where", FILTERS, ids=range(len(FILTERS)))
def test_pages_by_name_and_age_are_the_plain_sort_page_by_page(mixed, where, order_by, drive, monkeypatch):
    """Sorted by name or age, a page reads the sort tables (SQLite) up to the indexed mark and
    sorts the jobs past it: equal to the plain sort with names repeated, ages out of id order,
    a rename and a delete on each side of the mark, whichever way a filter is served."""
    for job_id in range(1, 61):
        sql(mixed, "UPDATE job SET name=?, created_at=? WHERE id=?",
            (f"n{job_id % 7}", 1000.0 + (job_id * 37) % 11, job_id))  # fmt: skip
    search.index_new(mixed, batch=35)  # 1-35 in the tables, 36-60 past the mark
    sql(mixed, "UPDATE job SET name='aardvark', created_at=5.0 WHERE id IN (9, 50)")
    sql(mixed, "DELETE FROM job WHERE id IN (12, 44)")
    if drive:  # every filter walks the table in order, checking each job, however few it keeps
        monkeypatch.setattr(pages, "COMPARE_UP_TO", 0)
    expected = plain(mixed, where, order_by)
    for limit in (1, 4, 9):
        got = [i for offset in range(0, 64, limit)
               for i in ids(queries.list_jobs(mixed, where, limit, offset, order_by=order_by))]  # fmt: skip
        assert got == expected, (limit, order_by)
        back = [ids(queries.list_jobs(mixed, where, limit, offset, order_by=order_by, from_end=True))
                for offset in range(0, 64, limit)]  # fmt: skip
        assert [i for page in reversed(back) for i in page] == expected


TRIES_AND_PROGRESS = ["attempts", "-attempts", "progress", "-progress", "finished_at", "-finished_at"]


def _assert_pages_sorted(store, where: JobFilter, order_by: str, limit: int = 7) -> None:
    expected = plain(store, where, order_by)
    got = [i for offset in range(0, len(expected) + limit, limit)
           for i in ids(queries.list_jobs(store, where, limit, offset, order_by=order_by))]  # fmt: skip
    assert got == expected, order_by
    back = [ids(queries.list_jobs(store, where, limit, offset, order_by=order_by, from_end=True))
            for offset in range(0, len(expected) + limit, limit)]  # fmt: skip
    assert [i for page in reversed(back) for i in page] == expected, order_by


@pytest.mark.parametrize("seed", range(3))
def test_pages_by_tries_and_progress_stay_the_plain_sort_through_a_run(store, seed, monkeypatch):
    """The sort table of tries, progress and finish times follows jobs as they run
    (store/sort_tables.py): claims, progress reports, successes, failures that retry and that
    end, releases, cancels, retries and purges, with the daemon's batch at random moments (and
    small batches, so its marks stop part way). After every step, every page sorted by one of
    them, filtered or not, is the plain sort."""
    rng = random.Random(seed)
    monkeypatch.setattr(pages, "COMPARE_UP_TO", rng.choice([0, pages.COMPARE_UP_TO]))
    wheres = [JobFilter(), JobFilter(statuses=[Status.SUCCEEDED, Status.RUNNING]), JobFilter(queues=["b"]),
              JobFilter(statuses=[Status.DEAD, Status.QUEUED], queues=["a", "c"])]  # fmt: skip
    now = 1000.0

    def submit(n: int) -> None:
        specs = [build_spec({"command": ["true"], "queue": rng.choice(QUEUES), "retries": rng.choice([0, 2])})
                 for _ in range(n)]  # fmt: skip
        repo.submit_many(store, specs, now)

    submit(30)
    for _ in range(60):
        now += 1.0
        action = rng.choice(["claim", "claim", "progress", "finish", "finish", "release", "cancel",
                             "retry", "purge", "submit", "index", "index"])  # fmt: skip
        running = [(i, a) for i, a in sql(store, "SELECT id, attempts FROM job WHERE status = 'running'")]
        if action == "claim":
            runs.claim(store, "d1", now, rng.randint(1, 6), 60.0, "/tmp")
        elif action == "progress" and running:
            runs.save_progress(store, [(i, a, rng.choice([0.0, 0.3, 0.7, 1.0]), None)
                                       for i, a in rng.sample(running, min(3, len(running)))], now)  # fmt: skip
        elif action == "finish" and running:
            outcomes = [runs.Outcome(i, a, None if rng.random() < 0.5 else Failure(FailureKind.EXIT, "exit 1"))
                        for i, a in rng.sample(running, min(3, len(running)))]  # fmt: skip
            runs.finish(store, "d1", outcomes, now, rng)
        elif action == "release" and running:
            runs.release(store, "d1", [runs.Attempt(*running[0])], now)
        elif action == "cancel":
            queued = [row[0] for row in sql(store, "SELECT id FROM job WHERE status IN ('queued', 'retrying')")]
            if queued:
                repo.cancel(store, [rng.choice(queued)], now)
        elif action == "retry":
            dead = [row[0] for row in sql(store, "SELECT id FROM job WHERE status IN ('dead', 'cancelled')")]
            if dead:
                repo.retry(store, rng.sample(dead, min(2, len(dead))), now)
        elif action == "purge":
            repo.purge(store, rng.choice([0.0, 5.0]), [Status.SUCCEEDED, Status.DEAD], now)
        elif action == "submit":
            submit(rng.randint(1, 5))
        elif action == "index":
            search.index_new(store, batch=rng.randint(1, 12))
        runs.promote_due(store, now + 3600.0)  # retries due at once
        for where in wheres:
            for order_by in TRIES_AND_PROGRESS:
                _assert_pages_sorted(store, where, order_by)
    search.index_new(store, batch=10_000)
    search.index_new(store, batch=10_000)
    if store.is_sqlite:  # caught up: every job not running is in the table, as it is now
        columns = "status, queue, attempts, progress, finished_at"
        assert sql(store, f"SELECT job_id, {columns} FROM {sort_tables.RUN_TABLE} ORDER BY job_id") == sql(
            store, f"SELECT id, {columns} FROM job WHERE status <> 'running' ORDER BY id")


def test_a_purge_of_the_newest_jobs_does_not_hide_the_next_changes(store):
    """Event ids are handed out again after a purge of the newest events: the tables' feed mark
    comes down with them, so the claim that reuses an id is still seen (SQLite's feed)."""
    repo.submit_many(store, [build_spec({"command": ["true"]}) for _ in range(4)], 1000.0)
    (first,) = runs.claim(store, "d1", 1001.0, 1, 60.0, "/tmp")  # job 1 runs and succeeds
    runs.finish(store, "d1", [runs.Outcome(first.id, first.attempt)], 1002.0)
    search.index_new(store)  # caught up: the feed mark is job 1's success, the newest event
    repo.purge(store, 0.0, [Status.SUCCEEDED], 1003.0)  # job 1 and its events go
    runs.claim(store, "d1", 1004.0, 2, 60.0, "/tmp")  # jobs 2 and 3: their events take the ids again
    for order_by in TRIES_AND_PROGRESS:
        _assert_pages_sorted(store, JobFilter(), order_by, limit=2)
    search.index_new(store)
    for order_by in TRIES_AND_PROGRESS:
        _assert_pages_sorted(store, JobFilter(), order_by, limit=2)


@pytest.mark.parametrize("order_by", TRIES_AND_PROGRESS)
def test_a_page_by_tries_progress_or_finish_reads_an_index_in_order(mixed, order_by):
    """No sort of every job at a million: SQLite merges the sort table's range of each status,
    PostgreSQL reads its index of the column (NULLs first, as the page sorts them)."""
    search.index_new(mixed)
    column = order_by.removeprefix("-")
    where = JobFilter(statuses=[Status.DEAD]) if column == "finished_at" else JobFilter()  # the dead letters
    page, params = queries._page(mixed, where, 5, 0, True, order_by, False)
    if not mixed.is_sqlite:  # 60 jobs: a sort is cheaper, so forbid it to see that the index serves the order
        mixed.execute("SET enable_seqscan = off")
        mixed.execute("SET enable_sort = off")
    try:
        plan = " | ".join(str(row[-1]) for row in mixed.execute(
            f"EXPLAIN {'QUERY PLAN ' if mixed.is_sqlite else ''}{page}", params).fetchall())  # fmt: skip
    finally:
        if not mixed.is_sqlite:
            mixed.execute("RESET enable_seqscan")
            mixed.execute("RESET enable_sort")
    if mixed.is_sqlite:
        assert "MERGE (UNION ALL)" in plan and sort_tables.run_index(column) in plan, plan
    else:
        index = "job_status_finished_at_id" if column == "finished_at" else f"job_{column}_id"
        assert index in plan and "Sort" not in plan, plan


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only: its (queue, id) index (SQLite merges its status ranges)")
def test_every_job_by_queue_reads_one_index_on_postgresql(mixed):
    """Not a merge of every status and queue's range (108 ms 20,000 rows deep at a million)."""
    page, params = queries._page(mixed, JobFilter(), 5, 20, False, "queue", False)
    mixed.execute("SET enable_seqscan = off")
    try:
        plan = " | ".join(row[0] for row in mixed.execute(f"EXPLAIN {page}", params).fetchall())
    finally:
        mixed.execute("RESET enable_seqscan")
    assert "job_queue_id" in plan and "Sort" not in plan, plan


@pytest.mark.sqlite_only(reason="SQLite's sort tables and EXPLAIN QUERY PLAN (PostgreSQL sorts)")
def test_a_page_by_name_reads_its_sort_table_in_order(mixed):
    """The whole point: no sort of every job (a temp b-tree over the table) at a million."""
    search.index_new(mixed)
    page, params = queries._page(mixed, JobFilter(), 5, 0, True, "name", False)
    plan = " | ".join(row[3] for row in mixed.execute(f"EXPLAIN QUERY PLAN {page}", params).fetchall())
    assert "MERGE (UNION ALL)" in plan and "SCAN s" in plan, plan


def test_from_the_end_pages_count_back_from_the_last_job(mixed):
    everything = plain(mixed, JobFilter(), None)
    assert ids(queries.list_jobs(mixed, limit=5, from_end=True)) == everything[-5:]
    assert ids(queries.list_jobs(mixed, limit=5, offset=5, from_end=True)) == everything[-10:-5]
    by_priority = plain(mixed, JobFilter(), "-priority")
    assert ids(queries.list_jobs(mixed, limit=3, order_by="-priority", from_end=True)) == by_priority[-3:]


def test_counts_per_status_stop_past_the_cap(mixed):
    exact = dict(sql(mixed, "SELECT status, COUNT(*) FROM job GROUP BY status"))
    assert pages.status_counts(mixed, 1000) == {s.value: exact.get(s.value, 0) for s in ALL_STATUSES}
    capped = pages.status_counts(mixed, 3)
    assert capped == {s.value: min(exact.get(s.value, 0), 4) for s in ALL_STATUSES}


def test_queues_are_named_with_their_statuses(mixed):
    expected: dict[str, set[str]] = {}
    for queue, status in sql(mixed, "SELECT queue, status FROM job"):
        expected.setdefault(queue, set()).add(status)
    assert pages.queue_statuses(mixed) == expected


def test_stats_counts_every_queue_and_status(mixed):
    got = queries.stats(mixed)
    for queue, status, count in sql(mixed, "SELECT queue, status, COUNT(*) FROM job GROUP BY 1, 2"):
        assert got["queues"][queue]["by_status"][status] == count
    assert got["total"] == 60


@pytest.mark.parametrize("queues", [3, queries.FILTERED_QUEUES + 2])
@pytest.mark.parametrize("queued_only", [False, True], ids=["every-queue-has-others", "a-queue-of-queued-jobs-only"])
def test_stats_count_the_queued_jobs_of_every_queue(store, queues, queued_only):
    """Queued jobs per queue: counted in one read of the claim index for a few queues that other
    statuses name, grouped otherwise (many queues, or one that has queued jobs only)."""
    names = [f"q{n}" for n in range(queues)]
    repo.submit_many(store, [build_spec({"command": ["true"], "queue": q}) for q in names for _ in range(3)], 1000.0)
    lonely = "AND queue <> 'q0'" if queued_only else ""
    sql(store, f"UPDATE job SET status='dead' WHERE id % 3 = 0 {lonely}")
    got = queries.stats(store)
    expected = {(queue, status): count for queue, status, count in
                sql(store, "SELECT queue, status, COUNT(*) FROM job GROUP BY 1, 2")}  # fmt: skip
    assert {(q, s): n for q, view in got["queues"].items() for s, n in view["by_status"].items() if n} == expected
    assert got["by_status"]["queued"] == sum(n for (_, s), n in expected.items() if s == "queued")


@pytest.mark.parametrize("params", [{}, {"status": "queued,dead"}, {"queue": "a"}, {"tag": "t"}, {"search": "job"},
                                    {"status": "succeeded", "oldest_first": "true"}])  # fmt: skip
def test_a_cursor_walks_every_job_once_while_jobs_are_added(mixed, db_path, params):
    """Pages of GET /api/jobs by cursor: no job twice, none missed, whatever arrives meanwhile."""
    api = client_for(db_path)
    oldest = params.get("oldest_first") == "true"
    where = JobFilter(statuses=[Status(s) for s in params.get("status", "").split(",") if s],
                      queues=[params["queue"]] if "queue" in params else [],
                      tags=[params["tag"]] if "tag" in params else [], search=params.get("search"))  # fmt: skip
    expected = plain(mixed, where, "id" if oldest else None)
    seen: list[int] = []
    cursor = None
    for turn in range(100):
        page = api.get(
            "/api/jobs", params={**params, "limit": 4, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [job["id"] for job in page["jobs"]]
        spec = build_spec({"command": ["true"], "name": f"job-new-{turn}", "queue": "a", "tags": ["t"]})
        repo.submit(mixed, spec, time.time())  # a new job between every two pages
        cursor = page["next"]
        if cursor is None:
            break
    if oldest:  # walking up, the new ones come too: each once, after the old
        assert seen[: len(expected)] == expected and len(set(seen)) == len(seen)
    else:
        assert seen == expected
