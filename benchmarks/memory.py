"""Memory of `jobrunner daemon --workers 2`: resident set of the daemon process and of each worker.

Per run, a fresh database and a fresh daemon:
  idle: once the daemon has registered and its workers exist, VmRSS (from /proc/<pid>/status)
        is sampled every 50 ms for 1 s; the largest reading counts. Bar: daemon <= 60 MB.
  load: 5,000 no-op Python jobs are submitted in one transaction and VmRSS is sampled every
        10 ms until every job has succeeded; the peak counts.
  after: idle again for 1 s after the load (context: what a daemon that has worked holds).
Workers are reported separately (the larger of the two); they are forked from the
multiprocessing forkserver, so much of their RSS is shared with it and each other.
The daemon's VmHWM (its lifetime peak, start-up included) is in the JSON.

Usage: python -m benchmarks.memory [--jobs N] [--runs N] [--json FILE]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, isolated, standalone
from benchmarks.procs import (
    SUCCEEDED,
    WORKERS,
    Counter,
    check_alive,
    cmdline,
    daemon_tree,
    jobrunner_daemon,
    status_kb,
    wait_daemon_ready,
    wait_until,
)

BAR_IDLE_MB = 60.0
IDLE_WINDOW_S = 1.0


class Peaks:
    """The largest VmRSS seen for the daemon and for any one of its workers, in MB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.workers = daemon_tree(pid)[1]
        self.daemon_mb = self.worker_mb = 0.0

    def sample(self) -> None:
        self.daemon_mb = max(self.daemon_mb, status_kb(self.pid) / 1024)
        for worker in self.workers:
            self.worker_mb = max(self.worker_mb, status_kb(worker) / 1024)


def watch(peaks: Peaks, seconds: float, every: float = 0.05) -> Peaks:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        peaks.sample()
        time.sleep(every)
    return peaks


def one_run(db: Path, jobs: int) -> dict[str, float]:
    from jobrunner.domain.jobspec import build_spec
    from jobrunner.store import open_store, repo

    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        store = open_store(str(db))
        log = db.with_suffix(".log")
        try:
            with jobrunner_daemon(db, log) as proc:
                wait_daemon_ready(db, proc, log)
                idle = watch(Peaks(proc.pid), IDLE_WINDOW_S)
                repo.submit_many(store, [build_spec({"callable": "benchmarks.noop:noop"}) for _ in range(jobs)],
                                 time.time())  # fmt: skip
                load, done = Peaks(proc.pid), Counter(db, SUCCEEDED)
                try:

                    def finished() -> bool:
                        load.sample()
                        return done() >= jobs

                    wait_until(finished, f"{jobs} jobs to succeed", proc=proc, log=log, interval=0.01)
                finally:
                    done.close()
                after = watch(Peaks(proc.pid), IDLE_WINDOW_S)
                check_alive(proc, log)
                hwm = status_kb(proc.pid, "VmHWM") / 1024
                helpers = daemon_tree(proc.pid)[2]
                forkserver = max(
                    (status_kb(p) / 1024 for p in helpers if "forkserver" in cmdline(p)), default=0.0
                )
        finally:
            store.close()
    return {"idle": idle.daemon_mb, "idle_worker": idle.worker_mb, "load": load.daemon_mb,
            "load_worker": load.worker_mb, "after": after.daemon_mb, "hwm": hwm, "forkserver": forkserver}  # fmt: skip


def measure(jobs: int = 5_000, runs: int = 3) -> list[Figure]:
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="jobrunner-memory-") as tmp:
        for run in range(runs):
            results.append(one_run(Path(tmp) / f"memory-{run}.db", jobs))

    def values(key: str) -> list[float]:
        return [r[key] for r in results]

    return [
        Figure(f"daemon RSS, idle ({WORKERS} workers)", "MB", values("idle"), higher_is_better=False,
               bar=BAR_IDLE_MB, extra={"forkserver_mb": values("forkserver")},
               note="VmRSS of the daemon process, largest over 1 s once registered with workers up"),
        Figure("  each worker, idle (the larger)", "MB", values("idle_worker"), higher_is_better=False,
               note="forked from the forkserver: much of it shared"),
        Figure(f"daemon RSS, peak running {jobs:,} no-op jobs", "MB", values("load"), higher_is_better=False,
               extra={"vmhwm_mb": values("hwm")}, note="VmRSS sampled every 10 ms until all succeeded"),
        Figure("  each worker, peak (the larger)", "MB", values("load_worker"), higher_is_better=False),
        Figure("  daemon RSS, idle after the load", "MB", values("after"), higher_is_better=False),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__)


if __name__ == "__main__":
    main()
