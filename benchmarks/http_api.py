"""The HTTP API (`jobrunner serve`) under load: a real server process on a temporary database.

Per run, on fresh databases, `jobrunner serve --port 0` in a process of its own (with a token
in its environment, as a served API has), and clients in this process over keep-alive
connections:

  - single submits: 8 keep-alive connections, each POSTing /api/jobs of a shell job one request
    at a time (after 10 untimed ones each); jobs/s over all of them (bar >= 1,500 on a 2-core
    machine), and the CPU µs per request of the server process and of the clients. The clients
    are one asyncio loop (uvloop where installed) writing HTTP/1.1 by hand: about 45 µs of CPU a
    request, where httpx in 8 threads took 500, as much as the server, on the same two cores.
    Every answer must be a 201 with a new id, and the database must hold every job afterwards;
  - bulk: one POST /api/jobs/bulk of 10,000 jobs (half shell commands, half Python calls with
    arguments, as benchmarks.bulk_submit's file): jobs/s from the request to its answer
    (bar >= 30,000);
  - a page: GET /api/jobs?limit=50 on a database of 100,000 finished jobs, newest first, and
    the next page by its cursor; per request, ms (bar: median <= 20);
  - SSE delay: `jobrunner daemon --workers 2` on the database, a client on /api/events, jobs
    submitted one at a time over the API (a random gap between them, so they fall anywhere in
    the stream's 25 ms poll); for each state change the daemon writes (running, succeeded), the
    moment the client read the event minus the event row's `at`, the time the daemon gave its
    transaction (read from the database afterwards, at full precision): bar median <= 50 ms;
  - wait(): the Python API's jobrunner.wait(id) on a job that sleeps 20-120 ms, from its finish
    (`finished_at`, written by the daemon in the finishing transaction) to wait's return:
    bar median <= 5 ms.

The other parts use httpx. The clients and the server share the machine's two cores (and the
daemon, for the last two): what a client on the same host sees.

Usage: python -m benchmarks.http_api [--submits N] [--bulk N] [--listed N] [--events N] [--waits N] [--runs N] [--json FILE]
"""

from __future__ import annotations

import asyncio
import json
import queue
import random
import re
import secrets
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, isolated, standalone
from benchmarks.procs import (
    DEADLINE_S,
    check_alive,
    child_env,
    cpu_seconds,
    jobrunner_daemon,
    running,
    wait_daemon_ready,
    wait_until,
)

CLIENTS = 8
BAR_SUBMITS = 1_500.0
BAR_BULK = 30_000.0
BAR_PAGE_MS = 20.0
BAR_SSE_MS = 50.0
BAR_WAIT_MS = 5.0
PAGES = 100  # page requests per run (after WARM untimed ones)
WARM = 20
WARM_SUBMITS = 10  # per connection, untimed: serve listens (and says so) before it has built its app
SERVING = re.compile(r"serving http://127\.0\.0\.1:(\d+)/api")
CONTENT_LENGTH = re.compile(r"(?im)^content-length:[ \t]*(\d+)")
CLOSE = re.compile(r"(?im)^connection:[ \t]*close")


@contextmanager
def served(db: Path, token: str) -> Iterator[tuple[str, int]]:
    """`jobrunner serve --port 0` on `db`; yields its base URL once it listens, and its pid."""
    log = db.with_suffix(f".serve-{time.monotonic_ns()}.log")
    argv = [sys.executable, "-m", "jobrunner", "--db", str(db), "serve", "--port", "0"]
    with running(argv, child_env(JOBRUNNER_API_TOKEN=token), db.parent, log, signal.SIGTERM) as proc:
        found: list[str] = []

        def listening() -> bool:
            found[:] = SERVING.findall(log.read_text(errors="replace")) if log.exists() else []
            return bool(found)

        wait_until(listening, "the server to listen", 60, proc, log)
        url = f"http://127.0.0.1:{found[0]}"
        yield url, proc.pid
        check_alive(proc, log)


def client(url: str, token: str) -> Any:
    import httpx

    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


