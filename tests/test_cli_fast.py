"""The console script's fast path (jobrunner.cli.fast) against the Typer app, as real processes.

Both paths run the same arguments in the same directory, each on a database of its own (two
SQLite files, or two PostgreSQL databases); stdout, stderr, exit codes and the stored rows must
be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from jobrunner.cli import fast
from tests.conftest import database_exists, run_on_pty, sql

TYPER = "from jobrunner.cli.app import main; main()"  # the Typer app alone, as before the fast path
TIME_COLUMNS = ("run_at", "updated_at", "started_at", "finished_at", "lease_until")


def run(path: str, args: list[str], db: Path | str, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    argv = [sys.executable, "-m", "jobrunner"] if path == "fast" else [sys.executable, "-c", TYPER]
    return subprocess.run(
        [*argv, *args],
        env={**os.environ, "JOBRUNNER_DB": str(db), **(env or {})},
        capture_output=True, text=True, input=input, timeout=60,
    )  # fmt: skip


def _dicts(db: str, table: str, order: str) -> list[dict]:
    columns = _columns(db, table)
    return [dict(zip(columns, row, strict=True)) for row in sql(db, f"SELECT * FROM {table} ORDER BY {order}")]


def _columns(db: str, table: str) -> list[str]:
    if "://" in db:
        found = sql(db, "SELECT column_name FROM information_schema.columns WHERE table_name=? "
                        "ORDER BY ordinal_position", (table,))  # fmt: skip
    else:
        found = [(row[1],) for row in sql(db, f"PRAGMA table_info({table})")]
    return [name for (name,) in found]


def rows(db: Path | str) -> dict[str, list[dict]]:
    """Jobs and events, times made relative to each job's creation (runs differ by milliseconds)."""
    if not database_exists(db):
        return {}
    jobs = _dicts(str(db), "job", "id")
    events = _dicts(str(db), "event", "id")
    links = _dicts(str(db), "job_dependency", "job_id, depends_on")
    created = {job["id"]: job["created_at"] for job in jobs}
    for job in jobs:
        for column in TIME_COLUMNS:
            if job[column] is not None:
                job[column] = Near(job[column] - job["created_at"])
        job["created_at"] = 0
    for event in events:
        event["at"] = Near(event["at"] - created.get(event["job_id"], event["at"]))
    return {"job": jobs, "event": events, "job_dependency": links}


class Near(float):
    """A time relative to its job's creation: equal to another within the gap between two runs."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and abs(self - other) < 2.0

    __hash__ = float.__hash__


def assert_same(args: list[str], dbs: dict[str, str], env: dict[str, str] | None = None,
                input: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """Run args through both paths (each on its own database of `dbs`) and compare everything."""
    with ThreadPoolExecutor(2) as pool:  # each on its own database: run side by side
        typer_run = pool.submit(run, "typer", args, dbs["typer"], env, input)
        quick = run("fast", args, dbs["fast"], env, input)
        typer = typer_run.result()
    assert (quick.returncode, quick.stdout, quick.stderr) == (typer.returncode, typer.stdout, typer.stderr)
    assert rows(dbs["fast"]) == rows(dbs["typer"])
    return quick


def handled(args: list[str]) -> bool:
    try:
        fast.parse(args)
    except fast.Fallback:
        return False
    return True


TOML = """
[tasks.nightly]
callable = "json:dumps"
kwargs = { format = "pdf" }
queue = "reports"
priority = "high"

