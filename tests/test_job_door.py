"""The door: one validation for every way a job comes in, and nothing stored that breaks later.

CLI options, bulk lines, the Python API, the TUI's form, config tasks and schedules all go
through jobrunner.domain.jobspec; a refused job is one line, exit 2, and no database file.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jobrunner
from jobrunner.domain.jobspec import SpecError, build_spec
from jobrunner.errors import ConfigError, UsageError
from tests.conftest import ROOT, database_exists, sql, wait_until

DEEP = "[" * 150 + "]" * 150  # past the 100 levels a job's JSON may nest

#: The checks a submit makes against this machine: only where the daemon shares it (a SQLite file).
ON_THIS_HOST = pytest.mark.sqlite_only(reason="the machine checks are for a daemon on this host: a URL's may run elsewhere")


def refused(cli: Any, db_path: Path, *args: str, input: str | None = None) -> str:
    """Run `jobrunner ARGS`; it must fail as a user mistake: exit 2, one line, nothing created."""
    result = cli(*args, input=input)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobrunner: error: "), result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    assert not database_exists(db_path), "a refused submit created the database"
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--in", "1e12"], "--in: '1e12' is too long: at most 3650d"),
        (["--in", "4000d"], "--in: '4000d' is too long"),
        (["--at", ""], "--at: '' is not a time"),
        (["--at", "1969-12-31T23:00+00:00"], "--at: '1969-12-31T23:00+00:00' is out of range"),
        (["--at", "9999-12-31T23:00+00:00"], "is out of range: give a time from 1970 to 9999-12-30"),
        (["--timeout", "1e12"], "--timeout: '1e12' is too long"),
        (["--backoff", "1e12"], "--backoff: '1e12' is too long"),
        pytest.param(["--cwd", "/nonexistent/dir"], "--cwd: /nonexistent/dir does not exist", marks=ON_THIS_HOST),
        pytest.param(["--cwd", "/etc/passwd"], "--cwd: /etc/passwd is not a directory", marks=ON_THIS_HOST),
        (["--name", "caf\udce9"], "--name: 'caf\\udce9' is not valid UTF-8 text"),
        (["--cwd", "/tmp/caf\udce9"], "--cwd: '/tmp/caf\\udce9' is not valid UTF-8 text"),
        (["--meta", f"deep={DEEP}"], "--meta: nested more than 100 levels deep"),
        (["--env", "A=x\x00y"], "--env: must not contain a NUL byte"),
    ],
)
def test_cli_refuses_what_would_poison_the_database(cli, db_path, args, message):
    assert message in refused(cli, db_path, "submit", *args, "--", "true")


@ON_THIS_HOST
def test_cli_refuses_a_callable_whose_module_is_nowhere(cli, db_path):
    line = refused(cli, db_path, "submit", "--call", "nosuchpackage.mod:run")
    assert "--call: no module named 'nosuchpackage'" in line
    assert "sys.path" in line and "[daemon] python_path" in line  # where the daemon imports from


def test_callables_that_can_be_found_are_accepted_without_importing_them(cli, tmp_path):
    """A module in the working directory, a package's submodule, the standard library: found,
    and a module with side effects is not run at submit."""
    Path("door_side_effect.py").write_text("open('imported', 'w').close()\ndef run(): pass\n")
    for target in ("door_side_effect:run", "json:dumps", "tests.jobfuncs:add", "tests.nosuch:fn"):
        assert cli.submit("--call", target) > 0  # a missing submodule is not checked: importing runs code
    assert not Path("imported").exists()


def test_cwd_is_stored_as_an_absolute_path(cli):
    Path("reports").mkdir()
    job = cli.job(cli.submit("--cwd", "reports", "--", "true"))
    assert job["cwd"] == str(Path.cwd() / "reports")


def test_a_daemon_on_another_host_is_not_second_guessed(cli, db_path, monkeypatch):
    """With a database URL the daemon may run elsewhere: its directories and modules are not ours.
    The check is skipped, so the submit reaches the (unreachable) database and fails there."""
    monkeypatch.setenv("JOBRUNNER_DB", "postgresql://nobody@127.0.0.1:1/none")
    result = cli("submit", "--cwd", "/nonexistent/dir", "--", "true")
    assert "/nonexistent/dir" not in result.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"command": "true", "backoff": 1e12}, "backoff: 1000000000000.0 is too long"),
        ({"command": "true", "backoff": {"max": "4000d"}}, "backoff.max: '4000d' is too long"),
        ({"command": "true", "timeout": 10**400}, "timeout: that number of seconds is too long"),
        ({"command": ["echo", "a\x00b"]}, "command: must not contain a NUL byte"),
        ({"command": "echo a\x00b"}, "command: must not contain a NUL byte"),
        ({"command": "true", "env": {"A": "x\x00"}}, "env.A: must not contain a NUL byte"),
        ({"command": "true", "env": {"A\x00": "x"}}, "env: 'A\\x00' is not a variable name"),
        ({"command": "true", "cwd": "/tmp\x00"}, "cwd: must not contain a NUL byte"),
        ({"command": "true", "name": "a\x00b"}, "name: must not contain a NUL byte"),
        ({"command": "true", "tags": ["a\x00"]}, "tags: must not contain a NUL byte"),
        ({"command": "true", "queue": "q\x00"}, "queue: 'q\\x00' is not a queue name"),
        ({"command": "true", "metadata": {"k": ["a\x00"]}}, "metadata: must not contain a NUL byte"),
        ({"command": "true", "retry_on": ["Boom\x00"]}, "retry_on: must not contain a NUL byte"),
        ({"command": "true", "metadata": {"k": float("nan")}}, "metadata: nan is not a JSON number"),
        ({"callable": "json:dumps", "args": json.loads(DEEP)}, "args: nested more than 100 levels deep"),
        ({"command": "true", "at": ""}, "at: '' is not a time"),
        ({"command": "true", "at": 1e15}, "at: 1000000000000000.0 is out of range"),
        ({"command": "true", "in": "1e12"}, "in: '1e12' is too long"),
        ({"command": "true", "at": [2026]}, "at: must be a datetime, an ISO 8601 string or epoch seconds"),
        ({"command": "true", "after": [2**64]}, "after: 18446744073709551616 is neither a job id"),
        ({"task": ["x"]}, "task: unknown task ['x']"),
        pytest.param({"callable": "nosuchpackage:run"}, "callable: no module named 'nosuchpackage'", marks=ON_THIS_HOST),
    ],
)
def test_bulk_lines_are_checked_like_options(cli, db_path, line, message):
    Path("jobs.jsonl").write_text(json.dumps({"command": "true"}) + "\n" + json.dumps(line) + "\n")
    assert f"jobs.jsonl:2: {message}" in refused(cli, db_path, "submit", "--from-file", "jobs.jsonl")


def test_bulk_line_nested_a_hundred_thousand_deep(cli, db_path):
    line = '{"callable": "json:dumps", "args": ' + "[" * 100_000 + "]" * 100_000 + "}"
    message = refused(cli, db_path, "submit", "-f", "-", input=line + "\n")
    assert message == "jobrunner: error: <stdin>:1: nested more than 100 levels deep"


def test_times_out_of_range_already_stored_do_not_break_reads(cli, db_path):
    """Rows written before the door checked times (or by hand) read as a placeholder."""
    ids = [cli.submit("--", "true") for _ in range(3)]
    sql(db_path, "UPDATE job SET run_at = 1e12 * 1000, status = 'scheduled' WHERE id = ?", (ids[0],))
    sql(db_path, "UPDATE job SET created_at = -1e15 WHERE id = ?", (ids[1],))
    sql(db_path, "UPDATE job SET started_at = 1, finished_at = 1e300 WHERE id = ?", (ids[2],))
    listed = cli.ok("list")
    assert all(str(i) in listed for i in ids)
    jobs = {job["id"]: job for job in cli.json("list")}
    assert jobs[ids[0]]["scheduled_at"] == "out of range"
    assert jobs[ids[1]]["created_at"] == "out of range"
    assert jobs[ids[2]]["finished_at"] == "out of range"
    assert "scheduled  out of range" in cli.ok("show", str(ids[0]))
    assert "created    out of range" in cli.ok("show", str(ids[1]))
    assert cli.job(ids[2])["finished_at"] == "out of range"


# The Python API ------------------------------------------------------------------------------


def test_api_at_takes_a_datetime_an_iso_string_or_epoch_seconds(cli):
    moment = datetime(2099, 12, 1, 2, 0, tzinfo=UTC)
    for at in (moment, "2099-12-01T03:00+01:00", moment.timestamp()):
        job = cli.job(jobrunner.submit(["true"], at=at))
        assert (job["status"], job["scheduled_at"]) == ("scheduled", "2099-12-01T02:00:00.000+00:00"), at


def test_api_delay_takes_a_duration_or_seconds(cli):
    for delay in ("10m", 600, 600.0):
        before = time.time()
        job = cli.job(jobrunner.submit(["true"], delay=delay))
        scheduled = datetime.fromisoformat(job["scheduled_at"]).timestamp()
        assert job["status"] == "scheduled" and before + 599 <= scheduled <= time.time() + 601, delay


def test_api_takes_python_types_where_they_are_natural(cli, db_path):
    from datetime import timedelta

    job = cli.job(jobrunner.submit(["true"], delay=timedelta(minutes=10), cwd=Path.cwd(), db=db_path))
    assert job["status"] == "scheduled" and job["cwd"] == str(Path.cwd())
    with pytest.raises(UsageError, match=r"^db: must be a path or URL string, got int"):
        jobrunner.submit(["true"], db=5)


def test_api_run_at_still_works_but_is_deprecated(cli):
    with pytest.warns(DeprecationWarning, match="use at="):
        job = cli.job(jobrunner.submit(["true"], run_at=4_000_000_000))
    assert job["scheduled_at"] == "2096-10-02T07:06:40.000+00:00"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert cli.job(jobrunner.submit(["true"], run_at="2099-12-01T02:00Z"))["status"] == "scheduled"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s(["true"], at="next week"), "at: 'next week' is not a time"),
        (
            lambda s: s(["true"], at=[2026]),
            "at: must be a datetime, an ISO 8601 string or epoch seconds, got list",
        ),
        (lambda s: s(["true"], at=1e15), "at: 1000000000000000.0 is out of range"),
        (lambda s: s(["true"], at=True), "at: True is not a time"),
        (lambda s: s(["true"], delay="soon"), "delay: 'soon' is not a duration"),
        (lambda s: s(["true"], delay=1e12), "delay: 1000000000000.0 is too long"),
        (lambda s: s(["true"], delay=[5]), "delay: [5] is not a duration"),
        (lambda s: s(["true"], at="2099-01-01", delay="1m"), "give at or delay, not both"),
        (lambda s: s(["true"], at="2099-01-01", run_at=1), "give at or run_at (its old name), not both"),
        (lambda s: s(["true"], run_at="tomorrow"), "run_at: 'tomorrow' is not a time"),
        (lambda s: s(["true"], after=2**64), "after: 18446744073709551616 is not a job id"),
        (lambda s: s(["true"], after=["1"]), "after: '1' is not a job id"),
        (lambda s: s(5), "target: int is not a job"),
        (lambda s: s(["true"], env={"A": "x\x00"}), "env.A: must not contain a NUL byte"),
        pytest.param(lambda s: s(["true"], cwd="/nonexistent/dir"), "cwd: /nonexistent/dir does not exist", marks=ON_THIS_HOST),
        (lambda s: s("json:dumps", args=[json.loads(DEEP)]), "args: nested more than 100 levels deep"),
        (lambda s: s("json:dumps", args="abc"), "args: must be a list, got str"),
        (lambda s: s("json:dumps", kwargs={"x": {1: 2}}), "kwargs: keys must be strings, got int 1"),
        pytest.param(lambda s: s("nosuchpackage.mod:run"), "callable: no module named 'nosuchpackage'", marks=ON_THIS_HOST),
        (lambda s: s(["true"], name="a\x00"), "name: must not contain a NUL byte"),
    ],
)
def test_api_refuses_with_a_message_naming_the_argument(cli, db_path, call, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(UsageError) as raised:
            call(jobrunner.submit)
    assert message in str(raised.value)
    assert not database_exists(db_path)


def test_api_arguments_nested_too_deep_for_a_worker_are_refused(cli, db_path):
    """700 lists deep cannot be pickled to a worker; a cycle would never end."""
    deep: list[Any] = []
    for _ in range(700):
        deep = [deep]
    cycle: list[Any] = []
    cycle.append(cycle)
    for value in (deep, cycle):
        with pytest.raises(UsageError, match="nested more than 100 levels deep"):
            jobrunner.submit("json:dumps", args=[value])
    assert not database_exists(db_path)


def test_task_decorator_takes_when_and_checks_it_at_once(cli):
    from jobrunner import task

    later = task(delay="10m")(json.dumps)
    assert cli.job(later.submit([1]))["status"] == "scheduled"
    with pytest.raises(UsageError, match="delay: 'soon' is not a duration"):
        task(delay="soon")(json.dumps)


def test_current_job_is_none_outside_a_worker():
    from jobrunner import current_job

    assert current_job() is None and jobrunner.current_job is current_job
    assert "current_job" in jobrunner.__all__


def test_a_job_module_that_imports_current_job_runs(cli, daemon):
    """README: `jobrunner.current_job()` returns the running job's context; a module that
    imports it used to make every callable in it fail as a permanent "unknown callable"."""
    Path("door_context_jobs.py").write_text(
        "from jobrunner import current_job\n\n"
        "def whoami():\n"
        "    job = current_job()\n"
        "    return {'id': job.id, 'attempt': job.attempt}\n"
    )
    job_id = cli.submit("--call", "door_context_jobs:whoami")
    daemon.start("--workers", "1", env={"PYTHONPATH": f"{ROOT}{os.pathsep}{Path.cwd()}"})
    job = wait_until(lambda: (j := cli.job(job_id))["status"] in ("succeeded", "dead") and j, timeout=30)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"] == {"id": job_id, "attempt": 1}


# One door, one message -----------------------------------------------------------------------

TOO_LONG = "'4000d' is too long: at most 3650d (about ten years)"
TOO_LONG_RE = re.escape(TOO_LONG)


def test_every_entry_point_gives_the_same_message_for_a_bad_value(cli, db_path, home):
    from jobrunner.config import Config, parse_config
    from jobrunner.store.schedules import ScheduleRow, job_spec_for

    assert f"--timeout: {TOO_LONG}" in refused(cli, db_path, "submit", "--timeout", "4000d", "--", "true")
    Path("jobs.jsonl").write_text(json.dumps({"command": "true", "timeout": "4000d"}) + "\n")
    assert f"jobs.jsonl:1: timeout: {TOO_LONG}" in refused(cli, db_path, "submit", "-f", "jobs.jsonl")
    with pytest.raises(UsageError, match=f"^timeout: {TOO_LONG_RE}"):
        jobrunner.submit(["true"], timeout="4000d")
    with pytest.raises(ConfigError, match=f"tasks.nightly.timeout: {TOO_LONG_RE}"):
        parse_config({"tasks": {"nightly": {"command": "true", "timeout": "4000d"}}})
    row = ScheduleRow(
        name="hourly", source="cli", kind="every", expression="1h", timezone="UTC",
        job={"command": "true", "timeout": "4000d"}, misfire="coalesce", misfire_grace=3600.0,
        max_running=1, paused=False, next_fire_at=None, last_fire_at=None, last_job_id=None,
        missed=0, last_note=None, created_at=0.0, updated_at=0.0,
    )  # fmt: skip
    with pytest.raises(SpecError, match=f"^timeout: {TOO_LONG_RE}"):
        job_spec_for(row, Config())
    assert not database_exists(db_path)


@ON_THIS_HOST
def test_every_submitting_entry_point_checks_the_callable_the_same_way(cli, db_path, store):
    from textual.widgets import Input, Label

    from jobrunner.tui.screens.submit import SubmitDialog
    from tests.tuihelpers import drive, until

    missing = "no module named 'nosuchpackage'"
    Path("jobs.toml").write_text('[tasks.report]\ncallable = "nosuchpackage.reports:build"\n')
    assert f"--call: {missing}" in cli("submit", "--call", "nosuchpackage:run").stderr
    assert f"task 'report': callable: {missing}" in cli("submit", "report").stderr
    Path("jobs.jsonl").write_text(json.dumps({"callable": "nosuchpackage:run"}) + "\n")
    assert f"jobs.jsonl:1: callable: {missing}" in cli("submit", "-f", "jobs.jsonl").stderr
    with pytest.raises(UsageError, match=f"^callable: {missing}"):
        jobrunner.submit("nosuchpackage:run")

    async def scenario(pilot: Any, notes: list[str]) -> None:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, SubmitDialog))
        pilot.app.screen.query_one("#target", Input).value = "nosuchpackage:run"
        await pilot.press("enter")
        error = pilot.app.screen.query_one("#submit-error", Label)
        await until(pilot, lambda: f"callable: {missing}" in str(error.render()))
        assert isinstance(pilot.app.screen, SubmitDialog)  # the form stays open to fix it

    drive(store, scenario)
    assert sql(store, "SELECT COUNT(*) FROM job")[0][0] == 0


# Whatever passes the door can be stored, listed and shown ------------------------------------

_text = st.text(max_size=12)
_json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | _text
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=8)  # fmt: skip
_hostile = (
    _json
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from(
        ["", " ", "\x00", "\udcff", "1e12", "4000d", "-5s", "nan", "9" * 30, "high", "a:b", "x" * 300]
    )
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "command": st.lists(_text, max_size=3) | _text | _hostile,
        "callable": st.sampled_from(["json:dumps", "a:b", "a:b\n", ":", "x"]) | _hostile,
        "args": st.lists(_json, max_size=3) | _hostile, "kwargs": st.dictionaries(_text, _json, max_size=3) | _hostile,
        "name": _text | _hostile, "queue": _text | _hostile, "priority": _hostile, "retries": _hostile,
        "timeout": _hostile, "backoff": _hostile | st.dictionaries(st.sampled_from(["base", "max", "factor"]), _hostile),
        "tags": st.lists(_text, max_size=3) | _hostile, "metadata": st.dictionaries(_text, _json, max_size=3) | _hostile,
        "cwd": _text | _hostile, "env": st.dictionaries(_text, _text, max_size=3) | _hostile,
        "retry_on": st.lists(_text, max_size=2) | _hostile, "retry_on_exit_codes": _hostile,
    },
)  # fmt: skip


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fields=_fields, when=st.none() | _hostile)
def test_whatever_passes_the_door_is_stored_and_read_back(store, fields, when):
    """Random and hostile fields: build_spec refuses them with SpecError, or the job can be
    stored, listed as JSON, and shown in local time, whatever it holds."""
    from jobrunner.domain.starttime import run_time
    from jobrunner.present import local_time
    from jobrunner.store import queries, repo

    now = time.time()
    try:
        spec = build_spec(fields)
        spec.run_at = run_time(when, None, now)
    except SpecError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    job_id = repo.submit(store, spec, now)
    job = queries.get_job(store, job_id)
    json.dumps(job, allow_nan=False)  # what `list --json` prints is JSON
    for key in ("created_at", "scheduled_at"):
        assert local_time(job[key]) not in ("-", "out of range")


def test_a_bad_option_over_a_task_is_blamed_on_the_option_not_the_task(cli, db_path, monkeypatch):
    """`submit TASK --memory 2X` names --memory (the task is fine); a bad value in the task
    itself still names the task. Bulk lines and the Python API name the field alike."""
    Path("jobs.toml").write_text('[tasks.t]\ncommand = ["true"]\n')
    not_a_size = "'2X' is not a size"
    assert cli("submit", "t", "--memory", "2X").stderr.startswith(f"jobrunner: error: --memory: {not_a_size}")
    assert cli("submit", "t", "--retries", "-3").stderr.startswith("jobrunner: error: --retries: -3 is not")
    Path("jobs.jsonl").write_text(json.dumps({"task": "t", "memory": "2X"}) + "\n")
    assert f"jobs.jsonl:1: memory: {not_a_size}" in cli("submit", "-f", "jobs.jsonl").stderr
    monkeypatch.setenv("JOBRUNNER_CONFIG", str(Path("jobs.toml").resolve()))
    with pytest.raises(UsageError, match=f"^memory: {not_a_size}"):
        jobrunner.submit(task="t", memory="2X", db=str(db_path))
    Path("jobs.toml").write_text('[tasks.t]\ncommand = ["true"]\nmemory = "9Q"\n')
    result = cli("submit", "t", "--timeout", "5s")
    assert result.exit_code == 2 and "tasks.t.memory: '9Q' is not a size" in result.stderr
    assert not database_exists(db_path)
