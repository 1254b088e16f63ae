"""Sizes as users write them: "512K", "200M", "2G", "1.5G" or a plain number of bytes.

K, M, G and T are powers of 1024, as `ulimit` and systemd's MemoryMax= read them (KB, KiB and
the like mean the same); the accepted grammar is documented in README, next to durations.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([kmgt]?)(?:i?b)?\Z")
_HINT = 'use a number of bytes or units like "512K", "200M", "2G"'
MAX_SIZE = 1 << 60  # an exbibyte: fits a 64-bit column with room, and no machine has it


def parse_size(value: str | int | float) -> int:
    """Bytes from a size; raises ValueError saying what is wrong (a fraction of a byte rounds up)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size: {_HINT}")
    if isinstance(value, int | float):
        number, unit = value, ""
    elif isinstance(value, str):
        match = _SIZE.match(value.strip().lower().replace(" ", ""))
        if match is None:
            raise ValueError(f"{value!r} is not a size: {_HINT}")
        number, unit = float(match.group(1)), match.group(2)
    else:
        raise ValueError(f"{value!r} is not a size: {_HINT}")
    if number != number or number in (float("inf"), float("-inf")) or number < 0:
        raise ValueError(f"{value!r} is not a size: it must be a finite, non-negative number of bytes")
    if number * _UNITS[unit] > MAX_SIZE:
        raise ValueError(f"{value!r} is too large: at most 1048576T")
    scaled = number * _UNITS[unit]
    whole = int(scaled)
    return whole if whole == scaled else whole + 1


def format_size(size: int | float | None) -> str:
    """The shortest exact form parse_size reads back: 2G, 200M, 1536K, 1000; "" for None."""
    if size is None:
        return ""
    size = int(size)
    for unit in ("T", "G", "M", "K"):
        scale = _UNITS[unit.lower()]
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    for unit in ("T", "G", "M", "K"):  # not a whole number of any unit: one decimal, close enough
        scale = _UNITS[unit.lower()]
        if size >= scale * 10:
            return f"{size / scale:.1f}{unit}"
    return str(size)