[tasks.backup]
command = ["tar", "czf", "/tmp/x.tgz", "."]
"""

# The forms people type most, and a mistake of each kind: checked on every run.
SUBMITS = [
    ["submit", "--", "true"],
    ["submit", "--name", "nightly", "--queue", "reports", "--priority", "high", "--retries", "3",
     "--timeout", "1h30m", "--backoff", "10s", "--tag", "a,b", "--tag", "c", "--meta", "owner=ops",
     "--meta", "n=5", "--env", "X=1", "--cwd", "/tmp", "--", "echo", "hi"],
    ["submit", "-n", "short", "-q", "q2", "-p", "7", "-r", "1", "-t", "30s", "-e", "A=b", "--", "sh", "-c", "echo $A"],
    ["submit", "--in", "10m", "--call", "json:dumps", "--arg", "a=1", "-a", "b=x", "--", "1", "two", '{"k": 1}'],
    ["submit", "--after", "1", "--after", "2", "--", "./merge.sh"],
    ["--config=jobs.toml", "submit", "nightly", "--priority", "low", "--arg", "month=2026-11"],
    ["submit", "--priority", "bogus", "--", "true"],
    ["submit", "--in", "5x", "--", "true"],
    ["submit", "two", "words"],
    ["submit", "--after", "999", "--", "true"],
    ["--db", "no/such/dir/jobs.db", "submit", "--", "true"],
]  # fmt: skip

# Every other option and message: the whole matrix, in the slow run.
MORE_SUBMITS = [
    ["submit", "--", "tar", "czf", "/tmp/a b.tgz", "docs"],
    ["submit", "--name=eq", "--queue=q3", "--tag=x", "--priority=0", "--", "true"],
    ["submit", "--at", "2099-12-01T03:00+01:00", "--", "true"],
    ["submit", "--at", "2099-12-01 03:00", "--", "true"],
    ["submit", "-c", "json:loads"],
    ["submit", "--", "--name", "x", "--"],
    ["submit", "--", "ls", "--help", "-h"],
    ["submit", "--", "ünïcode", "✓"],
    ["--config", "jobs.toml", "submit", "nightly"],
    ["--config", "jobs.toml", "submit", "backup", "--queue", "b"],
    ["submit", "--from-file", "lines.jsonl"],
    ["submit", "-f", "-"],
    ["submit", "--priority", "12", "--", "true"],
    ["submit", "--in", "1m", "--at", "2099-01-01", "--", "true"],
    ["submit", "--at", "tomorrow", "--", "true"],
    ["submit", "--timeout", "0", "--", "true"],
    ["submit", "--queue", "bad name", "--", "true"],
    ["submit", "--tag", "no spaces", "--", "true"],
    ["submit", "--meta", "novalue", "--", "true"],
    ["submit", "--env", "=x", "--", "true"],
    ["submit", "--retries", "2000", "--", "true"],
    ["submit", "--name", "", "--", "true"],
    ["submit", "--name", "x"],
    ["submit", "--"],
    ["submit", "notatask"],
    ["--config", "jobs.toml", "submit", "backup", "--", "true"],
    ["submit", "--arg", "a=1", "--", "true"],
    ["submit", "--call", "not-an-import-path"],
    ["submit", "--from-file", "missing.jsonl"],
    ["submit", "--from-file", "lines.jsonl", "--", "true"],
    ["--config", "nowhere.toml", "submit", "--", "true"],
]  # fmt: skip

FALLBACKS = [
    [], ["--help"], ["-h"], ["--version"], ["submit"], ["submit", "--help"], ["submit", "-h", "--", "x"],
    ["list", "--help"], ["show", "1"], ["stats", "--help"], ["stats", "x"], ["submit", "--bogus", "--", "true"],
    ["submit", "-nfoo", "--", "true"], ["submit", "-n=foo", "--", "true"], ["submit", "--nam", "x", "--", "true"],
    ["submit", "--name", "-x", "--", "true"], ["submit", "--name", "--", "--", "true"],
    ["submit", "--name", "a", "--name", "b", "--", "true"], ["submit", "--retries", "x", "--", "true"],
    ["submit", "--retries", "+3", "--", "true"], ["submit", "--retries", "-1", "--", "true"],
    ["submit", "--retries", "٣", "--", "true"], ["submit", "--after"], ["submit", "-", "--", "true"],
    ["list", "extra"], ["list", "--limit", "-1"], ["list", "--json=1"], ["list", "--"],
    ["--db"], ["--db", "x"], ["--db", "-x", "list"], ["--", "submit", "--", "true"], ["sbumit", "--", "true"],
    ["list", "-n", "5x"],
]  # fmt: skip


@pytest.fixture
def work(home: Path) -> Path:
    """The test's working directory, with a config and a JSON-lines file both paths can use."""
    work = Path.cwd()
    (work / "jobs.toml").write_text(TOML)
    (work / "lines.jsonl").write_text(
        '{"command": ["echo", "1"], "ref": "a"}\n{"command": "echo 2", "after": "a", "queue": "q"}\n'
    )
    return work


@pytest.fixture
def dbs(work: Path, another_db: Any) -> dict[str, str]:
    """A database for each path, not made yet: typer.db and fast.db, or two PostgreSQL databases."""
    return {"typer": another_db("typer"), "fast": another_db("fast")}


def check_submits(cases: list[list[str]], dbs: dict[str, str]) -> None:
    for args in cases:
        assert handled(args), args
        result = assert_same(args, dbs, input='{"command": ["true"], "name": "from-stdin"}\n')
        if result.returncode == 2:  # a mistake: one line, nothing more
            assert result.stdout == "" and result.stderr.count("\n") == 1, (args, result.stderr)


def test_submit_agrees_with_typer(dbs: dict[str, str]):
    """The forms the fast path takes store and print exactly what the Typer app does."""
    check_submits(SUBMITS, dbs)
    stored = rows(dbs["fast"])
    assert len(stored["job"]) == 6 and len(stored["job_dependency"]) == 2


