"""jobrunner side by side with huey 3's SqliteHuey, every ratio measured in the same run.

(a) enqueue one at a time through the Python API: jobrunner `submit("benchmarks.noop:noop")`
    (the job row and its event, committed on return) against huey `noop_task()` (one row).
(b) end to end: N no-op Python jobs submitted first (untimed), then the clock starts, the daemon
    (`jobrunner daemon --workers 2`) or the consumer (`huey_consumer ... -w 2 -k process` at its
    fastest polling) is started, and it stops when every job has finished: jobrunner's job rows
    say succeeded, huey's result store holds every result (store_none: None results are stored).
(c) pickup latency, submit -> the job's code starts, on an idle daemon/consumer, over jobs with
    random idle gaps (the same gaps for both): median and p99 per run.

huey runs with `PRAGMA synchronous=NORMAL` by default here, jobrunner's default durability, so
both pay the same fsyncs; huey as shipped (SQLite's default, FULL) is shown for context.
Each figure is the median of the runs, runs interleaved; a fresh database for every run.
Needs huey: pip install -e '.[bench]'.

Usage: python -m benchmarks.huey_compare [--jobs N] [--e2e-jobs N] [--latency-jobs N] [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from benchmarks.common import Figure, isolated, table

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
# huey's fastest polling: 1 ms between polls when idle, no back-off; warnings only (as the daemon's log level).
HUEY_POLLING = ["-d", "0.001", "-m", "0.001", "-b", "1", "-q"]
E2E_TIMEOUT = 600.0
BAR_ENQUEUE_RATIO = 3.0
BAR_E2E_RATIO = 4.0
BAR_PICKUP_MEDIAN_MS = 1.5
BAR_PICKUP_P99_MS = 5.0


# -- subprocesses: each in its own session, its whole process group ended on the way out ------------


@contextmanager
def running(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path, stop: int
) -> Iterator[subprocess.Popen]:
    """Start `argv` in a new session; afterwards send `stop` to it, then SIGKILL whatever is left of its group."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        end_group(proc, stop)


def end_group(proc: subprocess.Popen, stop: int, grace: float = 20.0) -> None:
    """Stop the leader gracefully, then kill every process still in its group (orphaned workers too)."""
    if proc.poll() is None:
        try:
            proc.send_signal(stop)
            proc.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    with suppress(ProcessLookupError, PermissionError):  # nothing left in the group
        os.killpg(proc.pid, signal.SIGKILL)  # the group keeps the leader's pid as its id
    proc.wait()


def check_alive(proc: subprocess.Popen, log: Path) -> None:
    if proc.poll() is not None:
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise RuntimeError(f"{' '.join(map(str, proc.args))} exited {proc.returncode}:\n{tail}")


