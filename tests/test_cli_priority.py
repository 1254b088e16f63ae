"""`jobrunner priority ID... PRIORITY` and repo.set_priority: what a user would check."""

from __future__ import annotations

import time

import pytest

from jobrunner.errors import NotFoundError, UsageError
from jobrunner.store import repo
from tests.conftest import sql


def priority_events(cli, job_id: int) -> list[str]:
    return [e["message"] for e in cli.job(job_id)["events"] if e["message"].startswith("priority")]


def test_priority_changes_queued_jobs_and_records_an_event(cli):
    first = cli.submit("--", "true")
    second = cli.submit("--priority", "low", "--", "true")
    out = cli.ok("priority", str(first), str(second), "high")
    assert out.splitlines() == [f"job {first}: priority normal → high", f"job {second}: priority low → high"]
    assert cli.job(first)["priority_name"] == "high" and cli.job(second)["priority"] == 7
    assert priority_events(cli, first) == ["priority normal → high"]
    # Setting the same priority again changes nothing and writes no event.
    assert cli.ok("priority", str(first), "7").strip() == f"job {first}: priority already high"
    assert priority_events(cli, first) == ["priority normal → high"]
    data = cli.json("priority", str(first), "3")
    assert data == [{"id": first, "status": "queued", "message": "priority high → 3"}]


def test_priority_decides_which_job_is_listed_first_when_sorted(cli, store):
    ids = [cli.submit("--", "true") for _ in range(3)]
    cli.ok("priority", str(ids[0]), "critical")
    from jobrunner.store import queries

    assert [j["id"] for j in queries.list_jobs(store, order_by="-priority")] == [ids[0], ids[2], ids[1]]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["1", "urgent"], "'urgent' is not a priority"),
        (["1", "12"], "out of range"),
        (["high"], "give one or more job ids"),
        (["x1", "high"], "'x1' is not a job id"),
        (["999", "high"], "no job with id 999"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(cli, args, words):
    job_id = cli.submit("--", "true")
    args = [str(job_id) if a == "1" else a for a in args]
    result = cli("priority", *args)
    assert result.exit_code == 2
    assert words in result.stderr and "Traceback" not in result.stderr
    assert cli.job(job_id)["priority"] == 5


def test_running_or_finished_jobs_are_refused_all_or_nothing(cli, store):
    waiting = cli.submit("--", "true")
    running = cli.submit("--", "true")
    done = cli.submit("--", "true")
    sql(store, "UPDATE job SET status='running', attempts=1 WHERE id=?", (running,))
    sql(store, "UPDATE job SET status='succeeded', attempts=1 WHERE id=?", (done,))
    result = cli("priority", str(waiting), str(running), str(done), "high")
    assert result.exit_code == 2
    assert f"job {running} is running; job {done} is succeeded" in result.stderr
    assert cli.job(waiting)["priority"] == 5  # one transaction: nothing changed


def test_set_priority_api_checks_input(store):
    with pytest.raises(UsageError, match="at least one"):
        repo.set_priority(store, [], "high", time.time())
    with pytest.raises(NotFoundError):
        repo.set_priority(store, [42], "high", time.time())
