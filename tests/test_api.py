"""The Python API: `submit` and `@task(...).submit(...)` store jobs the CLI can see."""

from __future__ import annotations

import pytest

import jobrunner
from jobrunner import submit, task
from jobrunner.errors import UsageError
from tests.conftest import database_exists, sql


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
    assert not database_exists(db_path)  # refused before the database is opened


def test_version_is_exported():
    assert jobrunner.__version__


def test_submit_follows_the_environment_between_calls(home, another_db, monkeypatch):
    """The API caches which database to use; a changed $JOBRUNNER_DB or $HOME is seen at once."""
    first, second = another_db("first"), another_db("second")
    monkeypatch.setenv("JOBRUNNER_DB", first)
    submit(["true"])
    monkeypatch.setenv("JOBRUNNER_DB", second)
    submit(["true"])
    submit(["true"])
    monkeypatch.delenv("JOBRUNNER_DB")
    submit(["true"])  # the default: a SQLite file in the state dir, whatever the backend
    default = home / ".local" / "state" / "jobrunner" / "jobs.db"
    for target, count in ((first, 1), (second, 2), (default, 1)):
        assert sql(target, "SELECT COUNT(*) FROM job") == [(count,)], target
