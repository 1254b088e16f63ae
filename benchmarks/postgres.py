"""jobrunner on PostgreSQL beside procrastinate as shipped, with the same figures on SQLite, in one run.

The server is the local one ($JOBRUNNER_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/test,
used only to create and drop databases): every measurement gets a database of its own, made
for it and dropped after it, on that server. procrastinate runs as shipped in a database of its
own on the same server: its schema, `PsycopgConnector(conninfo=...)`, `task.defer()` from a
synchronous caller, and its own worker (`python -m procrastinate ... worker --concurrency 2`,
LISTEN/NOTIFY on, its default polling). jobrunner uses its default durability, "normal"
(`synchronous_commit = off` on its connections); procrastinate's connections keep the
server's default (`on`): each defer waits for its WAL flush.

(a) enqueue one at a time through the Python API: jobrunner `submit("benchmarks.noop:noop")`
    (the job row, its event row and a NOTIFY, committed on return) on PostgreSQL and on SQLite,
    against procrastinate `noop.defer()`. The first call (connect, migrate) is untimed.
(b) end to end, submitted first: N no-op jobs submitted (untimed), then the clock starts, the
    daemon (`jobrunner daemon --workers 2`) or procrastinate's worker (`--concurrency 2`) is
    started, and it stops when every job's row says succeeded.
(c) pickup latency, submit -> the job's code starts, on an idle daemon / worker that has run a
    few jobs, over jobs with random idle gaps (the same for all): median and p99 per run. The
    submitter is this process on its own connection; the daemon claims on another. On the same
    host a submit pokes the daemon's socket as well as sending NOTIFY; "NOTIFY only" sends the
    poke nowhere (the submitter sees another state directory), as a submitter on another host.
(d) scaling: the daemons (4 workers each) are up and idle; M jobs that each sleep 50 ms
    (`time:sleep`) are submitted in one transaction; the clock runs from that submit until every
    job succeeded. One daemon against three on the same database: the ratio of throughputs.

Bars (judged on PostgreSQL): enqueue >= 3x procrastinate; end to end >= 6x procrastinate;
pickup median <= 3 ms and p99 <= 10 ms; three daemons >= 2.7x the throughput of one.
Runs are interleaved (every system once per run), so drift in machine speed hits all alike.

Needs psycopg2 (pip install -e '.[postgres]') and the server; procrastinate is optional
(pip install -e '.[bench]'): without it, "skipped: procrastinate not installed" is said and
jobrunner's own figures are still measured. Run as root, the daemons get --allow-root (a URL
database has no owner on this machine to check).

Usage: python -m benchmarks.postgres [--jobs N] [--e2e-jobs N] [--latency-jobs N] [--scale-jobs N] [--runs N]
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from benchmarks.common import Figure, isolated, standalone
from benchmarks.huey_compare import percentile, pickups, ratio
from benchmarks.procs import DEADLINE_S, WORKERS, child_env, daemon_tree, running, wait_until

ADMIN_URL = os.environ.get("JOBRUNNER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
BAR_ENQUEUE_RATIO = 3.0
BAR_E2E_RATIO = 6.0
BAR_PICKUP_MEDIAN_MS = 3.0
BAR_PICKUP_P99_MS = 10.0
BAR_SCALING_RATIO = 2.7
SCALE_WORKERS = 4
SCALE_DAEMONS = 3
SCALE_SLEEP_S = 0.05
SUCCEEDED = "SELECT COUNT(*) FROM job WHERE status = 'succeeded'"
PROCRASTINATE_SUCCEEDED = "SELECT COUNT(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
PROCRASTINATE_APP = "benchmarks.postgres.procrastinate_app"
SKIPPED = "skipped: procrastinate not installed (pip install -e '.[bench]'); jobrunner's own figures only"
_names = itertools.count()


# -- the server ----------------------------------------------------------------------------------


def server_problem() -> str | None:
    """Why PostgreSQL figures cannot be measured here, or None."""
    if importlib.util.find_spec("psycopg2") is None:
        return "psycopg2 not installed (pip install -e '.[postgres]')"
    import psycopg2

    try:
        psycopg2.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg2.Error as exc:
        from jobrunner.secrets import redact_target, redact_text

        return (
            f"no PostgreSQL server at {redact_target(ADMIN_URL)}: {redact_text(str(exc).strip(), ADMIN_URL)}"
        )
    return None


def procrastinate_installed() -> bool:
    return (
        importlib.util.find_spec("procrastinate") is not None
        and importlib.util.find_spec("psycopg") is not None
    )


@contextmanager
def fresh_database(tag: str) -> Iterator[str]:
    """A new database on the server (its URL), dropped afterwards with whatever still holds it."""
    import psycopg2

    name = f"jrbench_{os.getpid()}_{next(_names)}_{tag}"
    admin = psycopg2.connect(ADMIN_URL, connect_timeout=5)
    admin.autocommit = True
    try:
        admin.cursor().execute(f"CREATE DATABASE {name}")
        try:
            yield urlparse(ADMIN_URL)._replace(path="/" + name).geturl()
        finally:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


class Count:
    """One COUNT(*) query asked again and again, on a PostgreSQL URL or a SQLite file."""

    def __init__(self, target: str, query: str) -> None:
        self.query = query
        if "://" in target:
            import psycopg2

            self.conn: Any = psycopg2.connect(target, connect_timeout=5)
            self.conn.autocommit = True
            self.errors: tuple[type[BaseException], ...] = (psycopg2.Error,)
        else:
            import sqlite3

            self.conn = sqlite3.connect(target, timeout=30)
            self.errors = (sqlite3.OperationalError,)

    def __call__(self) -> int:
        try:
            cursor = self.conn.cursor()
            cursor.execute(self.query)
            return cursor.fetchone()[0]
        except self.errors:  # a table not created yet
            return -1

    def close(self) -> None:
        self.conn.close()


def wait_count(target: str, query: str, at_least: int, procs: list[subprocess.Popen], log: Path,
               timeout: float = DEADLINE_S, interval: float = 0.005) -> None:  # fmt: skip
    count = Count(target, query)
    try:
        wait_until(lambda: _alive(procs, log) and count() >= at_least, f"{at_least} rows of {query!r}",
                   timeout, interval=interval)  # fmt: skip
    finally:
        count.close()


def _alive(procs: list[subprocess.Popen], log: Path) -> bool:
    for proc in procs:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(map(str, proc.args))} exited {proc.returncode}:\n{tail}")
    return True


# -- jobrunner -----------------------------------------------------------------------------------


@contextmanager
def jobrunner_daemon(target: str, cwd: Path, log: Path, workers: int = WORKERS) -> Iterator[subprocess.Popen]:
    """`jobrunner daemon --workers N` on `target` (a path or URL) in its own session, warnings only."""
    argv = [sys.executable, "-m", "jobrunner", "daemon", "--workers", str(workers), "--log-level", "warning"]
    if "://" in target and os.geteuid() == 0:
        argv.append("--allow-root")
    with running(argv, child_env(JOBRUNNER_DB=target), cwd, log, signal.SIGTERM) as proc:
        yield proc


def wait_ready(target: str, proc: subprocess.Popen, log: Path, workers: int) -> None:
    """The daemon has registered itself and its worker processes exist."""
    wait_count(target, f"SELECT COUNT(*) FROM daemon WHERE pid = {int(proc.pid)} AND state = 'running'",
               1, [proc], log, timeout=60)  # fmt: skip
    wait_until(lambda: _alive([proc], log) and len(daemon_tree(proc.pid)[1]) >= workers,
               f"{workers} worker processes", 60)  # fmt: skip


def close_store(target: str) -> None:
    from jobrunner.api import _stores

    for key in [key for key in _stores if key[1] == target]:
        _stores.pop(key).close()


def jobrunner_enqueue(jobs: int, target: str, work: Path) -> float:
    import jobrunner

    with isolated(work, JOBRUNNER_DB=target):
        submit = jobrunner.submit
        submit("benchmarks.noop:noop")
        try:
            start = time.perf_counter()
            for _ in range(jobs):
                submit("benchmarks.noop:noop")
            return jobs / (time.perf_counter() - start)
        finally:
            close_store(target)


def jobrunner_e2e(jobs: int, target: str, work: Path) -> float:
    import jobrunner

    with isolated(work, JOBRUNNER_DB=target):
        try:
            for _ in range(jobs):
                jobrunner.submit("benchmarks.noop:noop")
        finally:
            close_store(target)
        log = work / "daemon.log"
        start = time.perf_counter()
        with jobrunner_daemon(target, work, log) as proc:
            wait_count(target, SUCCEEDED, jobs, [proc], log, interval=0.01)
            elapsed = time.perf_counter() - start
    return jobs / elapsed


def jobrunner_pickup(
    count: int, target: str, work: Path, seed: int, notify_only: bool = False
) -> list[float]:
    import jobrunner

    # NOTIFY only: this process (from its first submit on) pokes a socket in another state
    # directory, where no daemon listens; only the NOTIFY sent with each commit wakes the daemon
    submitter = {"XDG_STATE_HOME": str(work / "elsewhere")} if notify_only else {}
    submit = jobrunner.submit
    try:
        with isolated(work, JOBRUNNER_DB=target, **submitter):
            submit(["true"], name="create the database")  # before the daemon starts
        log = work / "daemon.log"
        with isolated(work, JOBRUNNER_DB=target), jobrunner_daemon(target, work, log) as proc:
            wait_ready(target, proc, log, WORKERS)
            with isolated(work, JOBRUNNER_DB=target, **submitter):
                return pickups(lambda path: submit("benchmarks.noop:mark", kwargs={"path": path}),
                               work / "marks", count, seed, proc, log)  # fmt: skip
    finally:
        close_store(target)


def jobrunner_scaling(jobs: int, daemons: int, workers: int, target: str, work: Path) -> float:
    """jobs/s of `jobs` sleeping jobs submitted at once to `daemons` idle daemons."""
    from contextlib import ExitStack

    from jobrunner.api import connect
    from jobrunner.domain.jobspec import build_spec
    from jobrunner.store import repo

    with isolated(work, JOBRUNNER_DB=target):
        store = connect(target)  # creates and migrates the database before the daemons start
        try:
            log = work / "daemons.log"
            with ExitStack() as stack:
                procs = [
                    stack.enter_context(jobrunner_daemon(target, work, log, workers)) for _ in range(daemons)
                ]
                for proc in procs:
                    wait_ready(target, proc, log, workers)
                specs = [build_spec({"callable": "time:sleep", "args": [SCALE_SLEEP_S]}) for _ in range(jobs)]
                start = time.perf_counter()
                repo.submit_many(store, specs, time.time())  # one commit: all runnable at once
                wait_count(target, SUCCEEDED, jobs, procs, log, interval=0.01)
                return jobs / (time.perf_counter() - start)
        finally:
            close_store(target)


# -- procrastinate ---------------------------------------------------------------------------------


def make_procrastinate(conninfo: str) -> tuple[Any, Any, Any]:
    """A procrastinate App on `conninfo` as shipped, and its tasks noop and mark (stable names)."""
    import procrastinate

    from benchmarks import noop as jobs

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    noop = app.task(name="noop")(jobs.noop)
    mark = app.task(name="mark")(jobs.mark)
    return app, noop, mark


def __getattr__(name: str) -> Any:
    """`benchmarks.postgres.procrastinate_app`, made on first access from $PROCRASTINATE_BENCH_DSN
    (its worker loads it by that path), so importing this module needs no procrastinate."""
    if name == "procrastinate_app":
        app = make_procrastinate(os.environ["PROCRASTINATE_BENCH_DSN"])[0]
        globals()[name] = app
        return app
    raise AttributeError(name)


@contextmanager
def procrastinate_session(conninfo: str, schema: bool = False) -> Iterator[tuple[Any, Any, Any]]:
    app, noop, mark = make_procrastinate(conninfo)
    with app.open():
        if schema:
            app.schema_manager.apply_schema()
        yield app, noop, mark


@contextmanager
def procrastinate_worker(conninfo: str, cwd: Path, log: Path) -> Iterator[subprocess.Popen]:
    argv = [sys.executable, "-m", "procrastinate", "--app", PROCRASTINATE_APP, "worker",
            "--concurrency", str(WORKERS)]  # fmt: skip
    with running(argv, child_env(PROCRASTINATE_BENCH_DSN=conninfo), cwd, log, signal.SIGTERM) as proc:
        yield proc


def procrastinate_enqueue(jobs: int, conninfo: str) -> float:
    with procrastinate_session(conninfo, schema=True) as (_, noop, _):
        noop.defer()
        start = time.perf_counter()
        for _ in range(jobs):
            noop.defer()
        return jobs / (time.perf_counter() - start)


def procrastinate_e2e(jobs: int, conninfo: str, work: Path) -> float:
    with procrastinate_session(conninfo, schema=True) as (_, noop, _):
        for _ in range(jobs):
            noop.defer()
    log = work / "worker.log"
    with isolated(work):
        start = time.perf_counter()
        with procrastinate_worker(conninfo, work, log) as proc:
            wait_count(conninfo, PROCRASTINATE_SUCCEEDED, jobs, [proc], log, interval=0.01)
            elapsed = time.perf_counter() - start
    return jobs / elapsed


def procrastinate_pickup(count: int, conninfo: str, work: Path, seed: int) -> list[float]:
    log = work / "worker.log"
    with (
        procrastinate_session(conninfo, schema=True) as (_, _, mark),
        isolated(work),
        procrastinate_worker(conninfo, work, log) as proc,
    ):
        return pickups(lambda path: mark.defer(path=path), work / "marks", count, seed, proc, log)


# -- all of it -------------------------------------------------------------------------------------


class Runs:
    """One folder per measurement, and a fresh PostgreSQL database or SQLite file for it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def place(self, tag: str, backend: str) -> Iterator[tuple[str, Path]]:
        work = self.root / f"{tag}-{next(_names)}"
        work.mkdir()
        if backend == "sqlite":
            yield str(work / "jobs.db"), work
        else:
            with fresh_database(tag.replace("-", "_")) as url:
                yield url, work


