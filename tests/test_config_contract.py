"""The config and schedules contract: one check of the config for every command (reads warn and
go on, commands that use it refuse), schedules and queues that refuse what cannot be meant,
and `[daemon] python_path`, where the workers import job callables from."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import run_jobrunner, sql, wait_until

TASK = '[tasks.t]\ncommand = ["true"]\n'
BROKEN = [  # what `submit` used to accept and the daemon refused
    ('[notify.hook]\ntype = "webhook"\n', "notify.hook.url: give an http:// or https:// URL"),
    ('[notify.mail]\ntype = "email"\nhost = "h"\nto = "a@b.c"\npassword = "x"\n', "notify.mail.password:"),
    ('retention = { succeeded = "7x" }\n', "retention.succeeded: '7x' is not a duration"),
]


def one_line(stderr: str, prefix: str) -> str:
    """The single line a refusal or a warning prints (hints for people, like "no schedules", aside)."""
    lines = [line for line in stderr.splitlines() if line.startswith("jobrunner:") or "error" in prefix]
    assert len(lines) == 1 and lines[0].startswith(prefix), stderr
    return lines[0]


def job_count(db_path: Path) -> int:
    return sql(db_path, "SELECT COUNT(*) FROM job")[0][0]


# ---------------------------------------------------------------- one check for every command
@pytest.mark.parametrize(("text", "message"), BROKEN, ids=["notify", "password", "retention"])
def test_every_command_judges_a_broken_config_alike(cli, db_path, text, message):
    """submit of a task, schedule add --task, the daemon and doctor refuse it with the same words."""
    cli.submit("--", "true")  # the database exists
    Path("jobs.toml").write_text(text + TASK)
    submitted = cli("submit", "t")
    assert submitted.exit_code == 2
    error = one_line(submitted.stderr, "jobrunner: error: ")
    assert message in error and "jobs.toml" in error
    assert job_count(db_path) == 1  # nothing written
    scheduled = cli("schedule", "add", "s", "--every", "5m", "--task", "t")
    assert scheduled.exit_code == 2 and one_line(scheduled.stderr, "jobrunner: error: ") == error
    doctor = cli("doctor", "--json")
    assert doctor.exit_code == 1
    [config_check] = [c for c in json.loads(doctor.stdout) if c["check"] == "config"]
    assert config_check["level"] == "fail" and config_check["message"] == error.removeprefix("jobrunner: error: ")
    daemon = run_jobrunner("daemon", "--workers", "1", cwd=Path.cwd(), timeout=60)
    assert daemon.returncode == 2
    assert error in daemon.stderr


@pytest.mark.parametrize(("text", "message"), BROKEN, ids=["notify", "password", "retention"])
def test_a_command_that_needs_only_the_database_warns_about_a_broken_config(cli, db_path, text, message):
    Path("jobs.toml").write_text(text + TASK)
    result = cli("submit", "--", "true")
    assert result.exit_code == 0 and result.stdout.strip() == "1"
    warning = one_line(result.stderr, "jobrunner: warning: ")
    assert message in warning


READS = [["list"], ["list", "--json"], ["show", "1"], ["stats"], ["schedule", "list"], ["status"]]


def test_a_typo_in_tasks_does_not_block_reads(cli, db_path):
    cli.submit("--", "true")
    Path("jobs.toml").write_text("[tasks.a]\ncommand = ['x']\nretires = 3\n")
    for args in READS:
        result = cli(*args)
        assert result.exit_code in (0, 3), (args, result.stderr)  # status: 3 = no daemon running
        warning = one_line(result.stderr, "jobrunner: warning: ")
        assert "jobs.toml: tasks.a.retires: unknown key 'retires' (did you mean 'retries'?)" in warning
    assert cli.json("list")[0]["id"] == 1
    real = run_jobrunner("list", "--json", cwd=Path.cwd())  # the console script's own fast path
    assert real.returncode == 0 and json.loads(real.stdout)[0]["id"] == 1
    assert one_line(real.stderr, "jobrunner: warning: ")


def test_a_typo_in_tasks_is_refused_by_commands_that_use_the_config(cli, db_path):
    cli.submit("--", "true")
    Path("jobs.toml").write_text("[tasks.a]\ncommand = ['x']\nretires = 3\n")
    for args in (["submit", "a"], ["schedule", "add", "s", "--every", "5m", "--task", "a"], ["systemd", "unit"]):
        result = cli(*args)
        assert result.exit_code == 2, args
        assert "tasks.a.retires" in one_line(result.stderr, "jobrunner: error: ")
    assert job_count(db_path) == 1 and cli.json("schedule", "list") == []
    daemon = run_jobrunner("daemon", "--workers", "1", cwd=Path.cwd(), timeout=60)
    assert daemon.returncode == 2 and "tasks.a.retires" in daemon.stderr


def test_a_broken_db_key_still_stops_a_read(cli, db_path):
    """A read must know which database: `db` and `durability` are never skipped."""
    cli.submit("--", "true")
    Path("jobs.toml").write_text("durability = 'sometimes'\n[tasks.a]\ncommand = ['x']\nretires = 3\n")
    result = cli("list")
    assert result.exit_code == 2
    assert "durability: 'sometimes' must be one of normal, full" in one_line(result.stderr, "jobrunner: error: ")


# ---------------------------------------------------------------- schedules
def test_a_one_off_in_the_past_is_refused(cli):
    cli.submit("--", "true")  # the database exists
    result = cli("schedule", "add", "once", "--at", "2020-01-01T03:00", "--tz", "UTC", "--", "true")
    assert result.exit_code == 2
    line = one_line(result.stderr, "jobrunner: error: ")
    assert "--at: 2020-01-01 03:00:00 UTC is in the past: it is now " in line
    now = datetime.fromisoformat(line.rsplit("it is now ", 1)[1].removesuffix(" UTC")).replace(tzinfo=UTC)
    assert abs(now.timestamp() - time.time()) < 60
    assert cli.json("schedule", "list") == []
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    cli.ok("schedule", "add", "once", "--at", later, "--tz", "UTC", "--", "true")
    [view] = cli.json("schedule", "list")
    assert view["missed"] == 0 and datetime.fromisoformat(view["next_fire_at"]) > datetime.now(UTC)


def test_removing_a_schedule_from_the_config_file_is_refused_with_the_way_out(cli, store):
    from jobrunner.config import load_config
    from jobrunner.daemon.scheduler import Scheduler

    Path("jobs.toml").write_text('[schedules.nightly]\ncron = "0 3 * * *"\ncommand = ["true"]\n')
    scheduler = Scheduler(store, load_config())
    scheduler.load(load_config(), time.time())  # what a daemon does at start
    result = cli("schedule", "remove", "nightly")
    assert result.exit_code == 2
    line = one_line(result.stderr, "jobrunner: error: ")
    assert f"schedule nightly lives in the config file {Path.cwd() / 'jobs.toml'} ([schedules.nightly])" in line
    assert "`jobrunner schedule pause nightly`" in line and "enabled = false" in line
    assert [s["name"] for s in cli.json("schedule", "list")] == ["nightly"]
    cli.ok("schedule", "pause", "nightly")  # the way out it names works, until the config is loaded again
    assert cli.json("schedule", "list")[0]["paused"] is True
    scheduler.load(load_config(), time.time())
    assert cli.json("schedule", "list")[0]["paused"] is False  # as the message says: only until then
    cli.ok("schedule", "add", "mine", "--every", "5m", "--", "true")
    assert "schedule mine removed" in cli.ok("schedule", "remove", "mine")  # the CLI's own still go


# ---------------------------------------------------------------- queues
def test_pausing_a_queue_nothing_uses_is_refused_unless_created(cli, store):
    from jobrunner.store import queries

    Path("jobs.toml").write_text('[queues.q]\nconcurrency = 1\n[tasks.t]\ncommand = ["true"]\nqueue = "tq"\n')
    cli.submit("--queue", "reports", "--", "true")
    cli.ok("schedule", "add", "s", "--every", "5m", "--queue", "sq", "--", "true")
    result = cli("pause", "nosuchqueue")
    assert result.exit_code == 2
    line = one_line(result.stderr, "jobrunner: error: ")
    assert "no queue named 'nosuchqueue'" in line and "known queues: default, q, reports, sq, tq" in line
    assert "--create" in line
    assert queries.paused_queues(store) == []
    assert sql(store, "SELECT COUNT(*) FROM queue_state")[0][0] == 0  # no phantom row
    resumed = cli("resume", "nosuchqueue")
    assert resumed.exit_code == 2 and "no queue named 'nosuchqueue'" in one_line(resumed.stderr, "jobrunner: error: ")
    for queue in ("default", "q", "reports", "sq", "tq"):
        assert f"queue {queue} paused" in cli.ok("pause", queue)
    assert "queue later paused" in cli.ok("pause", "--create", "later")
    assert queries.paused_queues(store) == ["default", "later", "q", "reports", "sq", "tq"]
    assert "queue later resumed" in cli.ok("resume", "later")  # known now: it was paused before


# ---------------------------------------------------------------- [daemon] python_path
def test_daemon_workers_import_callables_from_python_path(cli, daemon, tmp_path, monkeypatch):
    """Code that is not installed and not in the daemon's working directory runs, also in a worker
    that replaced a dead one."""
    src = tmp_path / "app" / "src"
    src.mkdir(parents=True)
    (src / "pp_jobs.py").write_text("import os\n\ndef where():\n    return __file__\n\n"
                                    "def crash():\n    os._exit(1)\n")  # fmt: skip
    config = tmp_path / "app" / "jobs.toml"
    config.write_text('[daemon]\npython_path = ["src"]\n\n[tasks.where]\ncallable = "pp_jobs:where"\n\n'
                      '[tasks.crash]\ncallable = "pp_jobs:crash"\n')  # fmt: skip
    monkeypatch.setenv("JOBRUNNER_CONFIG", str(config))
    daemon.start("--workers", "1")
    first = cli.submit("where")
    wait_until(lambda: cli.job(first)["status"] in ("succeeded", "dead"), timeout=30)
    assert cli.job(first)["result"] == str(src / "pp_jobs.py"), cli.job(first)["error"]
    crashed = cli.submit("crash")
    wait_until(lambda: cli.job(crashed)["status"] == "dead", timeout=30)
    assert "worker died" in cli.job(crashed)["error"]
    again = cli.submit("where")
    wait_until(lambda: cli.job(again)["status"] in ("succeeded", "dead"), timeout=30)
    assert cli.job(again)["result"] == str(src / "pp_jobs.py"), cli.job(again)["error"]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
