"""Notifications: a real HTTP server, a real SMTP server and a real command receive the job JSON."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jobrunner.config import parse_config
from jobrunner.daemon.notify import (
    CommandNotifier,
    Dispatcher,
    EmailNotifier,
    WebhookNotifier,
    notifiers_from_config,
    parse_notifiers,
)
from jobrunner.errors import ConfigError
from tests.conftest import wait_until

JOB = {"id": 42, "name": "nightly-report", "status": "dead", "queue": "reports", "attempts": 3,
       "error": "ValueError: bad month", "log_path": "/tmp/jobs.logs/42.log"}  # fmt: skip


class Hook:
    """A local HTTP server on 127.0.0.1 that records POSTs; the first `fail` answers are 500s."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], Any]] = []
        self.fail = 0
        self.gate: threading.Event | None = None  # when set, requests wait for it
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.gate is not None:
                    hook.gate.wait(10)
                if hook.fail > 0:
                    hook.fail -= 1
                    self.send_response(500)
                else:
                    hook.received.append((dict(self.headers), json.loads(body)))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    made = Dispatcher()
    yield made
    made.close(timeout=2)


# ---------------------------------------------------------------- webhook
def test_webhook_receives_the_job_json(hook, dispatcher):
    dispatcher.replace([WebhookNotifier("ops", url=hook.url, headers={"Authorization": "Bearer t"})])
    assert dispatcher.dispatch("dead", JOB) is True
    wait_until(lambda: hook.received, timeout=10)
    headers, body = hook.received[0]
    assert body == JOB
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Jobrunner-Event"] == "dead"
    assert headers["Authorization"] == "Bearer t"


def test_webhook_retries_on_server_errors(hook, dispatcher, caplog):
    hook.fail = 2
    dispatcher.replace([WebhookNotifier("ops", url=hook.url, retries=3, retry_delay=0.01)])
    with caplog.at_level(logging.INFO, logger="jobrunner.notify"):
        dispatcher.dispatch("dead", JOB)
        wait_until(lambda: hook.received, timeout=10)
        wait_until(lambda: "sent" in caplog.text, timeout=5)
    assert caplog.text.count("HTTP 500") == 2


def test_only_chosen_events_are_sent(hook, dispatcher):
    dispatcher.replace([WebhookNotifier("ops", url=hook.url)])  # default: dead only
    assert dispatcher.dispatch("succeeded", {**JOB, "status": "succeeded"}) is False
    assert not dispatcher.wants("retrying")
    dispatcher.dispatch("dead", JOB)
    wait_until(lambda: hook.received, timeout=10)
    assert [body["status"] for _, body in hook.received] == ["dead"]


def test_dispatch_returns_at_once_while_a_webhook_is_slow(hook, dispatcher):
    hook.gate = threading.Event()
    dispatcher.replace([WebhookNotifier("ops", url=hook.url, events=frozenset({"dead", "succeeded"}))])
    started = time.monotonic()
    for i in range(20):
        assert dispatcher.dispatch("succeeded", {**JOB, "id": i}) is True
    assert time.monotonic() - started < 0.5  # while the first POST hangs on the server
    assert hook.received == []
    hook.gate.set()
    wait_until(lambda: len(hook.received) == 20, timeout=10)
    assert [body["id"] for _, body in hook.received] == list(range(20))


def test_a_full_queue_drops_with_a_warning_and_never_blocks(caplog):
    release = threading.Event()

    class Stuck(WebhookNotifier):
        def deliver(self, event: str, job: Any) -> None:
            release.wait(10)

    dispatcher = Dispatcher([Stuck("stuck", url="http://127.0.0.1:9/")], maxsize=2)
    try:
        with caplog.at_level(logging.WARNING, logger="jobrunner.notify"):
            results = [dispatcher.dispatch("dead", {**JOB, "id": i}) for i in range(10)]
        assert results[:2] == [True, True] and results.count(False) >= 6
        assert dispatcher.dropped == results.count(False)
        assert "dropped" in caplog.text
    finally:
        release.set()
        dispatcher.close(timeout=5)


