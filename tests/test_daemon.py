"""The daemon as users meet it: a real process, real jobs, real signals."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import logs_of, run_jobrunner, sql, wait_until


def status_of(cli, job_id: int) -> str:
    return cli.job(job_id)["status"]


def finished(cli, *ids: int) -> bool:
    return all(status_of(cli, i) in ("succeeded", "dead", "cancelled") for i in ids)


def test_shell_and_python_jobs_succeed_with_results(cli, daemon, tmp_path):
    daemon.start()
    shell = cli.submit("--", "sh", "-c", "echo hello; echo oops >&2")
    python = cli.submit("--call", "tests.jobfuncs:add", "--arg", "a=2", "--arg", "b=3")
    printer = cli.submit("--call", "tests.jobfuncs:print_lines", "--arg", "count=3")
    wait_until(lambda: finished(cli, shell, python, printer), timeout=20)
    job = cli.job(shell)
    assert job["status"] == "succeeded" and job["exit_code"] == 0 and job["attempts"] == 1
    assert job["started_at"] and job["finished_at"] and job["duration"] is not None
    assert "hello\noops\n" in cli.ok("logs", str(shell))
    assert cli.job(python)["result"] == 5
    assert "line 0\nline 1\nline 2\n" in cli.ok("logs", str(printer))
    assert [e["to"] for e in job["events"]] == ["queued", "running", "succeeded"]
    assert f"job {shell} succeeded" in daemon.output()


def test_priorities_order_execution(cli, daemon, tmp_path):
    out = tmp_path / "order.txt"
    ids = {}
    for label, priority in [("low", "low"), ("normal", "normal"), ("critical", "critical"), ("high", "high"), ("normal2", "normal")]:
        ids[label] = cli.submit("--priority", priority, "--call", "tests.jobfuncs:record",
                                "--arg", f"path={out}", "--arg", f"label={label}")  # fmt: skip
    daemon.start("--workers", "1")
    wait_until(lambda: finished(cli, *ids.values()), timeout=20)
    assert out.read_text().split() == ["critical", "high", "normal", "normal2", "low"]


@pytest.mark.slow
def test_failing_job_retries_with_backoff_then_dead(cli, daemon):
    daemon.start()
    job_id = cli.submit("--retries", "3", "--backoff", "0.2", "--", "sh", "-c", "echo try; exit 3")
    wait_until(lambda: status_of(cli, job_id) == "dead", timeout=30)
    job = cli.job(job_id)
    assert job["attempts"] == 4 and job["exit_code"] == 3 and job["error"] == "exit code 3"
    retries = [e for e in job["events"] if e["to"] == "retrying"]
    assert [e["attempt"] for e in retries] == [1, 2, 3]
    delays = [float(e["message"].rsplit(" in ", 1)[1].rstrip("s")) for e in retries]
    for attempt, delay in enumerate(delays, start=1):
        assert 0 <= delay <= 0.2 * 2 ** (attempt - 1) + 0.05  # full jitter under a growing ceiling
    assert "gave up after 4 attempts" in job["events"][-1]["message"]
    assert all(e["details"]["exit_code"] == 3 for e in job["events"] if e["to"] in ("retrying", "dead"))
    assert cli.ok("logs", str(job_id)).count("try\n") == 4


def test_permanent_error_is_dead_at_once(cli, daemon):
    daemon.start()
    value = cli.submit("--retries", "3", "--call", "tests.jobfuncs:fail_with", "--arg", "kind=value")
    unknown = cli.submit("--retries", "3", "--call", "tests.nosuch:fn")
    transient = cli.submit("--retries", "1", "--backoff", "0.1", "--call", "tests.jobfuncs:fail_with", "--arg", "kind=connection")
    wait_until(lambda: finished(cli, value, unknown, transient), timeout=20)
    job = cli.job(value)
    assert job["status"] == "dead" and job["attempts"] == 1
    assert job["error"] == "ValueError: boom"
    assert "Traceback" in job["events"][-1]["details"]["traceback"]
    assert cli.job(unknown)["attempts"] == 1 and "unknown callable" in cli.job(unknown)["error"]
    assert cli.job(transient)["attempts"] == 2  # ConnectionError is worth a retry


def test_unserialisable_result_is_a_clear_error(cli, daemon):
    daemon.start()
    job_id = cli.submit("--call", "tests.jobfuncs:unserialisable")
    wait_until(lambda: finished(cli, job_id), timeout=20)
    job = cli.job(job_id)
    assert job["status"] == "dead" and "not JSON-serialisable" in job["error"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is dead too
        return handle.read().split()[2] != "Z"


def test_timeout_kills_the_whole_tree_even_if_it_ignores_sigterm(cli, daemon, tmp_path):
    daemon.start()
    pidfile = tmp_path / "grandchild.pid"
    script = f"trap '' TERM; (trap '' TERM; sleep 300) & echo $! > {pidfile}; sleep 300"
    job_id = cli.submit("--timeout", "1", "--", "sh", "-c", script)
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10)
    grandchild = int(pidfile.read_text())
    wait_until(lambda: status_of(cli, job_id) == "dead", timeout=20)
    job = cli.job(job_id)
    assert job["error"] == "timed out after 1s"
    wait_until(lambda: not _alive(grandchild), timeout=5)


def test_cancel_stops_a_running_job(cli, daemon, tmp_path):
    daemon.start()
    marker = tmp_path / "started"
    job_id = cli.submit("--", "sh", "-c", f"touch {marker}; sleep 300")
    wait_until(marker.exists, timeout=10)
    started = time.monotonic()
    cli.ok("cancel", str(job_id))
    wait_until(lambda: status_of(cli, job_id) == "cancelled", timeout=10)
    assert time.monotonic() - started < 5
    assert cli.job(job_id)["error"] == "cancelled by user while running"


def test_python_job_timeout_replaces_the_worker(cli, daemon):
    daemon.start("--workers", "1")
    slow = cli.submit("--timeout", "0.5", "--call", "tests.jobfuncs:sleep_for", "--arg", "seconds=300")
    wait_until(lambda: status_of(cli, slow) == "dead", timeout=20)
    assert cli.job(slow)["error"] == "timed out after 500ms"
    after = cli.submit("--call", "tests.jobfuncs:add", "--arg", "a=1", "--arg", "b=1")
    wait_until(lambda: status_of(cli, after) == "succeeded", timeout=20)


def test_killed_worker_is_replaced_and_job_retried(cli, daemon, tmp_path):
    daemon.start("--workers", "1")
    job_id = cli.submit("--retries", "1", "--backoff", "0.1", "--call", "tests.jobfuncs:die_once",
                        "--arg", f"marker={tmp_path / 'm'}")  # fmt: skip
    exiting = cli.submit("--retries", "1", "--backoff", "0.1", "--call", "tests.jobfuncs:exit_hard_once",
                         "--arg", f"marker={tmp_path / 'e'}")  # fmt: skip
    wait_until(lambda: finished(cli, job_id, exiting), timeout=30)
    job = cli.job(job_id)
    assert job["status"] == "succeeded" and job["result"] == "survived" and job["attempts"] == 2
    first = next(e for e in job["events"] if e["to"] == "retrying")
    assert "worker died: killed by signal 9 (SIGKILL)" in first["message"]
    other = cli.job(exiting)
    assert other["status"] == "succeeded"
    assert "worker died: exit code 3" in next(e for e in other["events"] if e["to"] == "retrying")["message"]


def test_a_worker_that_died_idle_is_replaced_before_it_gets_work(cli, daemon):
    """The worker dies while the daemon is not looking; a submit's poke and the death arrive
    together. The daemon must not write to the dead worker's pipe (it would die of it)."""
    daemon.start("--workers", "1")
    assert daemon.proc is not None
    worker = int(Path(f"/proc/{daemon.proc.pid}/task/{daemon.proc.pid}/children").read_text().split()[0])
    daemon.pause()
    try:
        os.kill(worker, signal.SIGKILL)
        job_id = cli.submit("--", "true")
    finally:
        daemon.signal(signal.SIGCONT)
    wait_until(lambda: cli.job(job_id)["status"] == "succeeded", timeout=20)
    assert daemon.proc.poll() is None and "Traceback" not in daemon.output()
    assert "while idle; starting a new one" in daemon.output()


