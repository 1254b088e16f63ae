"""Run every benchmark and print one table: each figure is the median of several runs, with min-max.

Usage: python -m benchmarks [--only NAME,...] [--runs N] [--quick] [--json FILE]

  bulk     submit --from-file of 10,000 jobs, against bare inserts of the same rows
  enqueue  Python API submit one at a time, against plain sqlite3
  threads  8 threads of one process submitting (a new database, then an existing one) against one thread
  cli      whole-process `jobrunner submit` and `jobrunner list` over 100,000 jobs
  tui      TUI open and refresh, `stats`, `list --search`, GET /api/jobs over 100,000 jobs
           (python -m benchmarks.tui --jobs 1000000 for issue 17's bars)
  huey     against huey 3's SqliteHuey: enqueue, end to end (submitted first / while
           running), pickup latency
  shell    1,000 `true` shell jobs through the daemon, against a bare spawning loop
  idle     an idle daemon's CPU, and pickup after 10 s of idleness
  memory   daemon and worker RSS, idle and running 5,000 jobs
  memory_long  each process's RSS growth over the last 200,000 of 300,000 no-op jobs
  scale    claims at 100,000 queued; list, submit and claim at 1,000,000 finished jobs
  output   `jobrunner logs` of a 300 MB log (time, peak memory); the TUI following a fast
           writer and a storm of progress reports, where their modules exist
  http     `jobrunner serve` under load: single submits from 8 keep-alive clients, a bulk request of
           10,000 jobs, a page of 50 at 100,000 jobs, SSE delay and wait()'s, with a daemon running
  postgres on the local PostgreSQL server, beside procrastinate as shipped, with the same
           figures on SQLite: enqueue, end to end, pickup latency, scaling over 1 and 3 daemons

--quick uses tiny sizes (a smoke run that checks the harness works, not a measurement).
huey runs only where huey is installed (pip install -e '.[bench]'); otherwise it is skipped with a note.
postgres needs psycopg2 and the server ($JOBRUNNER_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/test);
without procrastinate it says "skipped: procrastinate not installed" and measures jobrunner alone.
The end-to-end benchmarks start `jobrunner daemon --workers 2` on a temporary database.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sqlite3
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import bulk_submit, cli_latency, enqueue, idle, memory, memory_long, output, scale, shell, tui
from benchmarks.common import Figure, table

NAMES = ("bulk", "enqueue", "threads", "cli", "tui", "huey", "shell", "idle", "memory", "memory_long", "scale",
         "output", "http", "postgres")  # fmt: skip


def run(only: list[str], runs: int | None, quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    if "bulk" in only:
        figures += bulk_submit.measure(jobs=500 if quick else 10_000, runs=runs or (3 if quick else 5))
    if "enqueue" in only:
        figures += enqueue.measure(jobs=200 if quick else 5_000, runs=runs or (3 if quick else 5))
    if "cli" in only:
        figures += cli_latency.measure(runs=runs or (3 if quick else 15), jobs=1_000 if quick else 100_000)
    if "tui" in only:
        figures += tui.measure(jobs=2_000 if quick else 100_000, runs=runs or (3 if quick else 5))
    if "huey" in only:
        if importlib.util.find_spec("huey") is None:
            print("huey: skipped, huey is not installed (pip install -e '.[bench]')", file=sys.stderr)
        else:
            from benchmarks import huey_compare

            figures += huey_compare.measure(
                jobs=200 if quick else 5_000, e2e_jobs=200 if quick else 5_000,
                latency_jobs=10 if quick else 200, runs=runs or 3,
            )  # fmt: skip
    if "shell" in only:
        figures += shell.measure(jobs=100 if quick else 1_000, runs=runs or (3 if quick else 5))
    if "idle" in only:
        figures += idle.measure(samples=2 if quick else 5, gap=1.0 if quick else 10.0, runs=runs or 3)
    if "memory" in only:
        figures += memory.measure(jobs=300 if quick else 5_000, runs=runs or 3)
    if "memory_long" in only:  # one long run: its figures are not medians
        if quick:
            figures += memory_long.measure(jobs=3_000, first=1_000, chunk=500)
        else:
            figures += memory_long.measure()
    if "threads" in only:
        from benchmarks import threads

        figures += threads.measure(jobs=20 if quick else 500, runs=runs or 3)
    if "scale" in only:
        if quick:
            figures += scale.measure(finished=20_000, queued=5_000, claims=200, submits=200, runs=runs or 3)
        else:
            figures += scale.measure(runs=runs or 5)  # claim rates are noisy: a checkpoint, the VM
    if "output" in only:
        figures += output.measure(quick=quick, runs=runs)
    if "http" in only:
        from benchmarks import http_api  # needs the serve extra (FastAPI, uvicorn) and httpx

        if quick:
            figures += http_api.measure(submits=80, bulk=500, listed=1_000, events=3, waits=3, runs=runs or 3)
        else:
            figures += http_api.measure(runs=runs or 3)
    if "postgres" in only:
        from benchmarks import postgres

        figures += postgres.measure(
            jobs=50 if quick else 5_000, e2e_jobs=50 if quick else 5_000, latency_jobs=5 if quick else 200,
            scale_jobs=24 if quick else 600, runs=runs or 3,
        )  # fmt: skip
    return figures


def versions() -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                             "machine": f"{platform.system()} {platform.machine()}"}  # fmt: skip
    for package in ("jobrunner", "peewee", "typer", "rich", "huey", "procrastinate", "psycopg2-binary"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", default=",".join(NAMES), help=f"comma-separated subset of {', '.join(NAMES)}"
    )
    parser.add_argument(
        "--runs", type=int, help="runs per figure (default: 3 or 5; 15 for CLI start-up; min 3)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument("--json", metavar="FILE", help="also write the figures and versions as JSON")
    options = parser.parse_args(argv)
    only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(NAMES)}")
    if options.runs is not None and options.runs < 3:
        parser.error("--runs must be at least 3 (a median needs them)")
    started = time.time()
    figures = run(only, options.runs, options.quick)
    info = versions()
    print(table(figures))
    print("\n" + ", ".join(f"{k} {v}" for k, v in info.items()), file=sys.stderr)
    if options.json:
        document = {"started_at": started, "quick": options.quick, "versions": info,
                    "figures": [f.as_dict() for f in figures]}  # fmt: skip
        Path(options.json).write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
