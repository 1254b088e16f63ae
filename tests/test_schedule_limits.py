"""A schedule takes the job options a task takes (issue 18): memory, cpu_time, max_log_size,
timeout and retries on an inline [schedules.NAME] table and on `schedule add`.

What a user checks: the jobs it fires carry them (and a job over its memory limit fails with
that reason), `schedule list --json` shows them as given, and a bad value is refused in one
line, in the same words, by `schedule add`, `submit`, `doctor` and the daemon.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import run_jobrunner, wait_until

PY = sys.executable
LIMITS = ["--memory", "2G", "--cpu-time", "10m", "--max-log-size", "50M", "--timeout", "30s", "--retries", "2"]


def write_config(text: str) -> None:
    Path("jobs.toml").write_text(text)
    Path("jobs.toml").chmod(0o600)


def fired_job(cli, name: str) -> dict | None:
    """The last job schedule `name` fired, once it has fired one."""
    view = next(v for v in cli.json("schedule", "list") if v["name"] == name)
    return cli.job(view["last_job_id"]) if view["last_job_id"] else None


def finished_job(cli, name: str) -> dict | None:
    """The last job schedule `name` fired, once that job has finished."""
    job = fired_job(cli, name)
    return job if job is not None and job["status"] in ("succeeded", "dead", "cancelled") else None


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobrunner: error: "), result.stderr
    return lines[0].removeprefix("jobrunner: error: ")


# ---------------------------------------------------------------- a real daemon
def test_every_job_a_schedule_fires_carries_its_limits_timeout_and_retries(cli, daemon):
    """An inline config schedule, one over a task (its values win over the task's) and a CLI one."""
    write_config(
        '[tasks.crunch]\ncommand = ["true"]\nmemory = "1G"\nretries = 5\n\n'
        '[schedules.inline]\nevery = "1s"\ncommand = ["true"]\n'
        'memory = "2G"\ncpu_time = "10m"\nmax_log_size = "50M"\ntimeout = "30s"\nretries = 2\n\n'
        '[schedules.over-task]\nevery = "1s"\ntask = "crunch"\nmemory = "2G"\ncpu_time = "10m"\n'
        'max_log_size = "50M"\ntimeout = "30s"\nretries = 2\n'
    )  # fmt: skip
    cli.ok("schedule", "add", "by-cli", "--every", "1s", *LIMITS, "--", "true")
    daemon.start("--workers", "1")
    for name in ("inline", "over-task", "by-cli"):
        job = wait_until(lambda name=name: fired_job(cli, name), timeout=20)
        assert (job["memory"], job["cpu_time"], job["max_log_size"]) == (2 << 30, 600, 50 << 20), name
        assert (job["timeout"], job["max_retries"]) == (30, 2), name
        assert "limits     memory 2G, cpu time 10m, log 50M" in cli.ok("show", str(job["id"]))
    assert fired_job(cli, "over-task")["task"] == "crunch"


@pytest.mark.slow
def test_a_job_a_schedule_fires_over_its_memory_limit_fails_with_the_reason(cli, daemon):
    grab = "x = bytearray(500_000_000); print('held', len(x))"
    cli.ok("schedule", "add", "grab", "--every", "1s", "--memory", "200M", "--", PY, "-c", grab)
    daemon.start("--workers", "1")
    job = wait_until(lambda: finished_job(cli, "grab"), timeout=60)
    cli.ok("schedule", "pause", "grab")
    assert job["status"] == "dead" and job["memory"] == 200 << 20
    assert job["error"].startswith("memory limit 200M exceeded ("), job["error"]
    assert "MemoryError" in Path(job["log_path"]).read_text()


# ---------------------------------------------------------------- the doors
@pytest.mark.parametrize(("args", "message"), [
    (["--memory", "2X"], '--memory: \'2X\' is not a size: use a number of bytes or units like "512K", "200M", "2G"'),
    (["--memory", "512"], "--memory: '512' is less than 1M"),
    (["--cpu-time", "0.5s"], "--cpu-time: '0.5s' is less than 1s (CPU time is counted in whole seconds)"),
    (["--max-log-size", "100"], "--max-log-size: '100' is less than 1K"),
    (["--timeout", "soon"], "--timeout: 'soon' is not a duration"),
    (["--retries", "-1"], "--retries: -1 is not a number of retries (0-1000)"),
])  # fmt: skip
def test_schedule_add_refuses_a_bad_value_in_one_line_as_submit_does(cli, store, args, message):
    """`store`: a database for `schedule list` to read (the refusals create none)."""
    write_config('[tasks.t]\ncommand = ["true"]\n')
    for how in (["--", "true"], ["--task", "t"]):  # over a task, the option is named, not the task
        result = cli("schedule", "add", "s", "--every", "5m", *args, *how)
        assert result.exit_code == 2
        assert one_error_line(result).startswith(message)
    submitted = cli("submit", *args, "--", "true")
    assert one_error_line(submitted).startswith(message)  # the same words as submit's
    assert cli.json("schedule", "list") == []


def test_a_duration_in_two_words_is_named_for_its_option(cli, store):
    result = cli("schedule", "add", "s", "--every", "1h", "--timeout", "5", "minutes", "--", "true")
    assert result.exit_code == 2
    assert one_error_line(result).startswith("`--timeout 5 minutes`: write `--timeout 5m`")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("memory", '"2X"', "'2X' is not a size"),
    ("cpu_time", '"0.5s"', "'0.5s' is less than 1s"),
    ("max_log_size", "100", "100 is less than 1K"),
    ("timeout", '"soon"', "'soon' is not a duration"),
    ("retries", "-1", "-1 is not a number of retries (0-1000)"),
])  # fmt: skip
def test_the_config_check_refuses_a_bad_value_on_a_schedule_alike_everywhere(cli, db_path, key, value, message):
    """submit, schedule add --task, doctor and the daemon: one line naming schedules.X.KEY."""
    cli.submit("--", "true")  # the database exists
    write_config(f'[tasks.t]\ncommand = ["true"]\n\n[schedules.x]\nevery = "5m"\ncommand = ["true"]\n{key} = {value}\n')
    submitted = cli("submit", "t")
    assert submitted.exit_code == 2
    error = one_error_line(submitted)
    assert error.startswith(f"{Path.cwd() / 'jobs.toml'}: schedules.x.{key}: {message}"), error
    scheduled = cli("schedule", "add", "s", "--every", "5m", "--task", "t")
    assert scheduled.exit_code == 2 and one_error_line(scheduled) == error
    doctor = cli("doctor", "--json")
    [config_check] = [c for c in json.loads(doctor.stdout) if c["check"] == "config"]
    assert config_check["level"] == "fail" and config_check["message"] == error
    started = run_jobrunner("daemon", "--workers", "1", cwd=Path.cwd(), timeout=60)
    assert started.returncode == 2 and f"jobrunner: error: {error}" in started.stderr
    assert cli.count() == 1 and cli.json("schedule", "list") == []


