"""`jobrunner.current_job()`: what a running Python job knows about itself, and its progress reporter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jobrunner.progress import check_fraction, clean_message

_current: JobContext | None = None


@dataclass
class JobContext:
    """Given to a running Python job: its id, attempt, and `report(fraction, message)`."""

    id: int
    attempt: int
    _send: Callable[[float, str | None], None]

    def report(self, fraction: float, message: str | None = None) -> None:
        """Record progress: a fraction from 0 to 1 and an optional short message (cut to 1,000
        characters). ValueError for NaN, an infinity or a value outside 0-1. Cheap, and never
        waits for the daemon: the worker passes only the latest report on, a few times a second,
        and the last one before the job ends always."""
        self._send(check_fraction(fraction), clean_message(message))


def current_job() -> JobContext | None:
    """The job running in this process, or None outside a jobrunner worker."""
    return _current


def _set_current(context: JobContext | None) -> None:
    global _current
    _current = context
