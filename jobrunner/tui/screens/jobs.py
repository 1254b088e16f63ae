"""The main screen: every job, a page at a time, with filters and actions on the selected one."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Label, Select

from jobrunner.domain.priority import priority_label
from jobrunner.domain.states import ALL_STATUSES, CANCELLABLE, FINISHED, Status
from jobrunner.tui import data, format
from jobrunner.tui.screens.paged import PagedScreen
from jobrunner.tui.widgets.filter_bar import FilterBar
from jobrunner.tui.widgets.paged_table import Column, PagedTable
from jobrunner.tui.widgets.status_header import StatusHeader

PROGRESS_WIDTH = 28  # at least: the column takes the room the others leave (61 cells at 160 columns)
HOST_WIDTH = 10

JOB_COLUMNS: list[Column] = [
    Column("id", "ID", 6, lambda job, now: str(job["id"]), right=True, sort="id", fit=True),
    Column("name", "NAME", 20, lambda job, now: format.one_line(job["name"], 20), sort="name"),
    Column("queue", "QUEUE", 9, lambda job, now: job["queue"], sort="queue"),
    Column("priority", "PRI", 8, lambda job, now: priority_label(job["priority"]), sort="priority",
           descending_first=True),
    Column("status", "STATUS", 9, lambda job, now: format.status_text(job["status"]), sort="status"),
    Column("progress", "PROGRESS", PROGRESS_WIDTH, lambda job, now: format.progress_cell(job, PROGRESS_WIDTH),
           sort="progress", descending_first=True, fill=lambda job, now, width: format.progress_cell(job, width)),
    Column("tries", "TRIES", 6, lambda job, now: format.tries(job), right=True, sort="attempts",
           descending_first=True),
    Column("age", "AGE", 4, lambda job, now: format.age(job, now), right=True, sort="created_at",
           descending_first=True),
    Column("took", "TOOK", 7, lambda job, now: format.duration(job, now), right=True),
    Column("host", "HOST", HOST_WIDTH, lambda job, now: format.host(job), optional=True),  # from 127 columns
]  # fmt: skip


class JobsScreen(PagedScreen):
    COLUMNS = JOB_COLUMNS
    EMPTY = "no jobs yet: jobrunner submit -- COMMAND"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel", "Cancel"),
        Binding("C", "cancel_matching", "Cancel all", key_display="C", show=False),
        Binding("r", "retry", "Retry"),
        Binding("p", "pause", "Pause"),
        Binding("plus,equals_sign", "priority(True)", "Priority", key_display="+"),
        Binding("minus", "priority(False)", "Priority -", key_display="-", show=False),
        Binding("n", "new_job", "New"),
        Binding("space", "mark", "Mark", show=False),
        Binding("d", "dead_letters", "Dead"),
        Binding("s", "schedules", "Schedules"),
        Binding("f", "filters", "Filters"),
        Binding("x", "clear_filters", "Clear"),
        *[
            Binding(str(number), f"toggle_status({number})", status.value, show=False)
            for number, status in enumerate(ALL_STATUSES, start=1)
        ],
        Binding("0", "all_statuses", "All statuses", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(data.PageRequest())

    def compose(self) -> ComposeResult:
        yield StatusHeader("jobrunner", id="header")
        yield FilterBar(id="filters")
        yield PagedTable(JOB_COLUMNS, id="jobs")
        yield Label("", id="empty")
        yield Footer()

    def after_apply(self, snapshot: data.Snapshot) -> None:
        self.query_one(FilterBar).set_queues(sorted(snapshot.stats["queues"]))

    def action_cancel(self) -> None:
        if self.marked:
            ids = self.targets()
            self.forget_marks()
            self.run_action(
                data.cancel_jobs, ids,
                confirm=f"Cancel {len(ids)} marked jobs? Those not started never start; running ones "
                "are stopped. (Nothing is cancelled if one has finished already.)",
                yes=f"Cancel {len(ids)} jobs",
            )  # fmt: skip
            return
        job = self.selected_job()
        if job is None:
            return
        status = Status(job["status"])
        if status in FINISHED:
            self.notify(
                f"job {job['id']} is already {status.value}", severity="warning", timeout=4, markup=False
            )
            return
        what = "It never starts." if status in CANCELLABLE else "The daemon stops it."
        self.run_action(
            data.cancel_jobs, [job["id"]],
            confirm=f"Cancel job {job['id']} ({format.one_line(job['name'], 60)}, {status.value})? {what}",
            yes="Cancel job",
        )  # fmt: skip

    def action_cancel_matching(self) -> None:
        """Cancel every job the filters match that can be (asks first), a batch at a time."""
        statuses = data.cancellable_statuses(self.request)
        if not statuses:
            self.notify("none of the statuses shown can be cancelled", severity="warning", timeout=4, markup=False)
            return
        what = ", ".join(s.value for s in statuses)
        where = [f"queue {self.request.queues[0]}"] if self.request.queues else []
        where += [f"tag {t}" for t in self.request.tags]
        where += [f"matching {self.request.search!r}"] if self.request.search else []
        self.run_action(
            data.cancel_all, self.request,
            confirm=f"Cancel every {what} job{' in ' + ', '.join(where) if where else ''}? "
            + ("Running ones are stopped." if Status.RUNNING in statuses else "Those never start."),
            yes="Cancel all",
        )  # fmt: skip

    def action_retry(self) -> None:
        ids = self.targets()
        if ids:
            self.forget_marks()
            self.run_action(data.retry_jobs, ids)

    def action_pause(self) -> None:
        job = self.selected_job()
        if job is not None:
            self.run_action(data.toggle_queue_pause, job["queue"])

    def action_priority(self, up: bool) -> None:
        ids = self.targets()  # marks stay: pressing + twice raises them twice
        if ids:
            self.run_action(data.step_priority, ids, up)

    def action_new_job(self) -> None:
        from jobrunner.tui.screens.submit import SubmitDialog

        def submitted(fields: dict[str, Any] | None) -> None:
            if fields is not None:
                self.run_action(data.submit_job, fields)

        queue = self.request.queues[0] if self.request.queues else "default"
        self.app.push_screen(SubmitDialog(queue=queue), submitted)

    def action_schedules(self) -> None:
        from jobrunner.tui.screens.schedules import SchedulesScreen

        self.app.push_screen(SchedulesScreen())

    def action_dead_letters(self) -> None:
        from jobrunner.tui.screens.dead import DeadLetterScreen

        self.app.push_screen(DeadLetterScreen())

    def action_filters(self) -> None:
        self.query_one("#queue", Select).focus()

    def action_clear_filters(self) -> None:
        self.query_one(FilterBar).clear()
        self.set_request(statuses=(), queues=(), tags=(), search="")
        self.table.focus()

    def action_toggle_status(self, number: int) -> None:
        status = ALL_STATUSES[number - 1]
        chosen = list(self.request.statuses)
        if status in chosen:
            chosen.remove(status)
        else:
            chosen.append(status)
        self.set_request(statuses=tuple(sorted(chosen, key=ALL_STATUSES.index)))

    def action_all_statuses(self) -> None:
        self.set_request(statuses=())
