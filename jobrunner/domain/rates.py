"""Rates as users write them ("30/m", "5/s", "1000/h") and the token bucket that enforces one.

A bucket holds up to `capacity` tokens and gains `per_second` of them as time passes; each
start takes one. The capacity is one token, or a tenth of a second's worth at high rates: starts
are spread evenly (30/m is one start every 2 s, as Celery's rate limits do), so in any window of
T seconds at most T * rate + capacity jobs start, and a daemon need not wake for every token
of a fast rate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from jobrunner.domain.durations import parse_duration

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")
_HINT = 'give starts per second, minute, hour or day, like "5/s", "30/m", "1000/h" (or "1/10s")'
EPSILON = 1e-9  # a token short by a rounding error is a token
BURST_S = 0.1  # above 10/s the bucket holds this long's worth of tokens


@dataclass(frozen=True)
class Rate:
    text: str  # as written: "30/m"
    per_second: float
    capacity: float  # the most tokens the bucket holds: the burst

    @property
    def interval(self) -> float:
        """Seconds between starts when the bucket is empty."""
        return 1.0 / self.per_second


def parse_rate(value: object) -> Rate:
    """A Rate from "N/UNIT" or "N/DURATION"; raises ValueError saying what is wrong."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a rate: {_HINT}")
    count, per = int(match.group(1)), match.group(2).lower()
    if per in _UNITS:
        seconds = _UNITS[per]
    else:
        try:
            seconds = parse_duration(per)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate: {_HINT}") from None
    if count < 1 or seconds <= 0:
        raise ValueError(f"{value!r} allows no start at all: {_HINT} (pause the queue to stop it)")
    per_second = count / seconds
    if per_second > 100_000:
        raise ValueError(f"{value!r} is more than 100000 starts a second: leave the rate out for no limit")
    return Rate(value.strip(), per_second, float(max(1, math.floor(per_second * BURST_S))))


def refill(rate: Rate, tokens: float, updated_at: float, now: float) -> float:
    """The tokens a bucket holds at `now` that held `tokens` at `updated_at` (clocks that went
    back give nothing, and take nothing)."""
    return min(rate.capacity, tokens + max(now - updated_at, 0.0) * rate.per_second)


def next_token_at(rate: Rate, tokens: float, now: float) -> float:
    """When a bucket holding `tokens` (< 1) at `now` has a whole one."""
    return now + max(1.0 - tokens, 0.0) / rate.per_second
