"""Tell a human when jobs end: webhooks, email and local commands from `[notify.NAME]` tables.

Delivery never blocks the daemon's loop: `Dispatcher.dispatch` puts the event on a bounded
queue and returns; one background thread delivers, with each notifier's own timeout and
retries. A notifier that fails is logged and dropped for that event, never raised: a broken
mail server must not change what happens to a job.

    [notify.ops]
    type = "webhook"                      # webhook, email or command
    url = "https://hooks.example.com/jobrunner"
    events = ["dead", "retrying"]         # default ["dead"]; also succeeded, cancelled

Secrets stay home: payloads carry the job's env keys with every value `***` unless the table
says `include_env = true`; a webhook follows a redirect only to the same origin (scheme, host
and port), so its headers never reach another server; SMTP logs in only over TLS unless
`allow_plaintext_auth = true`; and the variables named by `password_env` are taken out of the
daemon's environment at start (keep_passwords), so no job or command notifier inherits them.
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobrunner.config_checks import (
    EMAIL_SUBJECT,
    NOTIFY_DEFAULT_RETRIES,
    NOTIFY_DEFAULT_TIMEOUT,
    NOTIFY_EVENTS,
    NOTIFY_KIND_KEYS,
    check_notifiers,
)
from jobrunner.secrets import masked_env

if TYPE_CHECKING:
    from email.message import EmailMessage

log = logging.getLogger("jobrunner.notify")

EVENTS = NOTIFY_EVENTS  # the names below are config.py's, where every command checks them
DEFAULT_EVENTS = ("dead",)
KIND_KEYS = NOTIFY_KIND_KEYS
DEFAULT_TIMEOUT = NOTIFY_DEFAULT_TIMEOUT
DEFAULT_RETRIES = NOTIFY_DEFAULT_RETRIES
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
    include_env: bool = False  # env values in the payload; by default keys only, values "***"
    kind: str = field(default="", init=False)

    def deliver(self, event: str, job: Mapping[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def payload(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        """The job as this notifier may send it: env values masked unless include_env."""
        if self.include_env or not job.get("env"):
            return job
        return {**job, "env": masked_env(job["env"])}


# JSON escapes C0 controls itself, not DEL and the C1 controls: escaped, they mean the same
_JSON_CONTROLS = {c: f"\\u{c:04x}" for c in range(127, 160)}
SUBJECT_FIELD_WIDTH = 200  # a field in a mail's subject, in characters (an error may be long)


def job_json(job: Mapping[str, Any], indent: int | None = None) -> bytes:
    """The job as `show --json` prints it (without events): no raw control character, even
    for whoever reads it on a terminal."""
    text = json.dumps(job, default=str, ensure_ascii=False, indent=indent)
    return text.translate(_JSON_CONTROLS).encode("utf-8")


def _readable(value: Any, lines: bool = False, width: int | None = None) -> str:
    """A job's field in a mail's text for people, as present.visible shows it everywhere."""
    from jobrunner.present import visible

    return visible("" if value is None else str(value), lines=lines, width=width)


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

        request = urllib.request.Request(self.url, data=job_json(self.payload(job)), headers=headers, method="POST")
        try:
            with _opener().open(request, timeout=self.timeout) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            # 4xx means the request itself is wrong: sending it again will not help (but 408/429 may)
            retry = exc.code >= 500 or exc.code in (408, 429)
            raise DeliveryError(f"HTTP {exc.code} {exc.reason} from {self.url}", retry=retry) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"cannot POST to {self.url}: {reason}") from None


def _origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())


def _opener() -> Any:
    """urllib's opener, but a redirect to another origin is refused: urllib would send it our
    headers (an Authorization among them). Same-origin redirects are followed as urllib does."""
    import urllib.request

    class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
            from urllib.parse import urljoin

            target = urljoin(req.full_url, newurl)
            if _origin(target) != _origin(req.full_url):
                raise DeliveryError(f"HTTP {code} from {req.full_url}: redirect to another origin ({_origin_text(target)}) "
                                    "not followed, it would get our headers: set url to the final address", retry=False)  # fmt: skip
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(SameOriginRedirects)


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


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
    subject: str = EMAIL_SUBJECT
    allow_plaintext_auth: bool = False  # log in without TLS: the password crosses the network in clear
    kind: str = field(default="email", init=False)

    def message(self, event: str, job: Mapping[str, Any]) -> EmailMessage:
        from email.message import EmailMessage

        job = self.payload(job)
        msg = EmailMessage()
        # job-provided text shows its control characters: a name or error cannot break the header
        fields = {**{k: _readable(v, width=SUBJECT_FIELD_WIDTH) if isinstance(v, str) else "" if v is None else v
                     for k, v in job.items()}, "event": event}  # fmt: skip
        try:
            msg["Subject"] = self.subject.format_map(_Default(fields))
        except (ValueError, IndexError):
            msg["Subject"] = f"jobrunner: job {job.get('id')} {event}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        lines = [f"Job {job.get('id')} ({_readable(job.get('name'))}) is {job.get('status')}."]
        for key in ("queue", "attempts", "error", "exit_code", "finished_at", "log_path"):
            if job.get(key) not in (None, ""):
                lines.append(f"{key}: {_readable(job[key], lines=key == 'error')}")
        body = "\n".join(lines) + "\n\n" + job_json(job, indent=2).decode("utf-8") + "\n"
        msg.set_content(body)
        return msg

    def deliver(self, event: str, job: Mapping[str, Any]) -> None:
        import smtplib
        import ssl

        if self.user and not self.starttls and not self.allow_plaintext_auth:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: login as {self.user} without TLS refused "
                                "(starttls = false): set allow_plaintext_auth = true to allow it", retry=False)  # fmt: skip
        password = None
        if self.password_env:
            password = _passwords.get(self.password_env, os.environ.get(self.password_env))
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
            _, stderr = process.communicate(job_json(self.payload(job)), timeout=self.timeout)
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

    Raises ConfigError like `jobs.toml: notify.mail.password: ...`; the checking itself is
    config_checks.check_notifiers, which every command runs when it loads the config.
    """
    return build_notifiers(check_notifiers(tables, where))


def notifiers_from_config(config: Any) -> list[Notifier]:
    """The notifiers of a loaded Config, from the settings its loading already checked."""
    keep_passwords(config.notifiers)  # a SIGHUP may name a new password_env
    return build_notifiers(config.notifiers)


#: passwords taken out of the daemon's environment by keep_passwords, by variable name
_passwords: dict[str, str] = {}


def keep_passwords(settings: Iterable[Mapping[str, Any]]) -> None:
    """Move the variables named by `password_env` from os.environ into this module: the email
    notifier still reads them, and the workers (started after this) and every job and command
    notifier they start no longer inherit them."""
    for name in {s["password_env"] for s in settings if s.get("password_env")}:
        if name in os.environ:
            _passwords[name] = os.environ.pop(name)


def build_notifiers(settings: Iterable[Mapping[str, Any]]) -> list[Notifier]:
    """Notifiers from checked settings (config_checks.check_notifiers): `kind` picks the class."""
    kinds: dict[str, type[Notifier]] = {"webhook": WebhookNotifier, "email": EmailNotifier,
                                        "command": CommandNotifier}  # fmt: skip
    return [kinds[s["kind"]](**{k: v for k, v in s.items() if k != "kind"}) for s in settings]


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
