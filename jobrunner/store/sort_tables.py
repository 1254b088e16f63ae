"""Pages sorted by name, age, tries, progress or finish time at a million jobs, on SQLite:
tables of each job's value in order, so a page sorted by one reads them instead of sorting
every job (at a million, a page sorted by name took 107 ms, by age 275 ms, by tries 240 ms,
by progress 174 ms, the dead letters by when they died 60-125 ms; read in order, 1-45 ms).

Not indexes on `job`: one on name took 11% off enqueue, name and age 20%, and tries and
progress 25-40% off a claim and its finish (all measured). The tables are filled with the
search index's batches (search.index_new, the daemon's housekeeping) up to the same mark, and
the jobs past it are sorted on their own and merged in (store/pages.py).

Name and age are set at submit and hardly ever change: triggers follow an edit or a delete of a
job below the mark. Tries, progress and finish time change as jobs run, so RUN_TABLE (with each
job's status and queue, so a filter by status reads a range of its own) follows the event
table instead: it is a feed of every change in commit order (one writer at a time hands out
event ids in that order), as every change of a job's status, queue, tries, progress or finish
time writes an event in its transaction (claim, finish, release, promotion, cancel, retry,
edit), but one: a progress report, which only a running job takes. So the table holds no
running job, the batch re-reads the jobs with events past its own mark (FEED_MARK), and a page
reads running jobs (a few) and the jobs with events past the mark from their rows. It costs
the daemon about 10 µs a job (its row in the batch, and again after it ran), where an index on
`job` cost a claim and its finish 26-37 µs.

PostgreSQL has plain indexes on (name, id) and (created_at, id) instead (schema v14), and on
(attempts, id) and (progress, id) (v15): there a b-tree costs a submit about 2 µs of a 200 µs
round trip and a claim or finish nothing measurable, and its jobs commit out of id order, so
no mark would hold.
"""

from __future__ import annotations

from jobrunner.store.db import Store
from jobrunner.store.search import MARK_SQL

#: The columns set at submit that have a table, and its name.
TABLES = {"name": "job_by_name", "created_at": "job_by_created"}
#: Each column's type as in `job`: the same affinity on both arms of a page's merge, or SQLite
#: sorts every row instead of merging (and a value sorts as it does in `job`).
TYPES = {"name": "TEXT", "created_at": "REAL"}
#: Columns that change while jobs run (tries, progress, finish time), followed through the event feed (a trigger on them would
#: run in every claim), in one table keyed by job id (a job's old values are not known when it
#: changes) with the job's status and queue, and an index by (status, value) per column: a page
#: merges a range per status, in (value, id) order, so a filter by status reads only its jobs.
FOLLOWED = ("attempts", "progress", "finished_at")
RUN_TABLE = "job_by_run"
#: Every sort a table serves (queries.SORTABLE's others: store/pages.py's arms).
SORTS = (*TABLES, *FOLLOWED)
#: meta's key for the highest event id whose jobs RUN_TABLE holds as they are now.
FEED_MARK = "sort_feed_to"
FEED_MARK_SQL = f"(SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{FEED_MARK}')"
#: The jobs changed since the feed mark: a page reads them from their rows.
CHANGED_SQL = f"(SELECT job_id FROM event WHERE id > COALESCE({FEED_MARK_SQL}, 0))"
#: Events read per batch, so one batch holds the write lock for a few milliseconds.
FEED_BATCH = 5000
_RUN_COLUMNS = "job_id, status, queue, attempts, progress, finished_at"


def run_index(column: str) -> str:
    """RUN_TABLE's index by (status, `column`): a page's arm reads a status's range in order."""
    return f"{RUN_TABLE}_{column}"


def schema(column: str) -> tuple[str, ...]:
    """The table of `column` (set at submit) and the triggers that keep it in step with jobs
    below the mark."""
    table, mark = TABLES[column], MARK_SQL
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (k {TYPES[column]} NOT NULL, job_id INTEGER NOT NULL, "
        "PRIMARY KEY (k, job_id)) WITHOUT ROWID",
        f"CREATE TRIGGER IF NOT EXISTS {table}_edit AFTER UPDATE OF {column} ON job "
        f"WHEN OLD.id <= {mark} AND OLD.{column} IS NOT NEW.{column} BEGIN "
        f"DELETE FROM {table} WHERE k = OLD.{column} AND job_id = OLD.id; "
        f"INSERT OR IGNORE INTO {table} (k, job_id) VALUES (NEW.{column}, NEW.id); END",
        f"CREATE TRIGGER IF NOT EXISTS {table}_gone AFTER DELETE ON job WHEN OLD.id <= {mark} BEGIN "
        f"DELETE FROM {table} WHERE k = OLD.{column} AND job_id = OLD.id; END",
    )


