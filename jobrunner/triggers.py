"""Fire times from APScheduler triggers: cron (translated from crontab(5)), every N, or once at.

APScheduler computes times; the database decides what fires (see store/schedules.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobrunner.domain.cron import parse_cron
from jobrunner.domain.durations import parse_duration


class TriggerError(ValueError):
    """A bad schedule expression or timezone; the message says which."""


def system_timezone() -> str:
    """The IANA name of the local zone, for schedules that do not name one."""
    try:
        from tzlocal import get_localzone_name

        return get_localzone_name() or "UTC"
    except Exception:
        return "UTC"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TriggerError(f"unknown timezone {name!r}: use an IANA name like Europe/Berlin or UTC") from None


class WallClockCron:
    """An APScheduler cron trigger plus what cron does when a local time repeats."""

    def __init__(self, trigger: Any, once_per_wall_time: bool) -> None:
        self.trigger = trigger
        self.jobrunner_once_per_wall_time = once_per_wall_time

    def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
        return self.trigger.get_next_fire_time(previous, now)


def make_trigger(kind: str, expression: str, timezone: str, anchor: float) -> Any:
    """An APScheduler trigger; `anchor` (epoch seconds) starts intervals and one-off times."""
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    tz = zone(timezone)
    if kind == "cron":
        try:
            cron = parse_cron(expression)
            branches = [CronTrigger(timezone=tz, **fields) for fields in cron.aps_fields()]
        except ValueError as exc:
            raise TriggerError(str(exc)) from None
        trigger = branches[0] if len(branches) == 1 else OrTrigger(branches)
        # cron runs a job at fixed hours once when clocks go back; wildcard-hour jobs run on
        return WallClockCron(trigger, once_per_wall_time=len(cron.hours) < 24)
    if kind == "every":
        try:
            seconds = parse_duration(expression)
        except ValueError as exc:
            raise TriggerError(f"every: {exc}") from None
        if seconds < 1:
            raise TriggerError("every: the interval must be at least 1s")
        start = datetime.fromtimestamp(anchor, tz) + timedelta(seconds=seconds)
        return IntervalTrigger(seconds=seconds, start_date=start, timezone=tz)
    if kind == "at":
        try:
            moment = datetime.fromisoformat(expression)
        except ValueError:
            raise TriggerError(f"at: {expression!r} is not a time like 2026-12-01T03:00") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        return DateTrigger(run_date=moment, timezone=tz)
    raise TriggerError(f"unknown schedule kind {kind!r}")


def next_fire(trigger: Any, after: float | None, now: float) -> float | None:
    """The first fire time strictly after `after`; with `after` None, the first at or after `now`.

    Cron keeps wall-clock semantics across daylight saving: when clocks go back, a local
    time that occurs twice fires once (as cron does), and the result always moves forward.
    """
    if after is None:
        result = trigger.get_next_fire_time(None, datetime.fromtimestamp(now, UTC))
        return result.timestamp() if result is not None else None
    previous = datetime.fromtimestamp(after, UTC)
    result = trigger.get_next_fire_time(previous, previous)
    wall_clock = getattr(trigger, "jobrunner_once_per_wall_time", False)
    for _ in range(8):  # a repeated wall time needs one step past it; never loop for long
        if result is None:
            return None
        stamp = result.timestamp()
        repeated = wall_clock and _local(result) == _local(datetime.fromtimestamp(after, result.tzinfo))
        if stamp > after and not repeated:
            return stamp
        result = trigger.get_next_fire_time(None, datetime.fromtimestamp(max(stamp, after) + 1, UTC))
    return result.timestamp() if result is not None else None


def _local(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def due_times(trigger: Any, first: float, now: float, limit: int = 1000) -> tuple[list[float], float | None]:
    """Fire times from `first` up to `now` (at most `limit`), and the next one after now."""
    times: list[float] = []
    current: float | None = first
    while current is not None and current <= now and len(times) < limit:
        times.append(current)
        current = next_fire(trigger, current, current)
    while current is not None and current <= now:  # more than `limit` missed: jump ahead
        current = next_fire(trigger, current, current)
    return times, current
