"""The huey side of benchmarks.huey_compare: a SqliteHuey on $HUEY_BENCH_DB with a no-op and a marker task.

The consumer loads it as `benchmarks.huey_app.huey`; the instance is made on first access, so
importing this module creates no database. $HUEY_BENCH_SYNCHRONOUS picks SQLite's `synchronous`:
"normal" (jobrunner's default durability, so both sides fsync alike) or "default" (huey as
shipped: SQLite's default, FULL in WAL mode on this build).
Results are stored, None included (store_none), as jobrunner records every job's result.
"""

from __future__ import annotations

import os
from typing import Any

from huey import SqliteHuey
from huey.storage import SqliteStorage

from benchmarks import noop as jobs

NAME = "bench"


class NormalSyncStorage(SqliteStorage):
    """huey's SqliteStorage with `PRAGMA synchronous=NORMAL`, the durability jobrunner uses by default."""

    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute("pragma synchronous=normal")
        return conn


def noop() -> None:
    return None


def mark(path: str) -> None:
    jobs.mark(path)


def make_huey(path: str, synchronous: str = "normal") -> tuple[SqliteHuey, Any, Any]:
    """A SqliteHuey on `path` (tables created) and its tasks (noop, mark), registered under stable names."""
    if synchronous not in ("normal", "default"):
        raise ValueError(f"synchronous must be 'normal' or 'default', not {synchronous!r}")
    storage = NormalSyncStorage if synchronous == "normal" else SqliteStorage
    huey = SqliteHuey(NAME, filename=path, results=True, store_none=True, storage_class=storage)
    return huey, huey.task()(noop), huey.task()(mark)


_made: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """`huey`, `noop_task`, `mark_task`: on $HUEY_BENCH_DB, made on first access."""
    if name not in ("huey", "noop_task", "mark_task"):
        raise AttributeError(name)
    if not _made:
        made = make_huey(os.environ["HUEY_BENCH_DB"], os.environ.get("HUEY_BENCH_SYNCHRONOUS", "normal"))
        _made.update(zip(("huey", "noop_task", "mark_task"), made, strict=True))
    return _made[name]
