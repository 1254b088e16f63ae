"""Chaos test (issue 12): a few hundred shell jobs under a real daemon while a seeded driver
kills workers, stops the daemon past its lease with a second daemon running, holds the
SQLite write lock, cancels and retries at random and restarts the daemon with kill -9.
Afterwards the promises are checked over the whole run:

1. no two attempts of one job overlap in time (grandchildren included: one process tree);
2. no attempt number appears twice for one job;
3. every job ends in a final state;
4. a cancelled job runs no attempt after its cancel (until the test itself retries it);
5. stop means stop: no process of an attempt outlives the recorded end of that attempt,
   and none is alive when the run is over.

Replay a run: JOBRUNNER_CHAOS_SEED=<seed> [JOBRUNNER_CHAOS_JOBS=<n>] [JOBRUNNER_CHAOS_SECONDS=<s>]
.venv/bin/pytest tests/test_chaos.py -x -s. Timing is real, so a replay repeats the same jobs
and the same sequence and pacing of faults, not the same interleaving to the millisecond.

The faults, each chosen and paced by random.Random(seed): SIGKILL a worker (busy ones
preferred; see chaoshelpers.worker_pids for how workers are told from the daemon's other
processes and from job processes); SIGSTOP daemon A past its lease while a second daemon B
runs (mostly B starts once A's leases have lapsed, so it takes A's jobs over), then SIGCONT;
hold SQLite's write lock for 0.5-2 s (BEGIN IMMEDIATE; on PostgreSQL, the job table locked
against writes); cancel a running, queued or retrying job, sometimes while its daemon is dead
or stopped; retry a dead or cancelled job; kill -9 daemon A and start it again. Jobs are submitted in three waves so there is work throughout.

How the evidence is gathered: every job process writes `start`/`end` (and a grandchild
`child`) lines to a ledger (see chaoshelpers.job_script). A SIGKILLed process writes no end
line, so a watcher thread polls every process the ledger names every 20 ms and notes the last
time it was certainly alive and when it was seen gone. Every interval the checks use is one in
which a process was certainly alive, so an overlap found is real, never an artefact of polling
(a slow poll can only hide a very short overlap, not invent one). The daemon's side comes from
`jobrunner show --json` (each job's history) and `list --json`; cancels and retries go through
the CLI, with the wall-clock times around each call recorded.

The report names every broken invariant with job ids, attempts, pids and times, each job's
ledger lines and daemon log lines, and the timeline of faults; it is also written to
chaos-report.txt in the test's tmp_path.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chaoschecks import (
    FINAL,
    Event,
    Request,
    check_attempt_numbers,
    check_cancels,
    check_final,
    check_nothing_left,
    check_overlaps,
    check_stops,
    report,
)
from tests.chaoshelpers import (
    LedgerLine,
    PidWatcher,
    Watched,
    job_processes,
    job_script,
    kill_leftovers,
    worker_pids,
)
from tests.conftest import is_url, wait_until

SEED = int(os.environ.get("JOBRUNNER_CHAOS_SEED") or 12012)
JOBS = int(os.environ.get("JOBRUNNER_CHAOS_JOBS") or 250)
CHAOS_S = float(os.environ.get("JOBRUNNER_CHAOS_SECONDS") or 24)
# After the chaos, for every job to end: a lease (3 s), the daemon's recovery period (10 s) and
# what is left in the queue, with room to spare.
FINAL_TIMEOUT = 40.0
LEASE = 3.0
DAEMON_ARGS = ("--workers", "3", "--lease", "3", "--heartbeat", "0.5")
SECOND_DAEMON_ARGS = ("--workers", "2", "--lease", "3", "--heartbeat", "0.5")


# ------------------------------------------------------------------------------------ the jobs


@dataclass
class JobPlan:
    index: int
    kind: str  # short, sleeper, failer, flaky, timeout
    sleep: float
    outcome: str  # ok, fail, flaky (see job_script)
    retries: int
    timeout: float | None
    grandchild: str | None  # None, "trap" or "setsid"
    priority: str

    def json_line(self, ledger: Path) -> str:
        spec: dict[str, Any] = {
            "command": ["sh", "-c", job_script(ledger, self.sleep, self.outcome, self.grandchild)],
            "name": f"chaos-{self.kind}-{self.index}" + (f"-{self.grandchild}" if self.grandchild else ""),
            "retries": self.retries,
            "backoff": "0.2s",
            "priority": self.priority,
        }
        if self.timeout is not None:
            spec["timeout"] = f"{self.timeout:.1f}s"
        return json.dumps(spec)


def make_plan(rng: random.Random, count: int) -> list[JobPlan]:
    """Many `true`-like jobs, some 0.2-3 s sleepers (a few leaving a grandchild behind), some
    that fail (with and without retries), some that succeed on a retry, some that time out."""
    plan = []
    for index in range(count):
        roll = rng.random()
        priority = rng.choice(["low", "normal", "normal", "normal", "high"])
        if roll < 0.55:
            job = JobPlan(index, "short", 0.0, "ok", rng.choice([0, 0, 1]), None, None, priority)
        elif roll < 0.80:
            sleep = rng.uniform(0.2, 1.0) if rng.random() < 0.7 else rng.uniform(1.0, 3.0)
            grandchild = rng.choices([None, "trap", "setsid"], weights=[70, 15, 15])[0]
            job = JobPlan(index, "sleeper", sleep, "ok", rng.choice([0, 1, 2]), None, grandchild, priority)
        elif roll < 0.88:
            job = JobPlan(
                index, "failer", rng.uniform(0.05, 0.5), "fail", rng.choice([0, 1, 2]), None, None, priority
            )
        elif roll < 0.94:
            job = JobPlan(index, "flaky", rng.uniform(0.1, 0.6), "flaky", 2, None, None, priority)
        else:
            grandchild = rng.choices([None, "trap", "setsid"], weights=[60, 25, 15])[0]
            job = JobPlan(index, "timeout", rng.uniform(2.0, 3.0), "ok", rng.choice([0, 1]),
                          round(rng.uniform(0.5, 1.0), 1), grandchild, priority)  # fmt: skip
        plan.append(job)
    return plan


# ------------------------------------------------------------------------------------ the driver


@dataclass
class Chaos:
    seed: int
    rng: random.Random
    cli: Any
    primary: Any  # DaemonProcess: the daemon A of the issue
    make_daemon: Any
    db_path: Path
    watcher: PidWatcher
    timeline: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    others: list[Any] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)  # ids of daemons we SIGSTOPped
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    began: float = field(default_factory=time.time)
    crashes: list[str] = field(default_factory=list)  # daemons that exited with nobody asking

    def note(self, text: str) -> None:
        now = time.time()
        line = f"{now:.3f} (+{now - self.began:5.1f}s) {text}"
        self.timeline.append(line)
        print(f"chaos[seed={self.seed}] {line}", flush=True)

    # ------------------------------------------------------------------ reading state
    def jobs(self, statuses: str | None = None) -> list[dict[str, Any]]:
        args = ["list", "-n", "0", "--json"] + (["-s", statuses] if statuses else [])
        result = self.cli(*args)
        if result.exit_code != 0:
            self.note(f"`jobrunner {' '.join(args)}` failed: {result.output.strip()}")
            return []
        return json.loads(result.stdout)

    def unfinished(self) -> int:
        result = self.cli("stats", "--json")
        if result.exit_code != 0:
            return -1
        by_status = json.loads(result.stdout)["by_status"]
        return sum(count for status, count in by_status.items() if status not in FINAL)

    def running_daemons(self) -> list[Any]:
        return [d for d in [self.primary, *self.others]
                if d.proc is not None and d.proc.poll() is None and id(d) not in self.stopped]  # fmt: skip

    # ------------------------------------------------------------------ actions
    def submit(self, plans: list[JobPlan], ledger: Path, wave: int) -> list[int]:
        path = ledger.parent / f"wave-{wave}.jsonl"
        path.write_text("".join(plan.json_line(ledger) + "\n" for plan in plans))
        ids = [int(line) for line in self.cli.ok("submit", "--from-file", str(path)).split()]
        assert len(ids) == len(plans), f"[seed={self.seed}] submitted {len(plans)} jobs, got ids {ids}"
        self.note(f"submitted wave {wave}: {len(ids)} jobs, ids {ids[0]}-{ids[-1]}")
        return ids

    def kill_worker(self) -> None:
        daemons = self.running_daemons()
        if not daemons:
            self.note("kill worker: no running daemon")
            return
        target = self.rng.choice(daemons)
        workers = worker_pids(target.proc.pid, exclude=self.watcher.pids())
        if not workers:
            self.note(f"kill worker: daemon {target.proc.pid} has no worker to kill")
            return
        busy = [pid for pid, kids in sorted(workers.items()) if kids]
        pid = self.rng.choice(busy) if busy and self.rng.random() < 0.8 else self.rng.choice(sorted(workers))
        jobs = []
        for kid in workers[pid]:
            watched = self.watcher.job_of(kid)
            jobs.append(
                f"job {watched.line.job} attempt {watched.line.attempt} (pid {kid})"
                if watched
                else f"pid {kid}"
            )
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.counts["kill_worker"] += 1
        self.note(
            f"SIGKILL worker {pid} of daemon {target.proc.pid}, running: {', '.join(jobs) or 'nothing'}"
        )

    def cancel(
        self, statuses: str = "running,queued,retrying", owner_pid: int | None = None, why: str = ""
    ) -> None:
        candidates = self.jobs(statuses)
        if owner_pid is not None:
            candidates = [j for j in candidates if f":{owner_pid}:" in (j.get("lease_owner") or "")]
        if not candidates:
            self.note(f"cancel{' ' + why if why else ''}: no {statuses} job to cancel")
            return
        job = self.rng.choice(sorted(candidates, key=lambda j: j["id"]))
        self._request("cancel", job["id"], why)

    def retry(self) -> None:
        candidates = self.jobs("dead,cancelled")
        if not candidates:
            self.note("retry: no dead or cancelled job")
            return
        job = self.rng.choice(sorted(candidates, key=lambda j: j["id"]))
        self._request("retry", job["id"])

    def _request(self, verb: str, job_id: int, why: str = "") -> None:
        t0 = time.time()
        result = self.cli(verb, str(job_id), "--json")
        t1 = time.time()
        outcome = None
        if result.exit_code == 0:
            outcome = next(o for o in json.loads(result.stdout) if o["id"] == job_id)
        request = Request(verb, job_id, t0, t1, result.exit_code, outcome, (result.stderr or "").strip(), why)
        self.requests.append(request)
        self.counts[verb] += 1
        self.note(request.describe())

    def hold_lock(self) -> None:
        hold = self.rng.uniform(0.5, 2.0)
        if is_url(self.db_path):
            self.hold_table_lock(hold)
            return
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=20, isolation_level=None)) as conn:
            asked = time.time()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # a daemon held it 20 s: the final checks will tell
                self.note(f"could not take the SQLite write lock in {time.time() - asked:.1f}s: {exc}")
                return
            got = time.time()
            time.sleep(hold)
            conn.execute("ROLLBACK")
        self.counts["hold_lock"] += 1
        self.note(
            f"held the SQLite write lock {got:.3f}-{time.time():.3f} ({hold:.2f}s, waited {got - asked:.2f}s for it)"
        )

    def hold_table_lock(self, hold: float) -> None:
        """PostgreSQL's nearest thing to SQLite's write lock: the job table locked against every
        write (readers go on), as a long migration or a bulk import by hand would."""
        import psycopg2

        with contextlib.closing(psycopg2.connect(str(self.db_path), connect_timeout=5)) as conn:
            cursor = conn.cursor()
            asked = time.time()
            try:
                cursor.execute("SET lock_timeout = '20s'")
                cursor.execute("LOCK TABLE job IN SHARE ROW EXCLUSIVE MODE")
            except psycopg2.Error as exc:  # a daemon held it 20 s: the final checks will tell
                self.note(f"could not lock the job table in {time.time() - asked:.1f}s: {exc}".strip())
                return
            got = time.time()
            time.sleep(hold)
            conn.rollback()
        self.counts["hold_lock"] += 1
        self.note(f"held the job table locked {got:.3f}-{time.time():.3f} ({hold:.2f}s, waited {got - asked:.2f}s for it)")

    def start(self, process: Any, args: tuple[str, ...], label: str) -> None:
        """Start a daemon and wait for its own "started:" line (a restarted one appends to its log)."""
        starts = process.output().count("started:")
        try:
            process.start(*args)
            wait_until(lambda: process.output().count("started:") > starts, timeout=20)
        except AssertionError:
            code = process.proc.poll() if process.proc else None
            tail = "\n".join(process.output().splitlines()[-15:])
            raise AssertionError(f"[seed={self.seed}] daemon {label} did not start within 20 s (exit code {code}); "
                                 f"its log ends:\n{tail}\n[seed={self.seed}]") from None  # fmt: skip
        self.note(f"daemon {label} started: pid {process.proc.pid}")

    def start_primary(self) -> None:
        self.start(self.primary, DAEMON_ARGS, "A")

    def restart(self) -> None:
        pid = self.primary.proc.pid
        self.primary.kill(signal.SIGKILL)
        self.primary.log.close()
        self.counts["restart"] += 1
        self.note(f"kill -9 daemon A (pid {pid})")
        down = self.rng.uniform(0.3, 2.0)
        until = time.time() + down
        if self.rng.random() < 0.6:  # the cancel a dead daemon must still honour
            self.cancel("running", owner_pid=pid, why=f"while daemon A (pid {pid}) is dead")
        time.sleep(max(0.0, until - time.time()))
        self.start_primary()

    def stall(self) -> None:
        """SIGSTOP daemon A for longer than its lease while a second daemon B runs, then SIGCONT.

        Mostly B starts once A's leases have lapsed, so its start-up recovery takes A's jobs over
        at once and runs their next attempts while A is frozen (the daemon recovers lapsed leases
        at start and then only every 10 s: a B started first would seldom get to them within the
        stall). Sometimes B runs from before the stop instead.
        """
        late = self.rng.random() < 0.7
        second = self.make_daemon()
        self.others.append(second)
        if not late:
            self.start(second, SECOND_DAEMON_ARGS, "B")
            time.sleep(self.rng.uniform(0.2, 1.0))
        pid = self.primary.proc.pid
        self.primary.pause()
        self.stopped.add(id(self.primary))
        stopped_at = time.time()
        self.counts["stall"] += 1
        self.note(
            f"SIGSTOP daemon A (pid {pid}); B {'starts once its lease has lapsed' if late else 'runs already'}"
        )
        if self.rng.random() < 0.7:  # a cancel that whoever takes A's jobs over must honour
            time.sleep(max(0.0, stopped_at + self.rng.uniform(0.2, LEASE * 0.8) - time.time()))
            self.cancel("running", owner_pid=pid, why=f"while daemon A (pid {pid}) is stopped")
        if late:
            time.sleep(max(0.0, stopped_at + LEASE + 0.3 - time.time()))
            self.start(second, SECOND_DAEMON_ARGS, "B")
        time.sleep(max(0.0, max(time.time(), stopped_at + LEASE) + self.rng.uniform(0.5, 2.0) - time.time()))
        self.primary.signal(signal.SIGCONT)
        self.stopped.discard(id(self.primary))
        self.note(f"SIGCONT daemon A (pid {pid}) after {time.time() - stopped_at:.2f}s stopped")
        time.sleep(self.rng.uniform(0.5, 2.5))
        if self.rng.random() < 0.5:
            second.kill(signal.SIGKILL)
            second.stop()
            self.note(f"kill -9 daemon B (pid {second.proc.pid})")
        else:
            second.stop()
            self.note(f"stopped daemon B (pid {second.proc.pid}) with SIGTERM: exit {second.proc.returncode}")

    def check_primary(self) -> None:
        """Daemon A exits only when the test stops it: anything else is a finding, and it is restarted."""
        if self.primary.proc.poll() is None:
            return
        tail = " | ".join(self.primary.output().splitlines()[-5:])
        self.crashes.append(
            f"daemon A (pid {self.primary.proc.pid}) exited by itself with {self.primary.proc.returncode}: {tail}"
        )
        self.note(self.crashes[-1])
        self.primary.log.close()
        self.start_primary()

    def settle(self) -> None:
        """End the chaos: no second daemon, daemon A running and not stopped."""
        for other in self.others:
            if other.proc.poll() is None:
                other.signal(signal.SIGCONT)
                other.stop()
                self.note(f"stopped daemon B (pid {other.proc.pid}): exit {other.proc.returncode}")
        if id(self.primary) in self.stopped:
            self.primary.signal(signal.SIGCONT)
            self.stopped.discard(id(self.primary))
        self.check_primary()
        self.note("chaos over: daemon A runs alone")

    def run(self, waves: list[list[JobPlan]], ledger: Path) -> list[int]:
        """Submit the waves and act at random until the chaos time is up (or no work is left)."""
        ids = self.submit(waves[0], ledger, 0)
        wave_at = [CHAOS_S * (k + 1) / len(waves) * 0.7 for k in range(len(waves) - 1)]
        must = ["kill_worker", "kill_worker", "stall", "hold_lock", "cancel", "cancel", "retry", "restart"]
        self.rng.shuffle(must)
        weights = {"kill_worker": 4, "cancel": 4, "retry": 2, "hold_lock": 2, "restart": 1, "stall": 1}
        actions = {"kill_worker": self.kill_worker, "cancel": self.cancel, "retry": self.retry,
                   "hold_lock": self.hold_lock, "restart": self.restart, "stall": self.stall}  # fmt: skip
        wave = 1
        while True:
            self.check_primary()
            elapsed = time.time() - self.began
            if wave < len(waves) and elapsed >= wave_at[wave - 1]:
                ids += self.submit(waves[wave], ledger, wave)
                wave += 1
                continue
            if elapsed >= CHAOS_S or (wave == len(waves) and self.unfinished() == 0):
                break
            if must:
                name = must.pop()
            else:
                name = self.rng.choices(list(weights), weights=list(weights.values()))[0]
                if name == "stall" and (self.counts["stall"] >= 2 or CHAOS_S - elapsed < LEASE + 7):
                    name = "kill_worker"
            actions[name]()
            time.sleep(self.rng.uniform(0.1, 0.8))
        return ids


@pytest.mark.slow
def test_chaos(cli, daemon, db_path, tmp_path):
    seed, rng = SEED, random.Random(SEED)
    print(f"\nchaos: seed={seed} jobs={JOBS} seconds={CHAOS_S:g} "
          f"(replay with JOBRUNNER_CHAOS_SEED={seed} JOBRUNNER_CHAOS_JOBS={JOBS})", flush=True)  # fmt: skip
    ledger = tmp_path / "ledger"
    ledger.touch()
    plan = make_plan(rng, JOBS)
    cut = [0, len(plan) // 2, len(plan) * 3 // 4, len(plan)]
    waves = [plan[cut[k] : cut[k + 1]] for k in range(3)]
    watcher = PidWatcher(ledger).start()
    chaos = Chaos(seed, rng, cli, daemon, daemon.make, db_path, watcher)
    started = time.monotonic()
    try:
        try:
            chaos.start_primary()
            ids = chaos.run(waves, ledger)
            chaos.settle()
        except Exception as exc:  # the driver itself failed: say where in the run, with the seed
            timeline = "\n".join(f"  {line}" for line in chaos.timeline)
            raise AssertionError(
                f"[seed={seed}] the chaos driver failed: {exc!r}\ntimeline:\n{timeline}\n[seed={seed}]"
            ) from exc
        unfinished_in_time = True
        try:
            wait_until(lambda: chaos.unfinished() == 0, timeout=FINAL_TIMEOUT, interval=0.2)
        except AssertionError:
            unfinished_in_time = False
        chaos.note(
            f"{'every job is final' if unfinished_in_time else f'jobs still unfinished after {FINAL_TIMEOUT:g}s'}"
        )
        alive, stray = watcher.alive(), job_processes(db_path)  # the moment the run is over
        watcher.stop()
        jobs = {job["id"]: job for job in chaos.jobs()}
        events = {job_id: [Event.parse(e) for e in cli.json("show", str(job_id))["events"]] for job_id in ids}
        run_s = time.monotonic() - started
        sections = {
            "1 attempts overlap": check_overlaps(watcher.procs),
            "2 attempt number reused": check_attempt_numbers(watcher.lines),
            "3 job not final": check_final(ids, jobs, events),
            "4 cancel not durable": check_cancels(chaos.requests, jobs, events, watcher.procs),
            "5 stop does not mean stop": check_stops(watcher.procs, events, jobs)
            + check_nothing_left(alive, stray, jobs),
            "daemon exited by itself": chaos.crashes,
            "ledger malformed": [f"line {line!r}" for line in watcher.bad],
        }
        logs = [("A", daemon.output())] + [(f"B{k + 1}", d.output()) for k, d in enumerate(chaos.others)]
        text = report(seed, JOBS, CHAOS_S, sections, chaos.timeline, logs, watcher)
        statuses = defaultdict(int)
        for job in jobs.values():
            statuses[job["status"]] += 1
        print(
            f"\nchaos: run took {run_s:.1f}s; actions {dict(chaos.counts)}; final statuses {dict(statuses)}"
        )
        print(text, flush=True)
        (tmp_path / "chaos-report.txt").write_text(
            text + "\n\ntimeline:\n" + "\n".join(chaos.timeline) + "\n"
        )
        assert not any(sections.values()), text
        assert chaos.counts["stall"] and chaos.counts["restart"] and chaos.counts["kill_worker"], \
            f"[seed={seed}] the chaos did not do every kind of fault: {dict(chaos.counts)}"  # fmt: skip
    finally:
        watcher.stop()
        for process in [daemon, *chaos.others]:
            if process.proc is not None and process.proc.poll() is None:
                process.signal(signal.SIGCONT)
            process.stop()
        killed = kill_leftovers(watcher, db_path)
        if killed:
            print(f"chaos[seed={seed}] teardown killed {len(killed)} leftover job processes: {killed[:5]}")


# ------------------------------------------------------------------------------------ the checks' own tests


def _watched(job: int, attempt: int, start: float, end: float | None, last_alive: float | None = None,
             kind: str = "start", pid: int = 100) -> Watched:  # fmt: skip
    line = LedgerLine(kind, job, attempt, pid, start, None, f"{kind} {job} {attempt} {pid} {start}")
    watched = Watched(line, last_alive=last_alive)
    if end is not None:
        watched.end = LedgerLine("end", job, attempt, pid, end, 0, f"end {job} {attempt} {pid} {end} 0")
    return watched


def test_checks_find_overlaps_and_reused_attempts():
    clean = [_watched(1, 1, 10.0, 11.0), _watched(1, 2, 11.2, 12.0)]
    assert check_overlaps(clean) == []
    killed_but_alive = [_watched(1, 1, 10.0, None, last_alive=11.5), _watched(1, 2, 11.2, 12.0, pid=101)]
    assert (
        "attempt 1 (shell pid 100) was still running 0.300s after attempt 2 (shell pid 101)"
        in check_overlaps(killed_but_alive)[0]
    )
    leftover = [_watched(1, 1, 10.0, 11.0), _watched(1, 1, 10.1, None, 11.9, kind="child", pid=102),
                _watched(1, 2, 11.2, 12.0, pid=101)]  # fmt: skip
    assert "grandchild pid 102" in check_overlaps(leftover)[0]
    twice = [w.line for w in (_watched(3, 1, 1.0, 2.0), _watched(3, 1, 1.5, 2.5, pid=7))]
    assert check_attempt_numbers(twice) == [
        "job 3: attempt 1 started 2 times: pid 100 at 1.000; pid 7 at 1.500"
    ]


def test_checks_find_a_lost_cancel_and_a_late_stop():
    history = [Event(1.0, 0, None, "queued", "submitted"), Event(2.0, 1, "queued", "running", "attempt 1 started"),
               Event(3.0, 1, "running", "running", "cancel requested: cancelled by user"),
               Event(5.0, 1, "running", "retrying", "lost"), Event(6.0, 1, "retrying", "queued", "due"),
               Event(6.0, 2, "queued", "running", "attempt 2 started"), Event(7.0, 2, "running", "succeeded", "")]  # fmt: skip
    procs = [_watched(9, 1, 2.1, None, last_alive=5.5), _watched(9, 2, 6.1, 7.0, pid=101)]
    request = Request(
        "cancel", 9, 2.99, 3.02, 0, {"id": 9, "from": "running", "to": "running", "message": ""}
    )
    jobs = {9: {"status": "succeeded", "attempts": 2, "error": None}}
    found = check_cancels([request], jobs, {9: history}, procs)
    assert any("attempt 2 claimed at 6.000 after the cancel" in text for text in found)
    assert any("attempt 2 ran after the cancel of job 9" in text for text in found)
    assert not any("ended succeeded" in text for text in found)  # attempt 2 ran to its own end, exit 0
    dead = {9: {"status": "dead", "attempts": 2, "error": "exit code 3"}}
    assert any(
        "ended dead after the cancel" in text for text in check_cancels([request], dead, {9: history}, procs)
    )
    stops = check_stops(procs, {9: history}, jobs)
    assert stops and "attempt 1 recorded ended" in stops[0] and "alive 0.500s later" in stops[0]
    direct = Request("cancel", 9, 1.2, 1.3, 0, {"id": 9, "from": "queued", "to": "cancelled", "message": ""})
    cancelled = [history[0], Event(1.25, 0, "queued", "cancelled", "cancelled by user")]
    found = check_cancels([direct], {9: {"status": "cancelled", "attempts": 0}}, {9: cancelled}, procs)
    assert sum("a process began" in text for text in found) == 2
