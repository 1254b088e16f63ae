"""list, show, retry, cancel, purge, stats: what a user checks after submitting."""

from __future__ import annotations

import time

import pytest

from jobrunner.domain.states import Status
from tests.conftest import sql

CONTRACT_KEYS = {
    "id", "name", "kind", "command", "callable", "args", "kwargs", "queue", "priority", "status",
    "attempts", "max_retries", "progress", "progress_message", "created_at", "scheduled_at",
    "started_at", "finished_at", "exit_code", "result", "error", "tags", "metadata",
}  # fmt: skip


def set_status(store, job_id: int, status: Status, finished_ago: float | None = None) -> None:
    """Stand in for the daemon: move a job to a state the CLI acts on."""
    finished = time.time() - finished_ago if finished_ago is not None else None
    sql(store, "UPDATE job SET status=?, finished_at=? WHERE id=?", (status.value, finished, job_id))


def test_list_json_has_the_contract(cli):
    cli.submit("--", "true")
    [job] = cli.json("list")
    assert set(job) >= CONTRACT_KEYS
    assert job["created_at"].endswith("+00:00")


def test_list_filters(cli, store):
    a = cli.submit("--queue", "q1", "--tag", "x", "--", "echo", "a")
    b = cli.submit("--queue", "q2", "--tag", "y", "--", "echo", "b")
    c = cli.submit("--name", "special", "--queue", "q2", "--tag", "x", "--tag", "y", "--", "echo", "c")
    set_status(store, b, Status.DEAD, 0)
    ids = lambda *args: [j["id"] for j in cli.json("list", *args)]  # noqa: E731
    assert ids() == [c, b, a]
    assert ids("--oldest-first") == [a, b, c]
    assert ids("--status", "dead") == [b]
    assert ids("--status", "dead,queued") == [c, b, a]
    assert ids("--queue", "q2") == [c, b]
    assert ids("--tag", "x") == [c, a]
    assert ids("--tag", "x", "--tag", "y") == [c]
    assert ids("--search", "special") == [c]
    assert ids("--limit", "2") == [c, b]


def test_list_human_table_and_footer(cli):
    for _ in range(3):
        cli.submit("--", "echo", "hello")
    result = cli("list", "--limit", "2")
    assert result.exit_code == 0
    assert "STATUS" in result.stdout and "queued" in result.stdout and "echo hello" in result.stdout
    assert "showing 2 of 3 jobs" in result.stderr


def test_list_footer_stops_counting_past_ten_thousand(cli, store):
    from jobrunner.domain.jobspec import build_spec
    from jobrunner.store import repo

    repo.submit_many(store, [build_spec({"command": ["true"]})] * 10_001, time.time())
    result = cli("list", "--limit", "2")
    assert "showing 2 of over 10,000 jobs" in result.stderr
    result = cli("list", "--limit", "2", "--status", "queued", "--search", "nothing like it")
    assert result.exit_code == 0 and "no jobs match" in result.stderr


def test_list_empty_and_bad_status(cli, store):  # `store` creates the database: list never does
    result = cli("list")
    assert result.exit_code == 0 and "no jobs yet" in result.stderr
    bad = cli("list", "--status", "done")
    assert bad.exit_code == 2 and "unknown status 'done'" in bad.stderr


def test_show_human_and_json(cli):
    job_id = cli.submit("--retries", "2", "--", "echo", "hi")
    human = cli.ok("show", str(job_id))
    assert "echo hi" in human and "queued" in human and "history" in human and "submitted" in human
    data = cli.job(job_id)
    assert set(data) >= CONTRACT_KEYS
    assert data["events"][0]["to"] == "queued" and data["events"][0]["message"] == "submitted"


def test_show_unknown_id_exit_2(cli, store):
    result = cli("show", "404")
    assert result.exit_code == 2
    assert result.stderr.strip() == "jobrunner: error: no job with id 404; `jobrunner list` shows the ids"


def test_show_non_integer_id_is_usage_error(cli):
    assert cli("show", "abc").exit_code == 2


def test_cancel_queued_scheduled_waiting(cli, store):
    queued = cli.submit("--", "true")
    scheduled = cli.submit("--in", "1h", "--", "true")
    waiting = cli.submit("--", "true")
    set_status(store, waiting, Status.WAITING)
    out = cli.ok("cancel", str(queued), str(scheduled), str(waiting))
    assert "queued -> cancelled" in out
    for job_id in (queued, scheduled, waiting):
        job = cli.job(job_id)
        assert job["status"] == "cancelled" and job["finished_at"]
        assert job["events"][-1]["to"] == "cancelled"


