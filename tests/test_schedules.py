"""Schedules: cron as crontab(5) means it, fire times enqueue exactly once, the CLI and the daemon."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobrunner.daemon.scheduler import plan
from jobrunner.domain.cron import CronError, parse_cron
from jobrunner.triggers import make_trigger, next_fire
from tests.conftest import sql, wait_until


def fires(expression: str, start: str, count: int, tz: str = "UTC") -> list[str]:
    trigger = make_trigger("cron", expression, tz, 0)
    at = datetime.fromisoformat(start).timestamp()
    out = []
    current = next_fire(trigger, None, at)
    for _ in range(count):
        out.append(datetime.fromtimestamp(current, UTC).strftime("%a %Y-%m-%d %H:%M"))
        current = next_fire(trigger, current, current)
    return out


def test_day_of_week_zero_and_seven_are_sunday():
    assert fires("0 3 * * 0", "2026-11-25T00:00+00:00", 2) == ["Sun 2026-11-29 03:00", "Sun 2026-12-06 03:00"]
    assert fires("0 3 * * 7", "2026-11-25T00:00+00:00", 1) == ["Sun 2026-11-29 03:00"]
    assert fires("0 3 * * 1", "2026-11-25T00:00+00:00", 1) == ["Mon 2026-11-30 03:00"]
    assert fires("0 3 * * sun", "2026-11-25T00:00+00:00", 1) == ["Sun 2026-11-29 03:00"]


def test_day_of_month_or_day_of_week():
    """Both restricted: cron runs when either matches (the 13th, or any Friday)."""
    assert fires("0 0 13 * 5", "2026-11-25T00:00+00:00", 4) == [
        "Fri 2026-11-27 00:00", "Fri 2026-12-04 00:00", "Fri 2026-12-11 00:00", "Sun 2026-12-13 00:00",
    ]  # fmt: skip


def test_macros_and_names_and_steps():
    assert fires("@daily", "2026-11-25T10:00+00:00", 2) == ["Thu 2026-11-26 00:00", "Fri 2026-11-27 00:00"]
    assert fires("@hourly", "2026-11-25T10:30+00:00", 1) == ["Wed 2026-11-25 11:00"]
    assert fires("@weekly", "2026-11-25T10:00+00:00", 1) == ["Sun 2026-11-29 00:00"]
    assert fires("@monthly", "2026-11-25T10:00+00:00", 1) == ["Tue 2026-12-01 00:00"]
    assert fires("@yearly", "2026-11-25T10:00+00:00", 1) == ["Fri 2027-01-01 00:00"]
    assert fires("0 9 * jan mon", "2026-11-25T00:00+00:00", 1) == ["Mon 2027-01-04 09:00"]
    # */2 in day-of-week counts from Sunday: Sun, Tue, Thu, Sat
    assert [f[:3] for f in fires("0 0 * * */2", "2026-11-29T00:00+00:00", 4)] == ["Sun", "Tue", "Thu", "Sat"]


def test_timezone_and_dst_daily_job_runs_once_a_day():
    # Europe/Berlin leaves summer time on 2026-10-25: 03:00 local is 02:00 UTC before, 01:00... local 03:00 = UTC+1
    days = fires("0 3 * * *", "2026-10-24T00:00+00:00", 3, tz="Europe/Berlin")
    assert days == ["Sat 2026-10-24 01:00", "Sun 2026-10-25 02:00", "Mon 2026-10-26 02:00"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 3 * *", "needs 5"),
        ("61 * * * *", "field 1 (minute) '61': 61 is out of range 0-59"),
        ("* 24 * * *", "field 2 (hour)"),
        ("* * 0 * *", "field 3 (day-of-month)"),
        ("* * * 13 *", "field 4 (month)"),
        ("* * * * 8", "field 5 (day-of-week) '8': 8 is out of range 0-7"),
        ("* * * * fun", "field 5 (day-of-week) 'fun': 'fun' is not a value"),
        ("@reboot", "@reboot is not a schedule"),
        ("@sometimes", "unknown macro"),
    ],
)
def test_bad_cron_names_the_field(expression, message):
    with pytest.raises(CronError) as info:
        parse_cron(expression)
    assert message in str(info.value)


def test_misfire_plans():
    now = 10_000.0
    times = [now - 7200, now - 1800, now - 600]
    assert plan("coalesce", 3600, times, now) == ([now - 600], 2)
    assert plan("all", 3600, times, now) == ([now - 1800, now - 600], 1)
    assert plan("skip", 3600, times, now) == ([], 3)
    assert plan("skip", 3600, [now - 5], now) == ([now - 5], 0)


def test_cli_add_list_pause_resume_run_remove(cli, home):
    out = cli.ok("schedule", "add", "backup", "--cron", "0 3 * * sun", "--tz", "Europe/Berlin", "--", "tar", "czf", "/tmp/b.tgz", ".")
    assert "schedule backup added" in out
    [view] = cli.json("schedule", "list")
    assert view["name"] == "backup" and view["timezone"] == "Europe/Berlin"
    assert view["description"] == "at 03:00 on Sun" and view["job"]["command"] == ["tar", "czf", "/tmp/b.tgz", "."]
    assert datetime.fromisoformat(view["next_fire_at"]).astimezone(UTC).hour in (1, 2)
    assert "backup" in cli.ok("schedule", "list")
    cli.ok("schedule", "pause", "backup")
    assert cli.json("schedule", "list")[0]["paused"] is True
    cli.ok("schedule", "resume", "backup")
    job_id = int(cli.ok("schedule", "run", "backup"))
    job = cli.job(job_id)
    assert job["command"] == ["tar", "czf", "/tmp/b.tgz", "."] and job["status"] == "queued"
    assert cli.json("schedule", "list")[0]["last_job_id"] == job_id
    cli.ok("schedule", "remove", "backup")
    assert cli.json("schedule", "list") == []


def test_cli_add_gives_its_jobs_tags_metadata_env_and_cwd(cli, home, tmp_path, monkeypatch):
    """The job options of `submit` that a schedule's jobs need too: every job it fires carries
    them; --env KEY takes KEY's value at `schedule add`, and --env-file its lines."""
    monkeypatch.setenv("REPORT_TOKEN", "s3cret")
    env_file = tmp_path / "report.env"
    env_file.write_text("# for the report\nREGION=eu\n")
    cli.ok("schedule", "add", "report", "--every", "1h", "--tag", "nightly,reports", "--tag", "team-a",
           "--meta", "owner=ana", "--env", "MODE=full", "--env", "REPORT_TOKEN", "--env-file", str(env_file),
           "--cwd", str(tmp_path), "--", "./report.sh")  # fmt: skip
    job = cli.job(int(cli.ok("schedule", "run", "report")))
    assert job["tags"] == ["nightly", "reports", "team-a"] and job["metadata"] == {"owner": "ana"}
    assert job["env"] == {"REGION": "eu", "MODE": "full", "REPORT_TOKEN": "s3cret"}
    assert job["cwd"] == str(tmp_path) and job["name"] == "report"
    result = cli("schedule", "add", "bad", "--every", "1h", "--env", "=x", "--", "true")
    assert result.exit_code == 2 and "--env expects KEY=VALUE or KEY" in result.stderr
    assert [view["name"] for view in cli.json("schedule", "list")] == ["report"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["s", "--cron", "0 3 * * 8", "--", "true"], "field 5 (day-of-week)"),
        (["s", "--every", "soon", "--", "true"], "--every: 'soon' is not a duration"),
        (["s", "--cron", "@daily", "--every", "5m", "--", "true"], "exactly one of --cron, --every or --at"),
        (["s", "--every", "5m"], "exactly one of --task"),
        (["s", "--every", "5m", "--task", "nope"], "unknown task 'nope'"),
        (["s", "--every", "5m", "--tz", "Mars/Olympus", "--", "true"], "unknown timezone"),
        (["s", "--every", "5m", "--misfire", "later", "--", "true"], "--misfire"),
    ],
)
def test_cli_add_bad_input(cli, store, args, message):  # `store`: a database for `schedule list`
    result = cli("schedule", "add", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert cli.json("schedule", "list") == []


def test_cli_duplicate_and_unknown(cli):
    cli.ok("schedule", "add", "t", "--every", "5m", "--", "true")
    assert cli("schedule", "add", "t", "--every", "5m", "--", "true").exit_code == 2
    result = cli("schedule", "pause", "nope")
    assert result.exit_code == 2 and "no schedule named 'nope'" in result.stderr


def test_a_fire_time_enqueues_once_under_concurrent_firing(cli, db_path):
    """Eight threads with their own connections fire the same due time: one job."""
    from jobrunner.config import Config
    from jobrunner.daemon.scheduler import Scheduler
    from jobrunner.store import open_store

    cli.ok("schedule", "add", "race", "--every", "1s", "--", "true")
    later = time.time() + 1.2  # the first fire time has passed by then
    errors: list[BaseException] = []

    def fire() -> None:
        try:
            store = open_store(str(db_path))
            Scheduler(store, Config()).run_due(later)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fire) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    jobs = cli.json("list")
    fired = [j for j in jobs if j["name"] == "race"]
    assert len(fired) == 1


