"""Shell jobs: 1,000 `true` commands end to end through `jobrunner daemon --workers 2`, against a ceiling.

jobrunner: the daemon is started and warm (its workers up, a few `true` jobs run); then the
clock starts, 1,000 `true` jobs are submitted in one transaction (repo.submit_many, which
pokes the daemon), and it stops when every job row says succeeded. Each job runs as the
daemon runs any shell job: its own session, output to its own log file, exit code recorded.
Daemon start-up is left out on purpose: the ceiling has none, and start-up is measured
elsewhere (huey_compare's "submitted first").

Ceiling: a bare Python loop that runs the same `true` processes 2 at a time (two threads,
each starting the next as soon as its last one exited, so 2 are in flight throughout),
each with start_new_session=True and stdout/stderr to a file of its own, opened per job.
Bar: jobrunner >= 70% of the ceiling, ratio in the same run.

Context: the same loop with an empty preexec_fn (the worker sets one, die_with_parent): any
preexec_fn makes subprocess fork the whole process instead of using vfork, and the child
runs Python before exec; measured in this process, so only its direction carries over.

Usage: python -m benchmarks.shell [--jobs N] [--runs N] [--json FILE]
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import Figure, isolated, standalone
from benchmarks.procs import SUCCEEDED, WORKERS, jobrunner_daemon, wait_daemon_ready, wait_for_count

BAR_RATIO = 0.70
WARM = 2 * WORKERS


def jobrunner_seconds(jobs: int, db: Path) -> float:
    """Seconds from submitting `jobs` `true` jobs to a warm daemon until every one has succeeded."""
    from jobrunner.domain.jobspec import build_spec
    from jobrunner.store import open_store, repo

    cwd = str(db.parent)
    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        store = open_store(str(db))
        log = db.with_suffix(".log")
        try:
            with jobrunner_daemon(db, log) as proc:
                wait_daemon_ready(db, proc, log)
                repo.submit_many(store, [build_spec({"command": ["true"], "cwd": cwd}) for _ in range(WARM)],
                                 time.time())  # fmt: skip
                wait_for_count(db, SUCCEEDED, WARM, proc, log, timeout=60)
                specs = [build_spec({"command": ["true"], "cwd": cwd}) for _ in range(jobs)]
                start = time.perf_counter()
                repo.submit_many(store, specs, time.time())
                wait_for_count(db, SUCCEEDED, WARM + jobs, proc, log)
                elapsed = time.perf_counter() - start
            failed = store.execute("SELECT COUNT(*) FROM job WHERE status != 'succeeded'").fetchone()[0]
            if failed:
                raise RuntimeError(f"{failed} shell jobs did not succeed ({db})")
        finally:
            store.close()
    return elapsed


def loop_seconds(jobs: int, logs: Path, preexec_fn: Callable[[], None] | None = None) -> float:
    """Seconds for a bare loop to run `jobs` `true` processes, WORKERS at a time, each with its own log."""
    logs.mkdir()
    numbers = itertools.count()
    errors: list[str] = []

    def lane() -> None:
        while (n := next(numbers)) < jobs:
            fd = os.open(logs / f"{n}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                code = subprocess.Popen(["true"], cwd=logs, stdin=subprocess.DEVNULL, stdout=fd,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=preexec_fn).wait()  # fmt: skip
            finally:
                os.close(fd)
            if code != 0:
                errors.append(f"true exited {code}")

    lanes = [threading.Thread(target=lane) for _ in range(WORKERS)]
    start = time.perf_counter()
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} of {jobs} runs failed: {errors[0]}")
    return elapsed


def _preexec() -> None:
    """A preexec_fn as cheap as can be: what matters is that one is set at all."""


def measure(jobs: int = 1_000, runs: int = 5) -> list[Figure]:
    jr: list[float] = []
    ceiling: list[float] = []
    preexec: list[float] = []
    with tempfile.TemporaryDirectory(prefix="jobrunner-shell-") as tmp:
        work = Path(tmp)
        for run in range(runs):  # interleaved, so drift in machine speed hits all alike
            jr.append(jobs / jobrunner_seconds(jobs, work / f"shell-{run}.db"))
            ceiling.append(jobs / loop_seconds(jobs, work / f"loop-{run}"))
            preexec.append(jobs / loop_seconds(jobs, work / f"preexec-{run}", _preexec))
    return [
        Figure(f"shell jobs end to end ({jobs:,} `true`, {WORKERS} workers): jobrunner", "jobs/s", jr,
               note="warm daemon; clock from the bulk submit until every job succeeded; a log file per job"),
        Figure(f"  ceiling: bare loop, {WORKERS} concurrent Popen", "jobs/s", ceiling,
               note="start_new_session=True, stdout/stderr to a file per process"),
        Figure("  ratio jobrunner / ceiling", "x", [a / b for a, b in zip(jr, ceiling, strict=True)],
               bar=BAR_RATIO),
        Figure("  bare loop with a preexec_fn (as the worker)", "jobs/s", preexec,
               note="context: an empty preexec_fn, in this process; any preexec_fn turns vfork into fork"),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__)


if __name__ == "__main__":
    main()
