"""Retention: forget finished jobs (and their log files) after a while, a small batch at a time.

    retention = { succeeded = "7d", dead = "30d", cancelled = "7d", every = "1m" }

The daemon calls `apply_retention` every `every` (a minute by default): each call removes at
most about `batch` jobs per status, each batch in its own short transaction (via repo.purge),
so a backlog of a million old jobs never holds the write lock for long; it calls again soon
while a call returns a full batch. `checkpoint` keeps SQLite's WAL file from growing without bound.

A log file that some process still has open (a finished job's detached child writing on) is
not deleted with its job: it is renamed ID.log.purged (its writer writes on, unaware) and
kept, and the daemon tries again on later passes (`delete_kept`); `orphan_logs` finds such
files again after a restart. The suffix is what marks them: an ID.log missing from the
database may belong to another database sharing the directory (jobs.db and jobs.sqlite both
log to jobs.logs/), and is never touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jobrunner.config_checks import RETENTION_EVERY, RetentionPolicy
from jobrunner.config_checks import parse_retention as parse_retention  # checked with the whole config
from jobrunner.domain.states import FINISHED, Status
from jobrunner.openfiles import held_open
from jobrunner.store import repo
from jobrunner.store.db import Store, guarded

RETENTION_STATUSES = tuple(sorted(s.value for s in FINISHED))  # cancelled, dead, succeeded
PURGED_SUFFIX = ".purged"  # a purged job's log that a process still had open
PURGED_LOG_NAME = re.compile(r"[1-9][0-9]*\.log\.purged")


def retention_from_config(config: Any) -> RetentionPolicy:
    """The retention policy of a loaded Config ({} when it has none: keep everything), with its
    `every`; loading the config checked it (config_checks.parse_retention), as every command does."""
    return RetentionPolicy(config.retention, getattr(config.retention, "every", RETENTION_EVERY))


def apply_retention(store: Store, policy: Mapping[Status | str, float], now: float,
                    batch: int = 500, kept: list[Path] | None = None) -> list[int]:  # fmt: skip
    """Purge jobs of each status older than the policy says, oldest first, at most about `batch`
    per status, and delete their log files. Returns the ids removed.

    Only jobs the purge really removed lose their log file: a job retried meanwhile keeps it.
    A log some process still has open is not deleted: it is added to `kept` (see delete_logs).
    """
    removed: list[int] = []
    for status, age in policy.items():
        removed += _purge_status(store, Status(status), now - age, now, batch, kept)
    return removed


@guarded
def _candidates(
    store: Store, status: Status, cutoff: float, limit: int
) -> list[tuple[int, str | None, float]]:
    p = store.backend.param
    sql = (
        f"SELECT id, log_path, finished_at FROM job WHERE status={p} AND finished_at < {p} "
        f"ORDER BY finished_at, id LIMIT {int(limit)}"
    )
    return [tuple(row) for row in store.execute(sql, (status.value, cutoff)).fetchall()]


def _purge_status(store: Store, status: Status, cutoff: float, now: float, batch: int,
                  kept: list[Path] | None) -> list[int]:  # fmt: skip
    rows = _candidates(store, status, cutoff, batch + 1)
    if not rows:
        return []
    if len(rows) > batch:
        # Stop the purge at the first job past the batch; ties on finished_at all go together.
        next_at = rows[batch][2]
        cutoff = next_at if next_at > rows[0][2] else next_at + 1e-6
    logs = {job_id: log_path for job_id, log_path, _ in rows}
    removed = repo.purge(store, now - cutoff, [status], now)
    delete_logs(((job_id, logs.get(job_id)) for job_id in removed), _log_dir(store), kept)
    return removed


def purge_with_logs(
    store: Store, older_than: float, statuses: Iterable[Status | str], now: float, where: Any = None
) -> list[int]:
    """Purge finished jobs of these statuses (and, given a queries.JobFilter `where`, its queues,
    tags, search) older than `older_than`, and delete their log files: a batch per transaction,
    each batch's logs once it is committed (jobrunner.store.bulk). Returns the ids removed."""
    from dataclasses import replace

    from jobrunner.store import bulk
    from jobrunner.store.queries import JobFilter

    removed: list[int] = []
    log_dir = _log_dir(store)
    wanted = replace(where or JobFilter(), statuses=[Status(s) for s in statuses])
    bulk.purge_matching(store, wanted, older_than, now, all_ids=removed,
                        on_purged=lambda rows: delete_logs(rows, log_dir))  # fmt: skip
    return removed


def _log_dir(store: Store) -> str:
    from jobrunner.config import log_dir_for

    return log_dir_for(store.target)


def delete_logs(jobs: Iterable[tuple[int, str | None]], log_dir: str | None = None,
                kept: list[Path] | None = None) -> int:  # fmt: skip
    """Delete the log files of purged jobs; `log_dir` names the file for jobs whose path is unknown.

    Only a file named ID.log is deleted, whatever the row said. A file some process still has
    open (a job's detached child may be writing on) is left, and added to `kept` for a later
    try (delete_kept). Returns how many were deleted.
    """
    paths = []
    for job_id, log_path in jobs:
        path = Path(log_path) if log_path else Path(log_dir) / f"{job_id}.log" if log_dir else None
        if path is not None and path.name == f"{job_id}.log":
            paths.append(path)
    held = held_open(paths)
    for path in held:
        marked = path.with_name(path.name + PURGED_SUFFIX)
        try:
            os.rename(path, marked)
        except OSError:
            continue
        if kept is not None and marked not in kept:
            kept.append(marked)
    return sum(_unlink(path) for path in paths if path not in held)


def delete_kept(kept: Iterable[Path]) -> list[Path]:
    """Delete the kept logs no process has open any more; returns those still open (or that
    could not be deleted for now)."""
    paths = list(kept)
    held = held_open(paths)
    return [path for path in paths if path in held or (not _unlink(path) and path.exists())]


def orphan_logs(store: Store, log_dir: str | None = None) -> list[Path]:
    """The ID.log.purged files in the log directory: logs of purged jobs kept because a process
    had them open, by a daemon since restarted or by `jobrunner purge`."""
    directory = log_dir or _log_dir(store)
    try:
        with os.scandir(directory) as entries:
            return sorted(Path(entry.path) for entry in entries
                          if PURGED_LOG_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False))  # fmt: skip
    except OSError:  # no log directory (yet)
        return []


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except OSError:  # gone already; or a log we cannot delete, which must not stop the purge
        return False
    return True


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