def child_env(**extra: str) -> dict[str, str]:
    """The current (isolated) environment, with this checkout importable by the workers."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@contextmanager
def jobrunner_daemon(db: Path, log: Path) -> Iterator[subprocess.Popen]:
    argv = [sys.executable, "-m", "jobrunner", "daemon", "--workers", str(WORKERS), "--log-level", "warning"]
    with running(argv, child_env(JOBRUNNER_DB=str(db)), db.parent, log, signal.SIGTERM) as proc:
        yield proc


@contextmanager
def huey_consumer(db: Path, log: Path, synchronous: str) -> Iterator[subprocess.Popen]:
    argv = [sys.executable, "-m", "huey.bin.huey_consumer", "benchmarks.huey_app.huey",
            "-w", str(WORKERS), "-k", "process", *HUEY_POLLING]  # fmt: skip
    env = child_env(HUEY_BENCH_DB=str(db), HUEY_BENCH_SYNCHRONOUS=synchronous)
    with running(argv, env, db.parent, log, signal.SIGINT) as proc:  # SIGINT: huey's graceful stop
        yield proc


# -- (a) enqueue ---------------------------------------------------------------------------------


def jobrunner_enqueue(jobs: int, db: Path) -> float:
    """jobs/s of submit("benchmarks.noop:noop") one at a time; the first call (open, migrate) untimed."""
    import jobrunner
    from jobrunner.api import connect

    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        submit = jobrunner.submit
        submit("benchmarks.noop:noop")
        start = time.perf_counter()
        for _ in range(jobs):
            submit("benchmarks.noop:noop")
        elapsed = time.perf_counter() - start
        connect(str(db)).close()
    return jobs / elapsed


def huey_enqueue(jobs: int, db: Path, synchronous: str) -> float:
    """jobs/s of noop_task() one at a time into a SqliteHuey; the first call (connect) untimed."""
    from benchmarks.huey_app import make_huey

    huey, noop_task, _ = make_huey(str(db), synchronous)
    try:
        noop_task()
        start = time.perf_counter()
        for _ in range(jobs):
            noop_task()
        return jobs / (time.perf_counter() - start)
    finally:
        huey.storage.close()


# -- (b) end to end ------------------------------------------------------------------------------


def wait_for_count(db: Path, query: str, target: int, proc: subprocess.Popen, log: Path) -> None:
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        deadline = time.monotonic() + E2E_TIMEOUT
        while conn.execute(query).fetchone()[0] < target:
            check_alive(proc, log)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target} jobs not done after {E2E_TIMEOUT:.0f} s ({db})")
            time.sleep(0.005)
    finally:
        conn.close()


def jobrunner_e2e(jobs: int, db: Path) -> float:
    import jobrunner
    from jobrunner.api import connect

    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        for _ in range(jobs):
            jobrunner.submit("benchmarks.noop:noop")
        connect(str(db)).close()
        log = db.with_suffix(".log")
        start = time.perf_counter()
        with jobrunner_daemon(db, log) as proc:
            wait_for_count(db, "SELECT COUNT(*) FROM job WHERE status = 'succeeded'", jobs, proc, log)
            elapsed = time.perf_counter() - start
    return jobs / elapsed


def huey_e2e(jobs: int, db: Path, synchronous: str) -> float:
    from benchmarks.huey_app import NAME, make_huey

    huey, noop_task, _ = make_huey(str(db), synchronous)
    try:
        for _ in range(jobs):
            noop_task()
    finally:
        huey.storage.close()
    log = db.with_suffix(".log")
    with isolated(db.parent):
        start = time.perf_counter()
        with huey_consumer(db, log, synchronous) as proc:
            wait_for_count(db, f"SELECT COUNT(*) FROM kv WHERE queue = '{NAME}'", jobs, proc, log)
            elapsed = time.perf_counter() - start
    return jobs / elapsed


# -- (c) pickup latency --------------------------------------------------------------------------


def pickups(submit_mark: Callable[[str], object], marks: Path, count: int, seed: int,
            proc: subprocess.Popen, log: Path) -> list[float]:  # fmt: skip
    """Seconds from just before each submit to the moment the job's code started (its own clock)."""

    def one(name: str) -> float:
        path = marks / name
        sent = time.time()
        submit_mark(str(path))
        deadline = time.monotonic() + 30
        while not path.exists():
            if time.monotonic() > deadline:
                check_alive(proc, log)
                raise RuntimeError(f"job {name} did not start within 30 s")
            time.sleep(0.0002)
        return float(path.read_text()) - sent

    marks.mkdir()
    for n in range(2 * WORKERS):  # warm-up: every worker has imported and run a job once
        one(f"warm-{n}")
    time.sleep(0.5)
    rng = random.Random(seed)
    latencies = []
    for n in range(count):
        time.sleep(rng.uniform(0.01, 0.1))
        latencies.append(one(str(n)))
    return latencies


def jobrunner_pickup(count: int, db: Path, seed: int) -> list[float]:
    import jobrunner
    from jobrunner.api import connect

    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        jobrunner.submit(["true"], name="create the database")  # before the daemon starts
        log = db.with_suffix(".log")
        try:
            with jobrunner_daemon(db, log) as proc:
                submit = jobrunner.submit
                return pickups(lambda path: submit("benchmarks.noop:mark", kwargs={"path": path}),
                               db.parent / f"marks-{db.stem}", count, seed, proc, log)  # fmt: skip
        finally:
            connect(str(db)).close()


def huey_pickup(count: int, db: Path, seed: int) -> list[float]:
    from benchmarks.huey_app import make_huey

    huey, _, mark_task = make_huey(str(db), "normal")
    log = db.with_suffix(".log")
    try:
        with isolated(db.parent), huey_consumer(db, log, "normal") as proc:
            return pickups(mark_task, db.parent / f"marks-{db.stem}", count, seed, proc, log)
    finally:
        huey.storage.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# -- all of it -----------------------------------------------------------------------------------


