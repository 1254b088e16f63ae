"""The TUI at 100,000 jobs: how long it takes to open, and how long each refresh takes.

Usage: python -m benchmarks.tui [--jobs N] [--runs N] [--db PATH]

"open" is from creating the app to the first page of jobs on the (headless) screen.
"refresh" is what the table's worker does twice a second: read the page, the counts and
the heartbeats, then render the cells; once per view a user is likely to have open.
Figures, not assertions: the issue's bars are 2 s to open and 100 ms per refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, table
from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.states import Status
from jobrunner.store import open_store, repo
from jobrunner.store.db import Store

QUEUES = ("default", "images", "reports", "emails")
# Mostly finished work, a live tail, a few hundred dead: what a busy week looks like.
STATUS_SHARE = (
    (Status.SUCCEEDED, 0.80), (Status.QUEUED, 0.12), (Status.DEAD, 0.03), (Status.CANCELLED, 0.02),
    (Status.SCHEDULED, 0.02), (Status.RUNNING, 0.01),
)  # fmt: skip


def build(path: Path, jobs: int) -> Store:
    """A database of `jobs` jobs spread over queues, priorities and statuses (seeded, repeatable)."""
    rng = random.Random(5)
    store = open_store(str(path))
    now = time.time() - 7 * 86400
    specs = [
        build_spec({
            "command": ["make", f"part-{n}"], "name": f"{QUEUES[n % 4]}-build-{n}",
            "queue": QUEUES[n % 4], "priority": rng.choice((2, 5, 5, 5, 7, 9)),
            "tags": ["nightly"] if n % 7 == 0 else [],
        })
        for n in range(jobs)
    ]  # fmt: skip
    for start in range(0, jobs, 20_000):
        repo.submit_many(store, specs[start : start + 20_000], now + start / 10)
    choices = [s.value for s, _ in STATUS_SHARE]
    weights = [w for _, w in STATUS_SHARE]
    statuses = rng.choices(choices, weights, k=jobs)
    with store.write():
        store.cursor().executemany(
            "UPDATE job SET status=?, attempts=?, started_at=created_at+1, finished_at=?, "
            "progress=?, error=? WHERE id=?",
            [
                (s, 0 if s in ("queued", "scheduled") else 1,
                 None if s in ("queued", "scheduled", "running") else time.time() - rng.random() * 3600,
                 rng.random() if s == "running" else None,
                 "exit code 1" if s == "dead" else None, n + 1)
                for n, s in enumerate(statuses)
            ],
        )  # fmt: skip
    return store


def _median_ms(values: list[float]) -> str:
    values = sorted(values)
    return f"{values[len(values) // 2] * 1000:.1f} ms ({values[0] * 1000:.1f}–{values[-1] * 1000:.1f})"


def measure_open(store: Store, runs: int) -> list[float]:
    from jobrunner.tui.app import JobrunnerApp
    from jobrunner.tui.widgets.paged_table import PagedTable

    async def once() -> float:
        started = time.perf_counter()
        app = JobrunnerApp(store)
        async with app.run_test(size=(120, 35)) as pilot:
            while True:
                found = app.screen.query(PagedTable)
                if found and found.first().jobs:
                    return time.perf_counter() - started
                await pilot.pause(0.005)

    return [asyncio.run(once()) for _ in range(runs)]


def refresh_cases() -> dict[str, dict]:
    from jobrunner.domain.states import Status

    return {
        "top of all jobs": {},
        "all jobs, offset 20,000": {"offset": 20_000},
        "status queued": {"statuses": (Status.QUEUED,)},
        "status succeeded, offset 20,000": {"statuses": (Status.SUCCEEDED,), "offset": 20_000},
        "queue images": {"queues": ("images",)},
        "queue images, offset 20,000": {"queues": ("images",), "offset": 20_000},
        "status dead + queue emails": {"statuses": (Status.DEAD,), "queues": ("emails",)},
        "sorted by priority, offset 20,000": {"order_by": "-priority", "offset": 20_000},
        "search 'part-9999'": {"search": "part-9999"},
        "tag nightly, offset 5,000": {"tags": ("nightly",), "offset": 5_000},
    }


def measure_refresh(store: Store, runs: int) -> dict[str, list[float]]:
    from jobrunner.tui import data
    from jobrunner.tui.screens.jobs import JOB_COLUMNS
    from jobrunner.tui.widgets.paged_table import render_rows

    results: dict[str, list[float]] = {}
    for name, fields in refresh_cases().items():
        request = data.PageRequest(limit=28, **fields)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            now = time.time()
            snapshot = data.fetch_page(store, request, now)
            render_rows(JOB_COLUMNS, snapshot.jobs, now)
            times.append(time.perf_counter() - started)
        results[name] = times
    return results


def measure(jobs: int = 100_000, runs: int = 5, db: str | None = None) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(db) if db else Path(tmp) / "tui.db"
        started = time.perf_counter()
        store = build(path, jobs) if not path.exists() else open_store(str(path))
        built = time.perf_counter() - started
        figures = [Figure(f"tui open ({jobs:,} jobs)", "ms", [t * 1000 for t in measure_open(store, runs)],
                          higher_is_better=False, note=f"database built in {built:.1f}s")]  # fmt: skip
        for name, times in measure_refresh(store, runs).items():
            figures.append(
                Figure(f"tui refresh: {name}", "ms", [t * 1000 for t in times], higher_is_better=False)
            )
        store.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tui", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (min 3)")
    parser.add_argument("--db", help="reuse (or create) this database file instead of a temporary one")
    options = parser.parse_args(argv)
    if options.runs < 3:
        parser.error("--runs must be at least 3 (a median needs them)")
    print(table(measure(options.jobs, options.runs, options.db)))


if __name__ == "__main__":
    main()
