"""What a failed attempt becomes. Everything that fails (an exception, an exit code, a timeout,
a lost lease, a dead worker) is described as a Failure and goes through `after_failure`."""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass, field
from enum import StrEnum

from jobrunner.domain.retry import Backoff
from jobrunner.domain.states import Status


class FailureKind(StrEnum):
    EXCEPTION = "exception"  # a Python job raised
    EXIT = "exit"  # a shell job exited non-zero or was killed by a signal
    TIMEOUT = "timeout"  # over its timeout: stopped by the daemon
    LOST = "lost"  # its lease expired: the daemon running it died
    WORKER_DIED = "worker_died"  # the worker process died under it (segfault, OOM kill, os._exit)
    INTERRUPTED = "interrupted"  # the daemon shut down before it finished: run it again
    CANCELLED = "cancelled"  # a user cancelled it while it ran
    PERMANENT = "permanent"  # cannot succeed by retrying (unknown callable, bad result)


#: Exceptions that mean the job itself is wrong: retrying cannot help.
PERMANENT_EXCEPTIONS = frozenset(
    {"ValueError", "TypeError", "KeyError", "IndexError", "AttributeError", "NotImplementedError",
     "ImportError", "ModuleNotFoundError", "SyntaxError", "AssertionError", "PermanentError"}
)  # fmt: skip
#: Exceptions that mean the world was briefly wrong: worth another attempt.
TRANSIENT_EXCEPTIONS = frozenset({"TimeoutError", "ConnectionError", "OSError", "TransientError"})


#: How a job whose cancel was requested while it ran ends, whatever ended the attempt.
CANCELLED_WHILE_RUNNING = "cancelled by user (requested while running; the attempt ended: {ended})"


@dataclass
class Failure:
    """Why an attempt failed, with what the user needs to see in the job's history."""

    kind: FailureKind
    message: str
    exception_names: list[str] = field(default_factory=list)  # the exception's MRO, most specific first
    exit_code: int | None = None
    traceback: str | None = None

    def details(self) -> dict[str, object]:
        data: dict[str, object] = {"kind": self.kind.value}
        if self.exit_code is not None:
            data["exit_code"] = self.exit_code
        if self.exception_names:
            data["exception"] = self.exception_names[0]
        if self.traceback:
            data["traceback"] = self.traceback
        return data


@dataclass(frozen=True)
class RetryPolicy:
    """The job's retry settings, as stored with it."""

    max_retries: int
    backoff: Backoff
    retry_on: tuple[str, ...] = ()
    retry_on_exit_codes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Transition:
    """The decision: the next status, when the next attempt may run, and the line to record."""

    status: Status
    run_at: float | None
    message: str
    consumes_retry: bool = True


def is_transient(policy: RetryPolicy, failure: Failure) -> bool:
    """Transient failures are retried while the budget lasts; permanent ones are dead at once."""
    kind = failure.kind
    if kind in (FailureKind.TIMEOUT, FailureKind.LOST, FailureKind.WORKER_DIED):
        return True
    if kind is FailureKind.PERMANENT:
        return False
    if kind is FailureKind.EXIT:
        if policy.retry_on_exit_codes:  # a task that lists codes says which ones are worth it
            return failure.exit_code in policy.retry_on_exit_codes
        return True
    names = failure.exception_names
    if any(name in policy.retry_on for name in names):
        return True
    for name in names:  # the most specific known class decides
        short = name.rpartition(":")[2].rpartition(".")[2]
        if short in TRANSIENT_EXCEPTIONS:
            return True
        if short in PERMANENT_EXCEPTIONS:
            return False
    return True  # an unknown error is given the benefit of the doubt


def after_failure(
    policy: RetryPolicy, attempts: int, retry_offset: int, failure: Failure, now: float,
    rng: random.Random | None = None, *, cancel_requested: bool = False,
) -> Transition:  # fmt: skip
    """Retry with backoff, or dead-letter: the only place this is decided.

    A cancel requested while the attempt ran wins over however it ended (a lost daemon, a dead
    worker, a timeout, an exception, a shutdown): the job never starts another attempt.
    """
    if failure.kind is FailureKind.CANCELLED:
        return Transition(Status.CANCELLED, None, failure.message)
    if cancel_requested:
        return Transition(Status.CANCELLED, None, CANCELLED_WHILE_RUNNING.format(ended=failure.message))
    if failure.kind is FailureKind.INTERRUPTED:
        return Transition(Status.QUEUED, now, f"{failure.message}; will run again", consumes_retry=False)
    used = max(attempts - retry_offset, 1)  # attempts in this budget, including this one
    if not is_transient(policy, failure):
        return Transition(Status.DEAD, None, f"{failure.message} (permanent error: not retried)")
    if used > policy.max_retries:
        if policy.max_retries == 0:
            return Transition(Status.DEAD, None, failure.message)
        return Transition(Status.DEAD, None, f"{failure.message} (gave up after {used} attempts)")
    delay = policy.backoff.delay(used, rng)
    return Transition(
        Status.RETRYING,
        now + delay,
        f"{failure.message}; retry {used}/{policy.max_retries} in {delay:.1f}s",
    )


def describe_exit(returncode: int) -> str:
    """'exit code 3' or 'killed by signal 9 (SIGKILL)' from a subprocess return code."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"
