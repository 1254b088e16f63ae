"""PostgreSQL under faults (issue 16): a partition between one daemon and the server, the server
going away, and a daemon killed mid-run among three. Each test checks invariants over the
whole run, from a ledger every job attempt appends to and from the job and event rows:

- no attempt number of a job runs twice, and no two attempts of a job overlap in time;
- every job ends succeeded, and no result is written over a newer attempt;
- a daemon cut off from the server stops its jobs before its lease ends, and carries on after.

The partition is a TCP proxy on loopback (tests/pgproxy.py) between one daemon and the server.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_jobrunner, wait_until
from tests.pgproxy import PgProxy

pytestmark = pytest.mark.postgres
ROOT_FLAG = ["--allow-root"] if os.geteuid() == 0 else []

# A shell job for the ledger: a line as it starts, one every TICK while it runs, one as it ends;
# each names the daemon (its LEDGER_MARK), the job, the attempt and the time.
TICK = 0.05
JOB_SH = """\
ledger=$1; ticks=$2; mark=${LEDGER_MARK:-?}
say() { echo "$1 $mark $JOBRUNNER_JOB_ID $JOBRUNNER_ATTEMPT $(date +%s.%N)" >> "$ledger"; }
say start
i=0
while [ "$i" -lt "$ticks" ]; do sleep TICK; say tick; i=$((i + 1)); done
say end
""".replace("TICK", str(TICK))


@dataclass
class Attempt:
    job: int
    attempt: int
    marks: set[str] = field(default_factory=set)
    starts: int = 0
    start: float = 0.0
    last: float = 0.0  # its last line: the attempt was certainly alive then
    ended: bool = False


def read_ledger(path: Path) -> dict[tuple[int, int], Attempt]:
    attempts: dict[tuple[int, int], Attempt] = {}
    if not path.exists():
        return attempts
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue  # a line cut short by a kill (the write is one append: it never interleaves)
        what, mark, job, attempt, at = parts[0], parts[1], int(parts[2]), int(parts[3]), float(parts[4])
        entry = attempts.setdefault((job, attempt), Attempt(job, attempt))
        entry.marks.add(mark)
        if what == "start":
            entry.starts += 1
            entry.start = at
        entry.last = max(entry.last, at)
        entry.ended = entry.ended or what == "end"
    return attempts


def check_ledger(attempts: dict[tuple[int, int], Attempt]) -> None:
    """No attempt number runs twice (or on two daemons); no two attempts of a job overlap."""
    twice = [a for a in attempts.values() if a.starts != 1 or len(a.marks) != 1]
    assert not twice, f"attempts started twice or on two daemons: {twice[:10]}"
    by_job: dict[int, list[Attempt]] = defaultdict(list)
    for entry in attempts.values():
        by_job[entry.job].append(entry)
    overlaps = []
    for entries in by_job.values():
        entries.sort(key=lambda a: a.start)
        for before, after in itertools.pairwise(entries):
            if after.start <= before.last or after.attempt <= before.attempt:
                overlaps.append((before, after))
    assert not overlaps, f"attempts of one job overlap (or run out of order): {overlaps[:10]}"


@contextlib.contextmanager
def connect(url: str) -> Iterator[Any]:
    import psycopg2

    conn = psycopg2.connect(url, connect_timeout=5)
    conn.autocommit = True
    try:
        yield conn.cursor()
    finally:
        conn.close()


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with connect(url) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def statuses(url: str) -> dict[int, tuple[str, int]]:
    return {job: (status, attempts) for job, status, attempts in query(url, "SELECT id, status, attempts FROM job")}


def check_history(url: str) -> None:
    """Every job succeeded, and nothing was recorded for an attempt once a later one had started
    (a stale daemon's result written over a newer attempt)."""
    jobs = statuses(url)
    assert {status for status, _ in jobs.values()} == {"succeeded"}, {j: s for j, s in jobs.items() if s[0] != "succeeded"}
    newest: dict[int, int] = {}
    stale = []
    for job, attempt, to_status, message in query(
        url, "SELECT job_id, attempt, to_status, message FROM event ORDER BY id"
    ):
        if to_status == "running":
            newest[job] = max(newest.get(job, 0), attempt)
        elif attempt < newest.get(job, 0) and not (message or "").startswith("given back"):
            stale.append((job, attempt, to_status, message))
    assert not stale, f"recorded over a newer attempt: {stale[:10]}"


def submit_jobs(url: str, tmp_path: Path, lines: list[dict[str, Any]]) -> list[int]:
    jobs = tmp_path / f"jobs-{time.monotonic_ns()}.jsonl"
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run_jobrunner("submit", "--from-file", str(jobs), env={"JOBRUNNER_DB": url})
    assert done.returncode == 0, done.stderr
    return [int(x) for x in done.stdout.split()]


def ledger_job(script: Path, ledger: Path, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"command": ["sh", str(script), str(ledger), str(round(seconds / TICK))], "retries": 5,
            "backoff": "0s", **extra}  # fmt: skip


@pytest.fixture
def proxy() -> Iterator[PgProxy]:
    with PgProxy() as started:
        yield started


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "job.sh"
    path.write_text(JOB_SH)
    return path


def daemon_args(lease: float, workers: int = 2) -> list[str]:
    return ["--workers", str(workers), "--lease", f"{lease:g}s", "--heartbeat", f"{lease / 8:g}s",
            "--poll", "0.2s", *ROOT_FLAG]  # fmt: skip


# ------------------------------------------------------------------------------ partitions fence
# The moments a partition strikes A: renewing its leases (inside a transaction, which the server
# ends while A is cut off: A reconnects once back), and measuring its clock against the
# server's (a round trip that spans the partition, see daemon/clock.py).
MOMENTS = [
    pytest.param(b"UPDATE daemon SET heartbeat_at", id="heartbeat"),
    # a partition during the clock sync: a sample whose round trip spanned it would put the offset
    # seconds off, and A, back, would take B's live leases for expired (clock.py drops it)
    pytest.param(b"clock_timestamp()", id="clock-sync"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
def test_a_partitioned_daemon_stops_its_jobs_before_its_lease_ends_and_carries_on(
    postgres_url, proxy, daemon, script, tmp_path, moment
):
    """Daemon A reaches the server through the proxy, daemon B directly. The proxy goes silent
    (at `moment`) for twice the lease and until B has taken A's jobs over, while A runs long
    jobs: A's workers stop them before A's leases end, A writes nothing over B's newer attempts,
    then carries on and runs jobs again. Nothing is lost, nothing runs twice at once."""
    lease = 4.0
    ledger = tmp_path / "ledger"
    a = daemon.start(*daemon_args(lease), env={"JOBRUNNER_DB": proxy.url(postgres_url), "LEDGER_MARK": "A"})
    long_jobs = submit_jobs(postgres_url, tmp_path, [ledger_job(script, ledger, 3 * lease) for _ in range(2)])

    def running_on_a() -> list[Attempt]:
        return [e for e in read_ledger(ledger).values() if e.marks == {"A"} and not e.ended]

    wait_until(lambda: len(running_on_a()) == 2, timeout=20)
    b = daemon.make().start(*daemon_args(lease), env={"JOBRUNNER_DB": postgres_url, "LEDGER_MARK": "B"})
    short_jobs = submit_jobs(postgres_url, tmp_path, [ledger_job(script, ledger, 0.2) for _ in range(30)])
    wait_until(lambda: any("B" in e.marks for e in read_ledger(ledger).values()), timeout=20)

    proxy.pause_on(moment)
    wait_until(lambda: not proxy.forwarding.is_set(), timeout=10)
    paused_at = time.time()
    held = running_on_a()
    owner = query(postgres_url, "SELECT lease_owner FROM job WHERE id=%s", (held[0].job,))[0][0]
    leases = dict(query(postgres_url, "SELECT id, lease_until FROM job WHERE lease_owner=%s AND status='running'",
                        (owner,)))  # fmt: skip
    assert {e.job for e in held} <= set(leases), (held, leases)

    # the partition lasts twice the lease, and until B has taken A's jobs over (by their lease)
    def taken_over() -> bool:
        now = read_ledger(ledger)
        return time.time() >= paused_at + 2 * lease and all(
            any(e.job == mine.job and e.marks == {"B"} and e.attempt > mine.attempt for e in now.values())
            for mine in held
        )

    wait_until(taken_over, timeout=10 * lease)
    for entry in held:
        last = read_ledger(ledger)[(entry.job, entry.attempt)].last
        assert last < leases[entry.job], f"job {entry.job} ran on after its lease: {last} >= {leases[entry.job]}"
    late = [e for e in read_ledger(ledger).values() if e.marks == {"A"} and e.last >= paused_at + lease]
    assert not late, f"A ran jobs past its lease while cut off: {late}"
    proxy.resume()

    wait_until(lambda: {s for s, _ in statuses(postgres_url).values()} == {"succeeded"}, timeout=60)
    # A carries on: with B gone, jobs submitted now run on A
    b.signal(signal.SIGTERM)
    assert b.wait(timeout=30) == 0
    after = submit_jobs(postgres_url, tmp_path, [ledger_job(script, ledger, 0.1) for _ in range(4)])
    wait_until(lambda: all(statuses(postgres_url)[j][0] == "succeeded" for j in after), timeout=30)
    attempts = read_ledger(ledger)
    assert set().union(*(attempts[(j, statuses(postgres_url)[j][1])].marks for j in after)) == {"A"}

    check_ledger(attempts)
    check_history(postgres_url)
    final = statuses(postgres_url)
    for job in long_jobs + short_jobs + after:  # the attempt that succeeded ran to its end
        assert attempts[(job, final[job][1])].ended, (job, final[job])
    for entry in held:  # each fenced attempt was run again, by a newer attempt
        assert final[entry.job][1] > entry.attempt
    assert a.proc is not None and a.proc.poll() is None
    assert "Traceback" not in a.output() + b.output()
    # one host, one clock: a partition must not make A believe its clock is off the server's
    assert "clock is" not in a.output(), a.output()
    if b"heartbeat" in moment:  # the server ended A's session, idle in its transaction: A reconnected
        assert "database reachable again" in a.output(), a.output()


def daemon_id(url: str, process: Any) -> str:
    return query(url, "SELECT id FROM daemon WHERE pid=%s AND state='running'", (process.proc.pid,))[0][0]


@pytest.mark.slow
def test_a_daemon_cut_off_inside_a_transaction_does_not_hold_up_the_others(
    postgres_url, proxy, daemon, script, tmp_path
):
    """The partition comes while A records finished jobs: the server has run its UPDATE and
    holds those rows, A's COMMIT never arrives. B must still take over A's jobs once their
    leases end (not wait on A's row locks for as long as the partition lasts), and A, back,
    must write nothing over them."""
    lease = 4.0
    ledger = tmp_path / "ledger"
    a = daemon.start(*daemon_args(lease), env={"JOBRUNNER_DB": proxy.url(postgres_url), "LEDGER_MARK": "A"})
    b = daemon.make().start(*daemon_args(lease), env={"JOBRUNNER_DB": postgres_url, "LEDGER_MARK": "B"})
    submit_jobs(postgres_url, tmp_path, [ledger_job(script, ledger, TICK) for _ in range(400)])
    wait_until(lambda: sum(e.ended and e.marks == {"A"} for e in read_ledger(ledger).values()) >= 5, timeout=20)
    owner = daemon_id(postgres_url, a)
    proxy.pause_on(b"jobrunner_succeed_")  # the successes' statement (prepared: by name)
    wait_until(lambda: not proxy.forwarding.is_set(), timeout=20)
    paused_at = time.time()
    held = query(postgres_url, "SELECT id, attempts FROM job WHERE lease_owner=%s AND status='running'", (owner,))
    assert held

    def taken_over() -> bool:
        now = statuses(postgres_url)
        return time.time() >= paused_at + 2 * lease and all(now[job][1] > attempt for job, attempt in held)

    wait_until(taken_over, timeout=10 * lease)
    [(beat,)] = query(postgres_url, "SELECT heartbeat_at FROM daemon WHERE id=%s", (daemon_id(postgres_url, b),))
    assert beat > time.time() - lease / 8 - 1.0, "B's heartbeat stalled during A's partition"
    proxy.resume()
    wait_until(lambda: {s for s, _ in statuses(postgres_url).values()} == {"succeeded"}, timeout=60)
    check_ledger(read_ledger(ledger))
    check_history(postgres_url)
    assert a.proc is not None and a.proc.poll() is None
    assert "Traceback" not in a.output() + b.output()


# ------------------------------------------------------------------------------ the server goes away
class FakeSystemd:
    """A NOTIFY_SOCKET: collects what the daemon tells systemd, in a thread."""

    def __init__(self) -> None:
        import socket
        import tempfile
        import threading

        self.path = os.path.join(tempfile.mkdtemp(prefix="jr-notify-"), "sock")  # AF_UNIX: 108 bytes at most
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self.open = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while self.open:
            with contextlib.suppress(TimeoutError, OSError):
                self.messages.append(self.sock.recv(4096).decode())

    def statuses(self) -> list[str]:
        return [line[len("STATUS="):] for m in list(self.messages) for line in m.splitlines() if line.startswith("STATUS=")]

    def status(self) -> str:
        said = self.statuses()
        return said[-1] if said else ""

    def close(self) -> None:
        self.open = False
        self.thread.join(timeout=5)
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(os.path.dirname(self.path))


@pytest.fixture
def systemd() -> Iterator[FakeSystemd]:
    started = FakeSystemd()
    yield started
    started.close()


def with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, at = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{at}"


def another_host(url: str, tmp_path: Path) -> dict[str, str]:
    return {"JOBRUNNER_DB": url, "XDG_STATE_HOME": str(tmp_path / "another-host")}


def assert_one_line_error(done: Any, url: str) -> None:
    """Exit 1 and one line on stderr naming the database without its password."""
    from jobrunner.secrets import redact_target

    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobrunner: error: "), done.stderr
    assert redact_target(url) in lines[0] and "s3cret" not in done.stderr + done.stdout, lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_while_the_server_is_away_the_daemon_says_it_is_reconnecting_and_carries_on(
    postgres_url, proxy, daemon, script, systemd, tmp_path
):
    """The server goes away (every connection closed, new ones refused) and comes back. While
    it is away the daemon's STATUS= and `jobrunner status` (from a host that still reaches the
    server) say it is reconnecting, a CLI command through the same way fails in one line, and
    the daemon's job is stopped before its lease ends; once back, the daemon carries on."""
    lease = 4.0
    ledger = tmp_path / "ledger"
    a = daemon.start(*daemon_args(lease), env={"JOBRUNNER_DB": proxy.url(postgres_url), "LEDGER_MARK": "A",
                                              "NOTIFY_SOCKET": systemd.path})  # fmt: skip
    [job] = submit_jobs(postgres_url, tmp_path, [ledger_job(script, ledger, 3 * lease)])
    wait_until(lambda: read_ledger(ledger), timeout=20)
    wait_until(lambda: systemd.status().startswith("1 running"), timeout=10)
    [(lease_until,)] = query(postgres_url, "SELECT lease_until FROM job WHERE id=%s", (job,))

    proxy.drop()
    wait_until(lambda: systemd.status().startswith("reconnecting to the database"), timeout=10)
    assert all(str(proxy.port) in s for s in systemd.statuses() if s.startswith("reconnecting"))

    def elsewhere() -> str:
        done = run_jobrunner("status", env=another_host(postgres_url, tmp_path))
        assert done.returncode == 0, done.stderr
        return done.stdout

    wait_until(lambda: "reconnecting to the database" in elsewhere(), timeout=20, interval=0.5)
    secret = with_password(proxy.url(postgres_url), "s3cret")
    for args in (["status"], ["list"], ["submit", "--", "true"]):
        assert_one_line_error(run_jobrunner(*args, env=another_host(secret, tmp_path), timeout=30), secret)
    wait_until(lambda: time.time() > lease_until + 0.5, timeout=2 * lease)
    [first] = read_ledger(ledger).values()
    assert first.last < lease_until and not first.ended, (first, lease_until)  # stopped by its worker in time

    proxy.resume()
    wait_until(lambda: "running," in systemd.status(), timeout=20)
    wait_until(lambda: "reconnecting" not in elsewhere(), timeout=20, interval=0.5)  # its next heartbeat, seen from elsewhere
    wait_until(lambda: statuses(postgres_url)[job][0] == "succeeded", timeout=60)
    after = submit_jobs(postgres_url, tmp_path, [ledger_job(script, ledger, 0.1) for _ in range(3)])
    wait_until(lambda: all(statuses(postgres_url)[j][0] == "succeeded" for j in after), timeout=30)
    check_ledger(read_ledger(ledger))
    check_history(postgres_url)
    assert a.proc is not None and a.proc.poll() is None
    assert "Traceback" not in a.output()
    assert "database reachable again" in a.output()


def test_a_cli_command_with_the_server_down_says_so_in_one_line(postgres_url, tmp_path):
    """Nothing listens on the port: one line naming the URL without its password, exit 1."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = with_password(postgres_url.replace(":5432/", f":{port}/"), "s3cret")
    for args in (["status"], ["list"], ["show", "1"], ["submit", "--", "true"], ["cancel", "1"]):
        assert_one_line_error(run_jobrunner(*args, env=another_host(down, tmp_path), timeout=30), down)


@pytest.mark.slow
def test_a_cli_command_with_the_server_silent_says_so_in_one_line(postgres_url, proxy, tmp_path):
    """A partition: the server's port accepts (the backlog) but nothing answers."""
    proxy.pause()
    secret = with_password(proxy.url(postgres_url), "s3cret")
    import subprocess

    try:
        done = run_jobrunner("status", env=another_host(secret, tmp_path), timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("jobrunner status hung on a server that does not answer")
    assert_one_line_error(done, secret)


def test_a_recovery_leaves_alone_a_lease_renewed_after_it_was_found_expired(postgres_url, tmp_path):
    """recover_expired finds expired leases, then records each as lost: a lease its owner renewed
    in between (a daemon back from a partition) is checked again under the row lock and kept."""
    from jobrunner.domain.failures import Failure, FailureKind
    from jobrunner.domain.jobspec import build_spec
    from jobrunner.store import open_store, repo, runs

    store = open_store(postgres_url)
    try:
        now = time.time()
        job = repo.submit(store, build_spec({"command": ["true"], "retries": 3}), now)
        [claim] = runs.claim(store, "a", now, 1, 4.0, str(tmp_path))
        later = now + 5.0  # the lease ran out: found expired...
        assert runs.expired_leases(store, later) == {(job, claim.attempt): "a"}
        assert runs.heartbeat(store, "a", later, 4.0, busy=1) == {(job, claim.attempt)}  # ...renewed meanwhile
        lost = runs.Outcome(job, claim.attempt, Failure(FailureKind.LOST, "lost: daemon a died (lease expired)"))
        [record] = runs.finish(store, None, [lost], later, expired=True)
        assert record.status is None
        assert query(postgres_url, "SELECT status, lease_owner FROM job WHERE id=%s", (job,)) == [("running", "a")]
        assert runs.finish(store, None, [lost], later + 5.0, expired=True)[0].status.value == "retrying"
    finally:
        store.close()


# ------------------------------------------------------------------------------ three daemons, one killed
def test_three_daemons_3000_jobs_one_killed_midway_lose_nothing_and_run_nothing_twice(postgres_url, daemon, tmp_path):
    """Three daemons on one database share 3,000 short jobs; one is killed with SIGKILL halfway.
    Every job succeeds; the only jobs with a second attempt are those the killed daemon was
    running (started, its end not yet recorded); nothing else runs twice, nothing is lost."""
    ledger = tmp_path / "ledger"
    started = time.monotonic()
    daemons = {"A": daemon, "B": daemon.make(), "C": daemon.make()}
    for mark, process in daemons.items():
        process.start(*daemon_args(3.0), env={"JOBRUNNER_DB": postgres_url, "LEDGER_MARK": mark})
    job = {"callable": "tests.ledgerjobs:ledger", "kwargs": {"path": str(ledger), "pause": 0.002},
           "retries": 3, "backoff": "0s"}  # fmt: skip
    ids = submit_jobs(postgres_url, tmp_path, [job] * 3000)

    def ended() -> int:
        return ledger.read_text().count("\nend ") if ledger.exists() else 0

    wait_until(lambda: ended() >= 1500, timeout=60, interval=0.005)
    daemons["B"].kill(signal.SIGKILL)
    killed_at = time.time()
    wait_until(lambda: {s for s, _ in statuses(postgres_url).values()} == {"succeeded"}, timeout=90, interval=0.2)
    took = time.monotonic() - started

    attempts = read_ledger(ledger)
    check_ledger(attempts)
    check_history(postgres_url)
    final = statuses(postgres_url)
    assert sorted(final) == sorted(ids)
    for job_id, (_, count) in final.items():
        assert attempts[(job_id, count)].ended, (job_id, count)  # the attempt that succeeded ran to its end
    again = {job_id: count for job_id, (_, count) in final.items() if count > 1}
    assert set(again.values()) <= {2}, again
    unlogged = []
    for job_id in again:
        first = attempts.get((job_id, 1))
        if first is None:  # killed after its worker noted the start, before the job's first line
            unlogged.append(job_id)
            continue
        assert first.marks == {"B"} and first.start < killed_at, (job_id, first)
    # Jobs B held ahead that no worker started count a lost attempt each while the give-back of
    # never-started attempts is off (periodic.GIVE_BACK_UNSTARTED): their attempt 1 never ran.
    from jobrunner.daemon.periodic import GIVE_BACK_UNSTARTED

    assert len(unlogged) <= 2 or not GIVE_BACK_UNSTARTED, unlogged  # one job at a time per worker of B
    by_b = [a for a in attempts.values() if a.marks == {"B"}]
    assert by_b and [a for a in by_b if a.start < killed_at] == by_b  # B ran its share, then nothing
    for mark in "AC":
        assert "Traceback" not in daemons[mark].output()
    print(f"3 daemons, 3000 jobs, B killed: {len(again)} job(s) ran a second attempt; {took:.1f}s")


def test_a_daemon_stopped_while_the_server_is_away_exits_once_its_leases_lapse(postgres_url, proxy, daemon, script,
                                                                                tmp_path):  # fmt: skip
    """Issue 16 (nothing waits forever): SIGTERM reaches a daemon whose server has gone away. Its
    job ends, and its end cannot be written; the daemon waits no longer than its leases last
    (after that the next daemon recovers the job anyway), says which ends it could not record,
    and exits 1. The next daemon recovers the job as a lost attempt and runs it again."""
    lease = 3.0
    ledger = tmp_path / "ledger"
    a = daemon.start(*daemon_args(lease), env={"JOBRUNNER_DB": proxy.url(postgres_url), "LEDGER_MARK": "A"})
    [job] = submit_jobs(postgres_url, tmp_path, [ledger_job(script, ledger, 0.5)])
    wait_until(lambda: read_ledger(ledger), timeout=20)
    proxy.drop()
    stopped = time.monotonic()
    a.signal(signal.SIGTERM)
    assert a.wait(timeout=6 * lease) == 1  # before: it retried its writes for as long as the server was away
    assert time.monotonic() - stopped < 3 * lease
    assert "1 job end(s) unrecorded" in a.output() and f"job {job} attempt 1" in a.output()
    assert "Traceback" not in a.output()
    proxy.resume()
    daemon.make().start(*daemon_args(lease), env={"JOBRUNNER_DB": postgres_url, "LEDGER_MARK": "B"})
    wait_until(lambda: statuses(postgres_url)[job][0] == "succeeded", timeout=30)
    assert statuses(postgres_url)[job][1] == 2  # the unrecorded attempt counts as lost
    check_ledger(read_ledger(ledger))
