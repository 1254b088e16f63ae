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
