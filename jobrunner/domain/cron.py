"""crontab(5) expressions, parsed exactly and translated for APScheduler 3.

APScheduler's own `from_crontab` differs from cron: numeric day-of-week 0 is Monday
there (Sunday in cron, where 7 is Sunday too), day-of-month and day-of-week combine
with AND (cron: OR when both are restricted), and `@daily` is rejected. So every field
is expanded here into explicit values, and the caller builds one trigger per branch.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def aps_fields(self) -> list[dict[str, str]]:
        """Keyword arguments for APScheduler CronTriggers; fire when any of them fires (cron's OR)."""
        base = {
            "second": "0",
            "minute": _join(self.minutes),
            "hour": _join(self.hours),
            "month": _join(self.months),
        }
        weekdays = ",".join(APS_DAYS[d] for d in self.weekdays)
        days = _join(self.days)
        if self.day_restricted and self.weekday_restricted:
            return [{**base, "day": days}, {**base, "day_of_week": weekdays}]
        # cron's rule: a field starting with '*' (even '*/2') makes the two combine with AND
        return [{**base, "day": days, "day_of_week": weekdays}]

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


APS_DAYS = {0: "sun", 1: "mon", 2: "tue", 3: "wed", 4: "thu", 5: "fri", 6: "sat"}


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
