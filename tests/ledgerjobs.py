"""A Python job for the fault tests' ledgers (tests/test_pg_faults.py), importable by the workers
as tests.ledgerjobs: light on purpose, since every worker imports it."""

from __future__ import annotations

import os
import time
from typing import Any


def ledger(path: str, pause: float = 0.0, job: Any = None) -> None:
    """Append `start` and `end` lines naming the daemon (LEDGER_MARK), the job, the attempt and the
    time: each line one write to a file opened O_APPEND, so lines of many workers never mix."""
    mark = os.environ.get("LEDGER_MARK", "?")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"start {mark} {job.id} {job.attempt} {time.time():.6f}\n".encode())
        if pause:
            time.sleep(pause)  # the job's work
        os.write(fd, f"end {mark} {job.id} {job.attempt} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)
