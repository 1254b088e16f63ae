"""PostgreSQL: a transaction's BEGIN travels with its first statement, in one message.

peewee begins a transaction by sending BEGIN on its own, a round trip before the first
statement of every write: the daemon's turn with one finished job was BEGIN, its statements and
COMMIT, each a round trip (~0.1 ms on a local server, a network's latency across hosts). Here
the database's begin() only marks the connection, and its cursors send `BEGIN;` in front of the
next statement: psycopg2 sends a query string as one simple-query message, runs every statement
in it, and returns the last one's result. A transaction that ran nothing sends neither BEGIN nor
COMMIT. Nothing else changes: the statements still run inside BEGIN ... COMMIT, so a daemon
killed before its COMMIT leaves nothing committed.

Reaches into peewee's transaction hooks (begin, commit, rollback) and psycopg2's connection and
cursor classes, so it lives here alone. The figure it buys: a round trip per transaction, 0.1 to
0.2 ms on the local server; with the successes in one statement (runs.py), the daemon's turn
that records a finished job and claims the next went 2.3 -> 1.6 ms (medians of ~280 turns).
"""

from __future__ import annotations

from typing import Any

import psycopg2.extensions


class LazyBeginConnection(psycopg2.extensions.connection):
    """A connection that owes its server a BEGIN before the next statement."""

    begin_pending = False


class LazyBeginCursor(psycopg2.extensions.cursor):
    def execute(self, query: Any, vars: Any = None) -> Any:
        conn = self.connection
        if conn.begin_pending:
            conn.begin_pending = False
            if self.name is None and isinstance(query, str):
                query = "BEGIN; " + query
            elif self.name is None and isinstance(query, bytes):
                query = b"BEGIN; " + query
            else:  # a psycopg2.sql object, or a named cursor's DECLARE: BEGIN goes on its own
                self.connection.cursor().execute("BEGIN")
        return super().execute(query, vars)

    def executemany(self, query: Any, vars_list: Any) -> Any:
        conn = self.connection
        if conn.begin_pending:  # psycopg2 runs each set on its own: BEGIN first, on its own
            conn.begin_pending = False
            super().execute("BEGIN")
        return super().executemany(query, vars_list)


#: connect() arguments that make a psycopg2 connection begin lazily (see begin below)
CONNECT_PARAMS = {"connection_factory": LazyBeginConnection, "cursor_factory": LazyBeginCursor}


def database_class(peewee: Any) -> type:
    """peewee's PostgresqlDatabase whose transactions begin with their first statement."""

    class LazyBeginPostgresqlDatabase(peewee.PostgresqlDatabase):
        def begin(self, isolation_level: Any = None) -> None:
            conn = self.connection()  # connects if need be, as peewee's begin does
            if isolation_level is not None or not isinstance(conn, LazyBeginConnection):
                super().begin(isolation_level)
                return
            conn.begin_pending = True

        def commit(self) -> None:
            if self._owed_begin_dropped():
                return  # nothing ran: no transaction on the server to commit
            super().commit()

        def rollback(self) -> None:
            if self._owed_begin_dropped():
                return
            conn = getattr(self._state, "conn", None)
            if conn is not None and conn.closed:  # the server dropped the session, and its transaction
                return  # with it: a ROLLBACK would only hide why the statement failed
            super().rollback()

        def _owed_begin_dropped(self) -> bool:
            conn = getattr(self._state, "conn", None)
            if conn is not None and getattr(conn, "begin_pending", False):
                conn.begin_pending = False
                return True
            return False

    return LazyBeginPostgresqlDatabase
