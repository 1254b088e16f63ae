"""`jobrunner serve`'s endpoints, each with its happy path and its errors, against a real database
file through FastAPI's TestClient; the JSON is compared with the CLI's `--json` output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import logs_of, sql
from tests.servehelpers import client_for

#: The checks that look at this machine run only where the daemon shares it (a SQLite file).
HERE_ONLY = pytest.mark.sqlite_only(reason="a database URL's daemon may run on another host: cwd and modules are its")


@pytest.fixture
def api(db_path):
    with client_for(db_path) as client:
        yield client


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"], body
    return body["error"]


# ------------------------------------------------------------------------------------ submit
def test_submit_stores_the_job_that_show_prints(api, cli):
    response = api.post("/api/jobs", json={"command": ["echo", "hi"], "priority": "high", "tags": ["a"],
                                           "name": "greet", "retries": 2, "timeout": "10m"})  # fmt: skip
    assert response.status_code == 201
    job_id = response.json()["id"]
    assert response.json() == {"id": job_id}
    shown = api.get(f"/api/jobs/{job_id}").json()
    assert shown == cli.job(job_id)
    assert (shown["name"], shown["priority_name"], shown["max_retries"], shown["timeout"]) == ("greet", "high", 2, 600)
    assert shown["cwd"] == os.getcwd()  # a shell job runs where the server was started, as a CLI submit runs where it was typed


def test_submit_takes_every_kind_of_job_and_start_time(cli, db_path, tmp_path):
    config = tmp_path / "work" / "jobs.toml"
    config.write_text('[tasks.hello]\ncommand = ["echo", "hello"]\nqueue = "greetings"\n')
    config.chmod(0o600)
    with client_for(db_path, config=config) as with_tasks:
        task_job = with_tasks.post("/api/jobs", json={"task": "hello", "priority": "low"}).json()["id"]
        call_job = with_tasks.post("/api/jobs", json={"callable": "tests.jobfuncs:add", "kwargs": {"a": 1, "b": 2}}).json()["id"]
        later = with_tasks.post("/api/jobs", json={"command": "true", "in": "10m"}).json()["id"]
        after = with_tasks.post("/api/jobs", json={"command": "true", "after": [task_job]}).json()["id"]
        assert error_of(with_tasks.post("/api/jobs", json={"task": "nope"}), 400) == (
            "task: unknown task 'nope' (known tasks: hello)")
    assert cli.job(task_job)["queue"] == "greetings" and cli.job(task_job)["priority_name"] == "low"
    assert cli.job(call_job)["kwargs"] == {"a": 1, "b": 2}
    assert cli.job(later)["status"] == "scheduled"
    assert cli.job(after)["status"] == "waiting" and cli.job(after)["after"] == [task_job]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"command": ["x"], "priority": "urgent"}, 400,
     "priority: 'urgent' is not a priority: use low, normal, high, critical or 0-9"),
    ({"command": ["x"], "retries": -1}, 400, "retries: -1 is not a number of retries (0-1000)"),
    ({"command": ["x"], "retires": 3}, 400, "retires: unknown key 'retires' (did you mean 'retries'?)"),
    ({"command": ["x"], "at": "2026-13-45"}, 400,
     "at: '2026-13-45' is not a time like 2026-12-01T03:00 or 2026-12-01 03:00+01:00"),
    ({"command": ["x"], "after": [999]}, 400, "after: no job with id 999"),
    ({"command": ["x"], "after": ["a-ref"]}, 400, "after: 'a-ref' is neither a job id nor the ref of an earlier item"),
    pytest.param({"command": ["x"], "cwd": "/nonexistent/dir"}, 400, "cwd: /nonexistent/dir does not exist",
                 marks=HERE_ONLY),
    pytest.param({"callable": "nosuchpackage.mod:f"}, 400, None, marks=HERE_ONLY),
    ({}, 400, None),
    ([{"command": "x"}], 422, "body: input should be a JSON object"),
])  # fmt: skip
def test_submit_refuses_what_the_cli_refuses_in_its_words(api, body, status, message):
    text = error_of(api.post("/api/jobs", json=body), status)
    if message is not None:
        assert text == message
    assert api.get("/api/stats").json()["total"] == 0


def test_a_bad_value_reads_as_the_from_file_line_says_it(api, cli, tmp_path):
    """The same checks and words as `submit --from-file`, minus the file:line."""
    line = {"command": ["x"], "timeout": "soon"}
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(line) + "\n")
    cli_error = cli("submit", "--from-file", str(jobs)).stderr.strip()
    assert cli_error.endswith(": " + error_of(api.post("/api/jobs", json=line), 400))


def test_a_body_that_is_not_json_is_refused(api):
    assert error_of(api.post("/api/jobs", content=b"{bad", headers={"content-type": "application/json"}), 400).startswith(
        "body: invalid JSON")
    refused = error_of(api.post("/api/jobs", content=b'{"command": "x"}', headers={"content-type": "text/plain"}), 415)
    assert "application/json" in refused  # a cross-site form cannot post a job
    assert error_of(api.post("/api/jobs"), 422) == "body: missing: send a JSON body"


def test_bulk_stores_all_in_one_transaction_or_nothing(api, cli):
    response = api.post("/api/jobs/bulk", json=[{"command": "true", "ref": "first"},
                                                {"command": "true", "after": ["first"]},
                                                {"callable": "tests.jobfuncs:add", "args": [1, 2]}])  # fmt: skip
    assert response.status_code == 201
    ids = response.json()["ids"]
    assert len(ids) == 3 and ids == list(range(ids[0], ids[0] + 3))
    assert cli.job(ids[1])["after"] == [ids[0]]
    refused = api.post("/api/jobs/bulk", json=[{"command": "true"}] * 3 + [{"command": "true", "priority": "urgent"}])
    assert error_of(refused, 400).startswith("item 4: priority: 'urgent' is not a priority")
    assert error_of(api.post("/api/jobs/bulk", json=[{"command": "true"}, 5]), 422) == "body 1: input should be a JSON object"
    assert error_of(api.post("/api/jobs/bulk", json={"command": "true"}), 422) == "body: input should be a JSON list"
    assert error_of(api.post("/api/jobs/bulk", json=[]), 400) == "no jobs in the list: give a list of job objects"
    assert cli.count() == 3


# ------------------------------------------------------------------------------------ list
def test_list_gives_list_json_and_a_cursor_that_walks_every_job_once(api, cli):
    ids = api.post("/api/jobs/bulk", json=[{"command": "true", "queue": "q" + str(i % 2)} for i in range(23)]).json()["ids"]
    page = api.get("/api/jobs", params={"limit": 5})
    assert page.json()["jobs"] == json.loads(cli.ok("list", "--json", "--limit", "5"))
    for oldest_first in (False, True):
        seen, cursor = [], None
        while True:
            params = {"limit": 5, "oldest_first": oldest_first, **({"cursor": cursor} if cursor else {})}
            body = api.get("/api/jobs", params=params).json()
            seen += [job["id"] for job in body["jobs"]]
            cursor = body["next"]
            if cursor is None:
                break
        assert seen == (ids if oldest_first else ids[::-1])
    only = api.get("/api/jobs", params={"queue": "q1", "limit": 100}).json()["jobs"]
    assert [job["id"] for job in only] == ids[1::2][::-1]


def test_list_filters_as_the_cli_does(api, cli):
    api.post("/api/jobs/bulk", json=[{"command": "true", "name": "alpha", "tags": ["x", "y"]},
                                     {"command": "true", "name": "beta", "tags": ["x"]},
                                     {"command": "true", "name": "gamma"}])  # fmt: skip
    api.post("/api/jobs/3/cancel")
    for params, args in ((({"tag": ["x", "y"]}), ["--tag", "x", "--tag", "y"]), ({"search": "et"}, ["--search", "et"]),
                         ({"status": "cancelled,queued"}, ["--status", "cancelled,queued"]),
                         ({"status": ["cancelled"]}, ["--status", "cancelled"])):  # fmt: skip
        assert api.get("/api/jobs", params=params).json()["jobs"] == json.loads(cli.ok("list", "--json", *args))
    assert error_of(api.get("/api/jobs", params={"status": "finished"}), 400).startswith(
        "status: unknown status 'finished': use one of queued")
    assert error_of(api.get("/api/jobs", params={"cursor": "abc"}), 400).startswith("cursor: 'abc' is not a cursor")
    assert error_of(api.get("/api/jobs", params={"limit": 0}), 422) == (
        "query parameter limit: input should be greater than or equal to 1")


# ------------------------------------------------------------------------------------ one job
def test_get_a_job_with_its_history_and_refuse_unknown_ids(api, cli):
    job_id = cli.submit("--", "true")
    assert api.get(f"/api/jobs/{job_id}").json() == cli.job(job_id)
    assert api.get(f"/api/jobs/{job_id}").json()["events"][0]["message"] == "submitted"
    assert error_of(api.get("/api/jobs/99"), 404) == "no job with id 99; `jobrunner list` shows the ids"
    for bad in ("abc", "0", "-1", "9223372036854775808", "1.5"):
        assert error_of(api.get(f"/api/jobs/{bad}"), 400) == (
            f"'{bad}' is not a job id: ids are positive whole numbers, as `jobrunner list` shows them")


def test_cancel_retry_and_priority_answer_as_the_cli(api, cli):
    job_id = cli.submit("--", "true")
    changed = api.patch(f"/api/jobs/{job_id}", json={"priority": "critical"})
    assert changed.json() == {"id": job_id, "status": "queued", "message": "priority normal → critical"}
    assert error_of(api.patch(f"/api/jobs/{job_id}", json={"priority": "urgent"}), 400).startswith(
        "priority: 'urgent' is not a priority")
    assert error_of(api.patch(f"/api/jobs/{job_id}", json={"queue": "x"}), 422) == "body priority: missing (and 1 more)"
    assert api.post(f"/api/jobs/{job_id}/cancel").json() == [
        {"id": job_id, "from": "queued", "to": "cancelled", "message": "cancelled"}]
    assert error_of(api.post(f"/api/jobs/{job_id}/cancel"), 409) == f"nothing cancelled: job {job_id} already cancelled"
    assert error_of(api.patch(f"/api/jobs/{job_id}", json={"priority": 1}), 409).startswith("no priority changed")
    assert api.post(f"/api/jobs/{job_id}/retry").json() == [
        {"id": job_id, "from": "cancelled", "to": "queued", "message": "queued"}]
    assert error_of(api.post(f"/api/jobs/{job_id}/retry"), 409).startswith(f"nothing retried: job {job_id} is queued")
    for path in ("cancel", "retry"):
        assert error_of(api.post(f"/api/jobs/77/{path}"), 404).startswith("no job with id 77")


def test_delete_removes_a_finished_job_and_its_log_only(api, cli, db_path):
    job_id = cli.submit("--", "true")
    assert error_of(api.delete(f"/api/jobs/{job_id}"), 409).startswith(f"job {job_id} is queued: only a finished job")
    api.post(f"/api/jobs/{job_id}/cancel")
    log = logs_of(db_path) / f"{job_id}.log"
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log.write_text("output\n")
    sql(db_path, "UPDATE job SET log_path = ? WHERE id = ?", (str(log), job_id))
    assert api.delete(f"/api/jobs/{job_id}").json() == {"purged": 1, "would_purge": 0, "ids": [job_id]}
    assert not log.exists()
    assert error_of(api.delete(f"/api/jobs/{job_id}"), 404).startswith(f"no job with id {job_id}")
    assert cli.submit("--", "true") > job_id  # its id is never handed out again


def test_log_sends_the_bytes_as_written_and_its_tail(api, cli, db_path):
    job_id = cli.submit("--", "true")
    assert api.get(f"/api/jobs/{job_id}/log").content == b""  # no output yet
    log = logs_of(db_path) / f"{job_id}.log"
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = b"one\n\x1b[2Jtwo \xff\nthree\n"
    log.write_bytes(data)
    sql(db_path, "UPDATE job SET log_path = ? WHERE id = ?", (str(log), job_id))
    response = api.get(f"/api/jobs/{job_id}/log")
    assert response.content == data and response.headers["content-type"].startswith("text/plain")
    assert api.get(f"/api/jobs/{job_id}/log", params={"tail": 1}).content == b"three\n"
    assert error_of(api.get("/api/jobs/99/log"), 404).startswith("no job with id 99")
    assert error_of(api.get(f"/api/jobs/{job_id}/log", params={"tail": -1}), 422).startswith("query parameter tail")


# ------------------------------------------------------------------------------------ the rest
def test_stats_tasks_and_daemons_are_the_clis(api, cli):
    cli.submit("--queue", "other", "--", "true")
    assert api.get("/api/stats").json() == cli.json("stats")
    assert api.get("/api/tasks").json() == []
    status = api.get("/api/daemons").json()
    expected = json.loads(cli("status", "--json").stdout)  # exit 3: no daemon
    assert status == expected and status["alive"] is False


def test_tasks_come_from_the_servers_config_with_env_values_hidden(db_path, tmp_path):
    config = tmp_path / "work" / "jobs.toml"
    config.write_text('[tasks.backup]\ndescription = "Back up"\ncommand = ["tar", "c"]\nenv = { KEY = "secret" }\n')
    config.chmod(0o600)
    with client_for(db_path, config=config) as api:
        assert api.get("/api/tasks").json() == [
            {"name": "backup", "command": ["tar", "c"], "env": {"KEY": "***"}}]


def test_schedules_list_as_the_cli_and_run_now(api, cli):
    cli.ok("schedule", "add", "tick", "--every", "1h", "--", "true")
    assert api.get("/api/schedules").json() == cli.json("schedule", "list")
    response = api.post("/api/schedules/tick/run")
    assert response.status_code == 201
    assert cli.job(response.json()["id"])["status"] == "queued"
    assert api.get("/api/schedules").json()[0]["last_job_id"] == response.json()["id"]
    assert error_of(api.post("/api/schedules/nope/run"), 404) == "no schedule named 'nope'; `jobrunner schedule list` shows them"


def test_queues_pause_and_resume_as_the_cli(api, cli):
    cli.submit("--queue", "mail", "--", "true")
    paused = api.post("/api/queues/mail/pause").json()
    assert paused == {"queue": "mail", "paused": True, "changed": True,
                      "message": "queue mail paused: running jobs finish, nothing new starts"}  # fmt: skip
    assert api.post("/api/queues/mail/pause").json()["message"] == "queue mail was already paused"
    assert cli.json("stats")["queues"]["mail"]["paused"] is True
    assert api.post("/api/queues/mail/resume").json()["message"] == "queue mail resumed"
    assert error_of(api.post("/api/queues/nope/pause"), 404).startswith("no queue named 'nope'")
    assert api.post("/api/queues/nope/pause", params={"create": True}).json()["changed"] is True
    assert error_of(api.post("/api/queues/bad name!/pause", params={"create": True}), 400).startswith(
        "'bad name!' is not a queue name")


def test_healthz_says_when_no_daemon_runs(api):
    response = api.get("/healthz")
    assert response.status_code == 503
    assert response.json()["ok"] is False and response.json()["database"] == "ok"
    assert "no daemon is alive" in response.json()["error"]


def test_metrics_count_jobs_by_queue_and_status(api, cli):
    from prometheus_client.parser import text_string_to_metric_families

    cli.submit("--queue", "mail", "--", "true")
    cancelled = cli.submit("--", "true")
    cli.ok("cancel", str(cancelled))
    response = api.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text) for s in family.samples}  # fmt: skip
    assert samples[("jobrunner_database_up", ())] == 1
    assert samples[("jobrunner_jobs", (("queue", "mail"), ("status", "queued")))] == 1
    assert samples[("jobrunner_jobs", (("queue", "default"), ("status", "cancelled")))] == 1
    assert samples[("jobrunner_jobs_finished_last_minute", (("status", "cancelled"),))] == 1
    assert samples[("jobrunner_oldest_queued_seconds", (("queue", "mail"),))] >= 0
    assert samples[("jobrunner_daemons_alive", ())] == 0


def test_unknown_endpoints_and_methods_answer_in_one_line(api):
    assert error_of(api.get("/api/nope"), 404) == "no such endpoint: GET /api/nope (GET /docs lists them)"
    assert error_of(api.put("/api/jobs/1"), 405) == "PUT is not allowed on /api/jobs/1 (GET /docs lists what is)"


def test_a_body_over_the_limit_is_refused_before_it_is_read(db_path):
    with client_for(db_path, max_body=1000) as api:
        big = [{"command": "true", "name": "x" * 50}] * 40
        assert error_of(api.post("/api/jobs/bulk", json=big), 413).startswith("request body over")

        def chunked():  # no Content-Length: the limit holds as the body arrives
            yield b"["
            for _ in range(40):
                yield json.dumps({"command": "true", "name": "x" * 50}).encode() + b","
            yield b'{"command": "true"}]'

        response = api.post("/api/jobs/bulk", content=chunked(), headers={"content-type": "application/json"})
        assert error_of(response, 413).startswith("request body over")
        assert api.post("/api/jobs/bulk", json=big[:2]).status_code == 201


def test_a_locked_database_is_a_503_in_one_line(api, cli, db_path, monkeypatch):
    """Not the client's fault, not a traceback: try again."""
    from jobrunner.errors import StoreError
    from jobrunner.store import queries

    def locked(*args, **kwargs):
        raise StoreError(f"database {db_path} is locked: another process held its write lock for over 30s; "
                         "nothing was written, try again")  # fmt: skip

    monkeypatch.setattr(queries, "stats", locked)
    response = api.get("/api/stats")
    assert error_of(response, 503).startswith(f"database {db_path} is locked")
    assert response.headers["retry-after"] == "1"


