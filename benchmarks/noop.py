"""Jobs the benchmarks run (importable as benchmarks.noop by the workers)."""

import os
import time


def noop() -> None:
    return None


def mark(path: str) -> None:
    """Write the moment the job's code started, atomically (the reader polls for the file)."""
    stamp = repr(time.time())
    with open(path + ".tmp", "w") as handle:
        handle.write(stamp)
    os.replace(path + ".tmp", path)
