"""create_app(settings): the FastAPI application of `jobrunner serve`.

Every request passes the Guard first (serve.guard). POST /api/jobs then goes to
serve.submit.FastSubmit, which answers a well-formed submit without FastAPI's layers; everything
else (and a malformed submit) goes to FastAPI. Routes that touch the database are plain `def`s:
FastAPI runs them in its thread pool, where each thread gets its own connection and the Store's
write lock takes this process's writers in turn. The streams (events, a followed log) are async
and read in worker threads.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from jobrunner import __version__
from jobrunner.serve import errors
from jobrunner.serve.guard import PUBLIC_PATHS, Guard
from jobrunner.serve.settings import ServeSettings

DESCRIPTION = """The jobs of one jobrunner database: the same store functions, JSON and one-line
errors as the `jobrunner` CLI (`--json`). With a token set (`$JOBRUNNER_API_TOKEN`, and a
read-only one in `$JOBRUNNER_API_READ_TOKEN`), send `Authorization: Bearer TOKEN`."""


SUBMIT_PATH = "/api/jobs"


class Api(FastAPI):
    """FastAPI behind the Guard, with POST /api/jobs answered before FastAPI's own layers (by
    serve.submit.FastSubmit, which hands FastAPI's route what it does not take itself)."""

    def __init__(self, settings: ServeSettings, **options: Any) -> None:
        from jobrunner.serve.submit import FastSubmit

        super().__init__(**options)
        fastapi = super().__call__
        submit = FastSubmit(settings, fallback=fastapi)

        async def route(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == SUBMIT_PATH and scope["method"] == "POST":
                await submit(scope, receive, send)
            else:
                await fastapi(scope, receive, send)

        self._door = Guard(route, settings=settings)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._door(scope, receive, send)


def create_app(settings: ServeSettings) -> FastAPI:
    from jobrunner.serve import events, jobs, logs, metrics, submit, system

    app = Api(settings, title="jobrunner", version=__version__, description=DESCRIPTION, redoc_url=None)
    app.state.settings = settings
    app.state.metrics = metrics.registry(settings.store)
    errors.install(app)
    for module in (submit, jobs, logs, system, events, metrics):
        app.include_router(module.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the bearer token declared (the Guard checks it, not a dependency)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _job_bodies(schema)
        if app.state.settings.tokens_required:
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            for path in PUBLIC_PATHS & set(schema["paths"]):
                for operation in schema["paths"][path].values():
                    operation["security"] = []  # /healthz: for load balancers, which hold no token
        app.openapi_schema = schema
    return app.openapi_schema


def _job_bodies(schema: dict[str, Any]) -> None:
    """The submit routes take plain objects (see serve.submit); their schema is JobIn's."""
    from jobrunner.serve.schemas import JobIn

    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["JobIn"] = JobIn.model_json_schema(ref_template="#/components/schemas/{model}")
    job = {"$ref": "#/components/schemas/JobIn"}
    for path, body in (("/api/jobs", job), ("/api/jobs/bulk", {"type": "array", "items": job})):
        schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"] = body
