"""The config's notifier and retention tables, checked when the config is loaded (config.py):
every command gets the same verdict on them, not only the daemon that uses them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobrunner.errors import ConfigError

if TYPE_CHECKING:
    from jobrunner.domain.states import Status

NOTIFY_EVENTS = ("dead", "succeeded", "retrying", "cancelled")
NOTIFY_COMMON_KEYS = ("type", "events", "timeout", "retries", "retry_delay", "description", "include_env")
NOTIFY_KIND_KEYS = {
    "webhook": ("url", "headers"),
    "email": ("host", "port", "starttls", "user", "password_env", "from", "to", "subject", "allow_plaintext_auth"),
    "command": ("command",),
}
NOTIFY_DEFAULT_TIMEOUT = {"webhook": 10.0, "email": 30.0, "command": 60.0}
NOTIFY_DEFAULT_RETRIES = {"webhook": 3, "email": 2, "command": 0}
EMAIL_SUBJECT = "jobrunner: job {id} {event}: {name}"
RETENTION_EVERY = 60.0  # seconds between the daemon's retention passes, unless `every` says
RETENTION_EVERY_MIN = 1.0


class RetentionPolicy(dict["Status", float]):
    """{finished status: max age in seconds}, and `every`: seconds between the daemon's passes."""

    def __init__(self, ages: Any = (), every: float = RETENTION_EVERY) -> None:
        super().__init__(ages)
        self.every = every


def parse_retention(value: Any, where: str = "config") -> RetentionPolicy:
    """Validate the `retention` table: {status: max age} and `every` (the cadence); errors name the key."""
    if value is None:
        return RetentionPolicy()
    from jobrunner.domain.durations import parse_duration
    from jobrunner.domain.states import FINISHED, Status

    statuses = tuple(sorted(s.value for s in FINISHED))  # cancelled, dead, succeeded
    if not isinstance(value, dict):
        raise ConfigError(
            f'{where}: retention: must be a table like {{ succeeded = "7d", dead = "30d", cancelled = "7d" }}'
        )
    policy = RetentionPolicy()
    for key, age in value.items():
        if key == "every":
            policy.every = _retention_every(age, where)
            continue
        if key not in statuses:
            raise ConfigError(f"{where}: retention.{key}: {key!r} is not a finished status: "
                              f"use {', '.join(statuses)} (only finished jobs are purged), or every (how often)")  # fmt: skip
        try:
            seconds = parse_duration(age)
        except ValueError as exc:
            raise ConfigError(f"{where}: retention.{key}: {exc}") from None
        if seconds <= 0:
            raise ConfigError(f"{where}: retention.{key}: must be longer than 0s (leave the key out to keep them)")
        policy[Status(key)] = seconds
    return policy


def _retention_every(value: Any, where: str) -> float:
    from jobrunner.domain.durations import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: retention.every: {exc}") from None
    if seconds < RETENTION_EVERY_MIN:
        raise ConfigError(f"{where}: retention.every: must be at least 1s (how often the daemon purges)")
    return seconds


def check_notifiers(tables: Any, where: str = "config") -> list[dict[str, Any]]:
    """Validate the `[notify.NAME]` tables into settings (`kind` and the notifier's fields).

    Raises ConfigError like `jobs.toml: notify.mail.password: ...`.
    """
    if tables is None:
        return []
    if not isinstance(tables, dict):
        raise ConfigError(f"{where}: notify: must be tables like [notify.NAME]")
    return [_check_notifier(name, table, where) for name, table in tables.items()]


