"""Pages of jobs as the TUI reads them: sorted in SQL, paged with LIMIT/OFFSET, on indexes."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.states import Status
from jobrunner.errors import UsageError
from jobrunner.store import queries, repo
from jobrunner.store.queries import JobFilter
from tests.conftest import sql


@pytest.fixture
def filled(store):
    specs = [
        build_spec({"command": ["true"], "name": f"job-{n:02}", "queue": "a" if n % 2 else "b",
                    "priority": n % 3 * 3})
        for n in range(30)
    ]  # fmt: skip
    repo.submit_many(store, specs, 1000.0)
    return store


def ids(jobs):
    return [job["id"] for job in jobs]


def test_default_is_newest_first_and_pages_follow_the_sort(filled):
    assert ids(queries.list_jobs(filled, limit=3)) == [30, 29, 28]
    everything = ids(queries.list_jobs(filled, limit=None, order_by="-priority"))
    pages = [ids(queries.list_jobs(filled, limit=7, offset=o, order_by="-priority")) for o in range(0, 30, 7)]
    assert [job_id for page in pages for job_id in page] == everything
    priorities = [job["priority"] for job in queries.list_jobs(filled, limit=None, order_by="-priority")]
    assert priorities == sorted(priorities, reverse=True)
    by_name = queries.list_jobs(filled, JobFilter(queues=["a"]), limit=4, offset=2, order_by="name")
    assert [job["name"] for job in by_name] == ["job-05", "job-07", "job-09", "job-11"]


def test_nulls_sort_the_same_way_on_both_backends(filled):
    """Most progress first starts with the jobs that have some, least first ends with them, on
    SQLite and PostgreSQL alike (PostgreSQL's own default puts NULLs first going down)."""
    sql(filled, "UPDATE job SET progress=0.5 WHERE id=4")
    sql(filled, "UPDATE job SET progress=0.9 WHERE id=9")
    assert ids(queries.list_jobs(filled, limit=3, order_by="-progress")) == [9, 4, 30]
    assert ids(queries.list_jobs(filled, limit=2, order_by="progress", from_end=True)) == [4, 9]
    assert ids(queries.list_jobs(filled, limit=None, order_by="progress"))[-2:] == [4, 9]


def test_unknown_sort_columns_never_reach_sql(filled):
    for bad in ("error", "id; DROP TABLE job", "-command"):
        with pytest.raises(UsageError, match="cannot sort by"):
            queries.list_jobs(filled, order_by=bad)


def test_finished_since_counts_final_statuses_only(filled):
    sql(filled, "UPDATE job SET status='succeeded', finished_at=1100 WHERE id IN (1, 2)")
    sql(filled, "UPDATE job SET status='dead', finished_at=1050 WHERE id=3")
    sql(filled, "UPDATE job SET status='cancelled', finished_at=900 WHERE id=4")
    sql(filled, "UPDATE job SET status='retrying', finished_at=1100 WHERE id=5")
    assert queries.finished_since(filled, 1000) == 3


@pytest.mark.sqlite_only(reason="SQLite's EXPLAIN QUERY PLAN and INDEXED BY")
@pytest.mark.parametrize(
    ("statuses", "index"),
    [([Status.QUEUED], "job_claim_queued"), ([Status.SUCCEEDED, Status.DEAD], "job_status_not_queued")],
)
def test_a_status_page_reads_an_index_alone(filled, statuses, index):
    """A status filter chooses its page from an index, never from whole rows: queued jobs are in
    the claim index, every other status in (status, queue)."""
    clause, params = JobFilter(statuses=statuses).where("?")
    statement = f"SELECT id, COUNT(*) OVER () FROM job{clause}{queries.order_clause(None)} LIMIT 5"
    details = " | ".join(row[3] for row in filled.execute(f"EXPLAIN QUERY PLAN {statement}", params).fetchall())
    assert f"COVERING INDEX {index}" in details, details


@pytest.mark.sqlite_only(reason="SQLite's EXPLAIN QUERY PLAN and INDEXED BY")
def test_the_daemons_lookups_of_running_jobs_use_an_index(filled):
    """Heartbeats, cancel checks and recovery look up running jobs; a scan would read every job."""
    import jobrunner.store.runs as runs_module

    source = Path(runs_module.__file__).read_text()
    # heartbeat, cancels, 2 recoveries, a global queue's running count
    assert source.count("status='running' AND {NOT_QUEUED}") == 5
    for statement in ("SELECT id FROM job WHERE status='running' AND status <> 'queued' AND lease_owner='x'",
                      "SELECT COUNT(*) FROM job WHERE status='running' AND status <> 'queued' AND queue='x'"):  # fmt: skip
        details = " | ".join(row[3] for row in filled.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall())
        assert "job_status_not_queued" in details, details


def test_stats_add_up_across_both_indexes(filled):
    """Queued jobs are counted from one index and the rest from the other: together, every job."""
    sql(filled, "UPDATE job SET status='succeeded', finished_at=1 WHERE id % 3 = 0")
    sql(filled, "UPDATE job SET status='dead', finished_at=1 WHERE id % 7 = 0")
    got = queries.stats(filled)
    plain = sql(filled, "SELECT queue, status, COUNT(*) FROM job GROUP BY 1, 2")
    assert got["total"] == sum(count for *_, count in plain)
    for queue, status, count in plain:
        assert got["queues"][queue]["by_status"][status] == count


@pytest.mark.sqlite_only(reason="SQLite's EXPLAIN QUERY PLAN and INDEXED BY")
def test_the_daemon_finds_work_without_sorting(filled):
    """Claims walk the partial index of queued jobs in priority order; due jobs theirs by time."""
    from jobrunner.store.runs import _claim_statement

    plan = filled.execute("EXPLAIN QUERY PLAN " + _claim_statement(filled, 0, 0), ["o", 1, 1, 1, "/l/", 5])
    details = " | ".join(row[3] for row in plan.fetchall())
    assert "job_claim_queued" in details and "TEMP B-TREE" not in details, details
    due = f"SELECT id FROM job{filled.indexed_by('job_due_waiting')} WHERE status IN ('scheduled', 'retrying') AND run_at <= 1 ORDER BY run_at"
    details = " | ".join(row[3] for row in filled.execute("EXPLAIN QUERY PLAN " + due).fetchall())
    assert "job_due_waiting" in details and "TEMP B-TREE" not in details, details


def test_a_search_page_comes_with_its_total_from_one_query(filled):
    where = JobFilter(search="job-1")  # job-10 ... job-19
    jobs, total = queries.list_jobs_counted(filled, where, limit=4, offset=2)
    assert total == 10 and [job["name"] for job in jobs] == ["job-17", "job-16", "job-15", "job-14"]
    assert queries.list_jobs_counted(filled, where, limit=4, offset=50) == ([], 10)  # past the end
    assert queries.list_jobs_counted(filled, JobFilter(search="nothing"), limit=4) == ([], 0)
