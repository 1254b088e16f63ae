"""Schema versions, applied forward in order on open; each step is one transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from jobrunner.errors import StoreError

if TYPE_CHECKING:
    from jobrunner.store.db import Store


def _v1_initial(store: Store) -> None:
    from jobrunner.store.models import MODELS

    later = ("daemon", "schedule", "schedule_fire", "queue_rate")
    store.db.create_tables([m for m in MODELS if m._meta.table_name not in later], safe=True)
    for sql in (
        "CREATE INDEX IF NOT EXISTS job_claim ON job (status, priority DESC, id)",
        "CREATE INDEX IF NOT EXISTS job_due ON job (status, run_at)",
        "CREATE INDEX IF NOT EXISTS job_finished ON job (status, finished_at)",
        "CREATE INDEX IF NOT EXISTS job_queue_status ON job (queue, status)",
    ):
        store.execute(sql)


def _v2_daemons(store: Store) -> None:
    from jobrunner.store.models import Daemon

    store.db.create_tables([Daemon], safe=True)


def _v3_schedules(store: Store) -> None:
    from jobrunner.store.models import Schedule, ScheduleFire

    columns = {c.name for c in store.db.get_columns("job")}
    if "schedule" not in columns:
        store.execute("ALTER TABLE job ADD COLUMN schedule TEXT")
    store.db.create_tables([Schedule, ScheduleFire], safe=True)
    store.execute("CREATE INDEX IF NOT EXISTS job_schedule ON job (schedule, status)")


def _v4_dependencies(store: Store) -> None:
    store.execute(
        "CREATE TABLE IF NOT EXISTS job_dependency (job_id INTEGER NOT NULL REFERENCES job (id) "
        "ON DELETE CASCADE, depends_on INTEGER NOT NULL, PRIMARY KEY (job_id, depends_on))"
    )
    store.execute("CREATE INDEX IF NOT EXISTS job_dependency_on ON job_dependency (depends_on)")


def _v5_page_indexes(store: Store) -> None:
    # A page of jobs filtered by status or queue (or sorted by priority) walks one of these in
    # id order instead of sorting every match: the TUI's refresh at 100,000 jobs.
    for sql in (
        "CREATE INDEX IF NOT EXISTS job_status_id ON job (status, id)",
        "CREATE INDEX IF NOT EXISTS job_queue_id ON job (queue, id)",
        "CREATE INDEX IF NOT EXISTS job_priority_id ON job (priority, id)",
    ):
        store.execute(sql)


def _v6_lean_indexes(store: Store) -> None:
    # Every index a new job lands in is paid on every submit, and every index holding `status`
    # twice per attempt (claim, finish). Partial indexes hold only the rows their query wants,
    # so a queued job lands in two: the claim order and (status, queue). Enqueue went from about
    # 9,000 to about 18,000 rows/s with plain sqlite3 (benchmarks/enqueue.py's ceiling).
    for name in ("job_claim", "job_due", "job_finished", "job_schedule", "job_status_id",
                 "job_queue_id", "job_priority_id", "job_queue_status"):  # fmt: skip
        store.execute(f"DROP INDEX IF EXISTS {name}")
    for sql in (
        # the claim: WHERE status='queued' ... ORDER BY priority DESC, id, with no sort
        "CREATE INDEX IF NOT EXISTS job_claim_queued ON job (priority DESC, id) WHERE status='queued'",
        # promote_due / next_due: the text of the condition must match theirs exactly
        "CREATE INDEX IF NOT EXISTS job_due_waiting ON job (run_at) WHERE status IN ('scheduled', 'retrying')",
        # retention, purge and the TUI's finished-per-minute
        "CREATE INDEX IF NOT EXISTS job_finished_at ON job (finished_at) WHERE finished_at IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS job_schedule_status ON job (schedule, status) WHERE schedule IS NOT NULL",
        # status filters (a page walks it, the rowid last) and stats' counts, from the index alone
        "CREATE INDEX IF NOT EXISTS job_status_queue ON job (status, queue)",
    ):
        store.execute(sql)


def _v7_queued_jobs_in_one_index(store: Store) -> None:
    # A queued job now lands in one index only, the claim order (which carries queue and status,
    # so counting queued jobs per queue reads the index alone); the (status, queue) index holds
    # every other status. Enqueue: about a fifth faster again. The price: a query must say
    # NOT_QUEUED (below) in its own words for SQLite to use the second index.
    store.execute("DROP INDEX IF EXISTS job_claim_queued")
    store.execute("DROP INDEX IF EXISTS job_status_queue")
    store.execute("CREATE INDEX IF NOT EXISTS job_claim_queued ON job (priority DESC, id, queue, status) "
                  "WHERE status='queued'")
    store.execute(f"CREATE INDEX IF NOT EXISTS job_status_not_queued ON job (status, queue) WHERE {NOT_QUEUED}")


def _v8_ids_never_reused(store: Store) -> None:
    # SQLite gives a new row max(rowid)+1, so a purge of the newest jobs handed their ids out again
    # (and a stale finish guarded by (id, owner, attempt) could match the new job). From here on a
    # new job's id is past meta's job_id_floor too, which purges raise (backends.NEXT_JOB_ID); it
    # starts at the highest id any row still remembers. (AUTOINCREMENT would do it too, at the cost
    # of a sqlite_sequence write per submit.) PostgreSQL's SERIAL sequence never goes back.
    if not store.is_sqlite:
        return
    (highest,) = store.execute(
        "SELECT MAX(x) FROM (SELECT MAX(id) AS x FROM job UNION ALL SELECT MAX(depends_on) FROM job_dependency "
        "UNION ALL SELECT MAX(job_id) FROM schedule_fire UNION ALL SELECT MAX(last_job_id) FROM schedule)"
    ).fetchone()
    store.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('job_id_floor', ?)", (str(highest or 0),))


def _v9_unique_keys_and_rates(store: Store) -> None:
    # Unique keys: the database, not a check before the insert, keeps a key on one unfinished job,
    # whoever submits at once; a finished job leaves the index, so its key is free again. Jobs
    # without a key are not in it. Rate limits: one token bucket per queue, taken from in the
    # claim's transaction by every daemon.
    from jobrunner.store.models import QueueRate

    if "unique_key" not in {c.name for c in store.db.get_columns("job")}:
        store.execute("ALTER TABLE job ADD COLUMN unique_key TEXT")
    store.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS job_unique_key ON job (unique_key) WHERE {KEY_HELD}")
    store.db.create_tables([QueueRate], safe=True)


def _v10_resource_limits(store: Store) -> None:
    # A job's memory, CPU time and log size limits: nullable, so old rows mean "no limit" and
    # the ALTERs touch no row (both backends add a nullable column without rewriting the table).
    columns = {c.name for c in store.db.get_columns("job")}
    big, real = ("INTEGER", "REAL") if store.is_sqlite else ("BIGINT", "DOUBLE PRECISION")
    for name, kind in (("memory_limit", big), ("cpu_time_limit", real), ("max_log_size", big)):
        if name not in columns:
            store.execute(f"ALTER TABLE job ADD COLUMN {name} {kind}")


def _v12_heartbeat_interval(store: Store) -> None:
    # Each daemon's own heartbeat interval (`daemon --heartbeat`), so `status` and every reader
    # judge a daemon silent or dead by its own rhythm: a fixed 15 s took a daemon beating every
    # 30 s for dead between two beats. NULL for rows of older daemons: the default, 5 s.
    if "heartbeat_every" not in {c.name for c in store.db.get_columns("daemon")}:
        store.execute(f"ALTER TABLE daemon ADD COLUMN heartbeat_every {'REAL' if store.is_sqlite else 'DOUBLE PRECISION'}")


def _v13_sort_tables(store: Store) -> None:
    # Pages sorted by name or age at a million jobs (issue 17): SQLite gets a table of
    # (value, id) per column, filled by the daemon with the search index (store/sort_tables.py).
    # A migration that rebuilds `job` must create their triggers again (sort_tables.schema).
    if store.is_sqlite:
        from jobrunner.store import sort_tables

        sort_tables.create(store, ("name", "created_at"))


def _v14_postgres_text_and_sorts(store: Store) -> None:
    # PostgreSQL: a new job's search text is written by the statement that inserts the job
    # (backends.WITH_TEXT), not by a trigger (issue 16); and pages sorted by name or age read an
    # index (issue 17: 110-210 ms at a million jobs sorting them all -> 8-10 ms). Each b-tree
    # costs a submit about 2 µs of its 200 µs round trip there (interleaved runs), where on
    # SQLite it costs a written page per commit (sort_tables.py instead). Not for tries or
    # progress: those change at every claim and progress report, which would pay instead.
    if not store.is_sqlite:
        store.execute("DROP TRIGGER IF EXISTS job_text_new ON job")
        for column in ("name", "created_at"):
            store.execute(f"CREATE INDEX IF NOT EXISTS job_{column}_id ON job ({column}, id)")


def _v15_tries_and_progress_sort_tables(store: Store) -> None:
    # Pages sorted by tries, progress or finish time at a million jobs (issue 17): SQLite gets a
    # sort table for them, kept by the daemon from the event table (store/sort_tables.py), as an
    # index on tries or progress cost a claim and its finish 25-40% (measured). PostgreSQL gets
    # an index on each: there a claim and a finish cost the same with them, and so does a
    # progress report (interleaved runs: 785 µs a claim and its finish, 320 µs a progress
    # report, either way). The NULLs of progress and finish time first, as pages sort them
    # (queries.order_clause), so either way round is one index scan; finish time by status, as
    # the dead letters are sorted by it. And one on (queue, id): a page of every job sorted by
    # queue merged ranges of every status and queue, 20,000 rows deep 108 ms, with it 3 ms.
    if store.is_sqlite:
        from jobrunner.store import sort_tables

        sort_tables.create(store, sort_tables.FOLLOWED)
    else:
        store.execute("CREATE INDEX IF NOT EXISTS job_attempts_id ON job (attempts, id)")
        store.execute("CREATE INDEX IF NOT EXISTS job_progress_id ON job (progress ASC NULLS FIRST, id)")
        # finished jobs only: a submit and a claim write no entry of it
        store.execute("CREATE INDEX IF NOT EXISTS job_status_finished_at_id ON job (status, finished_at ASC NULLS FIRST, id) "
                      "WHERE status IN ('succeeded', 'dead', 'cancelled')")  # fmt: skip
        store.execute("CREATE INDEX IF NOT EXISTS job_queue_id ON job (queue, id)")


def _v11_search_and_page_indexes(store: Store) -> None:
    # Issue 17 at a million jobs. A search and a tag filter read an index (store/search.py):
    # SQLite gets job_tag and job_search (FTS5 trigrams), filled now and then by the daemon in
    # batches (triggers follow edits and deletes); PostgreSQL job_tag and job_text, kept by
    # triggers, with a pg_trgm index. PostgreSQL's (status, queue) index gets the id too:
    # SQLite's entries end with the rowid, so a (status, queue) range is in id order there
    # already, and a page merges such ranges (store/pages.py). A table of a million jobs takes
    # 2-4 s on SQLite, 6-12 s on PostgreSQL (measured). A migration that rebuilds `job` must
    # create the triggers again (search.SQLITE_SCHEMA, TAG_SCHEMA, PG_TAG_SCHEMA, PG_TEXT_SCHEMA).
    from jobrunner.store import search

    # jobs that left the queue by priority, for a page sorted by it (queued ones: the claim
    # index); paid by claims and finishes, not by submits (4-6% of a claim and its finish on
    # SQLite, 2% on PostgreSQL, measured). SQLite's entries end with the id (the rowid) anyway.
    columns = "priority" if store.is_sqlite else "priority, id"
    store.execute(f"CREATE INDEX IF NOT EXISTS job_priority_done ON job ({columns}) WHERE {NOT_QUEUED}")
    if store.is_sqlite:
        search.create_sqlite_indexes(store)
        return
    store.execute("DROP INDEX IF EXISTS job_status_not_queued")
    store.execute(f"CREATE INDEX job_status_not_queued ON job (status, queue, id) WHERE {NOT_QUEUED}")
    search.create_postgres_indexes(store)


#: The condition of job_status_not_queued, to be repeated word for word by a query that wants it
#: (SQLite uses a partial index only for a query whose WHERE contains that condition).
NOT_QUEUED = "status <> 'queued'"
#: The condition of job_unique_key: a key held by a job that has not finished (an upsert's
#: conflict target and a look-up of the holder repeat it word for word).
KEY_HELD = "unique_key IS NOT NULL AND status NOT IN ('succeeded', 'dead', 'cancelled')"

MIGRATIONS: list[Callable[[Store], None]] = [
    _v1_initial, _v2_daemons, _v3_schedules, _v4_dependencies, _v5_page_indexes, _v6_lean_indexes,
    _v7_queued_jobs_in_one_index, _v8_ids_never_reused, _v9_unique_keys_and_rates, _v10_resource_limits,
    _v11_search_and_page_indexes, _v12_heartbeat_interval, _v13_sort_tables,
    _v14_postgres_text_and_sorts, _v15_tries_and_progress_sort_tables,
]  # fmt: skip
SCHEMA_VERSION = len(MIGRATIONS)
MIGRATION_LOCK = 0x6A6F6272  # 'jobr': the advisory lock migrations hold on PostgreSQL


def current_version(store: Store) -> int:
    if store.is_sqlite:  # in SQL, not peewee's table_exists: a read of a current file opens without peewee
        found = store.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    else:
        found = store.db.table_exists("meta")
    if not found:
        return 0
    row = store.execute(f"SELECT value FROM meta WHERE key = {store.backend.param}", ("schema_version",)).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _foreign_keys_off(store: Store) -> Iterator[None]:
    """SQLite's foreign keys off while the schema changes: a table rebuilt by a migration is
    dropped, and with them on its DROP would delete the rows that reference it. The pragma is a
    no-op inside a transaction, so it is set around it; a step that rebuilds a table checks the
    keys itself before the commit."""
    if not store.is_sqlite:
        yield
        return
    store.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        store.execute("PRAGMA foreign_keys=ON")


def migrate(store: Store) -> int:
    """Bring the schema to SCHEMA_VERSION; safe when several processes open a new file at once."""
    if current_version(store) == SCHEMA_VERSION:
        return SCHEMA_VERSION
    from jobrunner.store.models import MODELS, Meta  # peewee: only when the schema changes

    # The models are bound to this store's database only while it migrates (peewee binds a model
    # class to one database): stores of two databases, or of two threads, never re-point each
    # other, and a process-wide lock lets one store at a time hold the binding.
    with _binding, store.db.bind_ctx(MODELS), _foreign_keys_off(store), store.write():
        if not store.is_sqlite:  # daemons on many hosts starting at once: one migrates, the others wait
            store.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        if not store.db.table_exists("meta"):
            store.db.create_tables([Meta], safe=True)
        version = current_version(store)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database {store.target} has schema v{version}, newer than this jobrunner "
                f"(v{SCHEMA_VERSION}): upgrade jobrunner"
            )
        for step in MIGRATIONS[version:]:
            step(store)
        p = store.backend.param
        store.execute(f"DELETE FROM meta WHERE key = {p}", ("schema_version",))
        store.execute(f"INSERT INTO meta (key, value) VALUES ({p}, {p})", ("schema_version", str(SCHEMA_VERSION)))
    return SCHEMA_VERSION


_binding = threading.Lock()
