"""Enqueue one job at a time through the Python API, each committed with its event when the call returns.

Timed: `submit(["true"])` called N times, the database coming from $JOBRUNNER_DB as in an
application that configures it once (the first call, which opens and migrates the file, is
not timed). The ceiling is the same two INSERTs and a commit per job with plain sqlite3 and
the same pragmas (WAL, synchronous=NORMAL, foreign keys), statements prepared once.

Usage: python -m benchmarks.enqueue [--jobs N] [--runs N] [--json FILE]
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, isolated, standalone

# DESIGN.md: ~25,000/s with peewee and statements built once, ~31,000/s with sqlite3, on the
# machine it was measured on; here the ratio to the sqlite3 ceiling in the same run is what counts.
DESIGN_FIGURE = 25_000.0


def api_seconds(jobs: int, db: Path) -> float:
    """Seconds for `jobs` calls of jobrunner.submit(["true"]) with JOBRUNNER_DB set."""
    import jobrunner
    from jobrunner.api import connect

    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        jobrunner.submit(["true"])  # opens and migrates the database: once per process, untimed
        submit = jobrunner.submit
        start = time.perf_counter()
        for _ in range(jobs):
            submit(["true"])
        elapsed = time.perf_counter() - start
        connect(str(db)).close()
    return elapsed


def sqlite3_seconds(jobs: int, db: Path) -> float:
    """The same job row and event row, one transaction per job, with plain sqlite3."""
    from jobrunner.store import open_store
    from jobrunner.store.backends import SQLITE

    open_store(str(db)).close()
    conn = sqlite3.connect(str(db), isolation_level=None, timeout=30)
    for pragma in ("journal_mode=wal", "synchronous=normal", "foreign_keys=1", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    insert_job, insert_event = SQLITE.insert_job, SQLITE.insert_event
    cwd = str(db.parent)
    try:
        start = time.perf_counter()
        for _ in range(jobs):
            now = time.time()
            cursor = conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(insert_job, ("true", "shell", None, '["true"]', None, "[]", "{}", "default", 5,
                                        "queued", 0, None, 1.0, 2.0, 300.0, "[]", "[]", "[]", "{}", cwd,
                                        "{}", now, now, now, None, None, None))  # fmt: skip
            cursor.execute(insert_event, (cursor.lastrowid, now, 0, None, "queued", "submitted", None))
            cursor.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


def measure(jobs: int = 5_000, runs: int = 5) -> list[Figure]:
    api: list[float] = []
    raw: list[float] = []
    with tempfile.TemporaryDirectory(prefix="jobrunner-bench-") as tmp:
        work = Path(tmp)
        for run in range(runs):  # interleaved, so drift in machine speed hits both alike
            api.append(jobs / api_seconds(jobs, work / f"api-{run}.db"))
            raw.append(jobs / sqlite3_seconds(jobs, work / f"raw-{run}.db"))
    return [
        Figure(f"enqueue, Python API ({jobs:,} one at a time)", "jobs/s", api,
               note="submit(['true']): one transaction with its event per call, committed on return"),
        Figure("  ceiling: sqlite3, same rows and commits", "jobs/s", raw,
               note=f"DESIGN.md measured ~{DESIGN_FIGURE:,.0f}/s (peewee, built once) on its machine"),
        Figure("  ratio API / sqlite3 ceiling", "x", [a / r for a, r in zip(api, raw, strict=True)]),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__)


if __name__ == "__main__":
    main()
