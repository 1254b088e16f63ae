"""Every error the API answers is {"error": "one line"} with a status code that says whose fault
it is: 400 a bad value, 401/403 the token, 404 unknown, 409 the job's state refuses it, 413 too
big, 415 a body that is not JSON, 422 a request that does not fit the schema, 503 the database is busy or unreachable. The
line is the CLI's (`jobrunner: error: ...` without the prefix); no traceback ever goes out."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from starlette.responses import JSONResponse

from jobrunner.errors import (
    ConfigError,
    JobrunnerError,
    NotFoundError,
    StoreError,
    UsageError,
    error_line,
)

log = logging.getLogger("jobrunner.serve")
_PREFIX = "jobrunner: error: "
# JSON escapes C0 controls itself; DEL and the C1 controls (U+009B is a CSI to some terminals) it
# leaves raw unless told: escaped, as `--json` output does (cli/output.py)
_JSON_CONTROLS = {c: f"\\u{c:04x}" for c in range(127, 160)}


class ApiError(Exception):
    """An answer other than success, raised anywhere in a request."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def one_line(message: object) -> str:
    """A message as the CLI prints it after `jobrunner: error: `: one line, URL passwords hidden."""
    return error_line(str(message)).removeprefix(_PREFIX)


def dumps(data: Any) -> bytes:
    """JSON as `--json` prints it (ensure_ascii off, C1 controls escaped), compact; a NaN or an
    infinity (a result stored by an old version) becomes null rather than invalid JSON."""
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
    except ValueError:
        text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), default=str)
    return text.translate(_JSON_CONTROLS).encode("utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class ApiJSON(JSONResponse):
    """The API's JSON responses: rendered as `dumps` says."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error_response(status: int, message: object, headers: dict[str, str] | None = None) -> ApiJSON:
    return ApiJSON({"error": one_line(message)}, status_code=status, headers=headers)


def status_for(exc: JobrunnerError) -> int:
    """The status code of a jobrunner error that a route did not place itself."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConfigError | UsageError):
        return 400
    if isinstance(exc, StoreError):
        return 503  # locked past the busy timeout, full, unreachable: try again later
    return 500


def conflict(exc: UsageError) -> ApiError:
    """A refusal because of the job's state (cancel a finished job, retry a queued one): 409;
    an unknown id stays 404."""
    if isinstance(exc, NotFoundError):
        return ApiError(404, str(exc))
    return ApiError(409, str(exc))


def answer(exc: Exception, method: str, path: str) -> ApiJSON:
    """The answer to an exception a route raised: ApiError as it says, a jobrunner error by its
    kind, anything else a 500 whose traceback stays in the log. The handlers below and the
    POST /api/jobs fast path (serve.submit) both answer through here."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc, exc.headers)
    if isinstance(exc, JobrunnerError):
        status = status_for(exc)
        if status >= 500:
            log.error("%s %s: %s", method, path, one_line(exc))
        return error_response(status, exc, {"Retry-After": "1"} if status == 503 else None)
    log.error("%s %s failed", method, path, exc_info=exc)  # the traceback stays here
    return error_response(500, f"internal error ({type(exc).__name__}); the server's log has the details")


def install(app: Any) -> None:
    """The handlers that turn every exception into the one-line answer."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(ApiError)
    @app.exception_handler(JobrunnerError)
    @app.exception_handler(Exception)
    async def raised(request: Any, exc: Exception) -> ApiJSON:
        return answer(exc, request.method, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Any, exc: RequestValidationError) -> ApiJSON:
        kind = request.headers.get("content-type", "")
        if kind and "json" not in kind and any(e.get("loc", ("",))[0] == "body" for e in exc.errors()):
            return error_response(415, f"Content-Type {kind!r}: send the body as JSON (Content-Type: application/json)")
        status, message = validation_message(exc.errors())
        return error_response(status, message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, exc: HTTPException) -> ApiJSON:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path} (GET /docs lists them)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (GET /docs lists what is)"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))


#: pydantic's words for a body of the wrong shape, in JSON's (a job is a JSON object).
_JSON_WORDS = {"dict_type": "input should be a JSON object", "model_type": "input should be a JSON object",
               "list_type": "input should be a JSON list"}  # fmt: skip
#: Where a value came from, as the user wrote it.
_PLACES = {"query": "query parameter", "path": "path parameter", "header": "header", "body": "body"}


def validation_message(errors: Any) -> tuple[int, str]:
    """FastAPI's list of validation errors as one line: where, then what (the first error; how
    many more, if any). Unparseable JSON is a 400, a body of the wrong shape a 422."""
    errors = list(errors)
    if not errors:
        return 422, "the request does not fit the schema (GET /openapi.json)"
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ())]
    kind = first.get("type", "")
    if kind == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return 400, f"body: invalid JSON{': ' + str(reason) if reason else ''}"
    if loc[:2] == ["path", "job_id"]:
        value = first.get("input")
        return 400, (f"{str(value)!r} is not a job id: ids are positive whole numbers, as `jobrunner list` "
                     "shows them")  # fmt: skip
    place = _PLACES.get(loc[0], loc[0]) if loc else "request"
    name = ".".join(loc[1:])
    text = _JSON_WORDS.get(kind) or str(first.get("msg", "invalid")).rstrip(".")
    text = text[:1].lower() + text[1:]
    if kind == "missing":
        text = "missing" if name else "missing: send a JSON body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, f"{place} {name}: {text}{more}" if name else f"{place}: {text}{more}"
