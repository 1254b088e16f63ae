"""Issue 12's promises, each reproduction as a user would meet it: at most one running copy,
stop means stop, nothing waits forever. Real daemons, real signals, real process trees."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import ON_POSTGRES, logs_of, run_jobrunner, sql, wait_until, write_lock_held

FINAL = ("succeeded", "dead", "cancelled")


def alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b") ", 1)[1][:1] != b"Z"
    except OSError:
        return False


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return int(handle.read().rsplit(b") ", 1)[1].split()[1])


def ledger_script(ledger: Path, body: str) -> str:
    """A shell job that first checks no earlier attempt of it is still alive (an overlap is
    written to the ledger as it happens), then records its own start and pid."""
    return (
        f'for p in $(cat {ledger}.pids 2>/dev/null); do kill -0 "$p" 2>/dev/null && '
        f'echo "OVERLAP $JOBRUNNER_ATTEMPT $p" >> {ledger}; done; '
        f'echo $$ >> {ledger}.pids; echo "start $JOBRUNNER_ATTEMPT $$" >> {ledger}; {body}'
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def leftovers():
    """pids a test wants dead by its end, whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def test_job_sent_ahead_runs_once_while_the_write_lock_is_held(cli, daemon, db_path, tmp_path):
    """Reproduction 1: B waits in a worker's line behind a job; the daemon, blocked on the
    write lock, must not take B back as 'not started' once the worker has started it."""
    daemon.start("--workers", "2")
    warm = [cli.submit("--", "true") for _ in range(16)]  # short jobs switch claim-ahead on
    wait_until(lambda: all(cli.job(i)["status"] == "succeeded" for i in warm), timeout=30)
    ledger = tmp_path / "b.ledger"
    source = tmp_path / "jobs.jsonl"
    source.write_text(
        "\n".join(
            json.dumps(line)
            for line in [
                {"command": ["sleep", "0.45"], "priority": "critical", "name": "A"},
                {"command": ["sleep", "0.2"], "priority": "high", "name": "X"},
                {"command": ["sh", "-c", ledger_script(ledger, "sleep 3")], "name": "B"},
            ]
        )
        + "\n"
    )
    a, x, b = (int(n) for n in cli.ok("submit", "--from-file", str(source)).split())
    wait_until(lambda: all(cli.job(i)["status"] != "queued" for i in (a, x, b)), timeout=10, interval=0.005)
    with write_lock_held(db_path):  # as a large purge or bulk submit does
        # held until B has started and the daemon has passed the point where it takes jobs sent
        # ahead back from a worker whose job runs long (0.5 s): 1.5 s, as in the reproduction
        held_until = time.monotonic() + 1.5
        wait_until(lambda: lines(ledger) and time.monotonic() >= held_until, timeout=10, interval=0.01)
    wait_until(lambda: cli.job(b)["status"] in FINAL, timeout=30)
    starts = [line for line in lines(ledger) if line.startswith("start")]
    assert len(starts) == 1, (starts, cli.job(b)["events"])
    assert not [line for line in lines(ledger) if line.startswith("OVERLAP")]
    assert cli.job(b)["status"] == "succeeded" and cli.job(b)["attempts"] == 1


def test_a_worker_killed_with_sigkill_takes_its_shell_job_with_it(cli, daemon, tmp_path, leftovers):
    """Reproduction 2: the retry must not start while attempt 1's process still runs."""
    daemon.start("--workers", "1")
    ledger = tmp_path / "ledger"
    job = cli.submit("--retries", "1", "--backoff", "0", "--", "sh", "-c",
                     ledger_script(ledger, "setsid sleep 30 & exec sleep 15"))  # fmt: skip
    wait_until(lambda: lines(ledger), timeout=20)
    first = int(lines(ledger)[0].split()[2])
    leftovers.append(first)
    os.kill(parent_of(first), signal.SIGKILL)  # the worker
    wait_until(lambda: len([x for x in lines(ledger) if x.startswith("start")]) == 2, timeout=20)
    assert not [line for line in lines(ledger) if line.startswith("OVERLAP")], lines(ledger)
    assert not alive(first)
    events = cli.job(job)["events"]
    assert any("worker died: killed by signal 9" in (e["message"] or "") for e in events)
    cli.ok("cancel", str(job))
    wait_until(lambda: cli.job(job)["status"] == "cancelled", timeout=20)


