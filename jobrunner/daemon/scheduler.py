"""The daemon's scheduler: loads schedules from the config, and fires the due ones.

APScheduler's triggers compute the times; store.schedules decides, once, in the database.
One bad schedule is no poison: whatever it raises is logged once, recorded on its row
(`schedule list` and `doctor` show it) and the schedule is left alone until its row is
replaced or the config is reloaded; the daemon and the other schedules carry on.
"""

from __future__ import annotations

import logging
from typing import Any

from jobrunner.config import Config, schedule_job
from jobrunner.daemon import clock
from jobrunner.domain.durations import parse_duration
from jobrunner.errors import JobrunnerError, StoreError
from jobrunner.store import schedules
from jobrunner.store.db import Store
from jobrunner.store.schedules import ScheduleRow, broken_reason, describe_error, job_spec_for
from jobrunner.triggers import due_times, make_trigger, next_fire, system_timezone

log = logging.getLogger("jobrunner.daemon")
SKIP_TOLERANCE_S = 60.0  # with misfire = "skip", a fire this late still counts as on time
RETRY_S = (5.0, 300.0)  # a schedule whose fire hit a database error waits this long, doubling, to the max


def plan(misfire: str, grace: float, times: list[float], now: float) -> tuple[list[float], int]:
    """Which due fire times run under the misfire policy, and how many count as missed."""
    eligible = [t for t in times if now - t <= grace]
    if misfire == "all":
        run = eligible
    elif misfire == "skip":
        on_time = len(times) == 1 and now - times[0] <= min(grace, SKIP_TOLERANCE_S)
        run = times if on_time else []
    else:  # coalesce
        run = eligible[-1:]
    return run, len(times) - len(run)


def row_from_config(name: str, table: dict[str, Any], now: float) -> ScheduleRow:
    kind = next(k for k in ("cron", "every", "at") if k in table)
    return ScheduleRow(
        name=name, source="config", kind=kind, expression=str(table[kind]),
        timezone=table.get("timezone") or system_timezone(), job=schedule_job(table),
        misfire=table.get("misfire", "coalesce"),
        misfire_grace=parse_duration(table.get("misfire_grace", "1h")),
        max_running=int(table.get("max_running", 1)), paused=not table.get("enabled", True),
        next_fire_at=None, last_fire_at=None, last_job_id=None, missed=0, last_note=None,
        created_at=now, updated_at=now,
    )  # fmt: skip


def same_definition(a: ScheduleRow, b: ScheduleRow) -> bool:
    keys = ("kind", "expression", "timezone", "job", "misfire", "misfire_grace", "max_running", "paused")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


