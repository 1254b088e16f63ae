"""End-to-end throughput and pickup latency of a real `jobrunner daemon` with 2 workers.

(a) 5,000 no-op Python jobs submitted first, then the daemon started: jobs/s until all succeeded.
(b) pickup latency: submit (Python API) -> the job's code starts, on an idle daemon, over
    200 jobs with random idle gaps; median and p99.

Usage: python -m benchmarks.daemon_throughput [--jobs N] [--runs N] [--latency-jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_daemon(db: Path, workers: int = 2) -> subprocess.Popen:
    env = {**os.environ, "JOBRUNNER_DB": str(db), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobrunner", "daemon", "--workers", str(workers), "--log-level", "warning"],
        env=env, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    return proc


def stop_daemon(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def throughput(jobs: int, workdir: Path, run: int) -> float:
    from jobrunner.cli.context import AppState
    from jobrunner.cli.submit import read_job_lines
    from jobrunner.store import repo

    db = workdir / f"e2e-{run}.db"
    source = workdir / f"noop-{run}.jsonl"
    source.write_text(json.dumps({"callable": "benchmarks.noop:noop"}) + "\n" * 1 + "".join(
        json.dumps({"callable": "benchmarks.noop:noop"}) + "\n" for _ in range(jobs - 1)))  # fmt: skip
    state = AppState(db_option=str(db))
    repo.submit_many(state.store, read_job_lines(str(source), state, time.time()), time.time())
    store = state.store
    start = time.perf_counter()
    proc = start_daemon(db)
    try:
        while store.execute("SELECT COUNT(*) FROM job WHERE status='succeeded'").fetchone()[0] < jobs:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
    finally:
        stop_daemon(proc)
        state.close()
    return jobs / elapsed


def pickup(count: int, workdir: Path) -> list[float]:
    """Seconds from submit() returning... measured from just before submit to the job's own clock."""
    db = workdir / "pickup.db"
    marks = workdir / "marks"
    marks.mkdir()
    os.environ["JOBRUNNER_DB"] = str(db)
    from jobrunner import submit

    submit("benchmarks.noop:noop")  # creates the database before the daemon starts
    proc = start_daemon(db)
    time.sleep(2.0)  # let the workers come up
    rng = random.Random(1)
    latencies = []
    try:
        for n in range(count):
            time.sleep(rng.uniform(0.005, 0.05))
            path = marks / f"{n}"
            sent = time.time()
            submit("benchmarks.noop:mark", kwargs={"path": str(path)})
            while not path.exists():
                time.sleep(0.0002)
            latencies.append(float(path.read_text()) - sent)
    finally:
        stop_daemon(proc)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-jobs", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rates = [throughput(options.jobs, Path(tmp), n) for n in range(options.runs)]
        latencies = sorted(pickup(options.latency_jobs, Path(tmp)))
    print(f"end to end, {options.jobs} no-op Python jobs, 2 workers (submitted first, then the daemon)")
    print(f"  jobs/s : {statistics.median(rates):>8,.0f}  (min {min(rates):,.0f}, max {max(rates):,.0f})")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"pickup latency over {len(latencies)} jobs with idle gaps (submit -> job code starts)")
    print(f"  median {statistics.median(latencies) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {latencies[-1] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
