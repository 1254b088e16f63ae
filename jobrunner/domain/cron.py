"""crontab(5) expressions, parsed exactly, and the instants they fire at in a timezone.

APScheduler 3 is not used for cron: its `from_crontab` differs from cron (numeric
day-of-week 0 is Monday there, day-of-month and day-of-week combine with AND, `@daily`
is rejected), and its CronTrigger adds a day as elapsed time across a daylight-saving
change, so a daily job skipped a day. Here every field is expanded into explicit values
and each day's wall-clock times are turned into instants with zoneinfo, by the rules of
Vixie cron(8), which Debian's cron and cronsim follow: a fixed-time job whose time is
skipped in spring runs at the end of the gap, and one whose time repeats in autumn runs
once (the first time); a job with '*' in its minute or hour field runs on the clock as
it reads, so the missing hour has no runs and the repeated hour runs twice.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, date, datetime, timedelta, tzinfo
from functools import lru_cache

MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}  # fmt: skip
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
CRON_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]  # cron numbering: 0 (and 7) is Sunday
FIELDS = (  # name, low, high, names (index 0 = low)
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day-of-month", 1, 31, None),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 7, CRON_DAYS),
)


class CronError(ValueError):
    """A bad cron expression; the message names the field."""


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the set of values of each field, and which fields were restricted."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday ... 6 = Saturday
    day_restricted: bool  # the field does not start with '*': cron ORs two such fields
    weekday_restricted: bool
    fixed_time: bool  # neither minute nor hour starts with '*': daylight-saving care applies

    def runs_on(self, day: date) -> bool:
        """Whether the day fields name this date."""
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.weekday() + 1) % 7 in self.weekdays  # Python counts from Monday, cron from Sunday
        if self.day_restricted and self.weekday_restricted:
            return in_days or in_weekdays
        # cron's rule: a field starting with '*' (even '*/2') makes the two combine with AND
        return in_days and in_weekdays

    def describe(self) -> str:
        """A short human reading, e.g. 'at 03:00 on Sun' or 'every 15 minutes'."""
        parts: list[str] = []
        if len(self.hours) == 24 and len(self.minutes) == 60:
            parts.append("every minute")
        elif len(self.hours) == 24 and _is_step(self.minutes, 0, 59):
            step = self.minutes[1] - self.minutes[0]
            parts.append(f"every {step} minutes")
        elif len(self.hours) == 24:
            parts.append("every hour at minute " + ",".join(str(m) for m in self.minutes))
        elif len(self.minutes) * len(self.hours) <= 4:
            times = [f"{h:02d}:{m:02d}" for h in self.hours for m in self.minutes]
            parts.append("at " + ", ".join(times))
        else:
            parts.append(f"at minute {_join(self.minutes)} past hour {_join(self.hours)}")
        days: list[str] = []
        if len(self.days) < 31:
            days.append("on day " + _join(self.days) + " of the month")
        if len(self.weekdays) < 7:
            days.append("on " + ",".join(CRON_DAYS[d].capitalize() for d in self.weekdays))
        if days:
            both = self.day_restricted and self.weekday_restricted
            parts.append((" or " if both else " and ").join(days))
        if len(self.months) < 12:
            parts.append("in " + ",".join(MONTHS[m - 1].capitalize() for m in self.months))
        return " ".join(parts)


def _join(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values)


def _is_step(values: tuple[int, ...], low: int, high: int) -> bool:
    if len(values) < 2 or values[0] != low:
        return False
    step = values[1] - values[0]
    return list(values) == list(range(low, high + 1, step))


def parse_cron(text: str) -> Cron:
    """Parse a 5-field crontab expression or an @macro; raises CronError naming the bad field."""
    raw = text.strip()
    if raw.startswith("@"):
        if raw.lower() == "@reboot":
            raise CronError("@reboot is not a schedule: run the job from your init system instead")
        if raw.lower() not in MACROS:
            raise CronError(f"unknown macro {raw!r}: use one of {', '.join(MACROS)}")
        expanded = MACROS[raw.lower()]
    else:
        expanded = raw
    parts = expanded.split()
    if len(parts) != 5:
        raise CronError(
            f"{text!r} has {len(parts)} fields; cron needs 5: minute hour day-of-month month day-of-week"
        )
    values = [
        _parse_field(part, position, *spec) for position, (part, spec) in enumerate(zip(parts, FIELDS, strict=True), start=1)
    ]
    weekdays = tuple(sorted({d % 7 for d in values[4]}))
    return Cron(
        text=raw,
        minutes=tuple(values[0]),
        hours=tuple(values[1]),
        days=tuple(values[2]),
        months=tuple(values[3]),
        weekdays=weekdays,
        day_restricted=not parts[2].startswith("*"),
        weekday_restricted=not parts[4].startswith("*"),
        fixed_time=not parts[0].startswith("*") and not parts[1].startswith("*"),
    )


def _parse_field(part: str, position: int, name: str, low: int, high: int, names: list[str] | None) -> list[int]:
    where = f"cron field {position} ({name}) {part!r}"
    result: set[int] = set()
    for item in part.lower().split(","):
        if not item:
            raise CronError(f"{where}: empty list item")
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{where}: step {step_text!r} must be a whole number above 0")
            step = int(step_text)
        if body == "*":
            start, end = low, high if name != "day-of-week" else 6
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = _value(first, where, low, high, names), _value(last, where, low, high, names)
            if start > end:
                raise CronError(f"{where}: range {body!r} runs backwards")
        else:
            start = _value(body, where, low, high, names)
            end = high if step_text else start
        result.update(range(start, end + 1, step))
    return sorted(result)


def _value(text: str, where: str, low: int, high: int, names: list[str] | None) -> int:
    if names and text in names:
        return names.index(text) + low
    if not text.isdigit():
        accepted = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
        raise CronError(f"{where}: {text!r} is not a value ({accepted})")
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{where}: {number} is out of range {low}-{high}")
    return number


def next_fire_time(cron: Cron, tz: tzinfo, after: float, inclusive: bool = False) -> float | None:
    """The first instant (epoch seconds) after `after`, or at it when `inclusive`, at which
    `cron` fires in `tz`; None if it never fires again."""
    # a repeated hour can put one of yesterday's fires after `after`; a gap only moves fires later
    first_day = datetime.fromtimestamp(after, tz).date() - timedelta(days=1)
    found: float | None = None
    found_day = first_day
    for day in _days_named(cron, first_day):
        if found is not None and day > found_day + timedelta(days=1):
            break  # a later day's fires come after this one's (one day of slack for folds at midnight)
        times = _fires_on(cron, tz, day)
        index = bisect_left(times, after) if inclusive else bisect_right(times, after)
        if index < len(times) and (found is None or times[index] < found):
            found, found_day = times[index], day
    return found


def _days_named(cron: Cron, start: date) -> Iterator[date]:
    """The dates the expression runs on, from `start`, for one 400-year cycle of the calendar
    (after which weekdays and leap years repeat, so an expression silent that long never fires)."""
    year, month, first = start.year, start.month, start.day
    for _ in range(401 * 12):
        if month in cron.months:
            for day in range(first, calendar.monthrange(year, month)[1] + 1):
                candidate = date(year, month, day)
                if cron.runs_on(candidate):
                    yield candidate
        first = 1
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        if year > MAXYEAR:
            return


@lru_cache(maxsize=256)  # the daemon asks about the same few days again and again
def _fires_on(cron: Cron, tz: tzinfo, day: date) -> tuple[float, ...]:
    """The instants, sorted, at which `cron` fires for the wall-clock times it names on `day`."""
    times: set[float] = set()
    for hour in cron.hours:
        for minute in cron.minutes:
            wall = datetime(day.year, day.month, day.day, hour, minute)
            earlier = wall.replace(tzinfo=tz).timestamp()  # fold=0: the offset in force before a change
            later = wall.replace(tzinfo=tz, fold=1).timestamp()
            if earlier == later:  # an ordinary time
                times.add(earlier)
            elif earlier < later:  # clocks went back: this time happens twice
                times.add(earlier)
                if not cron.fixed_time:
                    times.add(later)
            elif cron.fixed_time:  # clocks jumped over this time: run when the jump is done
                times.add(_end_of_gap(tz, later, earlier))
    return tuple(sorted(times))


def _end_of_gap(tz: tzinfo, low: float, high: float) -> float:
    """The instant in (low, high] at which clocks jumped forward: the first one after the gap."""
    after_jump = _offset_at(tz, high)
    low_s, high_s = int(low), int(high)  # transitions fall on whole seconds
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if _offset_at(tz, middle) == after_jump:
            high_s = middle
        else:
            low_s = middle
    return float(high_s)


def _offset_at(tz: tzinfo, instant: float) -> timedelta | None:
    return datetime.fromtimestamp(instant, tz).utcoffset()
