"""The CLI's door: reads never create a database, every error is one line, the words name the
right thing, and the help loses no word.

In-process runs (the `cli` fixture) cover the matrix; real processes (`python -m jobrunner`, the
console script's fast path first) check that both entry points answer alike.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobrunner.cli.app import app
from tests.conftest import database_exists, is_url, run_jobrunner, sql, wait_until

NO_DATABASE = "no database at {} yet: submit a job first (jobrunner submit -- COMMAND) or pass --db"
HUGE = str(2**63)  # one past the largest id SQLite and PostgreSQL can hold


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def one_error_line(stderr: str) -> str:
    """The single line an error prints: anything more (a traceback, a box, a usage block) fails."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("jobrunner: error: "), stderr
    return lines[0]


# ------------------------------------------------------------------ reads never create a database
READS = [
    ["list"], ["list", "--json"], ["stats"], ["stats", "--json"], ["show", "1"], ["show", "1", "--json"],
    ["logs", "1"], ["wait", "1"], ["retry", "1"], ["cancel", "1"], ["priority", "1", "high"],
    ["purge", "--older-than", "1d"], ["pause", "q"], ["resume", "q"], ["status"], ["tui"],
    ["schedule", "list"], ["schedule", "pause", "x"], ["schedule", "resume", "x"],
    ["schedule", "remove", "x"], ["schedule", "run", "x"],
]  # fmt: skip


@pytest.mark.sqlite_only(reason="a SQLite file that is not there; a server database is there or not")
@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_a_read_on_a_missing_database_says_so_and_creates_nothing(cli, tmp_path, args):
    typo = tmp_path / "jbos.db"
    before = files_in(tmp_path)
    result = cli("--db", str(typo), *args)
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == f"jobrunner: error: {NO_DATABASE.format(typo)}"
    assert result.stdout == ""
    assert files_in(tmp_path) == before  # no file, no -wal/-shm, no log directory


@pytest.mark.sqlite_only(reason="a mistyped SQLite file name")
def test_the_typo_that_started_it_all_as_a_user_types_it(home, tmp_path):
    """`jobrunner --db jbos.db list`: the fast path, as a real process, in the user's directory."""
    for args in (
        ["--db", "jbos.db", "list"],
        ["--db", "jbos.db", "list", "--json"],
        ["--db", "jbos.db", "stats"],
    ):
        result = run_jobrunner(*args, cwd=Path.cwd())
        assert (result.returncode, result.stdout) == (2, ""), args
        assert one_error_line(result.stderr) == f"jobrunner: error: {NO_DATABASE.format('jbos.db')}"
    assert list(Path.cwd().iterdir()) == []


REFUSED_SUBMITS = [
    ["submit", "--after", "5", "--", "true"],
    ["submit", "--after", "1", "--after", "2", "--", "true"],
    ["submit", "--after", HUGE, "--", "true"],
    ["submit", "--after", "x", "--", "true"],
    ["submit", "--priority", "bogus", "--", "true"],
    ["submit", "--in", "5x", "--", "true"],
    ["submit", "--xyzzy", "--", "true"],
    ["submit"],
]


@pytest.mark.parametrize("args", REFUSED_SUBMITS, ids=" ".join)
def test_a_refused_submit_leaves_no_database_behind(cli, db_path, args):
    result = cli(*args)
    assert result.exit_code == 2
    one_error_line(result.stderr)
    assert result.stdout == ""
    if is_url(db_path):  # the server database is there: a check of --after may have made its tables
        assert not database_exists(db_path) or not sql(db_path, "SELECT id FROM job")
    else:
        assert not database_exists(db_path)  # no file, nor -wal, -shm


