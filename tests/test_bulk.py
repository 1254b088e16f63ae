"""Bulk actions by filter (issue 18): `retry`, `cancel` and `purge` with --status, --queue, --tag,
--search, --since and --dry-run, and `dlq export` round-tripping through `submit --from-file`.

They stream: a batch per transaction, so 20,000 jobs never sit in the CLI's memory at once (its
peak RSS is measured) and other writers get the lock between batches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc

import pytest

from jobrunner.domain.states import Status
from jobrunner.store import bulk, queries
from jobrunner.store.queries import JobFilter
from tests.conftest import ROOT, sql

NOTE = "x" * 300  # every job carries some text, as real ones do: a job dict is not tiny


def add_jobs(store, count: int, queue: str, status: str = "dead", ago: float = 60.0) -> None:
    """`count` jobs in one statement (both backends): far faster than a submit each."""
    now = time.time()
    finished = now - ago if status in ("dead", "cancelled", "succeeded") else None
    sql(store,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO job (name, kind, command, queue, status, attempts, created_at, run_at, updated_at, "
        "finished_at, error, metadata) SELECT 'bulk', 'shell', '[\"false\"]', ?, ?, 1, ?, ?, ?, ?, "
        "'exit code 1', ? FROM n",
        (count, queue, status, now - ago, now - ago, now - ago, finished, json.dumps({"note": NOTE})),
    )  # fmt: skip


def everything(store) -> list[tuple]:
    return sql(store, "SELECT * FROM job ORDER BY id") + sql(store, "SELECT * FROM event ORDER BY id")


def statuses(store, queue: str) -> dict[str, int]:
    return dict(sql(store, "SELECT status, COUNT(*) FROM job WHERE queue=? GROUP BY status", (queue,)))


def test_retry_by_filter_takes_dead_jobs_of_the_queue_and_says_how_many(cli, store):
    add_jobs(store, 5, "reports")
    add_jobs(store, 2, "other")
    add_jobs(store, 1, "reports", status="cancelled")
    assert cli.ok("retry", "--status", "dead", "--queue", "reports", "--dry-run").strip() == (
        "would retry 5 jobs: 1, 2, 3, 4, 5"
    )
    assert cli.ok("retry", "--queue", "reports").strip() == "retried 5 jobs"  # dead ones unless told
    assert statuses(store, "reports") == {"queued": 5, "cancelled": 1}
    assert statuses(store, "other") == {"dead": 2}
    job = cli.job(1)
    assert job["error"] is None and job["finished_at"] is None and job["retries_left"] == 0
    assert [e["message"] for e in job["events"]] == ["retried by user"]
    assert cli.ok("retry", "--status", "cancelled,dead", "--queue", "reports").strip() == "retried 1 job"


def test_since_takes_only_the_recently_finished(cli, store):
    add_jobs(store, 3, "reports", ago=2 * 3600)
    add_jobs(store, 2, "reports", ago=600)
    data = cli.json("retry", "--status", "dead", "--queue", "reports", "--since", "1h", "--dry-run")
    assert data["count"] == 2 and data["ids"] == [4, 5] and data["dry_run"] is True
    assert cli.ok("retry", "--queue", "reports", "--since", "1h").strip() == "retried 2 jobs"
    assert statuses(store, "reports") == {"dead": 3, "queued": 2}


def test_dry_runs_change_nothing(cli, store):
    add_jobs(store, 30, "images", status="queued")
    add_jobs(store, 30, "reports")
    cli.submit("--queue", "images", "--tag", "thumbs", "--", "true")
    before = everything(store)
    out = cli.ok("cancel", "--queue", "images", "--status", "queued", "--dry-run").strip()
    assert out == "would cancel 31 jobs: " + ", ".join(map(str, range(1, 21))) + " and 11 more"
    assert cli.ok("cancel", "--queue", "images", "--tag", "thumbs", "--dry-run").strip() == "would cancel 1 job: 61"
    assert cli.ok("retry", "--status", "dead", "--dry-run").startswith("would retry 30 jobs: 31, 32")
    assert cli.ok("purge", "--older-than", "0s", "--queue", "reports", "--dry-run").startswith("would purge 30 jobs")
    assert cli.json("purge", "--older-than", "0s", "--dry-run")["would_purge"] == 30
    assert everything(store) == before


def test_cancel_by_filter_stops_running_ones_only_when_named(cli, store):
    add_jobs(store, 4, "images", status="queued")
    add_jobs(store, 2, "images", status="running")
    add_jobs(store, 3, "mail", status="queued")
    assert cli.ok("cancel", "--queue", "images").strip() == "cancelled 4 jobs"
    assert statuses(store, "images") == {"cancelled": 4, "running": 2}
    out = cli.ok("cancel", "--queue", "images", "--status", "running").strip()
    assert out == "cancelled 0 jobs; asked the daemon to stop 2 running"
    assert sql(store, "SELECT COUNT(*) FROM job WHERE cancel_requested AND status='running'")[0][0] == 2
    assert statuses(store, "mail") == {"queued": 3}
    refused = cli("cancel", "--status", "dead")
    assert refused.exit_code == 2 and refused.stderr.strip() == (
        "jobrunner: error: cannot cancel dead jobs: they have finished already"
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["retry"], "give job ids, or a filter"),
        (["retry", "3", "--queue", "q"], "give job ids or the filter options, not both"),
        (["cancel", "3", "--dry-run"], "give job ids or --dry-run, not both"),
        (["retry", "--status", "succeeded"], "cannot retry succeeded jobs: only dead, cancelled or retrying"),
        (["retry", "--status", "done"], "--status: unknown status 'done'"),
        (["retry", "--queue", "no spaces"], "--queue: 'no spaces' is not a queue name"),
        (["cancel", "--since", "soon"], "--since: 'soon' is not a duration"),
        (["purge", "--older-than", "1d", "--status", "queued"], "cannot purge queued jobs"),
    ],
)
def test_filter_mistakes_are_one_line_exit_2_and_change_nothing(cli, store, args, words):
    add_jobs(store, 3, "reports")
    before = everything(store)
    result = cli(*args)
    assert result.exit_code == 2 and result.stderr.startswith("jobrunner: error: ") and words in result.stderr
    assert len(result.stderr.splitlines()) == 1 and everything(store) == before


def test_jobs_with_dependencies_go_one_by_one_and_refusals_are_skipped(cli, store):
    root = cli.submit("--name", "extract", "--", "false")
    child = cli.submit("--after", str(root), "--", "true")
    sql(store, "UPDATE job SET status='dead', finished_at=?, error='exit code 3' WHERE id=?", (time.time(), root))
    cli.ok("cancel", str(child))  # stands in for the cascade: cancelled, the dependency still dead
    sql(store, "UPDATE job SET error=? WHERE id=?", (f"dependency {root} (extract) died: exit code 3", child))
    out = cli("retry", "--status", "cancelled")
    assert out.exit_code == 0 and out.stdout.strip() == "retried 0 jobs; skipped 1"
    assert f"job {child} cannot be retried: its dependency {root} (extract) is dead" in out.stderr
    assert cli.ok("retry", "--status", "dead").strip() == "retried 1 job"
    assert cli.job(root)["status"] == "queued" and cli.job(child)["status"] == "waiting"


def test_purge_by_filter_removes_jobs_history_and_logs(cli, store):
    add_jobs(store, 3, "reports", ago=3 * 86400)
    add_jobs(store, 2, "mail", ago=3 * 86400)
    from tests.conftest import logs_of

    logs = logs_of(store.target)
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "1.log").write_text("old output\n")
    sql(store, "UPDATE job SET log_path=? WHERE id=1", (str(logs / "1.log"),))
    data = cli.json("purge", "--older-than", "2d", "--queue", "reports")
    assert data == {"purged": 3, "would_purge": 0, "ids": [1, 2, 3]}
    assert not (logs / "1.log").exists()
    assert statuses(store, "reports") == {} and statuses(store, "mail") == {"dead": 2}


def test_batches_are_transactions_of_their_own(store, db_path):
    """Between two batches the write lock is free: another writer (a submit, the TUI) goes on."""
    add_jobs(store, 5000, "reports")
    seen: list[int] = []

    def between(result: bulk.BulkResult) -> None:
        assert store.db.transaction_depth() == 0
        sql(db_path, "INSERT INTO queue_state (name, paused, updated_at) VALUES (?, ?, ?)",
            (f"q{len(seen)}", False, time.time()))  # fmt: skip
        seen.append(result.count)

    result = bulk.retry_matching(store, JobFilter(queues=["reports"]), time.time(), batch=1000, progress=between)
    assert result.count == 5000 and seen == [1000, 2000, 3000, 4000, 5000]
    result = bulk.cancel_matching(store, JobFilter(queues=["reports"]), time.time(), batch=2000, progress=between)
    assert result.count == 5000 and seen[5:] == [2000, 4000, 5000]


def test_dlq_export_round_trips_through_submit_from_file(cli, store, tmp_path):
    made = [
        cli.submit("--name", "convert", "--queue", "images", "--tag", "thumbs,png", "--", "convert", "a.png", "a.jpg"),
        cli.submit("--priority", "3", "--retries", "4", "--timeout", "90s", "--backoff", "5s", "--", "./x.sh"),
        cli.submit("--call", "tests.jobfuncs:add", "--arg", "a=1", "--arg", 'b={"x": [1, 2.5, null]}', "--meta",
                   "owner=ann", "--env", "TOKEN=s3cret", "--priority", "critical"),
        cli.submit("--call", "tests.jobfuncs:add", "--queue", "math", "--", "1", "2"),
    ]
    lines = tmp_path / "in.jsonl"
    lines.write_text(json.dumps({"command": "echo hi | wc -c", "retry_on": ["TimeoutError"], "name": "é ünï",
                                 "retry_on_exit_codes": [3, 4], "backoff": {"base": 2, "factor": 3, "max": 60},
                                 "unique_key": "report:2026-11", "cwd": str(tmp_path)}) + "\n")  # fmt: skip
    made += [int(i) for i in cli.ok("submit", "--from-file", str(lines)).split()]
    alive = cli.submit("--", "true")  # not dead: not exported
    for job_id in made:
        sql(store, "UPDATE job SET status='dead', attempts=2, finished_at=?, error='boom', exit_code=1 WHERE id=?",
            (time.time(), job_id))  # fmt: skip
    result = cli("dlq", "export")
    assert result.exit_code == 0 and "exported 5 dead jobs (1 with env values: keep the file private)" in result.stderr
    exported = tmp_path / "dead.jsonl"
    exported.write_text(result.stdout)
    assert len(result.stdout.splitlines()) == 5
    again = [int(i) for i in cli.ok("submit", "--from-file", str(exported)).split()]
    history = {"id", "status", "created_at", "scheduled_at", "started_at", "finished_at", "updated_at", "duration",
               "attempts", "retries_left", "tries_used", "error", "exit_code", "result"}  # fmt: skip
    for old, new in zip(made, again, strict=True):
        before, after = cli.job(old), cli.job(new)
        assert after["status"] == "queued"
        for key in set(before) - history - {"events"}:
            assert after[key] == before[key], (key, before[key], after[key])
    assert alive not in again
    only = cli("dlq", "export", "--queue", "images").stdout.splitlines()
    assert [json.loads(line)["name"] for line in only] == ["convert"]
    assert json.loads(only[0]) == {"name": "convert", "command": ["convert", "a.png", "a.jpg"], "queue": "images",
                                   "tags": ["thumbs", "png"], "cwd": cli.job(made[0])["cwd"]}  # fmt: skip


#: Runs the CLI and reports its peak RSS at exit: VmHWM counts this process's own memory since
#: its exec (getrusage's ru_maxrss would count the pytest process it was forked from too).
_MEASURED_CLI = """
import atexit, sys

