"""The store on the real PostgreSQL server: schema, submit, claim, finish, counts and pages.

SQLite is where everything else is tested; these cover the statements that differ (hints,
placeholders, partial indexes, RETURNING, SKIP LOCKED) on the server users move to.
"""

from __future__ import annotations

import time

import pytest

from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.states import Status
from jobrunner.store import open_store, queries, repo, runs
from jobrunner.store.migrations import SCHEMA_VERSION, current_version
from jobrunner.store.queries import JobFilter

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_url):
    store = open_store(postgres_url)
    store.poke_on_commit = False
    yield store
    store.close()


def test_a_job_goes_from_submit_to_succeeded_on_postgresql(pg, tmp_path):
    assert current_version(pg) == SCHEMA_VERSION
    now = time.time()
    ids = repo.submit_many(pg, [build_spec({"callable": "m:f", "queue": q}) for q in ("a", "a", "b")], now)
    ids.append(repo.submit(pg, build_spec({"command": ["true"], "priority": "high"}), now))
    claims = runs.claim(pg, "owner", now, 10, 30.0, str(tmp_path))
    assert [c.id for c in claims] == [ids[3], *ids[:3]]  # highest priority first, then FIFO
    assert runs.claim(pg, "other", now, 10, 30.0, str(tmp_path)) == []  # nothing left to take
    outcomes = [runs.Outcome(c.id, c.attempt, result={"n": c.id}) for c in claims[:3]]
    recorded = runs.finish(pg, "owner", outcomes, now + 1)
    assert [r.status for r in recorded] == [Status.SUCCEEDED] * 3
    stale = runs.finish(pg, "owner", outcomes[:2], now + 2)  # already recorded: nothing changes
    assert [r.status for r in stale] == [None, None]
    job = queries.get_job(pg, claims[0].id)
    assert job["status"] == "succeeded" and job["result"] == {"n": claims[0].id}
    assert [e["to"] for e in queries.job_events(pg, claims[0].id)] == ["queued", "running", "succeeded"]

    stats = queries.stats(pg)
    assert stats["total"] == 4 and stats["by_status"]["succeeded"] == 3 and stats["by_status"]["running"] == 1
    assert queries.count_jobs(pg) == 4
    assert queries.count_jobs(pg, JobFilter(statuses=[Status.SUCCEEDED])) == 3
    page = queries.list_jobs(pg, JobFilter(statuses=[Status.RUNNING, Status.SUCCEEDED]), limit=2)
    assert [j["id"] for j in page] == sorted(ids, reverse=True)[:2]
    assert len(runs.heartbeat(pg, "owner", now + 3, 30.0, busy=1)) == 1
    assert runs.cancel_requests(pg, "owner") == []
    assert queries.finished_since(pg, now) == 3


@pytest.mark.parametrize(("durability", "setting"), [("normal", "off"), ("full", "on")])
def test_durability_sets_synchronous_commit_on_postgresql(postgres_url, durability, setting):
    """durability "normal" (the default) commits without waiting for the WAL flush, as
    synchronous=NORMAL does on SQLite; "full" waits for it. A reopened connection keeps it."""
    store = open_store(postgres_url, durability=durability)
    try:
        assert store.execute("SHOW synchronous_commit").fetchone()[0] == setting
        store.close()  # the next statement connects again, with the same setting
        assert store.execute("SHOW synchronous_commit").fetchone()[0] == setting
    finally:
        store.close()
    with open_store(postgres_url, migrate=False) as default:
        assert default.execute("SHOW synchronous_commit").fetchone()[0] == "off"


def test_the_daemons_claim_is_prepared_once_and_survives_losing_it(pg, tmp_path):
    """The daemon's store prepares its claim once per connection (the server plans it once).
    Should the statement vanish from the session under it (a pooler handing the transaction
    to another server session: here DEALLOCATE), that claim fails in one StoreError and the
    store claims with the plain statement from then on; nothing is claimed twice or lost."""
    from jobrunner.errors import StoreError
    from tests.conftest import sql

    assert pg.prepare_hot is True
    now = time.time()
    ids = [repo.submit(pg, build_spec({"command": ["true"]}), now) for _ in range(3)]
    [first] = runs.claim(pg, "owner", now, 1, 30.0, str(tmp_path))
    assert first.id == ids[0]
    names = sorted(name for (name,) in sql(pg, "SELECT name FROM pg_prepared_statements"))
    assert [name.rsplit("_", 1)[0] for name in names] == ["jobrunner_claim_0_0", "jobrunner_submit_0"]
    pg.execute("DEALLOCATE ALL")
    with pytest.raises(StoreError):
        runs.claim(pg, "owner", now, 1, 30.0, str(tmp_path))
    assert pg.prepare_hot is False
    rest = runs.claim(pg, "owner", now, 10, 30.0, str(tmp_path))
    assert [c.id for c in rest] == ids[1:] and sql(pg, "SELECT name FROM pg_prepared_statements") == []
    assert sorted(sql(pg, "SELECT id, attempts FROM job WHERE status = 'running'")) == [(i, 1) for i in ids]


