"""GET /api/events: Server-Sent Events, one per state change and per progress report.

    event: state      a row of the job's history (`show --json`'s events, with event_id, job_id, queue)
    event: progress   a running job's latest progress (job_id, queue, attempt, progress, progress_message, at)
    event: ready      first, with the cursor the stream starts from

State changes are the `event` table's rows, read in id order: its ids are the cursor. Progress
lives only in the job's row (the daemon keeps the latest, written at most 5 times a second), so
a stream reads the running jobs' rows as it polls and sends each new value; the cursor adds the
newest progress time it has sent. Every message carries the cursor as its `id`, so a client that
reconnects with `Last-Event-ID` (a browser's EventSource does it by itself) gets every state
change it missed and the progress written since, with no gap. Progress that was overwritten
while nobody listened is gone; its latest value is sent. A job's final report, written with its
success, comes right before its `succeeded`.

A stream polls the database every `poll_s` (25 ms), in a worker thread, one statement per poll.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import StreamingResponse

from jobrunner.domain.jobspec import MAX_JOB_ID
from jobrunner.errors import JobrunnerError
from jobrunner.serve.errors import ApiError, dumps, one_line
from jobrunner.serve.schemas import ERRORS
from jobrunner.store import serving

router = APIRouter(tags=["events"], responses=ERRORS)
PG_GAP_WAIT_S = 2.0  # on PostgreSQL, how long a hole in the event ids may be a transaction still committing
MAX_FILTERS = 100
RETRY_MS = 1000  # what EventSource waits before it reconnects


#: One event of the stream (before OpenAPI 3.2, a stream's `schema` describes each event).
EVENT_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "enum": ["ready", "state", "progress", "error"]},
        "id": {"type": "string", "description": "the cursor: send it back as Last-Event-ID to resume"},
        "data": {"type": "string", "description": "a JSON object"},
        "retry": {"type": "integer"},
    },
}


@dataclass
class Cursor:
    """Where a stream stands: the last event row sent, and the newest progress time sent."""

    event: int
    stamp: float = 0.0

    def text(self) -> str:
        return f"{self.event}:{self.stamp!r}" if self.stamp else str(self.event)


def parse_cursor(text: str, where: str) -> Cursor:
    event, _, stamp = text.strip().partition(":")
    try:
        if not (event.isascii() and event.isdigit()) or len(event) > 19:
            raise ValueError
        cursor = Cursor(int(event), float(stamp) if stamp else 0.0)
        if not math.isfinite(cursor.stamp) or cursor.stamp < 0:
            raise ValueError
    except ValueError:
        raise ApiError(400, f"{where}: {text!r} is not a cursor: give the id of an event this API sent") from None
    return cursor


def message(kind: str, data: Any, ident: str) -> bytes:
    return f"id: {ident}\nevent: {kind}\ndata: ".encode() + dumps(data) + b"\n\n"


class Feed:
    """One client's stream: what it has been sent, and what comes next."""

    def __init__(self, store: Any, jobs: list[int], queues: list[str], cursor: Cursor | None) -> None:
        self.store = store
        self.jobs = jobs
        self.queues = queues
        self.cursor = cursor or Cursor(0)
        self.fresh = cursor is None  # no cursor: from now on, with the running jobs' progress as it stands
        self.resume_stamp: float | None = None if cursor is None else cursor.stamp
        self.sent: dict[int, tuple[Any, ...]] = {}  # job id -> the progress last sent for it
        self.gaps: dict[int, float] = {}  # PostgreSQL: first missing id -> when it was first seen

    def start(self) -> None:
        if self.fresh:
            self.cursor.event = serving.last_event_id(self.store)

    def poll(self) -> list[bytes]:
        """The messages since the last poll (one statement: one snapshot)."""
        upto = None if self.store.is_sqlite else self._committed_upto()
        rows, head = serving.poll_feed(self.store, self.cursor.event, upto, self.jobs, self.queues)
        events = [row for row in rows if row.kind == "event"]
        out: list[bytes] = []
        for row in events:
            if row.new == "succeeded" and row.status == "succeeded" and row.progress is not None:
                self._progress(row, out)  # the last report, written with the success: before it
            if row.new != "running":
                self.sent.pop(row.job_id, None)
            self.cursor.event = row.event_id
            out.append(message("state", row.state_data(), self.cursor.text()))
        if len(events) == serving.FEED_BATCH:
            return out  # more to come: progress waits until the state changes have caught up
        self.cursor.event = max(self.cursor.event, head if upto is None else upto)
        running = set()
        for row in rows:
            if row.kind != "progress":
                continue
            running.add(row.job_id)
            if self.resume_stamp is not None and row.updated_at is not None and row.updated_at <= self.resume_stamp:
                self.sent[row.job_id] = (row.attempt, row.progress, row.progress_message)  # sent before the reconnect
                continue
            self._progress(row, out)
        self.resume_stamp = None
        for job_id in [j for j in self.sent if j not in running]:
            del self.sent[job_id]
        return out

    def _progress(self, row: serving.FeedRow, out: list[bytes]) -> None:
        key = (row.attempt, row.progress, row.progress_message)
        if self.sent.get(row.job_id) == key:
            return
        self.sent[row.job_id] = key
        if row.updated_at is not None:
            self.cursor.stamp = max(self.cursor.stamp, float(row.updated_at))
        out.append(message("progress", row.progress_data(), self.cursor.text()))

    def _committed_upto(self) -> int:
        """PostgreSQL hands out sequence values before commit, so event 41 may show after 42: read
        only up to the first hole that is younger than PG_GAP_WAIT_S (older ones were rolled back)."""
        ids = serving.event_ids_after(self.store, self.cursor.event)
        expected, now = self.cursor.event + 1, time.monotonic()
        for found in ids:
            if found != expected and now - self.gaps.setdefault(expected, now) < PG_GAP_WAIT_S:
                return expected - 1
            expected = found + 1
        return expected - 1


