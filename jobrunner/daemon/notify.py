"""Tell a human when jobs end: webhooks, email and local commands from `[notify.NAME]` tables.

Delivery never blocks the daemon's loop: `Dispatcher.dispatch` puts the event on a bounded
queue and returns; one background thread delivers, with each notifier's own timeout and
retries. A notifier that fails is logged and dropped for that event, never raised: a broken
mail server must not change what happens to a job.

    [notify.ops]
    type = "webhook"                      # webhook, email or command
    url = "https://hooks.example.com/jobrunner"
    events = ["dead", "retrying"]         # default ["dead"]; also succeeded, cancelled
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobrunner.domain.durations import parse_duration
from jobrunner.domain.jobspec import unknown_key_message
from jobrunner.errors import ConfigError

if TYPE_CHECKING:
    from email.message import EmailMessage

log = logging.getLogger("jobrunner.notify")

EVENTS = ("dead", "succeeded", "retrying", "cancelled")
DEFAULT_EVENTS = ("dead",)
COMMON_KEYS = ("type", "events", "timeout", "retries", "retry_delay", "description")
KIND_KEYS = {
    "webhook": ("url", "headers"),
    "email": ("host", "port", "starttls", "user", "password_env", "from", "to", "subject"),
    "command": ("command",),
}
DEFAULT_TIMEOUT = {"webhook": 10.0, "email": 30.0, "command": 60.0}
DEFAULT_RETRIES = {"webhook": 3, "email": 2, "command": 0}
QUEUE_SIZE = 1000


class DeliveryError(Exception):
    """One attempt failed; `retry` says whether another attempt may help."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass
class Notifier:
    """A `[notify.NAME]` table, validated; `deliver` makes one attempt and raises DeliveryError."""

    name: str
    events: frozenset[str] = frozenset(DEFAULT_EVENTS)
    timeout: float = 10.0
    retries: int = 3
    retry_delay: float = 1.0  # doubles after each failed attempt
    kind: str = field(default="", init=False)

    def deliver(self, event: str, job: Mapping[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def job_json(job: Mapping[str, Any]) -> bytes:
    """The job as `show --json` prints it (without events)."""
    return json.dumps(job, default=str, ensure_ascii=False).encode("utf-8")


@dataclass
class WebhookNotifier(Notifier):
    """POSTs the job's JSON; the event is also in the X-Jobrunner-Event header."""

    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = field(default="webhook", init=False)

    def deliver(self, event: str, job: Mapping[str, Any]) -> None:
        from jobrunner import __version__

        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"jobrunner/{__version__}",
            "X-Jobrunner-Event": event,
            **self.headers,
        }
        import urllib.error  # here, not at the top: most daemons never notify (start-up time)
        import urllib.request

        request = urllib.request.Request(self.url, data=job_json(job), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            # 4xx means the request itself is wrong: sending it again will not help (but 408/429 may)
            retry = exc.code >= 500 or exc.code in (408, 429)
            raise DeliveryError(f"HTTP {exc.code} {exc.reason} from {self.url}", retry=retry) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"cannot POST to {self.url}: {reason}") from None


@dataclass
class EmailNotifier(Notifier):
    """A plain-text mail with the job's summary and JSON, over SMTP (STARTTLS by default)."""

    host: str = "localhost"
    port: int = 587
    starttls: bool = True
    user: str | None = None
    password_env: str | None = None
    sender: str = ""
    to: tuple[str, ...] = ()
    subject: str = "jobrunner: job {id} {event}: {name}"
    kind: str = field(default="email", init=False)

    def message(self, event: str, job: Mapping[str, Any]) -> EmailMessage:
        from email.message import EmailMessage

        msg = EmailMessage()
        fields = {**{k: "" if v is None else v for k, v in job.items()}, "event": event}
        try:
            msg["Subject"] = self.subject.format_map(_Default(fields))
        except (ValueError, IndexError):
            msg["Subject"] = f"jobrunner: job {job.get('id')} {event}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        lines = [f"Job {job.get('id')} ({job.get('name')}) is {job.get('status')}."]
        for key in ("queue", "attempts", "error", "exit_code", "finished_at", "log_path"):
            if job.get(key) not in (None, ""):
                lines.append(f"{key}: {job[key]}")
        body = "\n".join(lines) + "\n\n" + json.dumps(job, default=str, indent=2, ensure_ascii=False) + "\n"
        msg.set_content(body)
        return msg

    def deliver(self, event: str, job: Mapping[str, Any]) -> None:
        import smtplib
        import ssl

        password = None
        if self.password_env:
            password = os.environ.get(self.password_env)
            if password is None:
                raise DeliveryError(
                    f"environment variable {self.password_env} (password_env) is not set in the daemon's "
                    "environment", retry=False,
                )  # fmt: skip
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, password or "")
                smtp.send_message(self.message(event, job))
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: login refused ({exc.smtp_code})", retry=False) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {exc}", retry=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {exc}") from None


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