def test_a_crash_in_a_route_is_a_500_without_a_traceback(api, monkeypatch):
    from jobrunner.store import queries

    monkeypatch.setattr(queries, "stats", lambda store: 1 / 0)
    assert error_of(api.get("/api/stats"), 500) == "internal error (ZeroDivisionError); the server's log has the details"


def test_openapi_documents_every_endpoint(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert {(method.upper(), path) for path, methods in paths.items() for method in methods} == {
        ("POST", "/api/jobs"), ("GET", "/api/jobs"), ("POST", "/api/jobs/bulk"), ("GET", "/api/jobs/{job_id}"),
        ("PATCH", "/api/jobs/{job_id}"), ("DELETE", "/api/jobs/{job_id}"), ("GET", "/api/jobs/{job_id}/log"),
        ("POST", "/api/jobs/{job_id}/cancel"), ("POST", "/api/jobs/{job_id}/retry"), ("GET", "/api/stats"),
        ("GET", "/api/tasks"), ("GET", "/api/schedules"), ("POST", "/api/schedules/{name}/run"),
        ("GET", "/api/daemons"), ("POST", "/api/queues/{name}/pause"), ("POST", "/api/queues/{name}/resume"),
        ("GET", "/api/events"), ("GET", "/healthz"), ("GET", "/metrics"),
    }  # fmt: skip


def test_serve_stays_out_of_every_other_command():
    """FastAPI, uvicorn and pydantic load only for `serve`: importing jobrunner and the CLI does not."""
    import subprocess
    import sys

    code = ("import sys, jobrunner, jobrunner.cli.app, jobrunner.api; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'pydantic', 'starlette', 'prometheus_client') "
            "if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "[]"
