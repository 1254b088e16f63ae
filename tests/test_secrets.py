"""Secrets stay where they were put, and job-provided text cannot inject into units, logs or the
terminal (issue 14: URL passwords, notifier payloads and passwords, --env from the environment,
control characters)."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jobrunner.daemon import notify
from jobrunner.daemon.notify import (
    CommandNotifier,
    Dispatcher,
    EmailNotifier,
    WebhookNotifier,
    parse_notifiers,
)
from jobrunner.errors import ConfigError, error_line
from jobrunner.secrets import redact_target, redact_urls
from tests.conftest import run_jobrunner, wait_until

SECRET = "s3cr3t-pw"
URL = f"postgresql://jr:{SECRET}@127.0.0.1:1/jobs"
JOB = {"id": 7, "name": "deploy", "status": "dead", "queue": "default", "attempts": 1, "error": "boom",
       "env": {"API_TOKEN": "tok-123", "REGION": "eu"}}  # fmt: skip


# ---------------------------------------------------------------- URL passwords
@pytest.mark.parametrize(
    ("target", "shown"),
    [
        (URL, "postgresql://jr:***@127.0.0.1:1/jobs"),
        ("postgresql://jr:p@ss@h/db", "postgresql://jr:***@h/db"),
        ("postgres://h/db?sslmode=require&password=x1", "postgres://h/db?sslmode=require&password=***"),
        ("postgresql://jr@h/db", "postgresql://jr@h/db"),
        ("/srv/a:b@c/jobs.db", "/srv/a:b@c/jobs.db"),
    ],
)
def test_redact_target(target, shown):
    assert redact_target(target) == shown


def test_error_lines_never_carry_a_url_password():
    assert SECRET not in error_line(f"cannot reach {URL}: refused")
    assert redact_urls(f"x {URL} y") == "x postgresql://jr:***@127.0.0.1:1/jobs y"


def test_a_database_error_does_not_show_the_password(home):
    """psycopg2's refusal goes through describe_db_error: the URL is shown redacted."""
    pytest.importorskip("psycopg2")
    result = run_jobrunner("--db", URL, "list", env={"JOBRUNNER_DB": ""})
    assert result.returncode != 0
    assert SECRET not in result.stderr + result.stdout
    assert "postgresql://jr:***@127.0.0.1:1/jobs" in result.stderr


def test_status_json_redacts_the_database(store, monkeypatch):
    from jobrunner.cli.health import status_data, status_lines

    monkeypatch.setattr(store, "target", URL)  # what status shows of a URL database, read from a file one
    data = status_data(store, 0.0)
    assert data["database"] == "postgresql://jr:***@127.0.0.1:1/jobs"
    assert SECRET not in json.dumps(data) and SECRET not in "\n".join(status_lines(data))


def test_the_daemon_logs_its_database_without_the_password(daemon, postgres_url):
    with_password = postgres_url.replace("postgres@", f"postgres:{SECRET}@")  # trust auth ignores it
    daemon.start("--workers", "1", *(["--allow-root"] if os.geteuid() == 0 else []), env={"JOBRUNNER_DB": with_password})
    assert SECRET not in daemon.output()
    assert "postgres:***@" in daemon.output()


# ---------------------------------------------------------------- systemd unit
def test_unit_refuses_a_url_password(cli, home, monkeypatch):
    monkeypatch.setenv("JOBRUNNER_DB", URL)  # --db with a password is refused before this is checked
    result = cli("systemd", "install")
    assert result.exit_code == 2
    assert result.stderr.startswith("jobrunner: error:") and len(result.stderr.splitlines()) == 1
    assert SECRET not in result.output + result.stderr
    assert "~/.pgpass" in result.stderr and "EnvironmentFile=" in result.stderr
    assert not (home / ".config" / "systemd" / "user" / "jobrunner.service").exists()
    assert "--db" in cli.ok("--db", "postgresql://jr@db.example/jobs", "systemd", "unit")  # no password: fine


@pytest.mark.parametrize("where", ["db", "config"])
def test_unit_refuses_control_characters(cli, home, tmp_path, where):
    """A newline in a path would add a directive of its own: `ExecStartPre=` that runs anything."""
    odd = tmp_path / "x\nExecStartPre=touch pwned\n"
    odd.mkdir()
    args = ["--db", str(odd / "jobs.db")] if where == "db" else ["--config", str(odd / "jobs.toml")]
    if where == "config":
        (odd / "jobs.toml").write_text("")
    result = cli(*args, "systemd", "install")
    assert result.exit_code == 2, result.output
    assert "control character" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (home / ".config" / "systemd" / "user" / "jobrunner.service").exists()
    assert cli(*args, "systemd", "unit").exit_code == 2