def test_a_task_schedule_is_checked_with_its_task(cli, db_path):
    """A key of the schedule that does not fit its task names the schedule's key."""
    write_config('[tasks.t]\ncommand = ["true"]\n\n[schedules.x]\nevery = "5m"\ntask = "t"\nargs = [1]\n')
    result = cli("submit", "--", "true")  # needs no config: warns and goes on
    assert "schedules.x.args: args are for callables" in result.stderr


# ---------------------------------------------------------------- what list shows
def test_schedule_add_options_round_trip_in_schedule_list_json(cli, db_path):
    cli.ok("schedule", "add", "s", "--every", "1h", *LIMITS, "--backoff", "5s", "--", "true")
    [view] = cli.json("schedule", "list")
    assert view["job"] == {
        "command": ["true"], "cwd": str(Path.cwd()), "memory": "2G", "cpu_time": "10m",
        "max_log_size": "50M", "timeout": "30s", "retries": 2, "backoff": "5s",
    }  # fmt: skip
    job = cli.job(int(cli.ok("schedule", "run", "s")))
    assert (job["memory"], job["cpu_time"], job["max_log_size"], job["timeout"]) == (2 << 30, 600, 50 << 20, 30)
    assert job["max_retries"] == 2 and job["backoff"]["base"] == 5

    from tests.servehelpers import client_for

    with client_for(db_path) as api:  # the HTTP API gives what the CLI does
        assert api.get("/api/schedules").json() == cli.json("schedule", "list")
        described = api.get("/openapi.json").json()["components"]["schemas"]["ScheduleJobOut"]["properties"]
        assert {"memory", "cpu_time", "max_log_size", "timeout", "retries"} <= set(described)


def test_a_config_schedule_shows_its_options_and_hides_its_env_values(cli, store):
    import time

    from jobrunner.config import load_config
    from jobrunner.daemon.scheduler import Scheduler

    write_config('[schedules.x]\nevery = "1h"\ncommand = ["true"]\nmemory = "1G"\nenv = { TOKEN = "s3cret" }\n')
    Scheduler(store, load_config()).load(load_config(), time.time())  # what a daemon does at start
    [view] = cli.json("schedule", "list")
    assert view["job"] == {"command": ["true"], "memory": "1G", "env": {"TOKEN": "***"}}
    job = cli.job(int(cli.ok("schedule", "run", "x")))
    assert job["memory"] == 1 << 30 and job["env"] == {"TOKEN": "s3cret"}  # the job itself has the value
