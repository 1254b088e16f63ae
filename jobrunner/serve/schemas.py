"""The JSON the API takes and gives, for its OpenAPI schema (GET /openapi.json, /docs).

Responses are the CLI's `--json` dicts, sent as they are: these models describe them (and the
schema tests hold the two together); they are not a second serialisation. Request bodies take
any value where the CLI's own checks decide (jobspec.build_spec), so a bad value gets the
CLI's message rather than a schema library's.
"""

from __future__ import annotations

from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model


class ErrorOut(BaseModel):
    error: str = Field(description="What went wrong, in one line (the CLI's words)")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "A bad value"), (401, "No token, or a wrong one"), (403, "Refused: a read-only token, a foreign origin"),
        (404, "Unknown job, schedule or endpoint"), (409, "The job's state refuses it"),
        (413, "The body is too large"), (415, "The body is not JSON"), (422, "The request does not fit the schema"),
        (503, "The database is busy or unreachable: try again"),
    )
}  # fmt: skip


class JobIn(BaseModel):
    """One job: the keys of a line of `jobrunner submit --from-file`. Give `command` (an argv
    list or a shell string), `callable` ('package.module:function'), or `task` (a [tasks.NAME]
    of the server's config, whose fields the others override)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    command: Any = Field(None, description="argv list, or a string run with /bin/sh -c", examples=[["make", "test"]])
    callable: Any = Field(None, description="'package.module:function' run by a worker")
    args: Any = Field(None, description="positional arguments of the callable (JSON values)")
    kwargs: Any = Field(None, description="keyword arguments of the callable")
    task: Any = Field(None, description="a [tasks.NAME] of the server's config to start from")
    name: Any = None
    queue: Any = Field(None, description="default: default")
    priority: Any = Field(None, description="low, normal, high, critical, or 0-9")
    retries: Any = None
    timeout: Any = Field(None, description="a duration: 30s, 10m, 1h30m, or seconds")
    backoff: Any = None
    retry_on: Any = None
    retry_on_exit_codes: Any = None
    tags: Any = None
    metadata: Any = None
    env: Any = None
    cwd: Any = Field(None, description="default: the directory the server was started in")
    memory: Any = Field(None, description="a size: 512M, 2G; an attempt over it fails")
    cpu_time: Any = Field(None, description="a duration of CPU time: 30s, 10m; an attempt over it fails")
    max_log_size: Any = Field(None, description="a size: 50M; the log keeps its head and tail within it")
    at: Any = Field(None, description="when it may start: ISO 8601 (local unless an offset) or epoch seconds")
    in_: Any = Field(None, alias="in", description="or a delay from now: 10m")
    after: Any = Field(None, description="ids (or, in a bulk request, refs of earlier items) to wait for")
    ref: Any = Field(None, description="a name later items of a bulk request use in `after`")

    def fields(self) -> dict[str, Any]:
        """The keys the client sent, as a --from-file line holds them."""
        data = self.model_dump(by_alias=True, exclude_unset=True)
        data.update(self.model_extra or {})
        return data


class PriorityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Any = Field(description="low, normal, high, critical, or 0-9", examples=["high"])


class CreatedOut(BaseModel):
    id: int


class BulkOut(BaseModel):
    ids: list[int]


class Backoff(BaseModel):
    base: float
    factor: float
    max: float


class JobOut(BaseModel):
    """A job as `jobrunner list --json` gives it."""

    id: int
    name: str
    kind: str
    task: str | None
    command: list[str] | None
    callable: str | None
    args: list[Any] | None
    kwargs: dict[str, Any] | None
    queue: str
    priority: int
    priority_name: str
    status: str
    attempts: int
    max_retries: int
    retries_left: int
    tries_used: int
    tries_allowed: int
    timeout: float | None
    backoff: Backoff
    retry_on: list[str] | None
    retry_on_exit_codes: list[int] | None
    progress: float | None
    progress_message: str | None
    created_at: str | None
    scheduled_at: str | None
    started_at: str | None
    finished_at: str | None
    updated_at: str | None
    duration: float | None
    exit_code: int | None
    result: Any = None
    error: str | None
    tags: list[str] | None
    metadata: dict[str, Any] | None
    cwd: str | None
    env: dict[str, str] | None = Field(description="values `***` for the read-only token")
    lease_owner: str | None
    lease_until: str | None
    cancel_requested: bool
    log_path: str | None
    memory: int | None = Field(None, description="the memory limit in bytes")
    cpu_time: float | None = Field(None, description="the CPU time limit in seconds")
    max_log_size: int | None = Field(None, description="the log size limit in bytes")


class EventOut(BaseModel):
    at: str | None
    attempt: int | None
    from_: str | None = Field(alias="from")
    to: str
    message: str | None
    details: dict[str, Any] | None


class JobDetailOut(JobOut):
    """A job as `jobrunner show --json` gives it: with its dependencies and history."""

    after: list[int]
    dependents: list[int]
    events: list[EventOut]


class JobPageOut(BaseModel):
    jobs: list[JobOut]
    next: str | None = Field(description="the cursor of the next page (pass it as ?cursor=), null at the end")


class ChangeOut(BaseModel):
    """A change as `jobrunner cancel --json` and `retry --json` report it."""

    id: int
    from_: str = Field(alias="from")
    to: str
    message: str


class PriorityOut(BaseModel):
    id: int
    status: str
    message: str


class PurgedOut(BaseModel):
    """As `jobrunner purge --json` reports it."""

    purged: int
    would_purge: int
    ids: list[int]


class QueueStatsOut(BaseModel):
    total: int
    paused: bool
    by_status: dict[str, int]


class StatsOut(BaseModel):
    total: int
    by_status: dict[str, int]
    queues: dict[str, QueueStatsOut]


class TaskOut(BaseModel):
    """A [tasks.NAME] of the server's config: its name and the job fields it sets."""

    model_config = ConfigDict(extra="allow")

    name: str


