"""jobrunner side by side with huey 3's SqliteHuey, every ratio measured in the same run.

The reference is huey as shipped: huey.SqliteHuey with its SQLite storage left at SQLite's
default `synchronous` (FULL), a consumer with 2 process workers at its fastest polling. That is
what the issue's bars and orientation numbers mean, so every bar (enqueue >= 3x, end to end
submitted first >= 4x, submitted while running >= 2x) is judged against it. huey with `PRAGMA synchronous=NORMAL`, the same
durability as jobrunner's default, is shown beside it as context, without a bar.

(a) enqueue one at a time through the Python API: jobrunner `submit("benchmarks.noop:noop")`
    (the job row and its event, committed on return) against huey `noop_task()` (one row).
(b) end to end, submitted first: N no-op Python jobs submitted (untimed), then the clock starts,
    the daemon (`jobrunner daemon --workers 2`) or the consumer (`huey_consumer ... -w 2 -k
    process` at its fastest polling) is started, and it stops when every job has finished:
    jobrunner's job rows say succeeded, huey's result store holds every result (store_none).
(c) end to end, submitted while running: the daemon / consumer is up and warm (a few jobs run
    first); a client in a separate process (benchmarks.submitter) submits N no-op jobs one at a
    time through the Python API; the clock runs from the client's first submit until every job
    has finished. The client's own submit rate is in the JSON (client_jobs_per_s).
(d) pickup latency, submit -> the job's code starts, on an idle daemon/consumer, over jobs with
    random idle gaps (the same gaps for both): median and p99 per run; huey as shipped.

Each figure is the median of the runs, runs interleaved; a fresh database for every run.
Needs huey: pip install -e '.[bench]'.

Usage: python -m benchmarks.huey_compare [--jobs N] [--e2e-jobs N] [--latency-jobs N] [--runs N] [--json FILE]
"""

from __future__ import annotations

import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import Figure, isolated, standalone
from benchmarks.procs import (
    SUCCEEDED,
    WORKERS,
    Counter,
    child_env,
    jobrunner_daemon,
    pickup_once,
    read_line,
    running,
    wait_daemon_ready,
    wait_for_count,
    wait_until,
)

# huey's fastest polling: 1 ms between polls when idle, no back-off; warnings only (as the daemon's log level).
HUEY_POLLING = ["-d", "0.001", "-m", "0.001", "-b", "1", "-q"]
BAR_ENQUEUE_RATIO = 3.0  # against huey as shipped
BAR_E2E_RATIO = 4.0  # (b) submitted first, against huey as shipped
BAR_LIVE_RATIO = 2.0  # (c) submitted while running, against huey as shipped
BAR_PICKUP_MEDIAN_MS = 1.5
BAR_PICKUP_P99_MS = 5.0
SYNCS = ("default", "normal")  # huey as shipped (SQLite's default, FULL), then NORMAL for context
WARM = 2 * WORKERS  # jobs run before a live run's clock starts: every worker has imported and run one


@contextmanager
def huey_consumer(db: Path, log: Path, synchronous: str) -> Iterator[subprocess.Popen]:
    argv = [sys.executable, "-m", "huey.bin.huey_consumer", "benchmarks.huey_app.huey",
            "-w", str(WORKERS), "-k", "process", *HUEY_POLLING]  # fmt: skip
    env = child_env(HUEY_BENCH_DB=str(db), HUEY_BENCH_SYNCHRONOUS=synchronous)
    with running(argv, env, db.parent, log, signal.SIGINT) as proc:  # SIGINT: huey's graceful stop
        yield proc


def huey_results(name: str) -> str:
    return f"SELECT COUNT(*) FROM kv WHERE queue = '{name}'"


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


# -- (b) end to end, submitted first -----------------------------------------------------------


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
            wait_for_count(db, SUCCEEDED, jobs, proc, log)
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
            wait_for_count(db, huey_results(NAME), jobs, proc, log)
            elapsed = time.perf_counter() - start
    return jobs / elapsed


# -- (c) end to end, submitted while running ------------------------------------------------------


