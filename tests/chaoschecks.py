"""The chaos test's invariants (tests/test_chaos.py), checked over a whole run's evidence: the
ledger of every process the jobs started, each job's history, and the requests the driver made.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.chaoshelpers import LedgerLine, PidWatcher, Watched

FINAL = frozenset({"succeeded", "dead", "cancelled"})
# All times are CLOCK_REALTIME on this host (`date +%s.%N` in jobs, time.time() here and in the
# daemon) and every one used is a moment a process was certainly alive, so no polling slack is
# needed; this absorbs NTP slewing of the realtime clock and the daemon's event times, which
# the JSON gives truncated to the millisecond.
CLOCK_SLACK = 0.05
# A process the watcher never saw alive (a `true` job ends within its 20 ms) is dated by its
# first ledger line, written after `sh` and `date` start: on a loaded 2-core machine that can
# lag the fork. A process it did see is dated by its fork time from /proc (10 ms ticks).
LINE_LAG = 0.5
SHOWN = 12  # violations listed per invariant; the rest are counted


@dataclass
class Request:
    """A cancel or retry the test issued, with the wall-clock times around the command."""

    verb: str
    job: int
    t0: float
    t1: float
    code: int
    outcome: dict[str, Any] | None
    error: str = ""
    why: str = ""

    @property
    def accepted(self) -> bool:
        return self.code == 0 and self.outcome is not None

    @property
    def direct(self) -> bool:
        """A cancel that found the job not running: it was cancelled there and then."""
        return self.accepted and self.verb == "cancel" and self.outcome["to"] == "cancelled"  # type: ignore[index]

    def describe(self) -> str:
        what = (
            f"{self.outcome['from']} -> {self.outcome['to']}" if self.outcome else f"refused ({self.error})"
        )
        return f"{self.verb} of job {self.job} at [{self.t0:.3f}, {self.t1:.3f}]{' ' + self.why if self.why else ''}: {what}"

# ------------------------------------------------------------------------------------ the checks


@dataclass(frozen=True)
class Event:
    at: float
    attempt: int
    old: str | None
    new: str
    message: str

    @staticmethod
    def parse(raw: dict[str, Any]) -> Event:
        return Event(
            datetime.fromisoformat(raw["at"]).timestamp(),
            raw["attempt"],
            raw["from"],
            raw["to"],
            raw["message"] or "",
        )

    def describe(self) -> str:
        return f"{self.at:.3f} attempt {self.attempt} {self.old} -> {self.new} ({self.message})"

    @property
    def is_claim(self) -> bool:
        return self.new == "running" and self.old != "running"

    @property
    def is_end(self) -> bool:
        return self.old == "running" and self.new != "running"

    @property
    def is_user_cancel(self) -> bool:
        """A cancel from `jobrunner cancel`: a request on a running job, or a cancel on the spot."""
        if self.old == "running" and self.new == "running":
            return self.message.startswith("cancel requested")
        return self.new == "cancelled" and self.old in ("queued", "retrying", "waiting", "scheduled")

    @property
    def is_user_retry(self) -> bool:
        return self.message == "retried by user"


def by_attempt(procs: Iterable[Watched]) -> dict[int, dict[int, list[Watched]]]:
    """job -> attempt -> its processes (the shell first, then its grandchildren)."""
    grouped: dict[int, dict[int, list[Watched]]] = defaultdict(lambda: defaultdict(list))
    for watched in procs:
        grouped[watched.line.job][watched.line.attempt].append(watched)
    for attempts in grouped.values():
        for group in attempts.values():
            group.sort(key=lambda w: (w.line.kind != "start", w.line.at))
    return grouped


def copies(procs: Iterable[Watched]) -> dict[int, list[tuple[float, int, list[Watched]]]]:
    """job -> every copy of an attempt that ran: (start, attempt, its processes), by start.

    A copy is one `start` line (two copies of one attempt are two); a grandchild belongs to the
    latest copy of its attempt that started before it wrote its line."""
    found: dict[int, list[tuple[float, int, list[Watched]]]] = defaultdict(list)
    for watched in sorted(procs, key=lambda w: w.line.at):
        line, runs = watched.line, found[watched.line.job]
        if line.kind == "start":
            runs.append((watched.started, line.attempt, [watched]))
            continue
        mine = [run for run in runs if run[1] == line.attempt]
        if mine:
            mine[-1][2].append(watched)
        else:  # its shell's start line is missing: the grandchild stands for the attempt
            runs.append((watched.started, line.attempt, [watched]))
    for runs in found.values():
        runs.sort(key=lambda run: run[0])
    return found


def check_overlaps(procs: Iterable[Watched]) -> list[str]:
    """1. No two attempts of one job overlap: one copy's process tree (its shell and grandchildren)
    is gone before the next copy's shell starts."""
    found = []
    for job, runs in sorted(copies(procs).items()):
        for k, (start_b, attempt_b, group_b) in enumerate(runs):
            for _start_a, attempt_a, group_a in runs[:k]:
                last_a = max(group_a, key=lambda w: w.alive_until)
                if last_a.alive_until > start_b + CLOCK_SLACK:
                    found.append(
                        f"job {job}: attempt {attempt_a} (shell pid {group_a[0].line.pid}) was still running "
                        f"{last_a.alive_until - start_b:.3f}s after attempt {attempt_b} (shell pid "
                        f"{group_b[0].line.pid}) started at {start_b:.3f}: attempt {attempt_a}'s "
                        f"{last_a.describe()}; attempt {attempt_b}'s {group_b[0].describe()}"
                    )
    return found