#: RUN_TABLE, its indexes, and its triggers: a deleted job leaves it; and as event ids are
#: max+1 (no AUTOINCREMENT: it would rewrite a row per event), a delete of the newest events (a
#: purge of the newest jobs) would hand their ids out again below the feed mark, so after any
#: job's delete (its events go first) the mark comes down to the highest event left.
RUN_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {RUN_TABLE} (job_id INTEGER PRIMARY KEY, status TEXT NOT NULL, "
    "queue TEXT NOT NULL, attempts INTEGER NOT NULL, progress REAL, finished_at REAL)",
    *(f"CREATE INDEX IF NOT EXISTS {run_index(c)} ON {RUN_TABLE} (status, {c})" for c in FOLLOWED),
    f"CREATE TRIGGER IF NOT EXISTS {RUN_TABLE}_gone AFTER DELETE ON job WHEN OLD.id <= {MARK_SQL} BEGIN "
    f"DELETE FROM {RUN_TABLE} WHERE job_id = OLD.id; END",
    "CREATE TRIGGER IF NOT EXISTS job_sort_feed_down AFTER DELETE ON job BEGIN "
    f"UPDATE meta SET value = CAST((SELECT COALESCE(MAX(id), 0) FROM event) AS TEXT) WHERE key = '{FEED_MARK}' "
    "AND CAST(value AS INTEGER) > (SELECT COALESCE(MAX(id), 0) FROM event); END",
)


def create(store: Store, columns: tuple[str, ...]) -> None:
    """In a migration's transaction (SQLite): the tables of `columns` with every job up to the
    mark (an existing database: about 1 s per million jobs, once), and their triggers."""
    for column in columns:
        for sql in RUN_SCHEMA if column in FOLLOWED else schema(column):
            store.execute(sql)
    if any(column in FOLLOWED for column in columns):
        store.execute(
            "INSERT OR REPLACE INTO meta (key, value) SELECT ?, CAST(COALESCE(MAX(id), 0) AS TEXT) FROM event",
            (FEED_MARK,),
        )
    fill(store, -1, None, columns)


def fill(store: Store, after: int, upto: int | None, columns: tuple[str, ...] = SORTS) -> None:
    """Put the jobs with `after` < id <= `upto` (None: up to the mark) in the tables: the
    caller's write transaction moves the mark past them. Running jobs stay out of RUN_TABLE
    (their progress changes without an event)."""
    limit = "?" if upto is not None else f"COALESCE({MARK_SQL}, 0)"
    params = (after, upto) if upto is not None else (after,)
    for column in columns:
        if column in TABLES:
            store.execute(
                f"INSERT OR IGNORE INTO {TABLES[column]} (k, job_id) SELECT {column}, id FROM job "
                f"WHERE id > ? AND id <= {limit}",
                params,
            )
    if any(column in FOLLOWED for column in columns):
        store.execute(
            f"INSERT OR REPLACE INTO {RUN_TABLE} ({_RUN_COLUMNS}) SELECT id, status, queue, attempts, progress, finished_at "
            f"FROM job WHERE id > ? AND id <= {limit} AND status <> 'running'",
            params,
        )


def follow(store: Store, mark: int, batch: int = FEED_BATCH) -> int:
    """In the caller's write transaction: RUN_TABLE takes the jobs up to `mark` (the search
    mark) that have events past the feed mark, as they are now, and the feed mark moves past up
    to `batch` events. Returns how many events it read."""
    (start,) = store.execute(f"SELECT COALESCE({FEED_MARK_SQL}, 0)").fetchone()
    (end, count) = store.execute(
        "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM event WHERE id > ? ORDER BY id LIMIT ?) AS e",
        (start, batch),
    ).fetchone()
    if not count:
        return 0
    changed = "SELECT job_id FROM event WHERE id > ? AND id <= ? AND job_id <= ?"
    store.execute(f"DELETE FROM {RUN_TABLE} WHERE job_id IN ({changed})", (start, end, mark))
    store.execute(
        f"INSERT INTO {RUN_TABLE} ({_RUN_COLUMNS}) SELECT id, status, queue, attempts, progress, finished_at FROM job "
        f"WHERE id IN ({changed}) AND status <> 'running'",
        (start, end, mark),
    )
    store.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (FEED_MARK, str(end)))
    return int(count)


def behind(store: Store) -> bool:
    """Events past the feed mark (a read: an idle daemon takes no write lock to find out)."""
    if not present(store):
        return False
    (found,) = store.execute(f"SELECT MAX(id) > COALESCE({FEED_MARK_SQL}, 0) FROM event").fetchone()
    return bool(found)


def present(store: Store) -> bool:
    """The tables exist (a database at schema v15 or later: every store opened is migrated)."""
    found = store.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'job_by_run'").fetchone()
    return found is not None