@pytest.mark.slow
def test_kill_minus_nine_loses_no_job(cli, daemon):
    """A daemon killed mid-job leaves nothing stuck in running after a restart."""
    ids = [cli.submit("--retries", "2", "--", "sleep", "0.5") for _ in range(12)]
    daemon.start("--workers", "2")
    wait_until(lambda: cli.count("running") >= 2, timeout=10)
    daemon.kill(signal.SIGKILL)
    daemon.start()
    wait_until(lambda: cli.count("succeeded") == 12, timeout=60)
    assert cli.count("running") == 0
    lost = [e for i in ids for e in cli.job(i)["events"] if "lost: daemon" in (e["message"] or "")]
    assert len(lost) >= 2


def test_sigterm_lets_running_jobs_finish(cli, daemon, tmp_path):
    daemon.start("--workers", "1")
    marker = tmp_path / "started"
    job_id = cli.submit("--", "sh", "-c", f"touch {marker}; sleep 1; echo done")
    wait_until(marker.exists, timeout=10)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0
    assert status_of(cli, job_id) == "succeeded"
    assert "stopping" in daemon.output()


def test_sigterm_past_grace_requeues_interrupted_jobs(cli, daemon, tmp_path):
    daemon.start("--workers", "1", "--grace", "0.3")
    marker = tmp_path / "started"
    job_id = cli.submit("--", "sh", "-c", f"touch {marker}; sleep 300")
    wait_until(marker.exists, timeout=10)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0
    job = cli.job(job_id)
    assert job["status"] == "queued" and job["retries_left"] == 0 + job["max_retries"]
    assert "interrupted" in job["events"][-1]["message"]


