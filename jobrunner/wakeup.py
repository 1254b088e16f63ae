"""Wake an idle daemon at once: a datagram to an abstract Unix socket named after the database.

Sending is fire-and-forget: when no daemon listens the poke is dropped, and the
daemon's slow fallback poll still finds the work.
"""

from __future__ import annotations

import hashlib
import os
import socket

_addresses: dict[str, str] = {}
_sender: socket.socket | None = None  # one datagram socket per process, reused


def _forget_sender() -> None:
    """A forked child makes a socket of its own (said here, not checked by a getpid() per poke)."""
    global _sender
    _sender = None


os.register_at_fork(after_in_child=_forget_sender)


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
    global _sender
    try:
        if _sender is None:
            _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sender.setblocking(False)
        _sender.sendto(b"!", address(db_target))
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
