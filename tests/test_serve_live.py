"""`jobrunner serve` for real: uvicorn on a free port, real HTTP clients, a real daemon.

- 16 clients submitting 500 jobs each at once: nothing lost, every id once.
- The event stream sees every state change and progress report of a job a daemon runs, and a
  client that disconnects and comes back with Last-Event-ID misses nothing.
- A followed log streams until its job ends; /healthz and /metrics see the daemon.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from jobrunner.config import log_dir_for
from tests.conftest import ROOT, sql, wait_until
from tests.servehelpers import EventReader, LiveServer, settings_for

CLIENTS, JOBS_EACH = 16, 500


@pytest.fixture
def server(db_path):
    live = LiveServer(settings_for(db_path))
    yield live
    live.stop()


@contextlib.contextmanager
def serve_process(db_path, tmp_path):
    """`jobrunner serve --port 0` as its own process (its own interpreter: the clients here do not
    share its GIL), with no token configured; yields its URL and the headers that carry the token
    it generated (in the database's owner-only log directory)."""
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "jobrunner", "serve", "--port", "0"],
                            env={**os.environ, "JOBRUNNER_DB": str(db_path), "PYTHONPATH": str(ROOT),
                                 "JOBRUNNER_API_TOKEN": "", "JOBRUNNER_API_READ_TOKEN": ""},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        found = wait_until(lambda: re.search(r"serving http://127\.0\.0\.1:(\d+)/api", Path(log.name).read_text()),
                           timeout=20)  # fmt: skip
        url = f"http://127.0.0.1:{found.group(1)}"
        wait_until(lambda: _answers(url), timeout=20)
        token_file = Path(log_dir_for(str(db_path))) / "api.token"
        assert str(token_file) in Path(log.name).read_text() and token_file.stat().st_mode & 0o077 == 0
        assert httpx.post(f"{url}/api/jobs", json={"command": ["true"]}).status_code == 401  # no token, no job
        yield url, {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code in (200, 503)
    except httpx.TransportError:
        return False


def test_sixteen_clients_submitting_at_once_lose_nothing(db_path, tmp_path):
    """16 clients x 500 single submits over keep-alive connections, all at once: every request
    answered 201, every id handed out once, and the database holds exactly those jobs."""
    with serve_process(db_path, tmp_path) as (url, headers):

        def client(number: int) -> list[tuple[str, int]]:
            got = []
            with httpx.Client(base_url=url, timeout=60, headers=headers) as http:
                for index in range(JOBS_EACH):
                    name = f"c{number}-{index}"
                    response = http.post("/api/jobs", json={"command": ["true"], "name": name})
                    assert response.status_code == 201, response.text
                    got.append((name, response.json()["id"]))
            return got

        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [pair for result in pool.map(client, range(CLIENTS)) for pair in result]
        took = time.monotonic() - started
    ids = [job_id for _, job_id in answers]
    assert len(ids) == CLIENTS * JOBS_EACH == len(set(ids))
    stored = dict(sql(db_path, "SELECT name, id FROM job"))
    assert stored == dict(answers)
    print(f"\n{len(ids)} submits from {CLIENTS} clients in {took:.1f}s ({len(ids) / took:,.0f}/s)")


def progress_script(tmp_path: Path, steps: int) -> str:
    """A shell job that reports step k of `steps` and waits for the test's `ackK` file before the
    next: each report is written (and seen) before the next one replaces it."""
    lines = []
    for step in range(1, steps + 1):
        lines.append(f'echo "{100 * step // steps}% step {step}" > "$JOBRUNNER_PROGRESS"')
        if step < steps:
            lines.append(f"while [ ! -e {tmp_path}/ack{step} ]; do sleep 0.01; done")
    return "; ".join(lines)


def read_until(reader: EventReader, found: list, predicate, timeout: float = 20) -> None:
    """Read messages into `found` until one matches `predicate`."""
    deadline = time.monotonic() + timeout
    while True:
        message = reader.next(timeout=max(deadline - time.monotonic(), 0.1))
        found.append(message)
        if predicate(message):
            return


def is_progress(job_id: int, fraction: float):
    return lambda m: m.event == "progress" and m.data["job_id"] == job_id and m.data["progress"] == fraction


def test_events_carry_every_change_and_report_and_resume_without_a_gap(server, daemon, tmp_path):
    daemon.start("--workers", "2")
    http = httpx.Client(base_url=server.url, timeout=30)
    first = EventReader(f"{server.url}/api/events")
    assert first.next().event == "ready"
    job_a = http.post("/api/jobs", json={"command": progress_script(tmp_path, 4), "name": "a"}).json()["id"]
    seen: list = []
    read_until(first, seen, is_progress(job_a, 0.25))
    (tmp_path / "ack1").touch()
    read_until(first, seen, is_progress(job_a, 0.5))
    cursor = first.last_id
    first.close()

    # while nobody listens: another job runs from start to end, and job a reports once more
    job_b = http.post("/api/jobs", json={"command": ["true"], "name": "b"}).json()["id"]
    wait_until(lambda: http.get(f"/api/jobs/{job_b}").json()["status"] == "succeeded", timeout=20)
    (tmp_path / "ack2").touch()
    wait_until(lambda: http.get(f"/api/jobs/{job_a}").json()["progress"] == 0.75, timeout=20)

    second = EventReader(f"{server.url}/api/events", headers={"Last-Event-ID": cursor})
    ready = second.next()
    assert ready.event == "ready" and ready.data["cursor"] == cursor
    read_until(second, seen, is_progress(job_a, 0.75))
    (tmp_path / "ack3").touch()
    read_until(second, seen, lambda m: m.event == "state" and m.data["job_id"] == job_a and m.data["to"] == "succeeded")
    second.close()

    def story(job_id: int) -> list:
        return [(m.event, m.data["to"] if m.event == "state" else (m.data["progress"], m.data["progress_message"]))
                for m in seen if m.data.get("job_id") == job_id]  # fmt: skip

    assert story(job_a) == [("state", "queued"), ("state", "running"), ("progress", (0.25, "step 1")),
                            ("progress", (0.5, "step 2")), ("progress", (0.75, "step 3")),
                            ("progress", (1.0, "step 4")), ("state", "succeeded")]  # fmt: skip
    assert story(job_b) == [("state", "queued"), ("state", "running"), ("state", "succeeded")]
    for job_id in (job_a, job_b):  # every change the history holds, in its words, once
        history = http.get(f"/api/jobs/{job_id}").json()["events"]
        sent = [{k: v for k, v in m.data.items() if k not in ("event_id", "job_id", "queue")}
                for m in seen if m.event == "state" and m.data["job_id"] == job_id]  # fmt: skip
        assert sent == history
    event_ids = [m.data["event_id"] for m in seen if m.event == "state"]
    assert event_ids == sorted(set(event_ids))
    http.close()


def test_a_followed_log_streams_until_the_job_ends(server, daemon, tmp_path):
    daemon.start("--workers", "1")
    http = httpx.Client(base_url=server.url, timeout=30)
    script = f"echo first; while [ ! -e {tmp_path}/go ]; do sleep 0.01; done; echo second; printf 'no newline'"
    job_id = http.post("/api/jobs", json={"command": script}).json()["id"]
    chunks: queue.Queue[bytes | None] = queue.Queue()

    def follow() -> None:
        with httpx.Client(timeout=httpx.Timeout(30, read=None)) as client, \
                client.stream("GET", f"{server.url}/api/jobs/{job_id}/log", params={"follow": True}) as response:  # fmt: skip
            for chunk in response.iter_bytes():
                chunks.put(chunk)
        chunks.put(None)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    received = b""
    while b"first\n" not in received:
        received += chunks.get(timeout=20) or b""
    (tmp_path / "go").touch()
    while (chunk := chunks.get(timeout=20)) is not None:
        received += chunk
    reader.join(timeout=10)
    job = http.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert received == Path(job["log_path"]).read_bytes()  # the attempt's header line, then the job's bytes
    assert received.endswith(b"first\nsecond\nno newline")
    http.close()


def test_health_and_metrics_see_a_live_daemon(server, daemon):
    http = httpx.Client(base_url=server.url, timeout=30)
    assert http.get("/healthz").status_code == 503
    daemon.start("--workers", "1")
    health = wait_until(lambda: (r := http.get("/healthz")).status_code == 200 and r.json(), timeout=20)
    assert health == {"ok": True, "database": "ok", "daemons_alive": 1}
    assert "jobrunner_daemons_alive 1.0" in http.get("/metrics").text
    assert http.get("/api/daemons").json()["alive"] is True
    http.close()
