"""POST /api/jobs as serve.submit.FastSubmit answers it, ahead of FastAPI: the same answers as the
route behind it (which still takes every body FastSubmit passes on), and on SQLite an event loop
that never waits for another process's write lock."""

from __future__ import annotations

import json
import sqlite3
import threading

import httpx
import pytest

from tests.conftest import sql, wait_until
from tests.servehelpers import LiveServer, client_for, settings_for


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"], body
    return body["error"]


def test_a_json_body_is_a_job_whatever_its_content_type_adds(db_path):
    with client_for(db_path) as api:
        body = json.dumps({"command": ["true"], "tags": ["t"]}).encode()
        for kind in ("application/json", "Application/JSON; charset=utf-8", "application/vnd.example+json"):
            response = api.post("/api/jobs", content=body, headers={"content-type": kind})
            assert response.status_code == 201, (kind, response.text)
            assert response.headers["content-type"] == "application/json"
            assert set(response.json()) == {"id"}
        assert api.get("/api/stats").json()["total"] == 3


def test_a_submit_over_the_size_limit_is_refused_as_it_arrives(db_path):
    with client_for(db_path, max_body=200) as api:
        def chunked():  # no Content-Length: the limit holds as the body arrives
            yield b'{"command": "true", "name": "'
            for _ in range(20):
                yield b"x" * 20
            yield b'"}'

        response = api.post("/api/jobs", content=chunked(), headers={"content-type": "application/json"})
        assert error_of(response, 413).startswith("request body over")
        assert api.post("/api/jobs", json={"command": "true"}).status_code == 201
        assert api.get("/api/stats").json()["total"] == 1


def test_a_failing_store_answers_a_submit_in_one_line(db_path, monkeypatch):
    from jobrunner.errors import StoreError
    from jobrunner.store import repo

    with client_for(db_path) as api:
        def unreachable(*args, **kwargs):
            raise StoreError("database is unreachable: try again")

        monkeypatch.setattr(repo, "submit", unreachable)
        response = api.post("/api/jobs", json={"command": "true"})
        assert error_of(response, 503) == "database is unreachable: try again"
        assert response.headers["retry-after"] == "1"
        monkeypatch.setattr(repo, "submit", lambda *args, **kwargs: 1 / 0)
        assert error_of(api.post("/api/jobs", json={"command": "true"}), 500) == (
            "internal error (ZeroDivisionError); the server's log has the details")


@pytest.mark.sqlite_only(reason="SQLite's write lock, held by another process, and the event loop")
def test_a_submit_waits_for_another_writer_off_the_event_loop(db_path):
    """While another process holds the write lock a submit waits in a worker thread: the server
    answers other requests meanwhile, and the job is stored once the lock is let go."""
    settings = settings_for(db_path)
    live = LiveServer(settings)
    writer = sqlite3.connect(str(db_path), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        answers: list[httpx.Response] = []
        submit = threading.Thread(target=lambda: answers.append(
            httpx.post(f"{live.url}/api/jobs", json={"command": ["true"]}, timeout=60)))  # fmt: skip
        submit.start()

        def waiting() -> bool:  # a thread of the server holds this process's write lock, waiting for SQLite's
            if settings.store.write_lock.acquire(blocking=False):
                settings.store.write_lock.release()
                return False
            return True

        wait_until(waiting, timeout=10)
        assert httpx.get(f"{live.url}/api/stats", timeout=5).json()["total"] == 0
        assert submit.is_alive()
        writer.execute("COMMIT")
        submit.join(timeout=30)
        assert answers and answers[0].status_code == 201, answers
        assert sql(db_path, "SELECT id FROM job") == [(answers[0].json()["id"],)]
    finally:
        writer.close()
        live.stop()