def check_attempt_numbers(lines: Iterable[LedgerLine]) -> list[str]:
    """2. No attempt number appears twice for one job (two start lines with the same job and attempt)."""
    starts: dict[tuple[int, int], list[LedgerLine]] = defaultdict(list)
    found = []
    for line in lines:
        if line.kind == "start":
            starts[(line.job, line.attempt)].append(line)
            if line.attempt < 1:
                found.append(f"job {line.job}: a start line with attempt {line.attempt}: {line.raw!r}")
    for (job, attempt), same in sorted(starts.items()):
        if len(same) > 1:
            shown = "; ".join(f"pid {line.pid} at {line.at:.3f}" for line in same)
            found.append(f"job {job}: attempt {attempt} started {len(same)} times: {shown}")
    return found


def check_final(
    ids: Iterable[int], jobs: dict[int, dict[str, Any]], events: dict[int, list[Event]]
) -> list[str]:
    """3. Every job ends in a final state."""
    found = []
    for job_id in ids:
        job = jobs.get(job_id)
        if job is None:
            found.append(f"job {job_id}: missing from `jobrunner list`")
        elif job["status"] not in FINAL:
            last = "; ".join(e.describe() for e in events.get(job_id, [])[-3:])
            found.append(
                f"job {job_id}: {job['status']} (attempts {job['attempts']}, lease_owner {job['lease_owner']}, "
                f"lease_until {job['lease_until']}, cancel_requested {job['cancel_requested']}); last events: {last}"
            )
    return found


def _matching(events: list[Event], request: Request, test: Any) -> Event | None:
    """The event a request wrote: the daemon's clock is ours, its times truncated to the ms."""
    for event in events:
        if test(event) and request.t0 - 0.01 <= event.at <= request.t1 + 0.01:
            return event
    return None


def check_cancels(requests: list[Request], jobs: dict[int, dict[str, Any]], events: dict[int, list[Event]],
                  procs: Iterable[Watched]) -> list[str]:  # fmt: skip
    """4. A cancel is durable: once requested, no later attempt is claimed or started, and the job
    ends cancelled, until the test itself retries the job.

    - History: no claim (-> running) recorded between a user's cancel and the user's next retry.
    - Ledger: no attempt numbered above the job's attempt count at the cancel started before that
      retry (the count is in the cancel's own event), whatever the history says.
    - A cancel that found the job queued or retrying (not running) leaves no attempt in flight, so
      no process of the job may begin after it returned at all (allowing LINE_LAG or CLOCK_SLACK
      between a fork and the time we have for it).
    - If a cancel was the test's last word on a job, the job ends cancelled; succeeded is allowed
      only when it was running at the cancel and its attempt ran to its own end with exit 0.
    """
    found = []
    grouped = by_attempt(procs)
    for job_id, history in sorted(events.items()):
        window: Event | None = None
        for event in history:
            if event.is_user_cancel:
                window = window or event
            elif event.is_user_retry:
                window = None
            elif window is not None and event.is_claim:
                ran = grouped.get(job_id, {}).get(event.attempt, [])
                what = f"and it ran: {ran[0].describe()}" if ran else "(no ledger line: it did not start)"
                found.append(f"job {job_id}: attempt {event.attempt} claimed at {event.at:.3f} after the cancel "
                             f"[{window.describe()}] {what}")  # fmt: skip
    mine = sorted((r for r in requests if r.accepted), key=lambda r: r.t0)
    for request in mine:
        if request.verb != "cancel":
            continue
        job_id, history = request.job, events.get(request.job, [])
        later = [r for r in mine if r.job == job_id and r.t0 > request.t0]
        retry = next((r for r in later if r.verb == "retry"), None)
        cancel_event = _matching(history, request, lambda e: e.is_user_cancel)
        retry_event = _matching(history, retry, lambda e: e.is_user_retry) if retry else None
        if cancel_event is None:
            found.append(f"job {job_id}: no cancel in its history for the {request.describe()}")
            continue
        upto = retry_event.attempt if retry_event else None
        for attempt, group in sorted(grouped.get(job_id, {}).items()):
            if attempt > cancel_event.attempt and (upto is None or attempt <= upto):
                found.append(f"job {job_id}: attempt {attempt} ran after the {request.describe()} "
                             f"(attempt count at the cancel: {cancel_event.attempt}): {group[0].describe()}")  # fmt: skip
        if request.direct:
            horizon = retry.t0 if retry else float("inf")
            for group in grouped.get(job_id, {}).values():
                for watched in group:
                    lag = CLOCK_SLACK if watched.forked_at is not None else LINE_LAG
                    if request.t1 + lag < watched.started < horizon:
                        found.append(f"job {job_id}: a process began {watched.started - request.t1:.3f}s after the "
                                     f"{request.describe()} (the job was not running): attempt "
                                     f"{watched.line.attempt} {watched.describe()}")  # fmt: skip
        if not later:
            job = jobs.get(job_id, {})
            status = job.get("status")
            if status == "cancelled" or status not in FINAL:  # not final: invariant 3 says so
                continue
            last = grouped.get(job_id, {}).get(job.get("attempts", -1), [])
            ran_out = bool(last and last[0].end and last[0].end.rc == 0)
            if status == "succeeded" and not request.direct and ran_out:
                continue
            found.append(f"job {job_id}: ended {status} after the {request.describe()}, the test's last word on it "
                         f"(error: {job.get('error')!r}); last events: "
                         + "; ".join(e.describe() for e in history[-3:]))  # fmt: skip
    return found


