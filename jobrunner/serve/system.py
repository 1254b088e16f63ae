"""Everything around the jobs: stats, the config's tasks, schedules, daemons, queues, health. The
JSON of `stats --json`, `schedule list --json` and `status --json`; the lines of `pause`/`resume`."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from jobrunner.errors import NotFoundError, UsageError
from jobrunner.secrets import masked_env
from jobrunner.serve.errors import ApiError, ApiJSON, one_line
from jobrunner.serve.schemas import (
    ERRORS,
    CreatedOut,
    HealthOut,
    QueueOut,
    ScheduleOut,
    StatsOut,
    StatusOut,
    TaskOut,
)
from jobrunner.store import queries, repo, schedules

router = APIRouter(responses=ERRORS)
Name = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/api/stats", response_model=StatsOut, tags=["status"], summary="Counts per status and queue")
def stats(request: Request) -> Any:
    """As `jobrunner stats --json` gives them."""
    return ApiJSON(queries.stats(request.app.state.settings.store))


@router.get("/api/tasks", response_model=list[TaskOut], tags=["status"], summary="The config's tasks")
def tasks(request: Request) -> Any:
    """The `[tasks.NAME]` of the server's config (what `"task": NAME` in a job starts from),
    each with its fields. `env` values are shown as `***`."""
    config = request.app.state.settings.config
    found = []
    for name, fields in sorted(config.tasks.items()):
        shown = dict(fields)
        if isinstance(shown.get("env"), dict):
            shown["env"] = masked_env(shown["env"])
        found.append({"name": name, **shown})
    return ApiJSON(found)


@router.get("/api/schedules", response_model=list[ScheduleOut], tags=["schedules"], summary="The schedules")
def list_schedules(request: Request) -> Any:
    """As `jobrunner schedule list --json` gives them."""
    from jobrunner.present import schedule_state

    store = request.app.state.settings.store
    views = []
    for row in schedules.all_schedules(store):
        view = schedules.schedule_view(store, row)
        view["description"] = schedules.describe(row.kind, row.expression)
        view["state"] = schedule_state(view)
        views.append(view)
    return ApiJSON(views)


@router.post("/api/schedules/{name}/run", status_code=201, response_model=CreatedOut, tags=["schedules"],
             summary="Fire a schedule now")  # fmt: skip
def run_schedule(request: Request, name: Name) -> Any:
    """Fire it once, now (its next time stays), as `jobrunner schedule run`; the new job's id."""
    settings = request.app.state.settings
    try:
        job_id = schedules.run_now(settings.store, name, settings.config, time.time())
    except UsageError as exc:  # unknown: 404; its task gone from the server's config: 400
        raise ApiError(404 if isinstance(exc, NotFoundError) else 400, str(exc)) from None
    return ApiJSON({"id": job_id}, status_code=201)


@router.get("/api/daemons", response_model=StatusOut, tags=["status"], summary="Daemons, jobs and queues")
def daemons(request: Request) -> Any:
    """As `jobrunner status --json` gives it: each daemon (alive or last seen), counts, queues."""
    from jobrunner.cli.health import status_data

    return ApiJSON(status_data(request.app.state.settings.store, time.time()))


def _set_paused(request: Request, name: str, paused: bool, create: bool) -> ApiJSON:
    """`jobrunner pause` / `resume`: a name no job, schedule or config uses is refused (a typo
    would pause a queue nothing will ever use) unless `create`."""
    from jobrunner.wakeup import poke

    settings = request.app.state.settings
    store = settings.store
    if not create:
        known = {"default", *repo.known_queues(store), *config_queues(settings.config)}
        if name not in known:
            hint = "pass ?create=true to pause it before its first job" if paused else "nothing to resume"
            raise ApiError(404, f"no queue named {name!r}: no job, schedule or config uses it "
                                f"(known queues: {', '.join(sorted(known))}); {hint}")  # fmt: skip
    try:
        was = repo.set_queue_paused(store, name, paused, time.time())
    except UsageError as exc:
        raise ApiError(400, str(exc)) from None
    if was == paused:
        message = f"queue {name} was already {'paused' if paused else 'running'}"
    else:
        message = f"queue {name} {'paused' if paused else 'resumed'}" + (
            ": running jobs finish, nothing new starts" if paused else "")  # fmt: skip
    if not paused:
        poke(store.target)
    return ApiJSON({"queue": name, "paused": paused, "changed": was != paused, "message": message})


def config_queues(config: Any) -> set[str]:
    """The queues the config names: its [queues.NAME] tables and its tasks' and schedules' queues."""
    tables = [*config.tasks.values(), *config.schedules.values()]
    return {*config.queues, *(t["queue"] for t in tables if isinstance(t.get("queue"), str))}


@router.post("/api/queues/{name}/pause", response_model=QueueOut, tags=["queues"], summary="Pause a queue")
def pause_queue(request: Request, name: Name,
                create: Annotated[bool, Query(description="Pause a queue nothing uses yet")] = False) -> Any:  # fmt: skip
    """Running jobs finish; nothing new starts from it until resumed."""
    return _set_paused(request, name, True, create)


@router.post("/api/queues/{name}/resume", response_model=QueueOut, tags=["queues"], summary="Resume a queue")
def resume_queue(request: Request, name: Name) -> Any:
    """Start its jobs again."""
    return _set_paused(request, name, False, False)


@router.get("/healthz", response_model=HealthOut, tags=["status"], summary="Is the database reachable, a daemon alive?",
            responses={503: {"model": HealthOut, "description": "No daemon alive, or no database"}})  # fmt: skip
def healthz(request: Request) -> Any:
    """200 when the database answers and a daemon is alive; 503 otherwise, saying which. Needs no token."""
    from jobrunner.errors import JobrunnerError

    store = request.app.state.settings.store
    try:
        alive = sum(1 for d in queries.daemons(store, time.time()) if d["alive"])
    except JobrunnerError as exc:
        return ApiJSON({"ok": False, "database": "unreachable", "daemons_alive": 0, "error": one_line(exc)},
                       status_code=503)  # fmt: skip
    if not alive:
        return ApiJSON({"ok": False, "database": "ok", "daemons_alive": 0,
                        "error": "no daemon is alive: jobs will not run until one starts (jobrunner daemon)"},
                       status_code=503)  # fmt: skip
    return ApiJSON({"ok": True, "database": "ok", "daemons_alive": alive})
