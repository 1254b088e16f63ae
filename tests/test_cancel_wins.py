"""A cancel is durable: a job whose cancel was requested never starts another attempt, whatever
failure is recorded meanwhile (a lost daemon, a dead worker, a timeout, an exception); it ends
cancelled. The same store contract on SQLite and PostgreSQL, then the daemon killed with -9."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from jobrunner.domain.failures import Failure, FailureKind
from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.states import Status
from jobrunner.store import Store, open_store, queries, repo, runs
from tests.conftest import wait_until

ENDED = "cancelled by user (requested while running; the attempt ended: "

FAILURES = [
    Failure(FailureKind.LOST, "lost: daemon pid 4242 died"),
    Failure(FailureKind.WORKER_DIED, "worker died: killed by signal 9 (SIGKILL)"),
    Failure(FailureKind.TIMEOUT, "timed out after 1s"),
    Failure(FailureKind.EXIT, "exit code 3", exit_code=3),
    Failure(FailureKind.EXCEPTION, "ConnectionError: refused", exception_names=["builtins.ConnectionError"]),
    Failure(FailureKind.INTERRUPTED, "interrupted: daemon stopped"),
    Failure(FailureKind.PERMANENT, "result is not JSON-serialisable"),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The store on a fresh SQLite file, then on a fresh PostgreSQL database."""
    target = str(tmp_path / "jobs.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = open_store(target)
    store.poke_on_commit = False
    yield store
    store.close()


def start(store: Store, now: float, retries: int = 3) -> runs.Claim:
    job_id = repo.submit(store, build_spec({"command": ["sleep", "30"], "retries": retries}), now)
    [claim] = runs.claim(store, "owner", now, 1, 30.0, "/tmp")
    assert claim.id == job_id
    return claim


def no_attempt_can_start(store: Store, now: float) -> bool:
    """Nothing becomes due and nothing can be claimed, however late it gets."""
    return runs.promote_due(store, now + 86400) == 0 and runs.claim(store, "other", now + 86400, 10, 30.0, "/tmp") == []


@pytest.mark.parametrize("failure", FAILURES, ids=[f.kind.value for f in FAILURES])
def test_a_failure_recorded_after_a_cancel_request_ends_cancelled(any_store, failure):
    now = time.time()
    claim = start(any_store, now)
    dependent = repo.submit(any_store, replace(build_spec({"command": ["true"]}), after=[claim.id]), now)
    [asked] = repo.cancel(any_store, [claim.id], now + 1)
    assert (asked.old, asked.new) == (Status.RUNNING, Status.RUNNING)  # the daemon stops it

    recorded = runs.finish(any_store, "owner", [runs.Outcome(claim.id, claim.attempt, failure=failure)], now + 2)

    message = ENDED + failure.message + ")"
    assert [(r.job_id, r.status) for r in recorded] == [(claim.id, Status.CANCELLED), (dependent, Status.CANCELLED)]
    assert recorded[0].message == f"{message}; cancelled dependents {dependent}"
    job = queries.get_job(any_store, claim.id)
    assert (job["status"], job["attempts"], job["error"]) == ("cancelled", 1, message)
    assert job["finished_at"] is not None
    assert [(e["to"], e["message"]) for e in queries.job_events(any_store, claim.id)][-1] == ("cancelled", message)
    assert no_attempt_can_start(any_store, now)
    reason = f"dependency {claim.id} (sleep) was cancelled: {message}"
    assert recorded[1].message == reason and queries.get_job(any_store, dependent)["error"] == reason


def test_recovery_of_an_expired_lease_honours_the_cancel(any_store):
    now = time.time()
    claim = start(any_store, now)
    repo.cancel(any_store, [claim.id], now + 1)
    [record] = runs.recover_expired(any_store, now + 60)  # the lease ran out: its daemon died
    assert record.status is Status.CANCELLED and record.message.startswith(ENDED + "lost: daemon owner died")
    assert queries.get_job(any_store, claim.id)["status"] == "cancelled"
    assert no_attempt_can_start(any_store, now)


def test_a_job_that_succeeds_while_its_cancel_is_requested_stays_succeeded(any_store):
    now = time.time()
    claim = start(any_store, now)
    repo.cancel(any_store, [claim.id], now + 1)
    [record] = runs.finish(any_store, "owner", [runs.Outcome(claim.id, claim.attempt, result=1)], now + 2)
    assert record.status is Status.SUCCEEDED  # it finished: there was nothing left to cancel
    assert queries.get_job(any_store, claim.id)["status"] == "succeeded"


def test_a_cancel_between_attempts_is_final_at_once(any_store):
    now = time.time()
    claim = start(any_store, now)
    failure = Failure(FailureKind.EXIT, "exit code 1", exit_code=1)
    [record] = runs.finish(any_store, "owner", [runs.Outcome(claim.id, claim.attempt, failure=failure)], now + 1)
    assert record.status is Status.RETRYING
    later = repo.submit(any_store, build_spec({"command": ["true"]}), now + 3600)
    any_store.execute(f"UPDATE job SET status='scheduled', run_at={any_store.backend.param} WHERE id={any_store.backend.param}",
                      (now + 3600, later))  # fmt: skip
    outcomes = repo.cancel(any_store, [claim.id, later], now + 2)
    assert [(o.job_id, o.old, o.new) for o in outcomes] == [
        (claim.id, Status.RETRYING, Status.CANCELLED), (later, Status.SCHEDULED, Status.CANCELLED),
    ]  # fmt: skip
    assert no_attempt_can_start(any_store, now)


def test_a_cancel_while_the_daemon_is_dead_wins_after_its_restart(cli, daemon, tmp_path):
    """Start a job, kill -9 its daemon, cancel, start a daemon: cancelled, attempt 2 never starts."""
    starts = tmp_path / "starts"
    daemon.start("--workers", "1")
    job_id = cli.submit("--retries", "3", "--", "sh", "-c", f"echo $JOBRUNNER_ATTEMPT $$ >> {starts}; exec sleep 30")
    try:
        wait_until(lambda: cli.job(job_id)["status"] == "running" and starts.exists(), timeout=20)
        daemon.kill(signal.SIGKILL)
        assert "cancel requested" in cli.ok("cancel", str(job_id))
        daemon.start()
        wait_until(lambda: cli.job(job_id)["status"] == "cancelled", timeout=30)
        job = cli.job(job_id)
        assert job["attempts"] == 1 and job["error"].startswith(ENDED + "lost: ")
        assert [line.split()[0] for line in starts.read_text().splitlines()] == ["1"]
        assert not any("attempt 2" in event["message"] for event in job["events"])
        assert cli.count(status="running") == 0 and cli.count(status="queued") == 0
    finally:  # the first attempt's sleep, whoever still runs it
        for line in starts.read_text().splitlines() if starts.exists() else []:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(line.split()[1]), signal.SIGKILL)


def test_a_job_given_back_unstarted_after_a_cancel_request_ends_cancelled(any_store):
    """A job sent ahead that its worker gives back (never started) while a cancel is asked
    ends cancelled, not queued again."""
    now = time.time()
    claim = start(any_store, now)
    repo.cancel(any_store, [claim.id], now + 1)
    assert runs.release(any_store, "owner", [claim], now + 2) == 1
    job = queries.get_job(any_store, claim.id)
    assert job["status"] == "cancelled" and job["attempts"] == 0 and not job["cancel_requested"]
    assert no_attempt_can_start(any_store, now + 3)
