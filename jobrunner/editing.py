"""The Python API for changing jobs: edit one, and act on every job a filter matches.

    from jobrunner.editing import edit, edit_and_retry, retry_matching, cancel_matching, export_dead

Fields are those of `submit` (and of a `submit --from-file` line): name, command or callable,
args, kwargs, queue, priority, retries, timeout, backoff, retry_on, retry_on_exit_codes, tags,
metadata, cwd, env. Each given replaces the job's value (None puts back the default); a bad
value raises UsageError with the words a submit uses, and nothing is written. Every function
takes `db=` as submit does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from jobrunner.errors import UsageError


def edit(job_id: int, *, db: str | None = None, **fields: Any) -> dict[str, Any]:
    """Change a job that has not started (queued, scheduled, waiting, retrying), or a dead or
    cancelled one before it is retried; a running or succeeded one is refused (UsageError).
    The job's history records the change, old → new. Returns {"id", "status", "changed" (the
    keys), "message"}; nothing changed: an empty "changed" and no history entry."""
    return _edit(job_id, fields, db, retry=False)


def edit_and_retry(job_id: int, *, db: str | None = None, **fields: Any) -> dict[str, Any]:
    """edit() a dead, cancelled or retrying job and put it back in the queue, in one transaction
    (a refused retry leaves it as it was). Returns edit()'s dict, with "retried" as retry()'s."""
    return _edit(job_id, fields, db, retry=True)


def _edit(job_id: Any, fields: dict[str, Any], db: str | None, retry: bool) -> dict[str, Any]:
    from jobrunner.api import _check_here, connect
    from jobrunner.control import _job_id
    from jobrunner.domain.jobspec import SpecError
    from jobrunner.store.edits import edit_job

    job_id = _job_id(job_id)

    def check(spec: Any, keys: list[str]) -> None:  # on this machine, as submit() looks
        if "cwd" in keys or "callable" in keys:
            _check_here(spec, db)

    try:
        edited = edit_job(connect(db), job_id, fields, time.time(), retry=retry, check=check)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    result: dict[str, Any] = {"id": edited.job_id, "status": edited.status.value, "changed": edited.changed,
                              "message": edited.description}  # fmt: skip
    if retry:
        result["retried"] = [{"id": o.job_id, "from": o.old.value, "to": o.new.value, "message": o.message}
                             for o in edited.retried]  # fmt: skip
    return result


def _where(status: Any, queue: Any, tag: Any, search: str | None, since: Any) -> Any:
    from jobrunner.control import _names, _statuses
    from jobrunner.domain.durations import parse_duration
    from jobrunner.store.queries import JobFilter

    statuses = _statuses(status)
    cutoff = None
    if since is not None:
        try:
            cutoff = time.time() - parse_duration(since)
        except ValueError as exc:
            raise UsageError(f"since: {exc}") from None
    return JobFilter(statuses, _names(queue), _names(tag), search, cutoff)


def retry_matching(status: Any = None, queue: Any = None, tag: Any = None, search: str | None = None,
                   since: str | float | None = None, *, dry_run: bool = False,
                   db: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Retry every job that matches (dead ones unless `status` names cancelled or retrying), a
    batch per transaction, as `jobrunner retry --status ... --json`; `since` is a duration
    ("1h": finished within the last hour)."""
    from jobrunner.api import connect
    from jobrunner.store import bulk

    where = _where(status, queue, tag, search, since)
    return bulk.retry_matching(connect(db), where, time.time(), dry_run=dry_run).as_json()


def cancel_matching(status: Any = None, queue: Any = None, tag: Any = None, search: str | None = None,
                    since: str | float | None = None, *, dry_run: bool = False,
                    db: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Cancel every job that matches (queued, scheduled, waiting and retrying ones unless `status`
    names others; running ones are asked to stop), as `jobrunner cancel --queue ... --json`."""
    from jobrunner.api import connect
    from jobrunner.store import bulk

    where = _where(status, queue, tag, search, since)
    return bulk.cancel_matching(connect(db), where, time.time(), dry_run=dry_run).as_json()


def export_dead(queue: Any = None, *, db: str | None = None) -> Iterator[dict[str, Any]]:
    """The dead jobs (of these queues) as dicts of submit fields, oldest first, one batch read at a
    time: each is a `submit_many` job, as `jobrunner dlq export` writes them."""
    from jobrunner.api import connect
    from jobrunner.domain.states import Status
    from jobrunner.store import bulk

    where = _where(Status.DEAD.value, queue, None, None, None)
    for job in bulk.matching_jobs(connect(db), where):
        yield bulk.export_fields(job)
