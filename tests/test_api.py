"""The Python API: `submit` and `@task(...).submit(...)` store jobs the CLI can see."""

from __future__ import annotations

import pytest

import jobrunner
from jobrunner import submit, task
from jobrunner.errors import UsageError


@task(retries=3, timeout="5m", queue="emails", priority="high")
def send_email(to: str, subject: str = "hi") -> str:
    return f"sent {subject} to {to}"


def test_task_decorator_submits_by_import_path(cli):
    job_id = send_email.submit("a@example.com", subject="report")
    job = cli.job(job_id)
    assert job["callable"] == "tests.test_api:send_email"
    assert job["args"] == ["a@example.com"] and job["kwargs"] == {"subject": "report"}
    assert (job["max_retries"], job["timeout"], job["queue"], job["priority"]) == (3, 300, "emails", 7)


def test_task_is_still_callable():
    assert send_email("b") == "sent hi to b"


def test_with_options(cli):
    job = cli.job(send_email.with_options(priority="low").submit("c"))
    assert job["priority"] == 2 and job["max_retries"] == 3


def test_submit_forms(cli):
    assert cli.job(submit(["echo", "hi"]))["command"] == ["echo", "hi"]
    assert cli.job(submit("echo hi | wc -l"))["command"] == ["/bin/sh", "-c", "echo hi | wc -l"]
    assert cli.job(submit("tests.jobfuncs:add", args=[1], kwargs={"b": 2}))["kwargs"] == {"b": 2}
    assert cli.job(submit(send_email, args=["x"]))["callable"] == "tests.test_api:send_email"


def test_submit_rejects_unimportable_and_unserialisable(cli, db_path):
    with pytest.raises(UsageError, match="importable module"):
        submit(lambda: None)
    with pytest.raises(UsageError, match="JSON-serialisable"):
        submit("a:b", args=[object()])
    with pytest.raises(UsageError, match="priority"):
        submit(["true"], priority="urgent")
    assert not db_path.exists()  # refused before the database is opened


def test_version_is_exported():
    assert jobrunner.__version__


def test_submit_follows_the_environment_between_calls(home, tmp_path, monkeypatch):
    """The API caches which database to use; a changed $JOBRUNNER_DB or $HOME is seen at once."""
    import sqlite3

    first, second = tmp_path / "first.db", tmp_path / "second.db"
    monkeypatch.setenv("JOBRUNNER_DB", str(first))
    submit(["true"])
    monkeypatch.setenv("JOBRUNNER_DB", str(second))
    submit(["true"])
    submit(["true"])
    monkeypatch.delenv("JOBRUNNER_DB")
    submit(["true"])
    default = home / ".local" / "state" / "jobrunner" / "jobs.db"
    for path, count in ((first, 1), (second, 2), (default, 1)):
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM job").fetchone()[0] == count, path