def test_daemon_fires_interval_schedule_and_respects_max_running(cli, daemon, tmp_path):
    daemon.start()
    cli.ok("schedule", "add", "tick", "--every", "1s", "--", "sh", "-c", f"echo x >> {tmp_path / 'ticks'}")
    wait_until(lambda: cli.count("succeeded") >= 2, timeout=15)
    cli.ok("schedule", "add", "slow", "--every", "1s", "--", "sleep", "3")
    wait_until(lambda: cli.json("schedule", "list")[0]["missed"] >= 1, timeout=15)  # 'slow' sorts first
    slow_jobs = [j for j in cli.json("list", "--limit", "0") if j["name"] == "slow"]
    assert len(slow_jobs) == 1  # a run still active: later fire times are skipped, not stacked
    assert "previous run still active" in cli.json("schedule", "list")[0]["last_note"]


def test_config_schedules_are_loaded_by_the_daemon(cli, daemon, tmp_path):
    Path("jobs.toml").write_text(
        '[tasks.ping]\ncommand = ["true"]\n\n[schedules.every-second]\nevery = "1s"\ntask = "ping"\n'
    )
    daemon.start()
    wait_until(lambda: cli.count("succeeded") >= 2, timeout=15)
    [view] = cli.json("schedule", "list")
    assert view["source"] == "config" and view["job"] == {"task": "ping"}
    assert all(j["task"] == "ping" for j in cli.json("list"))
    assert json.loads(json.dumps(view))["last_job_status"] in ("queued", "running", "succeeded")


