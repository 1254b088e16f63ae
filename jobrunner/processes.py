"""Is a process alive: shared by the daemon (recovery) and `status` (a dead daemon on this host
is noticed at once, not after its heartbeat goes stale)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """A process that exists (perhaps another user's) and is not a zombie nobody has reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:  # not a pid this system could have
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return True
