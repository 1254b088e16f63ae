"""Wake an idle daemon at once: a datagram to an abstract Unix socket named after the database.

Sending is fire-and-forget: when no daemon listens the poke is dropped, and the
daemon's slow fallback poll still finds the work.
"""

from __future__ import annotations

import hashlib
import os
import socket

_addresses: dict[str, str] = {}
_sender: list[object] = [None, None]  # [pid, socket]: one datagram socket per process, reused


def address(db_target: str) -> str:
    """The abstract socket name for a database (the same for every process on this host)."""
    if db_target not in _addresses:
        key = db_target if "://" in db_target else os.path.realpath(db_target)
        _addresses[db_target] = "\0jobrunner-" + hashlib.sha256(key.encode()).hexdigest()[:24]
    return _addresses[db_target]


def poke(db_target: str) -> None:
    """Tell a daemon on this database that there is new work; never fails, never blocks.

    On the submit hot path: the address is computed once and the socket reused per process
    (a new socket, realpath and sha256 per call cost more than the rest of a submit).
    """
    try:
        if _sender[0] != os.getpid():  # first use, or a forked child: a socket of its own
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            _sender[:] = [os.getpid(), sock]
        _sender[1].sendto(b"!", address(db_target))  # type: ignore[attr-defined]
    except OSError:
        pass  # nobody listens (or its queue is full): the daemon's fallback poll finds the work


class Listener:
    """The daemon's end. `bound` is False when another daemon on this host already listens."""

    def __init__(self, db_target: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        try:
            self.sock.bind(address(db_target))
            self.bound = True
        except OSError:
            self.bound = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> int:
        count = 0
        while True:
            try:
                self.sock.recv(64)
                count += 1
            except (BlockingIOError, InterruptedError):
                return count

    def close(self) -> None:
        self.sock.close()
