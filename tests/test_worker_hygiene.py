"""One Python job never breaks the next on the same worker, and its print is live in its log."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, wait_until


def _finished(cli, *ids: int) -> bool:
    return all(cli.job(i)["status"] in ("succeeded", "dead", "cancelled") for i in ids)


def _breaker_then_printer(cli, daemon, breaker: str) -> tuple[int, int]:
    """Run `breaker`, then a job that prints three lines, on the same (only) worker."""
    first = cli.submit("--call", f"tests.jobfuncs:{breaker}")
    second = cli.submit("--call", "tests.jobfuncs:print_lines", "--arg", "count=3")
    daemon.start("--workers", "1")
    wait_until(lambda: _finished(cli, first, second), timeout=20)
    return first, second


def test_a_job_that_replaces_sys_stdout_leaves_the_next_jobs_output_alone(cli, daemon):
    first, second = _breaker_then_printer(cli, daemon, "replace_stdout")
    assert cli.job(first)["status"] == "succeeded"
    assert cli.job(second)["status"] == "succeeded"
    assert cli.ok("logs", str(second)).endswith("line 0\nline 1\nline 2\n")


def test_a_job_that_closes_sys_stdout_and_returns_succeeds(cli, daemon):
    first, second = _breaker_then_printer(cli, daemon, "close_std_streams")
    job = cli.job(first)
    assert (job["status"], job["result"]) == ("succeeded", "closed"), job["error"]
    log = cli.ok("logs", str(first))
    assert "before closing\n" in log and "Traceback" not in log
    assert cli.job(second)["status"] == "succeeded"
    assert cli.ok("logs", str(second)).endswith("line 0\nline 1\nline 2\n")


def test_a_job_that_rewraps_sys_stdouts_buffer_leaves_the_next_jobs_output_alone(cli, daemon):
    first, second = _breaker_then_printer(cli, daemon, "rewrap_stdout")
    assert cli.job(first)["status"] == "succeeded"
    assert cli.ok("logs", str(first)).endswith("rewrapped\n")
    assert cli.job(second)["status"] == "succeeded"
    assert cli.ok("logs", str(second)).endswith("line 0\nline 1\nline 2\n")


def test_a_logging_handler_outlives_a_job_that_closes_sys_stderr(cli, daemon):
    """One job sets up logging to sys.stderr, the next closes sys.stderr: the third still logs."""
    ids = [cli.submit("--call", "tests.jobfuncs:log_to_stderr", "--arg", "message=one"),
           cli.submit("--call", "tests.jobfuncs:close_std_streams"),
           cli.submit("--call", "tests.jobfuncs:log_to_stderr", "--arg", "message=three")]  # fmt: skip
    daemon.start("--workers", "1")
    wait_until(lambda: _finished(cli, *ids), timeout=20)
    assert [cli.job(i)["status"] for i in ids] == ["succeeded"] * 3
    log = cli.ok("logs", str(ids[2]))
    assert log.endswith("three\n") and "Logging error" not in log


def test_a_job_that_closes_descriptors_one_and_two_fails_alone(cli, daemon):
    first, second = _breaker_then_printer(cli, daemon, "close_descriptors_then_fail")
    job = cli.job(first)
    assert (job["status"], job["error"]) == ("dead", "RuntimeError: no descriptors left")
    assert "Traceback" in cli.ok("logs", str(first))
    assert cli.job(second)["status"] == "succeeded"
    assert cli.ok("logs", str(second)).endswith("line 0\nline 1\nline 2\n")


def test_print_is_live_in_the_log_without_pythonunbuffered(cli, daemon, tmp_path, monkeypatch):
    """A daemon started without PYTHONUNBUFFERED: a job's first line is in its log while it runs."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    daemon.start("--workers", "1")
    marker = tmp_path / "go-on"
    job_id = cli.submit("--call", "tests.jobfuncs:print_until", "--arg", f"marker={marker}")
    wait_until(lambda: "first line\n" in cli("logs", str(job_id)).stdout, timeout=20)
    assert cli.job(job_id)["status"] == "running"
    marker.touch()
    wait_until(lambda: _finished(cli, job_id), timeout=20)
    assert cli.job(job_id)["status"] == "succeeded"
    assert cli.ok("logs", str(job_id)).endswith("first line\nlast line\n")


_RUN_MANY = """
import os, sys
from jobrunner.daemon import worker

class Pipe:
    def send(self, message):
        pass

def rss_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

logs = worker.Logs(sys.argv[1])
def run(first, count):
    for job_id in range(first, first + count):
        job = {"id": job_id, "attempt": 1, "kind": "python", "callable": "tests.jobfuncs:add",
               "args": [1, 2], "kwargs": {}, "log_path": os.path.join(sys.argv[1], f"{job_id}.log")}
        reply = worker.run_python(Pipe(), job, logs, quiet_log=True)
        assert reply == ("done", job_id, 1, 3, None, None), reply

run(1, 5_000)  # warm up: imports, caches, the allocator's first arenas
before = rss_kb()
run(5_001, 30_000)
print(rss_kb() - before)
"""


def test_a_worker_does_not_grow_with_the_python_jobs_it_runs(tmp_path):
    """Each job changes the worker's JOBRUNNER_JOB_ID: glibc's setenv kept every old value
    (64 bytes a job, 29 MB a worker in half a million jobs)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _RUN_MANY, str(logs)], env=env, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    grown_kb = int(done.stdout.split()[-1])
    assert grown_kb * 1024 / 30_000 < 16, f"the worker grew {grown_kb} kB in 30,000 jobs"


def test_a_python_job_finds_the_postgresql_drivers_as_it_would_anywhere(cli, daemon):
    """The console script keeps peewee from importing the PostgreSQL drivers (start-up time);
    a job must not inherit that: `import psycopg2` works in it, and its peewee finds the
    drivers a plain Python process finds (a worker forked from the daemon once failed both)."""
    plain = subprocess.run(
        [sys.executable, "-c", "import json, tests.jobfuncs as f; print(json.dumps(f.postgres_drivers()))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    ids = [cli.submit("--call", "tests.jobfuncs:postgres_drivers") for _ in range(4)]
    daemon.start("--workers", "2")
    wait_until(lambda: _finished(cli, *ids), timeout=30)
    for job_id in ids:
        job = cli.job(job_id)
        assert job["status"] == "succeeded", job["error"]
        assert job["result"] == json.loads(plain.stdout)


def test_a_killed_workers_start_log_goes_once_its_jobs_are_recorded(cli, daemon, db_path):
    """A Python job past its timeout takes its worker with it; the dead worker's start log (read
    only by a successor, for attempts still held) is deleted once its attempts' ends are
    recorded, not kept until the daemon stops: one file per live worker, however many kills."""
    from tests.conftest import logs_of

    ids = [cli.submit("--call", "tests.jobfuncs:sleep_for", "--arg", "seconds=30", "--timeout", "0.3",
                      "--retries", "0") for _ in range(4)]  # fmt: skip
    proc = daemon.start("--workers", "1")
    wait_until(lambda: all(cli.job(i)["status"] == "dead" for i in ids), timeout=60)
    assert all("timed out" in cli.job(i)["error"] for i in ids)
    started = logs_of(db_path).glob
    wait_until(lambda: len(list(started(f".started-{proc.proc.pid}-*"))) == 1, timeout=10)
    assert proc.proc.poll() is None
