"""What differs between SQLite and PostgreSQL, and nothing else: placeholders and hot statements.

Hot statements are plain text built once: peewee's query builder costs several
times the statement itself on the submit/claim/finish paths.
"""

from __future__ import annotations

from dataclasses import dataclass

JOB_INSERT_COLUMNS = (
    "name", "kind", "task", "command", "callable", "args", "kwargs", "queue", "priority",
    "status", "max_retries", "timeout", "backoff_base", "backoff_factor", "backoff_max",
    "retry_on", "retry_on_exit_codes", "tags", "metadata", "cwd", "env", "created_at",
    "run_at", "updated_at",
)  # fmt: skip

EVENT_INSERT_COLUMNS = ("job_id", "at", "attempt", "from_status", "to_status", "message", "details")


@dataclass(frozen=True)
class Backend:
    """Statement text for one database kind."""

    name: str
    param: str  # the driver's placeholder

    def placeholders(self, count: int) -> str:
        return ", ".join([self.param] * count)

    @property
    def insert_job(self) -> str:
        cols = ", ".join(JOB_INSERT_COLUMNS)
        sql = f"INSERT INTO job ({cols}) VALUES ({self.placeholders(len(JOB_INSERT_COLUMNS))})"
        return sql + (" RETURNING id" if self.name == "postgresql" else "")

    @property
    def insert_event(self) -> str:
        cols = ", ".join(EVENT_INSERT_COLUMNS)
        return f"INSERT INTO event ({cols}) VALUES ({self.placeholders(len(EVENT_INSERT_COLUMNS))})"

    @property
    def events_for_new_jobs(self) -> str:
        """One event per job inserted after id `?`: bulk submit writes its history in one statement."""
        p = self.param
        return (
            "INSERT INTO event (job_id, at, attempt, from_status, to_status, message) "
            f"SELECT id, created_at, 0, NULL, status, {p} FROM job WHERE id > {p} ORDER BY id"
        )


SQLITE = Backend(name="sqlite", param="?")
POSTGRESQL = Backend(name="postgresql", param="%s")
