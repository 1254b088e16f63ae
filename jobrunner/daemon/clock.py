"""The daemon's wall clock: this host's, set to the database server's on PostgreSQL.

Leases, due times, heartbeats and schedule fires are times written by one daemon and judged by
another. On one machine (SQLite) there is one clock. On PostgreSQL the daemons run on several
hosts, and a host whose clock is a minute fast would see live leases as expired and take their
jobs; a minute slow, it would keep dead ones. So every time the daemon reads or writes in the
database comes from `now()`: this host's clock plus the offset to the server's, measured at
start and at each heartbeat (the server's clock_timestamp() against the midpoint of the round
trip; a sample whose round trip took over MAX_ROUND_TRIP_S, as one spanning a partition does, is
dropped, since its error is up to half the round trip). Durations inside the daemon are differences of `now()` values, so the offset cancels.

JOBRUNNER_TEST_CLOCK_SHIFT (seconds) shifts this host's clock, for tests of a host whose clock
is off; nothing else reads it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from jobrunner.store.db import guarded

log = logging.getLogger("jobrunner.daemon")

_SHIFT = float(os.environ.get("JOBRUNNER_TEST_CLOCK_SHIFT") or 0)
_offset = 0.0
WARN_OFF_BY_S = 1.0
MAX_ROUND_TRIP_S = 0.25  # a sample whose round trip took longer may be off by half of it: dropped


def host_now() -> float:
    """This host's wall clock."""
    return time.time() + _SHIFT


def now() -> float:
    """The database's time: this host's clock, set to the server's on PostgreSQL."""
    return time.time() + _SHIFT + _offset


def offset() -> float:
    return _offset


def sync(store: Any) -> None:
    """Measure this host's offset to the database server's clock (PostgreSQL; no-op on SQLite).
    Raises StoreError when the server cannot be asked: the last offset stays."""
    global _offset
    if store.is_sqlite:
        return
    before, server, after = _ask(store)
    if after - before > MAX_ROUND_TRIP_S:  # a slow answer (a partition, a stall) says little of when
        log.debug("clock sync: round trip %.2fs, sample dropped; offset stays %+.3fs", after - before, _offset)
        return
    measured = server - (before + after) / 2
    if abs(measured) >= WARN_OFF_BY_S and abs(measured - _offset) >= WARN_OFF_BY_S:
        log.warning("this host's clock is %+.1fs off the database server's: the daemon uses the server's", -measured)
    _offset = measured


@guarded
def _ask(store: Any) -> tuple[float, float, float]:
    before = host_now()
    server = float(store.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()[0])
    return before, server, host_now()
