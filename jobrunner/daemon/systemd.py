"""systemd's notify protocol without a dependency: one datagram to $NOTIFY_SOCKET per message.

Without NOTIFY_SOCKET (not started by systemd, or Type= is not notify) every call is a
no-op, so the daemon can call these unconditionally. A failed send is never an error:
systemd going away must not take the daemon with it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["Notifier", "notify", "watchdog_interval"]


def _address(env: Mapping[str, str]) -> str | None:
    """The socket address from NOTIFY_SOCKET; a leading '@' names an abstract socket."""
    target = env.get("NOTIFY_SOCKET", "")
    if not target:
        return None
    if target.startswith("@"):
        return "\0" + target[1:]
    if target.startswith("/"):
        return target
    return None  # vsock and other forms are not supported: stay quiet


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `state` ("READY=1", "STATUS=...", ...) to systemd; False when there is no socket
    or the send failed. Never raises."""
    address = _address(os.environ if env is None else env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError:
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC, or None when no watchdog is
    set (or $WATCHDOG_PID names another process)."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return usec / 1_000_000 / 2


class Notifier:
    """What the daemon tells systemd: ready, status lines, watchdog pings, stopping.

    `enabled` is False without NOTIFY_SOCKET, and then every method returns at once.
    `watchdog()` may be called on every loop turn: it sends at most once per half of
    WATCHDOG_USEC. `status()` sends only when the text changed.
    """

    def __init__(self, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.env = dict(os.environ if env is None else env)
        self.enabled = _address(self.env) is not None
        self.interval = watchdog_interval(self.env) if self.enabled else None
        self.clock = clock
        self._last_ping: float | None = None
        self._last_status: str | None = None

    def send(self, state: str) -> bool:
        return self.enabled and notify(state, self.env)

    def ready(self, status: str | None = None) -> bool:
        """READY=1: call after the database is open, migrated and recovered."""
        text = "READY=1" if status is None else f"READY=1\nSTATUS={status}"
        if status is not None:
            self._last_status = status
        return self.send(text)

    def status(self, text: str) -> bool:
        """STATUS=text, shown by `systemctl status`; sent only when it changed."""
        if text == self._last_status:
            return False
        self._last_status = text
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        """WATCHDOG=1 if a watchdog is configured and half its interval has passed."""
        if self.interval is None:
            return False
        now = self.clock()
        if self._last_ping is not None and now - self._last_ping < self.interval:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def next_watchdog_in(self) -> float | None:
        """Seconds until the next ping is due (for the loop's sleep), or None without a watchdog."""
        if self.interval is None:
            return None
        if self._last_ping is None:
            return 0.0
        return max(0.0, self._last_ping + self.interval - self.clock())

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: the daemon is draining and will exit."""
        text = "STOPPING=1" if status is None else f"STOPPING=1\nSTATUS={status}"
        return self.send(text)

    def extend_timeout(self, usec: int) -> bool:
        """EXTEND_TIMEOUT_USEC: ask systemd for `usec` more microseconds (while draining)."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(usec)}")
