"""Wake an idle daemon at once: a datagram to an abstract Unix socket named after the database.

Sending is fire-and-forget: when no daemon listens the poke is dropped, and the
daemon's slow fallback poll still finds the work.
"""

from __future__ import annotations

import hashlib
import os
import socket


def address(db_target: str) -> str:
    """The abstract socket name for a database (the same for every process on this host)."""
    key = db_target if "://" in db_target else os.path.realpath(db_target)
    return "\0jobrunner-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def poke(db_target: str) -> None:
    """Tell a daemon on this database that there is new work; never fails, never blocks."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"!", address(db_target))
    except OSError:
        pass


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