def test_dst_spring_forward_and_fall_back_run_once_a_day():
    # 2026-03-29 02:30 does not exist in Berlin: it runs once that day, when the jump is done,
    # at 03:00 CEST (01:00 UTC), as Vixie/Debian cron do (more cases in test_cron_dst.py)
    assert fires("30 2 * * *", "2026-03-27T00:00+00:00", 4, tz="Europe/Berlin") == [
        "Fri 2026-03-27 01:30", "Sat 2026-03-28 01:30", "Sun 2026-03-29 01:00", "Mon 2026-03-30 00:30",
    ]  # fmt: skip
    # 2026-10-25 02:30 happens twice: a fixed-time job runs once, an hourly one every hour
    assert fires("30 2 * * *", "2026-10-24T12:00+00:00", 2, tz="Europe/Berlin") == [
        "Sun 2026-10-25 00:30", "Mon 2026-10-26 01:30",
    ]  # fmt: skip
    assert fires("30 * * * *", "2026-10-25T00:00+00:00", 3, tz="Europe/Berlin") == [
        "Sun 2026-10-25 00:30", "Sun 2026-10-25 01:30", "Sun 2026-10-25 02:30",
    ]  # fmt: skip


def _scheduler(db_path):
    from jobrunner.config import Config
    from jobrunner.daemon.scheduler import Scheduler
    from jobrunner.store import open_store

    return Scheduler(open_store(str(db_path)), Config())


@pytest.mark.parametrize(("misfire", "jobs", "missed"), [("coalesce", 1, 5), ("all", 6, 0), ("skip", 0, 6)])
def test_misfire_policies_after_a_simulated_downtime(cli, db_path, misfire, jobs, missed):
    """The daemon was down for an hour over six fire times; the clock is passed in, not waited for."""
    cli.ok("schedule", "add", "s", "--every", "10m", "--misfire", misfire, "--max-running", "10", "--", "true")
    start = datetime.fromisoformat(cli.json("schedule", "list")[0]["next_fire_at"]).timestamp() - 600
    scheduler = _scheduler(db_path)
    assert scheduler.run_due(start + 3605) == jobs
    view = cli.json("schedule", "list")[0]
    assert view["missed"] == missed
    assert datetime.fromisoformat(view["next_fire_at"]).timestamp() == pytest.approx(start + 4200)
    assert scheduler.run_due(start + 3605) == 0  # a restart at the same moment fires nothing again