def test_an_unreachable_webhook_is_logged_not_raised(dispatcher, caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dispatcher.replace([WebhookNotifier("ops", url=f"http://127.0.0.1:{port}/", retries=1, retry_delay=0.01)])
    with caplog.at_level(logging.WARNING, logger="jobrunner.notify"):
        dispatcher.dispatch("dead", JOB)
        wait_until(lambda: any(r.levelno == logging.ERROR for r in caplog.records), timeout=10)
    assert "cannot POST" in caplog.text
    assert dispatcher.thread is not None and dispatcher.thread.is_alive()


def test_a_buggy_notifier_does_not_stop_the_others(hook, dispatcher, caplog):
    class Broken(WebhookNotifier):
        def deliver(self, event: str, job: Any) -> None:
            raise RuntimeError("bug")

    dispatcher.replace([Broken("broken", url=hook.url), WebhookNotifier("ops", url=hook.url)])
    with caplog.at_level(logging.ERROR, logger="jobrunner.notify"):
        dispatcher.dispatch("dead", JOB)
        wait_until(lambda: hook.received, timeout=10)
    assert "notify broken (webhook): job 42 dead failed" in caplog.text


# ---------------------------------------------------------------- command
def test_command_gets_the_job_json_on_stdin(tmp_path, dispatcher):
    out = tmp_path / "out.json"
    script = f"import os, sys; open({str(out)!r}, 'w').write(os.environ['JOBRUNNER_EVENT'] + '\\n' + sys.stdin.read())"
    dispatcher.replace([CommandNotifier("local", command=(sys.executable, "-c", script))])
    dispatcher.dispatch("dead", JOB)
    wait_until(lambda: out.exists() and out.read_text().count("\n") >= 1 and out.read_text().endswith("}"),
               timeout=10)  # fmt: skip
    event, body = out.read_text().split("\n", 1)
    assert event == "dead"
    assert json.loads(body) == JOB


def test_a_failing_command_is_logged(dispatcher, caplog):
    notifier = CommandNotifier("local", command=("/bin/sh", "-c", "echo nope >&2; exit 3"), retries=0)
    with caplog.at_level(logging.ERROR, logger="jobrunner.notify"):
        assert dispatcher.send(notifier, "dead", JOB) is False
    assert "exited with 3: nope" in caplog.text


def test_a_command_over_its_timeout_is_stopped(dispatcher, caplog):
    notifier = CommandNotifier("local", command=("sleep", "30"), timeout=0.2, retries=0)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="jobrunner.notify"):
        assert dispatcher.send(notifier, "dead", JOB) is False
    assert time.monotonic() - started < 5
    assert "timed out" in caplog.text


# ---------------------------------------------------------------- email
@pytest.fixture
def smtp_server() -> Iterator[Any]:
    aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is in the test extra")
    from aiosmtpd.smtp import AuthResult

    class Handler:
        def __init__(self) -> None:
            self.messages: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode()))
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        ok = auth_data.login == b"robot" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Handler()
    controller = aiosmtpd.Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    controller.received = handler.messages  # type: ignore[attr-defined]
    yield controller
    controller.stop()


def test_email_is_sent_with_the_password_from_the_environment(smtp_server, dispatcher, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    notifier = EmailNotifier(
        "mail", host="127.0.0.1", port=smtp_server.port, starttls=False, user="robot", allow_plaintext_auth=True,
        password_env="TEST_SMTP_PASSWORD", sender="jobs@example.com", to=("me@example.com",),
    )  # fmt: skip
    assert dispatcher.send(notifier, "dead", JOB) is True
    sender, recipients, content = smtp_server.received[0]
    assert sender == "jobs@example.com" and recipients == ["me@example.com"]
    assert "Subject: jobrunner: job 42 dead: nightly-report" in content
    assert "ValueError: bad month" in content


def test_email_with_a_wrong_password_is_logged_once(smtp_server, dispatcher, monkeypatch, caplog):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    notifier = EmailNotifier(
        "mail", host="127.0.0.1", port=smtp_server.port, starttls=False, user="robot", allow_plaintext_auth=True,
        password_env="TEST_SMTP_PASSWORD", sender="jobs@example.com", to=("me@example.com",), retries=3,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="jobrunner.notify"):
        assert dispatcher.send(notifier, "dead", JOB) is False
    assert caplog.text.count("login refused") == 1  # not retried: it cannot get better
    assert smtp_server.received == []


def test_email_without_its_password_variable_is_logged(dispatcher, monkeypatch, caplog):
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    notifier = EmailNotifier("mail", host="127.0.0.1", port=1, user="robot", password_env="TEST_SMTP_PASSWORD",
                             sender="a@b.c", to=("me@example.com",))  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="jobrunner.notify"):
        assert dispatcher.send(notifier, "dead", JOB) is False
    assert "TEST_SMTP_PASSWORD (password_env) is not set" in caplog.text


