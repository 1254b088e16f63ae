"""status, doctor and the systemd unit: what a user runs to see that the daemon is healthy."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from jobrunner.cli.systemd import quote_arg
from tests.conftest import is_url, sql, wait_until


# ---------------------------------------------------------------- status
@pytest.mark.sqlite_only(reason="no SQLite file yet; a server database is there or not")
def test_status_without_a_database_says_so(cli, db_path):
    result = cli("status")
    assert result.exit_code == 2
    assert f"no database at {db_path} yet" in result.stderr
    assert not db_path.exists()


def test_status_without_a_daemon_exits_3(cli):
    cli.submit("--queue", "reports", "--", "true")
    cli.ok("pause", "reports")
    result = cli("status")
    assert result.exit_code == 3
    assert "daemon    none running" in result.stdout
    assert "queue     reports: 0 running, 1 queued  (paused)" in result.stdout
    data = json.loads(cli("status", "--json").stdout)
    assert data["alive"] is False and data["daemons"] == []
    assert data["jobs"]["queued"] == 1 and data["paused_queues"] == ["reports"]


def test_status_with_a_running_daemon(cli, daemon):
    cli.submit("--", "true")
    proc = daemon.start("--workers", "2")
    wait_until(lambda: cli("status").exit_code == 0, timeout=20)
    data = json.loads(cli("status", "--json").stdout)
    [alive] = [d for d in data["daemons"] if d["alive"]]
    assert alive["pid"] == proc.proc.pid
    assert alive["workers"] == 2 and alive["busy"] + alive["free"] == 2
    assert alive["heartbeat_age"] < 15 and alive["version"]
    text = cli.ok("status")
    assert f"daemon    up: pid {proc.proc.pid} on " in text
    assert "workers 2: " in text and "queues all" in text


def test_a_daemon_is_judged_by_its_own_heartbeat_interval(cli, daemon, db_path):
    """A daemon beating every 30 s is alive between two beats (a fixed 15 s took it for dead),
    silent ("reconnecting, or stalled") after 1.5 of its intervals and gone after 3; a row of
    an older daemon, with no interval, is judged by the default 5 s."""
    cli.submit("--", "true")
    proc = daemon.start("--workers", "1", "--lease", "120s", "--heartbeat", "30s")
    wait_until(lambda: cli("status").exit_code == 0, timeout=20)
    [row] = [d for d in json.loads(cli("status", "--json").stdout)["daemons"] if d["pid"] == proc.proc.pid]
    assert row["heartbeat_every"] == 30 and row["alive"] and not row["silent"]
    proc.stop()  # the rows below are judged by their age alone: no daemon beats meanwhile

    def judged(every: float | None, age: float) -> tuple[bool, bool, str]:
        sql(db_path, "DELETE FROM daemon")
        sql(db_path, "INSERT INTO daemon (id, host, pid, version, started_at, heartbeat_at, workers, busy, queues, "
                     "state, heartbeat_every) VALUES ('elsewhere:1:a', 'elsewhere', 1, '0', ?, ?, 1, 0, '[]', "
                     "'running', ?)", (time.time() - 600, time.time() - age, every))  # fmt: skip
        [d] = json.loads(cli("status", "--json").stdout)["daemons"]
        return d["alive"], d["silent"], cli("status").stdout

    alive, silent, text = judged(30, 20)
    assert alive and not silent and "heartbeat 20s ago" in text
    alive, silent, text = judged(30, 50)
    assert alive and silent and "no heartbeat for 50s: reconnecting to the database, or stalled" in text
    alive, silent, text = judged(30, 95)
    assert not alive and "none running (last seen: pid 1 on elsewhere" in text
    assert judged(None, 3)[:2] == (True, False)
    assert judged(None, 10)[:2] == (True, True)
    assert judged(None, 16)[0] is False


# ---------------------------------------------------------------- doctor
def doctor_lines(cli, *args: str) -> tuple[int, dict[str, tuple[str, str]]]:
    result = cli(*args, "doctor", "--json")
    return result.exit_code, {c["check"]: (c["level"], c["message"]) for c in json.loads(result.stdout)}


def test_doctor_on_a_healthy_database(cli, db_path):
    cli.submit("--", "true")
    code, checks = doctor_lines(cli)
    assert code == 0
    if not is_url(db_path):  # the checks of a file
        assert checks["database"][0] == "ok" and str(db_path) in checks["database"][1]
        assert checks["permissions"] == ("ok", "owner-only (600)")
        assert checks["wal"][0] == "ok"
    assert checks["schema"][0] == "ok"
    assert checks["leases"] == ("ok", "no stale leases")
    assert checks["daemon"][0] == "warn"
    assert checks["config"] == ("ok", "no config file: defaults apply")
    assert checks["schedules"] == ("ok", "none")
    text = cli("doctor").stdout
    assert any(line.startswith("ok    schema") for line in text.splitlines())


def test_doctor_finds_stale_leases_and_loose_permissions(cli, store, db_path):
    job = cli.submit("--", "true")
    with store.write():
        sql(store, "UPDATE job SET status='running', lease_owner='gone:1:x', lease_until=? WHERE id=?",
                      (time.time() - 60, job))  # fmt: skip
    if not is_url(db_path):
        os.chmod(db_path, 0o644)
    code, checks = doctor_lines(cli)
    assert code == 0  # warnings only
    assert checks["leases"][0] == "warn" and "1 running job(s) with an expired lease" in checks["leases"][1]
    if not is_url(db_path):
        assert checks["permissions"][0] == "warn" and "jobs.db 644" in checks["permissions"][1]


def test_doctor_fails_on_a_broken_config(cli, home):
    cli.submit("--", "true")
    Path("jobs.toml").write_text('[notify.mail]\ntype = "email"\nhost = "h"\nto = "a@b.c"\npassword = "x"\n')
    code, checks = doctor_lines(cli)
    assert code == 1
    assert checks["config"][0] == "fail" and "notify.mail.password" in checks["config"][1]
    assert checks["schema"][0] == "ok"  # the other checks still ran
    assert cli("doctor").exit_code == 1


def test_doctor_still_checks_the_database_a_broken_config_names(cli, home, tmp_path, monkeypatch):
    monkeypatch.delenv("JOBRUNNER_DB")
    Path("jobs.toml").write_text('db = "mine.db"\n[notify.x]\ntype = "webhook"\n')
    Path("mine.db").touch()
    code, checks = doctor_lines(cli)
    assert code == 1 and checks["config"][0] == "fail" and "notify.x.url" in checks["config"][1]
    assert str(Path.cwd() / "mine.db") in checks["database"][1]  # not the default database


def _python_tasks(python_path: str | None = None) -> None:
    """A task whose module lives in ./src, and one whose module exists nowhere."""
    Path("src").mkdir(exist_ok=True)
    Path("src/doctor_jobs.py").write_text("print('imported')\n\ndef run():\n    return 1\n")
    daemon = f"[daemon]\npython_path = {python_path}\n\n" if python_path else ""
    Path("jobs.toml").write_text(daemon + '[tasks.mine]\ncallable = "doctor_jobs:run"\n\n'
                                 '[tasks.gone]\ncallable = "no_such_module.jobs:run"\n')  # fmt: skip


def test_doctor_imports_every_task_callable_with_python_path(cli, home):
    cli.submit("--", "true")
    _python_tasks()
    code, checks = doctor_lines(cli)
    result = cli("doctor", "--json")
    fails = [c["message"] for c in json.loads(result.stdout) if c["check"] == "imports"]
    assert code == 1 and len(fails) == 2  # the working directory is not on a daemon's sys.path
    assert fails[0].startswith("task mine: doctor_jobs:run: cannot import it: ModuleNotFoundError")
    assert "no [daemon] python_path in the config" in fails[0]
    _python_tasks('["src"]')
    result = cli("doctor", "--json")
    [fail] = [c["message"] for c in json.loads(result.stdout) if c["check"] == "imports"]
    assert result.exit_code == 1
    assert fail == (f"task gone: no_such_module.jobs:run: cannot import it: ModuleNotFoundError: No module named "
                    f"'no_such_module' (python_path: {Path.cwd() / 'src'})")  # fmt: skip
    assert checks["config"][0] == "ok"
    Path("jobs.toml").write_text('[daemon]\npython_path = ["src"]\n[tasks.mine]\ncallable = "doctor_jobs:run"\n')
    code, checks = doctor_lines(cli)
    assert code == 0 and checks["imports"] == ("ok", f"1 callable(s) import (python_path: {Path.cwd() / 'src'})")


def test_doctor_survives_an_import_that_hangs_or_exits(cli, home, tmp_path, monkeypatch):
    import jobrunner.cli.health

    monkeypatch.setattr(jobrunner.cli.health, "IMPORT_TIMEOUT_S", 2.0)
    pid_file = tmp_path / "hang.pid"
    Path("src").mkdir()
    Path("src/hangs.py").write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                    "time.sleep(600)\n")  # fmt: skip
    Path("src/exits.py").write_text("import os\nos._exit(3)\n")
    Path("src/fine.py").write_text("def run():\n    pass\n")
    Path("jobs.toml").write_text('[daemon]\npython_path = ["src"]\n[tasks.a]\ncallable = "exits:run"\n'
                                 '[tasks.b]\ncallable = "fine:run"\n[tasks.c]\ncallable = "hangs:run"\n'
                                 '[tasks.d]\ncallable = "fine:run"\n')  # fmt: skip
    started = time.monotonic()
    result = cli("doctor", "--json")
    assert time.monotonic() - started < 15
    checks = [(c["level"], c["message"]) for c in json.loads(result.stdout) if c["check"] == "imports"]
    assert result.exit_code == 1
    assert checks[0][0] == "fail" and checks[0][1].startswith(
        "task a: exits:run: cannot import it: the import ended the process (exit code 3)")
    assert checks[1][0] == "fail" and checks[1][1].startswith(
        "task c: hangs:run: cannot import it: the import did not finish within 2s")
    assert checks[2][0] == "warn" and checks[2][1].startswith("task d: fine:run: not tried")
    assert len(checks) == 3  # b, imported after a's process ended, is fine
    pid = int(pid_file.read_text())
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=10)  # the hanging import was killed


def test_doctor_fails_on_a_database_from_a_newer_jobrunner(cli, store):
    cli.submit("--", "true")
    with store.write():
        sql(store, "UPDATE meta SET value='999' WHERE key='schema_version'")
    code, checks = doctor_lines(cli)
    assert code == 1 and checks["schema"][0] == "fail" and "v999 is newer" in checks["schema"][1]


@pytest.mark.sqlite_only(reason="no SQLite file yet; a server database is there or not")
def test_doctor_without_a_database_warns_and_creates_nothing(cli, db_path):
    code, checks = doctor_lines(cli)
    assert code == 0 and checks["database"][0] == "warn"
    assert not db_path.exists()


def _schedule_of_a_lost_task(cli) -> None:
    """s1 runs task 'tick', which has since left the config."""
    Path("jobs.toml").write_text('[tasks.tick]\ncommand = "true"\n')
    cli.ok("schedule", "add", "s1", "--every", "10m", "--task", "tick")
    cli.ok("schedule", "add", "s2", "--every", "10m", "--", "true")
    Path("jobs.toml").write_text('[tasks.other]\ncommand = "true"\n')


def test_doctor_fails_on_a_schedule_the_daemon_marked_broken(cli, store):
    from jobrunner.config import load_config
    from jobrunner.daemon.scheduler import Scheduler

    _schedule_of_a_lost_task(cli)
    Scheduler(store, load_config()).load(load_config(), time.time())  # what a daemon does at start
    result = cli("doctor")
    assert result.exit_code == 1
    [line] = [line for line in result.stdout.splitlines() if line.startswith("fail")]
    assert line.startswith("fail  schedules    s1 is broken") and "unknown task 'tick'" in line
    assert "restore [tasks.tick]" in line and "`jobrunner schedule remove s1`" in line
    checks = json.loads(cli("doctor", "--json").stdout)
    assert [c["level"] for c in checks if c["check"] == "schedules"] == ["fail"]  # s2 is fine


def test_doctor_warns_on_a_schedule_that_cannot_fire_with_this_config(cli):
    """No daemon has looked yet: the config read here lacks its task (the daemon's may differ)."""
    _schedule_of_a_lost_task(cli)
    code, checks = doctor_lines(cli)
    assert code == 0
    level, message = checks["schedules"]
    assert level == "warn" and message.startswith("s1 cannot fire with the config here")
    assert "unknown task 'tick'" in message


def test_doctor_sees_a_live_daemon(cli, daemon):
    daemon.start("--workers", "1")
    wait_until(lambda: doctor_lines(cli)[1]["daemon"][0] == "ok", timeout=20)


# ---------------------------------------------------------------- systemd
def unit_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_user_unit(cli, db_path):
    text = cli.ok("systemd", "unit", "--grace", "60")
    keys = unit_lines(text)
    assert keys["Type"] == "notify"
    assert keys["KillMode"] == "mixed"
    assert int(keys["TimeoutStopSec"]) > 60
    assert keys["Restart"] == "on-failure"
    assert keys["OOMPolicy"] == "continue"
    assert keys["NoNewPrivileges"] == "yes" and keys["PrivateTmp"] == "yes" and keys["ProtectSystem"] == "full"
    assert "ProtectHome" not in keys  # jobs write in the user's home
    assert int(keys["WatchdogSec"]) > 0
    assert keys["WantedBy"] == "default.target" and "User" not in keys
    exec_start = keys["ExecStart"].split()
    assert Path(exec_start[0]).is_absolute()
    assert exec_start[exec_start.index("--db") + 1] == str(db_path)
    assert exec_start[exec_start.index("daemon") + 1 : exec_start.index("daemon") + 3] == ["--grace", "60"]


def test_system_unit_runs_as_this_user(cli):
    import getpass

    keys = unit_lines(cli.ok("systemd", "unit", "--system"))
    assert keys["User"] == getpass.getuser()
    assert keys["WantedBy"] == "multi-user.target"
    assert keys["After"] == "network-online.target"


def test_unit_names_the_config_file(cli, home):
    Path("jobs.toml").write_text('[queues.reports]\nconcurrency = 1\n')
    exec_start = unit_lines(cli.ok("systemd", "unit"))["ExecStart"].split()
    assert exec_start[exec_start.index("--config") + 1] == str(Path("jobs.toml").absolute())


def test_unit_carries_python_path(cli, home, tmp_path):
    app = tmp_path / "my app"
    app.mkdir()
    (app / "jobs.toml").write_text('[daemon]\npython_path = ["src", "/opt/50%"]\n')
    lines = cli.ok("--config", str(app / "jobs.toml"), "systemd", "unit").splitlines()
    assert f'Environment="PYTHONPATH={app / "src"}:/opt/50%%"' in lines
    (app / "jobs.toml").write_text('[daemon]\npython_path = ["a:b"]\n')
    result = cli("--config", str(app / "jobs.toml"), "systemd", "unit")
    assert result.exit_code == 2 and "holds ':', which PYTHONPATH cannot carry" in result.stderr
    assert "PYTHONPATH" not in cli.ok("systemd", "unit")  # no config: nothing added


def test_install_writes_the_user_unit_and_prints_the_next_commands(cli, home):
    result = cli("systemd", "install", "--user")
    assert result.exit_code == 0
    path = home / ".config" / "systemd" / "user" / "jobrunner.service"
    assert path.read_text() == cli.ok("systemd", "unit", "--user")
    assert result.stdout.splitlines() == ["systemctl --user daemon-reload", "systemctl --user enable --now jobrunner"]
    assert "loginctl enable-linger" in result.stderr
    assert cli("systemd", "install").exit_code == 0  # the same file again is fine
    changed = cli("systemd", "install", "--grace", "5")
    assert changed.exit_code == 2 and "--force" in changed.stderr
    assert cli("systemd", "install", "--grace", "5", "--force").exit_code == 0
    assert "--grace 5 " in path.read_text()


def test_install_system_points_to_unit(cli):
    result = cli("systemd", "install", "--system")
    assert result.exit_code == 2 and "jobrunner systemd unit --system | sudo tee" in result.stderr


def test_serve_unit_runs_the_api_with_host_and_port_passed_on(cli, db_path):
    keys = unit_lines(cli.ok("systemd", "unit", "--serve", "--port", "9000"))
    assert keys["Type"] == "exec" and "WatchdogSec" not in keys and "NotifyAccess" not in keys
    assert keys["Restart"] == "on-failure" and int(keys["TimeoutStopSec"]) > 5  # serve's 5 s for open streams
    assert keys["NoNewPrivileges"] == "yes" and keys["ProtectSystem"] == "full"
    assert keys["EnvironmentFile"] == "-%h/.config/jobrunner/serve.env"  # optional: no file, a generated token
    assert keys["WantedBy"] == "default.target" and "User" not in keys
    exec_start = keys["ExecStart"].split()
    assert Path(exec_start[0]).is_absolute() and "daemon" not in exec_start
    assert exec_start[exec_start.index("--db") + 1] == str(db_path)
    assert exec_start[exec_start.index("serve") :] == ["serve", "--port", "9000"]  # no --host: [serve] or 127.0.0.1
    system = unit_lines(cli.ok("systemd", "unit", "--serve", "--system", "--host", "::1"))
    assert system["ExecStart"].split()[-2:] == ["--host", "::1"]
    assert system["EnvironmentFile"] == "-/etc/jobrunner/serve.env" and system["WantedBy"] == "multi-user.target"
    assert system["User"]


def test_serve_unit_never_holds_a_token(cli, home, monkeypatch):
    """The token stays in the environment file the unit names, whatever the environment that
    wrote the unit holds; the config names only the variable."""
    monkeypatch.setenv("JOBRUNNER_API_TOKEN", "tok-" + "1" * 32)
    monkeypatch.setenv("TEAM_TOKEN", "tok-" + "2" * 32)
    Path("jobs.toml").write_text('[serve]\ntoken_env = "TEAM_TOKEN"\nhost = "0.0.0.0"\n')
    result = cli("systemd", "unit", "--serve")
    assert result.exit_code == 0, result.stderr
    assert "tok-" not in result.stdout + result.stderr
    assert "--config" in result.stdout and "--host" not in result.stdout  # serve reads [serve] when it starts
    # a host other than loopback works only with a token, which the unit cannot see: where it goes
    assert "TEAM_TOKEN=<a long random secret>" in result.stderr and "EnvironmentFile" in result.stderr
    assert "refuses" not in cli("systemd", "unit", "--serve", "--host", "127.0.0.1").stderr


def test_serve_unit_options_belong_to_their_unit(cli):
    for args in (["--serve", "--grace", "5"], ["--serve", "--workers", "2"], ["--host", "0.0.0.0"], ["--port", "80"]):
        result = cli("systemd", "unit", *args)
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, (args, result.stderr)
    assert "is the daemon's option" in cli("systemd", "unit", "--serve", "--kill-grace", "1").stderr
    assert "add --serve" in cli("systemd", "unit", "--port", "80").stderr
    assert "--grace 30 --kill-grace 5" in cli.ok("systemd", "unit")  # the daemon's defaults as before


def test_install_serve_writes_its_own_unit(cli, home):
    daemon_unit = home / ".config" / "systemd" / "user" / "jobrunner.service"
    assert cli("systemd", "install").exit_code == 0
    before = daemon_unit.read_text()
    result = cli("systemd", "install", "--serve")
    assert result.exit_code == 0, result.stderr
    path = home / ".config" / "systemd" / "user" / "jobrunner-serve.service"
    assert path.read_text() == cli.ok("systemd", "unit", "--serve")
    assert daemon_unit.read_text() == before
    assert result.stdout.splitlines() == ["systemctl --user daemon-reload", "systemctl --user enable --now jobrunner-serve"]
    assert "serve.env" in result.stderr
    changed = cli("systemd", "install", "--serve", "--port", "9001")
    assert changed.exit_code == 2 and "--force" in changed.stderr
    refused = cli("systemd", "install", "--serve", "--system")
    assert refused.exit_code == 2 and "unit --system --serve | sudo tee /etc/systemd/system/jobrunner-serve.service" in refused.stderr


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [("/usr/bin/jobrunner", "/usr/bin/jobrunner"), ("/home/me/My Jobs/jobs.db", '"/home/me/My Jobs/jobs.db"'),
     ("50%", "50%%"), ("$HOME", "$$HOME"), ('a"b', '"a\\"b"')],
)  # fmt: skip
def test_exec_start_quoting(arg, quoted):
    assert quote_arg(arg) == quoted
