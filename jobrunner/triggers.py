"""Fire times of a schedule: cron (crontab(5)), every N, or once at.

Cron times come from domain/cron.py, which follows cron's daylight-saving rules with
zoneinfo: APScheduler 3's CronTrigger adds a day as elapsed time across a clock change,
so daily jobs skipped a day there. `every` and `at` still use APScheduler's triggers,
which are right for them: an interval is elapsed time, whatever the clocks do, and a
one-off is one instant. All three answer APScheduler's `get_next_fire_time`, so the code
below treats them alike. The triggers compute times; the database decides what fires
(see store/schedules.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobrunner.domain.cron import Cron, next_fire_time, parse_cron
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


class CronSchedule:
    """A crontab(5) expression in a timezone, asked as an APScheduler trigger is asked."""

    def __init__(self, cron: Cron, tz: ZoneInfo) -> None:
        self.cron = cron
        self.tz = tz

    def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
        """The first fire after `previous`; with no previous fire, the first at or after `now`."""
        if previous is None:
            stamp = next_fire_time(self.cron, self.tz, now.timestamp(), inclusive=True)
        else:
            stamp = next_fire_time(self.cron, self.tz, previous.timestamp())
        try:
            return datetime.fromtimestamp(stamp, self.tz) if stamp is not None else None
        except (OverflowError, ValueError):  # after the year 9999 in UTC: never, as far as Python counts
            return None


def make_trigger(kind: str, expression: str, timezone: str, anchor: float) -> Any:
    """A trigger with APScheduler's `get_next_fire_time`; `anchor` (epoch seconds) starts intervals."""
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    tz = zone(timezone)
    if kind == "cron":
        try:
            return CronSchedule(parse_cron(expression), tz)
        except ValueError as exc:
            raise TriggerError(str(exc)) from None
    if kind == "every":
        try:
            seconds = parse_duration(expression)
        except ValueError as exc:
            raise TriggerError(f"every: {exc}") from None
        if seconds < 1:
            raise TriggerError("every: the interval must be at least 1s")
        # elapsed time: an aware datetime plus a timedelta would move the wall clock instead
        start = datetime.fromtimestamp(anchor + seconds, tz)
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
    """The first fire time strictly after `after`; with `after` None, the first at or after `now`."""
    if after is None:
        result = trigger.get_next_fire_time(None, datetime.fromtimestamp(now, UTC))
    else:
        previous = datetime.fromtimestamp(after, UTC)
        result = trigger.get_next_fire_time(previous, previous)
    return result.timestamp() if result is not None else None


def due_times(trigger: Any, first: float, now: float, limit: int = 1000) -> tuple[list[float], float | None]:
    """Fire times from `first` up to `now` (at most `limit`), and the next one after now."""
    times: list[float] = []
    current: float | None = first
    while current is not None and current <= now and len(times) < limit:
        times.append(current)
        current = next_fire(trigger, current, current)
    if current is not None and current <= now:  # more than `limit` missed: jump ahead, not step by step
        current = next_fire(trigger, None, now)
    while current is not None and current <= now:  # the first at or after now may be now itself
        current = next_fire(trigger, current, current)
    return times, current