def peak():
    with open("/proc/self/status") as status:
        sys.stderr.write("".join(line for line in status if line.startswith("VmHWM:")))

atexit.register(peak)
sys.argv = ["jobrunner", *sys.argv[1:]]
from jobrunner.cli.fast import main
main()
"""


def _peak_rss(db_target: str, *args: str) -> tuple[int, str, int]:
    """Run `jobrunner ARGS` as a process of its own: (exit code, stdout, its peak RSS in bytes)."""
    env = {**os.environ, "JOBRUNNER_DB": db_target, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _MEASURED_CLI, *args], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    peak = next(line for line in done.stderr.splitlines() if line.startswith("VmHWM:"))
    return done.returncode, done.stdout, int(peak.split()[1]) * 1024


def test_retry_then_cancel_of_20000_jobs_keeps_memory_flat(store, db_path):
    count = 20_000
    add_jobs(store, count, "reports")
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    dicts = queries.list_jobs(store, JobFilter([Status.DEAD]), limit=None)
    as_dicts = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(dicts) == count
    del dicts
    code, text, idle = _peak_rss(str(db_path), "retry", "--status", "dead", "--queue", "nothing-here")
    assert code == 0 and text.strip() == "retried 0 jobs", text
    started = time.monotonic()
    code, text, retrying = _peak_rss(str(db_path), "retry", "--status", "dead", "--queue", "reports")
    took = time.monotonic() - started
    assert code == 0 and text.strip() == f"retried {count} jobs", text
    code, text, cancelling = _peak_rss(str(db_path), "cancel", "--queue", "reports", "--status", "queued")
    assert code == 0 and text.strip() == f"cancelled {count} jobs", text
    growth = max(retrying, cancelling) - idle
    print(f"\n20,000 job dicts: {as_dicts / 2**20:.1f} MiB; CLI peak RSS {idle / 2**20:.1f} MiB idle, "
          f"+{(retrying - idle) / 2**20:.1f} MiB retrying, +{(cancelling - idle) / 2**20:.1f} MiB cancelling; "
          f"retry took {took:.1f}s")  # fmt: skip
    assert growth < as_dicts / 5, (growth, as_dicts)
    assert statuses(store, "reports") == {"cancelled": count}
    assert sql(store, "SELECT COUNT(*) FROM event")[0][0] == 2 * count  # retried, then cancelled: each recorded


def test_the_python_api_does_the_same(cli, store):
    from jobrunner import submit_many
    from jobrunner.editing import cancel_matching, export_dead, retry_matching
    from jobrunner.errors import UsageError

    add_jobs(store, 4, "reports")
    add_jobs(store, 3, "images", status="queued")
    preview = retry_matching(status="dead", queue="reports", since="1h", dry_run=True)
    assert preview["count"] == 4 and preview["ids"] == [1, 2, 3, 4] and statuses(store, "reports") == {"dead": 4}
    exported = list(export_dead(queue="reports"))
    assert exported[0] == {"name": "bulk", "command": ["false"], "queue": "reports", "metadata": {"note": NOTE}}
    assert len(submit_many(exported)) == 4
    assert retry_matching(queue=["reports"])["count"] == 4
    assert cancel_matching(queue="images")["count"] == 3
    assert statuses(store, "reports") == {"queued": 8} and statuses(store, "images") == {"cancelled": 3}
    with pytest.raises(UsageError, match="cannot retry queued jobs"):
        retry_matching(status="queued")
    with pytest.raises(UsageError, match="since: 'soon' is not a duration"):
        cancel_matching(since="soon")


def test_a_dead_job_whose_unique_key_is_held_again_is_skipped_not_fatal(cli, store):
    first = cli.submit("--unique-key", "report:2026-11", "--", "false")
    sql(store, "UPDATE job SET status='dead', finished_at=? WHERE id=?", (time.time(), first))
    second = cli.submit("--unique-key", "report:2026-11", "--", "true")  # the key was free again
    plain = cli.submit("--", "false")
    sql(store, "UPDATE job SET status='dead', finished_at=? WHERE id=?", (time.time(), plain))
    out = cli("retry", "--status", "dead")
    assert out.exit_code == 0 and out.stdout.strip() == "retried 1 job; skipped 1"
    assert f"job {first} cannot be retried: job {second} (queued) holds its unique key 'report:2026-11'" in out.stderr
    refused = cli("edit", str(first), "--priority", "high")
    assert refused.exit_code == 0  # an edit alone does not take the key
    from jobrunner.editing import edit_and_retry
    from jobrunner.errors import UsageError

    with pytest.raises(UsageError, match=f"nothing retried: job {first} cannot be retried: job {second}"):
        edit_and_retry(first, priority="low")
    assert cli.job(first)["status"] == "dead" and cli.job(first)["priority"] == 7
