"""Jobs that run after others: waiting, release, failure propagation, retry of a failed dependency."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from jobrunner.domain.failures import Failure, FailureKind
from jobrunner.domain.states import Status
from jobrunner.store import runs
from tests.conftest import ON_POSTGRES, sql, wait_until


def run_to_end(store, job_id: int, ok: bool, failure: Failure | None = None) -> list[runs.Recorded]:
    """Stand in for a daemon: claim this job and record how it ended."""
    sql(store, "UPDATE job SET priority=9 WHERE id=?", (job_id,))
    claims = runs.claim(store, "test-owner", time.time(), 1, 30, "/tmp")
    assert [c.id for c in claims] == [job_id]
    if not ok:
        failure = failure or Failure(FailureKind.PERMANENT, "boom")
    outcome = runs.Outcome(job_id, claims[0].attempt, failure=None if ok else failure)
    return runs.finish(store, "test-owner", [outcome], time.time())


def status(cli, job_id: int) -> str:
    return cli.job(job_id)["status"]


def test_waits_until_all_dependencies_succeed(cli, store):
    a = cli.submit("--", "true")
    b = cli.submit("--", "true")
    merge = cli.submit("--after", str(a), "--after", str(b), "--", "./merge.sh")
    assert status(cli, merge) == "waiting"
    assert "runs after" in cli.job(merge)["events"][0]["message"]
    run_to_end(store, a, ok=True)
    assert status(cli, merge) == "waiting"
    run_to_end(store, b, ok=True)
    assert status(cli, merge) == "queued"
    assert cli.job(merge)["events"][-1]["message"] == "dependencies succeeded"


def test_after_a_succeeded_job_is_queued_at_once(cli, store):
    a = cli.submit("--", "true")
    run_to_end(store, a, ok=True)
    assert status(cli, cli.submit("--after", str(a), "--", "true")) == "queued"


def test_failure_cancels_the_whole_chain(cli, store):
    a = cli.submit("--", "false")
    b = cli.submit("--after", str(a), "--", "true")
    c = cli.submit("--after", str(b), "--", "true")
    other = cli.submit("--", "true")
    run_to_end(store, a, ok=False)
    assert status(cli, a) == "dead"
    reason = f"dependency {a} (false) died: boom"  # the job at the root, however deep
    assert (status(cli, b), cli.job(b)["error"]) == ("cancelled", reason)
    assert (status(cli, c), cli.job(c)["error"]) == ("cancelled", reason)
    assert status(cli, other) == "queued"
    late = cli.submit("--after", str(a), "--", "true")
    assert (status(cli, late), cli.job(late)["error"]) == ("cancelled", reason)


def test_cancel_propagates_and_retry_restores(cli, store):
    a = cli.submit("--", "true")
    b = cli.submit("--after", str(a), "--", "true")
    c = cli.submit("--after", str(b), "--", "true")
    out = cli.ok("cancel", str(a))
    assert f"job {b}: waiting -> cancelled" in out and f"job {c}: waiting -> cancelled" in out
    out = cli.ok("retry", str(a))
    assert f"job {a}: cancelled -> queued" in out
    assert status(cli, b) == "waiting" and status(cli, c) == "waiting"
    run_to_end(store, a, ok=True)
    assert status(cli, b) == "queued" and status(cli, c) == "waiting"


def test_retry_of_a_dead_dependency_puts_dependents_back(cli, store):
    a = cli.submit("--", "false")
    b = cli.submit("--after", str(a), "--", "true")
    run_to_end(store, a, ok=False)
    assert status(cli, b) == "cancelled"
    cli.ok("retry", str(a))
    assert status(cli, b) == "waiting"
    retried_alone = cli("retry", str(b))  # b itself still waits for a: retry keeps it waiting
    assert retried_alone.exit_code == 2


def test_unknown_dependency_is_a_usage_error(cli, store):  # `store`: a database to count in
    result = cli("submit", "--after", "404", "--", "true")
    assert result.exit_code == 2 and "--after: no job with id 404" in result.stderr
    assert cli.count() == 0


def test_bulk_pipeline_with_refs(cli, home, store):
    lines = [
        {"ref": "extract", "command": ["./extract.sh"]},
        {"ref": "transform", "command": ["./transform.sh"], "after": ["extract"]},
        {"command": ["./load.sh"], "after": ["transform", "extract"]},
    ]
    Path("pipe.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    extract, transform, load = (int(x) for x in cli.ok("submit", "--from-file", "pipe.jsonl").split())
    assert [status(cli, i) for i in (extract, transform, load)] == ["queued", "waiting", "waiting"]
    run_to_end(store, extract, ok=True)
    assert [status(cli, i) for i in (transform, load)] == ["queued", "waiting"]
    run_to_end(store, transform, ok=True)
    assert status(cli, load) == "queued"


def test_bulk_bad_ref(cli, home):
    Path("p.jsonl").write_text(json.dumps({"command": ["x"], "after": ["later"]}) + "\n")
    result = cli("submit", "--from-file", "p.jsonl")
    assert result.exit_code == 2 and "p.jsonl:1: after: 'later' is neither a job id" in result.stderr


def test_python_api_after(cli):
    from jobrunner import submit

    a = submit(["true"])
    b = submit(["true"], after=[a])
    assert status(cli, b) == "waiting"


def test_daemon_runs_a_chain_in_order(cli, daemon, tmp_path):
    out = tmp_path / "order"
    daemon.start()
    first = cli.submit("--", "sh", "-c", f"sleep 0.3; echo first >> {out}")
    second = cli.submit("--after", str(first), "--", "sh", "-c", f"echo second >> {out}")
    wait_until(lambda: status(cli, second) == "succeeded", timeout=20)
    assert out.read_text().split() == ["first", "second"]


def test_show_json_lists_links(cli):
    a = cli.submit("--", "true")
    b = cli.submit("--after", str(a), "--", "true")
    assert cli.job(b)["after"] == [a] and cli.job(a)["dependents"] == [b]


def test_delayed_job_runs_when_due_without_polling_delay(cli, daemon):
    daemon.start()
    job_id = cli.submit("--in", "1s", "--", "true")
    assert status(cli, job_id) == "scheduled"
    wait_until(lambda: status(cli, job_id) == "succeeded", timeout=10)
    job = cli.job(job_id)
    from datetime import datetime

    late = datetime.fromisoformat(job["started_at"]) - datetime.fromisoformat(job["scheduled_at"])
    assert 0 <= late.total_seconds() < 0.9  # it slept until its time, not until the 1 s poll


# ------------------------------------------------------------ nothing waits forever (issue 12)
def test_a_restored_dependent_checks_every_dependency(cli, store):
    """D after A and X; cancel A, cancel X, retry A: D stays cancelled (X can never succeed)."""
    a = cli.submit("--name", "extract", "--", "true")
    x = cli.submit("--name", "fetch", "--", "true")
    d = cli.submit("--after", str(a), "--after", str(x), "--", "true")
    cli.ok("cancel", str(a))
    cli.ok("cancel", str(x))
    out = cli.ok("retry", str(a))
    assert f"job {d}" not in out
    run_to_end(store, a, ok=True)
    assert (status(cli, d), cli.job(d)["error"]) == ("cancelled", f"dependency {x} (fetch) was cancelled: cancelled by user")
    assert cli.job(d)["events"][-1]["message"] == (
        f"dependency {a} retried; still cancelled: dependency {x} (fetch) was cancelled: cancelled by user"
    )
    out = cli.ok("retry", str(x))  # the last failed dependency back: now D waits, and runs
    assert f"job {d}: cancelled -> waiting" in out
    run_to_end(store, x, ok=True)
    assert status(cli, d) == "queued"


def test_a_restored_chain_names_the_failure_that_remains(cli, store):
    """B after A and X, C after B and A: retrying A leaves B and C cancelled, both naming X now."""
    a = cli.submit("--name", "extract", "--", "true")
    x = cli.submit("--name", "fetch", "--", "true")
    b = cli.submit("--after", str(a), "--after", str(x), "--", "true")
    c = cli.submit("--after", str(b), "--after", str(a), "--", "true")
    cli.ok("cancel", str(a))
    assert cli.job(c)["error"] == f"dependency {a} (extract) was cancelled: cancelled by user"
    run_to_end(store, x, ok=False, failure=Failure(FailureKind.EXIT, "exit code 3", exit_code=3))
    cli.ok("retry", str(a))
    reason = f"dependency {x} (fetch) died: exit code 3"
    assert [(status(cli, i), cli.job(i)["error"]) for i in (b, c)] == [("cancelled", reason)] * 2
    cli.ok("retry", str(x))
    assert [status(cli, i) for i in (b, c)] == ["waiting", "waiting"]


def test_retry_of_a_dependent_whose_dependency_failed_is_refused(cli, store):
    """E after a cancelled X, then `retry E`: refused in one line naming X, nothing written."""
    x = cli.submit("--name", "extract", "--", "true")
    e = cli.submit("--after", str(x), "--", "true")
    cli.ok("cancel", str(x))
    events = len(cli.job(e)["events"])
    result = cli("retry", str(e))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"jobrunner: error: job {e} cannot be retried: its dependency {x} (extract) is cancelled: retry {x} first"
    )
    assert status(cli, e) == "cancelled" and len(cli.job(e)["events"]) == events
    assert status(cli, x) == "cancelled"
    out = cli.ok("retry", str(x), str(e))  # retried together, E waits for X again
    assert f"job {x}: cancelled -> queued" in out and f"job {e}: cancelled -> waiting" in out
    run_to_end(store, x, ok=True)
    assert status(cli, e) == "queued"


def test_retry_refusal_points_at_the_root_of_the_chain(cli, store):
    w = cli.submit("--name", "extract", "--", "false")
    x = cli.submit("--name", "transform", "--after", str(w), "--", "true")
    e = cli.submit("--after", str(x), "--", "true")
    run_to_end(store, w, ok=False, failure=Failure(FailureKind.EXIT, "exit code 3", exit_code=3))
    result = cli("retry", str(e))
    assert result.exit_code == 2
    assert (f"job {e} cannot be retried: its dependency {x} (transform) is cancelled because dependency "
            f"{w} (extract) is dead: retry {w} first") in result.stderr  # fmt: skip
    result = cli("retry", str(x), str(e))  # X's own dependency is still dead: nothing retried
    assert result.exit_code == 2 and f"retry {w} first" in result.stderr
    assert [status(cli, i) for i in (w, x, e)] == ["dead", "cancelled", "cancelled"]
    cli.ok("retry", str(w))  # the root back: the whole chain waits again
    assert [status(cli, i) for i in (x, e)] == ["waiting", "waiting"]


def test_the_error_names_the_root_failure_however_deep(cli, store):
    root = cli.submit("--name", "extract", "--", "sh", "-c", "exit 3")
    chain = [root]
    for _ in range(5):
        chain.append(cli.submit("--after", str(chain[-1]), "--", "true"))
    recorded = run_to_end(store, root, ok=False, failure=Failure(FailureKind.EXIT, "exit code 3", exit_code=3))
    reason = f"dependency {root} (extract) died: exit code 3"
    assert {cli.job(i)["error"] for i in chain[1:]} == {reason}
    # every dependent cancelled comes back from finish, for the daemon's log line and notification
    assert [(r.job_id, r.status, r.message) for r in recorded[1:]] == [
        (i, Status.CANCELLED, reason) for i in chain[1:]
    ]
    cancelled_root = cli.submit("--name", "fetch", "--", "true")
    after = cli.submit("--after", str(cancelled_root), "--", "true")
    cli.ok("cancel", str(cancelled_root))
    assert cli.job(after)["error"] == f"dependency {cancelled_root} (fetch) was cancelled: cancelled by user"


def test_daemon_logs_and_notifies_dependents_it_cancels(cli, daemon):
    """A job cancelled because its dependency died gets a daemon log line and a notification."""
    from tests.test_notify import Hook

    hook = Hook()
    try:
        Path("jobs.toml").write_text(f'[notify.ops]\ntype = "webhook"\nurl = "{hook.url}"\nevents = ["cancelled"]\n')
        daemon.start("--workers", "1")
        lines = [{"ref": "x", "name": "extract", "command": ["sh", "-c", "exit 3"]},
                 {"name": "load", "command": ["true"], "after": ["x"]}]  # fmt: skip
        Path("pipe.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        root, load = (int(i) for i in cli.ok("submit", "--from-file", "pipe.jsonl").split())  # one transaction
        reason = f"dependency {root} (extract) died: exit code 3"
        wait_until(lambda: hook.received, timeout=20)
        [(headers, job)] = hook.received
        assert (job["id"], job["status"], job["error"]) == (load, "cancelled", reason)
        assert headers.get("X-Jobrunner-Event") == "cancelled"
        wait_until(lambda: f"job {load} cancelled: {reason}" in daemon.output(), timeout=10)
    finally:
        hook.close()


def test_jobs_stranded_waiting_on_ended_dependencies_are_settled(cli, store):
    """On PostgreSQL a `submit --after X` that commits as X ends can leave its job waiting on a
    dependency that has ended: each transaction read before the other committed. Here that
    state is made directly; dependencies.settle_stranded releases the job whose dependencies
    all succeeded and cancels the one whose dependency died, with its own dependents; one
    waiting on a job deleted since (its outcome unknown) keeps waiting."""
    from jobrunner.store import dependencies

    ok, dead, blocker = cli.submit("--", "true"), cli.submit("--", "true"), cli.submit("--", "true")
    run_to_end(store, ok, ok=True)
    run_to_end(store, dead, ok=False)
    released = cli.submit("--after", str(blocker), "--", "true")
    cancelled = cli.submit("--after", str(blocker), "--", "true")
    chained = cli.submit("--after", str(cancelled), "--", "true")
    untouched = cli.submit("--after", str(blocker), "--", "true")
    unknown = cli.submit("--after", str(blocker), "--", "true")
    sql(store, "UPDATE job_dependency SET depends_on = ? WHERE job_id = ?", (ok, released))  # as the race leaves it
    sql(store, "UPDATE job_dependency SET depends_on = ? WHERE job_id = ?", (dead, cancelled))
    sql(store, "UPDATE job_dependency SET depends_on = ? WHERE job_id = ?", (10**6, unknown))  # a deleted job
    with store.write():
        settled = dependencies.settle_stranded(store, time.time())
    assert sorted(settled) == sorted([released, cancelled, chained])
    assert [status(cli, j) for j in (released, cancelled, chained, untouched, unknown)] == [
        "queued", "cancelled", "cancelled", "waiting", "waiting"]
    assert cli.job(released)["events"][-1]["message"] == "dependencies succeeded"
    assert f"dependency {dead}" in cli.job(chained)["error"]
    with store.write():
        assert dependencies.settle_stranded(store, time.time()) == []  # nothing left to settle


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only: there a submit and a dependency's end can "
                    "each read before the other commits (SQLite's write lock orders them)")  # fmt: skip
def test_a_job_submitted_after_one_as_it_ends_still_runs(cli, daemon, db_path, tmp_path):
    """The race, made to happen: `submit --after X` reads X running, then waits (the test holds
    job_dependency locked) while X succeeds and its daemon looks for dependents, finding none
    yet; then the submit commits its job as waiting on X, which has ended. The daemon finds
    the stranded job within its 5 s cadence and releases it; before, it waited for ever."""
    import contextlib
    import os
    import subprocess
    import sys

    import psycopg2

    daemon.start("--workers", "1")
    go = tmp_path / "go"
    running = cli.submit("--", "sh", "-c", f"while [ ! -e {go} ]; do sleep 0.01; done")
    wait_until(lambda: status(cli, running) == "running", timeout=20)
    with contextlib.closing(psycopg2.connect(str(db_path), connect_timeout=5)) as locker:
        locker.cursor().execute("SET lock_timeout = '60s'; LOCK TABLE job_dependency IN EXCLUSIVE MODE")
        submit = subprocess.Popen([sys.executable, "-m", "jobrunner", "submit", "--after", str(running), "--", "true"],
                                  env=os.environ, stdout=subprocess.PIPE, text=True)  # fmt: skip
        blocked = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO job_dependency%%'")  # fmt: skip
        wait_until(lambda: sql(db_path, blocked)[0][0] >= 1, timeout=20)  # it read X running
        go.touch()
        wait_until(lambda: status(cli, running) == "succeeded", timeout=20)  # no dependents seen
        locker.rollback()
    out, _ = submit.communicate(timeout=30)
    assert submit.returncode == 0
    stranded = int(out)
    assert cli.job(stranded)["events"][0]["to"] == "waiting"  # on a job that had succeeded
    wait_until(lambda: status(cli, stranded) == "succeeded", timeout=30)
    assert f"job(s) {stranded} waited on dependencies that had all ended" in daemon.output()
