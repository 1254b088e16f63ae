"""Errors the CLI turns into one line on stderr and a meaningful exit code."""

from __future__ import annotations


class JobrunnerError(Exception):
    """Something went wrong that the user should read about: exit code 1."""

    exit_code = 1


class UsageError(JobrunnerError):
    """Bad input from the user: shown as one line, exit code 2, nothing written."""

    exit_code = 2


class NotFoundError(UsageError):
    """An id or name the user gave does not exist."""


class KeyHeldError(UsageError):
    """A submit refused because an unfinished job holds its unique key (`on_conflict` reject,
    or replace of a job that runs already); `job_id` names that job."""

    def __init__(self, message: str, job_id: int, status: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status


class ConfigError(UsageError):
    """The config file is unreadable or holds a bad value; the message names file and key."""


class StoreError(JobrunnerError):
    """The database could not be opened or written (locked, full, unreadable)."""


def error_line(message: str) -> str:
    """What the CLI prints for an error: one line with the `jobrunner: error:` prefix, whatever
    the message holds (a newline in a user's value must not split it)."""
    from jobrunner.secrets import redact_urls  # a URL's password, whoever wrote the message

    text = "; ".join(part.strip() for part in redact_urls(str(message)).splitlines() if part.strip())
    return f"jobrunner: error: {text}"