@router.get(
    "/api/events", summary="Live state changes and progress (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
                     "description": "`ready`, then `state` and `progress` events"}},
)  # fmt: skip
async def events(
    request: Request,
    job: Annotated[list[int] | None, Query(description="Only these jobs")] = None,
    queue: Annotated[list[str] | None, Query(description="Only jobs in these queues")] = None,
    after: Annotated[str | None, Query(description="Start after this cursor (an event's id; 0: from the first)")] = None,
    last_event_id: Annotated[str | None, Header(description="Sent by EventSource on a reconnect")] = None,
) -> Any:
    """One `state` event per state change, one `progress` event per progress report, as they are
    written; resumable with `Last-Event-ID` (or `?after=`). Without either: from now on, starting
    with the running jobs' progress as it stands."""
    settings = request.app.state.settings
    jobs, queues = job or [], queue or []
    if len(jobs) > MAX_FILTERS or len(queues) > MAX_FILTERS:
        raise ApiError(400, f"at most {MAX_FILTERS} jobs and {MAX_FILTERS} queues to follow")
    bad = [j for j in jobs if not 0 < j <= MAX_JOB_ID]
    if bad:
        raise ApiError(400, f"job: {bad[0]} is not a job id: ids are positive whole numbers")
    if last_event_id:
        cursor = parse_cursor(last_event_id, "Last-Event-ID")
    else:
        cursor = parse_cursor(after, "after") if after else None
    feed = Feed(settings.store, jobs, queues, cursor)
    await anyio.to_thread.run_sync(feed.start)  # a database that does not answer: an error, not a stream
    return StreamingResponse(_stream(feed, settings), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


async def _stream(feed: Feed, settings: Any) -> AsyncIterator[bytes]:
    yield f"retry: {RETRY_MS}\n".encode() + message("ready", {"cursor": feed.cursor.text()}, feed.cursor.text())
    started = last = time.monotonic()
    while True:
        pause = settings.poll_s
        try:
            out = await anyio.to_thread.run_sync(feed.poll)
        except JobrunnerError as exc:  # a locked or unreachable database: say so, and keep trying
            out = [message("error", {"error": one_line(exc)}, feed.cursor.text())]
            pause = max(pause, 1.0)
        now = time.monotonic()
        if out:
            yield b"".join(out)
            last = now
        elif now - last >= settings.keepalive_s:
            yield f": keepalive\nid: {feed.cursor.text()}\n\n".encode()  # an id alone moves EventSource's cursor
            last = now
        if settings.stopping.is_set() or (settings.stream_limit_s is not None and now - started >= settings.stream_limit_s):
            return
        await anyio.sleep(pause)
