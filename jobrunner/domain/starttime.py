"""When a job may start: `--at`/`--in`, a bulk line's `at`/`in`, the API's `at=`/`delay=`, all
read and range-checked the same way (a time from 1970 to 9999: one past that breaks every
later `list`)."""

from __future__ import annotations

from typing import Any

from jobrunner.domain.jobspec import (
    EARLIEST_TIME,
    LATEST_TIME,
    TIME_RANGE_TEXT,
    SpecError,
    _convert,
    _duration,
)


def run_time(at: Any, delay: Any, now: float, at_key: str = "at", delay_key: str = "in") -> float | None:
    """When a job may start, as epoch seconds, or None for now: `at` is a time (ISO 8601 text,
    local unless it has an offset; a datetime; epoch seconds), `delay` a duration from `now`
    (as `timeout` takes it, or a timedelta)."""
    if at is not None and delay is not None:
        raise SpecError("", f"give {at_key} or {delay_key}, not both")
    if delay is not None:
        if hasattr(delay, "total_seconds"):  # a datetime.timedelta
            delay = delay.total_seconds()
        stamp = now + _convert(delay_key, _duration, delay)
    elif at is not None:
        stamp = _epoch(at_key, at)
    else:
        return None
    if not EARLIEST_TIME <= stamp <= LATEST_TIME:  # False for NaN too
        raise SpecError(at_key if delay is None else delay_key,
                        f"{at!r} is out of range: give a time {TIME_RANGE_TEXT}"
                        if delay is None else f"{delay!r} ends past 9999-12-30")  # fmt: skip
    return stamp


def _epoch(key: str, at: Any) -> float:
    from datetime import date, datetime, time

    if isinstance(at, bool):
        raise SpecError(key, f"{at!r} is not a time")
    if isinstance(at, int | float):
        try:
            return float(at)
        except OverflowError:
            raise SpecError(key, f"that number is out of range: give a time {TIME_RANGE_TEXT}") from None
    if isinstance(at, str):
        try:
            moment = datetime.fromisoformat(at.strip())
        except ValueError:
            raise SpecError(
                key, f"{at!r} is not a time like 2026-12-01T03:00 or 2026-12-01 03:00+01:00"
            ) from None
    elif isinstance(at, datetime):
        moment = at
    elif isinstance(at, date):
        moment = datetime.combine(at, time())
    else:
        raise SpecError(
            key, f"must be a datetime, an ISO 8601 string or epoch seconds, got {type(at).__name__}"
        )
    try:
        if moment.tzinfo is None:
            moment = moment.astimezone()  # local time, as the user sees their clock
        return moment.timestamp()
    except (OverflowError, ValueError, OSError):
        raise SpecError(key, f"{at!r} is out of range: give a time {TIME_RANGE_TEXT}") from None