class Submitter(asyncio.Protocol):
    """One keep-alive client connection: POST /api/jobs, read the whole answer, check it is a 201
    with an id, then the next. HTTP/1.1 written and read by hand (the answer's status line and
    Content-Length are all it needs), so the client costs a small part of what the server does
    per request and the figure is the server's."""

    def __init__(self, host: str, token: str) -> None:
        self.head = (f"POST /api/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()  # fmt: skip
        self.ids: list[int] = []
        self.left = 0
        self.done: asyncio.Future[None] | None = None
        self.buffer = b""
        self.transport: Any = None

    def submit(self, count: int) -> asyncio.Future[None]:
        """Submit `count` jobs one after the other; the future is done after the last answer."""
        self.done = asyncio.get_running_loop().create_future()
        self.left = count
        if count > 0:
            self.send_next()
        else:
            self.done.set_result(None)
        return self.done

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send_next(self) -> None:
        body = b'{"command":["echo","%d"],"tags":["http"]}' % len(self.ids)
        self.transport.write(b"%s%d\r\n\r\n%s" % (self.head, len(body), body))
        self.left -= 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1")
        length = CONTENT_LENGTH.search(head)
        if length is None:
            self.fail(RuntimeError(f"an answer without Content-Length: {head!r}"))
            return
        whole = end + 4 + int(length.group(1))
        if len(self.buffer) < whole:
            return  # the body is still on its way
        body, self.buffer = self.buffer[end + 4 : whole], self.buffer[whole:]
        try:
            if not head.startswith("HTTP/1.1 201 ") or CLOSE.search(head):
                raise ValueError(head.partition("\r")[0])
            self.ids.append(int(json.loads(body)["id"]))
        except (ValueError, KeyError, TypeError) as exc:
            self.fail(RuntimeError(f"POST /api/jobs answered {exc}: {body[:300]!r}"))
            return
        if self.left > 0:
            self.send_next()
        elif self.done is not None and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RuntimeError(f"the server closed a connection after {len(self.ids)} submits"))

    def fail(self, exc: Exception) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)


async def submit_all(url: str, token: str, each: int, server_pid: int) -> tuple[list[int], float, float, float]:
    """CLIENTS connections submitting `each` jobs one at a time (after WARM_SUBMITS each, untimed);
    every id, the seconds from the first timed request to the last answer, and the CPU seconds of
    the server and of this process meanwhile."""
    loop = asyncio.get_running_loop()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    clients = [Submitter(f"{host}:{port}", token) for _ in range(CLIENTS)]
    try:
        for client in clients:  # connected, and the server's submit path warm, before the clock starts
            await loop.create_connection(lambda c=client: c, host, int(port))  # type: ignore[misc]
        await asyncio.wait_for(asyncio.gather(*(client.submit(WARM_SUBMITS) for client in clients)), DEADLINE_S)
        start, server_cpu, client_cpu = time.perf_counter(), cpu_seconds([server_pid]), time.process_time()
        await asyncio.wait_for(asyncio.gather(*(client.submit(each) for client in clients)), DEADLINE_S)
        elapsed = time.perf_counter() - start
        server_cpu, client_cpu = cpu_seconds([server_pid]) - server_cpu, time.process_time() - client_cpu
    finally:
        for client in clients:
            client.done = None  # closed on purpose: no failure
            if client.transport is not None:
                client.transport.close()
    return [i for client in clients for i in client.ids], elapsed, server_cpu, client_cpu


