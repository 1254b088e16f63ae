"""`jobrunner tui`, issue 18: the dead-letter view's edit-and-retry form and retry of every job the
filter matches, and the jobs view's cancel of every job the filter matches; through the same
store functions as the CLI. The real app over the test's database, conditions with deadlines."""

from __future__ import annotations

import time
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Label

from jobrunner.store import queries
from jobrunner.tui.screens.dead import DeadLetterScreen
from jobrunner.tui.screens.dialogs import ConfirmDialog
from jobrunner.tui.screens.edit import EditDialog
from tests.conftest import sql
from tests.tuihelpers import drive, shown, table, text_of, until


def make_dead(store: Any, job_id: int) -> None:
    sql(store, "UPDATE job SET status='dead', attempts=1, finished_at=?, error='exit code 1' WHERE id=?",
        (time.time() - 5, job_id))  # fmt: skip


def job(store: Any, job_id: int) -> dict[str, Any]:
    return queries.get_job(store, job_id)


def form(pilot: Pilot, key: str) -> Input:
    return pilot.app.screen.query_one(f"#edit-{key}", Input)


def error_shown(pilot: Pilot) -> str:
    return text_of(pilot.app.screen.query_one("#edit-error", Label)).strip()


def test_edit_and_retry_a_dead_job_from_a_form(cli, store):
    job_id = cli.submit("--name", "report", "--call", "tests.jobfuncs:add", "--arg", "a=1", "--arg", "b=2")
    make_dead(store, job_id)

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await pilot.press("d")
        await until(pilot, lambda: isinstance(pilot.app.screen, DeadLetterScreen) and shown(pilot) == [job_id])
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, EditDialog))
        assert form(pilot, "run").value == "tests.jobfuncs:add"
        assert form(pilot, "kwargs").value == '{"a": 1, "b": 2}' and form(pilot, "retries").value == "0"
        form(pilot, "timeout").value = "forever"  # refused in submit's words; nothing stored
        await pilot.press("enter")
        await until(pilot, lambda: error_shown(pilot).startswith("timeout: 'forever' is not a duration"))
        assert job(store, job_id)["status"] == "dead"
        form(pilot, "timeout").value = "10m"
        form(pilot, "kwargs").value = '{"a": 1, "b": 40}'
        form(pilot, "queue").value = "fixed"
        form(pilot, "retries").value = "3"
        pilot.app.screen.query_one("#edit-priority").value = "high"
        form(pilot, "run").focus()
        await pilot.press("enter")
        await until(pilot, lambda: job(store, job_id)["status"] == "queued")
        edited = job(store, job_id)
        assert edited["kwargs"] == {"a": 1, "b": 40} and edited["queue"] == "fixed" and edited["timeout"] == 600
        assert edited["max_retries"] == 3 and edited["priority"] == 7 and edited["name"] == "report"
        await until(pilot, lambda: any(n.startswith(f"job {job_id}: kwargs: b 2 → 40") for n in notes))
        await until(pilot, lambda: shown(pilot) == [])
        messages = [e["message"] for e in queries.job_events(store, job_id)]
        assert messages[-2:] == ["edited: kwargs: b 2 → 40; queue default → fixed; priority normal → high; "
                                 "retries 0 → 3; timeout none → 10m", "retried by user"]  # fmt: skip

    drive(store, scenario)


def test_escape_leaves_the_job_and_a_job_changed_meanwhile_is_not_overwritten(cli, store):
    job_id = cli.submit("--", "false")
    make_dead(store, job_id)
    before = job(store, job_id)

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await pilot.press("d")
        await until(pilot, lambda: shown(pilot) == [job_id])
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, EditDialog))
        form(pilot, "queue").value = "elsewhere"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, DeadLetterScreen))
        assert job(store, job_id) == before
        await pilot.press("e")
        await until(pilot, lambda: isinstance(pilot.app.screen, EditDialog))
        cli.ok("edit", str(job_id), "--name", "renamed")  # someone else, while the form is open
        form(pilot, "queue").value = "elsewhere"
        await pilot.press("enter")
        await until(pilot, lambda: any("changed while it was being edited (name)" in n for n in notes))
        after = job(store, job_id)
        assert after["status"] == "dead" and after["queue"] == "default" and after["name"] == "renamed"

    drive(store, scenario)


def test_retry_all_takes_only_the_jobs_the_filter_matches(cli, store):
    reports = [cli.submit("--queue", "reports", "--name", f"report{i}", "--", "false") for i in range(3)]
    other = cli.submit("--queue", "reports", "--name", "other", "--", "false")
    mail = cli.submit("--queue", "mail", "--name", "report-mail", "--", "false")
    for job_id in (*reports, other, mail):
        make_dead(store, job_id)

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await pilot.press("d")
        await until(pilot, lambda: len(shown(pilot)) == 5)
        pilot.app.screen.query_one("#queue").value = "reports"
        pilot.app.screen.query_one("#search", Input).value = "report"
        await until(pilot, lambda: shown(pilot) == reports[::-1])
        table(pilot).focus()
        await pilot.press("a")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        question = text_of(pilot.app.screen.query_one("#question", Label))
        assert "Retry all 3 dead jobs in queue reports matching 'report'?" in question
        await pilot.press("y")
        await until(pilot, lambda: all(job(store, i)["status"] == "queued" for i in reports))
        await until(pilot, lambda: "3 jobs back in the queue" in notes)
        assert job(store, other)["status"] == "dead" and job(store, mail)["status"] == "dead"

    drive(store, scenario)


def test_cancel_every_job_the_filters_match(cli, store):
    images = [cli.submit("--queue", "images", "--", "true") for _ in range(3)]
    mail = cli.submit("--queue", "mail", "--", "true")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: len(shown(pilot)) == 4)
        pilot.app.screen.query_one("#queue").value = "images"
        await until(pilot, lambda: shown(pilot) == images[::-1])
        table(pilot).focus()
        await pilot.press("C")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        assert "Cancel every queued, retrying, scheduled, waiting job in queue images?" in text_of(
            pilot.app.screen.query_one("#question", Label)
        )
        await pilot.press("y")
        await until(pilot, lambda: all(job(store, i)["status"] == "cancelled" for i in images))
        await until(pilot, lambda: "3 jobs cancelled" in notes)
        assert job(store, mail)["status"] == "queued"

    drive(store, scenario)
