"""Reading and steering jobs: list, show, cancel, retry, priority, delete. The store functions and
the JSON of `list --json`, `show --json`, `cancel --json`, `retry --json`, `priority --json` and
`purge --json`. A read-only token sees every job's env values as `***` (guard.sees_secrets)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from jobrunner.domain.jobspec import MAX_JOB_ID
from jobrunner.domain.priority import parse_priority
from jobrunner.domain.states import parse_status
from jobrunner.errors import UsageError
from jobrunner.secrets import masked_env
from jobrunner.serve.errors import ApiError, ApiJSON, conflict
from jobrunner.serve.guard import sees_secrets
from jobrunner.serve.schemas import (
    ERRORS,
    ChangeOut,
    JobDetailOut,
    JobPageOut,
    PriorityIn,
    PriorityOut,
    PurgedOut,
)
from jobrunner.store import dependencies, queries, repo, retention, serving

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=ERRORS)
JobId = Annotated[int, Path(ge=1, le=MAX_JOB_ID, description="The job's id")]
MAX_PAGE = 1000


def store_of(request: Request) -> Any:
    return request.app.state.settings.store


def shown_jobs(request: Request, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs as this caller may see them: env keys kept, values `***` for a read-only token
    (env values are where users put tokens and passwords)."""
    if sees_secrets(request):
        return jobs
    return [{**job, "env": masked_env(job["env"])} if job.get("env") else job for job in jobs]


@router.get("", response_model=JobPageOut, summary="List jobs, newest first")
def list_jobs(
    request: Request,
    status: Annotated[list[str] | None, Query(description="Only these statuses (repeat, or comma-separate)")] = None,
    queue: Annotated[list[str] | None, Query(description="Only these queues")] = None,
    tag: Annotated[list[str] | None, Query(description="Only jobs with all these tags")] = None,
    search: Annotated[str | None, Query(description="Text in the name, command or callable")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Jobs per page")] = 50,
    cursor: Annotated[str | None, Query(description="The `next` of the previous page")] = None,
    oldest_first: Annotated[bool, Query(description="Oldest first instead of newest")] = False,
) -> Any:
    """A page of jobs as `jobrunner list --json` gives them, and the cursor of the next page."""
    try:
        statuses = [parse_status(v) for item in status or [] for v in item.split(",") if v]
    except ValueError as exc:
        raise ApiError(400, f"status: {exc}") from None
    bound = None
    if cursor is not None:
        text = cursor.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 19 or not 0 < int(text) <= MAX_JOB_ID:
            raise ApiError(400, f"cursor: {cursor!r} is not a cursor: pass the `next` of the previous page")
        bound = int(text)
    where = queries.JobFilter(statuses=statuses, queues=queue or [], tags=tag or [], search=search or None,
                       before=None if oldest_first else bound, after=bound if oldest_first else None)  # fmt: skip
    jobs = queries.list_jobs(store_of(request), where, limit=limit + 1, newest_first=not oldest_first)
    following = str(jobs[limit - 1]["id"]) if len(jobs) > limit else None
    return ApiJSON({"jobs": shown_jobs(request, jobs[:limit]), "next": following})


@router.get("/{job_id}", response_model=JobDetailOut, summary="One job, with its history")
def get_job(request: Request, job_id: JobId) -> Any:
    """Everything about one job, as `jobrunner show --json` gives it."""
    store = store_of(request)
    (job,) = shown_jobs(request, [queries.get_job(store, job_id)])
    return ApiJSON({**job, **dependencies.links(store, job_id), "events": queries.job_events(store, job_id)})


def _changes(outcomes: list[Any]) -> ApiJSON:
    return ApiJSON([{"id": o.job_id, "from": o.old.value, "to": o.new.value, "message": o.message} for o in outcomes])


@router.post("/{job_id}/cancel", response_model=list[ChangeOut], summary="Cancel a job")
def cancel_job(request: Request, job_id: JobId) -> Any:
    """A queued, scheduled or waiting job never starts; a running one is stopped by its daemon.
    What changed, as `jobrunner cancel --json` reports it (jobs waiting for it are cancelled too)."""
    try:
        return _changes(repo.cancel(store_of(request), [job_id], time.time()))
    except UsageError as exc:
        raise conflict(exc) from None


@router.post("/{job_id}/retry", response_model=list[ChangeOut], summary="Retry a dead or cancelled job")
def retry_job(request: Request, job_id: JobId) -> Any:
    """A dead, cancelled or retrying job back in the queue, with a fresh retry budget, as
    `jobrunner retry --json` reports it."""
    try:
        return _changes(repo.retry(store_of(request), [job_id], time.time()))
    except UsageError as exc:
        raise conflict(exc) from None


@router.patch("/{job_id}", response_model=PriorityOut, summary="Change a job's priority")
def change_job(request: Request, job_id: JobId, body: PriorityIn) -> Any:
    """The priority of a job that has not started (queued, scheduled, waiting, retrying), as
    `jobrunner priority --json` reports it."""
    try:
        parse_priority(body.priority)
    except ValueError as exc:
        raise ApiError(400, f"priority: {exc}") from None
    try:
        (outcome,) = repo.set_priority(store_of(request), [job_id], body.priority, time.time())
    except UsageError as exc:
        raise conflict(exc) from None
    return ApiJSON({"id": outcome.job_id, "status": outcome.new.value, "message": outcome.message})


@router.delete("/{job_id}", response_model=PurgedOut, summary="Delete a finished job and its log")
def delete_job(request: Request, job_id: JobId) -> Any:
    """A succeeded, dead or cancelled job, its history and its log file, as `jobrunner purge --json`
    reports it; any other job is refused with 409 (cancel it first)."""
    from jobrunner.config import log_dir_for

    store = store_of(request)
    try:
        log_path = serving.delete_finished(store, job_id)
    except UsageError as exc:
        raise conflict(exc) from None
    retention.delete_logs([(job_id, log_path)], log_dir_for(store.target))
    return ApiJSON({"purged": 1, "would_purge": 0, "ids": [job_id]})

