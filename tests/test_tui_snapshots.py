"""The look of the main screens, pinned by pytest-textual-snapshot (SVGs in tests/__snapshots__).

Fixed data, a frozen clock, UTC and a fixed terminal size make every run draw the same
screen. After an intended change of look: pytest tests/test_tui_snapshots.py --snapshot-update,
then look at the new SVGs before committing them.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from textual.pilot import Pilot

from jobrunner.domain.jobspec import build_spec
from jobrunner.store import repo, runs, schedules
from jobrunner.store.schedules import ScheduleRow
from jobrunner.tui.app import JobrunnerApp
from jobrunner.tui.screens.dead import DeadLetterScreen
from jobrunner.tui.screens.detail import DetailScreen
from jobrunner.tui.screens.schedules import SchedulesScreen
from jobrunner.tui.widgets.paged_table import PagedTable
from tests.conftest import sql

FROZEN = 1_800_000_000.0  # 2027-01-15 08:00 UTC
SIZE = (120, 35)
HOST = "build-7"  # where the daemon in the snapshots runs
TRACEBACK = "Traceback (most recent call last):\n  File \"reports.py\", line 12, in build\nKeyError: 'month'"

# name, queue, priority, status, minutes ago, extra columns
JOBS: list[tuple[str, str, str, str, int, dict[str, Any]]] = [
    ("nightly-backup", "default", "normal", "succeeded", 90,
     {"progress": 1.0, "progress_message": "done", "result": json.dumps({"files": 1204})}),
    ("resize-images", "images", "high", "running", 12,
     {"progress": 0.42, "progress_message": "chunk 21/50: s3://photos/2027/01/15/batch-0021 to webp at 1600px",
      "lease_owner": f"{HOST}:4242:a1b2c3"}),
    ("monthly-report", "reports", "critical", "dead", 45, {"error": "KeyError: 'month'", "exit_code": None}),
    ("send-digest", "emails", "low", "retrying", 30, {"error": "ConnectionError: smtp down"}),
    ("cleanup-tmp", "default", "normal", "cancelled", 25, {"error": "cancelled by user"}),
    ("thumbnails", "images", "normal", "queued", 5, {}),
    ("invoice-run", "reports", "high", "scheduled", 2, {}),
    ("flaky-sync", "default", "normal", "dead", 20, {"error": "exit code 3"}),
]  # fmt: skip


@pytest.fixture
def frozen(store: Any) -> Any:
    """The store filled with fixed jobs and schedules, times relative to FROZEN, in UTC."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        fill(store)
        yield store
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def fill(store: Any) -> None:
    for name, queue, priority, status, ago, extra in JOBS:
        command = ["make", name] if queue != "reports" else None
        fields = {"name": name, "queue": queue, "priority": priority, "retries": 2}
        fields.update({"command": command} if command else {"callable": f"myapp.{queue}:build"})
        created = FROZEN - ago * 60
        job_id = repo.submit(store, build_spec(fields), created)
        started = None if status in ("queued", "scheduled") else created + 30
        finished = created + 150 if status in ("succeeded", "dead", "cancelled") else None
        values = {"status": status, "attempts": 0 if started is None else 1, "started_at": started,
                  "finished_at": finished, "run_at": created + (3600 if status == "scheduled" else 0), **extra}  # fmt: skip
        sql(store,
            f"UPDATE job SET {', '.join(f'{k}=?' for k in values)} WHERE id=?", [*values.values(), job_id]
        )
        if started is not None:  # the attempt's start names the daemon that claimed it, and its host
            sql(store,
                "INSERT INTO event (job_id, at, attempt, from_status, to_status, message) "
                "VALUES (?, ?, 1, 'queued', 'running', ?)",
                (job_id, started, f"attempt 1 started by {HOST}:4242:a1b2c3"),
            )
        if status == "dead":
            sql(store,
                "INSERT INTO event (job_id, at, attempt, from_status, to_status, message, details) "
                "VALUES (?, ?, 1, 'running', 'dead', ?, ?)",
                (job_id, finished, extra["error"], json.dumps({"traceback": TRACEBACK})),
            )
        elif status in ("retrying", "cancelled"):  # where their attempt ended: TOOK reads it
            sql(store,
                "INSERT INTO event (job_id, at, attempt, from_status, to_status, message) "
                "VALUES (?, ?, 1, 'running', ?, ?)",
                (job_id, created + 150, status, extra["error"]),
            )
    runs.register_daemon(store, f"{HOST}:4242:a1b2c3", HOST, 4242, "0.1.0", 4, [], FROZEN - 2)
    for name, kind, expression, paused, last in (
        ("nightly-backup", "cron", "0 3 * * *", False, FROZEN - 5 * 3600),
        ("digest", "every", "15m", True, None),
    ):
        schedules.save_schedule(store, ScheduleRow(
            name=name, source="cli", kind=kind, expression=expression, timezone="UTC",
            job={"command": ["make", name]}, misfire="coalesce", misfire_grace=3600.0, max_running=1,
            paused=paused, next_fire_at=FROZEN + 19 * 3600, last_fire_at=last,
            last_job_id=1 if last else None, missed=0 if last else 2, last_note=None,
            created_at=FROZEN - 86400, updated_at=FROZEN - 86400,
        ), replace=False)  # fmt: skip


