"""The daemon under systemd and with notifiers: what an operator checks."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.test_notify import Hook


def test_systemd_notify_ready_status_watchdog_stopping_in_order(cli, daemon, tmp_path):
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    messages: list[str] = []

    def receive_until(word: str) -> None:
        while not any(m.startswith(word) for m in messages):
            messages.extend(sock.recv(4096).decode().splitlines())

    try:
        daemon.start("--workers", "1", env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
        receive_until("READY=1")
        receive_until("WATCHDOG=1")
        daemon.signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        assert daemon.wait(timeout=20) == 0
    finally:
        sock.close()
    kinds = [m.split("=")[0] for m in messages]
    assert kinds.index("READY") < kinds.index("WATCHDOG") < kinds.index("STOPPING")
    assert kinds.index("READY") <= kinds.index("STATUS") < kinds.index("STOPPING")
    assert any(m.startswith("STATUS=") and "queued" in m for m in messages)


def test_dead_job_reaches_the_webhook(cli, daemon):
    hook = Hook()
    try:
        Path("jobs.toml").write_text(f'[notify.ops]\ntype = "webhook"\nurl = "{hook.url}"\n')
        daemon.start()
        ok = cli.submit("--", "true")
        bad = cli.submit("--", "sh", "-c", "exit 7")
        wait_until(lambda: hook.received, timeout=20)
        headers, job = hook.received[0]
        assert job["id"] == bad and job["status"] == "dead" and job["error"] == "exit code 7"
        assert headers.get("X-Jobrunner-Event") == "dead"
        assert cli.job(ok)["status"] == "succeeded"
        assert all(j["id"] != ok for _, j in hook.received)  # only dead jobs by default
    finally:
        hook.close()


def test_bad_notify_table_stops_the_daemon_before_it_starts(cli, db_path, tmp_path):
    from tests.conftest import run_jobrunner

    Path("jobs.toml").write_text('[notify.ops]\ntype = "email"\nhost = "x"\nto = ["a@b.c"]\npassword = "secret"\n')
    result = run_jobrunner("daemon", "--workers", "1", timeout=30)
    assert result.returncode == 2
    assert "password" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.sqlite_only(reason="who owns the SQLite file; a URL needs --allow-root (test_trust)")
def test_root_refuses_another_users_database(cli, db_path):
    import os

    from tests.conftest import run_jobrunner

    if os.geteuid() != 0:  # pragma: no cover - CI runs as root
        return
    cli.submit("--", "true")
    os.chown(db_path, 1234, 1234)
    result = run_jobrunner("daemon", "--workers", "1", timeout=30)
    assert result.returncode == 2 and "refusing to run as root" in result.stderr


def test_job_logs_are_owner_only(cli, daemon):
    import stat

    daemon.start()
    job_id = cli.submit("--", "echo", "secret")
    wait_until(lambda: cli.job(job_id)["status"] == "succeeded", timeout=20)
    path = Path(cli.job(job_id)["log_path"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
