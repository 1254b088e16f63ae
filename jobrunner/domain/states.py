"""Job statuses and the transitions between them, in one place."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"  # ready to run when a worker is free
    SCHEDULED = "scheduled"  # waits for run_at
    WAITING = "waiting"  # waits for the jobs it depends on
    RUNNING = "running"  # claimed; lease_owner holds it until lease_until
    RETRYING = "retrying"  # an attempt failed; the next one waits for run_at
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # retries exhausted or a permanent error: the dead-letter queue
    CANCELLED = "cancelled"


ALL_STATUSES: tuple[Status, ...] = tuple(Status)

#: Nothing more will happen to a job in these states unless a user acts.
FINISHED = frozenset({Status.SUCCEEDED, Status.DEAD, Status.CANCELLED})

#: A job in these states has not started its current attempt and can be cancelled outright.
CANCELLABLE = frozenset({Status.QUEUED, Status.SCHEDULED, Status.WAITING, Status.RETRYING})

#: `retry` puts these back in the queue (retrying: run the pending attempt now).
RETRYABLE = frozenset({Status.DEAD, Status.CANCELLED, Status.RETRYING})

#: Which status may follow which; anything else is a bug.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    Status.SCHEDULED: frozenset({Status.QUEUED, Status.CANCELLED}),
    Status.WAITING: frozenset({Status.QUEUED, Status.CANCELLED}),
    Status.RUNNING: frozenset(
        {Status.SUCCEEDED, Status.RETRYING, Status.DEAD, Status.CANCELLED, Status.QUEUED}
    ),
    Status.RETRYING: frozenset({Status.QUEUED, Status.CANCELLED}),
    Status.SUCCEEDED: frozenset(),
    Status.DEAD: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED, Status.WAITING}),
}


def can_transition(old: Status, new: Status) -> bool:
    """True when `old -> new` is a change the runner is allowed to make."""
    return new in TRANSITIONS[old]


def parse_status(text: str) -> Status:
    """A status from its exact word; raises ValueError naming the valid words."""
    try:
        return Status(text.strip().lower())
    except ValueError:
        words = ", ".join(s.value for s in Status)
        raise ValueError(f"unknown status {text!r}: use one of {words}") from None
