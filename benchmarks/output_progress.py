"""A storm of progress reports: one Python job calls `job.report()` a million times.

Per run, a fresh database and a fresh `jobrunner daemon --workers 2` (warmed by a few no-op
jobs). Then one job, `benchmarks.output_progress:storm`, reports REPORTS times in a loop
(`job.report(i / n, "i/n")`, nothing else), and:
  - total: from just before the submit to its row saying succeeded (what a user waits);
  - the job's own loop: how long the REPORTS calls took inside the job (its result);
  - that the last report won: the stored message is the final "n/n".
A million calls end in well under a second now, too short for /proc's CPU ticks, so a second
job of the same kind reports for SECONDS (5 s) without a pause, and over it:
  - the daemon's CPU, as % of one core (utime + stime from /proc): bar <= 20%;
  - how often its row changed (the reader polls every 5 ms): the daemon's progress writes.
Over both, the SQLite WAL file's largest size, sampled every 5 ms: bar < 64 MB.
Before the reports were coalesced (in the worker and in the daemon), 1,000,000 calls took
12.3 s with about 80% of a core in the daemon.

Usage: python -m benchmarks.output_progress [--quick] [--reports N] [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, isolated, table
from benchmarks.procs import (
    SUCCEEDED,
    WORKERS,
    check_alive,
    cpu_seconds,
    daemon_tree,
    jobrunner_daemon,
    wait_daemon_ready,
    wait_for_count,
)

REPORTS = 1_000_000
SECONDS = 5.0  # the timed storm, long enough for /proc's CPU ticks (10 ms) to say something
BAR_DAEMON_CPU = 20.0  # % of one core during the storm
BAR_WAL_MB = 64.0
SAMPLE_S = 0.005
DEADLINE_S = 600.0


def storm(n: int, job: Any) -> dict[str, float]:
    """The job: n reports as fast as Python calls them; returns how long the loop took."""
    start = time.perf_counter()
    for i in range(1, n + 1):
        job.report(i / n, f"{i}/{n}")
    return {"report_s": time.perf_counter() - start, "reports": n}


def storm_for(seconds: float, job: Any) -> dict[str, float]:
    """The job: reports without a pause for `seconds`, in rounds of 10,000."""
    start = time.perf_counter()
    done = 0
    while time.perf_counter() - start < seconds:
        for i in range(10_000):
            job.report(i / 10_000, f"{done + i}")
        done += 10_000
    return {"report_s": time.perf_counter() - start, "reports": done}


def _wal_size(db: Path) -> int:
    try:
        return os.stat(f"{db}-wal").st_size
    except FileNotFoundError:
        return 0


class Watcher:
    """Polls one job's row and the WAL's size every SAMPLE_S until the job ends."""

    def __init__(self, db: Path, proc: Any, log: Path) -> None:
        self.db, self.proc, self.log = db, proc, log
        self.reader = sqlite3.connect(str(db), timeout=30)
        self.wal_peak = _wal_size(db)

    def follow(self, job_id: int) -> tuple[tuple, int]:
        """(status, progress_message, result) once the job ended, and how often its progress changed."""
        deadline = time.monotonic() + DEADLINE_S
        changes, seen = 0, None
        while True:
            self.wal_peak = max(self.wal_peak, _wal_size(self.db))
            try:
                row = self.reader.execute("SELECT status, progress_message, result, progress FROM job WHERE id=?",
                                          (job_id,)).fetchone()  # fmt: skip
            except sqlite3.OperationalError:  # locked for a moment: read again
                row = None
            if row is not None:
                if row[0] == "running" and row[1:2] + row[3:] != seen:
                    changes += seen is not None or row[3] is not None
                    seen = row[1:2] + row[3:]
                if row[0] not in ("queued", "running"):
                    if row[0] != "succeeded":
                        raise RuntimeError(f"job {job_id} ended {row[0]}: see {self.log}")
                    return row[:3], changes
            check_alive(self.proc, self.log)
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} did not finish within {DEADLINE_S:.0f} s")
            time.sleep(SAMPLE_S)

    def close(self) -> None:
        self.wal_peak = max(self.wal_peak, _wal_size(self.db))
        self.reader.close()


def one_run(db: Path, reports: int, seconds: float) -> dict[str, Any]:
    import jobrunner
    from jobrunner.api import connect
    from jobrunner.store import open_store

    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        open_store(str(db)).close()
        log = db.with_suffix(".log")
        try:
            with jobrunner_daemon(db, log) as proc:
                wait_daemon_ready(db, proc, log)
                for _ in range(2 * WORKERS):  # every worker has imported jobrunner's job side
                    jobrunner.submit("benchmarks.noop:noop")
                wait_for_count(db, SUCCEEDED, 2 * WORKERS, proc, log, timeout=60)
                daemon = daemon_tree(proc.pid)[0]
                watcher = Watcher(db, proc, log)
                try:
                    start = time.monotonic()
                    job_id = jobrunner.submit("benchmarks.output_progress:storm", kwargs={"n": reports})
                    (_, message, result), _ = watcher.follow(job_id)
                    total = time.monotonic() - start
                    cpu_before, start = cpu_seconds([daemon]), time.monotonic()
                    timed = jobrunner.submit(
                        "benchmarks.output_progress:storm_for", kwargs={"seconds": seconds}
                    )
                    (_, _, timed_result), changes = watcher.follow(timed)
                    timed_total = time.monotonic() - start
                    daemon_cpu = cpu_seconds([daemon]) - cpu_before
                finally:
                    watcher.close()
        finally:
            connect(str(db)).close()
    timed_result = json.loads(timed_result)
    return {
        "total_s": total,
        "report_s": json.loads(result)["report_s"],
        "last_won": message == f"{reports}/{reports}",
        "daemon_cpu": 100 * daemon_cpu / timed_total,
        "timed_rate": timed_result["reports"] / timed_result["report_s"],
        "writes_per_s": changes / timed_result["report_s"],
        "wal_mb": watcher.wal_peak / 1e6,
    }


def measure(quick: bool = False, reports: int | None = None, runs: int | None = None,
            seconds: float | None = None) -> list[Figure]:  # fmt: skip
    """Figures for `python -m benchmarks --only output` (the progress part)."""
    reports = reports or (20_000 if quick else REPORTS)
    seconds = seconds or (1.0 if quick else SECONDS)
    runs = runs or 3
    results = []
    with tempfile.TemporaryDirectory(prefix="jobrunner-progress-") as tmp:
        for run in range(runs):
            results.append(one_run(Path(tmp) / f"progress-{run}.db", reports, seconds))
    won = sum(r["last_won"] for r in results)
    return [
        Figure(f"{reports:,} job.report() calls: submit to succeeded", "ms", [r["total_s"] * 1000 for r in results],
               higher_is_better=False, note="before coalescing: 12,300 ms for 1,000,000 calls"),
        Figure("  the job's own report loop", "ms", [r["report_s"] * 1000 for r in results], higher_is_better=False),
        Figure("  runs where the last report was the one stored", "runs", [float(won)], bar=float(runs),
               note="the stored message is the job's final one"),
        Figure(f"reports for {seconds:g} s without a pause: daemon CPU", "% core", [r["daemon_cpu"] for r in results],
               higher_is_better=False, bar=BAR_DAEMON_CPU,
               note="the daemon process alone, utime+stime from /proc, submit to succeeded"),
        Figure("  reports the job made", "reports/s", [r["timed_rate"] for r in results]),
        Figure("  progress writes seen", "writes/s", [r["writes_per_s"] for r in results], higher_is_better=False,
               note=f"changes of the job's row seen by a reader polling every {SAMPLE_S * 1000:g} ms"),
        Figure("WAL peak over both", "MB", [r["wal_mb"] for r in results], higher_is_better=False, bar=BAR_WAL_MB,
               note=f"the -wal file sampled every {SAMPLE_S * 1000:g} ms"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 reports: a smoke run, not a measurement")
    parser.add_argument("--reports", type=int, default=None, help=f"reports per run (default {REPORTS:,})")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--seconds", type=float, default=None, help=f"length of the timed storm (default {SECONDS:g})"
    )
    parser.add_argument("--json", metavar="FILE", dest="json_file", help="also write the figures as JSON")
    options = parser.parse_args(argv)
    if options.runs < 3:
        parser.error("--runs must be at least 3 (a median needs them)")
    figures = measure(options.quick, options.reports, options.runs, options.seconds)
    print(table(figures))
    if options.json_file:
        with open(options.json_file, "w") as handle:
            handle.write(json.dumps([f.as_dict() for f in figures], indent=2) + "\n")


if __name__ == "__main__":
    main()
