"""Python jobs the daemon tests run (importable as tests.jobfuncs by the workers)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def add(a: int, b: int) -> int:
    return a + b


def record(path: str, label: str, pause: float = 0.0) -> str:
    with open(path, "a") as handle:
        handle.write(label + "\n")
    time.sleep(pause)
    return label


def fail_with(kind: str, message: str = "boom") -> None:
    raise {"value": ValueError, "connection": ConnectionError, "runtime": RuntimeError}[kind](message)


def unserialisable() -> object:
    return object()


def die_once(marker: str) -> str:
    """The first attempt kills its own worker process with SIGKILL; the next one succeeds."""
    if not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def exit_hard_once(marker: str) -> str:
    if not Path(marker).exists():
        Path(marker).write_text("x")
        os._exit(3)
    return "ok"


def slow_with_progress(steps: int, pause: float, job=None) -> int:
    for step in range(steps):
        job.report((step + 1) / steps, f"step {step + 1}/{steps}")
        time.sleep(pause)
    return steps


def sleep_for(seconds: float, marker: str | None = None) -> float:
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return seconds


def print_lines(count: int) -> int:
    for index in range(count):
        print(f"line {index}", flush=True)
    return count


def replace_stdout() -> str:
    """Leaves sys.stdout pointing at a StringIO, as a careless job might."""
    import io
    import sys

    sys.stdout = io.StringIO()
    print("kept in the job's own StringIO")
    return "replaced"


def close_std_streams() -> str:
    """Closes sys.stdout and sys.stderr and returns normally."""
    import sys

    print("before closing", flush=True)
    sys.stdout.close()
    sys.stderr.close()
    return "closed"


def close_descriptors_then_fail() -> None:
    """Closes descriptors 1 and 2 behind Python's back, then raises."""
    os.close(1)
    os.close(2)
    raise RuntimeError("no descriptors left")


def print_until(marker: str, timeout: float = 30.0) -> str:
    """Prints a line (no flush), then waits for `marker` to exist before it returns."""
    print("first line")
    deadline = time.monotonic() + timeout
    while not Path(marker).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{marker} never appeared")
        time.sleep(0.01)
    print("last line")
    return "done"


def rewrap_stdout() -> str:
    """The idiom for another encoding: a new TextIOWrapper over sys.stdout's detached buffer."""
    import io
    import sys

    sys.stdout = io.TextIOWrapper(sys.stdout.detach(), encoding="utf-8", line_buffering=True)
    print("rewrapped")
    return "rewrapped"


def log_to_stderr(message: str) -> str:
    """Logs through a root handler on sys.stderr, set up by the first job that calls this."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("tests.jobfuncs").info(message)
    return message


def spawn_and_sleep(pids: str, seconds: float = 30.0) -> None:
    """Starts a child that outlives nothing on its own (it sleeps 40 s), records its pid, sleeps."""
    import subprocess

    child = subprocess.Popen(["sleep", "40"])
    Path(pids).write_text(f"{child.pid}\n")
    time.sleep(seconds)


def report_through_a_child(marker: str) -> str:
    """A Python job whose child process reports its progress with `jobrunner progress`."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "jobrunner", "progress", "0.5", "from a child"], check=True)
    deadline = time.monotonic() + 30
    while not Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "done"


def postgres_drivers() -> dict[str, bool]:
    """What a job sees of the PostgreSQL drivers: importable, and found by peewee."""
    import importlib

    seen = {}
    for name in ("psycopg2", "psycopg"):
        try:
            importlib.import_module(name)
            seen[name] = True
        except ImportError:
            seen[name] = False
    import peewee

    seen["peewee.psycopg2"] = peewee.psycopg2 is not None
    seen["peewee.psycopg"] = getattr(peewee, "psycopg", None) is not None
    return seen
