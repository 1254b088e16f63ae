"""The dead-letter queue: dead jobs with their last error; retry one (edited or not), retry all
that match the filter, purge."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Label

from jobrunner.domain.states import Status
from jobrunner.tui import data, format
from jobrunner.tui.screens.paged import PagedScreen
from jobrunner.tui.widgets.filter_bar import FilterBar
from jobrunner.tui.widgets.paged_table import Column, PagedTable
from jobrunner.tui.widgets.status_header import StatusHeader

ERROR_WIDTH = 56

DEAD_COLUMNS: list[Column] = [
    Column("id", "ID", 7, lambda job, now: str(job["id"]), right=True, sort="id", fit=True),
    Column("name", "NAME", 22, lambda job, now: format.one_line(job["name"], 22), sort="name"),
    Column("queue", "QUEUE", 10, lambda job, now: job["queue"], sort="queue"),
    Column("tries", "TRIES", 6, lambda job, now: format.tries(job), right=True, sort="attempts",
           descending_first=True),
    Column("died", "DIED", 5, lambda job, now: format.age(job, now, "finished_at"), right=True,
           sort="finished_at", descending_first=True),
    Column("error", "LAST ERROR", ERROR_WIDTH, lambda job, now: format.one_line(job["error"], ERROR_WIDTH)),
]  # fmt: skip


class DeadLetterScreen(PagedScreen):
    COLUMNS = DEAD_COLUMNS
    EMPTY = "no dead jobs: nothing has failed for good"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,d", "back", "Back"),
        Binding("r", "retry", "Retry"),
        Binding("e", "edit", "Edit & retry"),
        Binding("a", "retry_all", "Retry all"),
        Binding("P", "purge", "Purge all", key_display="P"),
    ]

    def __init__(self) -> None:
        super().__init__(data.PageRequest(statuses=(Status.DEAD,)))

    def compose(self) -> ComposeResult:
        yield StatusHeader("jobrunner · dead letters", keys=False, id="header")
        yield FilterBar(with_tag=False, id="filters")
        yield PagedTable(DEAD_COLUMNS, id="dead")
        yield Label("", id="empty")
        yield Footer()

    def set_request(self, **changes: object) -> None:
        changes.pop("tags", None)
        super().set_request(**changes)

    def after_apply(self, snapshot: data.Snapshot) -> None:
        """The queue filter offers the queues that have dead jobs."""
        queues = snapshot.stats["queues"]
        self.query_one(FilterBar).set_queues(sorted(q for q, statuses in queues.items() if "dead" in statuses))

    def action_back(self) -> None:
        if self.focused is not self.table:
            self.table.focus()  # Esc first leaves the search box
        else:
            self.dismiss()

    def action_retry(self) -> None:
        job = self.selected_job()
        if job is not None:
            self.run_action(data.retry_jobs, [job["id"]])

    def action_edit(self) -> None:
        """Edit the selected job's fields in a form, then retry it (one transaction)."""
        from jobrunner.domain import edits
        from jobrunner.tui.screens.edit import EditDialog

        job = self.selected_job()
        if job is None:
            return
        expect = edits.stored_fields(job)  # the job as shown: changed meanwhile, nothing is stored

        def edited(changes: dict[str, Any] | None) -> None:
            if changes is not None:
                self.run_action(data.edit_and_retry, job["id"], changes, expect)

        self.app.push_screen(EditDialog(job), edited)

    def action_retry_all(self) -> None:
        total = self.snapshot.total if self.snapshot else 0
        if not total:
            self.notify("no dead jobs to retry", severity="warning", timeout=3, markup=False)
            return
        matching = f" in queue {self.request.queues[0]}" if self.request.queues else ""
        matching += f" matching {self.request.search!r}" if self.request.search else ""
        self.run_action(
            data.retry_all, self.request,
            confirm=f"Retry all {data.count_text(total)} dead jobs{matching}? Each gets a fresh retry budget.",
            yes="Retry all",
        )  # fmt: skip

    def action_purge(self) -> None:
        dead = self.snapshot.stats["by_status"]["dead"] if self.snapshot else 0
        if not dead:
            self.notify("no dead jobs to purge", severity="warning", timeout=3, markup=False)
            return
        self.run_action(
            data.purge_jobs, [Status.DEAD], 0.0,
            confirm=f"Purge all {data.count_text(dead)} dead jobs and their history (whatever the search)? "
            "This cannot be undone.",
            yes="Purge",
        )  # fmt: skip
