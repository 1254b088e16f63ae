"""Driving the real TUI headless in tests: run a scenario, wait on conditions, read cells."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from textual.notifications import Notify
from textual.pilot import Pilot
from textual.widgets import Static

from jobrunner.tui.app import JobrunnerApp
from jobrunner.tui.widgets.paged_table import PagedTable

SIZE = (120, 35)


def drive(store: Any, scenario: Callable[[Pilot, list[str]], Awaitable[None]], size: tuple[int, int] = SIZE,
          **options: Any) -> None:  # fmt: skip
    """Run the app headless at `size` and play a scenario; `notes` collects every notification shown."""
    notes: list[str] = []

    def hook(message: object) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification.message)

    async def main() -> None:
        app = JobrunnerApp(store, **options)
        async with app.run_test(size=size, message_hook=hook) as pilot:
            await scenario(pilot, notes)

    asyncio.run(main())


async def until(pilot: Pilot, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Let the app run until the condition holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {predicate.__doc__ or predicate}")
        await pilot.pause(0.05)


def table(pilot: Pilot) -> PagedTable:
    return pilot.app.screen.query_one(PagedTable)


def shown(pilot: Pilot) -> list[int]:
    """Ids in the table, top to bottom (empty while another screen is on top)."""
    found = pilot.app.screen.query(PagedTable)
    return [job["id"] for job in found.first().jobs] if found else []


def cell(pilot: Pilot, job_id: int, column: str) -> str:
    widget = table(pilot)
    ids = [job["id"] for job in widget.jobs]
    if job_id not in ids:
        return ""
    return widget.get_cell(str(ids.index(job_id)), column).plain


def text_of(widget: Static) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()
