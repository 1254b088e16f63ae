"""The door every request passes before any route: host, origin, token, body size.

- With tokens (JOBRUNNER_API_TOKEN, and a read-only one), every request but /healthz and the
  API's own docs must carry `Authorization: Bearer TOKEN`; a read-only token may only GET, and
  is marked on the request (`sees_secrets`) so jobs' env values reach it as `***`.
- Without a token the server listens on loopback only, so the door keeps browsers out instead:
  a request whose Host is not a loopback name is refused (a DNS-rebinding page would run jobs
  as you), as is every request with a foreign Origin (a cross-site form or fetch), whatever the
  token. A body with another content type than JSON is refused (415), so a form cannot post a
  job either.
- A body over `max_body` bytes is refused with 413 before it is read, or as soon as it grows
  past the limit (a chunked upload has no Content-Length).
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request

from jobrunner.serve.errors import error_response
from jobrunner.serve.settings import ServeSettings

PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY = "read_only"  # key in the request's state: the caller holds the read-only token


class BodyTooLarge(HTTPException):
    """Raised from receive() once a body passes the limit: FastAPI lets an HTTPException through
    its body parsing, so the answer is a 413, not its generic 400."""


class Guard:
    """ASGI middleware: refuses what the settings do not allow, before the app sees it."""

    def __init__(self, app: Any, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings
        self._token = _raw(settings.token)
        self._read_only_token = _raw(settings.read_only_token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        limit = self.settings.max_body
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            too_big = error_response(413, _too_large(limit)) if length.isdigit() else error_response(
                400, f"Content-Length: {length!r} is not a number of bytes")  # fmt: skip
            await too_big(scope, receive, send)
            return
        received = 0

        async def limited() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(413, _too_large(limit))
            return message

        await self.app(scope, limited, send)

    def refusal(self, scope: dict[str, Any], headers: Headers) -> Any:
        """The error response that ends this request here, or None to let it through."""
        settings = self.settings
        host = headers.get("host", "")
        if not settings.tokens_required and _hostname(host) not in settings.allowed_hosts:
            return error_response(403, f"Host {host!r} refused: without a token this server answers only to "
                                       "127.0.0.1 or localhost (set a token to serve other names)")  # fmt: skip
        origin = headers.get("origin")
        if origin is not None and origin.partition("://")[2].rstrip("/") != host:
            return error_response(403, f"cross-origin request from {origin!r} refused: this API takes no "
                                       "requests from other sites' pages")  # fmt: skip
        if not settings.tokens_required or scope["path"] in PUBLIC_PATHS:
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            where = settings.token_file or f"${settings.token_env} where the server runs"
            return error_response(
                401, f"missing token: send `Authorization: Bearer TOKEN` (the token is in {where})",
                {"WWW-Authenticate": "Bearer"})  # fmt: skip
        token = given.strip().encode("latin-1")
        if self._token is not None and hmac.compare_digest(token, self._token):
            return None
        if self._read_only_token is not None and hmac.compare_digest(token, self._read_only_token):
            if scope["method"] in READ_METHODS:
                scope.setdefault("state", {})[READ_ONLY] = True  # request.state: the routes mask secrets
                return None
            return error_response(403, f"this token may only read: {scope['method']} {scope['path']} needs the "
                                       f"token in ${settings.token_env}")  # fmt: skip
        return error_response(401, "wrong token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def sees_secrets(request: Request) -> bool:
    """Whether this caller may read job env values: a dashboard's read-only token may not (they
    hold tokens and passwords); the full token may (a script that re-submits a job needs them)."""
    return not getattr(request.state, READ_ONLY, False)


def _raw(token: str | None) -> bytes | None:
    return token.encode("utf-8", "surrogateescape") if token else None


def _hostname(host: str) -> str:
    """The name part of a Host header: `127.0.0.1:8765` -> `127.0.0.1`, `[::1]:80` -> `::1`."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _too_large(limit: int) -> str:
    return f"request body over {limit // (1024 * 1024)} MB: split a bulk submit into smaller requests"
