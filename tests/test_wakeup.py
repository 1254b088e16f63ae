"""The wake-up channel (issue 14 item 6): a socket file in the owner-only log directory, so no
other local user can squat its name or flood it; a flood from anyone costs at most one claim per
short interval (pokegate); a socket left by a kill -9 is taken over by the next daemon."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

import pytest

from jobrunner.daemon.pokegate import QUIET_S, PokeGate
from jobrunner.wakeup import Listener, reachable, socket_path
from tests.conftest import is_url, logs_of, wait_until
from tests.test_trust import OTHER, other_uid  # noqa: F401 - the second-user fixture


def _log_dir(db_path: Path | str) -> Path:
    return logs_of(db_path)  # beside a SQLite file; for a URL, in the state dir (the same socket)


def _flood(path: str, count: int) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for _ in range(count):
            with contextlib.suppress(BlockingIOError):  # a full queue drops the poke, as for a real one
                sender.sendto(b"!", path)


def test_the_socket_is_a_private_file_in_the_log_directory(daemon, cli, db_path):
    daemon.start("--workers", "1")
    sock = _log_dir(db_path) / "wake.sock"
    info = sock.lstat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(_log_dir(db_path).stat().st_mode) == 0o700
    assert "polling instead" not in daemon.output()
    job_id = cli.submit("--", "true")
    wait_until(lambda: cli.job(job_id)["status"] == "succeeded", timeout=20)
    daemon.stop()
    assert not sock.exists()  # a clean stop takes its socket with it


def test_a_socket_left_by_kill_9_is_taken_over(daemon, cli, db_path):
    daemon.start("--workers", "1")
    daemon.kill(9)
    assert (_log_dir(db_path) / "wake.sock").exists()
    second = daemon.make().start("--workers", "1")
    assert "polling instead" not in second.output()


def test_a_second_daemon_on_this_host_polls_and_the_first_keeps_the_socket(daemon, cli, db_path):
    daemon.start("--workers", "1")
    second = daemon.make().start("--workers", "1")
    # on PostgreSQL both LISTEN: the second needs no socket to be woken, and does not poll
    assert ("polling instead" in second.output()) is not is_url(db_path)
    assert "polling instead" not in daemon.output()


@pytest.mark.sqlite_only(reason="a log directory beside the SQLite file, in a shared project directory; a URL's is in the owner's state dir")
def test_another_user_can_neither_poke_nor_squat(daemon, db_path, other_uid):  # noqa: F811
    """The attacker of item 6: it cannot reach the socket, nor bind a name the daemon would use."""
    import subprocess

    daemon.start("--workers", "1")
    path = str(_log_dir(db_path) / "wake.sock")
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\n"
        "try:\n s.sendto(b'!',sys.argv[1])\nexcept PermissionError:\n print('refused')\n"
        "try:\n socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).bind(sys.argv[1]+'2')\nexcept PermissionError:\n print('refused')\n"
    )  # fmt: skip
    # the log directory sits in root's 0700 tmp_path here: open the way down to it, as a shared project directory would be
    for parent in _log_dir(db_path).parents:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o001)
    result = subprocess.run(["runuser", "-u", OTHER, "--", "/usr/bin/python3", "-c", code, path], capture_output=True, text=True)
    assert result.stdout.split() == ["refused", "refused"], result.stderr


def test_a_flood_of_pokes_still_lets_a_job_through(daemon, cli, db_path):
    daemon.start("--workers", "1")
    path = reachable(str(_log_dir(db_path) / "wake.sock"))  # a URL's log dir is deep in the state dir
    _flood(path, 20_000)
    job_id = cli.submit("--", "true")
    _flood(path, 20_000)
    wait_until(lambda: cli.job(job_id)["status"] == "succeeded", timeout=20)
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_the_gate_answers_work_at_once_and_an_empty_flood_once_per_interval():
    gate = PokeGate()
    now = 1000.0
    assert gate.admit(now)
    gate.claimed(now, found=1)  # it found work: the next poke is answered at once
    assert gate.admit(now + 0.0001)
    gate.claimed(now + 0.0001, found=0)  # nothing: quiet for a while
    answered = 0
    for step in range(1, 1001):  # a poke every 0.1 ms for 0.1 s
        moment = now + 0.0001 + step * 0.0001
        if gate.due(moment):
            gate.waiting = False
        if gate.admit(moment):
            answered += 1
            gate.claimed(moment, found=0)
    assert answered <= 0.1 / QUIET_S + 1
    assert gate.waiting or gate.quiet_until <= now + 0.2


def test_a_long_log_directory_path_still_gets_a_socket(tmp_path):
    """sun_path holds 107 bytes: a deeper log directory is reached through a descriptor."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True, mode=0o700)
    listener = Listener(str(deep))
    try:
        assert listener.bound
        where = reachable(socket_path(str(deep)))
        assert where.startswith("/proc/self/fd/")
        _flood(where, 3)
        wait_until(lambda: listener.drain() or False, timeout=5)
    finally:
        listener.close()
    assert not os.path.exists(socket_path(str(deep)))

