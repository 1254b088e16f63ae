"""Job output at any size: `jobrunner logs` of a 300 MB log, and (when their modules are there)
the TUI following a fast writer (benchmarks/output_tui.py) and a storm of progress reports
(benchmarks/output_progress.py), so one `python -m benchmarks --only output` runs all three.

`logs`: a finished job whose log file holds 300 MB of varied lines (escapes, \\r, every byte
value), written directly, not through a daemon. Each run is a whole `jobrunner logs` process;
its peak resident set is the kernel's (getrusage RUSAGE_CHILDREN, taken by a small wrapper
process once the command has exited). Figures:
  logs 300 MB > file   wall time and peak RSS, output to a file (checked byte for byte once).
                       Bar: memory <= 50 MB (it used to read the whole file: 335 MB).
  logs | head -1       wall time until `jobrunner logs` exits after head has its line.
  logs --tail 10       wall time and peak RSS: only the file's end is read.
--quick uses a 8 MB log (a smoke run that checks the harness works, not a measurement).

Usage: python -m benchmarks.output [--quick] [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, isolated, table

BAR_LOGS_MB = 50.0
SIZE_MB = 300
QUICK_SIZE_MB = 8
OTHERS = ("output_tui", "output_progress")  # each: measure(quick: bool) -> list[Figure]
# Runs a command with stdout to argv[1] ("-" for a pipe into `head -1`); prints its wall time (s),
# exit code and peak RSS (kB) once it has exited. RUSAGE_CHILDREN counts only what it waited for.
WRAPPER = """
import resource, subprocess, sys, time
start = time.perf_counter()
if sys.argv[1] == "-":
    proc = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE)
    head = subprocess.run(["head", "-1"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
    proc.stdout.close()
    code = proc.wait()
else:
    with open(sys.argv[1], "wb") as out:
        code = subprocess.call(sys.argv[2:], stdout=out)
elapsed = time.perf_counter() - start
print(elapsed, code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def write_log(path: Path, size_mb: int) -> str:
    """`size_mb` MB of varied lines; returns their sha256."""
    block = b"".join(
        b"%06d \x1b[1mbold\x1b[0m 50%%\r75%%\r100%% %s\n" % (n, bytes(range(256))) for n in range(4000)
    )
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        written = 0
        while written < size_mb * 1024 * 1024:
            written += handle.write(block)
            digest.update(block)
    return digest.hexdigest()


def plant(db: Path, size_mb: int) -> tuple[int, Path, str]:
    """A finished job in a fresh database, with a log of `size_mb` MB."""
    from jobrunner.config import log_dir_for
    from jobrunner.domain.jobspec import build_spec
    from jobrunner.store import open_store, repo

    store = open_store(str(db))
    try:
        [job_id] = repo.submit_many(store, [build_spec({"command": ["true"]})], time.time())
        log_dir = Path(log_dir_for(str(db)))
        log_dir.mkdir(mode=0o700, exist_ok=True)
        log = log_dir / f"{job_id}.log"
        digest = write_log(log, size_mb)
        with store.write():
            store.execute("UPDATE job SET status='succeeded', attempts=1, finished_at=?, log_path=? WHERE id=?",
                          (time.time(), str(log), job_id))  # fmt: skip
    finally:
        store.close()
    return job_id, log, digest


def run_once(out: str, args: list[str]) -> tuple[float, float]:
    """(wall ms, peak RSS MB) of one `jobrunner ARGS` process."""
    result = subprocess.run([sys.executable, "-c", WRAPPER, out, sys.executable, "-m", "jobrunner", *args],
                            capture_output=True, text=True, check=True)  # fmt: skip
    elapsed, code, peak_kb = result.stdout.split()
    if code != "0":
        raise RuntimeError(f"jobrunner {' '.join(args)} exited {code}: {result.stderr.strip()}")
    return float(elapsed) * 1000, int(peak_kb) / 1024


def measure_logs(quick: bool = False, runs: int = 3) -> list[Figure]:
    size_mb = QUICK_SIZE_MB if quick else SIZE_MB
    with tempfile.TemporaryDirectory(prefix="jobrunner-bench-output-") as work:
        root = Path(work)
        db = root / "jobs.db"
        with isolated(root, JOBRUNNER_DB=str(db)):
            job_id, _, digest = plant(db, size_mb)
            out = root / "out.bin"
            run_once(str(out), ["logs", str(job_id)])  # warm: bytecode, page cache
            with open(out, "rb") as handle:
                if hashlib.file_digest(handle, "sha256").hexdigest() != digest:
                    raise RuntimeError("jobrunner logs: the output differs from the log file")
            full, head, tail = [], [], []
            for _ in range(runs):
                out.unlink()
                full.append(run_once(str(out), ["logs", str(job_id)]))
                head.append(run_once("-", ["logs", str(job_id)]))
                tail.append(run_once(os.devnull, ["logs", str(job_id), "--tail", "10"]))
    name = f"logs {size_mb} MB > file"
    return [
        Figure(f"{name}: time", "ms", [t for t, _ in full], higher_is_better=False),
        Figure(f"{name}: peak RSS", "MB", [m for _, m in full], higher_is_better=False, bar=BAR_LOGS_MB,
               note=f"whole process, Python and the CLI included; the log is {size_mb} MB"),
        Figure(f"logs {size_mb} MB | head -1: time", "ms", [t for t, _ in head], higher_is_better=False),
        Figure(f"logs {size_mb} MB --tail 10: time", "ms", [t for t, _ in tail], higher_is_better=False),
        Figure(f"logs {size_mb} MB --tail 10: peak RSS", "MB", [m for _, m in tail], higher_is_better=False,
               bar=BAR_LOGS_MB),
    ]  # fmt: skip


def measure(quick: bool = False, runs: int | None = None) -> list[Figure]:
    """`logs` here; then the TUI and progress parts, where their modules exist."""
    figures = measure_logs(quick, runs or 3)
    for name in OTHERS:
        if importlib.util.find_spec(f"benchmarks.{name}") is None:
            print(f"output: {name} skipped, benchmarks/{name}.py is not there", file=sys.stderr)
            continue
        figures += importlib.import_module(f"benchmarks.{name}").measure(quick)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small log: a smoke run, not a measurement")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (min 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    options = parser.parse_args(argv)
    if options.runs < 3:
        parser.error("--runs must be at least 3 (a median needs them)")
    figures = measure_logs(options.quick, options.runs)  # the `logs` part; `--only output` runs all
    print(table(figures))
    if options.json:
        Path(options.json).write_text(json.dumps([f.as_dict() for f in figures], indent=2) + "\n")


if __name__ == "__main__":
    main()
