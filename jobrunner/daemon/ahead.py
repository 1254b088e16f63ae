"""Claim-ahead: a few claimed jobs held by the supervisor, handed to the first worker that frees up.

With tiny jobs the round trip (worker done -> commit -> claim -> send) leaves workers
idle most of the time. Holding a few claimed jobs lets a freed worker start at once,
before the commit. It only switches on while recent jobs are short, and a job held
longer than HOLD_S (a long job came along) is given back, so jobs never wait behind
a long one and `running` stays close to the truth.
"""

from __future__ import annotations

from collections import deque

from jobrunner.store.runs import Claim

SHORT_JOB_S = 0.05  # below this median duration, claiming ahead pays off
HOLD_S = 0.5  # a held job not started within this is given back to the queue
AHEAD_WORK_S = 0.02  # jobs sent ahead to a worker: about this much work, by recent durations
MAX_AHEAD = 32


class ClaimAhead:
    def __init__(self, workers: int) -> None:
        self.limit = workers
        self.held: deque[tuple[Claim, float]] = deque()
        self.durations: deque[float] = deque(maxlen=32)
        self._short: bool | None = None
        self._ahead: int | None = None
        self._typical: float | None = None

    def record_duration(self, seconds: float) -> None:
        self.durations.append(seconds)
        self._short = self._ahead = self._typical = None

    def short(self) -> bool:
        """Recent jobs were short: worth claiming and sending ahead."""
        if self._short is None:
            self._short = len(self.durations) >= 8 and _median(self.durations) <= SHORT_JOB_S
        return self._short

    def typical(self) -> float | None:
        """The median duration of recent jobs, once there are enough of them."""
        if self._typical is None and len(self.durations) >= 8:
            self._typical = _median(self.durations)
        return self._typical

    def send_ahead(self) -> int:
        """How many jobs a worker may have waiting behind the one it runs: none unless jobs are
        short, and about AHEAD_WORK_S of work (so a job never waits long behind the others)."""
        if self._ahead is None:
            if not self.short():
                self._ahead = 0
            else:
                typical = max(_median(self.durations), 1e-4)
                self._ahead = max(1, min(MAX_AHEAD, int(AHEAD_WORK_S / typical)))
        return self._ahead

    def wanted(self, longest_running: float) -> int:
        """How many more jobs to hold now: none while some worker is on a job that is not short."""
        if longest_running > HOLD_S or not self.short():
            return 0
        return max(self.limit - len(self.held), 0)

    def hold(self, claims: list[Claim], now: float) -> None:
        self.held.extend((claim, now) for claim in claims)

    def take(self) -> Claim | None:
        return self.held.popleft()[0] if self.held else None

    def remove(self, job_id: int, attempt: int) -> Claim | None:
        for entry in self.held:
            if (entry[0].id, entry[0].attempt) == (job_id, attempt):
                self.held.remove(entry)
                return entry[0]
        return None

    def stale(self, now: float) -> list[Claim]:
        """Held too long: take them out so they can be given back."""
        out = []
        while self.held and now - self.held[0][1] > HOLD_S:
            out.append(self.held.popleft()[0])
        return out

    def drain(self) -> list[Claim]:
        out = [claim for claim, _ in self.held]
        self.held.clear()
        return out

    def queues(self) -> list[str]:
        return [claim.queue for claim, _ in self.held]

    def __len__(self) -> int:
        return len(self.held)


def _median(values: deque[float]) -> float:
    ordered = sorted(values)  # (the statistics module costs the daemon's start-up more than this)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
