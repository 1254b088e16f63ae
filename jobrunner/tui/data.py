"""Everything the TUI reads or writes, run in worker threads through the store's public API.

Nothing here touches a widget: functions take the Store and `now` and return plain data
or a one-line message, so they are safe off the UI thread and easy to test.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from jobrunner.domain.states import Status
from jobrunner.errors import UsageError
from jobrunner.store import pages, queries, rates, repo, schedules
from jobrunner.store.db import Store
from jobrunner.store.queries import JobFilter

if TYPE_CHECKING:
    from jobrunner.config import Config


@contextmanager
def thread_connection(store: Store) -> Iterator[Store]:
    """Use the store from a worker thread and close that thread's connection afterwards.

    peewee keeps one connection per thread; worker threads come from a pool, so closing
    keeps the number of open connections to the UI thread's one between refreshes.
    """
    try:
        yield store
    finally:
        if threading.current_thread() is not threading.main_thread():
            store.close()


#: Counts stop past this: the header says "over 10,000" (counting reads an index entry per job).
COUNT_CAP = pages.COUNT_CAP
QUEUE_NAMES_KEEP_S = 2.0  # how long a slow look for the queues' names is reused (a big backlog)


@dataclass(frozen=True)
class PageRequest:
    """Which page of which jobs a table wants: results for an older request are dropped."""

    statuses: tuple[Status, ...] = ()
    queues: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    search: str = ""
    order_by: str | None = None  # a queries.SORTABLE column, "-" first for descending; None: newest first
    offset: int = 0  # rows before the page: from the first row, or from the last with from_end
    limit: int = 20
    from_end: bool = False  # End: the last page (offset 0) and those before it, when the total is "over"

    @property
    def where(self) -> JobFilter:
        return JobFilter(list(self.statuses), list(self.queues), list(self.tags), self.search or None)

    @property
    def filtered(self) -> bool:
        return bool(self.statuses or self.queues or self.tags or self.search)

    def at(self, offset: int, from_end: bool | None = None) -> PageRequest:
        return replace(self, offset=max(offset, 0), from_end=self.from_end if from_end is None else from_end)


@dataclass
class Snapshot:
    """One refresh: the visible page, where it is, and the header's figures. Every count is
    exact up to COUNT_CAP and COUNT_CAP + 1 past it ("over 10,000")."""

    request: PageRequest
    jobs: list[dict[str, Any]]
    offset: int  # where the page is, clamped to what exists: rows before it (from the end with from_end)
    total: int  # jobs matching the filter, up to COUNT_CAP + 1
    stats: dict[str, Any]  # "by_status" and "total" (counted up to the cap), "queues": {name: its statuses}
    daemons: list[dict[str, Any]]  # freshest heartbeat first, alive or not
    paused: list[str] = field(default_factory=list)
    finished_last_minute: int = 0
    rate_limited: list[str] = field(default_factory=list)  # queues with jobs queued and no token yet
    from_end: bool = False  # the offset counts from the last row: the total is over the cap

    @property
    def exact(self) -> bool:
        return self.total <= COUNT_CAP


def over(count: int) -> bool:
    return count > COUNT_CAP


def count_text(count: int, short: bool = False) -> str:
    """A count as the TUI shows it: `over 10,000` past the cap (`short`: `>10k`, for the
    header's crowded lines)."""
    if not over(count):
        return str(count)
    if short:
        return f">{COUNT_CAP // 1000}k" if COUNT_CAP % 1000 == 0 else f">{COUNT_CAP}"
    return f"over {COUNT_CAP:,}"


_queue_names: weakref.WeakKeyDictionary[Store, tuple[float, dict[str, set[str]]]] = weakref.WeakKeyDictionary()


def queue_statuses(store: Store) -> dict[str, set[str]]:
    """Each queue with the statuses it has jobs in; reused for a moment when the look was slow
    (queued jobs' queues are read from the claim index, a row per queued job)."""
    kept = _queue_names.get(store)
    if kept is not None and time.monotonic() < kept[0]:
        return kept[1]
    started = time.monotonic()
    found = pages.queue_statuses(store)
    if time.monotonic() - started > 0.005:
        _queue_names[store] = (time.monotonic() + QUEUE_NAMES_KEEP_S, found)
    else:
        _queue_names.pop(store, None)
    return found


def matching_total(store: Store, request: PageRequest, by_status: dict[str, int]) -> int:
    """How many jobs match, up to the cap: from the counts per status already read when that is
    enough (no second look), else counted from the filter's indexes."""
    if request.tags or request.search or request.queues:
        return queries.count_jobs(store, request.where, up_to=COUNT_CAP)
    statuses = [s.value for s in request.statuses] or list(by_status)
    return min(sum(by_status.get(s, 0) for s in statuses), COUNT_CAP + 1)


def fetch_page(store: Store, request: PageRequest, now: float) -> Snapshot:
    """Read one page (never all jobs) plus counts up to a cap and the daemons' heartbeats."""
    with thread_connection(store):
        by_status = pages.status_counts(store, COUNT_CAP)
        queues = queue_statuses(store)
        stats = {"by_status": by_status, "total": min(sum(by_status.values()), COUNT_CAP + 1), "queues": queues}
        total = matching_total(store, request, by_status)
        jobs, offset, from_end = _page(store, request, total)
        daemons = queries.daemons(store, now)
        paused = queries.paused_queues(store)
        finished = queries.finished_since(store, now - 60)
        limits = rates.states(store, now)
    limited = sorted(name for name, limit in limits.items()
                     if limit["next_token_in"] is not None and Status.QUEUED.value in queues.get(name, ()))  # fmt: skip
    return Snapshot(request, jobs, offset, total, stats, daemons, paused, finished, rate_limited=limited,
                    from_end=from_end)  # fmt: skip


def _page(store: Store, request: PageRequest, total: int) -> tuple[list[dict[str, Any]], int, bool]:
    """The page the request points at, clamped to what exists: (jobs, offset, from_end). With an
    exact total an offset counts from the first row; past the cap, End reads the last page from
    the end, and an offset past the last row becomes the last page."""
    where, limit, order = request.where, request.limit, request.order_by
    if total <= COUNT_CAP:
        last = max(total - limit, 0)
        offset = max(last - request.offset, 0) if request.from_end else min(request.offset, last)
        return queries.list_jobs(store, where, limit=limit, offset=offset, order_by=order), offset, False
    if not request.from_end:
        jobs = queries.list_jobs(store, where, limit=limit, offset=request.offset, order_by=order)
        if len(jobs) == limit or request.offset == 0:
            return jobs, request.offset, False
        return queries.list_jobs(store, where, limit=limit, from_end=True, order_by=order), 0, True
    jobs = queries.list_jobs(store, where, limit=limit, offset=request.offset, order_by=order, from_end=True)
    if len(jobs) < limit:  # before the first row: the first page
        return queries.list_jobs(store, where, limit=limit, order_by=order), 0, False
    return jobs, request.offset, True


def fetch_job(store: Store, job_id: int) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """A job, its history, and its dependencies and dependents with their statuses."""
    with thread_connection(store):
        job = queries.get_job(store, job_id)
        return job, queries.job_events(store, job_id), queries.dependency_links(store, job_id)


def _summary(outcomes: list[repo.Outcome]) -> str:
    if len(outcomes) == 1:
        o = outcomes[0]
        change = o.new.value if o.old == o.new else f"{o.old.value} → {o.new.value}"
        return f"job {o.job_id}: {change}" + ("" if o.message == o.new.value else f" ({o.message})")
    return f"{len(outcomes)} jobs: " + ", ".join(sorted({o.message for o in outcomes}))


def cancel_jobs(store: Store, ids: list[int], now: float) -> str:
    with thread_connection(store):
        return _summary(repo.cancel(store, ids, now))


def retry_jobs(store: Store, ids: list[int], now: float) -> str:
    with thread_connection(store):
        return _summary(repo.retry(store, ids, now))


def toggle_queue_pause(store: Store, queue: str, now: float) -> str:
    with thread_connection(store):
        paused = queue in queries.paused_queues(store)
        repo.set_queue_paused(store, queue, not paused, now)
    if paused:
        return f"queue {queue} resumed"
    return f"queue {queue} paused: running jobs finish, nothing new starts"


def retry_all(store: Store, request: PageRequest, now: float) -> str:
    """Retry every job the request's filter matches, as `jobrunner retry --status dead --queue ...`
    does: a batch per transaction (store.bulk), never all rows at once; jobs that die meanwhile
    are not chased."""
    from jobrunner.store import bulk

    with thread_connection(store):
        result = bulk.retry_matching(store, request.where, now)
    done = f"{result.count} jobs back in the queue" if result.count != 1 else "1 job back in the queue"
    if result.skipped:
        done += f"; {result.skipped} skipped: {result.reasons[0]}" + (" …" if result.skipped > 1 else "")
    return done


def cancel_all(store: Store, request: PageRequest, now: float) -> str:
    """Cancel every job the filter matches that has not started (and running ones, if the filter
    names running), as `jobrunner cancel --queue ...` does, a batch per transaction."""
    from jobrunner.store import bulk

    where = request.where
    where.statuses = cancellable_statuses(request)
    with thread_connection(store):
        result = bulk.cancel_matching(store, where, now)
    text = f"{result.count} jobs cancelled" if result.count != 1 else "1 job cancelled"
    if result.requested:
        text += f"; asked the daemon to stop {result.requested} running"
    if result.skipped:
        text += f"; {result.skipped} skipped: {result.reasons[0]}"
    return text


def cancellable_statuses(request: PageRequest) -> list[Status]:
    """What a cancel of the filter takes: its statuses that can be cancelled (running ones only
    when it names them), or those not started when it names none."""
    from jobrunner.domain.states import CANCELLABLE

    if not request.statuses:
        return sorted(CANCELLABLE)
    return [s for s in request.statuses if s in CANCELLABLE or s is Status.RUNNING]


def edit_and_retry(store: Store, job_id: int, changes: dict[str, Any], expect: dict[str, Any], now: float) -> str:
    """Store the edit form's changes and put the job back in the queue, in one transaction, as
    `jobrunner retry ID --edit` does: refused (the job changed meanwhile), nothing changes."""
    from jobrunner.domain.jobspec import SpecError
    from jobrunner.store.edits import edit_job

    try:
        with thread_connection(store):
            edited = edit_job(store, job_id, changes, now, expect=expect, retry=True)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    return f"job {job_id}: {edited.description or 'unchanged'}; {edited.status.value}"


def form_values(job: dict[str, Any]) -> dict[str, str]:
    """The edit form's text for a job (queries.job_to_dict), one entry per field it shows."""
    import json
    import shlex

    from jobrunner.domain.edits import duration_text
    from jobrunner.domain.priority import priority_label

    command = job["command"]
    if job["callable"]:
        run = job["callable"]
    elif command and len(command) == 3 and command[:2] == ["/bin/sh", "-c"]:
        run = command[2]
    else:
        run = shlex.join(command or [])
    return {
        "name": job["name"], "run": run, "args": json.dumps(job["args"]), "kwargs": json.dumps(job["kwargs"]),
        "queue": job["queue"], "priority": priority_label(job["priority"]), "retries": str(job["max_retries"]),
        "timeout": "" if job["timeout"] is None else duration_text(job["timeout"]), "tags": ", ".join(job["tags"]),
    }  # fmt: skip


def form_changes(job: dict[str, Any], before: dict[str, str], after: dict[str, str]) -> dict[str, Any]:
    """The fields the edit form changed, checked as a submit checks them (build_spec, the same
    words); raises UsageError naming the field. On the UI thread: no I/O."""
    import json

    from jobrunner.domain import edits
    from jobrunner.domain.jobspec import CALLABLE_PATTERN, SpecError, build_spec

    changes: dict[str, Any] = {}
    for key, text in after.items():
        if text == before.get(key):
            continue
        value = text.strip()
        if key == "run":
            if not value:
                raise UsageError("command: give a shell command or package.module:function")
            changes["callable" if CALLABLE_PATTERN.match(value) else "command"] = value
        elif key in ("args", "kwargs"):
            try:
                changes[key] = json.loads(value or ("[]" if key == "args" else "{}"))
            except ValueError as exc:
                raise UsageError(f"{key}: invalid JSON: {exc}") from None
        elif key == "retries":
            try:
                changes[key] = int(value or "0")
            except ValueError:
                raise UsageError(f"retries: {value!r} is not a whole number") from None
        elif key == "tags":
            changes[key] = [t for t in value.replace(",", " ").split() if t]
        else:  # name, queue, priority, timeout: empty puts the default back
            changes[key] = value or None
    try:
        build_spec(edits.merge(edits.stored_fields(job), changes), task=job.get("task"))
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    return changes


def purge_jobs(store: Store, statuses: list[Status], older_than: float, now: float) -> str:
    with thread_connection(store):
        removed = repo.purge(store, older_than, statuses, now)
    return f"purged {len(removed)} job{'' if len(removed) == 1 else 's'} and their history"


def step_priority(store: Store, ids: list[int], up: bool, now: float) -> str:
    """Each job one level up or down from its priority in the database (not the one on screen,
    which may be a refresh behind when keys come fast); read and write in one transaction."""
    outcomes: list[repo.Outcome] = []
    with thread_connection(store), store.write():
        by_target: dict[int, list[int]] = {}
        for job_id in ids:
            current = queries.get_job(store, job_id)["priority"]
            by_target.setdefault(stepped_priority(current, up), []).append(job_id)
        for priority, group in by_target.items():
            outcomes += repo.set_priority(store, group, priority, now)
    return _summary(outcomes)


def stepped_priority(current: int, up: bool) -> int:
    """The next named level up or down (low, normal, high, critical), 0 and 9 at the ends."""
    from jobrunner.domain.priority import NAMED_PRIORITIES

    levels = sorted(NAMED_PRIORITIES.values())
    if up:
        return next((level for level in levels if level > current), min(current + 1, 9))
    return next((level for level in reversed(levels) if level < current), max(current - 1, 0))


def job_fields(target: str, queue: str, priority: str, retries: str, cwd: str,
               unique_key: str = "") -> dict[str, Any]:  # fmt: skip
    """What the submit form says, as the fields `jobrunner submit` and the API build a job from.

    `module:function` is a Python job; anything else runs with /bin/sh -c, in `cwd`. A unique
    key, if given, works as `submit --unique-key` (an unfinished job holding it is the answer).
    Raises UsageError naming the bad field (checked on the UI thread: no I/O).
    """
    from jobrunner.domain.jobspec import CALLABLE_PATTERN, SpecError, build_spec

    target = target.strip()
    if not target:
        raise UsageError("command: give a shell command or package.module:function")
    fields: dict[str, Any] = {"queue": queue.strip() or "default", "priority": priority}
    if CALLABLE_PATTERN.match(target):
        fields["callable"] = target
    else:
        fields["command"] = target
        fields["cwd"] = cwd
    try:
        fields["retries"] = int(retries.strip() or "0")
    except ValueError:
        raise UsageError(f"retries: {retries.strip()!r} is not a whole number") from None
    if unique_key.strip():
        fields["unique_key"] = unique_key.strip()
    try:
        build_spec(fields)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    return fields


def submit_job(store: Store, fields: dict[str, Any], now: float) -> str:
    """Store the job the form described, as `jobrunner submit` does (one transaction)."""
    from jobrunner.domain.jobspec import build_spec

    spec = build_spec(fields)
    with thread_connection(store):
        if spec.unique_key is None:
            job_id = repo.submit(store, spec, now)
        else:
            from jobrunner.store.keys import submit_keyed

            done = submit_keyed(store, spec, now)
            if not done.created:
                return f"job {done.job_id} already holds unique key {spec.unique_key!r}: nothing submitted"
            job_id = done.job_id
    return f"job {job_id} submitted: {spec.name} on queue {spec.queue}"


def fetch_schedules(store: Store) -> list[dict[str, Any]]:
    """Every schedule as `schedule list --json` shows it, with its timing in words."""
    with thread_connection(store):
        views = []
        for row in schedules.all_schedules(store):
            view = schedules.schedule_view(store, row)
            view["description"] = schedules.describe(row.kind, row.expression)
            views.append(view)
    return views


def set_schedule_paused(store: Store, name: str, paused: bool, now: float) -> str:
    with thread_connection(store):
        if paused:
            schedules.set_paused(store, name, True, now)
            return f"schedule {name} paused"
        schedules.resume(store, name, now)
    return f"schedule {name} resumed"


def run_schedule_now(store: Store, name: str, config: Config, now: float) -> str:
    with thread_connection(store):
        job_id = schedules.run_now(store, name, config, now)
    return f"schedule {name} fired now: job {job_id}"
