"""Retention runs as often as `retention.every` says, and never deletes a log file that a
process still has open: the job goes, its log stays until nothing holds it, then goes too."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobrunner.config import log_dir_for, parse_config
from jobrunner.config_checks import RETENTION_EVERY
from jobrunner.daemon.housekeeping import Housekeeping
from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.states import Status
from jobrunner.errors import ConfigError
from jobrunner.openfiles import held_open
from jobrunner.store import repo
from jobrunner.store.retention import apply_retention, delete_kept, orphan_logs, retention_from_config
from jobrunner.trust import ensure_log_dir
from tests.conftest import run_jobrunner, sql, wait_until

DAY = 86400.0


def old_finished_job(store, log_dir: Path, now: float) -> tuple[int, Path]:
    """A job that succeeded 8 days ago, with a log file in `log_dir`."""
    [job_id] = repo.submit_many(store, [build_spec({"command": ["true"]})], now)
    ensure_log_dir(log_dir)
    log = log_dir / f"{job_id}.log"
    log.write_text(f"output of {job_id}\n")
    with store.write():
        sql(store, "UPDATE job SET status='succeeded', finished_at=?, log_path=? WHERE id=?",
                      (now - 8 * DAY, str(log), job_id))  # fmt: skip
    return job_id, log


def job_exists(store, job_id: int) -> bool:
    return sql(store, "SELECT COUNT(*) FROM job WHERE id=?", (job_id,))[0][0] == 1


def hold_open(path: Path) -> subprocess.Popen:
    """Another process (a job's detached child, say) with `path` open for appending."""
    holder = subprocess.Popen(["sh", "-c", 'exec 3>>"$1"; exec sleep 600', "sh", str(path)],
                              start_new_session=True)  # fmt: skip
    wait_until(lambda: path in held_open([path]), timeout=10)
    return holder


def end(holder: subprocess.Popen) -> None:
    holder.kill()
    holder.wait(timeout=10)


# ---------------------------------------------------------------- the cadence, in jobs.toml


def test_every_is_read_from_the_retention_table():
    policy = retention_from_config(parse_config({"retention": {"succeeded": "7d", "every": "10s"}}))
    assert policy == {Status.SUCCEEDED: 7 * DAY}
    assert policy.every == 10.0
    assert retention_from_config(parse_config({})).every == RETENTION_EVERY == 60.0
    assert retention_from_config(parse_config({"retention": {"dead": "1d"}})).every == 60.0


@pytest.mark.parametrize(
    ("every", "message"),
    [
        ("0s", "retention.every: must be at least 1s"),
        ("0.5s", "retention.every: must be at least 1s"),
        ("often", "retention.every: 'often' is not a duration"),
        (True, "retention.every:"),
    ],
)
def test_a_bad_every_is_one_line_naming_the_key(every, message):
    with pytest.raises(ConfigError) as info:
        parse_config({"retention": {"succeeded": "7d", "every": every}}, Path("jobs.toml"))
    assert str(info.value).startswith(f"jobs.toml: {message}")
    assert "\n" not in str(info.value)


def test_the_daemon_refuses_a_bad_every_in_one_line(db_path):
    Path("jobs.toml").write_text('retention = { succeeded = "7d", every = "0s" }\n')
    result = run_jobrunner("daemon", "--workers", "1", timeout=30)
    assert result.returncode == 2
    assert result.stderr.endswith(
        "jobs.toml: retention.every: must be at least 1s (how often the daemon purges)\n"
    )
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("jobrunner: error: ")


def test_housekeeping_runs_retention_at_the_configured_cadence(store):
    now = time.time()
    policy = retention_from_config(parse_config({"retention": {"succeeded": "1h", "every": "5s"}}))
    keeper = Housekeeping(store, policy)
    keeper.tick(now)
    assert keeper.next_at() == now + 5
    keeper.replace(retention_from_config(parse_config({"retention": {"succeeded": "1h", "every": "2m"}})))
    keeper.tick(now + 1)  # a reload runs retention now, and then every two minutes
    assert keeper.next_purge == now + 1 + 120
    keeper.replace(retention_from_config(parse_config({"retention": {"succeeded": "1h"}})))
    keeper.tick(now + 2)
    assert keeper.next_purge == now + 2 + 60  # `every` left out: back to a minute


def test_a_daemon_purges_at_the_configured_cadence(cli, daemon, store):
    Path("jobs.toml").write_text('retention = { succeeded = "1s", every = "1s" }\n')
    daemon.start("--workers", "1")
    job_id = cli.submit("--", "true")
    wait_until(lambda: not job_exists(store, job_id), timeout=20)  # not a minute later


# ---------------------------------------------------------------- logs still open


def test_a_log_still_open_is_kept_and_deleted_once_closed(store, tmp_path):
    now = time.time()
    held_id, held_log = old_finished_job(store, tmp_path / "logs", now)
    free_id, free_log = old_finished_job(store, tmp_path / "logs", now)
    holder = hold_open(held_log)
    try:
        kept: list[Path] = []
        assert sorted(apply_retention(store, {"succeeded": 7 * DAY}, now, kept=kept)) == [held_id, free_id]
        assert not job_exists(store, held_id) and not job_exists(store, free_id)
        assert not free_log.exists()
        marked = held_log.with_name(held_log.name + ".purged")  # marked as a purged job's, kept
        assert marked.exists() and not held_log.exists() and kept == [marked]
        assert delete_kept(kept) == [marked]  # a later pass: still open, still kept
        assert marked.exists()
    finally:
        end(holder)
    assert delete_kept(kept) == []
    assert not marked.exists()


def test_jobrunner_purge_keeps_a_log_still_open(cli, store, db_path):
    now = time.time()
    job_id, log = old_finished_job(store, Path(log_dir_for(str(db_path))), now)
    holder = hold_open(log)
    try:
        assert cli.json("purge", "--older-than", "7d")["ids"] == [job_id]
        marked = log.with_name(log.name + ".purged")
        assert marked.exists()
        assert orphan_logs(store) == [marked]  # the daemon finds it, and deletes it once closed
    finally:
        end(holder)


def test_housekeeping_finds_logs_of_purged_jobs_and_deletes_them_once_closed(store, db_path):
    now = time.time()
    log_dir = Path(log_dir_for(str(db_path)))
    live_id, live_log = old_finished_job(store, log_dir, now)
    with store.write():  # a young job: retention keeps it, and its log
        sql(store, "UPDATE job SET finished_at=? WHERE id=?", (now, live_id))
    gone_log, open_log = log_dir / "991.log.purged", log_dir / "992.log.purged"  # kept by an earlier purge
    for path in (gone_log, open_log):
        path.write_text("left behind\n")
    (log_dir / ".spare-123.log").write_text("")  # a worker's spare: not a job's log
    (log_dir / "993.log").write_text("")  # not in this database: another one's sharing jobs.logs/
    holder = hold_open(open_log)
    try:
        keeper = Housekeeping(store, {Status.SUCCEEDED: 7 * DAY}, every=60)
        assert keeper.tick(now) == []
        assert not gone_log.exists() and open_log.exists() and live_log.exists()
        assert keeper.kept == [open_log]
        keeper.tick(now + 60)
        assert open_log.exists()
    finally:
        end(holder)
    keeper.tick(now + 120)
    assert not open_log.exists() and keeper.kept == []
    assert sorted(p.name for p in log_dir.iterdir()) == [".spare-123.log", live_log.name, "993.log"]


def test_a_daemon_keeps_the_log_a_process_still_writes_to(cli, daemon, store, tmp_path):
    """The real case: a job's log is still open in another process when its job is purged."""
    Path("jobs.toml").write_text('retention = { succeeded = "1s", every = "1s" }\n')
    go = tmp_path / "go"
    daemon.start("--workers", "1")
    job_id = cli.submit("--", "sh", "-c", f'echo started; while [ ! -e "{go}" ]; do sleep 0.02; done')
    log = Path(wait_until(lambda: cli.job(job_id).get("log_path"), timeout=20))
    wait_until(lambda: b"started" in log.read_bytes(), timeout=20)
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time\nlog = open(sys.argv[1], 'a')\n"
                               "while True:\n    log.write('still here\\n'); log.flush(); time.sleep(0.05)\n",
                               str(log)], start_new_session=True)  # fmt: skip
    try:
        wait_until(lambda: log in held_open([log]), timeout=10)
        go.touch()
        wait_until(lambda: not job_exists(store, job_id), timeout=30)
        marked = log.with_name(log.name + ".purged")
        wait_until(lambda: "kept 1 log file(s) a process still has open" in daemon.output(), timeout=10)
        assert marked.exists()
        size = marked.stat().st_size
        wait_until(lambda: marked.stat().st_size > size, timeout=10)  # written on, and kept over passes
    finally:
        end(writer)
    wait_until(lambda: not marked.exists(), timeout=30)