def _check_notifier(name: str, table: Any, where: str) -> dict[str, Any]:
    from jobrunner.domain.jobspec import unknown_key_message

    def fail(key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{where}: notify.{name}{'.' + key if key else ''}: {message}")

    if not isinstance(table, dict):
        raise fail(None, f"must be a table [notify.{name}]")
    kind = table.get("type")
    kinds = ", ".join(NOTIFY_KIND_KEYS)
    if kind not in NOTIFY_KIND_KEYS:
        raise fail("type", f"{kind!r} must be one of {kinds}" if kind else f"missing: set type = one of {kinds}")
    if "password" in table:
        raise fail(
            "password",
            "a password is never read from the config file: set password_env = \"NAME\" and give the "
            "daemon that environment variable (e.g. EnvironmentFile= in its systemd unit)",
        )
    allowed = NOTIFY_COMMON_KEYS + NOTIFY_KIND_KEYS[kind]
    for key in table:
        if key not in allowed:
            raise fail(None, unknown_key_message(key, allowed))
    settings = {
        "kind": kind,
        "name": name,
        "events": _notify_events(table.get("events", ["dead"]), fail),
        "timeout": _notify_duration(table.get("timeout", NOTIFY_DEFAULT_TIMEOUT[kind]), "timeout", fail, True),
        "retries": _notify_count(table.get("retries", NOTIFY_DEFAULT_RETRIES[kind]), "retries", fail),
        "retry_delay": _notify_duration(table.get("retry_delay", 1.0), "retry_delay", fail),
        "include_env": _notify_flag(table, "include_env", fail),
    }
    if kind == "webhook":
        url = table.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise fail("url", "give an http:// or https:// URL")
        headers = table.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise fail("headers", "must be a table of strings, like { Authorization = \"Bearer ...\" }")
        return {**settings, "url": url, "headers": dict(headers)}
    if kind == "email":
        return {**settings, **_check_email(table, fail)}
    command = table.get("command")
    if isinstance(command, str) and command.strip():
        return {**settings, "command": ("/bin/sh", "-c", command)}
    if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
        return {**settings, "command": tuple(command)}
    raise fail("command", "give an argv list like [\"notify-send\", \"job failed\"] or a shell string")


def _check_email(table: dict[str, Any], fail: Callable[..., ConfigError]) -> dict[str, Any]:
    host = table.get("host")
    if not isinstance(host, str) or not host:
        raise fail("host", "give the SMTP server's host name")
    starttls = table.get("starttls", True)
    if not isinstance(starttls, bool):
        raise fail("starttls", "must be true or false")
    port = table.get("port", 587 if starttls else 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise fail("port", f"{port!r} is not a port number")
    user = table.get("user")
    if user is not None and (not isinstance(user, str) or not user):
        raise fail("user", "must be a non-empty string")
    password_env = table.get("password_env")
    if password_env is not None and (not isinstance(password_env, str) or not password_env.strip()):
        raise fail("password_env", "must name an environment variable, like \"JOBRUNNER_SMTP_PASSWORD\"")
    if user and not password_env:
        raise fail("password_env", f"user {user!r} needs password_env = \"NAME\" (the password's variable)")
    allow_plaintext_auth = _notify_flag(table, "allow_plaintext_auth", fail)
    if user and not starttls and not allow_plaintext_auth:
        raise fail("starttls", f"user {user!r} would send its password in clear with starttls = false: "
                               "keep starttls = true, or set allow_plaintext_auth = true to accept that")  # fmt: skip
    to = table.get("to")
    recipients = [to] if isinstance(to, str) else to
    if not isinstance(recipients, list) or not recipients or not all(
        isinstance(r, str) and "@" in r for r in recipients
    ):
        raise fail("to", "give an address or a list of addresses")
    if "from" in table:
        sender = table["from"]
    else:
        import socket

        sender = user if user and "@" in user else f"jobrunner@{socket.gethostname() or 'localhost'}"
    if not isinstance(sender, str) or "@" not in sender:
        raise fail("from", "must be an email address")
    subject = table.get("subject", EMAIL_SUBJECT)
    if not isinstance(subject, str):
        raise fail("subject", "must be a string ({id}, {name}, {event}, {status}, {queue} are filled in)")
    return {"host": host, "port": port, "starttls": starttls, "user": user, "password_env": password_env,
            "sender": sender, "to": tuple(recipients), "subject": subject,
            "allow_plaintext_auth": allow_plaintext_auth}  # fmt: skip


def _notify_flag(table: dict[str, Any], key: str, fail: Callable[..., ConfigError]) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise fail(key, "must be true or false")
    return value


def _notify_events(value: Any, fail: Callable[..., ConfigError]) -> frozenset[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise fail("events", f"give a list of events: {', '.join(NOTIFY_EVENTS)}")
    for event in values:
        if event not in NOTIFY_EVENTS:
            raise fail("events", f"{event!r} is not an event: use {', '.join(NOTIFY_EVENTS)}")
    return frozenset(values)


def _notify_duration(value: Any, key: str, fail: Callable[..., ConfigError], positive: bool = False) -> float:
    from jobrunner.domain.durations import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise fail(key, str(exc)) from None
    if positive and seconds <= 0:
        raise fail(key, "must be longer than 0s")
    return seconds


def _notify_count(value: Any, key: str, fail: Callable[..., ConfigError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise fail(key, f"{value!r} must be a whole number from 0 to 100")
    return value


SERVE_KEYS = ("host", "port", "token_env", "read_only_token_env")
SERVE_DEFAULTS = {"host": "127.0.0.1", "port": 8765, "token_env": None, "read_only_token_env": None}


def check_serve(table: Any, where: str = "config") -> dict[str, Any]:
    """Validate the `[serve]` table (`jobrunner serve`'s defaults) into its settings."""
    from jobrunner.domain.jobspec import unknown_key_message

    if table is None:
        return dict(SERVE_DEFAULTS)
    for key in table:
        if key not in SERVE_KEYS:
            raise ConfigError(f"{where}: serve: {unknown_key_message(key, SERVE_KEYS)}")
    settings = {**SERVE_DEFAULTS, **table}
    host, port = settings["host"], settings["port"]
    if not isinstance(host, str) or not host.strip() or any(ord(c) < 33 for c in host):
        raise ConfigError(f"{where}: serve.host: {host!r} is not a host name or address")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ConfigError(f"{where}: serve.port: {port!r} is not a port number (0 to 65535)")
    for key in ("token_env", "read_only_token_env"):
        name = settings[key]
        if name is not None and (not isinstance(name, str) or not name.strip() or "=" in name or "\0" in name):
            raise ConfigError(f"{where}: serve.{key}: must name an environment variable, like \"JOBRUNNER_API_TOKEN\""
                              " (the token itself never sits in the config file)")  # fmt: skip
    return settings
