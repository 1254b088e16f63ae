"""`--search` and `--tag` read an index (FTS5 trigrams and job_tag on SQLite, pg_trgm on
PostgreSQL) and find exactly what the plain LIKE found before it: indexed or not yet indexed,
edited, deleted, through every door that filters (list, the TUI's pages, counts, bulk)."""

from __future__ import annotations

import random
import time

import pytest

from jobrunner.daemon.housekeeping import Housekeeping
from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.states import Status
from jobrunner.store import queries, repo, search
from jobrunner.store.queries import JobFilter
from tests.conftest import sql

WORDS = ["build", "Build", "deploy", "report-2026", "part_1", "50%", "naïve", "Ärger", 'say "hi"', "a", "ab",
         "x.y", "tab\there", "emails", "BACKUP"]  # fmt: skip
SEARCHES = ["build", "BUILD", "uil", "report-20", "part_1", "rt_1", "50%", "%", "_", "naï", "ärg", "ÄRG", '"hi"',
            "a", "ab", "zzz", "x.y", "b%d", "p_rt", "tab\th", "mails", "backup", "-2026", "ui"]  # fmt: skip


def fill(store, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    specs = []
    for n in range(count):
        name = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{n}"
        if n % 3 == 0:
            spec = {
                "callable": f"pkg.{rng.choice(['mod', 'Reports'])}:{rng.choice(['run', 'build_all'])}",
                "name": name,
            }
        else:
            spec = {"command": ["sh", "-c", f"{rng.choice(WORDS)} {rng.choice(WORDS)}"], "name": name}
        spec["tags"] = rng.sample(["nightly", "Nightly", "eu", "prod", "x"], rng.randint(0, 2))
        spec["queue"] = rng.choice(["a", "b"])
        specs.append(build_spec(spec))
    repo.submit_many(store, specs, 1000.0)
    statuses = ["queued", "succeeded", "dead", "running"]
    for job_id in range(1, count + 1):
        status = statuses[job_id % 4]
        if status != "queued":
            sql(store, "UPDATE job SET status=?, finished_at=? WHERE id=?", (status, 1000.0 + job_id, job_id))


def like_ids(store, text: str, statuses: tuple[str, ...] = ()) -> list[int]:
    """What `--search` found before any index: the plain LIKE, newest first."""
    where = "(name LIKE ? OR command LIKE ? OR callable LIKE ?)"
    params = [f"%{text}%"] * 3
    if statuses:
        where += f" AND status IN ({', '.join('?' * len(statuses))})"
        params += list(statuses)
    return [row[0] for row in sql(store, f"SELECT id FROM job WHERE {where} ORDER BY id DESC", params)]


def tag_ids(store, tag: str) -> list[int]:
    return [
        row[0] for row in sql(store, "SELECT id FROM job WHERE tags LIKE ? ORDER BY id DESC", [f'%"{tag}"%'])
    ]


def ids(jobs) -> list[int]:
    return [job["id"] for job in jobs]


def found(store, where: JobFilter) -> list[int]:
    """The filter through every path: whole list, pages of the index plan, capped and exact counts."""
    whole = ids(queries.list_jobs(store, where, limit=None))
    paged = [
        i for offset in range(0, len(whole) + 7, 7) for i in ids(queries.list_jobs(store, where, 7, offset))
    ]
    assert paged == whole
    assert queries.count_jobs(store, where) == len(whole)
    assert queries.count_jobs(store, where, up_to=5) == min(len(whole), 6)
    return whole


def test_a_search_finds_exactly_what_like_found(store):
    fill(store, 120)
    search.index_new(store, batch=50)  # some indexed, some not yet (SQLite): both halves read
    for text in SEARCHES:
        assert found(store, JobFilter(search=text)) == like_ids(store, text), text
        dead = found(store, JobFilter(search=text, statuses=[Status.DEAD, Status.QUEUED]))
        assert dead == like_ids(store, text, ("dead", "queued")), text
    while search.index_new(store):
        pass
    assert search.unindexed(store) == 0
    for text in SEARCHES:
        assert found(store, JobFilter(search=text)) == like_ids(store, text), text


def test_a_tag_filter_finds_the_jobs_with_that_whole_tag(store):
    fill(store, 80)
    search.index_new(store, batch=30)  # some in job_tag, some not yet (SQLite): both halves read
    sql(store, 'UPDATE job SET tags=\'["eu", "x"]\' WHERE id IN (3, 70)')  # edited: indexed, not yet
    for tag in ("nightly", "eu", "prod", "x", "nope"):
        expected = tag_ids(store, tag)
        assert found(store, JobFilter(tags=[tag])) == expected, tag
        both = found(store, JobFilter(tags=[tag, "eu"], search="build", statuses=[Status.SUCCEEDED]))
        assert both == [
            i for i in like_ids(store, "build", ("succeeded",)) if i in expected and i in tag_ids(store, "eu")
        ]


def test_edited_and_deleted_jobs_leave_the_index(store):
    fill(store, 20)
    while search.index_new(store):
        pass
    (job,) = queries.list_jobs(store, JobFilter(search="-7"), limit=None)  # the name ends in -7
    sql(store, "UPDATE job SET name='renamed-quokka', tags='[\"fresh\"]' WHERE id=?", (job["id"],))
    assert ids(queries.list_jobs(store, JobFilter(search="quokka"))) == [job["id"]]
    assert queries.list_jobs(store, JobFilter(search="-7")) == []
    assert ids(queries.list_jobs(store, JobFilter(tags=["fresh"]))) == [job["id"]]
    sql(store, "UPDATE job SET status='succeeded', finished_at=1 WHERE id=?", (job["id"],))
    assert repo.purge(store, 0, [Status.SUCCEEDED], time.time()) != []
    assert queries.list_jobs(store, JobFilter(search="quokka")) == []
    assert queries.list_jobs(store, JobFilter(tags=["fresh"])) == []
    if store.is_sqlite:  # FTS5 compares its index with the job table's text
        sql(store, "INSERT INTO job_search (job_search) VALUES ('integrity-check')")
        assert sql(store, "SELECT COUNT(*) FROM job_tag WHERE job_id NOT IN (SELECT id FROM job)") == [(0,)]


def test_the_daemon_indexes_new_jobs_a_batch_at_a_time(store):
    fill(store, 30)
    keeper = Housekeeping(store, {}, index_every=60.0)
    if not store.is_sqlite:  # PostgreSQL's index follows every write itself
        assert search.index_new(store) == search.unindexed(store) == 0
        return
    before = search.unindexed(store)
    assert before == 30  # submitted after the migration: not indexed at submit (its cost)
    keeper.tick(100.0)
    assert search.unindexed(store) == 0 and keeper.next_index == 160.0
    repo.submit(store, build_spec({"command": ["true"], "name": "late-arrival"}), time.time())
    assert ids(queries.list_jobs(store, JobFilter(search="late-arr"))) == [
        31
    ]  # read from the table meanwhile
    keeper.tick(160.0)
    assert search.unindexed(store) == 0
    assert ids(queries.list_jobs(store, JobFilter(search="late-arr"))) == [31]


@pytest.mark.sqlite_only(reason="the FTS5 query built from a search's literal pieces")
def test_fts_queries_cover_every_match():
    assert search.fts_query("ab") is None and search.fts_query("a%bc_d") is None
    assert search.fts_query('say "hi"') == '" ""h" AND """hi" AND "ay " AND "hi""" AND "say" AND "y """'
    assert search.fts_query("x%abcd") == '"abc" AND "bcd"'


def test_the_migration_indexes_the_jobs_already_there(store, db_path):
    """A database from before schema v11 (its jobs in place): opened, every job is searchable
    through the new indexes at once, and its tags are in job_tag."""
    from jobrunner.store import open_store
    from jobrunner.store.migrations import SCHEMA_VERSION

    fill(store, 40)
    if store.is_sqlite:
        undo = ["DROP TABLE job_search", "DROP TABLE job_tag", "DROP INDEX job_priority_done",
                "DELETE FROM meta WHERE key = 'search_indexed_to'"]  # fmt: skip
        undo += [f"DROP TRIGGER {name}" for name in ("job_search_edit", "job_search_gone", "job_tag_edit",
                                                     "job_tag_gone")]  # fmt: skip
        undo += ["DROP TABLE job_by_name", "DROP TABLE job_by_created"]  # v13: tables and triggers
        undo += [f"DROP TRIGGER {t}_{e}" for t in ("job_by_name", "job_by_created") for e in ("edit", "gone")]
    else:
        undo = ["DROP TABLE job_tag", "DROP FUNCTION job_tag_sync CASCADE", "DROP TABLE job_text",
                "DROP FUNCTION job_text_sync CASCADE", "DROP INDEX job_priority_done"]  # fmt: skip
    for statement in [*undo, "UPDATE meta SET value = '10' WHERE key = 'schema_version'"]:
        sql(store, statement)
    store.close()
    reopened = open_store(str(db_path))
    try:
        assert sql(reopened, "SELECT value FROM meta WHERE key = 'schema_version'") == [
            (str(SCHEMA_VERSION),)
        ]
        assert search.unindexed(reopened) == 0
        for text in ("build", "uil", "part_1", "zzz"):
            assert found(reopened, JobFilter(search=text)) == like_ids(reopened, text), text
        for tag in ("nightly", "eu"):
            assert found(reopened, JobFilter(tags=[tag])) == tag_ids(reopened, tag), tag
        if reopened.is_sqlite:  # v13: every job in the sort tables, read in order
            assert sql(reopened, "SELECT COUNT(*) FROM job_by_name") == [(40,)]
            by_name = [job["id"] for job in queries.list_jobs(reopened, limit=None, order_by="name")]
            assert [job["id"] for job in queries.list_jobs(reopened, limit=40, order_by="name")] == by_name
    finally:
        reopened.close()


def test_every_door_that_stores_a_job_makes_it_searchable_at_once(store):
    """Every way a job is stored (a submit with or without the daemons' wake-up, a bulk submit,
    a unique key each way, dependencies; a schedule's fire submits through these) leaves it
    found by a search of its name: on PostgreSQL the inserting statement writes its text (no
    trigger since schema v14)."""
    now = time.time()
    made = [repo.submit(store, build_spec({"command": ["true"], "name": "door-plain"}), now)]
    store.poke_on_commit = not store.poke_on_commit  # the other statement: with/without NOTIFY
    made.append(repo.submit(store, build_spec({"callable": "pkg.m:f", "name": "door-other"}), now))
    store.poke_on_commit = not store.poke_on_commit
    made += repo.submit_many(store, [build_spec({"command": ["true"], "name": f"door-bulk-{n}"}) for n in range(3)], now)
    for mode in ("reuse", "replace"):
        keyed = {"command": ["true"], "name": f"door-key-{mode}", "unique_key": "k", "on_conflict": mode}
        made.append(repo.submit(store, build_spec(keyed), now))
    waiting = build_spec({"command": ["true"], "name": "door-after"})
    waiting.after = [made[0]]
    made.append(repo.submit(store, waiting, now))
    names = dict(sql(store, "SELECT id, name FROM job"))
    for job_id in made:
        assert ids(queries.list_jobs(store, JobFilter(search=names[job_id]), limit=None)) == [job_id], names[job_id]
    if not store.is_sqlite:
        assert sql(store, "SELECT id FROM job WHERE id NOT IN (SELECT job_id FROM job_text)") == []
