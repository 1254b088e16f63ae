"""Python jobs for tests/test_resource_limits.py (importable as tests.limitfuncs by the workers)."""

from __future__ import annotations

import os
import resource


def allocate(megabytes: int) -> int:
    """Hold `megabytes` of memory at once: a MemoryError under a smaller memory limit."""
    block = bytearray(megabytes * 1024 * 1024)
    return len(block) // (1024 * 1024)


def burn_cpu(limit_s: float = 60.0) -> str:
    """Spin until `limit_s` seconds of CPU are used (a cpu_time limit ends it first)."""
    while resource.getrusage(resource.RUSAGE_SELF).ru_utime < limit_s:
        pass
    return "never killed"


def print_lines(count: int) -> int:
    for n in range(count):
        print(f"line {n:06d}")
    return count


def own_limits(job=None) -> dict:
    """The limits this process runs under, its pid and whether its progress reached the worker."""
    if job is not None:
        job.report(0.5, "half way")
    soft_as, _ = resource.getrlimit(resource.RLIMIT_AS)
    soft_cpu, _ = resource.getrlimit(resource.RLIMIT_CPU)
    return {"as": soft_as, "cpu": soft_cpu, "pid": os.getpid(), "ppid": os.getppid()}