def app_for(store: Any) -> JobrunnerApp:
    return JobrunnerApp(store, clock=lambda: FROZEN)


async def wait_for(pilot: Pilot, predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"screen not ready within {timeout}s")
        await pilot.pause(0.02)


def rows_shown(pilot: Pilot, count: int) -> Any:
    def ready() -> bool:
        found = pilot.app.screen.query(PagedTable)
        return bool(found) and len(found.first().jobs) == count

    return ready


def test_jobs_screen(frozen, snap_compare):
    async def ready(pilot: Pilot) -> None:
        await wait_for(pilot, rows_shown(pilot, len(JOBS)))

    assert snap_compare(app_for(frozen), terminal_size=SIZE, run_before=ready)


def test_jobs_screen_sorted_and_filtered(frozen, snap_compare):
    async def ready(pilot: Pilot) -> None:
        await wait_for(pilot, rows_shown(pilot, len(JOBS)))
        await pilot.press("7", "1", "6")  # dead, queued and succeeded ones
        await pilot.click("#jobs", offset=(44, 0))  # by priority, highest first
        await wait_for(pilot, rows_shown(pilot, 4))
        await pilot.hover("Footer")  # the mouse off the table: no row drawn as hovered, however the redraws fall
        await pilot.pause()

    assert snap_compare(app_for(frozen), terminal_size=SIZE, run_before=ready)


def test_detail_screen(frozen, snap_compare):
    async def ready(pilot: Pilot) -> None:
        await wait_for(pilot, rows_shown(pilot, len(JOBS)))
        pilot.app.screen.query_one(PagedTable).move_cursor(row=len(JOBS) - 3)  # monthly-report, dead
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.job)

    # Taller, so the history with the traceback fits above the log.
    assert snap_compare(app_for(frozen), terminal_size=(120, 60), run_before=ready)


def test_jobs_screen_narrow(frozen, snap_compare):
    """80 columns: the header's lines take their short forms rather than wrap."""

    async def ready(pilot: Pilot) -> None:
        await wait_for(pilot, rows_shown(pilot, len(JOBS)))

    assert snap_compare(app_for(frozen), terminal_size=(80, 24), run_before=ready)


def test_jobs_screen_wide(frozen, snap_compare):
    """160 columns: the progress column takes the room left, the running job's host shows."""

    async def ready(pilot: Pilot) -> None:
        await wait_for(pilot, rows_shown(pilot, len(JOBS)))

    assert snap_compare(app_for(frozen), terminal_size=(160, 30), run_before=ready)


def test_detail_screen_running_wide(frozen, snap_compare):
    """A running job at 160 columns: its whole progress message, its host, and a log that has
    not started (a line, not most of the screen)."""

    async def ready(pilot: Pilot) -> None:
        await wait_for(pilot, rows_shown(pilot, len(JOBS)))
        pilot.app.screen.query_one(PagedTable).move_cursor(row=len(JOBS) - 2)  # resize-images, running
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.job)

    assert snap_compare(app_for(frozen), terminal_size=(160, 50), run_before=ready)


def test_dead_letters_screen(frozen, snap_compare):
    async def ready(pilot: Pilot) -> None:
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DeadLetterScreen))
        await wait_for(pilot, rows_shown(pilot, 2))

    assert snap_compare(app_for(frozen), terminal_size=SIZE, run_before=ready)


def test_schedules_screen(frozen, snap_compare):
    async def ready(pilot: Pilot) -> None:
        await wait_for(pilot, rows_shown(pilot, len(JOBS)))
        await pilot.press("s")
        await wait_for(
            pilot, lambda: isinstance(pilot.app.screen, SchedulesScreen) and pilot.app.screen.views
        )

    assert snap_compare(app_for(frozen), terminal_size=SIZE, run_before=ready)
