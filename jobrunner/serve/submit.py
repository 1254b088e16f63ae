"""POST /api/jobs and /api/jobs/bulk: jobs from JSON objects with the keys of a line of
`jobrunner submit --from-file`, through the same checks and words (jobspec.build_spec, the
config's tasks, check_runs_here where the daemon shares this machine, run_time).

A body is taken as plain JSON objects (`dict[str, Any]`), not a pydantic model per job: build_spec
checks every key, and a model cost ten times the rest of a bulk request's parsing (50 ms for
10,000 jobs, against 2 ms). The schema still shows JobIn (app._openapi puts it in).

POST /api/jobs, the request a client sends thousands of times, is answered by `FastSubmit` before
FastAPI sees it (app.Api routes it there, behind the Guard): FastAPI's layers (its middleware,
routing, body and dependency solving, the thread-pool hop, the response object) cost more than
the rest of the request, uvicorn and the SQL included (server CPU per submit, 8 clients:
370-510 µs through FastAPI, about 165 here). Anything but a JSON object in a JSON body goes on
to FastAPI's route, `submit_job`, so every refusal of a malformed request keeps its one line."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, Request

from jobrunner.config import Config
from jobrunner.domain.jobspec import MAX_JOB_ID, JobSpec, SpecError, build_spec
from jobrunner.domain.starttime import run_time
from jobrunner.errors import NotFoundError, StoreError, UsageError
from jobrunner.machine_checks import check_runs_here
from jobrunner.serve import errors
from jobrunner.serve.errors import ApiError, ApiJSON, error_response
from jobrunner.serve.guard import BodyTooLarge
from jobrunner.serve.schemas import ERRORS, BulkOut, CreatedOut
from jobrunner.store import repo

if TYPE_CHECKING:
    from jobrunner.serve.settings import ServeSettings

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=ERRORS)


@router.post("", status_code=201, response_model=CreatedOut, summary="Submit a job")
def submit_job(request: Request, job: Annotated[dict[str, Any], Body()]) -> Any:
    """Store one job: the keys of a `--from-file` line (`command`, `callable` or `task`, plus
    `name`, `queue`, `priority`, `retries`, `timeout`, `at`/`in`, `after`...). Its id once committed."""
    return ApiJSON({"id": store_one(request.app.state.settings, job)}, status_code=201)


def store_one(settings: ServeSettings, job: dict[str, Any]) -> int:
    """One job checked and stored; its id."""
    now = time.time()
    (spec,) = job_specs([job], settings.config, "://" not in settings.store.target, now, bulk=False)
    try:
        return repo.submit(settings.store, spec, now)
    except NotFoundError as exc:  # an `after` id no job has: a bad value, not a missing resource
        raise ApiError(400, str(exc).replace("--after:", "after:", 1)) from None


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


class FastSubmit:
    """ASGI: POST /api/jobs, answered here when the body is a JSON object; anything else (no body,
    another content type, broken JSON, a list) goes on to `fallback`, FastAPI's route, with the
    body as it came, so those refusals keep FastAPI's checks and serve.errors' words.

    On SQLite the submit runs on the event loop (its SQL takes about 50 µs): a hop to a worker
    thread and back costs more than that (measured with 8 clients: 240 against 165 µs of server
    CPU per request, 3,500 against 4,500 jobs/s). It runs there only when nothing would make the
    loop wait: this process's write lock free, and the loop's connection told not to wait for
    another process's (a busy timeout of 0: SQLITE_BUSY at once, nothing written). Otherwise, and
    always on PostgreSQL (a round trip, perhaps to another host) or with `durability = "full"` (a
    flush to disk per commit), it runs in the thread pool, as FastAPI's routes do, and waits there."""

    def __init__(self, settings: ServeSettings, fallback: Any) -> None:
        self.settings = settings
        self.fallback = fallback
        self._impatient: Any = None  # the loop's SQLite connection, once its busy timeout is 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        chunks: list[bytes] = []
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away: nothing stored, nobody to answer
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except BodyTooLarge as exc:
            await error_response(exc.status_code, exc.detail)(scope, receive, send)
            return
        body = b"".join(chunks)
        job = _json_object(scope, body)
        if job is None:
            await self.fallback(scope, _replay(body, receive), send)
            return
        try:
            answer = self._on_loop(job)
            if answer is None:
                answer = await anyio.to_thread.run_sync(self._submit, job)
        except Exception as exc:  # every error answers in one line, as the handlers do
            await errors.answer(exc, "POST", scope["path"])(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-length", b"%d" % len(answer)), (b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": answer})

    def _on_loop(self, job: dict[str, Any]) -> bytes | None:
        """The answer, submitted here on the event loop; None when that would wait (a thread
        may then)."""
        store = self.settings.store
        if not store.is_sqlite or self.settings.config.durability == "full":  # a flush per commit: not here
            return None
        if not store.write_lock.acquire(blocking=False):
            return None
        try:
            if not self._impatient_connection():
                return None
            try:
                return self._submit(job)
            except StoreError as exc:
                if _busy(exc):  # another process writes: nothing was stored, a thread waits its turn
                    return None
                raise
        finally:
            store.write_lock.release()

    def _impatient_connection(self) -> bool:
        """The loop thread's connection with a busy timeout of 0: told at once, not after up to
        30 s, when another process holds the write lock. False if that cannot be set."""
        try:
            conn = self.settings.store.db.connection()
            if conn is not self._impatient:
                conn.execute("PRAGMA busy_timeout = 0")
                self._impatient = conn
        except Exception:  # no connection: the thread's attempt will say why, in one line
            return False
        return True

    def _submit(self, job: dict[str, Any]) -> bytes:
        return b'{"id":%d}' % store_one(self.settings, job)


def _busy(exc: BaseException) -> bool:
    """Whether a store error was SQLite's "database is locked" (SQLITE_BUSY), which writes nothing."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.OperationalError) and seen.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _json_object(scope: dict[str, Any], body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object when it is one and says so (Content-Type: application/json,
    with or without parameters); None for anything FastAPI's route should judge."""
    if not body:
        return None
    for name, value in scope["headers"]:
        if name == b"content-type":
            if value.partition(b";")[0].strip().lower() != b"application/json":
                return None
            break
    else:
        return None
    try:
        job = json.loads(body)
    except ValueError:  # broken JSON, or bytes that are no text: FastAPI's route says which
        return None
    return job if isinstance(job, dict) else None


def _replay(body: bytes, receive: Any) -> Any:
    """A receive() that gives `body` once, as one message, then listens to the client again."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
