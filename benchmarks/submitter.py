"""A client process that submits no-op jobs one at a time while a daemon (or huey consumer) runs.

    python -m benchmarks.submitter jobrunner N        # jobrunner.submit("benchmarks.noop:noop"), $JOBRUNNER_DB
    python -m benchmarks.submitter huey N SYNC        # noop_task() on $HUEY_BENCH_DB, SYNC normal|default

Handshake on stdin/stdout, so start-up (imports, opening the database) is off the clock:
it prints "ready" once it could submit, waits for a line on stdin, submits N jobs, then
prints "done SECONDS" (its own time to submit them all) and exits.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def jobrunner_client() -> Callable[[], object]:
    import jobrunner
    from jobrunner.api import connect

    connect()  # open (and migrate) the database from $JOBRUNNER_DB now, not on the first submit
    submit = jobrunner.submit
    return lambda: submit("benchmarks.noop:noop")


def huey_client(synchronous: str) -> Callable[[], object]:
    import os

    from benchmarks.huey_app import make_huey

    huey, noop_task, _ = make_huey(os.environ["HUEY_BENCH_DB"], synchronous)
    huey.pending_count()  # connect now
    return noop_task


def main(argv: list[str]) -> None:
    who, count = argv[0], int(argv[1])
    one = jobrunner_client() if who == "jobrunner" else huey_client(argv[2])
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    start = time.perf_counter()
    for _ in range(count):
        one()
    print(f"done {time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