@pytest.mark.sqlite_only(reason="no SQLite file appears in the working directory")
def test_a_refused_submit_leaves_nothing_on_the_fast_path_either(home, tmp_path):
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"command": ["true"], "after": 7}\n')
    for args in (["submit", "--after", "5", "--", "true"], ["submit", "--after", HUGE, "--", "true"],
                 ["submit", "--from-file", str(lines)]):  # fmt: skip
        result = run_jobrunner("--db", "new.db", *args, cwd=Path.cwd())
        assert (result.returncode, result.stdout) == (2, ""), (args, result.stderr)
        one_error_line(result.stderr)
    assert list(Path.cwd().iterdir()) == []


@pytest.mark.sqlite_only(reason="a new SQLite file is refused before it exists; a server database exists already")
def test_after_an_unknown_job_reads_the_same_on_a_new_and_on_an_existing_database(cli, db_path, store):
    """The early refusal (no file yet) says what the store says once the file exists."""
    on_existing = cli("submit", "--after", "5", "--", "true")
    fresh = db_path.parent / "fresh.db"
    on_new = cli("--db", str(fresh), "submit", "--after", "5", "--", "true")
    assert on_existing.stderr == on_new.stderr == "jobrunner: error: --after: no job with id 5\n"
    assert not fresh.exists()


def test_commands_that_add_something_still_create_the_database(cli, db_path, another_db, monkeypatch):
    assert cli.submit("--", "true") == 1
    other = another_db("schedules")
    monkeypatch.setenv("JOBRUNNER_DB", other)  # not --db: a URL there would be refused if it had a password
    result = cli("schedule", "add", "nightly", "--cron", "0 3 * * *", "--", "true")
    assert result.exit_code == 0, result.stderr
    assert database_exists(other)


# ------------------------------------------------------------------ ids: positive, within 64 bits
ID_COMMANDS = [
    ["show", "{}"], ["show", "{}", "--json"], ["logs", "{}"], ["retry", "{}"], ["cancel", "1", "{}"],
    ["priority", "{}", "high"], ["wait", "{}"], ["submit", "--after", "{}", "--", "true"],
]  # fmt: skip


@pytest.mark.parametrize("bad", [HUGE, "99999999999999999999999", "9" * 5000, "abc", "0", "1.5", "٣", ""])
@pytest.mark.parametrize("command", ID_COMMANDS, ids=" ".join)
def test_an_id_that_cannot_be_one_is_one_line_naming_it(cli, store, command, bad):
    cli.submit("--", "true")
    result = cli(*[word.format(bad) for word in command])
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert f"{bad!r} is not a job id: ids are positive whole numbers" in line
    assert cli.count() == 1 and cli.job(1)["status"] == "queued"  # and nothing changed


