"""What differs between SQLite and PostgreSQL, and nothing else: placeholders and hot statements.

Hot statements are plain text built once: peewee's query builder costs several
times the statement itself on the submit/claim/finish paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobrunner.store.migrations import KEY_HELD

JOB_INSERT_COLUMNS = (
    "name", "kind", "task", "command", "callable", "args", "kwargs", "queue", "priority",
    "status", "max_retries", "timeout", "backoff_base", "backoff_factor", "backoff_max",
    "retry_on", "retry_on_exit_codes", "tags", "metadata", "cwd", "env", "created_at",
    "run_at", "updated_at", "memory_limit", "cpu_time_limit", "max_log_size",
)  # fmt: skip

EVENT_INSERT_COLUMNS = ("job_id", "at", "attempt", "from_status", "to_status", "message", "details")


#: A new job's id on SQLite: one past both the highest id in the table and the highest one a
#: purge ever deleted (meta's job_id_floor), so no id is handed out twice. SQLite alone gives
#: max(rowid)+1, which a purge of the newest jobs hands out again; AUTOINCREMENT would too, but it
#: rewrites sqlite_sequence on every insert: a fifth of a submit (benchmarks/enqueue.py).
#: NULL on an empty new database: SQLite then picks 1.
NEXT_JOB_ID = (
    "(SELECT MAX(x) + 1 FROM (SELECT MAX(id) AS x FROM job "
    "UNION ALL SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'job_id_floor'))"
)
#: Before jobs are deleted: the floor rises to the highest id in the table (run in the delete's
#: transaction; SQLite only).
RAISE_JOB_ID_FLOOR = (
    "INSERT INTO meta (key, value) SELECT 'job_id_floor', CAST(MAX(id) AS TEXT) FROM job WHERE true "
    "ON CONFLICT (key) DO UPDATE SET value = CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)"
)


_SUBMIT_STATEMENTS: dict[tuple[str, bool], str] = {}


def job_text(row: str = "") -> str:
    """PostgreSQL: the text job_text holds for a job, its trigram index's (store/search.py)."""
    return f"{row}name || chr(10) || COALESCE({row}command, '') || chr(10) || COALESCE({row}callable, '')"


#: PostgreSQL: a statement that inserts jobs (as `j`, RETURNING at least these) writes their
#: job_text rows itself, in one more part of its WITH, where a trigger called a function per
#: row (a submit's round trip 211 -> 207 µs, interleaved runs: small, and kept).
WITH_TEXT = f"t AS (INSERT INTO job_text (job_id, text) SELECT id, {job_text()} FROM j)"
TEXT_COLUMNS = "name, command, callable"


@dataclass(frozen=True)
class Backend:
    """Statement text for one database kind."""

    name: str
    param: str  # the driver's placeholder

    def placeholders(self, count: int) -> str:
        return ", ".join([self.param] * count)

    @property
    def insert_job(self) -> str:
        cols = ", ".join(JOB_INSERT_COLUMNS)
        values = self.placeholders(len(JOB_INSERT_COLUMNS))
        if self.name == "postgresql":  # SERIAL: a sequence that never goes back
            return (f"WITH j AS (INSERT INTO job ({cols}) VALUES ({values}) RETURNING id, {TEXT_COLUMNS}), "
                    f"{WITH_TEXT} SELECT id FROM j")  # fmt: skip
        return f"INSERT INTO job (id, {cols}) VALUES ({NEXT_JOB_ID}, {values})"

    def submit_statement(self, notify: bool) -> str:
        """PostgreSQL: a job, its 'submitted' event and (`notify`) the daemons' wake-up in one
        statement, run on its own (autocommit: its own transaction): one round trip to the server
        where BEGIN, two INSERTs, pg_notify and COMMIT took five. Its parameters: a job row, the
        event's time, and with `notify` the channel and sender. Returns the job's id. Built once
        (the same text object each time: its hash, a prepared statement's key, is kept)."""
        key = (self.name, notify)
        found = _SUBMIT_STATEMENTS.get(key)
        if found is None:
            found = _SUBMIT_STATEMENTS[key] = self._submit_statement(notify)
        return found

    def _submit_statement(self, notify: bool) -> str:
        cols = ", ".join(JOB_INSERT_COLUMNS)
        values = self.placeholders(len(JOB_INSERT_COLUMNS))
        events = ", ".join(EVENT_INSERT_COLUMNS)
        woken = ", pg_notify(%s, %s)" if notify else ""
        return (
            f"WITH j AS (INSERT INTO job ({cols}) VALUES ({values}) RETURNING id, status, {TEXT_COLUMNS}), "
            f"e AS (INSERT INTO event ({events}) SELECT id, %s, 0, NULL, status, 'submitted', NULL FROM j), "
            f"{WITH_TEXT} SELECT id{woken} FROM j"
        )

    @property
    def insert_jobs(self) -> str:
        """PostgreSQL's bulk submit: many jobs (psycopg2's execute_values fills `VALUES %s`), their
        'submitted' events and search text in one statement a page. Its events come from its own
        rows: read back by id (every id past the first), they took in the jobs another connection
        submitted meanwhile, whose ids fall among ours (one sequence), and wrote theirs twice."""
        cols = ", ".join(JOB_INSERT_COLUMNS)
        events = ", ".join(EVENT_INSERT_COLUMNS)
        return (
            f"WITH j AS (INSERT INTO job ({cols}) VALUES %s RETURNING id, status, created_at, {TEXT_COLUMNS}), "
            f"e AS (INSERT INTO event ({events}) SELECT id, created_at, 0, NULL, status, 'submitted', NULL "
            f"FROM j ORDER BY id), {WITH_TEXT} SELECT id FROM j"
        )

    @property
    def insert_keyed_job(self) -> str:
        """insert_job for a job with a unique key (one more value, last): RETURNING its id, or
        nothing when an unfinished job holds the key (the partial unique index decides)."""
        cols = ", ".join((*JOB_INSERT_COLUMNS, "unique_key"))
        values = self.placeholders(len(JOB_INSERT_COLUMNS) + 1)
        if self.name == "postgresql":
            return (f"WITH j AS (INSERT INTO job ({cols}) VALUES ({values}) "
                    f"ON CONFLICT (unique_key) WHERE {KEY_HELD} DO NOTHING RETURNING id, {TEXT_COLUMNS}), "
                    f"{WITH_TEXT} SELECT id FROM j")  # fmt: skip
        return (f"INSERT INTO job (id, {cols}) VALUES ({NEXT_JOB_ID}, {values}) "
                f"ON CONFLICT (unique_key) WHERE {KEY_HELD} DO NOTHING RETURNING id")  # fmt: skip

    @property
    def insert_event(self) -> str:
        cols = ", ".join(EVENT_INSERT_COLUMNS)
        return f"INSERT INTO event ({cols}) VALUES ({self.placeholders(len(EVENT_INSERT_COLUMNS))})"

    @property
    def events_for_new_jobs(self) -> str:
        """One event per job inserted after id `?`: bulk submit writes its history in one statement."""
        p = self.param
        return (
            "INSERT INTO event (job_id, at, attempt, from_status, to_status, message) "
            f"SELECT id, created_at, 0, NULL, status, {p} FROM job WHERE id > {p} ORDER BY id"
        )


