"""Many threads of one process submitting through the Python API, as a web app does.

Per run, on a fresh database each:
  - new database: 8 threads submit `jobs` jobs each to a database that does not exist yet
    (the first submit opens and migrates it): the count of failures (bar: 0) and the rate;
  - existing database: the same 8 threads, against one thread submitting as many jobs alone.
    Bar: the 8 threads together reach at least 0.8x the single thread's rate (they take turns
    at SQLite's write lock inside the process: Store.write_lock).
Each run is a fresh process (the API caches one store per database and process).

Usage: python -m benchmarks.threads [--jobs N] [--runs N] [--json FILE]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Figure, standalone

THREADS = 8
BAR_RATIO = 0.8

_CHILD = r"""
import json, sys, threading, time
import jobrunner
jobs, new_db, old_db = int(sys.argv[1]), sys.argv[2], sys.argv[3]
failures = []
def work(db, count):
    for _ in range(count):
        try:
            jobrunner.submit(["true"], db=db)
        except Exception as exc:
            failures.append(str(exc))
def threaded(db):
    threads = [threading.Thread(target=work, args=(db, jobs)) for _ in range(8)]
    start = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    return 8 * jobs / (time.perf_counter() - start)
new_rate = threaded(new_db)
new_failures = len(failures)
jobrunner.submit(["true"], db=old_db)  # created and warm
old_rate = threaded(old_db)
start = time.perf_counter()
work(old_db, 8 * jobs)
single = 8 * jobs / (time.perf_counter() - start)
print(json.dumps({"new_rate": new_rate, "new_failures": new_failures, "failures": len(failures),
                  "threads": old_rate, "single": single}))
"""


def one_run(jobs: int, work: Path) -> dict[str, float]:
    env_dir = work / "state"
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(jobs), str(work / "new.db"), str(work / "old.db")],
        capture_output=True, text=True, check=True, cwd=work,
        env={"PATH": "/usr/bin:/bin", "HOME": str(work), "XDG_STATE_HOME": str(env_dir),
             "XDG_CONFIG_HOME": str(work / "config"), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )  # fmt: skip
    return json.loads(result.stdout)


def measure(jobs: int = 500, runs: int = 3) -> list[Figure]:
    results = []
    with tempfile.TemporaryDirectory(prefix="jobrunner-threads-") as tmp:
        for run in range(runs):
            work = Path(tmp) / str(run)
            work.mkdir(mode=0o700)
            results.append(one_run(jobs, work))
    return [
        Figure(f"{THREADS} threads, new database: failures", "jobs", [r["new_failures"] for r in results],
               higher_is_better=False, bar=0, note=f"{THREADS} x {jobs:,} submits, the first one creates it"),
        Figure(f"{THREADS} threads, new database: rate", "jobs/s", [r["new_rate"] for r in results]),
        Figure(f"{THREADS} threads, existing database", "jobs/s", [r["threads"] for r in results],
               note=f"failures in all: {sum(r['failures'] for r in results)}"),
        Figure("  one thread alone, as many jobs", "jobs/s", [r["single"] for r in results]),
        Figure(f"  ratio {THREADS} threads / one", "x", [r["threads"] / r["single"] for r in results], bar=BAR_RATIO),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__, {"jobs": "jobs per thread"})


if __name__ == "__main__":
    main()