def test_second_signal_stops_at_once(cli, daemon, tmp_path):
    daemon.start("--workers", "1")
    marker = tmp_path / "started"
    job_id = cli.submit("--", "sh", "-c", f"touch {marker}; sleep 300")
    wait_until(marker.exists, timeout=10)
    daemon.signal(signal.SIGTERM)
    wait_until(lambda: "stopping" in daemon.output(), timeout=5)
    daemon.signal(signal.SIGINT)
    assert daemon.wait(timeout=10) == 0
    assert status_of(cli, job_id) == "queued"


@pytest.mark.slow
def test_two_daemons_never_run_one_attempt_twice(cli, daemon, tmp_path, db_path):
    out = tmp_path / "runs.txt"
    lines = "".join(
        f'{{"callable": "tests.jobfuncs:record", "kwargs": {{"path": "{out}", "label": "{n}", "pause": 0.01}}}}\n'
        for n in range(300)
    )
    Path("jobs.jsonl").write_text(lines)
    daemon.start("--workers", "2")
    daemon.make().start("--workers", "2")
    cli.ok("submit", "--from-file", "jobs.jsonl")
    wait_until(lambda: cli.count("succeeded") == 300, timeout=60)
    labels = out.read_text().split()
    assert sorted(labels, key=int) == [str(n) for n in range(300)]  # each ran exactly once
    owners = {row[0] for row in sql(db_path, "SELECT message FROM event WHERE to_status='running'")}
    assert sql(db_path, "SELECT MAX(attempts) FROM job") == [(1,)]
    assert len({m.rsplit(" ", 1)[1] for m in owners}) == 2  # both daemons did work


def test_pause_and_resume_a_queue(cli, daemon):
    daemon.start()
    cli.ok("pause", "--create", "slow")  # no job uses it yet: a new queue, said so
    held = cli.submit("--queue", "slow", "--", "true")
    other = cli.submit("--queue", "fast", "--", "true")
    wait_until(lambda: status_of(cli, other) == "succeeded", timeout=10)
    assert status_of(cli, held) == "queued"  # the claim that took `other` saw it (submitted first) and left it
    assert cli.json("stats")["queues"]["slow"]["paused"] is True
    assert "queue slow resumed" in cli.ok("resume", "slow")
    wait_until(lambda: status_of(cli, held) == "succeeded", timeout=10)


