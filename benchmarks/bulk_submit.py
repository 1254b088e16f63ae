"""Bulk submit of 10,000 jobs through `submit --from-file`'s code path, against bare inserts of the same rows.

Timed: read the file, parse and validate every line, store the jobs and their events in one
transaction (what `jobrunner submit --from-file` does after start-up). The lines differ from
each other (half shell jobs, half Python calls with arguments), as a real file's would.

Bare baselines store the very same rows (encoded beforehand, untimed) in one transaction,
without events: sqlite3 `executemany` of the INSERT (the floor), and peewee's `insert_many`
in chunks of 1,000 rows (what a peewee user would write).

Usage: python -m benchmarks.bulk_submit [--jobs N] [--runs N] [--json FILE]
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, isolated, standalone

BAR_JOBS_PER_S = 50_000.0
PEEWEE_CHUNK = 1_000  # 24 columns x 1,000 rows stays under SQLite's 32,766 bound variables


def write_source(path: Path, jobs: int) -> Path:
    """A JSON-lines file of `jobs` distinct jobs: shell commands and Python calls, alternating."""
    lines = []
    for i in range(jobs):
        if i % 2:
            job = {"callable": "json:dumps", "kwargs": {"month": f"2026-{i % 12 + 1:02d}", "n": i},
                   "priority": "high"}  # fmt: skip
        else:
            job = {"command": ["convert", f"img-{i:05d}.png", f"img-{i:05d}.jpg"], "tags": ["images"]}
        lines.append(json.dumps(job))
    path.write_text("\n".join(lines) + "\n")
    return path


def bulk_seconds(source: Path, db: Path) -> tuple[float, int]:
    """Seconds for parse + validate + insert + events: what `submit --from-file` runs once started."""
    from jobrunner.cli.context import AppState
    from jobrunner.cli.submit import submit_file

    state = AppState(db_option=str(db), command=("submit",))
    state.store  # noqa: B018 - open and migrate before the clock starts, as the CLI has by then
    state.config  # noqa: B018
    try:
        start = time.perf_counter()
        ids = submit_file(str(source), state, time.time())
        elapsed = time.perf_counter() - start
    finally:
        state.close()
    return elapsed, len(ids)


def job_rows(source: Path) -> list[tuple]:
    """The rows jobrunner stores for `source`, built untimed for the bare baselines."""
    from jobrunner.cli.context import AppState
    from jobrunner.cli.submit import read_job_lines
    from jobrunner.store import repo

    now = time.time()
    return [repo._job_row(spec, now) for spec in read_job_lines(str(source), AppState(command=("submit",)), now)]


def sqlite3_seconds(rows: list[tuple], db: Path) -> float:
    """sqlite3 executemany of the same INSERT, same pragmas, one transaction: the floor."""
    from jobrunner.store import open_store
    from jobrunner.store.backends import SQLITE

    open_store(str(db)).close()  # the same schema and indexes
    conn = sqlite3.connect(str(db), isolation_level=None, timeout=30)
    for pragma in ("journal_mode=wal", "synchronous=normal", "foreign_keys=1", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    try:
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(SQLITE.insert_job, rows)
        conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


def peewee_seconds(rows: list[tuple], db: Path) -> float:
    """peewee insert_many of the same rows in chunks, one transaction."""
    from jobrunner.store import open_store
    from jobrunner.store.backends import JOB_INSERT_COLUMNS
    from jobrunner.store.models import Job

    dicts = [dict(zip(JOB_INSERT_COLUMNS, row, strict=True)) for row in rows]
    store = open_store(str(db))
    try:
        start = time.perf_counter()
        with store.write():
            for at in range(0, len(dicts), PEEWEE_CHUNK):
                Job.insert_many(dicts[at : at + PEEWEE_CHUNK]).execute()
        return time.perf_counter() - start
    finally:
        store.close()


def measure(jobs: int = 10_000, runs: int = 5) -> list[Figure]:
    """Bulk rate, the two bare rates and the ratios, each over `runs` alternating runs."""
    bulk: list[float] = []
    bare: list[float] = []
    peewee: list[float] = []
    with tempfile.TemporaryDirectory(prefix="jobrunner-bench-") as tmp, isolated(tmp):
        work = Path(tmp)
        source = write_source(work / "jobs.jsonl", jobs)
        rows = job_rows(source)
        for run in range(runs):  # interleaved, so drift in machine speed hits all three alike
            seconds, stored = bulk_seconds(source, work / f"bulk-{run}.db")
            assert stored == jobs, f"stored {stored} of {jobs} jobs"
            bulk.append(jobs / seconds)
            bare.append(jobs / sqlite3_seconds(rows, work / f"bare-{run}.db"))
            peewee.append(jobs / peewee_seconds(rows, work / f"peewee-{run}.db"))
    return [
        Figure(f"bulk submit --from-file ({jobs:,} jobs)", "jobs/s", bulk, bar=BAR_JOBS_PER_S,
               note="parse + validate every line + insert + one event per job, one transaction"),
        Figure("  bare sqlite3 executemany, same rows", "jobs/s", bare, note="no events: the storage floor"),
        Figure("  bare peewee insert_many, same rows", "jobs/s", peewee,
               note=f"chunks of {PEEWEE_CHUNK:,} rows, no events"),
        Figure("  ratio bulk / bare sqlite3", "x", [b / s for b, s in zip(bulk, bare, strict=True)]),
        Figure("  ratio bulk / bare peewee", "x", [b / p for b, p in zip(bulk, peewee, strict=True)]),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__)


if __name__ == "__main__":
    main()
