"""Wake-up across hosts on PostgreSQL: NOTIFY in the transaction that makes work, LISTEN in
every daemon.

The same-host socket poke (wakeup.py) reaches only daemons on the submitter's host. On
PostgreSQL a write that makes a job runnable also sends `NOTIFY jobrunner_wake` inside its own
transaction, so the notification is delivered exactly when the job becomes visible (never
before the commit, never for a rollback). Each daemon LISTENs on a connection of its own whose
socket sits in the daemon's selector beside the local socket: an idle daemon on any host starts
the job without polling. The payload is the sender's daemon id ('' for clients), so a daemon
ignores its own notifications.

PgBouncer in transaction mode cannot carry LISTEN: point daemons at the server itself.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from jobrunner.secrets import redact_target, redact_text

CHANNEL = "jobrunner_wake"
RECONNECT_S = (0.5, 30.0)  # backoff bounds while the server is away

log = logging.getLogger("jobrunner.daemon")


def notify(store: Any, sender: str = "") -> None:
    """Queue a wake-up for every listening daemon, delivered when this transaction commits."""
    if not store.is_sqlite:
        store.execute("SELECT pg_notify(%s, %s)", (CHANNEL, sender))


class PgListener:
    """A daemon's LISTEN connection. `fileno()` is None while it is down; `reconnect(now)`
    tries again with backoff (the daemon's loop calls it; the fallback poll covers the gap)."""

    def __init__(self, store: Any, me: str) -> None:
        self.store = store
        self.me = me
        self.conn: Any = None
        self.retry_at = 0.0
        self.backoff = RECONNECT_S[0]
        self.reconnect(time.time())

    def reconnect(self, now: float) -> bool:
        """Connect and LISTEN if down and due; True when a new connection is up (watch it)."""
        if self.conn is not None or now < self.retry_at:
            return False
        import psycopg2

        db = self.store.db
        try:
            conn = psycopg2.connect(dbname=db.database, **{**db.connect_params, "connect_timeout": 5})
            conn.autocommit = True
            conn.cursor().execute(f"LISTEN {CHANNEL}")
        except psycopg2.Error as exc:
            self.retry_at = now + self.backoff
            log.warning("cannot listen for wake-ups on %s, polling meanwhile (retry in %.1fs): %s",
                        redact_target(self.store.target), self.backoff, redact_text(str(exc).strip(), self.store.target))  # fmt: skip
            self.backoff = min(self.backoff * 2, RECONNECT_S[1])
            return False
        self.conn, self.backoff = conn, RECONNECT_S[0]
        return True

    def fileno(self) -> int:
        return self.conn.fileno()

    def drain(self) -> int:
        """Notifications from others since the last call; on a broken connection, 0 (and down)."""
        import psycopg2

        try:
            self.conn.poll()
            broken = bool(self.conn.closed)  # a terminated backend may close without an error
        except psycopg2.Error:
            broken = True
        if broken:
            with contextlib.suppress(psycopg2.Error):
                self.close()
            self.retry_at = time.time() + self.backoff
            return 1  # something may have been missed meanwhile: look once
        count = sum(1 for note in self.conn.notifies if note.payload != self.me)
        self.conn.notifies.clear()
        return count

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None
