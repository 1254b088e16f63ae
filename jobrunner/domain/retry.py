"""How long to wait before the next attempt: exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """delay(n) = uniform(0, min(max, base * factor**(n-1))): full jitter spreads a thundering herd."""

    base: float = 1.0
    factor: float = 2.0
    max: float = 300.0

    def ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt number `attempt` (1-based)."""
        exponent = max(attempt - 1, 0)
        try:
            return min(self.max, self.base * self.factor**exponent)
        except OverflowError:
            return self.max

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A jittered delay in seconds before the attempt after `attempt`."""
        return (rng or random).uniform(0, self.ceiling(attempt))
