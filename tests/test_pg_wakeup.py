"""Wake-up across hosts on PostgreSQL (issue 16): a commit that makes work sends NOTIFY; every
daemon LISTENs, so an idle daemon starts a job submitted on another host without polling. The
"other host" is a submitter whose local socket poke cannot reach the daemon (another state
directory), and the daemon polls and beats only once a minute: a job that runs within the
tests' 20 s was woken by NOTIFY."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.conftest import run_jobrunner, wait_until

pytestmark = pytest.mark.postgres
ROOT_FLAG = ["--allow-root"] if os.geteuid() == 0 else []
# no poll, no heartbeat for a minute: within the tests' 20 s only a notification wakes the daemon
QUIET = ["--workers", "1", "--poll", "60s", "--heartbeat", "60s", "--lease", "180s"]


def _elsewhere(url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI on 'another host': the same database, its own state directory."""
    return {"JOBRUNNER_DB": url, "XDG_STATE_HOME": str(tmp_path / "other-host-state")}


def _status(url: str, tmp_path: Path, job_id: int) -> str:
    import json

    shown = run_jobrunner("show", str(job_id), "--json", env=_elsewhere(url, tmp_path))
    return json.loads(shown.stdout)["status"]


def test_a_job_submitted_on_another_host_wakes_an_idle_daemon(daemon, postgres_url, tmp_path):
    daemon.start(*QUIET, *ROOT_FLAG, env={"JOBRUNNER_DB": postgres_url})
    for _ in range(3):
        submitted = run_jobrunner("submit", "--", "true", env=_elsewhere(postgres_url, tmp_path))
        assert submitted.returncode == 0, submitted.stderr
        job_id = int(submitted.stdout)
        wait_until(lambda: _status(postgres_url, tmp_path, job_id) == "succeeded", timeout=20)  # noqa: B023


def test_the_daemon_listens_again_after_its_connection_is_dropped(daemon, postgres_url, tmp_path):
    """The daemon LISTENs on its loop's connection: that backend terminated, it connects again
    and LISTENs there, so a job from another host still starts long before its minute's poll."""
    import psycopg2

    daemon.start(*QUIET, *ROOT_FLAG, env={"JOBRUNNER_DB": postgres_url})
    name = postgres_url.rsplit("/", 1)[1]
    first = run_jobrunner("submit", "--", "true", env=_elsewhere(postgres_url, tmp_path))
    wait_until(lambda: _status(postgres_url, tmp_path, int(first.stdout)) == "succeeded", timeout=20)
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=name) as admin:
        admin.autocommit = True
        cursor = admin.cursor()
        listening = ("SELECT pid, application_name FROM pg_stat_activity WHERE datname=%s "
                     "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")  # fmt: skip

        def backends() -> list[tuple[int, str]]:
            cursor.execute(listening, (name,))
            return cursor.fetchall()

        wait_until(lambda: len(backends()) == 1, timeout=20)  # the daemon's one (the CLIs' have ended)
        [(backend, named)] = backends()
        assert daemon.proc is not None and named == f"jobrunner daemon {socket.gethostname()}:{daemon.proc.pid}"
        cursor.execute("SELECT pg_terminate_backend(%s)", (backend,))
    admin.close()
    for _ in range(2):  # the second after the daemon has surely reconnected (it ran the first)
        submitted = run_jobrunner("submit", "--", "true", env=_elsewhere(postgres_url, tmp_path))
        job_id = int(submitted.stdout)
        wait_until(lambda: _status(postgres_url, tmp_path, job_id) == "succeeded", timeout=20)  # noqa: B023
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "cannot listen" not in daemon.output() or "polling meanwhile" in daemon.output()


def test_the_daemon_rides_out_dropped_connections(daemon, postgres_url, tmp_path):
    """Every backend of the daemon terminated (as a server restart does): it reconnects, records
    and claims again, and keeps listening; no traceback, no exit."""
    import psycopg2

    daemon.start(*QUIET, *ROOT_FLAG, env={"JOBRUNNER_DB": postgres_url})
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


def test_a_notification_read_by_the_loops_own_statement_is_not_lost(postgres_url):
    """The daemon LISTENs on the connection it claims on: a notification that arrives while
    one of its statements runs is read by that statement (the socket no longer wakes the
    selector for it) and must still count. Its own notifications do not."""
    import selectors

    import psycopg2

    from jobrunner.api import connect
    from jobrunner.store.pgwake import CHANNEL, PgListener

    store = connect(postgres_url)
    try:
        listener = PgListener(store, "me")
        assert listener.current() and listener.pending() == 0
        with psycopg2.connect(postgres_url) as other:
            other.autocommit = True
            other.cursor().execute("SELECT pg_notify(%s, ''), pg_notify(%s, 'me')", (CHANNEL, CHANNEL))
        wait_until(lambda: store.execute("SELECT 1").fetchall() and listener.conn.notifies, timeout=10)
        with selectors.DefaultSelector() as selector:
            selector.register(listener.fileno(), selectors.EVENT_READ)
            assert selector.select(0) == []  # nothing left on the socket to wake the loop
        assert listener.pending() == 1  # the client's, not its own
        assert listener.pending() == 0
    finally:
        store.close()