def _stopped_job_leaves_nothing(cli, tmp_path, leftovers, stop, script: str, expect: str) -> None:
    marks = tmp_path / "pids"
    job = cli.submit("--timeout", "1" if stop == "timeout" else "60", "--", "sh", "-c",
                     f"{script} echo $! >> {marks}; sleep 30")  # fmt: skip
    wait_until(lambda: lines(marks), timeout=20)
    grandchild = int(lines(marks)[0])
    leftovers.append(grandchild)
    if stop == "cancel":
        cli.ok("cancel", str(job))
    wait_until(lambda: cli.job(job)["status"] in FINAL, timeout=20)
    assert not alive(grandchild), "recorded as ended while its grandchild still runs"
    assert cli.job(job)["status"] == expect


@pytest.mark.parametrize("stop", ["timeout", "cancel"])
def test_a_stopped_job_leaves_no_grandchild_that_ignores_sigterm(cli, daemon, tmp_path, leftovers, stop):
    """Reproduction 3: the direct child exits on SIGTERM; the grandchild ignores it and must
    get SIGKILL after the kill grace (the daemon fixture passes --kill-grace 1)."""
    daemon.start("--workers", "1")
    expect = "dead" if stop == "timeout" else "cancelled"
    _stopped_job_leaves_nothing(cli, tmp_path, leftovers, stop, '( trap "" TERM; exec sleep 40 ) &', expect)


@pytest.mark.parametrize("stop", ["timeout", "cancel"])
def test_a_stopped_job_leaves_no_child_that_left_with_setsid(cli, daemon, tmp_path, leftovers, stop):
    """Reproduction 11: a child in its own session is outside the job's process group."""
    daemon.start("--workers", "1")
    expect = "dead" if stop == "timeout" else "cancelled"
    _stopped_job_leaves_nothing(cli, tmp_path, leftovers, stop, "setsid sleep 40 &", expect)


def test_a_finished_job_leaves_nothing_running(cli, daemon, tmp_path, leftovers):
    """Stop means stop at a normal end too: what a job leaves behind is ended before its end is
    recorded, so retention can never delete a log something still writes."""
    daemon.start("--workers", "1")
    marks = tmp_path / "pids"
    job = cli.submit("--", "sh", "-c", f"setsid sh -c 'sleep 40' & echo $! >> {marks}; exit 0")
    wait_until(lambda: cli.job(job)["status"] in FINAL, timeout=20)
    leftovers.extend(int(p) for p in lines(marks))
    assert cli.job(job)["status"] == "succeeded"
    assert not [p for p in leftovers if alive(p)]


@pytest.mark.slow
def test_a_stalled_daemon_stops_its_job_before_another_daemon_runs_it(cli, daemon, tmp_path, leftovers):
    """Reproduction 7: daemon A is stopped past its lease while daemon B runs. B runs attempt
    2; A's worker must have ended attempt 1 by then (it fences itself), and A, resumed, must
    not run attempt 1 on beside it."""
    daemon.start("--workers", "1", "--lease", "3", "--heartbeat", "0.5")
    ledger = tmp_path / "ledger"
    job = cli.submit("--retries", "2", "--backoff", "0", "--", "sh", "-c", ledger_script(ledger, "exec sleep 30"))
    wait_until(lambda: lines(ledger), timeout=20)
    first = int(lines(ledger)[0].split()[2])
    leftovers.append(first)
    daemon.pause()
    other = daemon.make().start("--workers", "1", "--lease", "3", "--heartbeat", "0.5")
    wait_until(lambda: len([x for x in lines(ledger) if x.startswith("start")]) == 2, timeout=40)
    leftovers.append(int(lines(ledger)[-1].split()[2]))
    assert not [line for line in lines(ledger) if line.startswith("OVERLAP")], lines(ledger)
    assert not alive(first)
    daemon.signal(signal.SIGCONT)  # it must notice its lease is gone without harming attempt 2
    wait_until(lambda: "stopped by its worker" in daemon.output() or "no longer this daemon's" in daemon.output(),
               timeout=20)  # fmt: skip
    job_now = cli.job(job)
    assert job_now["status"] == "running" and job_now["attempts"] == 2
    assert job_now["lease_owner"] and job_now["lease_owner"] in other.output()
    cli.ok("cancel", str(job))
    wait_until(lambda: cli.job(job)["status"] == "cancelled", timeout=20)


