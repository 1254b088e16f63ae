"""The Python API beyond submit: read and steer jobs from a program, as the CLI does.

    from jobrunner import submit, get, wait, cancel, retry, list_jobs, stats, JobFailed

Every function takes `db=` like submit (default: $JOBRUNNER_DB, the config, the XDG default)
and works on the same store functions and the same JSON as `show --json`, `list --json` and
`stats --json`. Errors a user can cause are jobrunner exceptions with the CLI's one-line
message (UsageError, NotFoundError, StoreError), never a driver's.

The async variants run the blocking call in a worker thread (asyncio.to_thread), so an event
loop never waits on the database's write lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from jobrunner.api import connect
from jobrunner.errors import JobrunnerError, NotFoundError, UsageError

if TYPE_CHECKING:
    from jobrunner.domain.states import Status

FINISHED_STATUSES = ("succeeded", "dead", "cancelled")
# wait's pause between reads of the job's row: a twentieth of the time waited so far, from 2 ms to
# 50 ms. A finished job is seen within 5% of the wait (a job of 100 ms within about 5 ms), never
# later than 50 ms, and a long wait costs about 20 cheap reads a second.
WAIT_FIRST_S, WAIT_MAX_S, WAIT_SHARE = 0.002, 0.05, 0.05


class JobFailed(JobrunnerError):
    """The job ended dead or cancelled: `job` is its `show --json` dict, `error` its error."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.error = job.get("error")
        super().__init__(f"job {job['id']} {job['status']}: {self.error or 'no error recorded'}")


def _job_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"job id: {value!r} is not a job id (a whole number from 1)")
    if not 1 <= value < 2**63:
        raise UsageError(f"job id: {value} is out of range (1 to 2^63-1)")
    return value


def get(job_id: int, *, db: str | None = None) -> dict[str, Any] | None:
    """The job as `show --json` prints it (with its dependencies and history), or None if unknown."""
    from jobrunner.store import dependencies, queries

    job_id = _job_id(job_id)
    store = connect(db)
    try:
        job = queries.get_job(store, job_id)
    except NotFoundError:
        return None
    return {**job, **dependencies.links(store, job_id), "events": queries.job_events(store, job_id)}


def wait(job_id: int, timeout: float | None = None, *, db: str | None = None) -> Any:
    """The job's result once it succeeded (at once for a finished job). Raises JobFailed when it
    ends dead or cancelled, TimeoutError after `timeout` seconds, NotFoundError for an unknown id.

    Reads the job's row again after a twentieth of the time waited so far (2 ms to 50 ms): a
    finished job is seen within 5% of the wait and within 50 ms, and a long wait costs about 20
    cheap reads a second."""
    from jobrunner.store import queries

    job_id = _job_id(job_id)
    if timeout is not None and (not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0):
        raise UsageError(f"timeout: {timeout!r} must be a number of seconds >= 0, or None")
    store = connect(db)
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    while True:
        job = queries.get_job(store, job_id)
        if job["status"] in FINISHED_STATUSES:
            if job["status"] == "succeeded":
                return job["result"]
            raise JobFailed(job)
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout:g}s")
        now = time.monotonic()
        pause = min(max(WAIT_SHARE * (now - started), WAIT_FIRST_S), WAIT_MAX_S)
        if deadline is not None:
            pause = min(pause, max(deadline - now, 0))
        time.sleep(pause)  # the pause between reads, bounded by the deadline


async def wait_async(job_id: int, timeout: float | None = None, *, db: str | None = None) -> Any:
    """wait() without blocking the event loop."""
    return await asyncio.to_thread(wait, job_id, timeout, db=db)


async def submit_async(*args: Any, **kwargs: Any) -> int:
    """submit() without blocking the event loop (a write lock held elsewhere waits in a thread)."""
    from jobrunner.api import submit

    return await asyncio.to_thread(submit, *args, **kwargs)


def cancel(*job_ids: int, db: str | None = None) -> list[dict[str, Any]]:
    """Cancel jobs (queued ones never start; running ones are stopped by their daemon). All or
    nothing, as `jobrunner cancel`; returns what changed, as `cancel --json`."""
    from jobrunner.store import repo

    return _changes(repo.cancel(connect(db), [_job_id(i) for i in _ids(job_ids)], time.time()))


def retry(*job_ids: int, db: str | None = None) -> list[dict[str, Any]]:
    """Put dead, cancelled or retrying jobs back in the queue, as `jobrunner retry`."""
    from jobrunner.store import repo

    return _changes(repo.retry(connect(db), [_job_id(i) for i in _ids(job_ids)], time.time()))


def list_jobs(status: str | Iterable[str] | None = None, queue: str | Iterable[str] | None = None,
              tag: str | Iterable[str] | None = None, search: str | None = None, limit: int | None = 50,
              *, oldest_first: bool = False, db: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Jobs as `list --json` gives them, newest first (at most `limit`; None for all)."""
    from jobrunner.store import queries

    statuses = _statuses(status)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit: {limit!r} must be a whole number from 1, or None for all")
    where = queries.JobFilter(statuses=statuses, queues=_names(queue), tags=_names(tag), search=search)
    return queries.list_jobs(connect(db), where, limit=limit, newest_first=not oldest_first)


def stats(*, db: str | None = None) -> dict[str, Any]:
    """Counts per status, overall and per queue, as `stats --json`."""
    from jobrunner.store import queries

    return queries.stats(connect(db))


def submit_many(jobs: Sequence[dict[str, Any]], *, db: str | None = None) -> list[int]:
    """Store many jobs in one transaction, all or none, as `submit --from-file`: each a dict of
    the same fields as a line of that file ({"command": [...]} or {"callable": "pkg.mod:f",
    "args": [...]}, plus name, queue, priority, retries, after, ...). Returns their ids."""
    from jobrunner.domain.jobspec import SpecError, build_spec
    from jobrunner.store import repo

    if isinstance(jobs, dict | str | bytes) or not isinstance(jobs, Sequence):
        raise UsageError("jobs: give a list of job dicts")
    specs = []
    for number, fields in enumerate(jobs, 1):
        if not isinstance(fields, dict):
            raise UsageError(f"job {number}: {type(fields).__name__} is not a job: give a dict of fields")
        try:
            specs.append(build_spec(dict(fields)))
        except SpecError as exc:
            raise UsageError(f"job {number}: {exc}") from None
    return repo.submit_many(connect(db), specs, time.time())


def _ids(values: tuple[Any, ...]) -> list[Any]:
    if len(values) == 1 and isinstance(values[0], list | tuple):
        values = tuple(values[0])  # cancel([1, 2]) as well as cancel(1, 2)
    if not values:
        raise UsageError("give at least one job id")
    return list(values)


def _names(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _statuses(value: str | Iterable[str] | None) -> list[Status]:
    """Status names a caller gave (one or several) as Status values: the API's filters (list_jobs
    here, retry_matching and cancel_matching in jobrunner.editing) refuse an unknown one alike."""
    from jobrunner.domain.states import Status

    statuses = []
    for name in _names(value):
        try:
            statuses.append(Status(name))
        except ValueError:
            known = ", ".join(s.value for s in Status)
            raise UsageError(f"status: {name!r} is not a status: use {known}") from None
    return statuses


def _changes(outcomes: list[Any]) -> list[dict[str, Any]]:
    return [{"id": o.job_id, "from": o.old.value, "to": o.new.value, "message": o.message} for o in outcomes]
