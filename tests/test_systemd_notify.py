"""sd_notify: a real Unix datagram socket stands in for systemd and reads what the daemon says."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobrunner.daemon.systemd import Notifier, notify, watchdog_interval


class FakeSystemd:
    """A bound SOCK_DGRAM socket, like the one systemd passes in NOTIFY_SOCKET."""

    def __init__(self, address: str, sock: socket.socket) -> None:
        self.address = address
        self.sock = sock

    def receive(self) -> str:
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        messages = []
        self.sock.setblocking(False)
        try:
            while True:
                messages.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        return messages


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify.sock"
    if len(str(path)) > 100:  # AF_UNIX paths are limited to 108 bytes
        path = Path(tempfile.mkdtemp(prefix="jr-")) / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield FakeSystemd(str(path), sock)
    sock.close()
    path.unlink(missing_ok=True)


def test_notify_is_a_no_op_without_notify_socket():
    assert notify("READY=1", env={}) is False
    notifier = Notifier(env={})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_notify_sends_a_datagram(systemd_socket):
    assert notify("READY=1", env={"NOTIFY_SOCKET": systemd_socket.address}) is True
    assert systemd_socket.receive() == "READY=1"


def test_notify_to_an_abstract_socket():
    name = f"jobrunner-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("STATUS=hello", env={"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(100) == b"STATUS=hello"


def test_notify_to_a_missing_socket_is_false_not_an_error(tmp_path):
    assert notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


def test_ready_status_watchdog_stopping_arrive_in_order(systemd_socket):
    clock = [100.0]
    env = {"NOTIFY_SOCKET": systemd_socket.address, "WATCHDOG_USEC": "2000000"}
    notifier = Notifier(env=env, clock=lambda: clock[0])
    assert notifier.interval == 1.0  # half of WATCHDOG_USEC

    notifier.ready("0 running, 0 queued")
    notifier.status("0 running, 0 queued")  # unchanged: not sent again
    notifier.status("2 running, 5 queued")
    assert notifier.watchdog() is True
    clock[0] += 0.5
    assert notifier.watchdog() is False  # too soon
    clock[0] += 0.6
    assert notifier.watchdog() is True
    notifier.extend_timeout(35_000_000)
    notifier.stopping("draining 2 jobs")

    assert systemd_socket.pending() == [
        "READY=1\nSTATUS=0 running, 0 queued",
        "STATUS=2 running, 5 queued",
        "WATCHDOG=1",
        "WATCHDOG=1",
        "EXTEND_TIMEOUT_USEC=35000000",
        "STOPPING=1\nSTATUS=draining 2 jobs",
    ]


def test_no_watchdog_pings_without_watchdog_usec(systemd_socket):
    notifier = Notifier(env={"NOTIFY_SOCKET": systemd_socket.address})
    assert notifier.interval is None
    assert notifier.next_watchdog_in() is None
    assert notifier.watchdog() is False
    assert systemd_socket.pending() == []


def test_watchdog_interval_respects_watchdog_pid():
    assert watchdog_interval({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "nope"}) is None
    assert watchdog_interval({}) is None
