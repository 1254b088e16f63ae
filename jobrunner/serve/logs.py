"""GET /api/jobs/ID/log: a job's output as `jobrunner logs ID` pipes it, the bytes exactly as the
job wrote them, read a chunk at a time (memory stays flat whatever the log's size); with
`follow`, what is appended until the job finishes; `tail` starts at the last N lines."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, BinaryIO

import anyio
from fastapi import APIRouter, Query, Request
from starlette.responses import StreamingResponse

from jobrunner.cli import logstream
from jobrunner.domain.states import FINISHED
from jobrunner.serve.errors import ApiError
from jobrunner.serve.jobs import JobId
from jobrunner.serve.schemas import ERRORS
from jobrunner.store import queries

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=ERRORS)
FOLLOW_POLL_S = 0.1  # how often a followed log looks for more output and for the job's end, as `logs -f`
MEDIA_TYPE = "text/plain; charset=utf-8"


@router.get(
    "/{job_id}/log", summary="A job's output",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The log's bytes"}},
)  # fmt: skip
async def job_log(
    request: Request,
    job_id: JobId,
    follow: Annotated[bool, Query(description="Keep sending output until the job finishes")] = False,
    tail: Annotated[int | None, Query(ge=0, le=10_000_000, description="Start with the last N lines")] = None,
) -> Any:
    """The stdout and stderr of every attempt, in the order written (empty if none yet)."""
    settings = request.app.state.settings
    store = settings.store
    job = await anyio.to_thread.run_sync(queries.get_job, store, job_id)  # an unknown id: 404 before streaming
    try:
        opened = await anyio.to_thread.run_sync(logstream.open_log, job["log_path"], tail)
    except OSError as exc:  # before the first byte: an answer, not a cut stream
        raise ApiError(500, f"cannot read the log of job {job_id} ({job['log_path']}): {exc.strerror or exc}") from None
    limit = settings.stream_limit_s

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal job
        deadline = None if limit is None else time.monotonic() + limit
        handle = opened
        try:
            while True:
                if handle is None and follow:
                    handle = await anyio.to_thread.run_sync(logstream.open_log, job["log_path"], tail)
                elif handle is not None and follow and logstream.replaced(handle, job["log_path"]):
                    async for data in _rest(handle):  # a file renamed over the path: the old one's end, then the new one
                        yield data
                    handle.close()
                    handle = await anyio.to_thread.run_sync(logstream.open_log, job["log_path"], None)
                if handle is not None:
                    async for data in _rest(handle):
                        yield data
                if not follow or job["status"] in FINISHED:  # read after the status: all it wrote is out
                    return
                if settings.stopping.is_set() or (deadline is not None and time.monotonic() > deadline):
                    return
                await anyio.sleep(FOLLOW_POLL_S)
                job = await anyio.to_thread.run_sync(queries.get_job, store, job_id)
        finally:
            if handle is not None:
                handle.close()

    return StreamingResponse(chunks(), media_type=MEDIA_TYPE)


async def _rest(handle: BinaryIO) -> AsyncIterator[bytes]:
    """Everything from the handle's position to the end of the file, a chunk at a time."""
    while data := await anyio.to_thread.run_sync(handle.read, logstream.CHUNK):
        yield data
