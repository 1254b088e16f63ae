"""CLI responsiveness: wall time of whole `jobrunner` processes, as a user's shell runs them.

Timed: `jobrunner submit -- true` and `jobrunner list --limit 50` against a database holding
100,000 jobs (stored first with `jobrunner submit --from-file`). Each command runs a couple of
times untimed first. Bytecode is cached (in a private PYTHONPYCACHEPREFIX), as it is for an
installed tool, even when PYTHONDONTWRITEBYTECODE is set in the calling environment.
For context: bare interpreter start-up, and importing the Typer app without running a command.

Usage: python -m benchmarks.cli_latency [--runs N] [--jobs N] [--json FILE]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, standalone

BAR_SUBMIT_MS = 150.0
BAR_LIST_MS = 250.0
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
    return [
        Figure("jobrunner submit -- true", "ms", submit, higher_is_better=False, bar=BAR_SUBMIT_MS,
               note=f"whole process, database with {jobs:,} jobs"),
        Figure("jobrunner list --limit 50", "ms", listing, higher_is_better=False, bar=BAR_LIST_MS,
               note=f"whole process, database with {jobs:,} jobs"),
        Figure("  python -c pass", "ms", python, higher_is_better=False, note="interpreter start-up (with site)"),
        Figure("  python -c 'import jobrunner.cli.app'", "ms", imports, higher_is_better=False,
               note="the Typer app built, no command run"),
    ]  # fmt: skip


def main() -> None:
    standalone(measure, __doc__, {'jobs': 'jobs in the database'})


if __name__ == "__main__":
    main()
