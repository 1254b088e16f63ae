"""The daemon when the database's disk fills up: nothing submitted is lost, and it carries on."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess, run_jobrunner, wait_until

pytestmark = pytest.mark.sqlite_only(reason="the SQLite file's disk fills up; the server's disk is the server's")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MB file system (tmpfs) to fill up, private as a database directory must be (a
    tmpfs root is 1777 by default); needs root, as CI has."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:  # pragma: no cover - CI runs as root
        pytest.skip("mounting a small file system needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:  # pragma: no cover - a container without the right to mount
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the file system refuses another byte."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0")
    return filler


def _statuses(db: Path) -> list[tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return conn.execute("SELECT status, attempts FROM job ORDER BY id").fetchall()


@pytest.mark.slow
def test_jobs_claimed_when_the_disk_fills_run_once_it_has_room(small_disk, tmp_path, monkeypatch):
    """The claim's commit fails: no job starts (jobs go to the workers only once their claim is
    committed), the daemon keeps trying, and runs every job once, when the disk has room again."""
    from jobrunner import submit

    db = small_disk / "jobs.db"
    monkeypatch.setenv("JOBRUNNER_DB", str(db))
    marks = tmp_path / "marks"  # outside the full disk
    submit(["true"], db=str(db))
    daemon = DaemonProcess(db, tmp_path / "daemon.log").start("--workers", "2")
    try:
        wait_until(lambda: _statuses(db) == [("succeeded", 1)], timeout=20)
        daemon.pause()  # the jobs wait while the disk fills
        for n in range(6):
            submit("tests.jobfuncs:record", kwargs={"path": str(marks), "label": str(n)}, db=str(db))
        filler = _fill(small_disk)
        daemon.signal(signal.SIGCONT)
        wait_until(lambda: "the disk is full; nothing was written" in daemon.output(), timeout=30)
        wait_until(lambda: "in the periodic work" in daemon.output(), timeout=20)  # its heartbeat failed too
        assert [status for status, _ in _statuses(db)[1:]] == ["queued"] * 6
        filler.unlink()
        wait_until(lambda: all(status == "succeeded" for status, _ in _statuses(db)), timeout=30)
        assert daemon.proc is not None and daemon.proc.poll() is None  # still running
        assert "Traceback" not in daemon.output()
        assert sorted(marks.read_text().split()) == [str(n) for n in range(6)]  # each ran once
        assert all(attempts == 1 for _, attempts in _statuses(db))  # a start never recorded is no attempt
    finally:
        daemon.stop()


def test_submit_on_a_full_disk_says_so_and_stores_nothing(small_disk, monkeypatch):
    db = small_disk / "jobs.db"
    monkeypatch.setenv("JOBRUNNER_DB", str(db))
    assert run_jobrunner("submit", "--", "true").returncode == 0
    filler = _fill(small_disk)
    result = run_jobrunner("submit", "--", "echo", "lost?")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("the disk is full; nothing was written")
    assert len(result.stderr.strip().splitlines()) == 1
    filler.unlink()
    assert [status for status, _ in _statuses(db)] == ["queued"]  # the first job, and only it
