"""Wake an idle daemon at once: a datagram to a Unix socket in the database's log directory.

The socket is a file, `wake.sock`, inside the log directory, which is owner-only (0700, checked
by the trust model): no other local user can bind its name first (squat it, so the daemon
falls back to polling and the squatter sees every submit), or send to it (flood it). An
abstract socket named after the database, as before, was open to both.

Sending is fire-and-forget: when no daemon listens the poke is dropped, and the daemon's slow
fallback poll still finds the work.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket

SOCKET_NAME = "wake.sock"
_SUN_PATH_MAX = 107  # bytes a Unix socket address holds (108 with its NUL)

_addresses: dict[str, str] = {}
_sender: socket.socket | None = None  # one datagram socket per process, reused


def _forget_sender() -> None:
    """A forked child makes a socket of its own (said here, not checked by a getpid() per poke)."""
    global _sender
    _sender = None


os.register_at_fork(after_in_child=_forget_sender)


def socket_path(log_dir: str) -> str:
    """The wake-up socket of the database whose log directory is `log_dir`."""
    return os.path.join(os.path.abspath(log_dir), SOCKET_NAME)


def reachable(path: str) -> str:
    """An address for the socket at `path` that fits a Unix socket address: the path itself, or,
    for a long one, the path through a descriptor of its directory kept open by this process."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    directory, name = os.path.split(path)
    try:
        fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return path  # no directory, no daemon: the poke fails quietly, as it would anyway
    return f"/proc/self/fd/{fd}/{name}"


def address(db_target: str) -> str:
    """Where a daemon on this database listens (computed once per process and database)."""
    if db_target not in _addresses:
        from jobrunner.config import log_dir_for

        _addresses[db_target] = reachable(socket_path(log_dir_for(db_target)))
    return _addresses[db_target]


def poke(db_target: str) -> None:
    """Tell a daemon on this database that there is new work; never fails, never blocks.

    On the submit hot path: the address is computed once and the socket reused per process.
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

    def __init__(self, log_dir: str) -> None:
        self.path = socket_path(log_dir)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self._inode: int | None = None
        directory = os.open(os.path.dirname(self.path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(directory, fcntl.LOCK_EX)  # two daemons starting at once: one binds
            self.bound = self._bind(reachable(self.path))
        finally:
            os.close(directory)  # and the lock with it

    def _bind(self, where: str) -> bool:
        try:
            self.sock.bind(where)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or _listening(where):
                return False
            os.unlink(self.path)  # left by a daemon killed with -9: nobody reads it
            self.sock.bind(where)
        os.chmod(self.path, 0o600)  # in a 0700 directory already; the umask chose its mode
        self._inode = os.stat(self.path).st_ino
        return True

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
        with contextlib.suppress(OSError):
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)  # ours still: the next daemon binds without a probe


def _listening(where: str) -> bool:
    """Whether a live socket answers at `where` (a stale file refuses the datagram)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        probe.setblocking(False)
        try:
            probe.sendto(b"!", where)  # a live daemon takes it as a poke: harmless
        except BlockingIOError:
            return True  # its queue is full: someone is there
        except OSError:
            return False
    return True
