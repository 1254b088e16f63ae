"""Which database is used, how it is opened, and what a user sees when it cannot be."""

from __future__ import annotations

import os
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jobrunner.store.migrations import SCHEMA_VERSION
from tests.conftest import run_jobrunner


def test_default_is_xdg_state_dir(cli, home, monkeypatch):
    monkeypatch.delenv("JOBRUNNER_DB")
    cli.submit("--", "true")
    path = home / ".local" / "state" / "jobrunner" / "jobs.db"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


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


def test_wal_mode(cli, db_path):
    cli.submit("--", "true")
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_not_a_database(cli, db_path):
    db_path.write_text("this is not sqlite" * 100)
    result = cli("list")
    assert result.exit_code == 1
    assert "not a usable jobrunner database" in result.stderr
    assert "Traceback" not in result.output


def test_missing_directory(cli, tmp_path):
    result = cli("--db", str(tmp_path / "nope" / "jobs.db"), "list")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_daemon_refuses_a_missing_directory_before_making_anything(tmp_path):
    """The daemon's workers make a log directory beside the database: a typo in --db must not
    leave a new directory tree (and a running daemon on a new, empty database) behind."""
    for target, message in ((tmp_path / "nope" / "jobs.db", "does not exist"), (tmp_path, "is a directory")):
        result = run_jobrunner("--db", str(target), "daemon", "--workers", "1", timeout=30)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


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
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    result = cli("list")
    assert result.exit_code == 1 and "newer than this jobrunner" in result.stderr


def test_locked_database_waits_for_the_lock(cli, db_path):
    """A writer holding the lock briefly delays a submit; it does not lose it."""
    cli.submit("--", "true")
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_jobrunner, "submit", "--", "true")
        import time

        time.sleep(0.3)  # the lock is held while the other process waits on it
        holder.execute("COMMIT")
        result = future.result(timeout=30)
    assert result.returncode == 0, result.stderr
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
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT command) FROM job").fetchone() == (400, 400)
        assert conn.execute("SELECT COUNT(*) FROM event").fetchone()[0] == 400


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
