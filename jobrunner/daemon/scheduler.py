"""The daemon's scheduler: loads schedules from the config, and fires the due ones.

APScheduler's triggers compute the times; store.schedules decides, once, in the database.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from jobrunner.config import Config
from jobrunner.domain.durations import parse_duration
from jobrunner.store import schedules
from jobrunner.store.db import Store
from jobrunner.store.schedules import ScheduleRow, job_spec_for
from jobrunner.triggers import due_times, make_trigger, next_fire, system_timezone

log = logging.getLogger("jobrunner.daemon")
SKIP_TOLERANCE_S = 60.0  # with misfire = "skip", a fire this late still counts as on time
JOB_KEYS = ("task", "command", "callable", "args", "kwargs", "queue", "priority", "tags", "retries", "timeout", "cwd")


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
    job = {k: table[k] for k in JOB_KEYS if k in table}
    return ScheduleRow(
        name=name, source="config", kind=kind, expression=str(table[kind]),
        timezone=table.get("timezone") or system_timezone(), job=job,
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

    def trigger(self, row: ScheduleRow) -> Any:
        key = (row.name, row.kind, row.expression, row.timezone, row.created_at)
        if key not in self.triggers:
            self.triggers[key] = make_trigger(row.kind, row.expression, row.timezone, row.created_at)
        return self.triggers[key]

    def load(self, config: Config, now: float) -> None:
        """Bring config schedules into the database; unchanged ones keep their history."""
        self.config = config
        existing = {row.name: row for row in schedules.all_schedules(self.store)}
        for name, table in config.schedules.items():
            try:
                row = row_from_config(name, table, now)
                old = existing.get(name)
                if old is not None and old.source == "cli":
                    log.warning("schedule %s: defined in the config and by the CLI; keeping the CLI one", name)
                    continue
                if old is not None and same_definition(old, row):
                    continue
                row.next_fire_at = next_fire(self.trigger(row), None, now)
                schedules.save_schedule(self.store, row, replace=True)
                log.info("schedule %s loaded: %s %s (%s)", name, row.kind, row.expression, row.timezone)
            except ValueError as exc:
                log.error("schedule %s not loaded: %s", name, exc)
        for name in schedules.remove_config_schedules_except(self.store, list(config.schedules)):
            log.info("schedule %s removed (no longer in the config)", name)
        self.refresh()

    def refresh(self) -> None:
        rows = [r for r in schedules.all_schedules(self.store) if not r.paused and r.next_fire_at is not None]
        self.next_at = min((r.next_fire_at for r in rows), default=None)  # type: ignore[type-var]

    def run_due(self, now: float) -> int:
        """Fire every due schedule; returns how many jobs were enqueued."""
        enqueued = 0
        for row in schedules.all_schedules(self.store):
            if row.paused or row.next_fire_at is None or row.next_fire_at > now:
                continue
            try:
                trigger = self.trigger(row)
                times, following = due_times(trigger, row.next_fire_at, now)
                run, missed = plan(row.misfire, row.misfire_grace, times, now)
                result = schedules.fire(
                    self.store, row.name, row.next_fire_at, run, missed, following,
                    lambda r: job_spec_for(r, self.config), time.time(),
                )  # fmt: skip
            except ValueError as exc:  # a task that vanished from the config, a bad field
                log.error("schedule %s cannot fire: %s", row.name, exc)
                continue
            if result is None:
                continue
            enqueued += len(result.job_ids)
            for job_id in result.job_ids:
                log.info("schedule %s fired: job %d", row.name, job_id)
            if result.note:
                log.info("schedule %s: %s", row.name, result.note)
        self.refresh()
        return enqueued
