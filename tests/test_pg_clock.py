"""One clock (issue 16): on PostgreSQL a daemon judges leases and due times by the database
server's clock, so a host whose clock is a minute off neither steals live jobs nor keeps dead
ones. The skewed host is a daemon with JOBRUNNER_TEST_CLOCK_SHIFT (its view of time.time())."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.conftest import run_jobrunner, wait_until
from tests.test_pg_hosts import other_host  # noqa: F401 - the fixture: a daemon on "otherhost"

pytestmark = pytest.mark.postgres
LEASE = ["--lease", "3s", "--heartbeat", "1s"]
ROOT_FLAG = ["--allow-root"] if os.geteuid() == 0 else []


def _job(url: str, job_id: int) -> dict:
    return json.loads(run_jobrunner("show", str(job_id), "--json", env={"JOBRUNNER_DB": url}).stdout)


def _server_now(url: str) -> float:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())")
        return float(cursor.fetchone()[0])


def _heartbeats_after(url: str, host_pid: int, moment: float) -> bool:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT heartbeat_at FROM daemon WHERE pid=%s", (host_pid,))
        row = cursor.fetchone()
    return row is not None and row[0] >= moment


def test_a_host_a_minute_fast_does_not_take_a_live_job(daemon, postgres_url, tmp_path):
    env = {"JOBRUNNER_DB": postgres_url}
    daemon.start("--workers", "1", *LEASE, *ROOT_FLAG, env=env)
    marker = tmp_path / "starts"
    job_id = int(run_jobrunner("submit", "--retries", "3", "--", "sh", "-c",
                               f"echo $JOBRUNNER_ATTEMPT >> {marker}; exec sleep 60", env=env).stdout)  # fmt: skip
    wait_until(lambda: marker.exists(), timeout=20)
    fast = daemon.make().start("--workers", "1", *LEASE, *ROOT_FLAG,
                               env={**env, "JOBRUNNER_TEST_CLOCK_SHIFT": "60"})  # fmt: skip
    assert fast.proc is not None
    since = _server_now(postgres_url)
    # three leases' worth of its heartbeats (and recovery passes), by the server's clock
    wait_until(lambda: _heartbeats_after(postgres_url, fast.proc.pid, since + 9), timeout=30)
    job = _job(postgres_url, job_id)
    assert job["status"] == "running" and job["attempts"] == 1, job["events"]
    assert marker.read_text() == "1\n"
    assert "clock is +60.0s off the database server's" in fast.output()
    run_jobrunner("cancel", str(job_id), env=env)


def test_a_host_a_minute_slow_recovers_a_dead_hosts_job_when_its_lease_ends(
    daemon, postgres_url, other_host, tmp_path  # noqa: F811
):
    env = {"JOBRUNNER_DB": postgres_url}
    remote = other_host("--workers", "1", *LEASE)
    marker = tmp_path / "starts"
    job_id = int(run_jobrunner("submit", "--retries", "1", "--backoff", "0", "--", "sh", "-c",
                               f"echo $JOBRUNNER_ATTEMPT >> {marker}; exec sleep 60",
                               env={**env, "XDG_STATE_HOME": str(tmp_path / "otherhost-state")}).stdout)  # fmt: skip
    wait_until(lambda: marker.exists() and marker.read_text() == "1\n", timeout=20)
    daemon.start("--workers", "1", *LEASE, *ROOT_FLAG, env={**env, "JOBRUNNER_TEST_CLOCK_SHIFT": "-60"})
    os.killpg(remote.pid, signal.SIGKILL)
    # its lease ends within 3 s; judged by this host's clock it would be more than a minute
    wait_until(lambda: marker.read_text() == "1\n2\n", timeout=20)
    assert _job(postgres_url, job_id)["attempts"] == 2
    run_jobrunner("cancel", str(job_id), env=env)
