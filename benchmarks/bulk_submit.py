"""Bulk submit of 10,000 jobs through `submit --from-file`'s code path, against a bare insert_many.

Usage: python -m benchmarks.bulk_submit [--jobs N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from jobrunner.cli.context import AppState
from jobrunner.cli.submit import read_job_lines
from jobrunner.store import open_store, repo
from jobrunner.store.models import Job


def bulk_rate(jobs: int, workdir: Path, run: int) -> float:
    source = workdir / f"jobs-{run}.jsonl"
    source.write_text("".join(json.dumps({"command": ["true"], "tags": ["bench"]}) + "\n" for _ in range(jobs)))
    state = AppState(db_option=str(workdir / f"bulk-{run}.db"))
    store = state.store
    start = time.perf_counter()
    specs = read_job_lines(str(source), state, time.time())
    repo.submit_many(store, specs, time.time())
    elapsed = time.perf_counter() - start
    state.close()
    return jobs / elapsed


def bare_rate(jobs: int, workdir: Path, run: int) -> float:
    store = open_store(str(workdir / f"bare-{run}.db"))
    now = time.time()
    rows = [
        {"name": "true", "kind": "shell", "command": '["true"]', "status": "queued",
         "created_at": now, "run_at": now, "updated_at": now}
        for _ in range(jobs)
    ]  # fmt: skip
    start = time.perf_counter()
    with store.write():
        Job.insert_many(rows).execute()
    elapsed = time.perf_counter() - start
    store.close()
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bulk = [bulk_rate(options.jobs, workdir, n) for n in range(options.runs)]
        bare = [bare_rate(options.jobs, workdir, n) for n in range(options.runs)]
    print(f"bulk submit ({options.jobs} jobs, parse + validate + insert + events, one transaction)")
    print(f"  jobrunner --from-file : {statistics.median(bulk):>9,.0f} jobs/s  (min {min(bulk):,.0f}, max {max(bulk):,.0f})")
    print(f"  bare insert_many      : {statistics.median(bare):>9,.0f} jobs/s  (min {min(bare):,.0f}, max {max(bare):,.0f})")
    print(f"  ratio                 : {statistics.median(bulk) / statistics.median(bare):.2f}")


if __name__ == "__main__":
    main()
