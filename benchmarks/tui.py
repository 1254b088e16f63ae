"""A big database seen from every door: the TUI, `GET /api/jobs` and the CLI.

Usage: python -m benchmarks.tui [--jobs N] [--runs N] [--db PATH_OR_URL] [--shape mixed|finished]
                                [--only open,refresh,store,cli,api] [--json FILE]

The database: `--shape mixed` (the default) spreads the jobs over four queues, priorities and
statuses, a seventh of them tagged "nightly" (a busy week); `--shape finished` is a long run's own
database: every job succeeded, in one queue, with three history rows each (benchmarks.scale).
`--db` keeps it between runs (a file, or a postgresql:// URL of an existing, empty database);
a database that has jobs already is used as it is. A new SQLite one gets its search index
filled first, as a daemon does in its first seconds.

Timed, each a median of `--runs`:
  open     from creating the app to the first page of jobs on the (headless) screen (bar 1 s);
  refresh  what the table's worker does twice a second, once per view a user is likely to
           have open: read the page, the counts and the heartbeats, then render the cells
           (bar 100 ms; a search 300 ms);
  store    queries.stats, as `stats`, the API and the metrics read it (bar 200 ms);
  cli      whole processes: `jobrunner stats` (bar 200 ms), `list --search` (bar 300 ms),
           `list --tag`, `list --status` and plain `list` (bar 250 ms, as benchmarks.cli_latency);
  api      GET /api/jobs?limit=50 through the app (FastAPI's TestClient, in this process):
           newest first, filtered, searched, a page deep by its cursor (bar 100 ms; search 300 ms).
Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
BAR_OPEN_MS = 1000.0
BAR_REFRESH_MS = 100.0
BAR_SEARCH_MS = 300.0
BAR_STATS_MS = 200.0
BAR_LIST_MS = 250.0
ROWS = 28  # the rows a 120x35 terminal shows
SHAPES = ("mixed", "finished")
PARTS = ("open", "refresh", "store", "cli", "api")
#: Per shape: a search few jobs match, and one nearly every job matches.
SEARCHES = {"mixed": ("part-12345", "build"), "finished": ("12345", "echo")}


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
    p = store.backend.param
    with store.write():
        store.cursor().executemany(
            f"UPDATE job SET status={p}, attempts={p}, started_at=created_at+1, finished_at={p}, "
            f"progress={p}, error={p} WHERE id={p}",
            [
                (s, 0 if s in ("queued", "scheduled") else 1,
                 None if s in ("queued", "scheduled", "running") else time.time() - rng.random() * 3600,
                 rng.random() if s == "running" else None,
                 "exit code 1" if s == "dead" else None, n + 1)
                for n, s in enumerate(statuses)
            ],
        )  # fmt: skip
    return store


def build_postgres(url: str, jobs: int, shape: str) -> Store:
    """The same shapes on PostgreSQL, written by the server itself (generate_series), then ANALYZEd;
    `r` is a repeatable pseudo-random number per job, choosing its status as STATUS_SHARE does."""
    store = open_store(url)
    base = time.time() - 7 * 86400
    if shape == "finished":
        fields = ("'echo', '[\"echo\",\"' || n || '\"]', 'default', mod(n * 7919, 10), 'succeeded', 1, "
                  f"{base} + n * 0.5, {base} + n * 0.5 + 0.5, {base} + n * 0.5 + 1, '[]', NULL, NULL")  # fmt: skip
    else:
        queue = "(ARRAY['default','images','reports','emails'])[mod(n, 4) + 1]"
        fields = (f"{queue} || '-build-' || n, '[\"make\",\"part-' || n || '\"]', {queue}, "
                  "(ARRAY[2,5,5,5,7,9])[mod(n * 7919, 6) + 1], s, CASE WHEN s IN ('queued', 'scheduled') THEN 0 ELSE 1 END, "
                  f"{base} + n * 0.1, {base} + n * 0.1 + 1, "
                  f"CASE WHEN s IN ('queued', 'scheduled', 'running') THEN NULL ELSE {base} + n * 0.1 + 2 END, "
                  "CASE WHEN mod(n, 7) = 0 THEN '[\"nightly\"]' ELSE '[]' END, "
                  "CASE WHEN s = 'running' THEN 0.5 END, CASE WHEN s = 'dead' THEN 'exit code 1' END")  # fmt: skip
    status = ("CASE WHEN r < 0.80 THEN 'succeeded' WHEN r < 0.92 THEN 'queued' WHEN r < 0.95 THEN 'dead' "
              "WHEN r < 0.97 THEN 'cancelled' WHEN r < 0.99 THEN 'scheduled' ELSE 'running' END")  # fmt: skip
    numbers = (f"SELECT n, {status} AS s FROM (SELECT n, mod(n * 2654435761, 1000) / 1000.0 AS r "
               f"FROM generate_series(0::bigint, {jobs - 1}) AS n) AS g")  # fmt: skip
    with store.write():
        store.execute(
            "INSERT INTO job (name, command, queue, priority, status, attempts, created_at, started_at, "
            "finished_at, tags, progress, error, kind, run_at, updated_at) "
            f"SELECT {fields}, 'shell', {base}, {base} FROM ({numbers}) AS x ORDER BY n"
        )
        store.execute(
            "INSERT INTO event (job_id, at, attempt, from_status, to_status, message) "
            "SELECT id, created_at, 0, NULL, 'queued', 'submitted' FROM job"
        )
        # the search text, as jobrunner's own inserts write it (a trigger did before schema v14)
        store.execute("INSERT INTO job_text (job_id, text) SELECT id, name || chr(10) || COALESCE(command, '') "
                      "|| chr(10) || COALESCE(callable, '') FROM job ON CONFLICT (job_id) DO NOTHING")  # fmt: skip
    store.execute("VACUUM ANALYZE")  # as autovacuum leaves a table a daemon works: visibility map set
    return store


def prepare(target: str, jobs: int, shape: str) -> tuple[Store, str]:
    """The store to measure, built first if it has no jobs; and how long building took."""
    started = time.perf_counter()
    if "://" in target:
        store = open_store(target)
        if store.execute("SELECT COUNT(*) FROM (SELECT 1 FROM job LIMIT 1) AS x").fetchone()[0] == 0:
            store.close()
            store = build_postgres(target, jobs, shape)
            return store, f"database built in {time.perf_counter() - started:.1f}s"
        return store, "an existing database"
    path = Path(target)
    if path.exists():
        return open_store(target), "an existing database"
    if shape == "finished":
        from benchmarks.scale import build as build_finished

        build_finished(path, jobs, 0)
        store = open_store(target)
    else:
        store = build(path, jobs)
    index_all(store)
    return store, f"database built in {time.perf_counter() - started:.1f}s"


def index_all(store: Store) -> None:
    """What a daemon does in its first seconds on the new jobs: put them in the search index."""
    try:
        from jobrunner.store.search import index_new
    except ImportError:  # a jobrunner from before the index
        return
    while index_new(store, 20_000):
        pass


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


def _page_fields() -> set[str]:
    from dataclasses import fields

    from jobrunner.tui.data import PageRequest

    return {f.name for f in fields(PageRequest)}


PAGE_FIELDS = _page_fields()


def refresh_cases(shape: str) -> dict[str, dict]:
    rare, common = SEARCHES[shape]
    return {
        "top of all jobs": {},
        "all jobs, offset 20,000": {"offset": 20_000},
        "all jobs, the last page (End)": {"from_end": True} if "from_end" in PAGE_FIELDS else {"offset": 10**9},
        "status queued": {"statuses": (Status.QUEUED,)},
        "status succeeded, offset 20,000": {"statuses": (Status.SUCCEEDED,), "offset": 20_000},
        "status dead": {"statuses": (Status.DEAD,)},
        "status queued + dead": {"statuses": (Status.QUEUED, Status.DEAD)},
        "queue images": {"queues": ("images",)},
        "queue images, offset 20,000": {"queues": ("images",), "offset": 20_000},
        "status dead + queue emails": {"statuses": (Status.DEAD,), "queues": ("emails",)},
        "sorted by priority": {"order_by": "-priority"},
        "sorted by priority, offset 20,000": {"order_by": "-priority", "offset": 20_000},
        "sorted by queue, offset 20,000": {"order_by": "queue", "offset": 20_000},
        "sorted by name": {"order_by": "name"},
        "sorted by name, offset 20,000": {"order_by": "name", "offset": 20_000},
        "sorted by age, oldest first": {"order_by": "created_at"},
        "sorted by tries, most first": {"order_by": "-attempts"},
        "sorted by progress, most first": {"order_by": "-progress"},
        "sorted by progress, least first": {"order_by": "progress"},
        "status dead, sorted by tries": {"statuses": (Status.DEAD,), "order_by": "-attempts"},
        "status dead by when they died, offset 20,000": {"statuses": (Status.DEAD,), "order_by": "-finished_at",
                                                         "offset": 20_000},
        "status succeeded, sorted by name": {"statuses": (Status.SUCCEEDED,), "order_by": "name"},
        "status dead, sorted by name": {"statuses": (Status.DEAD,), "order_by": "name"},
        f"search {rare!r}": {"search": rare},
        f"search {common!r}": {"search": common},
        f"search {common!r}, status dead": {"search": common, "statuses": (Status.DEAD,)},
        "tag nightly": {"tags": ("nightly",)},
        "tag nightly, offset 5,000": {"tags": ("nightly",), "offset": 5_000},
    }


def measure_refresh(store: Store, runs: int, shape: str) -> dict[str, list[float]]:
    from jobrunner.tui import data
    from jobrunner.tui.screens.jobs import JOB_COLUMNS
    from jobrunner.tui.widgets.paged_table import render_rows

    results: dict[str, list[float]] = {}
    for name, fields in refresh_cases(shape).items():
        request = data.PageRequest(limit=ROWS, **fields)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            now = time.time()
            snapshot = data.fetch_page(store, request, now)
            render_rows(JOB_COLUMNS, snapshot.jobs, now)
            times.append(time.perf_counter() - started)
        results[name] = times
    return results


def timed(call: Callable[[], Any], runs: int) -> list[float]:
    call()  # untimed: caches, prepared statements
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def cli_cases(shape: str) -> dict[str, tuple[list[str], float]]:
    rare, common = SEARCHES[shape]
    return {
        "jobrunner stats": (["stats"], BAR_STATS_MS),
        f"jobrunner list --search {rare}": (["list", "--search", rare], BAR_SEARCH_MS),
        f"jobrunner list --search {common}": (["list", "--search", common], BAR_SEARCH_MS),
        "jobrunner list --tag nightly": (["list", "--tag", "nightly"], BAR_LIST_MS),
        "jobrunner list --status dead": (["list", "--status", "dead"], BAR_LIST_MS),
        "jobrunner list": (["list"], BAR_LIST_MS),
    }


def measure_cli(target: str, runs: int, shape: str, work: Path) -> list[Figure]:
    from benchmarks.cli_latency import environment, jobrunner_command

    env = environment(work)
    env["JOBRUNNER_DB"] = target
    tiny = work / "tiny.db"
    repo.submit(open_store(str(tiny)), build_spec({"command": ["true"]}), time.time())
    start_up = "  jobrunner stats, a database of one job (start-up)"
    cases = {**cli_cases(shape), start_up: (["--db", str(tiny), "stats"], 0.0)}
    figures = []
    for name, (args, bar) in cases.items():
        argv = [*jobrunner_command(), *args]

        def run(argv: list[str] = argv) -> None:
            done = subprocess.run(argv, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if done.returncode != 0:
                raise RuntimeError(
                    f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}"
                )

        figures.append(Figure(name, "ms", timed(run, runs), higher_is_better=False, bar=bar or None,
                              note="whole process" if name == "jobrunner stats" else ""))  # fmt: skip
    return figures


def api_cases(shape: str, store: Store) -> dict[str, tuple[dict[str, Any], float]]:
    rare, common = SEARCHES[shape]
    (middle,) = store.execute("SELECT (MIN(id) + MAX(id)) / 2 FROM job").fetchone()
    return {
        "newest first": ({}, BAR_REFRESH_MS),
        "oldest first": ({"oldest_first": "true"}, BAR_REFRESH_MS),
        "a page halfway down, by its cursor": ({"cursor": str(int(middle))}, BAR_REFRESH_MS),
        "status succeeded": ({"status": "succeeded"}, BAR_REFRESH_MS),
        "status dead, queue emails": ({"status": "dead", "queue": "emails"}, BAR_REFRESH_MS),
        "queue images": ({"queue": "images"}, BAR_REFRESH_MS),
        "tag nightly": ({"tag": "nightly"}, BAR_REFRESH_MS),
        f"search {rare!r}": ({"search": rare}, BAR_SEARCH_MS),
        f"search {common!r}": ({"search": common}, BAR_SEARCH_MS),
    }


def measure_api(store: Store, target: str, runs: int, shape: str) -> list[Figure]:
    from jobrunner.config import Config
    from jobrunner.serve.app import create_app
    from jobrunner.serve.settings import ServeSettings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    client = TestClient(create_app(ServeSettings(store=open_store(target), config=Config())),
                        base_url="http://127.0.0.1:8765")  # fmt: skip
    figures = []
    for name, (params, bar) in api_cases(shape, store).items():

        def get(params: dict[str, Any] = params) -> None:
            response = client.get("/api/jobs", params={"limit": 50, **params})
            if response.status_code != 200:
                raise RuntimeError(f"GET /api/jobs {params}: {response.status_code} {response.text[:300]}")

        figures.append(Figure(f"GET /api/jobs?limit=50: {name}", "ms", timed(get, runs),
                              higher_is_better=False, bar=bar))  # fmt: skip
    return figures


def measure(jobs: int = 100_000, runs: int = 5, db: str | None = None, shape: str = "mixed",
            only: tuple[str, ...] = PARTS) -> list[Figure]:  # fmt: skip
    from jobrunner.store import queries

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        target = db or str(work / "tui.db")
        store, built = prepare(target, jobs, shape)
        figures: list[Figure] = []
        if "open" in only:
            figures.append(Figure(f"tui open ({jobs:,} jobs, {shape})", "ms",
                                  [t * 1000 for t in measure_open(store, runs)],
                                  higher_is_better=False, bar=BAR_OPEN_MS, note=built))  # fmt: skip
        if "refresh" in only:
            for name, times in measure_refresh(store, runs, shape).items():
                bar = BAR_SEARCH_MS if name.startswith("search") else BAR_REFRESH_MS
                figures.append(Figure(f"tui refresh: {name}", "ms", [t * 1000 for t in times],
                                      higher_is_better=False, bar=bar))  # fmt: skip
        if "store" in only:
            figures.append(Figure("store: queries.stats", "ms", timed(lambda: queries.stats(store), runs),
                                  higher_is_better=False, bar=BAR_STATS_MS))  # fmt: skip
        if "cli" in only:
            figures += measure_cli(target, runs, shape, work)
        if "api" in only:
            figures += measure_api(store, target, runs, shape)
        store.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tui", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (min 3)")
    parser.add_argument("--db", help="reuse (or create) this database: a file, or a postgresql:// URL")
    parser.add_argument("--shape", choices=SHAPES, default="mixed", help="what the jobs look like (above)")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}"
    )
    parser.add_argument("--json", metavar="FILE", dest="json_file", help="also write the figures as JSON")
    options = parser.parse_args(argv)
    if options.runs < 3:
        parser.error("--runs must be at least 3 (a median needs them)")
    only = tuple(part.strip() for part in options.only.split(",") if part.strip())
    if set(only) - set(PARTS):
        parser.error(f"--only: choose from {', '.join(PARTS)}")
    figures = measure(options.jobs, options.runs, options.db, options.shape, only)
    print(table(figures))
    if options.json_file:
        Path(options.json_file).write_text(json.dumps([f.as_dict() for f in figures], indent=2) + "\n")


if __name__ == "__main__":
    main()