class Scheduler:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.triggers: dict[tuple, Any] = {}
        self.next_at: float | None = None
        # name -> (retry at, delay, error): a fire that hit a database error waits, logged once
        self.held: dict[str, tuple[float, float, str]] = {}

    def trigger(self, row: ScheduleRow) -> Any:
        key = (row.name, row.kind, row.expression, row.timezone, row.created_at)
        if key not in self.triggers:
            self.triggers[key] = make_trigger(row.kind, row.expression, row.timezone, row.created_at)
        return self.triggers[key]

    def load(self, config: Config, now: float) -> None:
        """Bring config schedules into the database (unchanged ones keep their history), then
        check every schedule against this config: broken ones are marked, repaired ones fire again."""
        self.config = config
        self.held.clear()
        existing = {row.name: row for row in schedules.all_schedules(self.store)}
        unloadable: dict[str, str] = {}
        for name, table in config.schedules.items():
            old = existing.get(name)
            try:
                row = row_from_config(name, table, now)
                if old is not None and old.source == "cli":
                    log.warning("schedule %s: defined in the config and by the CLI; keeping the CLI one", name)
                    continue
                if old is not None and same_definition(old, row):
                    continue
                row.next_fire_at = next_fire(self.trigger(row), None, now)
                schedules.save_schedule(self.store, row, replace=True)
                log.info("schedule %s loaded: %s %s (%s)", name, row.kind, row.expression, row.timezone)
            except Exception as exc:  # the old row, if any, must not fire its stale definition
                log.error("schedule %s not loaded: %s", name, describe_error(exc))
                if not isinstance(exc, StoreError):
                    unloadable[name] = f"its [schedules.{name}] in the config does not load: {describe_error(exc)}"
        for name in schedules.remove_config_schedules_except(self.store, list(config.schedules)):
            log.info("schedule %s removed (no longer in the config)", name)
        for row in schedules.all_schedules(self.store):
            self._check(row, unloadable.get(row.name), now)
        self.refresh()

    def _check(self, row: ScheduleRow, reason: str | None, now: float) -> None:
        """Mark a schedule broken, or clear the mark of one that works again."""
        error: Exception | None = None
        if reason is None:
            try:
                self.trigger(row)
                job_spec_for(row, self.config)
            except Exception as exc:
                reason, error = describe_error(exc), exc
        if reason is not None:
            self._break(row, reason, now, error)
            return
        if broken_reason(row) is not None:
            try:
                schedules.clear_broken(self.store, row.name, now)
                log.info("schedule %s repaired: it fires again", row.name)
            except StoreError as exc:
                log.error("schedule %s: could not clear its broken mark: %s", row.name, exc)

    def _break(self, row: ScheduleRow, reason: str, now: float, exc: BaseException | None = None) -> None:
        """Log it (once: the schedule is skipped from now on) and record it on the row."""
        unexpected = exc is not None and not isinstance(exc, JobrunnerError | ValueError)
        log.error("schedule %s is broken and will not fire: %s; to fix it: %s",
                  row.name, reason, schedules.repair_hint(row), exc_info=exc if unexpected else None)  # fmt: skip
        try:
            schedules.mark_broken(self.store, row.name, reason, now)
        except StoreError as store_exc:  # unmarked, it would be tried every turn: hold it instead
            log.error("schedule %s: could not record that it is broken: %s", row.name, store_exc)
            self.held[row.name] = (now + RETRY_S[1], RETRY_S[1], reason)

    def _hold(self, name: str, exc: StoreError, now: float) -> None:
        """A database error is no fault of the schedule's: try again later, logging each new error once."""
        before = self.held.get(name)
        delay = min(before[1] * 2, RETRY_S[1]) if before else RETRY_S[0]
        if before is None or before[2] != str(exc):
            log.error("schedule %s cannot fire now, will retry: %s", name, exc)
        self.held[name] = (now + delay, delay, str(exc))

    def refresh(self) -> None:
        rows = [r for r in schedules.all_schedules(self.store)
                if not r.paused and r.next_fire_at is not None and broken_reason(r) is None]  # fmt: skip
        times = [max(r.next_fire_at, self.held.get(r.name, (0.0,))[0]) for r in rows]  # type: ignore[type-var]
        self.next_at = min(times, default=None)

    def run_due(self, now: float) -> int:
        """Fire every due schedule; returns how many jobs were enqueued. An error in one
        schedule is that schedule's alone: logged once and marked, never raised (only a
        StoreError reading the schedule table is, for the loop to retry)."""
        enqueued = 0
        for row in schedules.all_schedules(self.store):
            if row.paused or row.next_fire_at is None or row.next_fire_at > now or broken_reason(row) is not None:
                continue
            if row.name in self.held and self.held[row.name][0] > now:
                continue
            try:
                trigger = self.trigger(row)
                times, following = due_times(trigger, row.next_fire_at, now)
                run, missed = plan(row.misfire, row.misfire_grace, times, now)
                result = schedules.fire(
                    self.store, row.name, row.next_fire_at, run, missed, following,
                    lambda r: job_spec_for(r, self.config), clock.now(),
                )  # fmt: skip
            except StoreError as exc:
                self._hold(row.name, exc, now)
                continue
            except Exception as exc:  # an unknown task, a bad field or expression, a bug: this one only
                self._break(row, describe_error(exc), now, exc)
                continue
            self.held.pop(row.name, None)
            if result is None:
                continue
            enqueued += len(result.job_ids)
            for job_id in result.job_ids:
                log.info("schedule %s fired: job %d", row.name, job_id)
            if result.note:
                log.info("schedule %s: %s", row.name, result.note)
        self.refresh()
        return enqueued