@pytest.mark.slow
def test_every_submit_form_agrees_with_typer(dbs: dict[str, str]):
    check_submits(SUBMITS[:2] + MORE_SUBMITS, dbs)
    assert len(rows(dbs["fast"])["job"]) == 2 + 13


def test_fallbacks_are_left_to_typer(dbs: dict[str, str]):
    """What the fast path does not take, Typer answers: the same whichever entry point ran."""
    for args in FALLBACKS:
        assert not handled(args), args
    for args in (["submit", "--retries", "x", "--", "true"], ["list", "extra"], ["submit"]):
        assert_same(args, dbs)


def test_shell_completion_goes_to_typer(dbs: dict[str, str]):
    env = {"_JOBRUNNER_COMPLETE": "complete_bash", "COMP_WORDS": "jobrunner sub", "COMP_CWORD": "1"}
    result = assert_same(["submit", "--", "true"], dbs, env)
    assert "submit" in result.stdout and not database_exists(dbs["fast"])


def fill(db: str, name: str, long_ago: float) -> None:
    """Jobs whose every shown time is days old, so the two runs print the same ages."""
    jobs = [
        {"command": ["echo", str(i)], "name": f"job{i}", "queue": "q" if i % 3 else "default",
         "tags": ["a"] if i % 2 else [], "priority": i % 10}
        for i in range(60)
    ] + [{"callable": "json:dumps", "kwargs": {"x": 1}, "name": "a-rather-long-job-name-that-goes-on"}]  # fmt: skip
    source = Path.cwd() / f"{name}.jsonl"
    source.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    assert run("typer", ["submit", "--from-file", str(source)], db).returncode == 0
    sql(db, "UPDATE job SET created_at=?, run_at=?, updated_at=?", (long_ago,) * 3)
    sql(db, "UPDATE job SET status='succeeded', started_at=?, finished_at=? WHERE id % 5 = 0",
        (long_ago, long_ago + 75))  # fmt: skip
    sql(db, "UPDATE job SET status='running', progress=0.4, progress_message='step 2/5', "
            "started_at=? WHERE id % 7 = 0", (long_ago,))  # fmt: skip


def fill_both(dbs: dict[str, str]) -> None:
    """The same jobs, with the same times, in both databases."""
    long_ago = time.time() - 5 * 86400 - 1800
    for name, db in dbs.items():
        fill(db, name, long_ago)


LISTS = [
    ["list"], ["list", "--limit", "3"], ["list", "-n", "0"], ["list", "--limit=7"], ["list", "--json", "-n", "2"],
    ["list", "--status", "queued,running"], ["list", "-s", "succeeded", "-s", "running"],
    ["list", "--queue", "q", "-q", "default", "--limit", "5"], ["list", "--tag", "a"],
    ["list", "--search", "echo 1"], ["list", "--search", "nothing-like-this"], ["list", "--oldest-first", "-n", "4"],
    ["list", "--status", "bogus"], ["--db", "other.db", "list"], ["stats"], ["stats", "--json"],
    ["--db", "other.db", "stats"],
]  # fmt: skip


@pytest.mark.parametrize("columns", ["200", pytest.param("60", marks=pytest.mark.slow)])
def test_list_agrees_with_typer(work: Path, dbs: dict[str, str], columns: str):
    fill_both(dbs)
    for args in LISTS:
        assert handled(args), args
        assert_same(args, dbs, {"COLUMNS": columns})
    assert not (work / "other.db").exists() or rows(work / "other.db")["job"] == []