def test_cancel_is_all_or_nothing(cli, store):
    ok = cli.submit("--", "true")
    done = cli.submit("--", "true")
    set_status(store, done, Status.SUCCEEDED, 0)
    result = cli("cancel", str(ok), str(done))
    assert result.exit_code == 2
    assert f"job {done} already succeeded" in result.stderr
    assert cli.job(ok)["status"] == "queued"
    missing = cli("cancel", str(ok), "999")
    assert missing.exit_code == 2 and "no job with id 999" in missing.stderr
    assert cli.job(ok)["status"] == "queued"


def test_cancel_running_requests_the_daemon_to_stop_it(cli, store):
    job_id = cli.submit("--", "sleep", "100")
    set_status(store, job_id, Status.RUNNING)
    assert "cancel requested" in cli.ok("cancel", str(job_id))
    job = cli.job(job_id)
    assert job["status"] == "running" and job["cancel_requested"] is True


def test_retry_dead_and_cancelled(cli, store):
    dead = cli.submit("--retries", "2", "--", "false")
    sql(store,
        "UPDATE job SET status='dead', attempts=3, error='boom', finished_at=? WHERE id=?",
        (time.time(), dead),
    )
    cancelled = cli.submit("--", "true")
    cli.ok("cancel", str(cancelled))
    out = cli.ok("retry", str(dead), str(cancelled))
    assert "dead -> queued" in out and "cancelled -> queued" in out
    job = cli.job(dead)
    assert job["status"] == "queued" and job["error"] is None and job["finished_at"] is None
    assert job["attempts"] == 3 and job["retries_left"] == 2  # a fresh budget, history kept
    assert [e["to"] for e in job["events"]][-1] == "queued"


def test_retry_refuses_queued_or_succeeded(cli, store):
    queued = cli.submit("--", "true")
    result = cli("retry", str(queued))
    assert result.exit_code == 2 and f"job {queued} is queued" in result.stderr
    done = cli.submit("--", "true")
    set_status(store, done, Status.SUCCEEDED, 0)
    assert "submit a succeeded job again" in cli("retry", str(done)).stderr


def test_purge_older_than(cli, store):
    old_ok = cli.submit("--", "true")
    old_dead = cli.submit("--", "true")
    new_ok = cli.submit("--", "true")
    still_queued = cli.submit("--", "true")
    set_status(store, old_ok, Status.SUCCEEDED, 8 * 86400)
    set_status(store, old_dead, Status.DEAD, 8 * 86400)
    set_status(store, new_ok, Status.SUCCEEDED, 3600)
    assert cli.ok("purge", "--older-than", "7d", "--dry-run").strip() == f"would purge 2 jobs: {old_ok}, {old_dead}"
    assert cli.ok("purge", "--older-than", "7d", "--status", "succeeded").strip() == "purged 1 job"
    remaining = {j["id"] for j in cli.json("list")}
    assert remaining == {old_dead, new_ok, still_queued}
    assert sql(store, "SELECT COUNT(*) FROM event WHERE job_id=?", (old_ok,))[0][0] == 0
    assert cli.json("purge", "--older-than", "1d")["ids"] == [old_dead]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "a week"], "--older-than: 'a week' is not a duration"),
        (["--older-than", "1d", "--status", "queued"], "cannot purge queued jobs"),
    ],
)
def test_purge_bad_input(cli, args, message):
    cli.submit("--", "true")
    result = cli("purge", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert cli.count() == 1


def test_stats(cli, store):
    cli.submit("--queue", "a", "--", "true")
    cli.submit("--queue", "a", "--", "true")
    dead = cli.submit("--queue", "b", "--", "true")
    set_status(store, dead, Status.DEAD, 0)
    data = cli.json("stats")
    assert data["total"] == 3
    assert data["by_status"]["queued"] == 2 and data["by_status"]["dead"] == 1
    assert set(data["by_status"]) == {s.value for s in Status}
    assert data["queues"]["a"]["by_status"]["queued"] == 2 and data["queues"]["b"]["total"] == 1
    human = cli.ok("stats")
    assert "queued" in human and "dead" in human


def test_version_and_help(cli):
    from jobrunner import __version__

    assert cli.ok("--version").strip() == f"jobrunner {__version__}"
    assert "submit" in cli.ok("--help")


# How `list` fits a terminal of any width (and prints whole values when piped) is in
# tests/test_readings.py: it needs a real terminal, which CliRunner is not.