def measure(jobs: int = 5_000, e2e_jobs: int = 5_000, latency_jobs: int = 200, runs: int = 3) -> list[Figure]:
    enq: dict[str, list[float]] = {"jobrunner": [], "normal": [], "default": []}
    e2e: dict[str, list[float]] = {"jobrunner": [], "normal": [], "default": []}
    lat: dict[str, list[float]] = {"jr-median": [], "jr-p99": [], "huey-median": [], "huey-p99": []}
    with tempfile.TemporaryDirectory(prefix="jobrunner-huey-") as tmp:
        work = Path(tmp)
        for run in range(runs):  # interleaved, so drift in machine speed hits both alike
            enq["jobrunner"].append(jobrunner_enqueue(jobs, work / f"enq-jr-{run}.db"))
            for sync in ("normal", "default"):
                enq[sync].append(huey_enqueue(jobs, work / f"enq-huey-{sync}-{run}.db", sync))
            e2e["jobrunner"].append(jobrunner_e2e(e2e_jobs, work / f"e2e-jr-{run}.db"))
            for sync in ("normal", "default"):
                e2e[sync].append(huey_e2e(e2e_jobs, work / f"e2e-huey-{sync}-{run}.db", sync))
            for who, pickup in (("jr", jobrunner_pickup), ("huey", huey_pickup)):
                seconds = pickup(latency_jobs, work / f"pickup-{who}-{run}.db", seed=run)
                lat[f"{who}-median"].append(statistics.median(seconds) * 1000)
                lat[f"{who}-p99"].append(percentile(seconds, 0.99) * 1000)

    def ratio(a: list[float], b: list[float]) -> list[float]:
        return [x / y for x, y in zip(a, b, strict=True)]

    huey_ = "huey SqliteHuey"
    return [
        Figure(f"enqueue one at a time ({jobs:,}): jobrunner submit()", "jobs/s", enq["jobrunner"],
               note="job row + event row per call, committed on return (synchronous=NORMAL)"),
        Figure(f"  {huey_} noop_task(), synchronous=NORMAL", "jobs/s", enq["normal"],
               note="one task row per call; same durability as jobrunner"),
        Figure(f"  {huey_} noop_task(), as shipped (FULL)", "jobs/s", enq["default"]),
        Figure("  ratio jobrunner / huey (NORMAL)", "x", ratio(enq["jobrunner"], enq["normal"]),
               bar=BAR_ENQUEUE_RATIO),
        Figure("  ratio jobrunner / huey as shipped", "x", ratio(enq["jobrunner"], enq["default"])),
        Figure(f"end to end ({e2e_jobs:,} no-op, {WORKERS} workers): jobrunner", "jobs/s", e2e["jobrunner"],
               note="clock from starting the daemon until every job row says succeeded"),
        Figure(f"  {huey_}, {WORKERS} process workers, NORMAL", "jobs/s", e2e["normal"],
               note="clock from starting the consumer until every result is in its result store"),
        Figure(f"  {huey_}, {WORKERS} process workers, as shipped", "jobs/s", e2e["default"]),
        Figure("  ratio jobrunner / huey (NORMAL)", "x", ratio(e2e["jobrunner"], e2e["normal"]), bar=BAR_E2E_RATIO),
        Figure("  ratio jobrunner / huey as shipped", "x", ratio(e2e["jobrunner"], e2e["default"])),
        Figure(f"pickup latency ({latency_jobs} jobs, idle gaps): jobrunner median", "ms", lat["jr-median"],
               higher_is_better=False, bar=BAR_PICKUP_MEDIAN_MS,
               note="submit -> job code starts; median over the runs of each run's median / p99"),
        Figure("  jobrunner p99", "ms", lat["jr-p99"], higher_is_better=False, bar=BAR_PICKUP_P99_MS),
        Figure(f"  {huey_} median (polling every 1 ms)", "ms", lat["huey-median"], higher_is_better=False),
        Figure(f"  {huey_} p99", "ms", lat["huey-p99"], higher_is_better=False),
        Figure("  ratio huey / jobrunner, medians", "x", ratio(lat["huey-median"], lat["jr-median"])),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs enqueued per run (a)")
    parser.add_argument("--e2e-jobs", type=int, default=5_000, help="jobs run end to end per run (b)")
    parser.add_argument("--latency-jobs", type=int, default=200, help="jobs timed for pickup per run (c)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    options = parser.parse_args()
    figures = measure(options.jobs, options.e2e_jobs, options.latency_jobs, options.runs)
    print(table(figures))
    if options.json:
        Path(options.json).write_text(json.dumps([f.as_dict() for f in figures], indent=2) + "\n")


if __name__ == "__main__":
    main()