def measure(jobs: int = 5_000, e2e_jobs: int = 5_000, latency_jobs: int = 200, scale_jobs: int = 600,
            runs: int = 3) -> list[Figure]:  # fmt: skip
    problem = server_problem()
    if problem:
        print(f"postgres: PostgreSQL figures skipped: {problem}; SQLite figures only", file=sys.stderr)
    rival = problem is None and procrastinate_installed()
    if problem is None and not rival:
        print(f"postgres: {SKIPPED}", file=sys.stderr)
    backends = ("sqlite",) if problem else ("pg", "sqlite")
    v: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        v.setdefault(key, []).append(value)

    def latencies(key: str, seconds: list[float]) -> None:
        add(f"{key}-median", statistics.median(seconds) * 1000)
        add(f"{key}-p99", percentile(seconds, 0.99) * 1000)

    with tempfile.TemporaryDirectory(prefix="jobrunner-pg-") as tmp:
        at = Runs(Path(tmp))
        for run in range(runs):
            for b in backends:
                with at.place("enq", b) as (target, work):
                    add(f"enq-{b}", jobrunner_enqueue(jobs, target, work))
            if rival:
                with at.place("enq-pro", "pg") as (url, _):
                    add("enq-pro", procrastinate_enqueue(jobs, url))
            for b in backends:
                with at.place("e2e", b) as (target, work):
                    add(f"e2e-{b}", jobrunner_e2e(e2e_jobs, target, work))
            if rival:
                with at.place("e2e-pro", "pg") as (url, work):
                    add("e2e-pro", procrastinate_e2e(e2e_jobs, url, work))
            for b in backends:
                with at.place("pickup", b) as (target, work):
                    latencies(f"pick-{b}", jobrunner_pickup(latency_jobs, target, work, seed=run))
            if not problem:
                with at.place("pickup-notify", "pg") as (target, work):
                    latencies(
                        "pick-notify",
                        jobrunner_pickup(latency_jobs, target, work, seed=run, notify_only=True),
                    )
            if rival:
                with at.place("pickup-pro", "pg") as (url, work):
                    latencies("pick-pro", procrastinate_pickup(latency_jobs, url, work, seed=run))
            for b in backends:
                for daemons in (1, SCALE_DAEMONS):
                    with at.place("scale", b) as (target, work):
                        add(
                            f"scale-{b}-{daemons}",
                            jobrunner_scaling(scale_jobs, daemons, SCALE_WORKERS, target, work),
                        )
    return figures(v, backends, rival, jobs, e2e_jobs, latency_jobs, scale_jobs)