def test_progress_from_python_and_shell(cli, daemon):
    daemon.start()
    python = cli.submit("--call", "tests.jobfuncs:slow_with_progress", "--arg", "steps=4", "--arg", "pause=0.3")
    shell = cli.submit("--", "sh", "-c", "jobrunner progress 40% 'step 2/5'; sleep 1.5")
    wait_until(lambda: (cli.job(python)["progress"] or 0) >= 0.5, timeout=10)
    wait_until(lambda: cli.job(shell)["progress"] == 0.4, timeout=10)
    assert cli.job(shell)["progress_message"] == "step 2/5"
    wait_until(lambda: finished(cli, python, shell), timeout=20)
    job = cli.job(python)
    assert job["progress"] == 1.0 and job["progress_message"] == "step 4/4"


def test_progress_outside_a_job_is_a_usage_error(cli):
    result = cli("progress", "0.5")
    assert result.exit_code == 2 and "not inside a jobrunner job" in result.stderr


def test_wait_exit_codes(cli, daemon):
    daemon.start()
    ok = cli.submit("--", "true")
    bad = cli.submit("--", "false")
    assert run_jobrunner("wait", str(ok), "--timeout", "20").returncode == 0
    failed = run_jobrunner("wait", str(bad), "--timeout", "20")
    assert failed.returncode == 1 and "dead: exit code 1" in failed.stderr
    slow = cli.submit("--", "sleep", "30")
    assert run_jobrunner("wait", str(slow), "--timeout", "0.3").returncode == 124
    assert run_jobrunner("wait", "9999").returncode == 2


def test_logs_follow_streams_until_the_job_ends(cli, daemon):
    daemon.start()
    job_id = cli.submit("--", "sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.3; done")
    result = run_jobrunner("logs", "--follow", str(job_id), timeout=30)
    assert result.returncode == 0
    assert "tick 1\ntick 2\ntick 3\n" in result.stdout
    assert status_of(cli, job_id) == "succeeded"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_idle_daemon_exits_zero_on_signal(daemon, signum):
    daemon.start()
    daemon.signal(signum)
    assert daemon.wait(timeout=15) == 0


def test_queue_concurrency_limit_from_config(cli, daemon, tmp_path):
    Path("jobs.toml").write_text("[queues.single]\nconcurrency = 1\n")  # read by the daemon from its cwd
    out = tmp_path / "overlap.txt"
    script = f"echo start >> {out}; sleep 0.3; echo end >> {out}"
    ids = [cli.submit("--queue", "single", "--", "sh", "-c", script) for _ in range(3)]
    daemon.start("--workers", "3")
    wait_until(lambda: finished(cli, *ids), timeout=30)
    assert out.read_text().split() == ["start", "end"] * 3  # never two at once


def test_claim_ahead_never_leaves_a_job_waiting_behind_a_long_one(cli, daemon):
    """After a run of tiny jobs the daemon claims ahead; a held job goes back once a long job starts."""
    daemon.start("--workers", "1")
    quick = [cli.submit("--call", "tests.jobfuncs:add", "--arg", "a=1", "--arg", "b=2") for _ in range(12)]
    wait_until(lambda: finished(cli, *quick), timeout=30)
    slow = cli.submit("--priority", "high", "--call", "tests.jobfuncs:sleep_for", "--arg", "seconds=3")
    after = cli.submit("--call", "tests.jobfuncs:add", "--arg", "a=1", "--arg", "b=2")
    wait_until(lambda: status_of(cli, slow) == "running", timeout=10)
    # while the only worker runs the slow job, the other is not shown as running for long
    wait_until(lambda: status_of(cli, slow) == "running" and status_of(cli, after) == "queued", timeout=5)
    assert cli.job(after)["attempts"] == 0
    wait_until(lambda: status_of(cli, after) == "succeeded", timeout=20)
    assert cli.job(after)["attempts"] == 1 and cli.job(after)["result"] == 3