def test_a_job_that_cannot_be_handed_over_fails_alone(cli, daemon, db_path):
    """Reproduction 9: arguments nested 700 deep do not pickle; that job fails with the reason,
    the daemon keeps running and the job queued behind it runs. (Submit now refuses such
    arguments at the door; a row stored before, or written by another tool, must still not
    stop the daemon.)"""
    bad = cli.submit("--call", "tests.jobfuncs:add", "--arg", "a=1", "--arg", "b=1")
    good = cli.submit("--call", "tests.jobfuncs:add", "--arg", "a=1", "--arg", "b=2")
    deep = '{"a": ' + "[" * 700 + "]" * 700 + ', "b": 1}'
    sql(db_path, "UPDATE job SET kwargs=? WHERE id=?", (deep, bad))
    daemon.start("--workers", "1")
    wait_until(lambda: cli.job(good)["status"] in FINAL and cli.job(bad)["status"] in FINAL, timeout=20)
    assert cli.job(good)["status"] == "succeeded"
    job = cli.job(bad)
    assert job["status"] == "dead" and "cannot be handed to a worker" in job["error"], job["error"]
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "Traceback" not in daemon.output()


def test_status_notices_a_killed_daemon_at_once(cli, daemon):
    """Reproduction 10: a kill -9'd daemon on this host reads as down immediately."""
    daemon.start("--workers", "1")
    assert run_jobrunner("status").returncode == 0
    daemon.kill(signal.SIGKILL)
    result = run_jobrunner("status", "--json")
    assert result.returncode == 3, result.stdout
    assert json.loads(result.stdout)["alive"] is False


def test_a_long_python_job_sent_ahead_has_a_live_log(cli, daemon, tmp_path):
    """Reproduction 1's last point: a job sent ahead in a run of short jobs writes into the
    worker's spare file; once it runs long its log is its own, live."""
    daemon.start("--workers", "1")
    marker = tmp_path / "go-on"
    source = tmp_path / "jobs.jsonl"
    noop = {"callable": "tests.jobfuncs:add", "kwargs": {"a": 1, "b": 2}}
    long = {"callable": "tests.jobfuncs:print_until", "kwargs": {"marker": str(marker)}, "name": "long"}
    source.write_text("\n".join(json.dumps(line) for line in [noop] * 40 + [long] + [noop] * 5) + "\n")
    ids = [int(n) for n in cli.ok("submit", "--from-file", str(source)).split()]
    job = ids[40]
    wait_until(lambda: cli.job(job)["status"] == "running", timeout=20)
    assert "sent ahead" in daemon.output()  # the short jobs did run ahead of their turn
    wait_until(lambda: "first line\n" in cli("logs", str(job)).stdout, timeout=10)
    marker.touch()
    wait_until(lambda: all(cli.job(i)["status"] == "succeeded" for i in ids), timeout=20)
    assert cli.ok("logs", str(job)).endswith("first line\nlast line\n")


def test_a_daemon_killed_while_a_worker_ends_a_jobs_leftovers_leaves_none(cli, daemon, tmp_path, leftovers):
    """Found by the chaos test: the worker is ending what a finished job left (SIGTERM, then
    SIGKILL after the grace) when the daemon is kill -9'd; the worker dies with it and must
    take the leftover with it."""
    daemon.start("--workers", "1", "--kill-grace", "5")
    marks = tmp_path / "pids"
    cli.submit("--", "sh", "-c", f'( trap "" TERM; exec sleep 40 ) & echo $! >> {marks}; exit 0')
    wait_until(lambda: lines(marks), timeout=20)
    leftover = int(lines(marks)[0])
    leftovers.append(leftover)
    wait_until(lambda: "job 1 started" in daemon.output(), timeout=10)
    daemon.kill(signal.SIGKILL)  # within the 5 s grace
    wait_until(lambda: not alive(leftover), timeout=5)


def test_a_restarted_daemon_ends_what_a_lost_attempt_left_before_recording_it(cli, daemon, tmp_path, leftovers):
    """A Python job's child survives its worker's SIGKILL (the daemon was kill -9'd); the next
    daemon ends it before it records the attempt lost and retries it."""
    daemon.start("--workers", "1")
    marks = tmp_path / "pids"
    job = cli.submit("--retries", "1", "--backoff", "0", "--call", "tests.jobfuncs:spawn_and_sleep",
                     "--arg", f"pids={marks}", "--arg", "seconds=1")  # fmt: skip
    wait_until(lambda: lines(marks), timeout=20)
    child = int(lines(marks)[0])
    leftovers.append(child)
    worker = parent_of(child)
    daemon.kill(signal.SIGKILL)
    wait_until(lambda: not alive(worker), timeout=10)  # the worker dies with the daemon...
    assert alive(child)  # ...and its job's child lives on
    daemon.start()
    wait_until(lambda: "recovered from dead daemon" in daemon.output(), timeout=20)
    assert not alive(child)
    assert "process(es) of lost attempts still running" in daemon.output()
    wait_until(lambda: cli.job(job)["status"] in FINAL, timeout=30)
    leftovers.extend(int(p) for p in lines(marks))