# ---------------------------------------------------------------- notifiers
class Server:
    """An HTTP server that records every request; `redirect_to` answers POSTs with a 302 there."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                server.requests.append((self.command, dict(self.headers), self.rfile.read(length)))
                if redirect_to and self.command == "POST":
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                else:
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _record

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for server in made:
        server.close()


def test_webhook_payload_masks_env_values_unless_include_env(servers):
    server = Server()
    servers.append(server)
    WebhookNotifier("hook", url=server.url, retries=0).deliver("dead", JOB)
    WebhookNotifier("hook", url=server.url, retries=0, include_env=True).deliver("dead", JOB)
    masked, whole = (json.loads(body) for _, _, body in server.requests)
    assert masked["env"] == {"API_TOKEN": "***", "REGION": "***"}
    assert whole["env"] == JOB["env"]


def test_email_and_command_payloads_mask_env_values(tmp_path):
    mail = EmailNotifier("mail", host="h", sender="a@b.c", to=("d@e.f",), subject="{env}")
    text = mail.message("dead", JOB).as_string()
    assert "tok-123" not in text and "API_TOKEN" in text
    out = tmp_path / "stdin.json"
    CommandNotifier("cmd", command=(sys.executable, "-c", f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"),
                    retries=0).deliver("dead", JOB)  # fmt: skip
    assert json.loads(out.read_text())["env"] == {"API_TOKEN": "***", "REGION": "***"}


def test_include_env_is_a_checked_config_key():
    table = {"type": "webhook", "url": "https://h/x", "include_env": True}
    assert parse_notifiers({"hook": table})[0].include_env is True
    with pytest.raises(ConfigError, match=r"notify\.hook\.include_env"):
        parse_notifiers({"hook": {**table, "include_env": "yes"}})


def test_webhook_does_not_follow_a_redirect_to_another_origin(servers, caplog):
    elsewhere = Server()
    hook = Server(redirect_to=elsewhere.url)
    servers += [elsewhere, hook]
    notifier = WebhookNotifier("hook", url=hook.url, headers={"Authorization": "Bearer hook-secret"}, retries=0)
    dispatcher = Dispatcher()
    try:
        assert dispatcher.send(notifier, "dead", JOB) is False
    finally:
        dispatcher.close(timeout=2)
    assert len(hook.requests) == 1
    assert elsewhere.requests == []  # neither the body nor the Authorization header went there
    assert "another origin" in caplog.text


def test_smtp_login_without_tls_is_refused_unless_allowed():
    table = {"type": "email", "host": "h", "to": "a@b.c", "user": "robot", "password_env": "PW", "starttls": False}
    with pytest.raises(ConfigError, match=r"notify\.mail\.starttls: .*allow_plaintext_auth"):
        parse_notifiers({"mail": table})
    assert parse_notifiers({"mail": {**table, "allow_plaintext_auth": True}})[0].allow_plaintext_auth is True
    assert parse_notifiers({"mail": {k: v for k, v in table.items() if k != "starttls"}})  # STARTTLS: fine


def test_keep_passwords_takes_the_variable_out_of_the_environment(monkeypatch):
    monkeypatch.setenv("TEST_SECRETS_SMTP_PW", "pw-from-env")
    monkeypatch.setattr(notify, "_passwords", {})
    notify.keep_passwords([{"kind": "email", "password_env": "TEST_SECRETS_SMTP_PW"}])
    assert "TEST_SECRETS_SMTP_PW" not in os.environ
    assert notify._passwords["TEST_SECRETS_SMTP_PW"] == "pw-from-env"  # what deliver() logs in with


def test_jobs_do_not_inherit_the_notifier_password(daemon, cli, home, tmp_path):
    config = home / ".config" / "jobrunner" / "jobs.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[notify.mail]\ntype = "email"\nhost = "127.0.0.1"\nto = "a@b.c"\nuser = "robot"\n'
                      'password_env = "TEST_SECRETS_SMTP_PW"\nevents = ["succeeded"]\n')  # fmt: skip
    daemon.start("--workers", "1", env={"TEST_SECRETS_SMTP_PW": "pw-from-env"})
    out = tmp_path / "seen"
    job_id = cli.submit("--", "sh", "-c", f'echo "${{TEST_SECRETS_SMTP_PW:-absent}}" > {out}')
    wait_until(lambda: cli.job(job_id)["status"] == "succeeded", timeout=20)
    assert out.read_text().strip() == "absent"


# ---------------------------------------------------------------- --env KEY
def test_env_key_without_value_comes_from_the_submitters_environment(cli, monkeypatch):
    monkeypatch.setenv("TEST_SECRETS_TOKEN", "from-env")
    job_id = cli.submit("--env", "TEST_SECRETS_TOKEN", "--env", "PLAIN=x", "--", "true")
    assert cli.job(job_id)["env"] == {"TEST_SECRETS_TOKEN": "from-env", "PLAIN": "x"}
    monkeypatch.delenv("TEST_SECRETS_TOKEN")
    result = cli("submit", "--env", "TEST_SECRETS_TOKEN", "--", "true")
    assert result.exit_code == 2 and "TEST_SECRETS_TOKEN is not set" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and cli.count() == 1  # nothing written


def test_env_key_on_the_fast_path(db_path):
    db = db_path
    result = run_jobrunner("--db", str(db), "submit", "--env", "TEST_SECRETS_TOKEN", "--", "true",
                           env={"TEST_SECRETS_TOKEN": "from-env"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = run_jobrunner("--db", str(db), "show", result.stdout.strip(), "--json")
    assert json.loads(shown.stdout)["env"] == {"TEST_SECRETS_TOKEN": "from-env"}


# ---------------------------------------------------------------- control characters
def test_a_log_message_stays_one_line():
    from jobrunner.daemon.logsetup import configure_logging

    for journald in (False, True):
        stream = io.StringIO()
        configure_logging("info", "text", stream=stream, env={"JOURNAL_STREAM": "1:1"} if journald else {})
        logging.getLogger("jobrunner.test").error("job 3 dead: %s", "bad\n2026-01-01 INFO job 4 forged\x1b[2J")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1 and "\x1b" not in lines[0] and "\\n2026-01-01 INFO job 4 forged\\x1b[2J" in lines[0]
    configure_logging("info", "text", stream=sys.stderr)


def test_list_and_show_print_no_raw_escape_sequences(cli):
    job_id = cli.submit("--name", "evil\x1b]0;pwned\x07\x1b[2J", "--", "echo", "\x1b[31mred")
    for args in (("list",), ("show", str(job_id))):
        out = cli.ok(*args)
        assert "\x1b" not in out and "\x07" not in out
        assert "\\x1b" in out


@pytest.mark.parametrize("fast", [True, False], ids=["console script", "typer"])
def test_env_file_keeps_secrets_out_of_argv(cli, tmp_path, fast):
    """--env-file FILE: KEY=VALUE lines, so a token is in neither `ps` nor shell history;
    --env given beside it wins; a bad line is one error naming the file and line. The console
    script's fast path and the Typer app answer alike."""
    from tests.conftest import run_jobrunner

    def submit(*args: str) -> tuple[int, str, str]:
        if fast:
            done = run_jobrunner("submit", *args)
            return done.returncode, done.stdout, done.stderr
        result = cli("submit", *args)
        return result.exit_code, result.stdout, result.stderr

    secrets_file = tmp_path / "job.env"
    secrets_file.write_text("# for the job\nAPI_TOKEN=s3cret\n\nURL=https://x/?a=b\n")
    code, out, err = submit("--env-file", str(secrets_file), "--env", "URL=override", "--", "true")
    assert code == 0, err
    assert cli.job(int(out.strip()))["env"] == {"API_TOKEN": "s3cret", "URL": "override"}
    secrets_file.write_text("API_TOKEN\n")
    code, _, err = submit("--env-file", str(secrets_file), "--", "true")
    assert code == 2 and err.strip().endswith("job.env:1: expected KEY=VALUE, got 'API_TOKEN'")


