"""`jobrunner serve` once its options are parsed: settle the settings, bind, run uvicorn."""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING, Any

from jobrunner.errors import JobrunnerError, UsageError

if TYPE_CHECKING:
    from jobrunner.cli.context import AppState
    from jobrunner.serve.settings import ServeSettings

GRACEFUL_S = 5.0  # on SIGTERM, how long open streams (events, followed logs) get before they are cut


def serve(app_state: AppState, host: str | None, port: int | None, token_env: str | None,
          read_only_token_env: str | None) -> int:  # fmt: skip
    """Run the API until SIGTERM or Ctrl-C; returns the exit code."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"`jobrunner serve` needs {', '.join(missing)}: pip install 'jobrunner[serve]'")
    from jobrunner.config_checks import check_serve
    from jobrunner.serve.settings import is_loopback, resolve_tokens

    config = app_state.config  # the whole config, checked: a broken one is refused in one line (exit 2)
    table = check_serve(config.sections.get("serve"), str(config.path or "config"))
    host = host or table["host"]
    port = table["port"] if port is None else port
    tokens = resolve_tokens(token_env or table["token_env"], read_only_token_env or table["read_only_token_env"])
    if not (tokens["token"] or tokens["read_only_token"]) and not is_loopback(host):
        raise UsageError(
            f"--host {host}: without a token the API listens on this machine only (127.0.0.1): anyone who "
            f"reached it could run commands as you; set ${tokens['token_env']} to a long random secret "
            "(e.g. `export JOBRUNNER_API_TOKEN=$(openssl rand -hex 32)`) to serve other hosts"
        )
    if not (tokens["token"] or tokens["read_only_token"]):
        tokens["token"], tokens["token_file"] = _generated_token(app_state.db_target)
    settings = _settings(app_state, config, host, tokens)
    listener = _bind(host, port)
    bound = listener.getsockname()[1]
    _announce(settings, host, bound)
    return _run(settings, listener)


TOKEN_FILE = "api.token"


def _generated_token(db_target: str, name: str = TOKEN_FILE) -> tuple[str, str]:
    """No token configured: a random one, written to `api.token` (or `name`: `jobrunner web`'s
    `web.token`) in the database's log directory
    (owner-only, as the trust model keeps it), and required. Loopback is not private: every local
    user can reach 127.0.0.1, and a job is code run as you (the trust model of the README)."""
    import os
    import secrets

    from jobrunner.config import log_dir_for
    from jobrunner.trust import ensure_log_dir

    directory = log_dir_for(db_target)
    ensure_log_dir(directory)
    token = secrets.token_urlsafe(32)
    path = os.path.join(directory, name)
    temporary = f"{path}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)  # a new token each start: an old one stops working
    return token, path


def _settings(app_state: AppState, config: Any, host: str, tokens: dict[str, Any]) -> ServeSettings:
    from jobrunner.api import connect
    from jobrunner.serve.settings import LOOPBACK_NAMES, ServeSettings

    # one Store for the process, cached by jobrunner.api (the same the Python API uses)
    store = connect(app_state.db_target, str(config.path) if config.path else None)
    return ServeSettings(store=store, config=config, allowed_hosts=LOOPBACK_NAMES | {host.strip("[]")}, **tokens)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a taken port is one line, not uvicorn's log."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"--host {host}: {getattr(exc, 'strerror', None) or exc}") from None
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise JobrunnerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listener.set_inheritable(True)
    return listener


def _announce(settings: ServeSettings, host: str, port: int) -> None:
    from jobrunner.secrets import redact_target

    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if settings.token_file:
        access = f"token required: no ${settings.token_env} set, so a new one is in {settings.token_file}, owner-only"
    elif settings.token:
        access = f"token required (${settings.token_env}" + (
            f"; read-only ${settings.read_only_token_env})" if settings.read_only_token else ")")  # fmt: skip
    elif settings.read_only_token:
        access = f"read-only: token ${settings.read_only_token_env} required, no writes"
    else:
        access = ("no token: this machine only, but any local user can reach it; set "
                  f"${settings.token_env} on a shared machine")  # fmt: skip
    sys.stderr.write(f"jobrunner: serving http://{shown}:{port}/api on {redact_target(settings.store.target)} "
                     f"({access}); docs at /docs\n")  # fmt: skip
    sys.stderr.flush()


def _run(settings: ServeSettings, listener: socket.socket) -> int:
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            settings.stopping.set()  # open streams end now: uvicorn waits for every connection
            super().handle_exit(sig, frame)
            # uvicorn raises a caught SIGTERM again once it has stopped (exit -15); a stop that was
            # asked for is a clean exit here, as the daemon's is (systemd reads 0 as "stopped")
            getattr(self, "_captured_signals", []).clear()

    import gc

    from jobrunner.serve.app import create_app

    app = create_app(settings)
    # what start-up built (FastAPI's routes and schemas, pydantic's validators: most of the heap)
    # is set aside where the collector does not walk it: a bulk request's thousands of new objects
    # set off full collections, and each walked all of it (10,000 jobs: 25,000 -> 44,000 jobs/s)
    gc.collect()
    gc.freeze()
    # no access log: a line per request would cost a tenth of the server's CPU and flood the journal
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=GRACEFUL_S,
                            lifespan="off", server_header=False, proxy_headers=False, access_log=False)  # fmt: skip
    server = _Server(config)
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
    return 0 if server.started else 1
