"""The daemon's log lines: timestamps on a terminal, `<N>` syslog levels under journald, or JSON.

journald stamps each line itself and reads a leading `<N>` as the line's priority, so
under journald ($JOURNAL_STREAM names our stderr) lines carry no timestamp. `json` is one
object per line for log shippers. Job output never comes here: it goes to the job's log file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from jobrunner.errors import UsageError
from jobrunner.present import visible

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
LOGGER = "jobrunner"

# syslog priorities, as sd-daemon(3) spells them
_SYSLOG = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
# attributes every LogRecord has; anything else came in through `extra=` and goes into JSON
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def syslog_priority(levelno: int) -> int:
    """The syslog priority for a logging level (between the named levels: the next one up)."""
    for level in sorted(_SYSLOG, reverse=True):
        if levelno >= level:
            return _SYSLOG[level]
    return 7


def parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = getattr(logging, level.strip().upper(), None) if level.strip().lower() in LEVELS else None
    if not isinstance(value, int):
        raise UsageError(f"--log-level: {level!r} is not one of {', '.join(LEVELS)}")
    return value


def under_journald(stream: IO[str] | None = None, env: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd gave us ($JOURNAL_STREAM is 'dev:inode').

    A stream without a file descriptor (a test's StringIO) trusts the variable alone.
    """
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    if not value:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True
    try:
        dev, ino = (int(part) for part in value.split(":", 1))
        info = os.fstat(fd)
    except (ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (dev, ino)


class OneLineFormatter(logging.Formatter):
    """A message is one line: control characters in it (a newline in a job's name or error, an
    escape sequence) are shown as `\\n`, `\\x1b`, so job-provided text cannot forge a line or
    drive the terminal. A traceback (exc_info) keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = visible(record.message, lines=False)
        return super().formatMessage(record)


class JournalFormatter(OneLineFormatter):
    """`<6>job 12 succeeded after 3s`: no timestamp; every line of a traceback keeps the level."""

    def __init__(self) -> None:
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines() or [""])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, any `extra=` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def make_formatter(fmt: str, journald: bool) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if journald:
        return JournalFormatter()
    return OneLineFormatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")


def configure_logging(level: str | int = "info", fmt: str = "text", *, stream: IO[str] | None = None,
                      env: Mapping[str, str] | None = None) -> logging.Handler:  # fmt: skip
    """Send the `jobrunner` loggers to `stream` (stderr) in the right shape; returns the handler.

    Replaces any handler set before, so calling it again (say, on SIGHUP) does not double lines.
    """
    levelno = parse_level(level)
    if fmt not in FORMATS:
        raise UsageError(f"--log-format: {fmt!r} is not one of {', '.join(FORMATS)}")
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(fmt, under_journald(stream, env)))
    root = logging.getLogger(LOGGER)
    root.handlers[:] = [handler]
    root.setLevel(levelno)
    return handler
