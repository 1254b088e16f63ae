"""Fixtures: an isolated home and database per test, and a CLI driver that runs the real app.

The backend is chosen for the whole run by JOBRUNNER_TEST_BACKEND (scripts/test.sh runs both):
- unset: each test's database is a SQLite file in its tmp_path; tests marked `postgres` (which
  make their own server databases) run too when the server answers, and skip when it does not.
- `sqlite`: the same, without the `postgres` tests: the PostgreSQL pass runs them.
- `postgresql`: each test's database is a fresh one on the server at 127.0.0.1:5432 (user
  postgres), dropped afterwards; the run fails at once if the server cannot be reached. It keeps
  only the tests that use a database (a fixture built on `db_path`, `another_db` or
  `postgres_url`, or the `postgres` mark): the others would only repeat the SQLite pass. A test
  about SQLite itself carries `@pytest.mark.sqlite_only(reason=...)` and is skipped with it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from typer.testing import CliRunner

from jobrunner.cli.app import app

# The fuzzers' profiles: seeded and a few hundred examples in the normal suite; thousands with
# `pytest --hypothesis-profile long`.
settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("long", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_CHOSEN = os.environ.get("JOBRUNNER_TEST_BACKEND", "").strip().lower()
BACKEND = {"": "sqlite", "postgres": "postgresql", "pg": "postgresql"}.get(_CHOSEN, _CHOSEN)
ON_POSTGRES = BACKEND == "postgresql"
#: JOBRUNNER_TEST_BACKEND=sqlite, said explicitly: the SQLite pass of a run of both.
SQLITE_PASS = _CHOSEN == "sqlite"
#: The server's administrative connection: the machine starts it, the database `test` exists.
PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
#: What a test needs to be worth running on PostgreSQL: a database from these fixtures.
DATABASE_FIXTURES = {"db_path", "postgres_url", "another_db"}


def pytest_configure(config: pytest.Config) -> None:
    if BACKEND not in ("sqlite", "postgresql"):
        raise pytest.UsageError(f"JOBRUNNER_TEST_BACKEND={BACKEND!r}: use sqlite or postgresql")
    if ON_POSTGRES:
        try:
            PgDatabases.admin().close()
        except Exception as exc:  # psycopg2 missing, or the server down: the run must fail, not skip
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise pytest.UsageError(
                f"JOBRUNNER_TEST_BACKEND=postgresql: no PostgreSQL server on 127.0.0.1:5432 ({first})"
            ) from None


def pytest_report_header(config: pytest.Config) -> str:
    if ON_POSTGRES:
        return "backend: postgresql (a fresh database per test on 127.0.0.1:5432; SQLite-only tests skipped)"
    return "backend: sqlite (JOBRUNNER_TEST_BACKEND=postgresql runs the database tests on PostgreSQL)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL: skip the SQLite-only tests with their reason, and leave out those that use
    no database at all (they ran in the SQLite pass and would only repeat it). In the SQLite
    pass: leave out the `postgres` tests (they run in the PostgreSQL pass)."""
    kept, dropped = [], []
    for item in items:
        if not ON_POSTGRES:
            (dropped if SQLITE_PASS and item.get_closest_marker("postgres") else kept).append(item)
            continue
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            assert reason, f"{item.nodeid}: sqlite_only needs a reason"
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))
            kept.append(item)
        elif DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("postgres"):
            kept.append(item)
        else:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_sessionfinish(session: pytest.Session) -> None:
    PgDatabases.shared().close()


