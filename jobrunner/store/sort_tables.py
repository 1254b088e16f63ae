"""Pages sorted by name or by age at a million jobs, on SQLite: for each column, a table of
(value, job id) pairs in order, so a page sorted by it reads the pairs instead of sorting every
job (at a million, a page sorted by name took 107 ms, by age 275 ms; read in order, 1 ms).

Not an index on `job`: each would cost every submit a b-tree more (one on name took 11% off
enqueue, both 20%, measured). Both columns are set at submit and hardly ever change, so the
tables are filled with the search index's batches (search.index_new, the daemon's
housekeeping) up to the same mark; triggers follow an edit or a delete of a job below it, and
the jobs past it are sorted on their own and merged in (store/pages.py).

PostgreSQL has plain indexes on (name, id) and (created_at, id) instead (schema v14): there a
b-tree costs a submit about 2 µs of a 200 µs round trip, and its jobs commit out of id order,
so no mark would hold.
"""

from __future__ import annotations

from jobrunner.store.db import Store
from jobrunner.store.search import MARK_SQL

#: The sortable columns (queries.SORTABLE) that have a table, and its name.
TABLES = {"name": "job_by_name", "created_at": "job_by_created"}
#: Each column's type as in `job`: the same affinity on both arms of a page's merge, or SQLite
#: sorts every row instead of merging (and a value sorts as it does in `job`).
TYPES = {"name": "TEXT", "created_at": "REAL"}


def schema(column: str) -> tuple[str, ...]:
    """The table of `column` and the triggers that keep it in step with jobs below the mark."""
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


def create(store: Store) -> None:
    """Schema v13 (SQLite, in the migration's transaction): the tables with every job up to the
    mark (an existing database: about 1 s per million jobs, once), and their triggers."""
    for column in TABLES:
        for sql in schema(column):
            store.execute(sql)
    fill(store, -1, None)


def fill(store: Store, after: int, upto: int | None) -> None:
    """Put the jobs with `after` < id <= `upto` (None: up to the mark) in every table: the
    caller's write transaction moves the mark past them."""
    limit = "?" if upto is not None else f"COALESCE({MARK_SQL}, 0)"
    params = (after, upto) if upto is not None else (after,)
    for column, table in TABLES.items():
        store.execute(
            f"INSERT OR IGNORE INTO {table} (k, job_id) SELECT {column}, id FROM job WHERE id > ? AND id <= {limit}",
            params,
        )


def present(store: Store) -> bool:
    """The tables exist (a database at schema v13 or later)."""
    found = store.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'job_by_name'").fetchone()
    return found is not None
