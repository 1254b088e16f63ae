"""Hosts die (issue 16): a daemon on another host is recovered only by lease expiry, never by
a pid check (its pid means nothing here). The other host is a daemon started in a UTS
namespace of its own, with another hostname, on the same PostgreSQL database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_jobrunner, wait_until

pytestmark = pytest.mark.postgres


def _job(url: str, job_id: int) -> dict:
    return json.loads(run_jobrunner("show", str(job_id), "--json", env={"JOBRUNNER_DB": url}).stdout)


@pytest.fixture
def other_host(postgres_url, tmp_path):
    """Start `jobrunner daemon` as host 'otherhost' (unshare --uts); killed in teardown."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the other host is a UTS namespace (unshare --uts)")
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        env = {**os.environ, "JOBRUNNER_DB": postgres_url, "PYTHONPATH": str(ROOT),
               "XDG_STATE_HOME": str(tmp_path / "otherhost-state")}  # fmt: skip
        log = open(tmp_path / "otherhost.log", "a")  # noqa: SIM115 - the process holds it
        command = f"hostname otherhost && exec {sys.executable} -m jobrunner daemon --allow-root {' '.join(args)}"
        proc = subprocess.Popen(["unshare", "--uts", "sh", "-c", command], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        started.append(proc)
        wait_until(lambda: "started:" in (tmp_path / "otherhost.log").read_text(), timeout=20)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_a_dead_daemon_on_another_host_is_recovered_by_its_lease_only(daemon, postgres_url, other_host, tmp_path):
    lease = 4.0
    remote = other_host("--workers", "1", "--lease", f"{lease:g}s", "--heartbeat", "1s")
    marker = tmp_path / "starts"
    submitted = run_jobrunner("submit", "--retries", "1", "--backoff", "0", "--", "sh", "-c",
                              f"echo $JOBRUNNER_ATTEMPT >> {marker}; exec sleep 60",
                              env={"JOBRUNNER_DB": postgres_url, "XDG_STATE_HOME": str(tmp_path / "otherhost-state")})  # fmt: skip
    job_id = int(submitted.stdout)
    wait_until(lambda: marker.exists() and marker.read_text() == "1\n", timeout=20)
    assert _job(postgres_url, job_id)["status"] == "running"
    # this host's daemon, then the other host dies: its pid is nothing to this host
    daemon.start("--workers", "1", "--lease", f"{lease:g}s", "--heartbeat", "1s", "--allow-root",
                 env={"JOBRUNNER_DB": postgres_url})  # fmt: skip
    os.killpg(remote.pid, signal.SIGKILL)
    killed_at = time.time()
    wait_until(lambda: marker.read_text() == "1\n2\n", timeout=30)
    recovered = [e for e in _job(postgres_url, job_id)["events"] if "lost" in (e["message"] or "")]
    assert len(recovered) == 1, _job(postgres_url, job_id)["events"]
    from datetime import datetime

    lost_at = datetime.fromisoformat(recovered[0]["at"]).timestamp()
    assert lost_at >= killed_at + lease - 1.0 - 0.5  # not before its lease ran out (renewed up to 1 s before the kill)
    assert "lease expired" in recovered[0]["message"]
    assert _job(postgres_url, job_id)["attempts"] == 2
    run_jobrunner("cancel", str(job_id), env={"JOBRUNNER_DB": postgres_url})