#: pids of notifier commands running now: children of the daemon that are not a dead worker's
#: leftovers (see Service._end_job_processes).
running_commands: set[int] = set()


@dataclass
class CommandNotifier(Notifier):
    """Runs a local command with the job's JSON on stdin and JOBRUNNER_EVENT/JOBRUNNER_JOB_ID set."""

    command: tuple[str, ...] = ()
    kind: str = field(default="command", init=False)

    def deliver(self, event: str, job: Mapping[str, Any]) -> None:
        env = {**os.environ, "JOBRUNNER_EVENT": event, "JOBRUNNER_JOB_ID": str(job.get("id", ""))}
        try:
            process = subprocess.Popen(
                list(self.command), env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise DeliveryError(f"cannot run {self.command[0]}: {exc.strerror}", retry=False) from None
        running_commands.add(process.pid)  # the daemon's own child, not a job's leftover
        try:
            _, stderr = process.communicate(job_json(job), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise DeliveryError(f"command {self.command[0]} timed out after {self.timeout:g}s") from None
        finally:
            running_commands.discard(process.pid)
        if process.returncode != 0:
            tail = stderr.decode(errors="replace").strip().splitlines()[-1:] if stderr else []
            detail = f": {tail[0]}" if tail else ""
            raise DeliveryError(f"command {self.command[0]} exited with {process.returncode}{detail}")


# ---------------------------------------------------------------------------- config
def parse_notifiers(tables: Any, where: str = "config") -> list[Notifier]:
    """Validate Config.sections["notify"] (the raw `[notify.NAME]` tables); errors name the key.

    Raises ConfigError like `jobs.toml: notify.mail.password: ...`.
    """
    if tables is None:
        return []
    if not isinstance(tables, dict):
        raise ConfigError(f"{where}: notify: must be tables like [notify.NAME]")
    return [_parse_one(name, table, where) for name, table in tables.items()]


def notifiers_from_config(config: Any) -> list[Notifier]:
    """The notifiers of a loaded Config (its `path` names the file in errors)."""
    return parse_notifiers(config.sections.get("notify"), str(config.path) if config.path else "config")


def _parse_one(name: str, table: Any, where: str) -> Notifier:
    def fail(key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{where}: notify.{name}{'.' + key if key else ''}: {message}")

    if not isinstance(table, dict):
        raise fail(None, f"must be a table [notify.{name}]")
    kind = table.get("type")
    if kind not in KIND_KEYS:
        raise fail("type", f"{kind!r} must be one of {', '.join(KIND_KEYS)}" if kind else
                   f"missing: set type = one of {', '.join(KIND_KEYS)}")  # fmt: skip
    if "password" in table:
        raise fail(
            "password",
            "a password is never read from the config file: set password_env = \"NAME\" and give the "
            "daemon that environment variable (e.g. EnvironmentFile= in its systemd unit)",
        )
    allowed = COMMON_KEYS + KIND_KEYS[kind]
    for key in table:
        if key not in allowed:
            raise fail(None, unknown_key_message(key, allowed))
    common = {
        "name": name,
        "events": _events(table.get("events", list(DEFAULT_EVENTS)), fail),
        "timeout": _duration(table.get("timeout", DEFAULT_TIMEOUT[kind]), "timeout", fail, positive=True),
        "retries": _count(table.get("retries", DEFAULT_RETRIES[kind]), "retries", fail),
        "retry_delay": _duration(table.get("retry_delay", 1.0), "retry_delay", fail),
    }
    if kind == "webhook":
        url = table.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise fail("url", "give an http:// or https:// URL")
        headers = table.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise fail("headers", "must be a table of strings, like { Authorization = \"Bearer ...\" }")
        return WebhookNotifier(**common, url=url, headers=dict(headers))
    if kind == "email":
        return _parse_email(table, common, fail)
    command = table.get("command")
    if isinstance(command, str) and command.strip():
        argv: tuple[str, ...] = ("/bin/sh", "-c", command)
    elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
        argv = tuple(command)
    else:
        raise fail("command", "give an argv list like [\"notify-send\", \"job failed\"] or a shell string")
    return CommandNotifier(**common, command=argv)


def _parse_email(table: dict[str, Any], common: dict[str, Any], fail: Callable[..., ConfigError]) -> Notifier:
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
    to = table.get("to")
    recipients = [to] if isinstance(to, str) else to
    if not isinstance(recipients, list) or not recipients or not all(
        isinstance(r, str) and "@" in r for r in recipients
    ):
        raise fail("to", "give an address or a list of addresses")
    sender = table.get("from", user if user and "@" in user else f"jobrunner@{_hostname()}")
    if not isinstance(sender, str) or "@" not in sender:
        raise fail("from", "must be an email address")
    subject = table.get("subject", EmailNotifier.subject)
    if not isinstance(subject, str):
        raise fail("subject", "must be a string ({id}, {name}, {event}, {status}, {queue} are filled in)")
    return EmailNotifier(
        **common, host=host, port=port, starttls=starttls, user=user, password_env=password_env,
        sender=sender, to=tuple(recipients), subject=subject,
    )  # fmt: skip


def _hostname() -> str:
    import socket

    return socket.gethostname() or "localhost"


def _events(value: Any, fail: Callable[..., ConfigError]) -> frozenset[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise fail("events", f"give a list of events: {', '.join(EVENTS)}")
    for event in values:
        if event not in EVENTS:
            raise fail("events", f"{event!r} is not an event: use {', '.join(EVENTS)}")
    return frozenset(values)


def _duration(value: Any, key: str, fail: Callable[..., ConfigError], positive: bool = False) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise fail(key, str(exc)) from None
    if positive and seconds <= 0:
        raise fail(key, "must be longer than 0s")
    return seconds


def _count(value: Any, key: str, fail: Callable[..., ConfigError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise fail(key, f"{value!r} must be a whole number from 0 to 100")
    return value


# ---------------------------------------------------------------------------- delivery
_STOP = object()


class Dispatcher:
    """Delivers notifications from one background thread; `dispatch` never blocks.

    The queue is bounded: when a notifier is slow and QUEUE_SIZE events wait, new ones are
    dropped with a warning rather than growing memory or stalling the daemon.
    """

    def __init__(self, notifiers: Sequence[Notifier] = (), maxsize: int = QUEUE_SIZE) -> None:
        self.notifiers: tuple[Notifier, ...] = tuple(notifiers)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self.abort = threading.Event()
        self.dropped = 0
        self.thread: threading.Thread | None = None

    def wants(self, event: str) -> bool:
        """Whether any notifier listens for `event`: the daemon loads the job only then."""
        return any(event in n.events for n in self.notifiers)

    def replace(self, notifiers: Iterable[Notifier]) -> None:
        """New notifiers (SIGHUP); events already queued go to the new set."""
        self.notifiers = tuple(notifiers)

    def start(self) -> Dispatcher:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="jobrunner-notify", daemon=True)
            self.thread.start()
        return self

    def dispatch(self, event: str, job: Mapping[str, Any]) -> bool:
        """Queue `event` for `job` (a dict as `show --json` prints it); returns at once.

        False when nobody listens for the event or the queue is full (then a warning is logged).
        """
        if not self.wants(event):
            return False
        if self.thread is None:
            self.start()
        try:
            self.queue.put_nowait((event, dict(job)))
        except queue.Full:
            self.dropped += 1
            log.warning("notification of job %s %s dropped: %d are waiting already",
                        job.get("id"), event, self.queue.qsize())  # fmt: skip
            return False
        return True

    def close(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued for up to `timeout` seconds, then give up; True if all went."""
        if self.thread is None:
            return True
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self.queue.put(_STOP, timeout=timeout)
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            self.abort.set()  # cut retry waits short; the thread is a daemon thread
            left = self.queue.qsize()
            log.warning("stopping with %d notification(s) undelivered", left)
            return False
        self.thread = None
        return True

    def _run(self) -> None:
        while not self.abort.is_set():
            item = self.queue.get()
            if item is _STOP:
                return
            event, job = item
            for notifier in self.notifiers:
                if event in notifier.events and not self.abort.is_set():
                    self.send(notifier, event, job)

    def send(self, notifier: Notifier, event: str, job: Mapping[str, Any]) -> bool:
        """Deliver with the notifier's retries; logs the outcome, never raises."""
        delay = notifier.retry_delay
        for attempt in range(notifier.retries + 1):
            try:
                notifier.deliver(event, job)
            except DeliveryError as exc:
                last = attempt == notifier.retries or not exc.retry
                log.log(
                    logging.ERROR if last else logging.WARNING,
                    "notify %s (%s): job %s %s: %s%s", notifier.name, notifier.kind, job.get("id"), event,
                    exc, "" if last else f"; retrying in {delay:g}s",
                )  # fmt: skip
                if last or self.abort.wait(delay):
                    return False
                delay *= 2
            except Exception:  # a bug in a notifier must not kill the thread
                log.exception("notify %s (%s): job %s %s failed", notifier.name, notifier.kind, job.get("id"), event)
                return False
            else:
                log.info("notify %s (%s): job %s %s sent", notifier.name, notifier.kind, job.get("id"), event)
                return True
        return False
