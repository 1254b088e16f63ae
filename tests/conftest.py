"""Fixtures: an isolated home and database per test, and a CLI driver that runs the real app."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from typer.testing import CliRunner

from jobrunner.cli.app import app

# The fuzzers' profiles: seeded and a few hundred examples in the normal suite; thousands with
# `pytest --hypothesis-profile long`.
settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("long", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll a condition until it holds or the deadline passes (then fail with a clear message)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME, XDG dirs and working directory, so no test sees the user's files."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in ("JOBRUNNER_DB", "JOBRUNNER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(work)
    return home


@pytest.fixture
def db_path(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "jobs.db"
    monkeypatch.setenv("JOBRUNNER_DB", str(path))
    return path


@dataclass
class Cli:
    """Runs `jobrunner ...` in-process against the test's database."""

    runner: CliRunner

    def __call__(self, *args: str, input: str | None = None) -> Any:
        return self.runner.invoke(app, list(args), input=input, catch_exceptions=False)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self(*args, input=input)
        assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr or result.output}"
        return result.stdout

    def submit(self, *args: str) -> int:
        return int(self.ok("submit", *args).strip())

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def job(self, job_id: int) -> dict[str, Any]:
        return self.json("show", str(job_id))

    def count(self, status: str | None = None) -> int:
        data = self.json("stats")
        return data["total"] if status is None else data["by_status"][status]


@pytest.fixture
def cli(db_path: Path) -> Cli:
    return Cli(CliRunner())


def run_jobrunner(*args: str, env: dict[str, str] | None = None, input: str | None = None,
                  cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:  # fmt: skip
    """`jobrunner ...` as a real process, the way a user's shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "jobrunner", *args],
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def run_on_pty(argv: list[str], env: dict[str, str], columns: int | None = None) -> tuple[bytes, int]:
    """Run a command with stdin, stdout and stderr on one real pty (`columns` wide if given), as
    a user's terminal runs it: what it printed, and its exit code."""
    import fcntl
    import pty
    import struct
    import termios

    main, child = pty.openpty()
    if columns is not None:
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(main)
    return out, proc.wait(timeout=30)


@pytest.fixture
def store(db_path: Path) -> Iterator[Any]:
    from jobrunner.store import open_store

    opened = open_store(str(db_path))
    yield opened
    opened.close()


ROOT = Path(__file__).resolve().parent.parent


class DaemonProcess:
    """A real `jobrunner daemon` subprocess in its own process group, killed in teardown."""

    def __init__(self, db_path: Path, log_path: Path) -> None:
        self.db_path = db_path
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.args: list[str] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> DaemonProcess:
        self.args = list(args) or self.args or ["--workers", "2"]
        env = {**os.environ, "JOBRUNNER_DB": str(self.db_path), "PYTHONPATH": str(ROOT), **(env or {})}
        self.log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobrunner", "daemon", "--kill-grace", "1", *self.args],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: "started:" in self.output(), timeout=20)
        return self

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP the daemon at a moment it holds no write lock (stopped mid-commit, it would
        keep every other writer waiting); SIGCONT resumes it."""
        deadline = time.monotonic() + timeout
        while True:
            self.signal(signal.SIGSTOP)
            with contextlib.closing(sqlite3.connect(self.db_path, timeout=0, isolation_level=None)) as conn:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("ROLLBACK")
                    return
                except sqlite3.OperationalError:
                    pass
            self.signal(signal.SIGCONT)
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon held its write lock for {timeout}s")
            time.sleep(0.01)

    def kill(self, signum: int = 9) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)
        self.proc.wait(timeout=10)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)  # anything left in its process group
        self.log.close()


@pytest.fixture
def daemon(db_path: Path, tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon on the test's database: `daemon.start("--workers", "1")` runs it."""
    started: list[DaemonProcess] = []

    def make() -> DaemonProcess:
        process = DaemonProcess(db_path, tmp_path / f"daemon-{len(started)}.log")
        started.append(process)
        return process

    first = make()
    first.make = make  # type: ignore[attr-defined]
    yield first
    for process in started:
        process.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test", connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432: {exc}")
    admin.autocommit = True
    name = f"jobrunner_fast_{os.getpid()}_{int(time.time() * 1000)}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