class PgDatabases:
    """Fresh, empty databases on the local server, one per test. CREATE DATABASE costs a quarter
    of a second (its WAL flush), so a database a test is done with is recycled instead: its
    connections are ended, it is renamed (a process of the old test that connects again finds
    no database of that name), and its schema is dropped and made again, empty. One that cannot
    be recycled so is dropped WITH (FORCE)."""

    _instance: PgDatabases | None = None

    def __init__(self) -> None:
        self._names = (f"jobrunner_test_{os.getpid()}_{n}" for n in itertools.count())
        self._admin: Any = None
        self._free: list[str] = []

    @classmethod
    def shared(cls) -> PgDatabases:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @staticmethod
    def admin(dbname: str = PG_ADMIN["dbname"]) -> Any:
        import psycopg2

        conn = psycopg2.connect(**{**PG_ADMIN, "dbname": dbname}, connect_timeout=5)
        conn.autocommit = True
        conn.cursor().execute("SET synchronous_commit = off")  # test databases: no flush to wait for
        return conn

    @staticmethod
    def url(name: str) -> str:
        return f"postgresql://{PG_ADMIN['user']}@{PG_ADMIN['host']}:{PG_ADMIN['port']}/{name}"

    def _cursor(self) -> Any:
        if self._admin is None or self._admin.closed:
            self._admin = self.admin()
            self._drop_leftovers(self._admin.cursor())
        return self._admin.cursor()

    @staticmethod
    def _drop_leftovers(cursor: Any) -> None:
        """Databases of runs that were killed before they could drop them (their pid is gone)."""
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'jobrunner\\_test\\_%'")
        for (name,) in cursor.fetchall():
            try:
                os.kill(int(name.split("_")[2]), 0)
            except ProcessLookupError:
                cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except (ValueError, IndexError, PermissionError):
                pass

    def take(self) -> str:
        """The URL of an empty database no other test uses."""
        if self._free:
            return self.url(self._free.pop())
        name = next(self._names)
        self._cursor().execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop(self, url: str) -> None:
        """Done with it: recycled under a new name, or dropped."""
        name = url.rsplit("/", 1)[1]
        try:
            name = self._renamed(name)
            self._emptied(name)
        except Exception:
            self._cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        else:
            self._free.append(name)

    def _renamed(self, name: str) -> str:
        import psycopg2

        new, cursor, deadline = next(self._names), self._cursor(), time.monotonic() + 5
        while True:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            try:
                cursor.execute(f"ALTER DATABASE {name} RENAME TO {new}")
                return new
            except psycopg2.errors.ObjectInUse:  # an ended backend not gone yet, or a new one
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)  # backing off a backend on its way out, not a wait for a state

    def _emptied(self, name: str) -> None:
        with contextlib.closing(self.admin(name)) as conn:
            cursor = conn.cursor()
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            cursor.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')")  # fmt: skip
            assert cursor.fetchone()[0] == 0, f"{name} holds relations outside its public schema"

    def close(self) -> None:
        while self._free:
            self._cursor().execute(f"DROP DATABASE IF EXISTS {self._free.pop()} WITH (FORCE)")
        if self._admin is not None:
            self._admin.close()
            self._admin = None


def is_url(target: str | Path) -> bool:
    return "://" in str(target)


def root_flag(target: str | Path) -> list[str]:
    """`--allow-root` where a daemon needs it: root on a URL database (CI runs as root)."""
    return ["--allow-root"] if is_url(target) and os.geteuid() == 0 else []


def sql(target: Any, statement: str, params: tuple | list = ()) -> list[tuple]:
    """Run one statement on the test's database and return its rows, with `?` placeholders on
    both backends. `target` is an open Store (its own connection, in its transaction if one is
    open), or a SQLite path or PostgreSQL URL (a connection of its own, committed)."""
    if hasattr(target, "backend"):  # a jobrunner Store
        if target.backend.param != "?":
            statement = statement.replace("%", "%%").replace("?", target.backend.param)
        cursor = target.execute(statement, tuple(params))
        return cursor.fetchall() if cursor.description else []
    if is_url(target):
        import psycopg2

        with contextlib.closing(psycopg2.connect(str(target), connect_timeout=5)) as conn, conn:
            cursor = conn.cursor()
            cursor.execute(statement.replace("%", "%%").replace("?", "%s"), tuple(params))
            return cursor.fetchall() if cursor.description else []
    with contextlib.closing(sqlite3.connect(target, timeout=30)) as conn, conn:
        return conn.execute(statement, tuple(params)).fetchall()