def test_a_fire_that_fails_midway_writes_nothing_and_fires_once_later(cli, db_path, monkeypatch):
    import jobrunner.daemon.scheduler as scheduler_module

    cli.ok("schedule", "add", "s", "--every", "10m", "--misfire", "all", "--max-running", "10", "--", "true")
    start = datetime.fromisoformat(cli.json("schedule", "list")[0]["next_fire_at"]).timestamp() - 600
    real = scheduler_module.job_spec_for
    calls = {"n": 0}

    def crash_on_second(row, config):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("simulated crash in the middle of a fire")
        return real(row, config)

    monkeypatch.setattr(scheduler_module, "job_spec_for", crash_on_second)
    scheduler = _scheduler(db_path)
    assert scheduler.run_due(start + 1805) == 0
    assert cli.count() == 0  # the first job of the fire was rolled back with the rest
    assert cli.json("schedule", "list")[0]["error"] == "simulated crash in the middle of a fire"
    monkeypatch.setattr(scheduler_module, "job_spec_for", real)
    assert scheduler.run_due(start + 1805) == 0  # broken: left alone until the config is reloaded
    scheduler.load(scheduler.config, start + 1805)
    assert scheduler.run_due(start + 1805) == 3
    assert _scheduler(db_path).run_due(start + 1805) == 0  # a second daemon: nothing twice
    assert cli.count() == 3


def test_sighup_reloads_schedules_and_keeps_the_old_config_when_broken(cli, daemon, store):
    import signal

    Path("jobs.toml").write_text('[schedules.first]\ncron = "0 3 * * *"\ncommand = ["true"]\n')
    daemon.start()
    wait_until(lambda: [s["name"] for s in cli.json("schedule", "list")] == ["first"], timeout=10)
    Path("jobs.toml").write_text('[schedules.second]\nevery = "1h"\ncommand = ["true"]\n')
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: [s["name"] for s in cli.json("schedule", "list")] == ["second"], timeout=10)
    Path("jobs.toml").write_text('[schedules.third]\ncron = "0 3 * * 9"\ncommand = ["true"]\n')
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "config not reloaded" in daemon.output(), timeout=10)
    assert "schedules.third.cron" in daemon.output()
    from jobrunner.store import schedules

    assert [s.name for s in schedules.all_schedules(store)] == ["second"]  # the CLI would refuse the file
    assert daemon.proc.poll() is None  # still running


@pytest.mark.slow
def test_two_real_daemons_fire_each_time_once(cli, daemon, store):
    cli.ok("schedule", "add", "tick", "--every", "1s", "--max-running", "100", "--", "true")
    daemon.start("--workers", "1")
    daemon.make().start("--workers", "1")
    wait_until(lambda: cli.count("succeeded") >= 4, timeout=20)
    fires, times, fired_jobs, jobs = sql(store,  # one statement: one consistent snapshot
        "SELECT COUNT(*), COUNT(DISTINCT fire_at), COUNT(DISTINCT job_id), "
        "(SELECT COUNT(*) FROM job WHERE schedule='tick') FROM schedule_fire WHERE schedule='tick'"
    )[0]
    assert fires == times == fired_jobs == jobs  # one job per fire time, none shared or doubled


# ---------------------------------------------------------------- one bad schedule is no poison
def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _succeeded(cli, **match) -> list[dict]:
    jobs = cli.json("list", "--limit", "0")
    return [j for j in jobs if j["status"] == "succeeded" and all(j.get(k) == v for k, v in match.items())]


