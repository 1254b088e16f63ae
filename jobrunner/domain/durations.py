"""Durations as users write them: "30s", "10m", "1h30m", "7d", "1.5h" or plain seconds.

A twenty-line parser with exact error messages beats a dependency whose failure mode
is returning None; the accepted grammar is documented in README.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_HINT = 'use a number of seconds or units like "30s", "10m", "1h30m", "7d"'
#: The longest duration a job accepts (timeout, backoff, --in): longer ones are typos, and
#: 1e12 seconds put a job past the year 9999, where no date can be shown.
MAX_DURATION_S = 3650 * 86400.0
MAX_DURATION_TEXT = "3650d (about ten years)"


def parse_duration(value: str | int | float, maximum: float | None = None) -> float:
    """Seconds from a duration, at most `maximum` when given; raises ValueError saying what is wrong."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration: {_HINT}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too big for a float
            raise ValueError(f"that number of seconds is too long: at most {MAX_DURATION_TEXT}") from None
    elif not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration: {_HINT}")
    else:
        text = value.strip().lower().replace(" ", "")
        if not text:
            raise ValueError(f"empty duration: {_HINT}")
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text):
                raise ValueError(f"{value!r} is not a duration: {_HINT}") from None
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a duration: it must be a finite, non-negative time")
    if maximum is not None and seconds > maximum:
        limit = MAX_DURATION_TEXT if maximum == MAX_DURATION_S else f"{maximum:g}s"
        raise ValueError(f"{value!r} is too long: at most {limit}")
    return seconds


def format_duration(seconds: float | None) -> str:
    """A short human form: 850ms, 12s, 3m05s, 2h10m, 3d4h."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        if seconds == int(seconds) or seconds >= 10:
            return f"{seconds:.0f}s"
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"