def check_stops(
    procs: Iterable[Watched], events: dict[int, list[Event]], jobs: dict[int, dict[str, Any]]
) -> list[str]:
    """5a. Stop means stop: every process of an attempt (grandchildren included) is gone by the
    time the daemon records that attempt's end (running -> anything)."""
    found = []
    for job_id, attempts in sorted(by_attempt(procs).items()):
        history = events.get(job_id, [])
        for attempt, group in sorted(attempts.items()):
            started = min(w.started for w in group)
            ends = [e for e in history if e.attempt == attempt and e.is_end and e.at >= started - 1.0]
            if not ends:
                if jobs.get(job_id, {}).get("status") in FINAL:
                    found.append(f"job {job_id}: attempt {attempt} ran ({group[0].describe()}) but its history "
                                 "records no end for it: " + "; ".join(e.describe() for e in history[-4:]))  # fmt: skip
                continue
            end = ends[0]
            for watched in group:
                if watched.alive_until > end.at + CLOCK_SLACK:
                    found.append(f"job {job_id}: attempt {attempt} recorded ended [{end.describe()}] but its "
                                 f"{watched.describe()} was alive {watched.alive_until - end.at:.3f}s later")  # fmt: skip
    return found


def check_nothing_left(
    alive: list[Watched], stray: list[tuple[int, str, str, str]], jobs: dict[int, dict[str, Any]]
) -> list[str]:
    """5b. No process of any job is alive once the run is over."""
    found = [f"job {w.line.job} ({jobs.get(w.line.job, {}).get('status')}): attempt {w.line.attempt}'s "
             f"{w.describe()} is still alive" for w in alive]  # fmt: skip
    named = {w.line.pid for w in alive}
    found += [f"job {job} attempt {attempt}: pid {pid} `{line[:80]}` is still alive"
              for pid, job, attempt, line in stray if pid not in named]  # fmt: skip
    return found


# ------------------------------------------------------------------------------------ the test


def report(
    seed: int,
    jobs: int,
    seconds: float,
    sections: dict[str, list[str]],
    timeline: list[str],
    logs: list[tuple[str, str]],
    watcher: PidWatcher,
) -> str:
    failed = [name for name, found in sections.items() if found]
    out = [f"chaos seed={seed} jobs={jobs} seconds={seconds:g}: "
           + (f"{len(failed)} invariant(s) broken: {', '.join(failed)}" if failed else "every invariant held"),
           f"replay: JOBRUNNER_CHAOS_SEED={seed} JOBRUNNER_CHAOS_JOBS={jobs} JOBRUNNER_CHAOS_SECONDS={seconds:g} "
           ".venv/bin/pytest tests/test_chaos.py -x -s",
           f"watcher: {len(watcher.procs)} processes, {len(watcher.lines)} ledger lines, "
           f"longest gap between polls {watcher.max_gap * 1000:.0f} ms"]  # fmt: skip
    jobs_named: list[int] = []
    for name, found in sections.items():
        if not found:
            continue
        out.append(f"\n== {name}: {len(found)} violation(s) [seed={seed}]")
        out += [f"  - {text}" for text in found[:SHOWN]]
        if len(found) > SHOWN:
            out.append(f"  ... and {len(found) - SHOWN} more")
        for text in found[:3]:
            if text.startswith("job "):
                job = int(text.split()[1].rstrip(":"))
                if job not in jobs_named:
                    jobs_named.append(job)
    for job in jobs_named[:6]:
        out.append(f"\n-- job {job}: its ledger lines")
        out += [f"  {line.raw}" for line in watcher.lines if line.job == job]
        out.append(f"-- job {job}: daemon log lines (A: the primary daemon, B1, B2...: the second ones)")
        lines = sorted((line[:19], label, line) for label, text in logs for line in text.splitlines()
                       if f"job {job} " in line or f"job {job}:" in line)  # fmt: skip
        out += [f"  [{label}] {line}" for _, label, line in lines[-14:]] or ["  (none)"]
    if failed:
        out.append("\n-- chaos timeline:")
        out += [f"  {line}" for line in timeline]
    out.append(f"\n[seed={seed}]")
    return "\n".join(out)