def test_a_burst_of_tiny_jobs_is_recorded_in_full(cli, daemon, tmp_path, db_path):
    """Jobs sent ahead to workers in batches still get their claim, result and every event."""
    source = tmp_path / "burst.jsonl"
    lines = [f'{{"callable": "tests.jobfuncs:add", "kwargs": {{"a": {i}, "b": 1}}}}' for i in range(400)]
    for i in range(0, 400, 50):  # a few that print, among the silent ones
        lines[i] = f'{{"callable": "tests.jobfuncs:print_lines", "kwargs": {{"count": {i % 7 + 1}}}}}'
    source.write_text("\n".join(lines) + "\n")
    cli.ok("submit", "--from-file", str(source))
    daemon.start("--workers", "2")
    wait_until(lambda: sql(db_path, "SELECT COUNT(*) FROM job WHERE status='succeeded'") == [(400,)], timeout=60)
    rows = sql(db_path, "SELECT id, attempts, result, kwargs FROM job ORDER BY id")
    assert all(attempts == 1 for _, attempts, _, _ in rows)
    assert all(json.loads(result) == json.loads(kwargs).get("a", -1) + 1 or "count" in kwargs
               for _, _, result, kwargs in rows)  # fmt: skip
    events: dict[int, list[str]] = {}
    for job_id, status in sql(db_path, "SELECT job_id, to_status FROM event ORDER BY id"):
        events.setdefault(job_id, []).append(status)
    assert {",".join(changes) for changes in events.values()} == {"queued,running,succeeded"} and len(events) == 400
    # every job that printed has its own log with exactly its lines; a silent one may have none
    logs = logs_of(db_path)
    for job_id, _, _, kwargs in rows:
        log = logs / f"{job_id}.log"
        if "count" in kwargs:
            count = json.loads(kwargs)["count"]
            lines = log.read_text().splitlines()
            assert lines[0].startswith(f"=== jobrunner: job {job_id} attempt 1 started")
            assert lines[1:] == [f"line {n}" for n in range(count)]
        elif log.exists():
            assert log.read_text().splitlines() == [log.read_text().splitlines()[0]]
            assert log.read_text().startswith(f"=== jobrunner: job {job_id} ")
    silent = next(job_id for job_id, _, _, kwargs in rows if "count" not in kwargs and not (logs / f"{job_id}.log").exists())
    assert cli("logs", str(silent)).stderr.strip() == f"job {silent} wrote no output"


def test_a_shell_job_dies_with_a_killed_daemon(cli, daemon, tmp_path):
    """kill -9 of the daemon leaves no shell job running unsupervised (it is run again later)."""
    pid_file = tmp_path / "pid"
    cli.submit("--", "sh", "-c", f"echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep 60")
    daemon.start("--workers", "2")  # the idle one keeps a spare log file
    wait_until(pid_file.exists, timeout=10)
    logs = logs_of(daemon.db_path)
    wait_until(lambda: list(logs.glob(".spare-*.log")), timeout=10)
    pid = int(pid_file.read_text())
    daemon.kill(signal.SIGKILL)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie is dead

    wait_until(gone, timeout=10)
    left = {p.name for p in logs.glob(".spare-*.log")}  # the dead workers' spare log files
    assert left
    daemon.start("--workers", "1")  # clears them (its own worker makes a new one)
    wait_until(lambda: {p.name for p in logs.glob(".spare-*.log")} and not left & {p.name for p in logs.glob(".spare-*.log")},
               timeout=10)  # fmt: skip


def test_idle_workers_keep_a_spare_log_and_clear_it_on_the_way_out(cli, daemon, db_path):
    """The spare log file an idle worker keeps becomes the next job's log, and goes when the daemon stops."""
    daemon.start("--workers", "1")
    logs = logs_of(db_path)
    wait_until(lambda: list(logs.glob(".spare-*.log")), timeout=10)
    first = cli.submit("--call", "tests.jobfuncs:print_lines", "--arg", "count=2")
    wait_until(lambda: finished(cli, first), timeout=20)
    second = cli.submit("--", "sh", "-c", "echo from the shell")
    wait_until(lambda: finished(cli, second), timeout=20)
    assert cli.ok("logs", str(first)).endswith("line 0\nline 1\n")
    assert cli.ok("logs", str(second)).endswith("from the shell\n")
    assert (logs / f"{first}.log").stat().st_mode & 0o777 == 0o600
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0
    assert not list(logs.glob(".spare-*"))
