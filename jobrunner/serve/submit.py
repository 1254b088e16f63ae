"""POST /api/jobs and /api/jobs/bulk: jobs from JSON objects with the keys of a line of
`jobrunner submit --from-file`, through the same checks and words (jobspec.build_spec, the
config's tasks, check_runs_here where the daemon shares this machine, run_time).

A body is taken as plain JSON objects (`dict[str, Any]`), not a pydantic model per job: build_spec
checks every key, and a model cost ten times the rest of a bulk request's parsing (50 ms for
10,000 jobs, against 2 ms). The schema still shows JobIn (app._openapi puts it in)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from jobrunner.config import Config
from jobrunner.domain.jobspec import MAX_JOB_ID, JobSpec, SpecError, build_spec
from jobrunner.domain.starttime import run_time
from jobrunner.errors import NotFoundError, UsageError
from jobrunner.machine_checks import check_runs_here
from jobrunner.serve.errors import ApiError, ApiJSON
from jobrunner.serve.schemas import ERRORS, BulkOut, CreatedOut
from jobrunner.store import repo

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=ERRORS)


@router.post("", status_code=201, response_model=CreatedOut, summary="Submit a job")
def submit_job(request: Request, job: Annotated[dict[str, Any], Body()]) -> Any:
    """Store one job: the keys of a `--from-file` line (`command`, `callable` or `task`, plus
    `name`, `queue`, `priority`, `retries`, `timeout`, `at`/`in`, `after`...). Its id once committed."""
    settings = request.app.state.settings
    now = time.time()
    (spec,) = job_specs([job], settings.config, "://" not in settings.store.target, now, bulk=False)
    try:
        job_id = repo.submit(settings.store, spec, now)
    except NotFoundError as exc:  # an `after` id no job has: a bad value, not a missing resource
        raise ApiError(400, str(exc).replace("--after:", "after:", 1)) from None
    return ApiJSON({"id": job_id}, status_code=201)


@router.post("/bulk", status_code=201, response_model=BulkOut, summary="Submit many jobs at once")
def submit_bulk(request: Request, jobs: Annotated[list[dict[str, Any]], Body()]) -> Any:
    """Store a list of jobs in one transaction, all or none, as `submit --from-file` does: every
    item is checked first, and an error names the item (`item 3: priority: ...`). An item may name
    itself with `ref` and a later one wait for it with `after: ["that-ref"]`."""
    settings = request.app.state.settings
    now = time.time()
    if not jobs:
        raise ApiError(400, "no jobs in the list: give a list of job objects")
    specs = job_specs(jobs, settings.config, "://" not in settings.store.target, now, bulk=True)
    try:
        ids = repo.submit_many(settings.store, specs, now)
    except NotFoundError as exc:
        raise ApiError(400, str(exc).replace("--after:", "after:", 1)) from None
    return ApiJSON({"ids": ids}, status_code=201)


def job_specs(items: Sequence[dict[str, Any]], config: Config, local: bool, now: float,
              bulk: bool) -> list[JobSpec]:  # fmt: skip
    """Every item checked into a spec before anything is written; an error names the item in a
    bulk request (`item 12: priority: ...`), as --from-file names the line."""
    specs: list[JobSpec] = []
    refs: dict[str, int] = {}  # `ref` names of earlier items -> their index
    cwd: str | None = None  # a shell job runs where the server was started: the same for every item
    for number, fields in enumerate(items, 1):
        where = f"item {number}: " if bulk else ""
        data = dict(fields)
        task_name = data.pop("task", None)
        at, delay = data.pop("at", None), data.pop("in", None)
        ref, after = data.pop("ref", None), data.pop("after", None)
        try:
            if task_name is not None:
                if not isinstance(task_name, str) or task_name not in config.tasks:
                    known = ", ".join(sorted(config.tasks)) or "the server's config has none"
                    raise UsageError(f"task: unknown task {task_name!r} (known tasks: {known})")
                spec = config.task_spec(task_name, data)
            else:
                spec = build_spec(data)
            if spec.cwd is not None or spec.callable is not None:
                check_runs_here(spec, lambda: config, local)
            if spec.kind == "shell" and spec.cwd is None:
                spec.cwd = cwd = cwd or os.getcwd()
            if at is not None or delay is not None:
                spec.run_at = run_time(at, delay, now)
            if after is not None:
                spec.after = _after(after, refs)
            if ref is not None:
                if not bulk or not isinstance(ref, str) or not ref or ref in refs:
                    raise UsageError("ref: names an item for later items of a bulk request" if not bulk else
                                     f"ref: {ref!r} must be a new, non-empty name for this item")  # fmt: skip
                refs[ref] = len(specs)
        except SpecError as exc:
            raise ApiError(400, f"{where}{exc}") from None
        except UsageError as exc:
            raise ApiError(400, f"{where}{exc}") from None
        specs.append(spec)
    return specs


def _after(after: Any, refs: dict[str, int]) -> list[int]:
    """Job ids, or refs of earlier items (stored as -(index + 1) until their ids exist)."""
    resolved: list[int] = []
    for item in after if isinstance(after, list) else [after]:
        if isinstance(item, int) and not isinstance(item, bool) and 0 < item <= MAX_JOB_ID:
            resolved.append(item)
        elif isinstance(item, str) and item in refs:
            resolved.append(-(refs[item] + 1))
        else:
            raise UsageError(f"after: {item!r} is neither a job id nor the ref of an earlier item")
    return resolved
