"""CLI responsiveness: wall time of whole `jobrunner` processes, as a user's shell runs them.

Timed: `jobrunner submit -- true` and `jobrunner list --limit 50` against a database holding
100,000 jobs (stored first with `jobrunner submit --from-file`). Each command runs a couple of
times untimed first. Bytecode is cached (in a private PYTHONPYCACHEPREFIX), as it is for an
installed tool, even when PYTHONDONTWRITEBYTECODE is set in the calling environment.
Also `jobrunner progress 40% 'step 2/5'` as a shell job calls it (bar: 50 ms a call).
For context: bare interpreter start-up, and importing the Typer app without running a command.

Usage: python -m benchmarks.cli_latency [--runs N] [--jobs N] [--json FILE]
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import Figure, standalone

BAR_SUBMIT_MS = 150.0
BAR_LIST_MS = 250.0
BAR_PROGRESS_MS = 50.0
WARMUP = 2


def jobrunner_command() -> list[str]:
    """The console script installed next to this interpreter, else `python -m jobrunner`."""
    script = Path(sys.executable).parent / "jobrunner"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobrunner"]


def environment(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "JOBRUNNER_CONFIG")}
    env.update(
        JOBRUNNER_DB=str(work / "jobs.db"),
        XDG_CONFIG_HOME=str(work / "config"),
        XDG_STATE_HOME=str(work / "state"),
        PYTHONPYCACHEPREFIX=str(work / "pycache"),
    )
    return env


def wall_ms(
    commands: dict[str, list[str]], env: dict[str, str], cwd: Path, runs: int
) -> dict[str, list[float]]:
    """Milliseconds per run of each command, in interleaved rounds after WARMUP untimed ones; each must exit 0."""
    times: dict[str, list[float]] = {key: [] for key in commands}
    for n in range(WARMUP + runs):
        for key, argv in commands.items():
            start = time.perf_counter()
            done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(
                    f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}"
                )
            if n >= WARMUP:
                times[key].append(elapsed * 1000)
    return times


def progress_ms(command: list[str], env: dict[str, str], work: Path, runs: int) -> list[float]:
    """`jobrunner progress` as a shell job calls it: a FIFO read here as a worker reads it."""
    fifo = work / "progress"
    os.mkfifo(fifo, 0o600)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keep = os.open(fifo, os.O_WRONLY)  # as the worker: the reader never sees end-of-file
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            select.select([reader], [], [], 0.1)
            with contextlib.suppress(BlockingIOError):
                os.read(reader, 1 << 16)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        job_env = {**env, "JOBRUNNER_PROGRESS": str(fifo), "JOBRUNNER_JOB_ID": "1", "JOBRUNNER_ATTEMPT": "1"}
        return wall_ms({"progress": [*command, "progress", "40%", "step 2/5"]}, job_env, work, runs)["progress"]
    finally:
        stop.set()
        thread.join()
        os.close(reader)
        os.close(keep)


def fill(jobs: int, env: dict[str, str], cwd: Path) -> None:
    """`jobs` jobs in the database through the bulk path, in batches of 10,000."""
    done = 0
    while done < jobs:
        batch = min(10_000, jobs - done)
        source = cwd / "fill.jsonl"
        source.write_text(
            "".join(json.dumps({"command": ["echo", str(done + i)]}) + "\n" for i in range(batch))
        )
        subprocess.run([*jobrunner_command(), "submit", "--from-file", str(source)], env=env, cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)  # fmt: skip
        done += batch


def measure(runs: int = 15, jobs: int = 100_000) -> list[Figure]:
    command = jobrunner_command()
    with tempfile.TemporaryDirectory(prefix="jobrunner-bench-") as tmp:
        work = Path(tmp)
        env = environment(work)
        fill(jobs, env, work)
        times = wall_ms(
            {
                "submit": [*command, "submit", "--", "true"],
                "list": [*command, "list", "--limit", "50"],
                "python": [sys.executable, "-c", "pass"],
                "import": [sys.executable, "-c", "import jobrunner.cli.app"],
            },
            env, work, runs,
        )  # fmt: skip
        submit, listing, python, imports = times["submit"], times["list"], times["python"], times["import"]
        progress = progress_ms(command, env, work, runs)
    return [
        Figure("jobrunner submit -- true", "ms", submit, higher_is_better=False, bar=BAR_SUBMIT_MS,
               note=f"whole process, database with {jobs:,} jobs"),
        Figure("jobrunner list --limit 50", "ms", listing, higher_is_better=False, bar=BAR_LIST_MS,
               note=f"whole process, database with {jobs:,} jobs"),
        Figure("jobrunner progress 40% 'step 2/5'", "ms", progress, higher_is_better=False, bar=BAR_PROGRESS_MS,
               note="whole process, inside a job: one line to its worker's progress FIFO"),
        Figure("  python -c pass", "ms", python, higher_is_better=False, note="interpreter start-up (with site)"),
        Figure("  python -c 'import jobrunner.cli.app'", "ms", imports, higher_is_better=False,
               note="the Typer app built, no command run"),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__, {'jobs': 'jobs in the database'})


if __name__ == "__main__":
    main()