SQLITE = Backend(name="sqlite", param="?")
POSTGRESQL = Backend(name="postgresql", param="%s")


# peewee imports psycopg2 when it is imported, if it is installed: about 50 ms of a CLI
# command's start-up here, spent even when the database is a SQLite file.
# An entry point that opens SQLite files can block them before anything imports peewee:
#     for name in POSTGRES_DRIVERS: sys.modules.setdefault(name, None)
# (it cannot import this module for that: jobrunner.store imports peewee). jobrunner.store.db
# lifts the block right after its own `import peewee`, and open_store hands peewee the driver
# when a postgresql:// URL is opened; a worker hands it both before a job's Python code runs
# (restore_drivers), so a job's own peewee is the one it would get anywhere else. Without the
# block, all of these are no-ops.
POSTGRES_DRIVERS = ("psycopg2", "psycopg2cffi", "psycopg")  # psycopg (3): 70-150 ms more where installed


def release_deferred_drivers() -> None:
    """Let later imports of the PostgreSQL drivers work again once peewee is imported."""
    import sys

    for name in POSTGRES_DRIVERS:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def restore_drivers(peewee: Any) -> None:
    """Give a peewee imported with the drivers blocked every driver it would have found, as a
    job's own `import peewee` would (psycopg2, and psycopg 3 for prefer_psycopg3 or alone)."""
    load_postgres_driver(peewee)
    if getattr(peewee, "psycopg", None) is not None:
        return
    try:
        import psycopg
        from psycopg.pq import TransactionStatus
        from psycopg.types.json import Json, Jsonb
    except ImportError:
        return
    for name, value in {"psycopg": psycopg, "TransactionStatus": TransactionStatus,
                        "Json_pg3": Json, "Jsonb_pg3": Jsonb}.items():  # fmt: skip
        setattr(peewee, name, value)
    adapter = getattr(peewee, "Psycopg3Adapter", None)
    if adapter is not None:  # set in its class body only when psycopg was importable
        adapter.txn_idle = TransactionStatus.IDLE
        adapter.txn_inerror = TransactionStatus.INERROR
        adapter.txn_unknown = TransactionStatus.UNKNOWN


def load_postgres_driver(peewee: Any) -> None:
    """Give a peewee imported with the drivers blocked the psycopg2 it would have imported.

    Mirrors peewee's own import-time driver block (globals, the UUID adapter, the adapter's
    status constants); a peewee that already has a driver is left alone.
    """
    if getattr(peewee, "psycopg2", None) is not None:
        return
    try:
        from psycopg2cffi import compat  # as peewee does: it then answers to `import psycopg2`

        compat.register()
    except ImportError:
        pass
    try:
        import psycopg2
        from psycopg2 import extensions
        from psycopg2.extras import Json, register_uuid
    except ImportError:
        return  # peewee reports the missing driver itself, as it would have anyway
    register_uuid()
    found = {"psycopg2": psycopg2, "pg_extensions": extensions, "Json_pg2": Json,
             "pg_register_uuid": register_uuid}  # fmt: skip
    try:
        from psycopg2 import errors

        found["pg_errors"] = errors
    except ImportError:  # pragma: no cover - very old psycopg2
        pass
    for name, value in found.items():  # every name the block would have bound, whichever version
        setattr(peewee, name, value)
    adapter = getattr(peewee, "Psycopg2Adapter", None)
    if adapter is not None:  # peewee 4: set in its class body only when psycopg2 was importable
        adapter.txn_idle = extensions.TRANSACTION_STATUS_IDLE
        adapter.txn_inerror = extensions.TRANSACTION_STATUS_INERROR
        adapter.txn_unknown = extensions.TRANSACTION_STATUS_UNKNOWN