def test_a_submit_is_prepared_once_and_never_fails_for_losing_it(pg):
    """A submit runs prepared (planned once per connection). Should the statement vanish from
    the session (a pooler's doing: here DEALLOCATE), that submit runs the plain statement at
    once instead: the caller sees no error, and each job is stored exactly once."""
    from tests.conftest import sql

    now = time.time()
    first = repo.submit(pg, build_spec({"command": ["true"], "name": "one"}), now)
    [(prepared,)] = sql(pg, "SELECT name FROM pg_prepared_statements")
    assert prepared.startswith("jobrunner_submit_0_")
    pg.execute("DEALLOCATE ALL")
    second = repo.submit(pg, build_spec({"command": ["true"], "name": "two"}), now)
    third = repo.submit(pg, build_spec({"command": ["true"], "name": "three"}), now)
    assert pg.prepare_hot is False and sql(pg, "SELECT name FROM pg_prepared_statements") == []
    assert sql(pg, "SELECT id, name FROM job ORDER BY id") == [(first, "one"), (second, "two"), (third, "three")]
    assert sql(pg, "SELECT job_id FROM event WHERE message = 'submitted' ORDER BY job_id") == [(first,), (second,), (third,)]


def test_a_bulk_submit_beside_other_submitters_writes_one_submitted_event_a_job(postgres_url):
    """Bulk submits while another connection submits one job at a time: the ids interleave
    (one sequence), and every job, ours or theirs, has exactly one 'submitted' event and its
    search text. Its events written for 'every id past our first' duplicated the others'."""
    import threading

    bulk, single = open_store(postgres_url), open_store(postgres_url)
    bulk.poke_on_commit = single.poke_on_commit = False
    done = threading.Event()
    singles: list[int] = []

    def submit_one_at_a_time() -> None:
        while not done.is_set():
            singles.append(repo.submit(single, build_spec({"command": ["true"], "name": "single"}), time.time()))

    thread = threading.Thread(target=submit_one_at_a_time)
    thread.start()
    try:
        spec = build_spec({"command": ["true"], "name": "bulk"})
        batches = [repo.submit_many(bulk, [spec] * 300, time.time()) for _ in range(5)]
    finally:
        done.set()
        thread.join()
    try:
        for ids in batches:
            assert ids == sorted(ids) and len(set(ids)) == 300  # in the order given
            names = dict(bulk.execute("SELECT id, name FROM job WHERE id = ANY(%s)", (ids,)).fetchall())
            assert set(names.values()) == {"bulk"}
        assert singles, "the other connection submitted nothing meanwhile"
        counts = dict(bulk.execute("SELECT job_id, count(*) FROM event WHERE message = 'submitted' "
                                   "GROUP BY job_id").fetchall())  # fmt: skip
        total = bulk.execute("SELECT count(*) FROM job").fetchone()[0]
        assert len(counts) == total and set(counts.values()) == {1}
        texts = bulk.execute("SELECT count(*) FROM job_text").fetchone()[0]
        assert texts == total
    finally:
        bulk.close()
        single.close()


def test_a_transaction_sends_begin_with_its_first_statement(postgres_url):
    """A write transaction is its statements and COMMIT, one round trip each: BEGIN goes in
    front of the first statement, in the same message (store/pgbegin.py), not on its own. It
    is still a transaction: one that fails leaves nothing, and one that ran nothing sends
    nothing at all."""
    from tests.pgproxy import PgProxy

    with PgProxy() as proxy:
        store = open_store(proxy.url(postgres_url))
        store.poke_on_commit = False
        try:
            store.execute("SELECT 1")  # connected
            with proxy.record() as sent, store.write():
                store.execute("UPDATE queue_state SET paused = paused WHERE name = 'nothing'")
                store.execute("SELECT count(*) FROM job")
            assert sent == ["BEGIN; UPDATE queue_state SET paused = paused WHERE name = 'nothing'",
                            "SELECT count(*) FROM job", "COMMIT"]  # fmt: skip
            with proxy.record() as sent, store.write():
                pass
            assert sent == []
            from psycopg2 import sql as composed

            with proxy.record() as sent, store.write():  # a composed statement: BEGIN on its own
                store.cursor().execute(composed.SQL("SELECT {}").format(composed.Literal(1)))
            assert sent == ["BEGIN", "SELECT 1", "COMMIT"]
            job = repo.submit(store, build_spec({"command": ["true"]}), time.time())
            with proxy.record() as sent, pytest.raises(RuntimeError), store.write():
                store.execute("UPDATE job SET name = 'renamed' WHERE id = %s", (job,))
                raise RuntimeError("the caller fails midway")
            assert sent[0].startswith("BEGIN; UPDATE job") and sent[-1] == "ROLLBACK"
            assert queries.get_job(store, job)["name"] != "renamed"
        finally:
            store.close()


