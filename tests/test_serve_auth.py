"""Who may use `jobrunner serve`: bearer tokens (full and read-only), and without a token this
machine only, with browsers' cross-site requests and DNS rebinding kept out."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, run_jobrunner, wait_until
from tests.servehelpers import client_for

TOKEN, READ_TOKEN = "s3cret-" + "a" * 32, "r3ad-" + "b" * 32
JOB = {"command": ["true"]}


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert set(response.json()) == {"error"}
    return response.json()["error"]


@pytest.fixture
def clients(db_path):
    """A server with both tokens, and a client per token: none, full, read-only, wrong."""
    made = {name: client_for(db_path, bearer=bearer, token=TOKEN, read_only_token=READ_TOKEN)
            for name, bearer in (("none", None), ("full", TOKEN), ("read", READ_TOKEN), ("wrong", "nope"))}  # fmt: skip
    yield made
    for client in made.values():
        client.close()


def test_the_full_token_may_do_everything_and_nothing_works_without_one(clients):
    full, none, wrong = clients["full"], clients["none"], clients["wrong"]
    job_id = full.post("/api/jobs", json=JOB).json()["id"]
    assert full.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    missing = none.get("/api/jobs")
    assert error_of(missing, 401).startswith("missing token: send `Authorization: Bearer TOKEN`")
    assert "$JOBRUNNER_API_TOKEN" in missing.json()["error"] and missing.headers["www-authenticate"] == "Bearer"
    for response in (wrong.get("/api/jobs"), wrong.post("/api/jobs", json=JOB), none.get("/api/events"),
                     none.get("/metrics"), none.get(f"/api/jobs/{job_id}/log")):  # fmt: skip
        assert response.status_code == 401, response.text
    assert error_of(wrong.get("/api/stats"), 401) == "wrong token"
    basic = none.get("/api/stats", headers={"Authorization": f"Basic {TOKEN}"})
    assert error_of(basic, 401).startswith("missing token")
    assert full.get("/api/stats").json()["total"] == 1


def test_a_read_only_token_may_only_read(clients):
    full, read = clients["full"], clients["read"]
    job_id = full.post("/api/jobs", json=JOB).json()["id"]
    for path in ("/api/jobs", f"/api/jobs/{job_id}", "/api/stats", "/api/tasks", "/api/schedules", "/api/daemons",
                 f"/api/jobs/{job_id}/log", "/metrics"):  # fmt: skip
        assert read.get(path).status_code == 200, path
    for method, path in (("POST", "/api/jobs"), ("POST", "/api/jobs/bulk"), ("POST", f"/api/jobs/{job_id}/cancel"),
                         ("POST", f"/api/jobs/{job_id}/retry"), ("PATCH", f"/api/jobs/{job_id}"),
                         ("DELETE", f"/api/jobs/{job_id}"), ("POST", "/api/queues/default/pause"),
                         ("POST", "/api/schedules/x/run")):  # fmt: skip
        refused = read.request(method, path, json=JOB)
        assert error_of(refused, 403) == f"this token may only read: {method} {path} needs the token in $JOBRUNNER_API_TOKEN"
    assert full.get("/api/stats").json()["by_status"]["queued"] == 1  # nothing changed


SECRET_ENV = {"API_KEY": "s3cret"}


def test_a_read_only_token_sees_env_values_as_stars_wherever_a_job_is_returned(db_path, cli):
    """A dashboard's read-only token reads every job, but env values (where users put tokens and
    passwords) reach it as `***`, keys kept, as /api/tasks shows them; the value is in no answer,
    the event stream and an edit's history included. The full token sees them, as `show --json`."""
    options = {"token": TOKEN, "read_only_token": READ_TOKEN, "stream_limit_s": 0.3, "poll_s": 0.01}
    with client_for(db_path, bearer=TOKEN, **options) as full, client_for(db_path, bearer=READ_TOKEN, **options) as read:
        job_id = full.post("/api/jobs", json={**JOB, "env": SECRET_ENV}).json()["id"]
        edited = full.post("/api/jobs", json=JOB).json()["id"]
        cli.ok("edit", str(edited), "--env", "API_KEY=s3cret")  # its history records an env change
        for path in ("/api/jobs", "/api/jobs?status=queued&search=true", f"/api/jobs/{job_id}",
                     f"/api/jobs/{edited}", "/api/events?after=0"):  # fmt: skip
            shown = read.get(path)
            assert shown.status_code == 200, (path, shown.text)
            assert "s3cret" not in shown.text, path
            assert "s3cret" in full.get(path).text or path.startswith("/api/events"), path
        assert read.get(f"/api/jobs/{job_id}").json()["env"] == {"API_KEY": "***"}
        assert [job["env"] for job in read.get("/api/jobs").json()["jobs"]] == [{"API_KEY": "***"}] * 2
        assert "API_KEY" in read.get("/api/events?after=0").text  # the edit's event names the key
        assert full.get(f"/api/jobs/{job_id}").json()["env"] == SECRET_ENV
        assert [job["env"] for job in full.get("/api/jobs").json()["jobs"]] == [SECRET_ENV] * 2
    with client_for(db_path) as loopback:  # no token: this machine only, full access as before
        assert loopback.get(f"/api/jobs/{job_id}").json()["env"] == SECRET_ENV


