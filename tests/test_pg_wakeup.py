"""Wake-up across hosts on PostgreSQL (issue 16): a commit that makes work sends NOTIFY; every
daemon LISTENs, so an idle daemon starts a job submitted on another host without polling. The
"other host" is a submitter whose local socket poke cannot reach the daemon (another state
directory), and the daemon polls only once a minute: a job that runs at all was woken by NOTIFY."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_jobrunner, wait_until

pytestmark = pytest.mark.postgres
ROOT_FLAG = ["--allow-root"] if os.geteuid() == 0 else []


def _elsewhere(url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI on 'another host': the same database, its own state directory."""
    return {"JOBRUNNER_DB": url, "XDG_STATE_HOME": str(tmp_path / "other-host-state")}


def _status(url: str, tmp_path: Path, job_id: int) -> str:
    import json

    shown = run_jobrunner("show", str(job_id), "--json", env=_elsewhere(url, tmp_path))
    return json.loads(shown.stdout)["status"]


def test_a_job_submitted_on_another_host_wakes_an_idle_daemon(daemon, postgres_url, tmp_path):
    daemon.start("--workers", "1", "--poll", "60s", *ROOT_FLAG, env={"JOBRUNNER_DB": postgres_url})
    for _ in range(3):
        submitted = run_jobrunner("submit", "--", "true", env=_elsewhere(postgres_url, tmp_path))
        assert submitted.returncode == 0, submitted.stderr
        job_id = int(submitted.stdout)
        wait_until(lambda: _status(postgres_url, tmp_path, job_id) == "succeeded", timeout=20)  # noqa: B023


def test_the_daemon_listens_again_after_its_connection_is_dropped(daemon, postgres_url, tmp_path):
    import psycopg2

    daemon.start("--workers", "1", "--poll", "60s", *ROOT_FLAG, env={"JOBRUNNER_DB": postgres_url})
    name = postgres_url.rsplit("/", 1)[1]
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=name) as admin:
        admin.autocommit = True
        cursor = admin.cursor()
        listening = "SELECT pid FROM pg_stat_activity WHERE datname=%s AND query LIKE 'LISTEN%%'"
        wait_until(lambda: cursor.execute(listening, (name,)) or cursor.fetchall(), timeout=60)
        cursor.execute(f"SELECT pg_terminate_backend(pid) FROM ({listening}) AS l", (name,))
        wait_until(lambda: cursor.execute(listening, (name,)) or cursor.fetchall(), timeout=60)  # back
    admin.close()
    submitted = run_jobrunner("submit", "--", "true", env=_elsewhere(postgres_url, tmp_path))
    job_id = int(submitted.stdout)
    wait_until(lambda: _status(postgres_url, tmp_path, job_id) == "succeeded", timeout=20)
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "cannot listen" not in daemon.output() or "polling meanwhile" in daemon.output()


def test_the_daemon_rides_out_dropped_connections(daemon, postgres_url, tmp_path):
    """Every backend of the daemon terminated (as a server restart does): it reconnects, records
    and claims again, and keeps listening; no traceback, no exit."""
    import psycopg2

    daemon.start("--workers", "1", "--poll", "60s", *ROOT_FLAG, env={"JOBRUNNER_DB": postgres_url})
    name = postgres_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    admin.autocommit = True
    cursor = admin.cursor()
    try:
        for _ in range(2):
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=%s", (name,))
            submitted = run_jobrunner("submit", "--", "true", env=_elsewhere(postgres_url, tmp_path))
            assert submitted.returncode == 0, submitted.stderr
            job_id = int(submitted.stdout)
            wait_until(lambda: _status(postgres_url, tmp_path, job_id) == "succeeded", timeout=30)  # noqa: B023
    finally:
        admin.close()
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "Traceback" not in daemon.output()