def test_email_through_the_dispatcher(smtp_server, dispatcher):
    dispatcher.replace(parse_notifiers({"mail": {
        "type": "email", "host": "127.0.0.1", "port": smtp_server.port, "starttls": False,
        "from": "jobs@example.com", "to": ["a@example.com", "b@example.com"], "events": ["dead", "succeeded"],
    }}))  # fmt: skip
    dispatcher.dispatch("succeeded", {**JOB, "status": "succeeded"})
    wait_until(lambda: smtp_server.received, timeout=10)
    assert smtp_server.received[0][1] == ["a@example.com", "b@example.com"]


# ---------------------------------------------------------------- config
def test_config_tables_become_notifiers(tmp_path):
    config = parse_config({"notify": {
        "ops": {"type": "webhook", "url": "https://hooks.example.com/x", "events": ["dead", "retrying"],
                "timeout": "5s", "retries": 2},
        "mail": {"type": "email", "host": "smtp.example.com", "user": "robot@example.com",
                 "password_env": "SMTP_PASSWORD", "to": "me@example.com"},
        "desk": {"type": "command", "command": "notify-send 'job failed'"},
    }}, tmp_path / "jobs.toml")  # fmt: skip
    ops, mail, desk = notifiers_from_config(config)
    assert isinstance(ops, WebhookNotifier) and ops.events == {"dead", "retrying"} and ops.timeout == 5
    assert isinstance(mail, EmailNotifier) and mail.port == 587 and mail.starttls
    assert mail.sender == "robot@example.com" and mail.events == {"dead"}
    assert isinstance(desk, CommandNotifier) and desk.command == ("/bin/sh", "-c", "notify-send 'job failed'")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"type": "email", "host": "h", "to": "a@b.c", "password": "hunter2"},
         "notify.x.password: a password is never read from the config file: set password_env"),
        ({"type": "pigeon"}, "notify.x.type: 'pigeon' must be one of webhook, email, command"),
        ({"url": "http://x"}, "notify.x.type: missing"),
        ({"type": "webhook", "url": "ftp://x"}, "notify.x.url: give an http:// or https:// URL"),
        ({"type": "webhook", "url": "http://x", "events": ["died"]}, "notify.x.events: 'died' is not an event"),
        ({"type": "webhook", "url": "http://x", "timeout": "soon"}, "notify.x.timeout: 'soon' is not a duration"),
        ({"type": "webhook", "url": "http://x", "retires": 2}, "unknown key 'retires' (did you mean 'retries'?)"),
        ({"type": "email", "host": "h", "to": "a@b.c", "user": "u"}, "notify.x.password_env: user 'u' needs"),
        ({"type": "email", "host": "h", "to": []}, "notify.x.to: give an address"),
        ({"type": "email", "host": "h", "to": "a@b.c", "port": "25"}, "notify.x.port: '25' is not a port"),
        ({"type": "command", "command": []}, "notify.x.command: give an argv list"),
    ],
)  # fmt: skip
def test_bad_notify_tables_name_the_key(table, message):
    with pytest.raises(ConfigError) as info:
        parse_notifiers({"x": table}, "jobs.toml")
    assert str(info.value).startswith("jobs.toml: notify.")
    assert message in str(info.value)


def test_no_notify_section_means_no_notifiers():
    assert notifiers_from_config(parse_config({})) == []


def test_example_config_notifiers_are_valid():
    from jobrunner.config import load_config

    config = load_config(Path(__file__).resolve().parent.parent / "jobs.example.toml")
    notifiers_from_config(config)  # raises if the example is wrong
