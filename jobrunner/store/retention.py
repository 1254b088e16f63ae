"""Retention: forget finished jobs (and their log files) after a while, a small batch at a time.

    retention = { succeeded = "7d", dead = "30d", cancelled = "7d" }

The daemon calls `apply_retention` now and then: each call removes at most about `batch`
jobs per status, each batch in its own short transaction (via repo.purge), so a backlog of
a million old jobs never holds the write lock for long; it calls again soon while a call
returns a full batch. `checkpoint` keeps SQLite's WAL file from growing without bound.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jobrunner.config_checks import parse_retention as parse_retention  # checked with the whole config
from jobrunner.domain.states import FINISHED, Status
from jobrunner.store import repo
from jobrunner.store.db import Store, guarded

RETENTION_STATUSES = tuple(sorted(s.value for s in FINISHED))  # cancelled, dead, succeeded


def retention_from_config(config: Any) -> dict[Status, float]:
    """The retention policy of a loaded Config ({} when it has none: keep everything); loading
    the config checked it (config_checks.parse_retention), as every command does."""
    return dict(config.retention)


def apply_retention(store: Store, policy: Mapping[Status | str, float], now: float,
                    batch: int = 500) -> list[int]:  # fmt: skip
    """Purge jobs of each status older than the policy says, oldest first, at most about `batch`
    per status, and delete their log files. Returns the ids removed.

    Only jobs the purge really removed lose their log file: a job retried meanwhile keeps it.
    """
    removed: list[int] = []
    for status, age in policy.items():
        removed += _purge_status(store, Status(status), now - age, now, batch)
    return removed


@guarded
def _candidates(store: Store, status: Status, cutoff: float, limit: int) -> list[tuple[int, str | None, float]]:
    p = store.backend.param
    sql = (
        f"SELECT id, log_path, finished_at FROM job WHERE status={p} AND finished_at < {p} "
        f"ORDER BY finished_at, id LIMIT {int(limit)}"
    )
    return [tuple(row) for row in store.execute(sql, (status.value, cutoff)).fetchall()]


def _purge_status(store: Store, status: Status, cutoff: float, now: float, batch: int) -> list[int]:
    rows = _candidates(store, status, cutoff, batch + 1)
    if not rows:
        return []
    if len(rows) > batch:
        # Stop the purge at the first job past the batch; ties on finished_at all go together.
        next_at = rows[batch][2]
        cutoff = next_at if next_at > rows[0][2] else next_at + 1e-6
    logs = {job_id: log_path for job_id, log_path, _ in rows}
    removed = repo.purge(store, now - cutoff, [status], now)
    delete_logs(((job_id, logs.get(job_id)) for job_id in removed), _log_dir(store))
    return removed


def purge_with_logs(store: Store, older_than: float, statuses: Iterable[Status | str], now: float) -> list[int]:
    """repo.purge, then delete the log files of the jobs it removed (for `jobrunner purge`)."""
    wanted = [Status(s) for s in statuses]
    logs: dict[int, str | None] = {}
    for status in wanted:
        if status in FINISHED:  # repo.purge refuses the others with a clear message
            logs.update((i, path) for i, path, _ in _candidates(store, status, now - older_than, 2**62))
    removed = repo.purge(store, older_than, wanted, now)
    delete_logs(((job_id, logs.get(job_id)) for job_id in removed), _log_dir(store))
    return removed


def _log_dir(store: Store) -> str:
    from jobrunner.config import log_dir_for

    return log_dir_for(store.target)


def delete_logs(jobs: Iterable[tuple[int, str | None]], log_dir: str | None = None) -> int:
    """Delete the log files of purged jobs; `log_dir` names the file for jobs whose path is unknown.

    Only a file named ID.log is deleted, whatever the row said. Returns how many were deleted.
    """
    deleted = 0
    for job_id, log_path in jobs:
        path = Path(log_path) if log_path else Path(log_dir) / f"{job_id}.log" if log_dir else None
        if path is None or path.name != f"{job_id}.log":
            continue
        try:
            os.unlink(path)
            deleted += 1
        except FileNotFoundError:
            pass
        except OSError:  # a log we cannot delete must not stop the purge
            pass
    return deleted


@guarded
def checkpoint(store: Store) -> tuple[int, int, int] | None:
    """PRAGMA wal_checkpoint(TRUNCATE) on SQLite: fold the WAL into the database and truncate it.

    Returns SQLite's (busy, wal pages, checkpointed pages), or None on other databases.
    A busy result (readers still on old pages) is fine: the next checkpoint gets further.
    """
    if not store.is_sqlite:
        return None
    row = store.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else None


def wal_size(store: Store) -> int | None:
    """Bytes in the SQLite WAL file (0 when absent), None for other databases."""
    if store.path is None:
        return None
    try:
        return os.path.getsize(f"{store.path}-wal")
    except FileNotFoundError:
        return 0
