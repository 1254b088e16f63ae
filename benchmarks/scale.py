"""Scale: does jobrunner stay as fast when the job table is big?

(a) Claims with 100,000 queued jobs against claims with 100 queued (bar: ratio >= 0.8).
    Measured through the store layer, jobrunner.store.runs.claim (the statement the daemon runs),
    not through a daemon: end to end, worker pipes and wake-ups would hide what the size of the
    queue does to the claim, and the claim's index is the question. Each claim takes one job
    (limit 1) and only the claim call is timed (its UPDATE ... RETURNING, its event row, its
    commit). Between claims, untimed, the job is finished (runs.finish, as the daemon records a
    success) and one new queued job is submitted, so the queue stays 100 or 100,000 deep
    throughout. Each database gets at most CLAIM_BUDGET_S (15 s) of wall time per run: a
    claim that has become a scan stops early, its rate still claims / time spent claiming.
    Priorities are mixed (0-9), as the claim orders by priority, then id; the ratio's note
    shows SQLite's plan for the claim's UPDATE on the deep queue.
(b) A database holding 1,000,000 finished (succeeded) jobs against an empty one: wall time of
    `jobrunner list --limit 50` (whole process, median of a few per run; also against a database
    of 100 finished jobs, which prints the same 50 rows as the big one), the Python API's
    submit rate (one at a time, committed per call), and the claim rate as in (a) with 100
    queued (the empty side is (a)'s 100-queued database). Ratios printed; no bars.

The databases are built once per invocation and shared by its runs: the schema from
jobrunner.store.open_store (so tables and indexes are the real ones), rows with plain sqlite3
executemany while the job indexes are dropped, then the indexes made again from their own SQL.
Finished jobs carry three event rows each, as real ones do. The runs add a few thousand rows
(jobs submitted by the submit test are marked succeeded afterwards, untimed, so the queue
depth of the next claim test is unchanged).

Usage: python -m benchmarks.scale [--finished N] [--queued N] [--claims N] [--submits N] [--runs N] [--json FILE]
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.cli_latency import environment, jobrunner_command
from benchmarks.common import Figure, isolated, standalone

BAR_CLAIM_RATIO = 0.8
SHALLOW = 100  # queued jobs in the small queue
WARM_CLAIMS = 50  # untimed claims first: caches, prepared statements
LIST_TIMES = 5  # `list` invocations per database per run (after one untimed)
CLAIM_BUDGET_S = 15.0  # per database per run: a claim that got slow (a scan) stops early, counted
EXTRA_COLUMNS = ("attempts", "started_at", "finished_at", "exit_code", "log_path")
OWNER = "bench-host:1:scale"


# -- building databases --------------------------------------------------------------------------


def build(path: Path, finished: int, queued: int, seed: int = 1) -> float:
    """A jobrunner database with `finished` succeeded and `queued` queued jobs; returns seconds taken."""
    from jobrunner.store import open_store
    from jobrunner.store.backends import JOB_INSERT_COLUMNS

    start = time.perf_counter()
    open_store(str(path)).close()  # schema, indexes, WAL: exactly what jobrunner makes
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a scratch file: no need to survive a power cut
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='job' AND sql IS NOT NULL"
        ).fetchall()
        conn.execute("BEGIN")
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        columns = (*JOB_INSERT_COLUMNS, *EXTRA_COLUMNS)
        insert = f"INSERT INTO job ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        rng = random.Random(seed)
        base = time.time() - 30 * 86400
        log_dir = str(path.parent / f"{path.stem}.logs")

        fixed = {"name": "echo", "kind": "shell", "task": None, "callable": None, "args": "[]", "kwargs": "{}",
                 "queue": "default", "max_retries": 0, "timeout": None, "backoff_base": 1.0,
                 "backoff_factor": 2.0, "backoff_max": 300.0, "retry_on": "[]", "retry_on_exit_codes": "[]",
                 "tags": "[]", "metadata": "{}", "cwd": "/tmp", "env": "{}", "memory_limit": None,
                 "cpu_time_limit": None, "max_log_size": None}  # fmt: skip

        def rows(count: int, status: str, first_id: int) -> Iterator[tuple]:
            done = status == "succeeded"
            for n in range(first_id, first_id + count):
                at = base + n * 0.5
                row = {**fixed, "command": f'["echo","{n}"]', "priority": rng.randint(0, 9), "status": status,
                       "created_at": at, "run_at": at, "updated_at": at + 1 if done else at,
                       "attempts": 1 if done else 0, "started_at": at + 0.5 if done else None,
                       "finished_at": at + 1 if done else None, "exit_code": 0 if done else None,
                       "log_path": f"{log_dir}/{n}.log" if done else None}  # fmt: skip
                yield tuple(map(row.__getitem__, columns))  # a KeyError here: the schema grew a column

        conn.executemany(insert, rows(finished, "succeeded", 1))
        conn.executemany(insert, rows(queued, "queued", finished + 1))
        conn.executemany(
            "INSERT INTO event (job_id, at, attempt, from_status, to_status, message) VALUES (?, ?, ?, ?, ?, ?)",
            (event for n in range(1, finished + 1) for event in (
                (n, base + n * 0.5, 0, None, "queued", "submitted"),
                (n, base + n * 0.5 + 0.5, 1, "queued", "running", f"attempt 1 started by {OWNER}"),
                (n, base + n * 0.5 + 1, 1, "running", "succeeded", "succeeded"))),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO event (job_id, at, attempt, from_status, to_status, message) VALUES (?, ?, 0, NULL, ?, ?)",
            ((n, base + n * 0.5, "queued", "submitted") for n in range(finished + 1, finished + queued + 1)),
        )
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - start


# -- what is timed -------------------------------------------------------------------------------


def claim_plan(store: object, db: Path, claim: Callable[[], object]) -> str:
    """SQLite's plan for the claim's UPDATE, from its text as run (a trace of one claim)."""
    conn = store.db.connection()  # type: ignore[attr-defined]
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        claim()
    finally:
        conn.set_trace_callback(None)
    updates = [sql for sql in seen if sql.lstrip().upper().startswith("UPDATE")]
    if not updates:
        return "(no UPDATE seen)"
    reader = sqlite3.connect(str(db))
    try:
        rows = reader.execute("EXPLAIN QUERY PLAN " + updates[0]).fetchall()
    finally:
        reader.close()
    return "; ".join(row[-1] for row in rows)


def claim_rate(db: Path, claims: int, seed: int, plans: dict[str, str] | None = None) -> float:
    """Claims/s, one job per claim, the queue kept at its depth by one submit after each finish."""
    from jobrunner.domain.jobspec import build_spec
    from jobrunner.store import open_store, repo, runs

    rng = random.Random(seed)
    specs = [
        build_spec({"command": ["true"], "priority": rng.randint(0, 9)}) for _ in range(WARM_CLAIMS + claims)
    ]
    store = open_store(str(db))
    store.poke_on_commit = False  # no daemon here to wake
    log_dir = str(db.parent / f"{db.stem}.logs")
    claim, finish, submit, clock, Outcome = (
        runs.claim,
        runs.finish,
        repo.submit,
        time.perf_counter,
        runs.Outcome,
    )
    spent, timed, deadline = 0.0, 0, time.monotonic() + CLAIM_BUDGET_S
    try:
        if plans is not None:  # one more claim, traced for its plan, then back in the queue as before

            def traced() -> None:
                got = claim(store, OWNER, time.time(), 1, 30.0, log_dir)
                finish(store, OWNER, [Outcome(c.id, c.attempt, exit_code=0) for c in got], time.time())
                submit(store, specs[0], time.time())

            plans[db.name] = claim_plan(store, db, traced)
        for n, spec in enumerate(specs):
            start = clock()
            got = claim(store, OWNER, time.time(), 1, 30.0, log_dir)
            took = clock() - start
            if len(got) != 1:
                raise RuntimeError(f"claim {n} in {db.name} returned {len(got)} jobs")
            if n >= WARM_CLAIMS:
                spent += took
                timed += 1
            finish(store, OWNER, [Outcome(got[0].id, got[0].attempt, exit_code=0)], time.time())
            submit(store, spec, time.time())
            if timed >= 20 and time.monotonic() > deadline:
                break  # fewer claims than asked: the rate is still claims / time spent claiming
    finally:
        store.close()
    return timed / spent


def submit_rate(db: Path, submits: int) -> float:
    """Python API submits/s, one at a time, each committed on return; the new jobs are then marked
    succeeded (untimed) so the database's queue depth is as before."""
    import jobrunner
    from jobrunner.api import connect

    conn = sqlite3.connect(str(db), timeout=30)
    last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM job").fetchone()[0]
    conn.close()
    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        submit = jobrunner.submit
        submit(["true"])  # opens the database: once per process, untimed
        start = time.perf_counter()
        for _ in range(submits):
            submit(["true"])
        elapsed = time.perf_counter() - start
        connect(str(db)).close()
    conn = sqlite3.connect(str(db), timeout=30)
    with conn:
        conn.execute("UPDATE job SET status='succeeded', attempts=1, started_at=created_at, "
                     "finished_at=created_at, exit_code=0 WHERE id > ? AND status='queued'", (last,))  # fmt: skip
    conn.close()
    return submits / elapsed


