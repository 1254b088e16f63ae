"""`jobrunner web`: the TUI in a browser, served by textual-serve (no second UI to maintain).

Each browser tab that connects gets its own `jobrunner tui` process, whose screen textual-serve
streams over a WebSocket to xterm.js in the page. The server listens on 127.0.0.1 only; another
machine reaches it through an SSH tunnel. Loopback is not private (every local user can reach it,
and the TUI can edit and retry jobs, which run as you), so the door is serve's:

- a token, new at each start, written owner-only to `web.token` in the database's log directory:
  the page needs `?token=...` once, then a cookie (HttpOnly, SameSite=Strict) carries it to the
  WebSocket and the page's reloads; the static files (textual's JavaScript, fonts) need none;
- a request whose Host is not a loopback name is refused (a DNS-rebinding page), as is one with
  another site's Origin (a cross-site WebSocket would type into the TUI).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import shlex
import signal
import socket
import sys
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from textual_serve.server import Server

from jobrunner.serve.settings import LOOPBACK_NAMES

TOKEN_FILE = "web.token"
COOKIE = "jobrunner_web"
STOP_S = 5.0  # on SIGTERM, how long the open tabs' TUIs get to quit


class WebTUI(Server):
    """textual-serve's server, on a socket bound here, behind the token and loopback checks."""

    def __init__(self, listener: socket.socket, token: str, title: str, token_file: str) -> None:
        port = listener.getsockname()[1]
        command = shlex.join([sys.executable, "-m", "jobrunner", "tui"])  # --db and --config: in the environment
        super().__init__(command, host="127.0.0.1", port=port, title=title)
        self.listener = listener
        self.token = token.encode()
        self.token_file = token_file
        self.sessions: set[asyncio.Task[Any]] = set()

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._guard)
        return app

    def _refusal(self, request: web.Request) -> web.Response | None:
        host = request.headers.get("Host", "")
        if _hostname(host) not in LOOPBACK_NAMES:
            return web.Response(status=403, text=f"Host {host!r} refused: open it as 127.0.0.1 or localhost "
                                                 "(from another machine, through an SSH tunnel)\n")  # fmt: skip
        origin = request.headers.get("Origin")
        if origin is not None and origin.partition("://")[2].rstrip("/") != host:
            return web.Response(status=403, text=f"cross-origin request from {origin!r} refused\n")
        return None

    def _allowed(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if request.path.startswith("/static/"):  # textual's JavaScript, CSS and fonts: public files
            return await handler(request)
        if request.path == "/" and self._allowed(request.query.get("token")):
            response = await handler(request)
            response.set_cookie(COOKIE, self.token.decode(), httponly=True, samesite="Strict", path="/")
            return response
        if self._allowed(request.cookies.get(COOKIE)):
            return await handler(request)
        return web.Response(status=401, text=f"jobrunner web: a token is needed: open /?token=TOKEN, with the "
                                             f"token in {self.token_file} (owner-only)\n")  # fmt: skip

    async def handle_index(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        """textual-serve's page, its URLs on the Host the browser used (a tunnel's port, say)."""
        base = f"http://{request.host}"
        static = base + str(request.app.router["static"].url_for(filename="/")).rstrip("/") + "/"
        context = {
            "font_size": _to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": "ws://" + request.host + str(request.app.router["websocket"].url_for()),
            "config": {"static": {"url": static}},
            "application": {"name": self.title},
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """textual-serve's session (a TUI process for this tab), known here so a stop can end it."""
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        try:
            return await super().handle_websocket(request)
        finally:
            self.sessions.discard(task)

    async def on_startup(self, app: web.Application) -> None:
        """Nothing printed: `jobrunner web` said where it listens before it started."""

    async def on_shutdown(self, app: web.Application) -> None:
        """Each open tab's session is cancelled: its TUI is told to quit and awaited, its socket
        closed (aiohttp would otherwise wait out its shutdown timeout for the open WebSockets)."""
        sessions = list(self.sessions)
        for task in sessions:
            task.cancel()
        if sessions:
            await asyncio.wait(sessions, timeout=STOP_S)

    def initialize_logging(self) -> None:
        logging.basicConfig(level=logging.DEBUG if self.debug else logging.WARNING,
                            format="jobrunner web: %(message)s")  # fmt: skip

    def serve(self, debug: bool = False) -> None:
        """Until SIGTERM or Ctrl-C; each open tab's TUI is told to quit."""
        self.debug = debug
        self.initialize_logging()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_exit)
        web.run_app(self._make_app(), sock=self.listener, handle_signals=False, loop=loop, print=None,
                    shutdown_timeout=STOP_S)  # fmt: skip


def _to_int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _hostname(host: str) -> str:
    """The name part of a Host header: `127.0.0.1:8766` -> `127.0.0.1`, `[::1]:80` -> `::1`."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def run(db_target: str, config_path: str | None, port: int) -> int:
    """Bind 127.0.0.1:`port`, write the token, say where, and serve until stopped."""
    from jobrunner.secrets import redact_target
    from jobrunner.serve.run import _bind, _generated_token

    if "://" not in db_target:
        db_target = os.path.abspath(db_target)
    listener = _bind("127.0.0.1", port)
    bound = listener.getsockname()[1]
    token, token_file = _generated_token(db_target, TOKEN_FILE)
    # the TUI processes open the same database and config: through the environment, which other
    # users cannot read (a password in a URL never reaches a command line)
    os.environ["JOBRUNNER_DB"] = db_target
    if config_path:
        os.environ["JOBRUNNER_CONFIG"] = config_path
    url = f"http://127.0.0.1:{bound}/"
    tunnel = f"this machine only; from another: ssh -L {bound}:127.0.0.1:{bound} THIS-HOST"
    if sys.stderr.isatty():  # the person who started it, at their own terminal: the whole address
        sys.stderr.write(f"jobrunner: the TUI of {redact_target(db_target)} at {url}?token={token} ({tunnel}); "
                         "Ctrl-C stops it\n")  # fmt: skip
    else:  # a log (the journal, say) that others may read: where the token is, not the token
        sys.stderr.write(f"jobrunner: the TUI of {redact_target(db_target)} at {url} ({tunnel}): open "
                         f"{url}?token=TOKEN with the token in {token_file} (owner-only)\n")  # fmt: skip
    sys.stderr.flush()
    WebTUI(listener, token, f"jobrunner: {redact_target(db_target)}", token_file).serve()
    return 0