def _schedule_job_out() -> type[BaseModel]:
    """The keys a schedule's job may have (config.schedule_job_keys), each described as JobIn
    describes it: a job key added there is listed here by itself."""
    from jobrunner.config import schedule_job_keys

    described = JobIn.model_fields
    keys = {key: (Any, Field(None, description=described[key].description if key in described else None))
            for key in schedule_job_keys()}  # fmt: skip
    doc = ("The job a schedule fires: its task, or its own command or callable, and the job options "
           "it sets (memory, timeout, retries...), as the schedule gave them; only the keys it sets.")  # fmt: skip
    return create_model("ScheduleJobOut", __config__=ConfigDict(extra="allow"), __doc__=doc, **keys)


def _schedule_out() -> type[BaseModel]:
    """store.schedules' view columns with ScheduleRow's types (a column added there is listed
    here by itself), then what the view adds."""
    from jobrunner.store.schedules import ISO_COLUMNS, VIEW_COLUMNS, ScheduleRow

    types = get_type_hints(ScheduleRow)
    fields: dict[str, Any] = {c: (str | None if c in ISO_COLUMNS else types[c], ...) for c in VIEW_COLUMNS}
    fields["job"] = (_schedule_job_out(), ...)
    fields.update(last_job_status=(str | None, ...), broken=(bool, ...), error=(str | None, ...),
                  description=(str, ...), state=(str, ...))  # fmt: skip
    doc = "A schedule as `jobrunner schedule list --json` gives it."
    return create_model("ScheduleOut", __doc__=doc, **fields)


ScheduleOut = _schedule_out()


class DaemonOut(BaseModel):
    id: str
    host: str
    pid: int
    version: str
    started_at: str | None
    heartbeat_at: str | None
    heartbeat_age: float
    heartbeat_every: float
    alive: bool
    silent: bool
    workers: int
    busy: int
    free: int
    queues: list[str]
    state: str


class StatusOut(BaseModel):
    """As `jobrunner status --json` gives it."""

    database: str
    alive: bool
    daemons: list[DaemonOut]
    jobs: dict[str, int]
    queues: dict[str, QueueStatsOut]
    paused_queues: list[str]


class QueueOut(BaseModel):
    queue: str
    paused: bool
    changed: bool
    message: str = Field(description="the line `jobrunner pause`/`resume` prints")


class HealthOut(BaseModel):
    ok: bool
    database: str
    daemons_alive: int
    error: str | None = None
