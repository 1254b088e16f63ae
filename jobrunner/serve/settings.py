"""What one server works with: its store and config, its tokens, and its limits."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobrunner.errors import UsageError

if TYPE_CHECKING:
    from jobrunner.config import Config
    from jobrunner.store.db import Store

TOKEN_ENV = "JOBRUNNER_API_TOKEN"  # the token that may do everything
READ_ONLY_TOKEN_ENV = "JOBRUNNER_API_READ_TOKEN"  # the token that may only read
MAX_BODY = 16 * 1024 * 1024  # bytes of a request body: a bulk submit of ~100,000 small jobs
#: Host names a browser may use for a server without a token (anything else may be DNS rebinding).
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass
class ServeSettings:
    """One server: `create_app(settings)` serves `store` with `config`'s tasks and schedules."""

    store: Store
    config: Config
    token: str | None = None  # may read and write
    read_only_token: str | None = None  # may only read
    token_env: str = TOKEN_ENV  # named in error messages: where the token comes from
    token_file: str | None = None  # none configured: the generated token is in this owner-only file
    read_only_token_env: str = READ_ONLY_TOKEN_ENV
    max_body: int = MAX_BODY
    #: Without a token, a request's Host must be one of these (a DNS-rebinding page cannot reach us).
    allowed_hosts: frozenset[str] = field(default_factory=lambda: LOOPBACK_NAMES)
    stream_limit_s: float | None = None  # end a stream (events, a followed log) after this long
    poll_s: float = 0.025  # how often a stream looks for news: the events' delay, at most
    keepalive_s: float = 15.0  # a quiet stream sends a comment this often (proxies close idle ones)
    #: Set when the server stops: open streams end at their next poll instead of holding it up.
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def tokens_required(self) -> bool:
        return bool(self.token or self.read_only_token)


def resolve_tokens(token_env: str | None, read_only_token_env: str | None,
                   environ: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The tokens from the environment variables named (None: the default names). A variable
    named on purpose that is unset or empty is refused: the server would run without the token
    its owner meant it to require."""
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for key, chosen, default in (("token", token_env, TOKEN_ENV),
                                 ("read_only_token", read_only_token_env, READ_ONLY_TOKEN_ENV)):  # fmt: skip
        name = chosen or default
        value = environ.get(name, "")
        if chosen and not value.strip():
            raise UsageError(f"the {'read-only ' if key != 'token' else ''}token's variable {name} is not set "
                             "(or empty): export it, or leave the setting out")  # fmt: skip
        if value and value != value.strip():
            raise UsageError(f"{name}: the token has spaces around it: remove them")
        found[key] = value or None
        found[f"{key}_env"] = name
    if found["token"] and found["token"] == found["read_only_token"]:
        raise UsageError(f"{found['token_env']} and {found['read_only_token_env']} hold the same token: "
                         "give the read-only token a value of its own")  # fmt: skip
    return found


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is this machine's loopback (127.0.0.0/8, ::1)."""
    text = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(text, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)