def test_a_schedule_whose_task_left_the_config_never_stops_the_daemon(cli, daemon):
    """Reproduction 5: the daemon starts with a schedule whose task is gone, keeps running, says
    so once, fires the other schedules and runs jobs; restoring the task and SIGHUP repairs it."""
    import signal

    with_tick = '[tasks.tick]\ncommand = "true"\n'
    Path("jobs.toml").write_text(with_tick)
    cli.ok("schedule", "add", "s1", "--every", "2s", "--task", "tick")
    cli.ok("schedule", "add", "healthy", "--every", "1s", "--", "true")
    Path("jobs.toml").write_text('[tasks.other]\ncommand = "true"\n')
    due = datetime.fromisoformat(cli.json("schedule", "list")[1]["next_fire_at"]).timestamp()
    daemon.start("--workers", "1")

    def alive_and(condition):
        assert daemon.proc.poll() is None, f"the daemon exited {daemon.proc.returncode}:\n{daemon.output()}"
        return condition()

    wait_until(lambda: alive_and(lambda: time.time() > due + 1 and len(_succeeded(cli, name="healthy")) >= 2),
               timeout=20)  # fmt: skip
    job = cli.submit("--", "true")
    wait_until(lambda: alive_and(lambda: cli.job(job)["status"] == "succeeded"), timeout=15)

    # Broken and quiet: no log line per loop turn, no busy loop, while the healthy one keeps firing.
    cpu_before, wall_before = _cpu_seconds(daemon.proc.pid), time.monotonic()
    fired = len(_succeeded(cli, name="healthy"))
    wait_until(lambda: alive_and(lambda: len(_succeeded(cli, name="healthy")) >= fired + 3), timeout=20)
    cpu = _cpu_seconds(daemon.proc.pid) - cpu_before
    assert cpu < 0.5 * (time.monotonic() - wall_before), f"the daemon spun: {cpu:.2f}s of CPU"
    complaints = [line for line in daemon.output().splitlines() if "s1" in line and "unknown task" in line]
    assert len(complaints) == 1, complaints
    assert not _succeeded(cli, task="tick")

    views = {v["name"]: v for v in cli.json("schedule", "list")}
    assert views["s1"]["broken"] is True and "unknown task 'tick'" in views["s1"]["error"]
    assert views["healthy"]["broken"] is False and views["healthy"]["error"] is None
    table = cli.ok("schedule", "list")
    assert "broken" in table and "unknown task 'tick'" in table
    result = cli("doctor")
    assert result.exit_code == 1
    [line] = [line for line in result.stdout.splitlines() if line.startswith("fail") and "s1" in line]
    assert "unknown task 'tick'" in line and "jobrunner schedule remove s1" in line

    Path("jobs.toml").write_text(with_tick)  # the fix: the task is back, and the daemon reloads
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: alive_and(lambda: _succeeded(cli, task="tick")), timeout=20)
    views = {v["name"]: v for v in cli.json("schedule", "list")}
    assert views["s1"]["broken"] is False and views["s1"]["error"] is None
    assert cli("doctor").exit_code == 0


def _broken_lines(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"schedule {name} is broken")]


def _add_task_schedule(cli, name: str = "s1") -> float:
    """A CLI schedule of task 'tick', added while the config had it; returns its first fire time."""
    Path("jobs.toml").write_text('[tasks.tick]\ncommand = "true"\n')
    cli.ok("schedule", "add", name, "--every", "10m", "--task", "tick")
    Path("jobs.toml").unlink()
    view = next(v for v in cli.json("schedule", "list") if v["name"] == name)
    return datetime.fromisoformat(view["next_fire_at"]).timestamp()


def test_an_unknown_task_is_marked_once_and_skipped_until_a_reload_repairs_it(cli, db_path, caplog):
    from jobrunner.config import Config

    first = _add_task_schedule(cli)
    cli.ok("schedule", "add", "zz-healthy", "--every", "10m", "--max-running", "10", "--", "true")
    scheduler = _scheduler(db_path)
    assert scheduler.run_due(first + 5) == 1  # the healthy one fired; no exception
    assert len(_broken_lines(caplog, "s1")) == 1
    view = cli.json("schedule", "list")[0]
    assert view["broken"] is True and view["error"].startswith("unknown task 'tick'")
    assert scheduler.next_at is not None and scheduler.next_at > first + 5  # no busy loop on it
    for later in (first + 6, first + 700, first + 1300):  # every turn after: quiet, and the rest fires
        scheduler.run_due(later)
    assert len(_broken_lines(caplog, "s1")) == 1
    assert cli.count() == 3 and cli.json("schedule", "list")[0]["broken"] is True

    scheduler.load(Config(tasks={"tick": {"command": "true"}}), first + 1305)  # SIGHUP or a restart
    assert cli.json("schedule", "list")[0]["broken"] is False
    assert scheduler.run_due(first + 1305) == 1  # coalesced: one run for the fire times it missed
    assert [j["task"] for j in cli.json("list", "--limit", "0")].count("tick") == 1


def test_a_restart_with_the_task_still_missing_marks_it_at_load(cli, db_path, caplog):
    first = _add_task_schedule(cli)
    scheduler = _scheduler(db_path)
    scheduler.load(scheduler.config, first - 60)  # a daemon starting: broken before its first fire
    assert len(_broken_lines(caplog, "s1")) == 1 and cli.json("schedule", "list")[0]["broken"] is True
    assert scheduler.next_at is None
    assert scheduler.run_due(first + 5) == 0 and len(_broken_lines(caplog, "s1")) == 1