def start_client(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """benchmarks.submitter in its own process, set up and waiting for "go"."""
    client = subprocess.Popen([sys.executable, "-m", "benchmarks.submitter", *args], env=env, cwd=cwd,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        ready = read_line(client, 60, "the client to get ready")
    except BaseException:
        client.kill()
        client.wait()
        raise
    if ready != "ready":
        client.kill()
        raise RuntimeError(f"client said {ready!r} instead of ready")
    return client


def drive(client: subprocess.Popen, done: Counter, target: int, proc: subprocess.Popen,
          log: Path) -> tuple[float, float]:  # fmt: skip
    """Seconds from "go" until `done` reaches `target`, and the client's own seconds to submit."""
    try:
        start = time.perf_counter()
        client.stdin.write("go\n")  # type: ignore[union-attr]
        client.stdin.flush()  # type: ignore[union-attr]
        wait_until(lambda: done() >= target, f"{target} jobs done", proc=proc, log=log)
        elapsed = time.perf_counter() - start
        said = read_line(client, 60, "the client to finish")
        client.wait(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        done.close()
    return elapsed, float(said.split()[1])


def jobrunner_live(jobs: int, db: Path) -> tuple[float, float]:
    """jobs/s from the client's first submit until all succeeded; and the client's own submit rate."""
    import jobrunner
    from jobrunner.api import connect
    from jobrunner.store import open_store

    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        open_store(str(db)).close()
        log = db.with_suffix(".log")
        with jobrunner_daemon(db, log) as proc:
            wait_daemon_ready(db, proc, log)
            for _ in range(WARM):
                jobrunner.submit("benchmarks.noop:noop")
            connect(str(db)).close()
            wait_for_count(db, SUCCEEDED, WARM, proc, log, timeout=60)
            client = start_client(["jobrunner", str(jobs)], child_env(JOBRUNNER_DB=str(db)), db.parent)
            elapsed, submitting = drive(client, Counter(db, SUCCEEDED), WARM + jobs, proc, log)
    return jobs / elapsed, jobs / submitting


def huey_live(jobs: int, db: Path, synchronous: str) -> tuple[float, float]:
    from benchmarks.huey_app import NAME, make_huey

    huey, noop_task, _ = make_huey(str(db), synchronous)
    log = db.with_suffix(".log")
    with isolated(db.parent), huey_consumer(db, log, synchronous) as proc:
        try:
            for _ in range(WARM):
                noop_task()
        finally:
            huey.storage.close()
        wait_for_count(db, huey_results(NAME), WARM, proc, log, timeout=60)
        env = child_env(HUEY_BENCH_DB=str(db), HUEY_BENCH_SYNCHRONOUS=synchronous)
        client = start_client(["huey", str(jobs), synchronous], env, db.parent)
        elapsed, submitting = drive(client, Counter(db, huey_results(NAME)), WARM + jobs, proc, log)
    return jobs / elapsed, jobs / submitting


# -- (d) pickup latency --------------------------------------------------------------------------


def pickups(submit_mark: Callable[[str], object], marks: Path, count: int, seed: int,
            proc: subprocess.Popen, log: Path) -> list[float]:  # fmt: skip
    """Seconds from just before each submit to the moment the job's code started (its own clock)."""

    def one(name: str) -> float:
        return pickup_once(submit_mark, marks / name, proc, log)

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

    huey, _, mark_task = make_huey(str(db), "default")  # as shipped
    log = db.with_suffix(".log")
    try:
        with isolated(db.parent), huey_consumer(db, log, "default") as proc:
            return pickups(mark_task, db.parent / f"marks-{db.stem}", count, seed, proc, log)
    finally:
        huey.storage.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# -- all of it -----------------------------------------------------------------------------------


def ratio(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b, strict=True)]


def measure(jobs: int = 5_000, e2e_jobs: int = 5_000, latency_jobs: int = 200, runs: int = 3) -> list[Figure]:
    enq: dict[str, list[float]] = {"jobrunner": [], "normal": [], "default": []}
    e2e: dict[str, list[float]] = {"jobrunner": [], "normal": [], "default": []}
    live: dict[str, list[float]] = {"jobrunner": [], "normal": [], "default": []}
    client: dict[str, list[float]] = {"jobrunner": [], "normal": [], "default": []}
    lat: dict[str, list[float]] = {"jr-median": [], "jr-p99": [], "huey-median": [], "huey-p99": []}
    with tempfile.TemporaryDirectory(prefix="jobrunner-huey-") as tmp:
        work = Path(tmp)
        for run in range(runs):  # interleaved, so drift in machine speed hits both alike
            enq["jobrunner"].append(jobrunner_enqueue(jobs, work / f"enq-jr-{run}.db"))
            for sync in SYNCS:
                enq[sync].append(huey_enqueue(jobs, work / f"enq-huey-{sync}-{run}.db", sync))
            e2e["jobrunner"].append(jobrunner_e2e(e2e_jobs, work / f"e2e-jr-{run}.db"))
            for sync in SYNCS:
                e2e[sync].append(huey_e2e(e2e_jobs, work / f"e2e-huey-{sync}-{run}.db", sync))
            rate, submitting = jobrunner_live(e2e_jobs, work / f"live-jr-{run}.db")
            live["jobrunner"].append(rate)
            client["jobrunner"].append(submitting)
            for sync in SYNCS:
                rate, submitting = huey_live(e2e_jobs, work / f"live-huey-{sync}-{run}.db", sync)
                live[sync].append(rate)
                client[sync].append(submitting)
            for who, pickup in (("jr", jobrunner_pickup), ("huey", huey_pickup)):
                seconds = pickup(latency_jobs, work / f"pickup-{who}-{run}.db", seed=run)
                lat[f"{who}-median"].append(statistics.median(seconds) * 1000)
                lat[f"{who}-p99"].append(percentile(seconds, 0.99) * 1000)

    huey_ = "huey SqliteHuey"
    shipped, normal = "as shipped (FULL)", "synchronous=NORMAL (context)"
    return [
        Figure(f"enqueue one at a time ({jobs:,}): jobrunner submit()", "jobs/s", enq["jobrunner"],
               note="job row + event row per call, committed on return (synchronous=NORMAL)"),
        Figure(f"  {huey_} noop_task(), {shipped}", "jobs/s", enq["default"],
               note="one task row per call; the reference for the bars"),
        Figure(f"  {huey_} noop_task(), {normal}", "jobs/s", enq["normal"], note="huey at jobrunner's durability: no bar"),
        Figure("  ratio jobrunner / huey as shipped", "x", ratio(enq["jobrunner"], enq["default"]),
               bar=BAR_ENQUEUE_RATIO),
        Figure("  ratio jobrunner / huey NORMAL", "x", ratio(enq["jobrunner"], enq["normal"])),
        Figure(f"end to end, submitted first ({e2e_jobs:,} no-op, {WORKERS} workers): jobrunner", "jobs/s",
               e2e["jobrunner"], note="clock from starting the daemon until every job row says succeeded"),
        Figure(f"  {huey_}, {WORKERS} process workers, {shipped}", "jobs/s", e2e["default"],
               note="clock from starting the consumer until every result is in its result store"),
        Figure(f"  {huey_}, {WORKERS} process workers, {normal}", "jobs/s", e2e["normal"]),
        Figure("  ratio jobrunner / huey as shipped", "x", ratio(e2e["jobrunner"], e2e["default"]),
               bar=BAR_E2E_RATIO),
        Figure("  ratio jobrunner / huey NORMAL", "x", ratio(e2e["jobrunner"], e2e["normal"])),
        Figure(f"end to end, submitted while running ({e2e_jobs:,} no-op, {WORKERS} workers): jobrunner",
               "jobs/s", live["jobrunner"], extra={"client_jobs_per_s": client["jobrunner"]},
               note="a client process submits one at a time (Python API) while the daemon runs; clock "
                    "from its first submit until every job succeeded"),
        Figure(f"  {huey_}, {WORKERS} process workers, {shipped}", "jobs/s", live["default"],
               extra={"client_jobs_per_s": client["default"]},
               note="a client process enqueues one at a time while the consumer runs"),
        Figure(f"  {huey_}, {WORKERS} process workers, {normal}", "jobs/s", live["normal"],
               extra={"client_jobs_per_s": client["normal"]}),
        Figure("  ratio jobrunner / huey as shipped", "x", ratio(live["jobrunner"], live["default"]),
               bar=BAR_LIVE_RATIO),
        Figure("  ratio jobrunner / huey NORMAL", "x", ratio(live["jobrunner"], live["normal"])),
        Figure(f"pickup latency ({latency_jobs} jobs, idle gaps): jobrunner median", "ms", lat["jr-median"],
               higher_is_better=False, bar=BAR_PICKUP_MEDIAN_MS,
               note="submit -> job code starts; median over the runs of each run's median / p99"),
        Figure("  jobrunner p99", "ms", lat["jr-p99"], higher_is_better=False, bar=BAR_PICKUP_P99_MS),
        Figure(f"  {huey_} median, {shipped}, polling every 1 ms", "ms", lat["huey-median"],
               higher_is_better=False),
        Figure(f"  {huey_} p99", "ms", lat["huey-p99"], higher_is_better=False),
        Figure("  ratio huey / jobrunner, medians", "x", ratio(lat["huey-median"], lat["jr-median"])),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__, {'jobs': 'jobs enqueued per run (a)', 'e2e_jobs': 'jobs run end to end per run (b, c)', 'latency_jobs': 'jobs timed for pickup per run (d)'})


if __name__ == "__main__":
    main()
