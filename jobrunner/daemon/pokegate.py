"""How often a poke may cost the daemon a claim: a flood of pokes costs at most one per interval.

A poke that finds work is answered at once, every time (pickup latency is a poke away). One
that finds nothing (a burst of cancels, a script poking in a loop, a bug) makes the next wait
QUIET_S: meanwhile the socket is not watched, the datagrams wait in its queue (a full queue
drops them: a poke carries no data), and when the interval ends they are drained and answered
with one claim.
"""

from __future__ import annotations

QUIET_S = 0.005  # at most 200 empty claims a second, whatever arrives


class PokeGate:
    def __init__(self) -> None:
        self.quiet_until = 0.0
        self.waiting = False  # a poke arrived during the quiet interval: answer it when it ends
        self.answered = False  # this turn's claim was caused by a poke

    def admit(self, now: float) -> bool:
        """A poke arrived: True to answer it now; False to let it wait for `quiet_until`."""
        if now >= self.quiet_until:
            self.waiting, self.answered = False, True
            return True
        self.waiting = True
        return False

    def due(self, now: float) -> bool:
        """Pokes waited out the quiet interval: watch the socket again."""
        return self.waiting and now >= self.quiet_until

    def claimed(self, now: float, found: int) -> None:
        """After a turn: a poke answered with an empty claim keeps the next one quiet a while."""
        if self.answered:
            self.answered = False
            self.quiet_until = now if found else now + QUIET_S
