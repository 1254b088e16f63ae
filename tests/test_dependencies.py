"""Jobs that run after others: waiting, release, failure propagation, retry of a failed dependency."""

from __future__ import annotations

import json
import time
from pathlib import Path

from jobrunner.domain.failures import Failure, FailureKind
from jobrunner.store import runs
from tests.conftest import wait_until


def run_to_end(store, job_id: int, ok: bool) -> None:
    """Stand in for a daemon: claim this job and record how it ended."""
    store.execute("UPDATE job SET priority=9 WHERE id=?", (job_id,))
    claims = runs.claim(store, "test-owner", time.time(), 1, 30, "/tmp")
    assert [c.id for c in claims] == [job_id]
    failure = None if ok else Failure(FailureKind.PERMANENT, "boom")
    runs.finish(store, "test-owner", [runs.Outcome(job_id, claims[0].attempt, failure=failure)], time.time())


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
    assert (status(cli, b), cli.job(b)["error"]) == ("cancelled", f"dependency {a} failed")
    assert (status(cli, c), cli.job(c)["error"]) == ("cancelled", f"dependency {b} failed")
    assert status(cli, other) == "queued"
    late = cli.submit("--after", str(a), "--", "true")
    assert status(cli, late) == "cancelled"


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


def test_unknown_dependency_is_a_usage_error(cli):
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