def test_a_turn_of_progress_reports_and_successes_is_a_round_trip_each(postgres_url, tmp_path):
    """The daemon's turn on PostgreSQL: the progress of many running jobs in one message, their
    successes (with their events) in one statement, then the commit: three round trips for
    five jobs, where a statement a job made eleven. What they write is all there."""
    from tests.pgproxy import PgProxy

    with PgProxy() as proxy:
        store = open_store(proxy.url(postgres_url))
        store.poke_on_commit = False
        try:
            now = time.time()
            repo.submit_many(store, [build_spec({"command": ["true"]})] * 5, now)
            claims = runs.claim(store, "owner", now, 5, 30.0, str(tmp_path))
            with proxy.record() as sent, store.write():
                runs.save_progress(store, [(c.id, c.attempt, 0.5, f"half of {c.id}") for c in claims], now)
                recorded = runs.finish(store, "owner", [runs.Outcome(c.id, c.attempt, result=c.id) for c in claims], now)
            assert len(sent) == 3 and sent[-1] == "COMMIT", sent
            assert [r.status for r in recorded] == [Status.SUCCEEDED] * 5
            for claim in claims:
                job = queries.get_job(store, claim.id)
                assert (job["status"], job["result"], job["progress"], job["progress_message"]) == (
                    "succeeded", claim.id, 1.0, f"half of {claim.id}")
                assert [e["to"] for e in queries.job_events(store, claim.id)] == ["queued", "running", "succeeded"]
        finally:
            store.close()


def test_a_turn_of_failures_is_two_round_trips_however_many(postgres_url, tmp_path):
    """Failed attempts on PostgreSQL: their rows (and whether jobs wait on them) read under lock
    in one statement, their updates and events in one message, then the commit (each attempt
    took three round trips, and a look-up for dependents). The retry policy still decides each one: a job with retries left is
    retrying, one without is dead, one cancelled meanwhile is cancelled, and an attempt given
    twice or no longer running is stale."""
    from jobrunner.domain.failures import Failure, FailureKind
    from tests.pgproxy import PgProxy

    with PgProxy() as proxy:
        store = open_store(proxy.url(postgres_url))
        store.poke_on_commit = False
        try:
            now = time.time()
            retrying = build_spec({"command": ["false"], "retries": 2})
            repo.submit_many(store, [retrying] * 3 + [build_spec({"command": ["false"], "retries": 0})] * 3, now)
            claims = runs.claim(store, "owner", now, 6, 30.0, str(tmp_path))
            store.execute("UPDATE job SET cancel_requested = TRUE WHERE id = %s", (claims[2].id,))
            failure = Failure(FailureKind.EXIT, "exit code 1", exit_code=1)
            outcomes = [runs.Outcome(c.id, c.attempt, failure=failure) for c in claims]
            outcomes.append(runs.Outcome(claims[0].id, claims[0].attempt, failure=failure))  # twice
            outcomes.append(runs.Outcome(claims[1].id, claims[1].attempt + 1, failure=failure))  # not running
            with proxy.record() as sent, store.write():
                recorded = runs.finish(store, "owner", outcomes, now)
            assert len(sent) == 3 and sent[-1] == "COMMIT", sent
            by_job = {c.id: queries.get_job(store, c.id)["status"] for c in claims}
            assert [by_job[c.id] for c in claims] == ["retrying", "retrying", "cancelled", "dead", "dead", "dead"]
            assert [r.status for r in recorded] == [
                Status.RETRYING, Status.RETRYING, Status.CANCELLED, Status.DEAD, Status.DEAD, Status.DEAD, None, None]
            for claim in claims:
                assert [e["to"] for e in queries.job_events(store, claim.id)] == ["queued", "running", by_job[claim.id]]
        finally:
            store.close()


def test_a_write_whose_session_the_server_ended_says_why_and_the_next_reconnects(pg, postgres_url):
    """The server ends the session (a restart, pg_terminate_backend) before a write: the write
    fails in one StoreError that says the server closed the connection (not what a ROLLBACK on
    the closed connection would say on top of it), nothing is written, and the next write
    connects again."""
    import psycopg2

    from jobrunner.errors import StoreError

    job = repo.submit(pg, build_spec({"command": ["true"]}), time.time())
    (pid,) = pg.execute("SELECT pg_backend_pid()").fetchone()
    admin = psycopg2.connect(postgres_url)
    try:
        admin.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
        admin.commit()
    finally:
        admin.close()
    with pytest.raises(StoreError) as failed, pg.write():
        pg.execute("UPDATE job SET name = 'renamed' WHERE id = %s", (job,))
    assert "server closed the connection" in str(failed.value), failed.value
    with pg.write():
        pg.execute("UPDATE job SET priority = 7 WHERE id = %s", (job,))
    assert queries.get_job(pg, job)["name"] != "renamed"
