"""Priorities: names for the common levels, integers 0-9 for the rest (higher runs first)."""

from __future__ import annotations

NAMED_PRIORITIES: dict[str, int] = {"low": 2, "normal": 5, "high": 7, "critical": 9}
DEFAULT_PRIORITY = NAMED_PRIORITIES["normal"]
_NAMES_BY_VALUE = {v: k for k, v in NAMED_PRIORITIES.items()}


def parse_priority(value: str | int) -> int:
    """An integer 0-9 from a name or number; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a priority: use low, normal, high, critical or 0-9")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().lower()
        if text in NAMED_PRIORITIES:
            return NAMED_PRIORITIES[text]
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a priority: use low, normal, high, critical or 0-9") from None
    if not 0 <= number <= 9:
        raise ValueError(f"priority {number} is out of range: use 0-9 or low, normal, high, critical")
    return number


def priority_label(value: int) -> str:
    """The name for a named level, else the number, for human output."""
    return _NAMES_BY_VALUE.get(value, str(value))