@contextlib.contextmanager
def write_lock_held(target: str | Path) -> Iterator[None]:
    """Keep every other writer of the database waiting, as a large purge or bulk submit does:
    SQLite's write lock (BEGIN IMMEDIATE), or on PostgreSQL the job table locked against writes."""
    if is_url(target):
        import psycopg2

        with contextlib.closing(psycopg2.connect(str(target), connect_timeout=5)) as conn:
            conn.cursor().execute("SET lock_timeout = '30s'; LOCK TABLE job IN SHARE ROW EXCLUSIVE MODE")
            try:
                yield
            finally:
                conn.rollback()
        return
    with contextlib.closing(sqlite3.connect(target, timeout=30, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


def database_exists(target: str | Path) -> bool:
    """Whether jobrunner has made anything of its database: the SQLite file (or its -wal or
    -shm), or on PostgreSQL its schema in the (fixture-made, empty) database."""
    if is_url(target):
        return bool(sql(target, "SELECT 1 FROM information_schema.tables WHERE table_name = 'meta'"))
    path = Path(target)
    return any(p.exists() for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")))


def logs_of(target: str | Path) -> Path:
    """The job log directory of a database: beside the file, or in the state dir for a URL."""
    from jobrunner.config import log_dir_for

    return Path(log_dir_for(str(target)))


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll a condition until it holds or the deadline passes (then fail with a clear message)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME, XDG dirs and working directory, so no test sees the user's files."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in ("JOBRUNNER_DB", "JOBRUNNER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(work)
    return home


@pytest.fixture
def db_path(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path | str]:
    """The test's database, in JOBRUNNER_DB: a path not created yet (SQLite), or the URL of a
    new empty database (PostgreSQL, a str). SQLite-only tests may treat it as a Path."""
    if ON_POSTGRES:
        url = PgDatabases.shared().take()
        monkeypatch.setenv("JOBRUNNER_DB", url)
        try:
            yield url
        finally:
            PgDatabases.shared().drop(url)
    else:
        path = tmp_path / "jobs.db"
        monkeypatch.setenv("JOBRUNNER_DB", str(path))
        yield path


@pytest.fixture
def another_db(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """More databases for one test: `another_db("typer")` is a new SQLite path named after it
    (not created yet), or the URL of another new PostgreSQL database."""
    made: list[str] = []

    def make(name: str) -> str:
        if not ON_POSTGRES:
            return str(tmp_path / f"{name}.db")
        made.append(PgDatabases.shared().take())
        return made[-1]

    yield make
    for url in made:
        PgDatabases.shared().drop(url)


@dataclass
class Cli:
    """Runs `jobrunner ...` in-process against the test's database."""

    runner: CliRunner

    def __call__(self, *args: str, input: str | None = None) -> Any:
        return self.runner.invoke(app, list(args), input=input, catch_exceptions=False)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self(*args, input=input)
        assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr or result.output}"
        return result.stdout

    def submit(self, *args: str) -> int:
        return int(self.ok("submit", *args).strip())

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def job(self, job_id: int) -> dict[str, Any]:
        return self.json("show", str(job_id))

    def count(self, status: str | None = None) -> int:
        data = self.json("stats")
        return data["total"] if status is None else data["by_status"][status]


@pytest.fixture
def cli(db_path: Path) -> Cli:
    return Cli(CliRunner())


def run_jobrunner(*args: str, env: dict[str, str] | None = None, input: str | None = None,
                  cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:  # fmt: skip
    """`jobrunner ...` as a real process, the way a user's shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "jobrunner", *args],
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def run_on_pty(argv: list[str], env: dict[str, str], columns: int | None = None) -> tuple[bytes, int]:
    """Run a command with stdin, stdout and stderr on one real pty (`columns` wide if given), as
    a user's terminal runs it: what it printed, and its exit code."""
    import fcntl
    import pty
    import struct
    import termios

    main, child = pty.openpty()
    if columns is not None:
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(main)
    return out, proc.wait(timeout=30)


@pytest.fixture
def store(db_path: Path | str) -> Iterator[Any]:
    from jobrunner.store import open_store

    opened = open_store(str(db_path))
    yield opened
    opened.close()


ROOT = Path(__file__).resolve().parent.parent


class DaemonProcess:
    """A real `jobrunner daemon` subprocess in its own process group, killed in teardown."""

    def __init__(self, db_path: Path | str, log_path: Path) -> None:
        self.db_path = db_path
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.args: list[str] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        self.args = list(args) or self.args or ["--workers", "2"]
        env = {**os.environ, "JOBRUNNER_DB": str(self.db_path), "PYTHONPATH": str(ROOT), **(env or {})}
        if "--allow-root" not in self.args:
            self.args += root_flag(env["JOBRUNNER_DB"])  # root on a URL database must say it means it
        self.log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobrunner", "daemon", "--kill-grace", "1", *self.args],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: "started:" in self.output(), timeout=20)
        return self

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP the daemon at a moment it holds no write lock (stopped mid-commit, it would
        keep every other writer waiting); SIGCONT resumes it."""
        deadline = time.monotonic() + timeout
        while True:
            self.signal(signal.SIGSTOP)
            if self._holds_no_lock():
                return
            self.signal(signal.SIGCONT)
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon held its write lock for {timeout}s")
            time.sleep(0.01)

    def _holds_no_lock(self) -> bool:
        """Whether the (stopped) daemon is outside any write transaction: SQLite's write lock
        is free, or on PostgreSQL none of the database's connections is inside a transaction."""
        if is_url(self.db_path):
            busy = sql(self.db_path, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')")
            return busy[0][0] == 0
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=0, isolation_level=None)) as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError:
                return False

    def kill(self, signum: int = 9) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)
        self.proc.wait(timeout=10)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)  # anything left in its process group
        self.log.close()


@pytest.fixture
def daemon(db_path: Path | str, tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon on the test's database: `daemon.start("--workers", "1")` runs it."""
    started: list[DaemonProcess] = []

    def make() -> DaemonProcess:
        process = DaemonProcess(db_path, tmp_path / f"daemon-{len(started)}.log")
        started.append(process)
        return process

    first = make()
    first.make = make  # type: ignore[attr-defined]
    yield first
    for process in started:
        process.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards. In the SQLite run a
    missing server skips the test; in the PostgreSQL run it has failed the run already."""
    if not ON_POSTGRES:
        psycopg2 = pytest.importorskip("psycopg2")
        try:
            PgDatabases.admin().close()
        except psycopg2.OperationalError as exc:
            pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432: {exc}")
    url = PgDatabases.shared().take()
    try:
        yield url
    finally:
        PgDatabases.shared().drop(url)
