"""Which database is used, how it is opened, and what a user sees when it cannot be."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.states import Status
from jobrunner.store import open_store, repo
from jobrunner.store.migrations import SCHEMA_VERSION, current_version
from tests.conftest import run_jobrunner, sql, wait_until


@pytest.mark.sqlite_only(reason="the default database is a SQLite file in the XDG state dir")
def test_default_is_xdg_state_dir(cli, home, monkeypatch):
    monkeypatch.delenv("JOBRUNNER_DB")
    cli.submit("--", "true")
    path = home / ".local" / "state" / "jobrunner" / "jobs.db"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.sqlite_only(reason="the choice is seen by which SQLite file appears")
def test_db_option_beats_env_beats_config(cli, home, tmp_path, monkeypatch):
    Path("jobs.toml").write_text('db = "from-config.db"\n')
    monkeypatch.delenv("JOBRUNNER_DB")
    cli.submit("--", "true")
    assert (Path.cwd() / "from-config.db").is_file()  # relative to the config file
    monkeypatch.setenv("JOBRUNNER_DB", str(tmp_path / "from-env.db"))
    cli.submit("--", "true")
    assert (tmp_path / "from-env.db").is_file()
    cli.ok("--db", str(tmp_path / "from-option.db"), "submit", "--", "true")
    assert (tmp_path / "from-option.db").is_file()


@pytest.mark.sqlite_only(reason="WAL is SQLite's journal mode")
def test_wal_mode(cli, db_path):
    cli.submit("--", "true")
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


@pytest.mark.sqlite_only(reason="a file that is not a SQLite database")
def test_not_a_database(cli, db_path):
    db_path.write_text("this is not sqlite" * 100)
    result = cli("list")
    assert result.exit_code == 1
    assert "not a usable jobrunner database" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.sqlite_only(reason="the SQLite file's directory is missing")
def test_missing_directory(cli, tmp_path):
    result = cli("--db", str(tmp_path / "nope" / "jobs.db"), "list")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


@pytest.mark.sqlite_only(reason="the SQLite file's directory is missing")
def test_daemon_refuses_a_missing_directory_before_making_anything(tmp_path):
    """The daemon's workers make a log directory beside the database: a typo in --db must not
    leave a new directory tree (and a running daemon on a new, empty database) behind."""
    for target, message in ((tmp_path / "nope" / "jobs.db", "does not exist"), (tmp_path, "is a directory")):
        result = run_jobrunner("--db", str(target), "daemon", "--workers", "1", timeout=30)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.sqlite_only(reason="a SQLite file's permissions")
def test_unreadable_database_is_one_line(cli, db_path):
    cli.submit("--", "true")
    if os.geteuid() == 0:
        # root reads anything: make the path a directory instead
        result = cli("--db", str(db_path.parent), "list")
        assert result.exit_code == 2 and "is a directory" in result.stderr
    else:  # pragma: no cover - CI runs as root
        db_path.chmod(0)
        result = cli("list")
        assert result.exit_code == 1 and "cannot open database" in result.stderr


def test_newer_schema_is_refused(cli, db_path):
    cli.submit("--", "true")
    sql(db_path, "UPDATE meta SET value='99' WHERE key='schema_version'")
    result = cli("list")
    assert result.exit_code == 1 and "newer than this jobrunner" in result.stderr


@pytest.mark.sqlite_only(reason="SQLite's one write lock (BEGIN IMMEDIATE); PostgreSQL locks rows")
def test_locked_database_waits_for_the_lock(cli, db_path):
    """A writer holding the lock briefly delays a submit; it does not lose it."""
    cli.submit("--", "true")
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    import subprocess
    import sys

    submitter = subprocess.Popen([sys.executable, "-m", "jobrunner", "submit", "--", "true"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    def has_the_database_open() -> bool:
        with contextlib.suppress(OSError):
            return any(os.readlink(f"/proc/{submitter.pid}/fd/{fd}") == str(db_path)
                       for fd in os.listdir(f"/proc/{submitter.pid}/fd"))  # fmt: skip
        return False

    wait_until(has_the_database_open, timeout=20)  # it waits on the lock now (or is about to)
    assert submitter.poll() is None  # not done: the lock holds it
    holder.execute("COMMIT")
    _, stderr = submitter.communicate(timeout=30)
    assert submitter.returncode == 0, stderr
    assert cli.count() == 2


def test_concurrent_submits_from_processes_lose_nothing(db_path):
    """Eight processes submitting at once: every job stored exactly once."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom jobrunner import submit\n"
        "ids = [submit(['echo', sys.argv[1], str(i)]) for i in range(50)]\nprint(len(set(ids)))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(n)], stdout=subprocess.PIPE, text=True)
        for n in range(8)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outputs == ["50"] * 8
    assert sql(db_path, "SELECT COUNT(*), COUNT(DISTINCT command) FROM job") == [(400, 400)]
    assert sql(db_path, "SELECT COUNT(*) FROM event") == [(400,)]