def run_on_terminal(path: str, args: list[str], db: Path | str) -> bytes:
    """What the user sees on a terminal (colours and all): stdout and stderr through one pty."""
    argv = [sys.executable, "-m", "jobrunner"] if path == "fast" else [sys.executable, "-c", TYPER]
    env = {**os.environ, "JOBRUNNER_DB": str(db), "COLUMNS": "100", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    out, code = run_on_pty([*argv, *args], env)
    assert code in (0, 2)
    return out


def test_terminal_output_agrees_with_typer(dbs: dict[str, str]):
    fill_both(dbs)
    for args in (["list", "-n", "12"], ["list", "--status", "bogus"], ["submit", "--in", "5x", "--", "x"]):
        seen = {name: run_on_terminal(name, args, db) for name, db in dbs.items()}
        assert seen["fast"] == seen["typer"], args


def loaded_modules(args: list[str], db: Path) -> set[str]:
    code = (
        "import atexit, sys\n"
        "loaded = lambda: ' '.join(name for name, module in sys.modules.items() if module is not None)\n"
        "atexit.register(lambda: sys.__stderr__.write('MODULES ' + loaded() + '\\n'))\n"
        "from jobrunner.cli.fast import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            env={**os.environ, "JOBRUNNER_DB": str(db)}, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


HEAVY = ("typer", "click", "textual", "apscheduler", "psycopg2", "rich")


@pytest.mark.sqlite_only(reason="a SQLite file needs no driver; a postgresql:// URL must import psycopg2")
def test_submit_and_list_leave_heavy_modules_alone(work: Path):
    db = work / "jobs.db"
    modules = loaded_modules(["submit", "--name", "x", "--tag", "t", "--in", "1h", "--", "true"], db)
    assert not {m.split(".")[0] for m in modules} & set(HEAVY)
    modules = loaded_modules(["list", "--json"], db)
    assert not {m.split(".")[0] for m in modules} & set(HEAVY)
    modules = loaded_modules(["list"], db)  # the table needs rich, and only rich
    assert not {m.split(".")[0] for m in modules} & set(HEAVY[:-1])


@pytest.mark.sqlite_only(reason="a SQLite file is read without peewee; a postgresql:// URL needs it")
def test_list_and_stats_read_a_current_file_without_peewee(work: Path):
    """Importing peewee was a fifth of `list` and `stats` (store.db.SqliteReader)."""
    db = work / "jobs.db"
    loaded_modules(["submit", "--tag", "t", "--", "true"], db)
    for args in (["list"], ["list", "--status", "dead"], ["list", "--tag", "t"], ["stats"], ["stats", "--json"]):
        modules = loaded_modules(args, db)
        assert not {"peewee", "jobrunner.store.models"} & modules, args


def test_postgres_drivers_listed_once():
    """fast.py cannot import jobrunner.store.backends (it imports peewee): the lists must agree."""
    from jobrunner.store.backends import POSTGRES_DRIVERS

    assert fast.POSTGRES_DRIVERS == POSTGRES_DRIVERS


TYPER_ONLY = ("help", "version", "install_completion", "show_completion")  # the fast path never takes these


def _click_options(command: object) -> dict[str, tuple[str, str]]:
    table = {}
    for param in command.params:  # type: ignore[attr-defined]
        if param.param_type_name != "option" or param.name in (
            "help",
            "version",
            "install_completion",
            "show_completion",
        ):
            continue
        if param.is_flag:
            kind = "flag"
        else:
            kind = param.type.name
            if kind in ("int range", "float range"):  # the fast path checks the same range (or >= 0)
                expected = fast.RANGES.get(param.name, (0, None))
                assert (param.type.min, param.type.max, param.type.clamp) == (*expected, False), param.name
                assert not param.type.min_open and not param.type.max_open, param.name
                kind = kind.split()[0]
            assert kind in ("int", "str", "float"), (param.name, kind)
            assert param.nargs == 1 and param.callback is None and not param.envvar, param.name
            kind += "s" if param.multiple else ""
        for opt in param.opts:
            table[opt] = (param.name, kind)
    return table


def test_option_tables_match_the_typer_commands():
    """An option added to a Typer command but not to the fast path's table falls back (safe);
    one whose name or type changed would be read differently: this catches that."""
    import typer.main

    from jobrunner.cli.app import app

    group = typer.main.get_command(app)
    assert _click_options(group) == fast.ROOT_OPTIONS
    for name, table in fast.COMMANDS.items():
        assert _click_options(group.commands[name]) == table, name  # type: ignore[attr-defined]


def test_defaults_match_the_typer_commands():
    """An option the fast path leaves out gets the function's default: Typer's must be the same."""
    import inspect

    import typer.main

    from jobrunner.cli.app import app
    from jobrunner.cli.listing import list_jobs, show_stats
    from jobrunner.cli.rundaemon import run_daemon
    from jobrunner.cli.submit import submit_job

    group = typer.main.get_command(app)
    for name, function in (("submit", submit_job), ("list", list_jobs), ("daemon", run_daemon), ("stats", show_stats)):
        defaults = {key: p.default for key, p in inspect.signature(function).parameters.items()}
        for param in group.commands[name].params:  # type: ignore[attr-defined]
            if param.name not in TYPER_ONLY:
                assert defaults[param.name] == param.default, (name, param.name)


@pytest.mark.postgres
def test_fast_path_opens_postgresql_despite_the_driver_block(home: Path, postgres_url: str):
    """The entry point blocks psycopg2 until peewee is in; a postgresql:// URL must still work."""
    submitted = run(
        "fast", ["--db", postgres_url, "submit", "--name", "pg", "--", "echo", "hi"], home / "x.db"
    )
    assert (submitted.returncode, submitted.stdout, submitted.stderr) == (0, "1\n", "")
    listed = run("fast", ["--db", postgres_url, "list", "--json"], home / "x.db")
    assert [job["name"] for job in json.loads(listed.stdout)] == ["pg"]
    shown = run("fast", ["--db", postgres_url, "show", "1", "--json"], home / "x.db")  # via Typer
    assert json.loads(shown.stdout)["command"] == ["echo", "hi"]
    assert not (home / "x.db").exists()