def test_health_and_the_docs_need_no_token(clients):
    none = clients["none"]
    assert none.get("/healthz").status_code == 503  # no daemon: an answer, not a 401
    schema = none.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert none.get("/docs").status_code == 200


def test_with_a_token_any_host_name_may_be_used(clients):
    assert clients["full"].get("/api/stats", headers={"Host": "jobs.example.com"}).status_code == 200


def test_without_a_token_a_page_on_another_site_cannot_reach_the_api(db_path):
    """DNS rebinding (a foreign Host) and cross-site requests (a foreign Origin) are refused, so a
    web page cannot run commands through a server on 127.0.0.1; the server's own pages may."""
    with client_for(db_path) as api:
        assert api.post("/api/jobs", json=JOB).status_code == 201
        for host in ("localhost:8765", "127.0.0.1", "[::1]:8765"):
            assert api.get("/api/stats", headers={"Host": host}).status_code == 200, host
        rebound = api.post("/api/jobs", json=JOB, headers={"Host": "attacker.example:8765"})
        assert error_of(rebound, 403).startswith("Host 'attacker.example:8765' refused: without a token")
        for origin in ("http://attacker.example", "null", "http://127.0.0.1:9999"):
            crossed = api.post("/api/jobs/1/cancel", headers={"Origin": origin})
            assert error_of(crossed, 403).startswith(f"cross-origin request from {origin!r} refused")
        assert api.get("/api/stats", headers={"Origin": "http://127.0.0.1:8765"}).status_code == 200
        assert api.get("/api/stats").json()["total"] == 1  # the refused requests changed nothing


# ------------------------------------------------------------------------------------ the command
def test_serve_refuses_another_host_than_this_machine_without_a_token(db_path):
    env = {"JOBRUNNER_API_TOKEN": "", "JOBRUNNER_API_READ_TOKEN": ""}
    result = run_jobrunner("serve", "--host", "0.0.0.0", "--port", "0", env=env, timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("jobrunner: error: --host 0.0.0.0: without a token the API listens on this "
                                    "machine only (127.0.0.1): anyone who reached it could run commands as you")  # fmt: skip
    assert "$JOBRUNNER_API_TOKEN" in result.stderr


def test_serve_refuses_a_token_variable_that_is_not_set(db_path):
    result = run_jobrunner("serve", "--token-env", "NO_SUCH_TOKEN_VAR", "--port", "0", timeout=30)
    assert result.returncode == 2
    assert result.stderr == ("jobrunner: error: the token's variable NO_SUCH_TOKEN_VAR is not set (or empty): "
                             "export it, or leave the setting out\n")  # fmt: skip


def test_serve_refuses_a_bad_serve_table(db_path, tmp_path):
    config = tmp_path / "work" / "jobs.toml"
    config.write_text('[serve]\nport = "http"\n')
    config.chmod(0o600)
    result = run_jobrunner("serve", timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"jobrunner: error: {config}: serve.port: 'http' is not a port number (0 to 65535)\n"


@contextlib.contextmanager
def serving(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "jobrunner", "serve", *args], env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                            cwd=cwd, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_serve_with_a_token_from_the_config_serves_other_hosts(db_path, tmp_path):
    """`[serve] token_env` names the variable; with it set, `--host 0.0.0.0` is allowed and every
    request needs the token. SIGTERM stops the server with exit 0."""
    work = tmp_path / "work"
    config = work / "jobs.toml"
    config.write_text('[serve]\nhost = "0.0.0.0"\nport = 0\ntoken_env = "MY_API_TOKEN"\n')
    config.chmod(0o600)
    with serving(env={"MY_API_TOKEN": TOKEN}, cwd=work) as proc:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the announcement comes before uvicorn's own log
        found = re.search(r"serving http://0\.0\.0\.0:(\d+)/api on .* \(token required \(\$MY_API_TOKEN\)\)", line)
        assert found, line
        url = f"http://127.0.0.1:{found.group(1)}"
        wait_until(lambda: _answers(url), timeout=10)
        assert httpx.get(f"{url}/api/stats").status_code == 401
        created = httpx.post(f"{url}/api/jobs", json=JOB, headers={"Authorization": f"Bearer {TOKEN}"})
        assert created.status_code == 201, created.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code in (200, 503)
    except httpx.TransportError:
        return False