def test_a_job_held_ahead_is_not_charged_when_its_daemon_dies(cli, daemon, db_path, tmp_path):
    """Issue 12 (hand-over): B, claimed ahead for the one busy worker, never started when the
    daemon was killed with -9. Its successor gives B back uncounted (B has no retries: charged,
    it would go dead without ever running); A, which had started, is lost as before."""
    daemon.start("--workers", "1")
    warm = [cli.submit("--", "true") for _ in range(16)]  # short jobs switch claim-ahead on
    wait_until(lambda: all(cli.job(i)["status"] == "succeeded" for i in warm), timeout=30)
    marker = tmp_path / "b-ran"
    source = tmp_path / "jobs.jsonl"
    lines_ = [{"command": ["sleep", "0.4"], "priority": "critical", "name": "A", "retries": 0},
              {"command": ["sh", "-c", f"echo $JOBRUNNER_ATTEMPT >> {marker}"], "name": "B", "retries": 0}]  # fmt: skip
    source.write_text("".join(json.dumps(line) + "\n" for line in lines_))
    a, b = (int(n) for n in cli.ok("submit", "--from-file", str(source)).split())
    wait_until(lambda: cli.job(a)["status"] == "running" and cli.job(b)["status"] == "running",
               timeout=10, interval=0.002)  # fmt: skip
    daemon.kill(9)
    held = cli.job(b)
    if held["status"] != "running" or marker.exists():
        pytest.skip("B was not held ahead at the moment of the kill (the daemon gave it back first)")
    assert held["attempts"] == 1
    successor = daemon.make().start("--workers", "1")
    wait_until(lambda: cli.job(b)["status"] in FINAL and cli.job(a)["status"] in FINAL, timeout=30)
    assert cli.job(b)["status"] == "succeeded", cli.job(b)["events"]
    assert lines(marker) == ["1"]  # ran once, as attempt 1: the given-back attempt was never run
    assert any("died before starting it" in (e["message"] or "") for e in cli.job(b)["events"])
    assert cli.job(a)["status"] == "dead" and "lost" in cli.job(a)["error"]
    assert "never started" in successor.output()
    assert not list(logs_of(db_path).glob(f".started-{daemon.proc.pid}-*"))  # recovered, forgotten


def test_an_attempt_a_worker_finished_is_not_given_back_when_its_daemon_dies(cli, daemon, db_path, tmp_path):
    """Issue 12 (hand-over), found by the PostgreSQL chaos run: a worker killed earlier left its
    start log; its replacement ran B to the end, sent its result to a daemon that was stopped,
    then saw the daemon's pipe close at its kill -9 and exited cleanly, once taking its start log
    with it. The successor counted enough files, took B's attempt for never started and ran
    attempt 1 again. A worker's start log now outlives it, so B's attempt counts as lost."""
    from tests.chaoshelpers import process_table, worker_pids

    daemon.start("--workers", "1")
    first = cli.submit("--", "true")
    wait_until(lambda: cli.job(first)["status"] == "succeeded", timeout=20)
    (killed,) = worker_pids(daemon.proc.pid)
    os.kill(killed, signal.SIGKILL)  # its start log stays; the daemon starts a replacement
    wait_until(lambda: list(worker_pids(daemon.proc.pid)) not in ([], [killed]), timeout=20)
    marker, go = tmp_path / "b-ran", tmp_path / "b-go"
    b = cli.submit("--retries", "0", "--", "sh", "-c",
                   f"echo $JOBRUNNER_ATTEMPT $$ >> {marker}; while [ ! -e {go} ]; do sleep 0.01; done")  # fmt: skip
    wait_until(lambda: lines(marker), timeout=20)
    os.kill(daemon.proc.pid, signal.SIGSTOP)  # B's result reaches a daemon that cannot record it
    job_pid = int(lines(marker)[0].split()[1])
    worker = process_table()[job_pid].ppid  # the worker that runs B (not one seen earlier, which may have gone)
    go.touch()  # B ends only now, however slow the machine (a fixed sleep could end before the stop)
    try:
        wait_until(lambda: not alive(job_pid), timeout=10)
        wait_until(lambda: not worker_pids(daemon.proc.pid).get(worker), timeout=10)  # its job's gone
    finally:
        daemon.kill(signal.SIGKILL)
    wait_until(lambda: not alive(worker), timeout=10)
    assert cli.job(b)["status"] == "running"  # held by the dead daemon, its result unrecorded
    assert list(logs_of(db_path).glob(f".started-{daemon.proc.pid}-{worker}"))  # the worker left it
    successor = daemon.make().start("--workers", "1")
    wait_until(lambda: cli.job(b)["status"] in FINAL, timeout=30)
    assert [line.split()[0] for line in lines(marker)] == ["1"]  # attempt 1 ran once, never again
    assert not any("died before starting it" in (e["message"] or "") for e in cli.job(b)["events"])
    assert cli.job(b)["status"] == "dead" and "lost" in cli.job(b)["error"]  # started: charged
    assert "never started" not in successor.output()


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only: there a lock can hold a claim between its UPDATE "
                    "and its commit (SQLite takes its one write lock before the UPDATE)")
