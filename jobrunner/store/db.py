"""Open the database by path or URL, set its pragmas, migrate it forward, translate its errors."""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import sys
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlparse

from jobrunner import trust
from jobrunner.config import check_sqlite_path, log_dir_for
from jobrunner.errors import JobrunnerError, StoreError, UsageError
from jobrunner.store import migrations
from jobrunner.store.backends import (
    POSTGRESQL,
    SQLITE,
    Backend,
    load_postgres_driver,
    release_deferred_drivers,
)

if TYPE_CHECKING:
    import peewee

CONNECT_TIMEOUT_S = 10  # seconds libpq waits to connect to a PostgreSQL server
BUSY_TIMEOUT_S = 30.0
T = TypeVar("T")


def _peewee() -> Any:
    """peewee, imported on first use: a read of a SQLite file whose schema is current needs
    none of it (SqliteReader), and importing it is about 30 ms of such a command. Once it is in,
    the console script's block on the PostgreSQL drivers is lifted (backends.POSTGRES_DRIVERS)."""
    import peewee

    release_deferred_drivers()  # `import psycopg2` works again
    return peewee


class Store:
    """An open jobrunner database: the peewee handle, its backend's statements, and where it lives."""

    def __init__(self, db: peewee.Database | SqliteReader, backend: Backend, target: str) -> None:
        self.db = db
        self.backend = backend
        self.target = target
        # Threads of one process take turns at SQLite's write lock here: waiting on SQLite's
        # busy handler instead, a thread sleeps in growing steps (1, 2, 5 ... 100 ms) and 8
        # threads together reached half the rate of one. Re-entrant: writes nest (savepoints).
        # PostgreSQL has no such lock (each thread's connection writes beside the others'):
        # none here either, or a server's threads would submit one round trip at a time.
        self.write_lock: Any = threading.RLock() if backend is SQLITE else contextlib.nullcontext()
        # connection -> names of the hot statements prepared on it (execute_hot)
        self._prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

    @property
    def is_sqlite(self) -> bool:
        return self.backend is SQLITE

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for a server database."""
        return Path(self.target) if self.is_sqlite else None

    #: Clients wake an idle daemon after each write; the daemon turns this off for itself.
    poke_on_commit = True
    prepare_hot = True  # PostgreSQL: hot statements prepared per connection (execute_hot)

    @contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction; on SQLite it takes the write lock first (BEGIN IMMEDIATE),
        so a read-then-write never fails with 'database is locked' under contention.
        After it commits, a daemon listening on this database is poked awake. Driver errors
        come out as StoreError (a daemon carries on after one: a full disk, a long lock)."""
        try:
            with self.write_lock, translate_errors(self.target), (self.db.atomic("IMMEDIATE") if self.is_sqlite else self.db.atomic()):
                yield
                if self.poke_on_commit and not self.is_sqlite and self.db.transaction_depth() == 1:
                    from jobrunner.store.pgwake import notify

                    notify(self)  # daemons on every host, delivered with the commit (pgwake.py)
        except StoreError:
            self.drop_if_broken()
            raise
        if self.poke_on_commit and self.is_sqlite and self.db.transaction_depth() == 0:  # PostgreSQL: NOTIFY did
            from jobrunner.wakeup import poke

            poke(self.target)

    def drop_if_broken(self) -> None:
        """Close a PostgreSQL connection the server dropped (a restart, a terminated backend),
        so the next statement opens a new one (peewee connects on use): a daemon rides out a
        server restart by retrying its turn. peewee's public is_closed() still says open for a
        connection the server has closed: the driver's own flag says."""
        if self.is_sqlite or self.db.transaction_depth():
            return
        conn = self.open_connection()
        if conn is not None and getattr(conn, "closed", 0):
            with contextlib.suppress(Exception):
                self.db.close()

    def open_connection(self) -> Any:
        """This thread's driver connection if peewee has opened one, else None; never connects.
        Reads peewee's private per-thread state (its connection() would connect)."""
        return getattr(getattr(self.db, "_state", None), "conn", None)

    def joined(self) -> Any:
        """The caller's open transaction, or a new write transaction if there is none.

        Unlike a nested write() this makes no savepoint (two more statements each time): for
        the daemon's hot steps, which always run inside its one commit per turn.
        """
        return contextlib.nullcontext() if self.db.transaction_depth() else self.write()

    def indexed_by(self, index: str) -> str:
        """` INDEXED BY index` on SQLite: without ANALYZE's statistics its planner sometimes
        prefers a worse index (a partial one it would sort, or every row of a status)."""
        return f" INDEXED BY {index}" if self.is_sqlite else ""

    def cursor(self) -> Any:
        return self.db.cursor()

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        """Run one statement; a driver error comes out as StoreError (a daemon's status line, a
        lookup outside a guarded function: a dropped server connection must not end the daemon)."""
        try:
            cursor = self.db.cursor()
            cursor.execute(sql, params)
        except _driver_errors() as exc:
            self.drop_if_broken()
            raise _store_error(self.target, exc) from exc
        return cursor

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for each row (no rowcount: nothing reads it). On PostgreSQL up to a
        hundred of them go in one message (psycopg2's execute_batch), where executemany made a
        round trip a row: a daemon's turn of progress reports from 20 jobs, 20 -> 1."""
        cursor = self.db.cursor()
        if self.is_sqlite:
            cursor.executemany(sql, rows)
            return
        from psycopg2.extras import execute_batch

        execute_batch(cursor, sql, rows, page_size=100)

    def execute_hot(self, name: str, sql: str, params: tuple | list) -> Any:
        """execute(), for a statement run again and again (the daemon's claim, a submit): on
        PostgreSQL, prepared once per connection and run by name, so the server plans it once
        instead of every time (the claim: 390 -> 185 µs a round trip; a submit 272 -> 212 µs).
        The name carries a digest of the text: a session that has it (a pooler's, prepared by
        another client) runs exactly this statement. PREPARE goes with the first EXECUTE, in one
        message (one transaction to a pooler). PgBouncer in transaction mode cannot carry a
        prepared statement across transactions, nor the daemon's LISTEN: a daemon connects to
        the server (README). Through one all the same, the statement is found missing (or there
        twice) on the session a later transaction lands on: outside a transaction nothing ran,
        and the plain statement runs at once; inside one, that transaction fails (the daemon
        retries its turn). Either way this store runs its statements plainly from then on."""
        if self.is_sqlite or not self.prepare_hot:
            return self.execute(sql, params)
        name, prepare, run = _hot_statement(name, sql, len(params))
        try:
            conn = self.db.connection()
            cursor = conn.cursor()
            prepared = self._prepared.get(conn)
            if prepared is None:
                prepared = self._prepared[conn] = set()
            if name not in prepared:
                run = prepare + run
                prepared.add(name)  # kept by the session whatever becomes of this transaction
            cursor.execute(run, params)
        except _driver_errors() as exc:
            if getattr(exc, "pgcode", None) in _NOT_THIS_SESSIONS:
                self.prepare_hot = False  # a pooler between us and the server: plain statements
                if not self.db.transaction_depth():
                    return self.execute(sql, params)
            self.drop_if_broken()
            raise _store_error(self.target, exc) from exc
        return cursor

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(target: str, *, durability: str = "normal", migrate: bool = True, reading: bool = False,
               application_name: str = "jobrunner") -> Store:  # fmt: skip
    """Open (creating if needed) the database at a path or URL and bring its schema up to date.

    `reading`: for a command that only reads (`list`, `stats`): a SQLite file whose schema is
    current opens as a SqliteReader, without peewee; any other opens as usual (and migrates).
    `application_name`: what PostgreSQL's pg_stat_activity shows for its connections.
    """
    with translate_errors(target):
        if "://" in target:
            store = _open_url(target, durability, application_name)
        else:
            path = _prepare_sqlite(target)
            reader = _reader_if_current(path) if reading and migrate else None
            if reader is not None:
                return reader
            store = _open_sqlite(path, durability)
        store.db.connect(reuse_if_open=True)
        if migrate:
            migrations.migrate(store)
        return store


def _prepare_sqlite(target: str) -> Path:
    path = Path(target).expanduser()
    check_sqlite_path(path)
    # Before SQLite sees the file (any open replays a planted -wal): refuse what another user
    # could write; create a missing one O_EXCL|O_NOFOLLOW, owner-only from the first byte.
    trust.prepare_database(path, log_dir_for(str(path)))
    _enter_wal(path)
    return path


def _reader_if_current(path: Path) -> Store | None:
    """A Store on a SqliteReader if the file's schema is this jobrunner's, else None: an older
    one is migrated and a newer one refused by the usual open, in its words."""
    store = Store(SqliteReader(str(path)), SQLITE, str(path))
    try:
        if migrations.current_version(store) == migrations.SCHEMA_VERSION:
            return store
    except BaseException:
        store.close()
        raise
    store.close()
    return None


class SqliteReader:
    """The part of peewee's SqliteDatabase a command that only reads uses (Store.execute and
    close), on one plain sqlite3 connection, autocommit as peewee's. A read needs none of the
    write pragmas: the file is in WAL mode already (_enter_wal), and the busy timeout is the
    connection's own. Store.write() on it is a mistake in the caller, refused here."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self.connect()

    def connect(self, reuse_if_open: bool = False) -> bool:
        if self._conn is not None:
            return False
        self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        return True

    def cursor(self) -> sqlite3.Cursor:
        self.connect()  # after close(), as peewee's autoconnect
        assert self._conn is not None
        return self._conn.cursor()

    def is_closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def transaction_depth(self) -> int:
        return 0

    def atomic(self, *args: Any) -> Any:
        raise RuntimeError("a store opened for reading does not write: open it without reading=True")


def _open_sqlite(path: Path, durability: str) -> Store:
    peewee = _peewee()
    pragmas = {
        "journal_mode": "wal",
        "synchronous": "full" if durability == "full" else "normal",
        "foreign_keys": 1,
        "busy_timeout": int(BUSY_TIMEOUT_S * 1000),
        # checkpoint every ~32 MB of WAL, not 4 MB: a page rewritten by many commits is copied
        # back once per checkpoint, and the checkpoint's fsyncs are paid less often
        "wal_autocheckpoint": 8000,
    }
    db = peewee.SqliteDatabase(str(path), pragmas=pragmas, timeout=BUSY_TIMEOUT_S)
    return Store(db, SQLITE, str(path))


def _enter_wal(path: Path) -> None:
    """Put a new database file in WAL mode, waiting out other processes doing the same.

    Switching the journal mode needs the file to itself, and SQLite answers 'database is
    locked' at once, without its busy timeout, when another connection holds it: a dozen
    `jobrunner submit`s on a new file at once would otherwise fail some. So the switch is
    retried here until BUSY_TIMEOUT_S; a file already in WAL mode (bytes 18-19 of its header
    are 2) costs one read.
    """
    try:
        with open(path, "rb") as file:
            header = file.read(20)
    except OSError:
        return  # sqlite3 says what is wrong with it, in its own words
    if header[18:20] == b"\x02\x02":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.001
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        while True:
            try:
                if conn.execute("PRAGMA journal_mode = wal").fetchone()[0] == "wal":
                    return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked")
            time.sleep(pause)  # backing off a lock held by another process, not a wait for a state
            pause = min(pause * 2, 0.05)
    finally:
        conn.close()


def _open_url(target: str, durability: str = "normal", application_name: str = "jobrunner") -> Store:
    from jobrunner.secrets import redact_target

    url = urlparse(target)
    if url.scheme == "sqlite":
        raise UsageError(f"use a plain file path for SQLite, not {redact_target(target)!r}")
    if url.scheme not in ("postgresql", "postgres"):
        raise UsageError(f"unsupported database URL {redact_target(target)!r}: use a file path or postgresql://")
    peewee = _peewee()
    load_postgres_driver(peewee)  # a no-op unless the CLI deferred it at start-up
    try:
        from jobrunner.store import pgbegin
    except ImportError:  # no psycopg2: peewee says which driver is missing when it connects
        database_class, lazy_begin = peewee.PostgresqlDatabase, {}
    else:
        database_class, lazy_begin = pgbegin.database_class(peewee), pgbegin.CONNECT_PARAMS
    db = database_class(
        unquote(url.path.lstrip("/")) or "postgres",
        user=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        host=url.hostname or None,
        port=url.port or None,
        # durability "normal": a commit returns before its WAL is flushed; a server crash can
        # lose the last few, never corrupt (as synchronous=NORMAL on SQLite); "full" waits
        options="-c synchronous_commit=off" if durability != "full" else None,
        connect_timeout=CONNECT_TIMEOUT_S,  # a server that accepts but never answers: one line, not a hang
        application_name=application_name[:63],  # the server keeps 63 bytes
        **lazy_begin,  # BEGIN goes with a transaction's first statement (pgbegin.py)
    )
    return Store(db, POSTGRESQL, target)


def describe_db_error(target: str, exc: BaseException) -> str:
    """One line a user can act on, from a driver error."""
    from jobrunner.secrets import redact_target, redact_text  # here: a read that goes well needs none of it

    while "no transaction is active" in str(exc) and exc.__context__ is not None:
        # A commit refused for a full disk: SQLite has rolled back already, so peewee's own
        # rollback fails too; what went wrong is the error before that one.
        exc = exc.__context__
    text = redact_text(str(exc).strip(), target) or type(exc).__name__
    target = redact_target(target)  # shown below; _disk_full needs no URL
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return (
            f"database {target} is locked: another process held its write lock for over "
            f"{BUSY_TIMEOUT_S:.0f}s; nothing was written, try again"
        )
    if "disk is full" in lowered or "disk full" in lowered or ("i/o error" in lowered and _disk_full(target)):
        return f"database {target}: the disk is full; nothing was written"
    if "not a database" in lowered or "malformed" in lowered:
        return f"{target} is not a usable jobrunner database ({text})"
    if "unable to open" in lowered or "readonly" in lowered or "permission" in lowered:
        return f"cannot open database {target}: {text} (check the path and its permissions)"
    return f"database {target}: {text.splitlines()[0]}"


#: SQLSTATEs of a prepared statement missing from, or already in, the server session: not the
#: session the store prepared it on (invalid_sql_statement_name, duplicate_prepared_statement).
_NOT_THIS_SESSIONS = ("26000", "42P05")


@functools.lru_cache(maxsize=64)
def _hot_statement(name: str, sql: str, params: int) -> tuple[str, str, str]:
    """A hot statement's name (with a digest of its text), its PREPARE and its EXECUTE."""
    name = f"{name}_{zlib.crc32(sql.encode()):08x}"
    run = f"EXECUTE {name} ({', '.join(['%s'] * params)})" if params else f"EXECUTE {name}"
    return name, f"PREPARE {name} AS {_numbered(sql)}; ", run


def _numbered(sql: str) -> str:
    """psycopg2's `%s` placeholders as PREPARE's `$1`, `$2`... (the hot statements have no `%` else)."""
    parts = sql.split("%s")
    if any("%" in part for part in parts):
        raise ValueError("a statement to prepare must have no % but its placeholders")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


def _store_error(target: str, exc: BaseException) -> JobrunnerError:
    """StoreError for a driver error; a write that would give a unique key to a second unfinished
    job (a retry of a job whose key another took meanwhile) is the user's: UsageError."""
    text = str(exc)
    if "job_unique_key" in text or "job.unique_key" in text:  # the partial unique index (keys.py)
        return UsageError("nothing changed: another unfinished job holds the unique key of a job this "
                          "would put back (wait for it to end, or cancel it)")  # fmt: skip
    return StoreError(describe_db_error(target, exc))


def _disk_full(target: str) -> bool:
    """Whether the SQLite file's file system has no room left: SQLite reports a WAL index it
    could not extend as a 'disk I/O error'."""
    if "://" in target:
        return False
    try:
        stats = os.statvfs(Path(target).expanduser().parent)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 1 << 16


def _driver_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.Error]
    # only those imported: an error comes from a driver in use (and a SqliteReader has no peewee)
    for module, name in (("peewee", "PeeweeException"), ("psycopg2", "Error")):
        if sys.modules.get(module) is not None:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


@contextmanager
def translate_errors(target: str) -> Iterator[None]:
    """Turn driver exceptions into StoreError with a readable message."""
    try:
        yield
    except _driver_errors() as exc:
        raise StoreError(describe_db_error(target, exc)) from exc


def guarded(func: Callable[..., T]) -> Callable[..., T]:
    """Decorate a store function whose first argument is the Store: driver errors become StoreError."""

    @functools.wraps(func)
    def wrapper(store: Store, *args: Any, **kwargs: Any) -> T:
        # translate_errors inlined: a generator context manager costs more than a submit's SQL
        try:
            return func(store, *args, **kwargs)
        except _driver_errors() as exc:
            store.drop_if_broken()
            raise _store_error(store.target, exc) from exc

    return wrapper