def test_show_and_the_tui_detail_mask_env_values(cli):
    """A job's env values may be secrets: the human `show` (and the TUI's detail, the same code)
    prints the keys with ***; `show --json` keeps them for the user's own scripts."""
    job = cli.submit("--env", "API_TOKEN=tok-xyz", "--env", "REGION=eu", "--", "true")
    shown = cli.ok("show", str(job))
    assert "API_TOKEN=***" in shown and "REGION=***" in shown and "tok-xyz" not in shown
    assert cli.job(job)["env"] == {"API_TOKEN": "tok-xyz", "REGION": "eu"}


# ---------------------------------------------------------------- URL passwords off jobs and argv
def test_jobs_see_the_database_url_without_its_password(daemon, postgres_url, tmp_path):
    """JOBRUNNER_DB in a job names the database with no password; a job sees no URL secret."""
    with_password = postgres_url.replace("postgres@", f"postgres:{SECRET}@")
    env = {"JOBRUNNER_DB": with_password}
    daemon.start("--workers", "1", *(["--allow-root"] if os.geteuid() == 0 else []), env=env)
    out = tmp_path / "env-seen"
    submitted = run_jobrunner("submit", "--", "sh", "-c", f"env > {out}", env=env)
    assert submitted.returncode == 0, submitted.stderr
    wait_until(out.exists, timeout=20)
    wait_until(lambda: "JOBRUNNER_DB=" in out.read_text(), timeout=5)
    seen = out.read_text()
    assert SECRET not in seen
    assert f"JOBRUNNER_DB={postgres_url}\n" in seen


def test_a_url_password_on_the_command_line_is_refused(home):
    """`--db` with a password would show in `ps` to every local user: one line, exit 2."""
    for args in (["list"], ["submit", "--", "true"], ["daemon"]):
        result = run_jobrunner("--db", URL, *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "~/.pgpass" in result.stderr and SECRET not in result.stderr


def test_each_url_database_has_its_own_log_directory(home):
    """Two databases on one server never share ID.log names; the password does not change the place."""
    from jobrunner.config import log_dir_for

    first, second = "postgresql://jr@db/one", "postgresql://jr@db/two"
    assert log_dir_for(first) != log_dir_for(second)
    assert log_dir_for("postgresql://jr:pw1@db/one") == log_dir_for(first) == log_dir_for("postgresql://jr:pw2@db/one")
    assert "pw1" not in log_dir_for("postgresql://jr:pw1@db/one")