def test_a_huge_id_on_the_fast_path_is_one_line(db_path):
    db = db_path
    assert run_jobrunner("--db", str(db), "submit", "--", "true").returncode == 0
    for args in (["submit", "--after", HUGE, "--", "true"], ["show", HUGE], ["logs", HUGE], ["retry", HUGE]):
        result = run_jobrunner("--db", str(db), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert f"'{HUGE}' is not a job id" in one_error_line(result.stderr)


# ------------------------------------------------------------------ usage errors: one line, exit 2
USAGE_ERRORS = [
    (["submit", "--xyzzy", "--", "true"], "no such option: --xyzzy; see `jobrunner submit --help`"),
    (["submit", "--nam", "x", "--", "true"], "no such option: --nam (did you mean --name"),
    (["list", "--stat", "queued"], "(did you mean --status"),
    (["sbumit", "--", "true"], "no such command 'sbumit' (did you mean 'submit'?)"),
    (["--xyzzy", "list"], "no such option: --xyzzy; see `jobrunner --help`"),
    (["list", "--limit", "-3"], "--limit: -3 is out of range: give 0 or more; see `jobrunner list --help`"),
    (["list", "-n", "x"], "--limit: 'x' is not a valid"),
    (["daemon", "--workers", "0"], "--workers: 0 is out of range: give 1 to 512"),
    (["submit", "--retries", "many", "--", "true"], "--retries: 'many' is not a valid"),
    (["list", "extra"], "unexpected extra argument"),
    (["show"], "missing argument 'ID'"),
    (["wait"], "missing argument 'ID...'"),
    (["schedule", "add"], "missing arguments; see `jobrunner schedule add --help`"),
    (["schedule", "frobnicate"], "no such command 'frobnicate'"),
    (["submit", "--name"], "option '--name' requires an argument"),
    (["submit"], "nothing to run: give a task name, --call module:function, or -- COMMAND"),
    (["priority"], "give one or more job ids, then the priority"),
    (["priority", "high", "3"], "'high' is not a job id"),
]


@pytest.mark.parametrize(("args", "words"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_every_usage_error_is_one_line_with_the_prefix(cli, store, args, words):
    result = cli(*args)
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert words in line
    assert result.stdout == ""
    assert "╭" not in result.output and "Usage:" not in result.output and "Traceback" not in result.output


def test_usage_errors_read_the_same_through_the_console_script(db_path):
    for args, words in USAGE_ERRORS[:6] + USAGE_ERRORS[-3:]:
        result = run_jobrunner("--db", str(db_path), *args)
        assert (result.returncode, result.stdout) == (2, ""), args
        assert words in one_error_line(result.stderr), args
    assert not database_exists(db_path)


@pytest.mark.parametrize("args", [[], ["schedule"], ["systemd"]], ids=repr)
def test_a_bare_group_prints_its_help_on_stdout(cli, args):
    """Asking for nothing is asking what there is: the help, exit 0 (documented in README)."""
    result = cli(*args)
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: jobrunner") and "Commands:" in result.stdout


def test_error_line_keeps_a_message_on_one_line():
    from jobrunner.errors import error_line

    assert error_line("bad value 'a\nb'\n") == "jobrunner: error: bad value 'a; b'"


# ------------------------------------------------------------------ the right words
def test_an_unknown_timezone_is_reported_against_tz(cli, store):
    result = cli("schedule", "add", "x", "--cron", "0 3 * * *", "--tz", "Mars/Olympus", "--", "true")
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert line.startswith("jobrunner: error: --tz: unknown timezone 'Mars/Olympus'"), line
    assert "--cron" not in line


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--every", "5", "minutes"], "`--every 5 minutes`: write `--every 5m`"),
        (["--every", "2", "hours"], "`--every 2 hours`: write `--every 2h`"),
        (["--every", "1.5", "h"], "`--every 1.5 h`: write `--every 1.5h`"),
        (
            ["--every", "5m", "echo", "hi"],
            "unexpected words 'echo hi' after the NAME 'x': put a shell command after --",
        ),
    ],
)
def test_a_stray_word_after_the_name_is_named(cli, store, words, message):
    result = cli("schedule", "add", "x", *words, "--", "true")
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert message in line and "give the schedule a NAME" not in line


def test_wait_timeout_takes_durations_and_says_when_no_daemon_runs(cli, db_path):
    job_id = cli.submit("--", "true")
    result = cli("wait", str(job_id), "--timeout", "250ms")
    assert result.exit_code == 124
    assert result.stderr.splitlines() == [
        f"jobrunner: no daemon is running: job(s) {job_id} will not progress until one starts "
        "(jobrunner daemon); still waiting",
        f"jobrunner: still waiting for job(s) {job_id} after 250ms",
    ]
    assert cli("wait", str(job_id), "--timeout", "1m30s", "--help").exit_code == 0
    bad = cli("wait", str(job_id), "--timeout", "soon")
    assert bad.exit_code == 2
    assert "--timeout: 'soon' is not a duration" in one_error_line(bad.stderr)


def test_wait_keeps_waiting_until_a_daemon_starts(db_path, tmp_path, daemon, cli):
    job_id = cli.submit("--", "true")
    said = tmp_path / "wait.stderr"
    with said.open("w") as stderr:
        waiter = subprocess.Popen(
            [sys.executable, "-m", "jobrunner", "wait", str(job_id), "--timeout", "1m"],
            env={**os.environ, "JOBRUNNER_DB": str(db_path)}, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: "no daemon is running" in said.read_text())
        assert waiter.poll() is None  # still waiting
        daemon.start("--workers", "1")
        assert waiter.wait(timeout=30) == 0
        assert len(said.read_text().splitlines()) == 1  # said once, and nothing about the daemon that came
    finally:
        if waiter.poll() is None:
            os.killpg(waiter.pid, 9)
            waiter.wait()


def test_wait_says_nothing_about_daemons_when_one_runs(cli, daemon):
    daemon.start("--workers", "1")
    job_id = cli.submit("--", "true")
    result = cli("wait", str(job_id), "--timeout", "30s")
    assert (result.exit_code, result.stderr) == (0, "")


# ------------------------------------------------------------------ help: every word, whole sentences
def every_command() -> list[tuple[list[str], object]]:
    """(path, click command) for the root and every command and group under it."""
    import typer.main

    found = []

    def walk(path: list[str], command: object) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)

    walk([], typer.main.get_command(app))
    return found