def event_loop() -> Any:
    """uvloop's loop where installed (jobrunner serve's extra brings it): the lighter client."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def single_submits(url: str, token: str, total: int, server_pid: int, db: Path) -> tuple[float, float, float]:
    """jobs/s of `total` POST /api/jobs from CLIENTS keep-alive connections, one job at a time each,
    and the CPU µs per request of the server process and of the clients (this process). Every
    answer is a 201 with a new id, and the database holds every job afterwards."""
    each = max(total // CLIENTS, 1)
    with asyncio.Runner(loop_factory=event_loop) as runner:
        ids, elapsed, server_cpu, client_cpu = runner.run(submit_all(url, token, each, server_pid))
    done = CLIENTS * each
    answered = CLIENTS * (WARM_SUBMITS + each)
    with sqlite3.connect(str(db)) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM job").fetchone()
    if len(set(ids)) != answered or stored != answered:
        raise RuntimeError(f"{answered} submits answered 201 with {len(set(ids))} different ids, and the "
                           f"database holds {stored} jobs")  # fmt: skip
    return done / elapsed, 1e6 * server_cpu / done, 1e6 * client_cpu / done


def bulk_items(jobs: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i in range(jobs):
        if i % 2:
            items.append({"callable": "json:dumps", "kwargs": {"month": f"2026-{i % 12 + 1:02d}", "n": i},
                          "priority": "high"})  # fmt: skip
        else:
            items.append({"command": ["convert", f"img-{i:05d}.png", f"img-{i:05d}.jpg"], "tags": ["images"]})
    return items


def bulk_submit(url: str, token: str, jobs: int) -> float:
    """jobs/s of one POST /api/jobs/bulk of `jobs` jobs (the body encoded before the clock starts)."""
    body = json.dumps(bulk_items(jobs)).encode()
    with client(url, token) as c:
        c.get("/api/stats").raise_for_status()
        start = time.perf_counter()
        answer = c.post("/api/jobs/bulk", content=body, headers={"Content-Type": "application/json"})
        elapsed = time.perf_counter() - start
    if answer.status_code != 201 or len(answer.json()["ids"]) != jobs:
        raise RuntimeError(f"bulk submit answered {answer.status_code}: {answer.text[:300]}")
    return jobs / elapsed


def page_times(url: str, token: str) -> list[float]:
    """ms of each GET /api/jobs?limit=50, alternating the first page and the one after it."""
    times = []
    with client(url, token) as c:
        cursor = None
        for n in range(WARM + PAGES):
            params = {"limit": 50} if n % 2 == 0 or cursor is None else {"limit": 50, "cursor": cursor}
            start = time.perf_counter()
            answer = c.get("/api/jobs", params=params)
            elapsed = time.perf_counter() - start
            answer.raise_for_status()
            page = answer.json()
            if len(page["jobs"]) != 50:
                raise RuntimeError(f"a page of {len(page['jobs'])} jobs, not 50")
            cursor = page["next"] if n % 2 == 0 else cursor
            if n >= WARM:
                times.append(1000 * elapsed)
    return times


class EventClient:
    """Reads /api/events in a thread: each `state` event with the moment it was read."""

    def __init__(self, url: str, token: str) -> None:
        self.client = client(url, token)
        self.arrivals: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the event stream did not start within 30 s")

    def _read(self) -> None:
        import contextlib

        import httpx

        with contextlib.suppress(httpx.HTTPError), self.client.stream("GET", "/api/events") as response:
            kind = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    arrived = time.time()
                    if kind == "ready":
                        self.ready.set()
                    elif kind == "state":
                        self.arrivals.put((arrived, json.loads(line[6:])))

    def next_state(self, timeout: float = 60.0) -> tuple[float, dict[str, Any]]:
        try:
            return self.arrivals.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no state event within {timeout:.0f} s") from None

    def close(self) -> None:
        self.client.close()


def event_delays(url: str, token: str, db: Path, count: int, seed: int) -> list[float]:
    """ms from the daemon's transaction (the event row's `at`) to the client reading the event,
    for the `running` and `succeeded` events of `count` jobs submitted one at a time."""
    rng = random.Random(seed)
    arrived: dict[int, float] = {}
    stream = EventClient(url, token)
    try:
        with client(url, token) as c:
            for _ in range(count):
                job_id = c.post("/api/jobs", json={"callable": "benchmarks.noop:noop"}).json()["id"]
                while True:
                    at, event = stream.next_state()
                    if event["job_id"] != job_id:
                        continue
                    if event["to"] in ("running", "succeeded"):
                        arrived[event["event_id"]] = at
                    if event["to"] == "succeeded":
                        break
                    if event["to"] in ("dead", "cancelled"):
                        raise RuntimeError(f"job {job_id} ended {event['to']}: {event['message']}")
                time.sleep(rng.uniform(0, 0.05))  # the gap before the next job: anywhere in a poll
    finally:
        stream.close()
    with sqlite3.connect(str(db)) as conn:
        rows = conn.execute(f"SELECT id, at FROM event WHERE id IN ({', '.join('?' * len(arrived))})",
                            list(arrived)).fetchall()  # fmt: skip
    return [1000 * (arrived[event_id] - at) for event_id, at in rows]


def wait_delays(url: str, token: str, db: Path, count: int, seed: int) -> list[float]:
    """ms from each job's finish (its row's finished_at) to jobrunner.wait() returning its result."""
    import jobrunner

    rng = random.Random(seed)
    delays = []
    with client(url, token) as c, sqlite3.connect(str(db)) as conn:
        for _ in range(count):
            job = {"callable": "time:sleep", "args": [round(rng.uniform(0.02, 0.12), 4)]}
            job_id = c.post("/api/jobs", json=job).json()["id"]
            jobrunner.wait(job_id, timeout=60, db=str(db))
            returned = time.time()
            (finished,) = conn.execute("SELECT finished_at FROM job WHERE id = ?", (job_id,)).fetchone()
            delays.append(1000 * (returned - finished))
    return delays


def one_run(work: Path, big: Path, submits: int, bulk: int, events: int, waits: int, seed: int) -> dict[str, Any]:
    from jobrunner.api import connect
    from jobrunner.store import open_store

    token = secrets.token_urlsafe(24)
    result: dict[str, Any] = {}
    submit_db = work / "submits.db"
    open_store(str(submit_db)).close()
    with served(submit_db, token) as (url, pid):
        result["single"], result["server_us"], result["client_us"] = single_submits(url, token, submits, pid, submit_db)
        result["bulk"] = bulk_submit(url, token, bulk)
    with served(big, token) as (url, _):
        result["pages"] = page_times(url, token)
    live_db = work / "live.db"
    open_store(str(live_db)).close()
    log = work / "daemon.log"
    try:
        with jobrunner_daemon(live_db, log) as daemon, served(live_db, token) as (url, _):
            wait_daemon_ready(live_db, daemon, log)
            result["sse"] = event_delays(url, token, live_db, events, seed)
            result["wait"] = wait_delays(url, token, live_db, waits, seed)
            check_alive(daemon, log)
    finally:
        connect(str(live_db)).close()
    return result


def build_listed(db: Path, jobs: int) -> None:
    """A database of `jobs` finished jobs, stored as a bulk submit stores them (then marked
    succeeded with a finish time, untimed), with their submitted events."""
    from jobrunner.config import Config
    from jobrunner.serve.submit import job_specs
    from jobrunner.store import open_store, repo

    store = open_store(str(db))
    try:
        for first in range(0, jobs, 10_000):
            now = time.time()
            specs = job_specs(bulk_items(min(10_000, jobs - first)), Config(), True, now, bulk=True)
            repo.submit_many(store, specs, now)
    finally:
        store.close()
    with sqlite3.connect(str(db)) as conn:
        conn.execute("UPDATE job SET status = 'succeeded', attempts = 1, started_at = created_at, "
                     "finished_at = created_at + 0.5")  # fmt: skip


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(submits: int = 4_000, bulk: int = 10_000, listed: int = 100_000, events: int = 100, waits: int = 50,
            runs: int = 3) -> list[Figure]:  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="jobrunner-http-") as tmp, isolated(tmp):
        big = Path(tmp) / "big.db"
        build_listed(big, listed)
        for run in range(runs):
            work = Path(tmp) / f"run-{run}"
            work.mkdir(mode=0o700)
            results.append(one_run(work, big, submits, bulk, events, waits, seed=run))
    pages = [r["pages"] for r in results]
    sse = [r["sse"] for r in results]
    waited = [r["wait"] for r in results]
    return [
        Figure(f"HTTP: single submits, {CLIENTS} keep-alive clients", "jobs/s", [r["single"] for r in results],
               bar=BAR_SUBMITS, note=f"{CLIENTS} x {submits // CLIENTS:,} POST /api/jobs; the clients and the "
               "server share the 2 cores: 2 cores / (server + client CPU per request) is the ceiling"),
        Figure("  server CPU per submit", "µs", [r["server_us"] for r in results], higher_is_better=False),
        Figure(f"  client CPU per submit (asyncio, {CLIENTS} connections)", "µs", [r["client_us"] for r in results],
               higher_is_better=False),
        Figure(f"HTTP: bulk submit of {bulk:,} jobs in one request", "jobs/s", [r["bulk"] for r in results],
               bar=BAR_BULK),
        Figure(f"HTTP: GET /api/jobs page of 50, {listed:,} jobs: median", "ms",
               [statistics.median(p) for p in pages], higher_is_better=False, bar=BAR_PAGE_MS,
               note=f"{PAGES} requests per run, first page and next page alternating"),
        Figure("  p99", "ms", [percentile(p, 0.99) for p in pages], higher_is_better=False),
        Figure("HTTP: SSE, daemon's commit -> event at the client: median", "ms",
               [statistics.median(s) for s in sse], higher_is_better=False, bar=BAR_SSE_MS,
               note=f"{events} jobs one at a time, their running and succeeded events"),
        Figure("  p99", "ms", [percentile(s, 0.99) for s in sse], higher_is_better=False),
        Figure("wait(): job's finish -> wait() returns: median", "ms", [statistics.median(w) for w in waited],
               higher_is_better=False, bar=BAR_WAIT_MS, note=f"{waits} jobs of 20-120 ms, one at a time"),
        Figure("  p99", "ms", [percentile(w, 0.99) for w in waited], higher_is_better=False),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__, {"submits": "single submits in all (split over the clients)",
                                  "bulk": "jobs in the bulk request", "listed": "jobs in the listed database",
                                  "events": "jobs whose events are timed", "waits": "jobs waited for"})  # fmt: skip


if __name__ == "__main__":
    main()
