"""`jobrunner tui`, second part: sorting, the header's rates, priority, the submit form, schedules.

Same rules as test_tui.py: the real app over a real SQLite file, conditions with deadlines.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Static

from jobrunner.store import queries, schedules
from jobrunner.tui.screens.detail import DetailScreen
from jobrunner.tui.screens.dialogs import ConfirmDialog
from jobrunner.tui.screens.schedules import SchedulesScreen
from jobrunner.tui.screens.submit import SubmitDialog
from tests.conftest import sql
from tests.tuihelpers import cell, drive, shown, table, text_of, until


def header(pilot: Pilot) -> str:
    return text_of(pilot.app.screen.query_one("#header", Static))


def test_sort_by_key_and_by_clicking_a_header(cli, store):
    low = cli.submit("--name", "b-low", "--priority", "low", "--", "true")
    high = cli.submit("--name", "c-high", "--priority", "high", "--", "true")
    normal = cli.submit("--name", "a-normal", "--", "true")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: shown(pilot) == [normal, high, low])  # newest first
        await pilot.click("#jobs", offset=(44, 0))  # the PRI header: highest first
        await until(pilot, lambda: shown(pilot) == [high, normal, low])
        assert "sorted by priority ▼" in header(pilot)
        assert table(pilot).ordered_columns[3].label.plain == "PRI▼"
        await pilot.click("#jobs", offset=(44, 0))  # again: the other way round
        await until(pilot, lambda: shown(pilot) == [low, normal, high])
        await pilot.press("o")  # the next column after PRI: status; all queued, so by id
        await until(pilot, lambda: "sorted by status ▲" in header(pilot))
        assert shown(pilot) == [low, high, normal]
        await pilot.press("O")
        await until(pilot, lambda: shown(pilot) == [normal, high, low])
        for word in ("progress", "tries", "age"):  # the header names the column as the table does
            await pilot.press("o")
            await until(pilot, lambda word=word: f"sorted by {word} ▼" in header(pilot))
        await pilot.press("o")  # then back to newest first
        await until(pilot, lambda: "sorted" not in header(pilot))
        await pilot.click("#jobs", offset=(10, 0))  # NAME: alphabetical
        await until(pilot, lambda: shown(pilot) == [normal, low, high])

    drive(store, scenario)


def test_header_counts_running_queued_and_finished_per_minute(cli, store):
    now = 1_800_000_000.0
    ids = [cli.submit("--", "true") for _ in range(5)]
    sql(store, "UPDATE job SET status='running', attempts=1, started_at=? WHERE id=?", (now - 5, ids[0]))
    for job_id, ago in ((ids[1], 10), (ids[2], 59), (ids[3], 61)):  # the last one is too old to count
        sql(store,
            "UPDATE job SET status='succeeded', attempts=1, started_at=?, finished_at=? WHERE id=?",
            (now - ago - 1, now - ago, job_id),
        )

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: "1 running  ·  1 queued  ·  2 finished/min" in header(pilot))

    drive(store, scenario, clock=lambda: now)


def test_priority_up_and_down_on_the_selected_job(cli, store):
    job_id = cli.submit("--", "true")
    running = cli.submit("--", "true")
    sql(store, "UPDATE job SET status='running', attempts=1 WHERE id=?", (running,))

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: shown(pilot) == [running, job_id])
        table(pilot).move_cursor(row=1)
        await pilot.press("plus")
        await until(pilot, lambda: cell(pilot, job_id, "priority") == "high")
        await pilot.press("plus", "minus", "minus", "minus")  # faster than the refresh: each from the last
        await until(pilot, lambda: queries.get_job(store, job_id)["priority"] == 2)
        await until(pilot, lambda: cell(pilot, job_id, "priority") == "low")
        table(pilot).move_cursor(row=0)
        await pilot.press("plus")  # running: refused with a note, nothing changed
        await until(pilot, lambda: any(n.startswith("no priority changed") for n in notes))
        assert queries.get_job(store, running)["priority"] == 5

    drive(store, scenario)


def test_submit_form_checks_input_then_stores_the_job(cli, store):
    cli.submit("-q", "mail", "--", "true")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: len(shown(pilot)) == 1)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, SubmitDialog))
        await pilot.press("enter")  # nothing typed: said in the form, nothing stored
        error = pilot.app.screen.query_one("#submit-error", Label)
        await until(pilot, lambda: "give a shell command" in str(error.render()))
        pilot.app.screen.query_one("#target", Input).value = "tests.jobfuncs:add"
        pilot.app.screen.query_one("#submit-queue", Input).value = "math"
        pilot.app.screen.query_one("#priority").value = "critical"
        pilot.app.screen.query_one("#retries", Input).value = "2"
        await pilot.press("enter")
        await until(pilot, lambda: queries.count_jobs(store) == 2)
        job = queries.list_jobs(store, limit=1)[0]
        assert (job["callable"], job["queue"], job["priority_name"], job["max_retries"]) == (
            "tests.jobfuncs:add", "math", "critical", 2,
        )  # fmt: skip
        await until(pilot, lambda: shown(pilot)[:1] == [job["id"]])
        await until(pilot, lambda: any("submitted" in n for n in notes))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, SubmitDialog))
        pilot.app.screen.query_one("#target", Input).value = "echo hi > out.txt"
        await pilot.press("enter")  # a shell line runs with /bin/sh -c
        await until(pilot, lambda: queries.count_jobs(store) == 3)
        shell = queries.list_jobs(store, limit=1)[0]
        assert shell["command"] == ["/bin/sh", "-c", "echo hi > out.txt"] and shell["cwd"]
        for _ in range(2):  # the same unique key twice: one job, and the second says which holds it
            await pilot.press("n")
            await until(pilot, lambda: isinstance(pilot.app.screen, SubmitDialog))
            pilot.app.screen.query_one("#target", Input).value = "echo report"
            pilot.app.screen.query_one("#unique-key", Input).value = "report:2026-11"
            await pilot.press("enter")
            await until(pilot, lambda: not isinstance(pilot.app.screen, SubmitDialog))
        await until(pilot, lambda: any("already holds unique key 'report:2026-11'" in n for n in notes))
        assert queries.count_jobs(store) == 4
        assert queries.list_jobs(store, limit=1)[0]["unique_key"] == "report:2026-11"

    drive(store, scenario)


def add_schedule(cli: Any, name: str, *when: str) -> None:
    cli.ok("schedule", "add", name, *when, "--", "echo", name)


def test_schedules_view_pause_resume_and_run_now(cli, store):
    add_schedule(cli, "nightly", "--cron", "0 3 * * *")
    add_schedule(cli, "often", "--every", "10m")

    def state_of(name: str) -> str:
        rows = pilot_ref[0].app.screen.query_one(DataTable)
        return rows.get_cell(name, "state").plain

    pilot_ref: list[Pilot] = []

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        pilot_ref.append(pilot)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(pilot.app.screen, SchedulesScreen))
        screen = pilot.app.screen
        await until(pilot, lambda: [v["name"] for v in screen.views] == ["nightly", "often"])
        assert "at 03:00" in screen.query_one(DataTable).get_cell("nightly", "when").plain
        await pilot.press("p")  # the first row: nightly
        await until(pilot, lambda: schedules.get_schedule(store, "nightly").paused)
        await until(pilot, lambda: state_of("nightly") == "paused")
        await pilot.press("p")
        await until(pilot, lambda: not schedules.get_schedule(store, "nightly").paused)
        await until(pilot, lambda: state_of("nightly") == "active")
        await pilot.press("down", "r")
        await until(pilot, lambda: queries.count_jobs(store) == 1)
        job = queries.list_jobs(store, limit=1)[0]
        assert job["name"] == "often"
        await until(
            pilot, lambda: screen.query_one(DataTable).get_cell("often", "job").plain == f"{job['id']} queued"
        )
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen))
        assert pilot.app.screen.job_id == job["id"]
        await pilot.press("escape", "escape")
        await until(pilot, lambda: shown(pilot) == [job["id"]])

    drive(store, scenario)


def test_marked_jobs_take_one_action_together(cli, store):
    ids = [cli.submit("--name", f"batch{i}", "--", "true") for i in range(3)]

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: shown(pilot) == ids[::-1])
        await pilot.press("space", "down", "space")  # the newest and the oldest, not the middle one
        await until(pilot, lambda: "2 marked" in header(pilot))
        await until(pilot, lambda: "reverse" in str(table(pilot).get_cell("0", "id").style))
        await pilot.press("plus")
        await until(pilot, lambda: [queries.get_job(store, i)["priority"] for i in ids] == [7, 5, 7])
        await pilot.press("c")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(
            pilot,
            lambda: (
                [queries.get_job(store, i)["status"] for i in ids] == ["cancelled", "queued", "cancelled"]
            ),
        )
        await until(pilot, lambda: "marked" not in header(pilot))

    drive(store, scenario)
