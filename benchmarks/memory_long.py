"""Memory over a long run: does any process of `jobrunner daemon --workers 2` grow with the jobs it runs?

One run, a fresh database and a fresh daemon: 300,000 no-op Python jobs are submitted in
chunks of 10,000 (one transaction each) while the daemon drains them, the next chunk going in
once fewer than a chunk's worth wait. VmRSS (from /proc/<pid>/status) of the daemon and of
each worker is read once 100,000 jobs have finished and again after the last one; the figure
is each process's growth over the last 200,000 jobs. Bar: <= 3 MB per process (a leak of
60 bytes a job, as workers once had, grows a worker by about 6 MB here).

A worker that died and was replaced during the run has no growth to report; it is named in
the notes. This is a long benchmark (a minute or two): figures of one run, not a median.

Usage: python -m benchmarks.memory_long [--jobs N] [--first N] [--chunk N] [--json FILE]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, isolated, standalone
from benchmarks.procs import (
    SUCCEEDED,
    Counter,
    check_alive,
    daemon_tree,
    jobrunner_daemon,
    status_kb,
    wait_daemon_ready,
    wait_until,
)

BAR_GROWTH_MB = 3.0
PENDING = "SELECT COUNT(*) FROM job WHERE status IN ('queued', 'running')"  # a short index range


def rss_mb(pids: list[int]) -> dict[int, float]:
    return {pid: status_kb(pid) / 1024 for pid in pids}


def one_run(db: Path, jobs: int, first: int, chunk: int) -> tuple[dict[int, float], dict[int, float], int]:
    """(RSS after `first` jobs, RSS at the end, the daemon's pid): every process of the daemon's."""
    from jobrunner.domain.jobspec import build_spec
    from jobrunner.store import open_store, repo

    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        store = open_store(str(db))
        log = db.with_suffix(".log")
        pending = Counter(db, PENDING)
        try:
            with jobrunner_daemon(db, log) as proc:
                wait_daemon_ready(db, proc, log)
                submitted, marked = 0, None
                started = time.monotonic()
                while True:
                    waiting = pending()
                    done = submitted - waiting if waiting >= 0 else 0
                    if marked is None and done >= first:
                        marked = rss_mb(_processes(proc.pid))
                        _say(f"{done:,} jobs done in {time.monotonic() - started:.0f} s", marked, proc.pid)
                    if submitted >= jobs and waiting == 0:
                        break
                    if submitted < jobs and 0 <= waiting < chunk:
                        size = min(chunk, jobs - submitted)
                        specs = [build_spec({"callable": "benchmarks.noop:noop"}) for _ in range(size)]
                        repo.submit_many(store, specs, time.time())
                        submitted += size
                        continue
                    check_alive(proc, log)
                    time.sleep(0.05)
                succeeded = Counter(db, SUCCEEDED)
                try:
                    wait_until(lambda: succeeded() >= jobs, f"{jobs} jobs to succeed", 60, proc, log)
                finally:
                    succeeded.close()
                end = rss_mb(_processes(proc.pid))
                _say(f"{jobs:,} jobs done in {time.monotonic() - started:.0f} s", end, proc.pid)
                assert marked is not None
                return marked, end, proc.pid
        finally:
            pending.close()
            store.close()


def _processes(daemon: int) -> list[int]:
    return [daemon, *daemon_tree(daemon)[1]]


def _say(when: str, rss: dict[int, float], daemon: int) -> None:
    readings = ", ".join(f"{'daemon' if pid == daemon else 'worker'} {pid} {mb:.1f} MB" for pid, mb in rss.items())
    print(f"memory_long: {when}: {readings}", file=sys.stderr)


def measure(jobs: int = 300_000, first: int = 100_000, chunk: int = 10_000) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="jobrunner-memory-long-") as tmp:
        marked, end, daemon = one_run(Path(tmp) / "memory-long.db", jobs, first, chunk)
    rest = jobs - first
    figures: list[Figure] = []
    for number, pid in enumerate(sorted(marked, key=lambda p: (p != daemon, p))):
        name = "daemon" if pid == daemon else f"worker {number}"
        if pid not in end:
            figures.append(Figure(f"{name}: RSS after {first:,} jobs", "MB", [marked[pid]], higher_is_better=False,
                                  note=f"pid {pid} was gone by the end (replaced): no growth to report"))  # fmt: skip
            continue
        growth = end[pid] - marked[pid]
        figures += [
            Figure(f"{name}: RSS after {first:,} jobs", "MB", [marked[pid]], higher_is_better=False),
            Figure(f"  {name}: RSS after {jobs:,} jobs", "MB", [end[pid]], higher_is_better=False),
            Figure(f"  {name}: growth over the last {rest:,}", "MB", [growth], higher_is_better=False,
                   bar=BAR_GROWTH_MB, extra={"pid": pid, "bytes_per_job": growth * 2**20 / rest}),
        ]  # fmt: skip
    for pid in sorted(set(end) - set(marked)):
        figures.append(Figure(f"worker started late: RSS after {jobs:,} jobs", "MB", [end[pid]],
                              higher_is_better=False, note=f"pid {pid} replaced a worker during the run"))  # fmt: skip
    bars = [f for f in figures if f.bar is not None]
    held = bool(bars) and all(f.verdict == "ok" for f in bars)
    print(f"memory_long: growth <= {BAR_GROWTH_MB:.0f} MB per process over the last {rest:,} jobs: "
          f"{'holds' if held else 'MISSED'}", file=sys.stderr)  # fmt: skip
    return figures


def main() -> None:
    standalone(measure, __doc__, helps={"jobs": "no-op jobs in all", "first": "jobs before the first reading",
                                        "chunk": "jobs per bulk submit"})  # fmt: skip


if __name__ == "__main__":
    main()