COMMANDS = every_command()


def flat(text: str) -> str:
    """Whitespace as the help formatter may rewrap it: runs of it are one space, none after a hyphen."""
    return re.sub(r"-\s+", "-", " ".join(text.split()))


def help_texts(command: object) -> list[str]:
    import inspect

    texts = [inspect.cleandoc(command.help)] if command.help else []  # type: ignore[attr-defined]
    texts += [param.help for param in command.params if getattr(param, "help", None)]  # type: ignore[attr-defined]
    return texts


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "jobrunner" for p, _ in COMMANDS])
def test_help_shows_every_word_of_every_help_string(path, command, monkeypatch):
    """Rich markup once ate '[default: default]' and '[tasks.NAME]': every help string must show whole."""
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(app, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = flat(result.stdout)
    for text in help_texts(command):
        for paragraph in text.split("\n\n"):
            assert flat(paragraph) in shown, (path, paragraph)
        for bracketed in re.findall(r"\[[^\]]*\]", text):
            assert flat(bracketed) in shown, (path, bracketed)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "jobrunner" for p, _ in COMMANDS])
def test_help_reads_as_whole_sentences(path, command):
    for text in help_texts(command):
        assert text[0].isupper() or not text[0].isalpha(), (path, text)
        assert text.rstrip().endswith("."), (path, text)
    for name, sub in getattr(command, "commands", {}).items():
        # as `--help` lists it on an 80-column terminal: click's formatter is 78 wide, minus the names
        listed = sub.get_short_help_str(limit=78 - 6 - max(map(len, command.commands)))
        assert listed.endswith(".") and not listed.endswith("..."), (path, name, listed)


def test_daemon_durations_take_units_like_every_other_duration(db_path):
    """`--grace 2m` as `wait --timeout 1m` and `submit --timeout 10m`: one way to write a duration."""
    from tests.conftest import root_flag, run_jobrunner

    run_jobrunner("submit", "--", "true")
    bad = run_jobrunner("daemon", "--kill-grace", "5x", *root_flag(db_path))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("jobrunner: error: --kill-grace: '5x' is not a duration")
    short = run_jobrunner("daemon", "--lease", "1m", "--heartbeat", "30s", *root_flag(db_path))
    assert short.returncode == 2 and "--heartbeat 30 is too long for --lease 60" in short.stderr


def test_verbose_says_which_database_and_config_a_command_uses(home, tmp_path, another_db):
    """`--verbose`: one stderr line naming the database and the config file actually read."""
    config = tmp_path / "work" / "jobs.toml"
    config.write_text('[tasks.hello]\ncommand = ["true"]\n')
    db = another_db("v")
    for args in (["submit", "--", "true"], ["list"], ["show", "1"]):
        result = run_jobrunner("--verbose", "--db", str(db), *args, env={"JOBRUNNER_DB": ""})
        assert result.returncode == 0, result.stderr
        assert result.stderr == f"jobrunner: database {db}, config {config}\n"