def figures(v: dict[str, list[float]], backends: tuple[str, ...], rival: bool, jobs: int, e2e_jobs: int,
            latency_jobs: int, scale_jobs: int) -> list[Figure]:  # fmt: skip
    pg = "pg" in backends
    pro = "procrastinate 3 as shipped"
    out: list[Figure] = []

    def fig(name: str, unit: str, key: str, **kw: Any) -> None:
        out.append(Figure(name, unit, v[key], **kw))

    def rel(name: str, a: str, b: str, **kw: Any) -> None:
        out.append(Figure(name, "x", ratio(v[a], v[b]), **kw))

    def bar(value: float) -> dict[str, float]:
        return {"bar": value} if pg else {}

    # (a)
    if pg:
        fig(f"enqueue one at a time ({jobs:,}): jobrunner submit(), PostgreSQL", "jobs/s", "enq-pg",
            note="job row + event row + NOTIFY per call, committed on return (synchronous_commit=off)"
                 + ("" if rival else f"; {SKIPPED}"))  # fmt: skip
    fig("  jobrunner submit(), SQLite", "jobs/s", "enq-sqlite", note="synchronous=NORMAL")
    if rival:
        fig(f"  {pro}: noop.defer()", "jobs/s", "enq-pro", note="synchronous_commit=on, the server's default")
        rel("  ratio jobrunner PostgreSQL / procrastinate", "enq-pg", "enq-pro", bar=BAR_ENQUEUE_RATIO)
        rel("  ratio jobrunner SQLite / procrastinate", "enq-sqlite", "enq-pro")
    # (b)
    if pg:
        fig(
            f"end to end, submitted first ({e2e_jobs:,} no-op, {WORKERS} workers): jobrunner PostgreSQL",
            "jobs/s",
            "e2e-pg",
            note="clock from starting the daemon / worker until every job row says succeeded",
        )
    fig(f"  jobrunner SQLite, {WORKERS} workers", "jobs/s", "e2e-sqlite")
    if rival:
        fig(f"  {pro}, worker --concurrency {WORKERS}", "jobs/s", "e2e-pro")
        rel("  ratio jobrunner PostgreSQL / procrastinate", "e2e-pg", "e2e-pro", bar=BAR_E2E_RATIO)
        rel("  ratio jobrunner SQLite / procrastinate", "e2e-sqlite", "e2e-pro")
    # (c)
    first = f"pickup ({latency_jobs} jobs, idle gaps): jobrunner"
    if pg:
        fig(
            f"{first} PostgreSQL median",
            "ms",
            "pick-pg-median",
            higher_is_better=False,
            bar=BAR_PICKUP_MEDIAN_MS,
            note="submit -> job code starts; median over the runs of each run's median / p99",
        )
        fig("  jobrunner PostgreSQL p99", "ms", "pick-pg-p99", higher_is_better=False, bar=BAR_PICKUP_P99_MS)
        fig(
            "  jobrunner PostgreSQL, NOTIFY only, median",
            "ms",
            "pick-notify-median",
            higher_is_better=False,
            note="the submitter's socket poke reaches no daemon: as from another host",
        )
        fig("  jobrunner PostgreSQL, NOTIFY only, p99", "ms", "pick-notify-p99", higher_is_better=False)
        first = " "
    fig(f"{first} jobrunner SQLite median", "ms", "pick-sqlite-median", higher_is_better=False)
    fig("  jobrunner SQLite p99", "ms", "pick-sqlite-p99", higher_is_better=False)
    if rival:
        fig(f"  {pro} median (LISTEN/NOTIFY)", "ms", "pick-pro-median", higher_is_better=False)
        fig(f"  {pro} p99", "ms", "pick-pro-p99", higher_is_better=False)
    # (d)
    for b, label in (("pg", "PostgreSQL"), ("sqlite", "SQLite")):
        if b not in backends:
            continue
        fig(f"scaling ({scale_jobs} jobs of {SCALE_SLEEP_S * 1000:.0f} ms, {SCALE_WORKERS} workers per daemon): "
            f"{label}, 1 daemon", "jobs/s", f"scale-{b}-1")  # fmt: skip
        fig(f"  {label}, {SCALE_DAEMONS} daemons", "jobs/s", f"scale-{b}-{SCALE_DAEMONS}")
        rel(f"  ratio {SCALE_DAEMONS} daemons / 1, {label}", f"scale-{b}-{SCALE_DAEMONS}", f"scale-{b}-1",
            **(bar(BAR_SCALING_RATIO) if b == "pg" else {}))  # fmt: skip
    return out


def main() -> None:
    from benchmarks import postgres  # this module under its own name, not __main__ (procrastinate warns)

    standalone(postgres.measure, __doc__, {"jobs": "jobs enqueued per run (a)", "e2e_jobs": "no-op jobs run end to end (b)",
                                  "latency_jobs": "jobs timed for pickup (c)", "scale_jobs": "sleeping jobs (d)"})  # fmt: skip


if __name__ == "__main__":
    main()
