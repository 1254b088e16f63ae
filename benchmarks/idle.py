"""An idle daemon: what it costs to keep running, and how fast it picks a job up after idling.

One `jobrunner daemon --workers 2` per run, warm (a few jobs run first). Then, SAMPLES times:
  - an idle gap of GAP seconds (10 s by default) with nothing submitted; the CPU time of the
    daemon and every process under it (forkserver, workers) is read from /proc/<pid>/stat
    (utime + stime) at both ends of the gap;
  - then one marker job is submitted through the Python API: pickup latency is from just
    before the submit to the moment the job's code starts (the job writes its own clock),
    and the next gap starts once its row says succeeded.
Per run: CPU as % of one core over all the gaps together (bar < 1%), the daemon process
alone for context, and the median and the worst of the few pickups after idling (5 per run
by default: each costs a 10 s gap; the pickup bar of 1.5 ms applies to warm pickups, in huey_compare).
Then a flood: this process sends wake-up pokes to the daemon's socket as fast as it can for
FLOOD_S seconds with nothing queued; the daemon's CPU over it shows what a flood costs (each
poke used to cost a claim transaction; now at most one per pokegate.QUIET_S).

Usage: python -m benchmarks.idle [--samples N] [--gap SECONDS] [--runs N] [--json FILE]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, isolated, standalone
from benchmarks.procs import (
    SUCCEEDED,
    WORKERS,
    cpu_seconds,
    daemon_tree,
    jobrunner_daemon,
    pickup_once,
    wait_daemon_ready,
    wait_for_count,
)

BAR_CPU_PERCENT = 1.0
FLOOD_S = 3.0
WARM = 2 * WORKERS


def one_run(db: Path, samples: int, gap: float) -> tuple[float, float, list[float], float, int]:
    """(tree CPU %, daemon-only CPU %, pickup seconds after each gap, daemon CPU % under a
    flood of pokes, pokes sent) for one daemon."""
    import jobrunner
    from jobrunner.api import connect
    from jobrunner.store import open_store

    marks = db.parent / f"marks-{db.stem}"
    marks.mkdir()
    with isolated(db.parent, JOBRUNNER_DB=str(db)):
        open_store(str(db)).close()
        log = db.with_suffix(".log")
        submit = jobrunner.submit
        try:
            with jobrunner_daemon(db, log, level="info") as proc:  # a few lines: why it stopped, if it does
                wait_daemon_ready(db, proc, log)
                for n in range(WARM):  # every worker has imported the job's module and run it
                    pickup_once(lambda p: submit("benchmarks.noop:mark", kwargs={"path": p}),
                                marks / f"warm-{n}", proc, log)  # fmt: skip
                tree_cpu = daemon_cpu = idle = 0.0
                pickups = []
                for n in range(samples):
                    wait_for_count(db, SUCCEEDED, WARM + n, proc, log, timeout=60)
                    daemon, workers, others = daemon_tree(proc.pid)
                    everyone = [daemon, *workers, *others]
                    before, before_daemon, start = (
                        cpu_seconds(everyone),
                        cpu_seconds([daemon]),
                        time.monotonic(),
                    )
                    time.sleep(gap)  # the measurement window itself: nothing to wait for
                    tree_cpu += cpu_seconds(everyone) - before
                    daemon_cpu += cpu_seconds([daemon]) - before_daemon
                    idle += time.monotonic() - start
                    pickups.append(pickup_once(lambda p: submit("benchmarks.noop:mark", kwargs={"path": p}),
                                               marks / str(n), proc, log))  # fmt: skip
                wait_for_count(db, SUCCEEDED, WARM + samples, proc, log, timeout=60)
                flood_cpu, sent = _flood(db, proc.pid)
        finally:
            connect(str(db)).close()
    return 100 * tree_cpu / idle, 100 * daemon_cpu / idle, pickups, flood_cpu, sent


def _flood(db: Path, pid: int) -> tuple[float, int]:
    """Poke the daemon as fast as one process can for FLOOD_S: (its CPU % meanwhile, pokes sent)."""
    import socket

    from jobrunner.wakeup import address

    where = address(str(db))
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        before, start = cpu_seconds([pid]), time.monotonic()
        while time.monotonic() - start < FLOOD_S:
            for _ in range(100):
                try:
                    sender.sendto(b"!", where)
                    sent += 1
                except BlockingIOError:
                    pass
        return 100 * (cpu_seconds([pid]) - before) / (time.monotonic() - start), sent


def measure(samples: int = 5, gap: float = 10.0, runs: int = 3) -> list[Figure]:
    cpu: list[float] = []
    cpu_daemon: list[float] = []
    medians: list[float] = []
    worst: list[float] = []
    flood: list[float] = []
    pokes: list[float] = []
    with tempfile.TemporaryDirectory(prefix="jobrunner-idle-") as tmp:
        for run in range(runs):
            tree, daemon, pickups, flood_cpu, sent = one_run(Path(tmp) / f"idle-{run}.db", samples, gap)
            flood.append(flood_cpu)
            pokes.append(sent / FLOOD_S)
            cpu.append(tree)
            cpu_daemon.append(daemon)
            medians.append(statistics.median(pickups) * 1000)
            worst.append(max(pickups) * 1000)
    return [
        Figure(f"idle daemon CPU ({WORKERS} workers, {samples} x {gap:g} s idle)", "% core", cpu,
               higher_is_better=False, bar=BAR_CPU_PERCENT,
               note="daemon + forkserver + workers, utime+stime from /proc over the idle gaps"),
        Figure("  the daemon process alone", "% core", cpu_daemon, higher_is_better=False),
        Figure(f"pickup after {gap:g} s idle: median of {samples}", "ms", medians, higher_is_better=False,
               note=f"{samples} samples per run, each after {gap:g} s with nothing submitted; no bar of "
                    "its own (warm pickup's bar is 1.5 ms median)"),
        Figure(f"  worst of {samples}", "ms", worst, higher_is_better=False),
        Figure(f"daemon CPU under a poke flood ({FLOOD_S:g} s, nothing queued)", "% core", flood,
               higher_is_better=False, note="the daemon process alone; pokes from one local process"),
        Figure("  pokes sent", "per s", pokes),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__, {'samples': 'idle gaps (and pickups) per run', 'gap': 'seconds of idleness before each pickup'})


if __name__ == "__main__":
    main()