def test_an_unexpected_exception_breaks_only_its_schedule(cli, db_path, monkeypatch, caplog):
    import jobrunner.daemon.scheduler as scheduler_module

    cli.ok("schedule", "add", "bad", "--every", "10m", "--", "true")
    cli.ok("schedule", "add", "good", "--every", "10m", "--", "true")
    first = min(datetime.fromisoformat(v["next_fire_at"]).timestamp() for v in cli.json("schedule", "list"))
    real = scheduler_module.job_spec_for

    def bug_in_one(row, config):
        if row.name == "bad":
            raise KeyError("surprise")
        return real(row, config)

    monkeypatch.setattr(scheduler_module, "job_spec_for", bug_in_one)
    scheduler = _scheduler(db_path)
    assert scheduler.run_due(first + 5) == 1
    views = {v["name"]: v for v in cli.json("schedule", "list")}
    assert views["bad"]["error"] == "KeyError: 'surprise'" and views["good"]["broken"] is False
    [record] = [r for r in caplog.records if r.getMessage().startswith("schedule bad is broken")]
    assert record.exc_info is not None  # a bug: its traceback is logged, once
    assert "jobrunner schedule remove bad" in record.getMessage()


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("timezone", "Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
     ("expression", "61 * * * *", "field 1 (minute)"),
     ("job", '{"command": "true", "retries": -4}', "retries: ")],
)  # fmt: skip
def test_a_row_that_no_longer_validates_is_marked_broken_not_fatal(cli, db_path, store, column, value, message):
    """A timezone gone from tzdata, an expression or field an older version accepted."""
    cli.ok("schedule", "add", "old", "--cron", "0 3 * * *", "--", "true")
    cli.ok("schedule", "add", "tick", "--every", "10m", "--", "true")
    with store.write():
        sql(store, f"UPDATE schedule SET {column}=?, next_fire_at=? WHERE name='old'", (value, time.time() - 5))
    scheduler = _scheduler(db_path)
    scheduler.load(scheduler.config, time.time())
    assert scheduler.run_due(time.time()) == 0
    views = {v["name"]: v for v in cli.json("schedule", "list")}
    assert views["old"]["broken"] is True and message in views["old"]["error"]
    assert views["tick"]["broken"] is False
    assert "broken" in cli.ok("schedule", "list")


def test_a_database_error_while_firing_is_retried_later_not_marked(cli, db_path, monkeypatch, caplog):
    from jobrunner.errors import StoreError
    from jobrunner.store import schedules

    cli.ok("schedule", "add", "s", "--every", "10m", "--", "true")
    first = datetime.fromisoformat(cli.json("schedule", "list")[0]["next_fire_at"]).timestamp()
    real = schedules.fire

    def full_disk(*args, **kwargs):
        raise StoreError("database x: the disk is full; nothing was written")

    monkeypatch.setattr(schedules, "fire", full_disk)
    scheduler = _scheduler(db_path)
    for turn in range(3):  # the loop calls again at once: no retry, no log line per turn
        assert scheduler.run_due(first + 1 + turn * 0.01) == 0
    assert scheduler.next_at is not None and scheduler.next_at >= first + 5
    retries = [r for r in caplog.records if "cannot fire now, will retry" in r.getMessage()]
    assert len(retries) == 1
    assert cli.json("schedule", "list")[0]["broken"] is False  # the database's fault, not the schedule's
    monkeypatch.setattr(schedules, "fire", real)
    assert scheduler.run_due(first + 6) == 1


def test_run_now_keeps_the_daemons_broken_mark(cli, db_path):
    first = _add_task_schedule(cli)
    _scheduler(db_path).run_due(first + 5)
    Path("jobs.toml").write_text('[tasks.tick]\ncommand = "true"\n')  # the CLI's config has it
    cli.ok("schedule", "run", "s1")
    assert cli.json("schedule", "list")[0]["broken"] is True  # the daemon's config still lacks it
    cli.ok("schedule", "remove", "s1")
    cli.ok("schedule", "add", "s1", "--every", "10m", "--task", "tick")  # re-added: a fresh start
    assert cli.json("schedule", "list")[0]["broken"] is False


def test_a_cron_expression_that_never_fires_is_refused(cli):
    """`0 0 30 2 *` names no date that ever comes: a usage error, not a schedule reading 'never'."""
    result = cli("schedule", "add", "never", "--cron", "0 0 30 2 *", "--", "true")
    assert result.exit_code == 2
    assert "never fires" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "added" in cli.ok("schedule", "add", "leap", "--cron", "0 0 29 2 *", "--", "true")