def test_concurrent_cli_processes(db_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda n: run_jobrunner("submit", "--", "echo", str(n)), range(12)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    ids = sorted(int(r.stdout) for r in results)
    assert len(set(ids)) == 12


def _open_and_submit(path: str, barrier: Any, results: Any) -> None:
    from jobrunner import submit
    from jobrunner.api import connect

    barrier.wait()
    try:
        connect(path)  # what `jobrunner submit` does first
        results.put(submit(["echo", "cold"], db=path))
    except Exception as exc:  # what the parent reports if a process failed
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.sqlite_only(reason="switching a new SQLite file to WAL mode")
def test_processes_opening_a_new_file_at_the_same_moment_all_get_in(tmp_path):
    """Switching a new file to WAL mode is refused at once, without the busy timeout, while
    another process holds it: the open waits that out instead of failing the submit."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    failures = []
    for attempt in range(25):
        path = str(tmp_path / f"new-{attempt}.db")
        barrier, results = context.Barrier(10), context.Queue()
        processes = [context.Process(target=_open_and_submit, args=(path, barrier, results)) for _ in range(10)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        failures += [outcome for outcome in outcomes if not isinstance(outcome, int)]
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM job").fetchone()[0] == 10 - len(failures)
    assert failures == []


def test_subprocess_error_has_no_traceback(db_path):
    result = run_jobrunner("submit", "--priority", "urgent", "--", "true")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- ids are never reused (issue 12)
def _finish_all_long_ago(target: str) -> None:
    sql(target, "UPDATE job SET status='succeeded', finished_at=1.0")


def test_ids_are_never_reused_after_a_purge(cli, db_path):
    """A finish guarded by (id, owner, attempt) must never match a newer job with an old id."""
    assert [cli.submit("--", "true") for _ in range(3)] == [1, 2, 3]
    _finish_all_long_ago(str(db_path))
    assert cli.ok("purge", "--older-than", "1d").strip() == "purged 3 jobs"
    assert cli.count() == 0
    assert cli.submit("--", "true") == 4
    Path("bulk.jsonl").write_text('{"command": ["true"]}\n{"command": ["false"]}\n')
    assert cli.ok("submit", "--from-file", "bulk.jsonl").split() == ["5", "6"]
    assert [cli.job(i)["command"] for i in (5, 6)] == [["true"], ["false"]]  # each id its own row
    assert [len(cli.job(i)["events"]) for i in (4, 5, 6)] == [1, 1, 1]


@pytest.mark.sqlite_only(reason="SQLite's AUTOINCREMENT; on PostgreSQL a sequence (test below)")
def test_a_fresh_database_gets_never_reused_ids(store):
    """A new database keeps the floor a purge raises, and its job table no sqlite_sequence row:
    AUTOINCREMENT would rewrite that row on every submit."""
    (sql,) = store.execute("SELECT sql FROM sqlite_master WHERE name='job'").fetchone()
    assert "AUTOINCREMENT" not in sql.upper()
    assert store.execute("SELECT value FROM meta WHERE key='job_id_floor'").fetchone() == ("0",)
    now = time.time()
    first = repo.submit(store, build_spec({"command": ["true"]}), now)
    store.execute("UPDATE job SET status='succeeded', finished_at=1.0")
    assert repo.purge(store, 3600, [Status.SUCCEEDED], now) == [first]
    assert repo.submit(store, build_spec({"command": ["true"]}), now) == first + 1


#: The schema a v7 jobrunner created (from sqlite_master of a new file): job ids are plain rowids.
V7_SCHEMA = """
CREATE TABLE "meta" ("key" TEXT NOT NULL PRIMARY KEY, "value" TEXT NOT NULL);
CREATE TABLE "job" ("id" INTEGER NOT NULL PRIMARY KEY, "name" TEXT NOT NULL, "kind" TEXT NOT NULL, "task" TEXT, "command" TEXT, "callable" TEXT, "args" TEXT NOT NULL DEFAULT '[]', "kwargs" TEXT NOT NULL DEFAULT '{}', "queue" TEXT NOT NULL DEFAULT 'default', "priority" INTEGER NOT NULL DEFAULT 5, "status" TEXT NOT NULL, "attempts" INTEGER NOT NULL DEFAULT 0, "max_retries" INTEGER NOT NULL DEFAULT 0, "retry_offset" INTEGER NOT NULL DEFAULT 0, "timeout" REAL, "backoff_base" REAL NOT NULL DEFAULT 1.0, "backoff_factor" REAL NOT NULL DEFAULT 2.0, "backoff_max" REAL NOT NULL DEFAULT 300.0, "retry_on" TEXT NOT NULL DEFAULT '[]', "retry_on_exit_codes" TEXT NOT NULL DEFAULT '[]', "tags" TEXT NOT NULL DEFAULT '[]', "metadata" TEXT NOT NULL DEFAULT '{}', "cwd" TEXT, "env" TEXT NOT NULL DEFAULT '{}', "created_at" REAL NOT NULL, "run_at" REAL NOT NULL, "started_at" REAL, "finished_at" REAL, "updated_at" REAL NOT NULL, "lease_owner" TEXT, "lease_until" REAL, "cancel_requested" INTEGER NOT NULL DEFAULT FALSE, "progress" REAL, "progress_message" TEXT, "exit_code" INTEGER, "result" TEXT, "error" TEXT, "log_path" TEXT, "schedule" TEXT);
CREATE TABLE "event" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" INTEGER NOT NULL, "at" REAL NOT NULL, "attempt" INTEGER NOT NULL DEFAULT 0, "from_status" TEXT, "to_status" TEXT NOT NULL, "message" TEXT, "details" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE INDEX "event_job_id" ON "event" ("job_id");
CREATE TABLE "queue_state" ("name" TEXT NOT NULL PRIMARY KEY, "paused" INTEGER NOT NULL DEFAULT FALSE, "updated_at" REAL NOT NULL);
CREATE TABLE "daemon" ("id" TEXT NOT NULL PRIMARY KEY, "host" TEXT NOT NULL, "pid" INTEGER NOT NULL, "version" TEXT NOT NULL, "started_at" REAL NOT NULL, "heartbeat_at" REAL NOT NULL, "workers" INTEGER NOT NULL DEFAULT 0, "busy" INTEGER NOT NULL DEFAULT 0, "queues" TEXT NOT NULL DEFAULT '[]', "state" TEXT NOT NULL DEFAULT 'running');
CREATE TABLE "schedule" ("name" TEXT NOT NULL PRIMARY KEY, "source" TEXT NOT NULL, "kind" TEXT NOT NULL, "expression" TEXT NOT NULL, "timezone" TEXT NOT NULL, "job" TEXT NOT NULL, "misfire" TEXT NOT NULL DEFAULT 'coalesce', "misfire_grace" REAL NOT NULL DEFAULT 3600.0, "max_running" INTEGER NOT NULL DEFAULT 1, "paused" INTEGER NOT NULL DEFAULT FALSE, "next_fire_at" REAL, "last_fire_at" REAL, "last_job_id" INTEGER, "missed" INTEGER NOT NULL DEFAULT 0, "last_note" TEXT, "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL);
CREATE TABLE "schedule_fire" ("schedule" TEXT NOT NULL, "fire_at" REAL NOT NULL, "job_id" INTEGER, PRIMARY KEY ("schedule", "fire_at"));
CREATE TABLE job_dependency (job_id INTEGER NOT NULL REFERENCES job (id) ON DELETE CASCADE, depends_on INTEGER NOT NULL, PRIMARY KEY (job_id, depends_on));
CREATE INDEX job_dependency_on ON job_dependency (depends_on);
CREATE INDEX job_due_waiting ON job (run_at) WHERE status IN ('scheduled', 'retrying');
CREATE INDEX job_finished_at ON job (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX job_schedule_status ON job (schedule, status) WHERE schedule IS NOT NULL;
CREATE INDEX job_claim_queued ON job (priority DESC, id, queue, status) WHERE status='queued';
CREATE INDEX job_status_not_queued ON job (status, queue) WHERE status <> 'queued';
INSERT INTO meta VALUES ('schema_version', '7');
"""


def _v7_database(path: Path, jobs: int) -> None:
    """A database as jobrunner v7 left it: `jobs` jobs with their events, job 2 after job 1."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(V7_SCHEMA)
        for n in range(1, jobs + 1):
            conn.execute(
                "INSERT INTO job (name, kind, command, status, attempts, created_at, run_at, updated_at, error, "
                "schedule) VALUES (?, 'shell', ?, ?, ?, ?, ?, ?, ?, ?)",
                (f"job{n}", f'["echo", "{n}"]', "dead" if n % 2 else "queued", n % 3, n, n, n,
                 f"error {n}" if n % 2 else None, "nightly" if n == 3 else None),
            )  # fmt: skip
            conn.execute("INSERT INTO event (job_id, at, to_status, message) VALUES (?, ?, 'queued', 'submitted')",
                         (n, n))  # fmt: skip
        conn.execute("INSERT INTO job_dependency VALUES (2, 1)")


def _snapshot(path: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {
            "jobs": conn.execute("SELECT * FROM job ORDER BY id").fetchall(),
            "events": conn.execute("SELECT * FROM event ORDER BY id").fetchall(),
            "links": conn.execute("SELECT * FROM job_dependency").fetchall(),
            "indexes": sorted(conn.execute("SELECT name, sql FROM sqlite_master WHERE type='index'").fetchall()),
        }


@pytest.mark.sqlite_only(reason="a SQLite file as jobrunner v7 left it")
def test_migration_to_never_reused_ids_keeps_every_row_and_index(tmp_path):
    path = tmp_path / "v7.db"
    _v7_database(path, jobs=4)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:  # as a purge of the newest job did
        conn.execute("DELETE FROM event WHERE job_id=4")
        conn.execute("DELETE FROM job WHERE id=4")
    before = _snapshot(path)

    store = open_store(str(path))
    try:
        assert current_version(store) == SCHEMA_VERSION
        # every row, id and index as it was; v9 adds unique_key (NULL) and two indexes, v10 three
        # limit columns (NULL), v11 the index of jobs by priority (and tables: job_tag, job_search),
        # v15 the indexes of the tries and progress sort table
        after = _snapshot(path)
        added = [index for index in after["indexes"] if index not in before["indexes"]]
        assert [name for name, _ in added] == ["job_by_run_attempts", "job_by_run_finished_at", "job_by_run_progress", "job_priority_done",
                                               "job_unique_key", "sqlite_autoindex_queue_rate_1"]  # fmt: skip
        assert after == {**before, "jobs": [(*row, None, None, None, None) for row in before["jobs"]],
                         "indexes": sorted(before["indexes"] + added)}  # fmt: skip
        assert store.execute("SELECT value FROM meta WHERE key='job_id_floor'").fetchone() == ("3",)
        assert store.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.execute("PRAGMA foreign_key_check").fetchall() == []
        now = time.time()
        assert repo.submit(store, build_spec({"command": ["true"]}), now) == 4  # v7 forgot 4: nothing knows it
        store.execute("UPDATE job SET status='succeeded', finished_at=1.0 WHERE id >= 3")
        assert repo.purge(store, 3600, [Status.SUCCEEDED], now) == [3, 4]
        assert repo.submit(store, build_spec({"command": ["true"]}), now) == 5  # from here on, never again
        # the foreign keys still hold: deleting a job takes its events and links
        store.execute("DELETE FROM job WHERE id=2")
        assert store.execute("SELECT COUNT(*) FROM event WHERE job_id=2").fetchone()[0] == 0
        assert store.execute("SELECT COUNT(*) FROM job_dependency").fetchone()[0] == 0
    finally:
        store.close()


@pytest.mark.sqlite_only(reason="a SQLite file as jobrunner v7 left it")
def test_list_and_stats_migrate_an_older_file_first(tmp_path):
    """They read a current file without peewee (store.db.SqliteReader), an older one as every
    command does: migrated first."""
    for args in (["list", "--json"], ["stats", "--json"]):
        path = tmp_path / f"{args[0]}.db"
        _v7_database(path, jobs=2)
        result = run_jobrunner("--db", str(path), *args)
        assert result.returncode == 0, result.stderr
        assert sql(path, "SELECT value FROM meta WHERE key='schema_version'") == [(str(SCHEMA_VERSION),)]
    reader = open_store(str(path), reading=True)
    try:
        assert type(reader.db).__name__ == "SqliteReader" and reader.db.transaction_depth() == 0
        with pytest.raises(RuntimeError, match="does not write"), reader.write():
            pass
    finally:
        reader.close()


@pytest.mark.sqlite_only(reason="a SQLite file as jobrunner v7 left it")
def test_migration_keeps_ids_it_can_still_see_were_used(tmp_path):
    """A purged job a schedule fired is still named in schedule_fire: its id is not handed out."""
    path = tmp_path / "v7.db"
    _v7_database(path, jobs=2)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO schedule_fire VALUES ('nightly', 1.0, 7)")
    store = open_store(str(path))
    try:
        assert repo.submit(store, build_spec({"command": ["true"]}), time.time()) == 8
    finally:
        store.close()


@pytest.mark.postgres
def test_postgresql_ids_come_from_a_sequence_and_are_never_reused(postgres_url):
    store = open_store(postgres_url)
    store.poke_on_commit = False
    try:
        (default,) = store.execute(
            "SELECT column_default FROM information_schema.columns WHERE table_name='job' AND column_name='id'"
        ).fetchone()
        assert default.startswith("nextval(")
        now = time.time()
        assert repo.submit_many(store, [build_spec({"command": ["true"]})] * 3, now) == [1, 2, 3]
        store.execute("UPDATE job SET status='succeeded', finished_at=1.0")
        assert repo.purge(store, 3600, [Status.SUCCEEDED], now) == [1, 2, 3]
        assert repo.submit(store, build_spec({"command": ["true"]}), now) == 4
    finally:
        store.close()
