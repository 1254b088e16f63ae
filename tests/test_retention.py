"""Retention purges exactly the old finished jobs, their log files with them, a batch at a time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobrunner.config import load_config, log_dir_for, parse_config
from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.states import Status
from jobrunner.errors import ConfigError
from jobrunner.store import repo
from jobrunner.store.retention import (
    apply_retention,
    checkpoint,
    parse_retention,
    retention_from_config,
    wal_size,
)
from jobrunner.trust import ensure_log_dir
from tests.conftest import sql

DAY = 86400.0
POLICY = {Status.SUCCEEDED: 7 * DAY, Status.DEAD: 30 * DAY, Status.CANCELLED: 7 * DAY}
ROOT = Path(__file__).resolve().parent.parent


def make_jobs(store, count: int, now: float) -> list[int]:
    return repo.submit_many(store, [build_spec({"command": ["true"]})] * count, now)


def finish(store, job_id: int, status: Status, finished_at: float, log_dir: Path | None = None) -> Path | None:
    """Stand in for the daemon: a finished job with a log file."""
    log = None
    if log_dir is not None:
        ensure_log_dir(log_dir)
        log = log_dir / f"{job_id}.log"
        log.write_text(f"output of {job_id}\n")
    with store.write():
        sql(store,
            "UPDATE job SET status=?, finished_at=?, log_path=? WHERE id=?",
            (status.value, finished_at, str(log) if log else None, job_id),
        )
    return log


def test_retention_purges_exactly_the_old_finished_jobs_and_their_logs(store, tmp_path):
    now = time.time()
    logs = tmp_path / "logs"
    ids = make_jobs(store, 8, now)
    cases = {
        ids[0]: (Status.SUCCEEDED, 8 * DAY, False),
        ids[1]: (Status.SUCCEEDED, 6 * DAY, True),
        ids[2]: (Status.DEAD, 8 * DAY, True),  # dead jobs are kept for 30 days
        ids[3]: (Status.DEAD, 31 * DAY, False),
        ids[4]: (Status.CANCELLED, 7 * DAY + 60, False),
        ids[5]: (Status.CANCELLED, 1 * DAY, True),
    }
    files = {i: finish(store, i, status, now - age, logs) for i, (status, age, _) in cases.items()}
    queued_log = logs / f"{ids[6]}.log"
    queued_log.write_text("a queued job's old log\n")  # ids[6] and ids[7] stay queued

    removed = apply_retention(store, POLICY, now)

    assert sorted(removed) == sorted(i for i, (_, _, keep) in cases.items() if not keep)
    left = {row[0] for row in sql(store, "SELECT id FROM job")}
    assert left == {i for i, (_, _, keep) in cases.items() if keep} | {ids[6], ids[7]}
    for job_id, (_, _, keep) in cases.items():
        assert files[job_id].exists() == keep, job_id
    assert queued_log.exists()
    assert sql(store, "SELECT COUNT(*) FROM event WHERE job_id IN (?, ?)", (ids[0], ids[3]))[0][0] == 0
    assert apply_retention(store, POLICY, now) == []


def test_retention_works_in_batches_oldest_first(store, tmp_path):
    now = time.time()
    ids = make_jobs(store, 25, now)
    for n, job_id in enumerate(ids):
        finish(store, job_id, Status.SUCCEEDED, now - 10 * DAY - (100 - n), tmp_path / "logs")

    first = apply_retention(store, {"succeeded": 7 * DAY}, now, batch=10)
    assert first == ids[:10]
    assert apply_retention(store, {"succeeded": 7 * DAY}, now, batch=10) == ids[10:20]
    assert apply_retention(store, {"succeeded": 7 * DAY}, now, batch=10) == ids[20:]
    assert apply_retention(store, {"succeeded": 7 * DAY}, now, batch=10) == []
    assert not list((tmp_path / "logs").iterdir())


def test_a_batch_of_equal_finish_times_still_makes_progress(store):
    now = time.time()
    ids = make_jobs(store, 12, now)
    for job_id in ids:
        finish(store, job_id, Status.DEAD, now - 40 * DAY)
    assert sorted(apply_retention(store, POLICY, now, batch=5)) == ids


def test_a_job_without_a_recorded_log_path_loses_its_log_in_the_log_dir(store, db_path):
    now = time.time()
    [job_id] = make_jobs(store, 1, now)
    finish(store, job_id, Status.SUCCEEDED, now - 8 * DAY)
    log_dir = Path(log_dir_for(str(db_path)))
    ensure_log_dir(log_dir)
    (log_dir / f"{job_id}.log").write_text("x")
    (log_dir / "notes.txt").write_text("not a job's log")
    assert apply_retention(store, POLICY, now) == [job_id]
    assert [p.name for p in log_dir.iterdir()] == ["notes.txt"]


def test_jobrunner_purge_deletes_log_files_too(cli, store, tmp_path):
    now = time.time()
    old, young = cli.submit("--", "true"), cli.submit("--", "true")
    old_log = finish(store, old, Status.SUCCEEDED, now - 8 * DAY, tmp_path / "logs")
    young_log = finish(store, young, Status.SUCCEEDED, now - 3600, tmp_path / "logs")
    assert cli.ok("purge", "--older-than", "7d", "--dry-run").strip() == f"would purge 1 job: {old}"
    assert old_log.exists()
    assert cli.json("purge", "--older-than", "7d")["ids"] == [old]
    assert not old_log.exists() and young_log.exists()


@pytest.mark.sqlite_only(reason="SQLite's WAL checkpoint")
def test_checkpoint_truncates_the_wal(store, db_path):
    make_jobs(store, 200, time.time())
    assert wal_size(store) > 0
    busy, _, _ = checkpoint(store)
    assert busy == 0
    assert wal_size(store) == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"running": "7d"}, "retention.running: 'running' is not a finished status"),
        ({"sucessful": "7d"}, "retention.sucessful"),
        ({"dead": "a month"}, "retention.dead: 'a month' is not a duration"),
        ({"dead": "0s"}, "retention.dead: must be longer than 0s"),
        ("7d", "retention: must be a table"),
    ],
)
def test_bad_retention_names_the_key(value, message):
    with pytest.raises(ConfigError) as info:
        parse_retention(value, "jobs.toml")
    assert str(info.value).startswith("jobs.toml: retention")
    assert message in str(info.value)


def test_retention_from_config():
    config = parse_config({"retention": {"succeeded": "7d", "dead": "30d", "cancelled": 3600}})
    assert retention_from_config(config) == {
        Status.SUCCEEDED: 7 * DAY, Status.DEAD: 30 * DAY, Status.CANCELLED: 3600.0,
    }  # fmt: skip
    assert retention_from_config(parse_config({})) == {}


def test_example_config_retention_is_valid():
    retention_from_config(load_config(ROOT / "jobs.example.toml"))


def test_housekeeping_drains_a_backlog_in_steps_then_waits(store):
    from jobrunner.daemon.housekeeping import Housekeeping

    now = time.time()
    ids = make_jobs(store, 7, now)
    for n, job_id in enumerate(ids):
        finish(store, job_id, Status.SUCCEEDED, now - 8 * DAY + n)
    keeper = Housekeeping(store, POLICY, every=60, backlog_every=1, batch=3)
    assert keeper.tick(now) == ids[:3]
    assert keeper.next_at() == now + 1  # a full batch: come back soon
    assert keeper.tick(now + 0.5) == []  # not due yet
    assert keeper.tick(now + 1) == ids[3:6]
    assert keeper.tick(now + 2) == ids[6:]
    assert keeper.next_purge == now + 2 + 60
    assert keeper.next_checkpoint <= now + 1 + 60  # a backlog brings the next checkpoint closer


def test_housekeeping_without_a_policy_only_checkpoints(store):
    from jobrunner.daemon.housekeeping import Housekeeping

    keeper = Housekeeping(store, {}, checkpoint_every=300)
    make_jobs(store, 50, time.time())
    assert keeper.tick(1000.0) == []
    assert keeper.next_at() == 1300.0