def list_ms(dbs: list[Path], work: Path) -> list[float]:
    """Median wall ms of `jobrunner list --limit 50` on each database, interleaved, after one untimed."""
    command = [*jobrunner_command(), "list", "--limit", "50"]
    times: list[list[float]] = [[] for _ in dbs]
    for n in range(1 + LIST_TIMES):
        for i, db in enumerate(dbs):
            env = {**environment(work), "JOBRUNNER_DB": str(db)}
            start = time.perf_counter()
            done = subprocess.run(
                command, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} on {db.name} exited {done.returncode}: "
                                   f"{done.stderr.decode()[-500:]}")  # fmt: skip
            if n:
                times[i].append(elapsed * 1000)
    return [statistics.median(t) for t in times]


# -- all of it -----------------------------------------------------------------------------------


def ratio(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b, strict=True)]


def measure(finished: int = 1_000_000, queued: int = 100_000, claims: int = 5_000, submits: int = 2_000,
            runs: int = 5) -> list[Figure]:  # fmt: skip
    shallow: list[float] = []
    deep: list[float] = []
    big_claims: list[float] = []
    submit_empty: list[float] = []
    submit_big: list[float] = []
    list_empty: list[float] = []
    list_page: list[float] = []
    list_big: list[float] = []
    plans: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="jobrunner-scale-") as tmp:
        work = Path(tmp)
        small_db, deep_db, big_db = (
            work / "queued-small.db",
            work / "queued-deep.db",
            work / "finished-big.db",
        )
        built = [build(small_db, 0, SHALLOW), build(deep_db, 0, queued), build(big_db, finished, SHALLOW)]
        for run in range(runs):  # interleaved, so drift in machine speed hits all alike
            shallow.append(claim_rate(small_db, claims, seed=run))
            deep.append(claim_rate(deep_db, claims, seed=run, plans=plans if run == 0 else None))
            big_claims.append(claim_rate(big_db, claims, seed=run))
            empty_db = work / f"empty-{run}.db"
            build(empty_db, 0, 0)
            submit_empty.append(submit_rate(empty_db, submits))
            submit_big.append(submit_rate(big_db, submits))
            fresh_db, page_db = work / f"list-empty-{run}.db", work / f"list-page-{run}.db"
            build(fresh_db, 0, 0)
            build(page_db, SHALLOW, 0)
            empty_ms, page_ms, big_ms = list_ms([fresh_db, page_db, big_db], work)
            list_empty.append(empty_ms)
            list_page.append(page_ms)
            list_big.append(big_ms)
    big = f"{finished:,} finished"
    return [
        Figure(f"claims, {queued:,} queued", "jobs/s", deep,
               note=f"runs.claim one job at a time, timed alone; finish + a new submit between, untimed; "
                    f"databases built in {', '.join(f'{b:.1f}' for b in built)} s"),
        Figure(f"  claims, {SHALLOW} queued", "jobs/s", shallow),
        Figure(f"  ratio {queued:,} / {SHALLOW} queued", "x", ratio(deep, shallow), bar=BAR_CLAIM_RATIO,
               note=f"claim's query plan: {plans.get(deep_db.name, '?')}", extra={"plans": plans}),
        Figure(f"claims, {big} + {SHALLOW} queued", "jobs/s", big_claims),
        Figure(f"  ratio {big} / none", "x", ratio(big_claims, shallow),
               note=f"against the {SHALLOW}-queued database above"),
        Figure(f"submit(), Python API, {big}", "jobs/s", submit_big,
               note=f"{submits:,} one at a time, each committed on return"),
        Figure("  submit(), empty database", "jobs/s", submit_empty),
        Figure(f"  ratio {big} / empty", "x", ratio(submit_big, submit_empty)),
        Figure(f"jobrunner list --limit 50, {big}", "ms", list_big, higher_is_better=False,
               note=f"whole process; each run the median of {LIST_TIMES}"),
        Figure("  jobrunner list --limit 50, empty database", "ms", list_empty, higher_is_better=False,
               note="prints no rows: the difference to the next one is printing 50 rows"),
        Figure(f"  jobrunner list --limit 50, {SHALLOW} finished", "ms", list_page, higher_is_better=False),
        Figure(f"  ratio {big} / empty (time)", "x", ratio(list_big, list_empty), higher_is_better=False),
        Figure(f"  ratio {big} / {SHALLOW} finished (time)", "x", ratio(list_big, list_page),
               higher_is_better=False, note="the same 50 rows printed: what the table's size alone costs"),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__, {'finished': 'succeeded jobs in the big database', 'queued': 'queued jobs in the deep queue', 'claims': 'claims timed per database per run', 'submits': 'API submits timed per database per run'})


if __name__ == "__main__":
    main()