def test_a_job_never_starts_on_a_claim_not_yet_committed(cli, daemon, db_path, tmp_path):
    """Issue 12, found by the PostgreSQL chaos run (seed 2): the daemon sent claimed jobs to
    its workers before the claim committed. Killed with -9 in that moment, its claim rolled
    back while the job ran on, and the next daemon ran attempt 1 again beside it. Here the event
    table is locked: the claim's UPDATE goes through and its event INSERT (in the same statement)
    waits, so the claim cannot commit; the daemon dies meanwhile. The job runs once, as attempt
    1, after that."""
    import psycopg2

    daemon.start("--workers", "1")
    warm = cli.submit("--", "true")
    wait_until(lambda: cli.job(warm)["status"] == "succeeded", timeout=20)
    cli.ok("pause", "default")
    marker = tmp_path / "ran"
    job = cli.submit("--retries", "0", "--", "sh", "-c", f"echo $JOBRUNNER_ATTEMPT $$ >> {marker}; sleep 0.5")
    with contextlib.closing(psycopg2.connect(str(db_path), connect_timeout=5)) as conn:
        conn.cursor().execute("SET lock_timeout = '30s'; LOCK TABLE event IN EXCLUSIVE MODE")
        cli.ok("resume", "default")
        waiting = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND wait_event_type = 'Lock' AND query LIKE '%%EXECUTE jobrunner_claim%%'")  # fmt: skip
        wait_until(lambda: sql(db_path, waiting)[0][0] >= 1, timeout=20)  # the claim waits on its event
        daemon.kill(signal.SIGKILL)  # its claim is rolled back
        conn.rollback()
    assert cli.job(job)["status"] == "queued" and cli.job(job)["attempts"] == 0
    daemon.make().start("--workers", "1")
    wait_until(lambda: cli.job(job)["status"] in FINAL, timeout=30)
    assert [line.split()[0] for line in lines(marker)] == ["1"]  # one copy, attempt 1, once
    assert cli.job(job)["status"] == "succeeded" and cli.job(job)["attempts"] == 1


def test_a_job_the_database_says_a_live_daemon_holds_unknowingly_is_given_back(cli, daemon, db_path, tmp_path):
    """Issue 12 (nothing waits forever), seen in the PostgreSQL chaos run as a job left `running`
    under a live daemon: a give-back the database refused (the job table locked past
    lock_timeout), or a claim committed although its commit reported an error, leaves a job
    leased to a daemon that does not know it has it, and every heartbeat renewed that lease.
    Here the database is made to say so directly; the daemon's next heartbeat gives it back."""
    daemon.start("--workers", "1", "--heartbeat", "0.2")
    wait_until(lambda: sql(db_path, "SELECT id FROM daemon WHERE state = 'running'"), timeout=20)
    (owner,) = sql(db_path, "SELECT id FROM daemon WHERE state = 'running'")[0]
    cli.ok("pause", "--create", "held")
    marker = tmp_path / "ran"
    job = cli.submit("--queue", "held", "--", "sh", "-c", f"echo $JOBRUNNER_ATTEMPT >> {marker}")
    sql(db_path, "UPDATE job SET status = 'running', attempts = 1, lease_owner = ?, lease_until = ? WHERE id = ?",
        (owner, time.time() + 600, job))  # fmt: skip
    wait_until(lambda: cli.job(job)["status"] == "queued", timeout=20)  # before: renewed for ever
    assert cli.job(job)["attempts"] == 0
    assert "held without knowing it" in daemon.output()
    cli.ok("resume", "held")
    wait_until(lambda: cli.job(job)["status"] in FINAL, timeout=20)
    assert cli.job(job)["status"] == "succeeded" and lines(marker) == ["1"]
