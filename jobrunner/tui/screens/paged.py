"""What the jobs and dead-letter screens share: a page of jobs refreshed off the UI thread,
actions run in workers, and confirmation before anything destructive."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Input, Label
from textual.worker import Worker, WorkerState

from jobrunner.errors import JobrunnerError
from jobrunner.tui import data
from jobrunner.tui.screens.dialogs import ConfirmDialog
from jobrunner.tui.widgets.filter_bar import FilterBar
from jobrunner.tui.widgets.paged_table import Column, PagedTable, page_rows
from jobrunner.tui.widgets.status_header import StatusHeader

if TYPE_CHECKING:
    from jobrunner.tui.app import JobrunnerApp

REFRESH_S = 0.5


def error_text(error: BaseException | None) -> str:
    if isinstance(error, JobrunnerError):
        return str(error)
    return f"unexpected {type(error).__name__}: {error}"


class PagedScreen(Screen):
    """A table of one page of jobs that follows the database twice a second."""

    AUTO_FOCUS = "PagedTable"
    COLUMNS: ClassVar[list[Column]] = []
    EMPTY = "no jobs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search", key_display="/"),
        Binding("o", "sort", "Sort", show=False),
        Binding("O", "reverse_sort", "Reverse sort", show=False, key_display="O"),
        Binding("escape", "to_table", "Table", show=False),
    ]

    app: JobrunnerApp

    def __init__(self, request: data.PageRequest, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.snapshot: data.Snapshot | None = None
        self._loader: Worker | None = None
        self._cursor: int | None = None  # where the cursor goes when the requested page arrives
        self._follow = True
        self.marked: set[int] = set()  # ids marked with space: actions apply to all of them

    # -- widgets the subclass composes
    @property
    def table(self) -> PagedTable:
        return self.query_one(PagedTable)

    @property
    def header(self) -> StatusHeader:
        return self.query_one(StatusHeader)

    def on_mount(self) -> None:
        self.set_interval(REFRESH_S, self._tick)
        self.call_after_refresh(self.reload)

    def on_screen_resume(self) -> None:
        self.reload()

    def on_resize(self) -> None:
        self.call_after_refresh(self.reload)

    def _tick(self) -> None:
        if self.is_current and (self._loader is None or self._loader.is_finished):
            self.reload()

    def reload(self, cursor: int | None = None, follow: bool = True) -> None:
        """Fetch the current page now (a newer request supersedes an older one in flight)."""
        if not self.is_mounted or not self.table.size.height:
            return  # before the first layout: how many rows fit is not known yet
        self.request = replace(self.request, limit=self.table.capacity)
        if cursor is None and self._cursor is not None:
            # a periodic reload between a jump's read and its drawing must not drop where the
            # jump puts the cursor (End once left it on the top row of the last page)
            cursor, follow = self._cursor, self._follow
        self._cursor, self._follow = cursor, follow
        self._loader = self._load(self.request, frozenset(self.marked), self.table.room)

    @work(thread=True, exclusive=True, exit_on_error=False, group="page", name="page")
    def _load(self, request: data.PageRequest, marked: frozenset[int],
              room: tuple[int, int]) -> tuple[data.Snapshot, tuple[list, dict[str, int]], frozenset]:  # fmt: skip
        now = self.app.clock()
        snapshot = data.fetch_page(self.app.store, request, now)
        return snapshot, page_rows(self.COLUMNS, snapshot.jobs, now, marked, room), marked

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.name == "page":
            if event.state == WorkerState.SUCCESS:
                snapshot, page, marked = worker.result
                if marked == self.marked:
                    self._apply(snapshot, page)
                else:  # marks changed while it was read: draw them from a fresh read
                    self.reload(self._cursor, self._follow)
            elif event.state == WorkerState.ERROR:
                self.header.show_error(error_text(worker.error))
        elif worker.name == "action":
            if event.state == WorkerState.SUCCESS:
                self.notify(worker.result, timeout=4, markup=False)
                self.reload()
            elif event.state == WorkerState.ERROR:
                self.notify(error_text(worker.error), severity="error", timeout=8, markup=False)
                self.reload()

    def _apply(self, snapshot: data.Snapshot, page: tuple[list, dict[str, int]]) -> None:
        if snapshot.request != self.request:
            return  # the user moved or filtered since: a newer page is on its way
        self.request = self.request.at(snapshot.offset, snapshot.from_end)
        self.snapshot = snapshot
        table = self.table
        selected = table.selected
        follow = selected["id"] if self._follow and selected else None
        rows, widths = page
        table.show(snapshot.jobs, rows, cursor=self._cursor, follow=follow, widths=widths)
        table.show_order(self.request.order_by)
        self._cursor, self._follow = None, True
        self.header.show(snapshot, self.request, marked=len(self.marked))
        empty = self.query_one("#empty", Label)
        empty.display = not snapshot.jobs
        empty.update(self.EMPTY if not self.request.filtered else "no jobs match the filters (x clears them)")
        self.after_apply(snapshot)

    def after_apply(self, snapshot: data.Snapshot) -> None:
        """A hook for subclasses."""

    # -- paging
    @on(PagedTable.Shift)
    def _shift(self, message: PagedTable.Shift) -> None:
        """Past an edge: the window moves by `rows`. Counted from the end (End on more jobs than
        the counts go to), moving down brings the offset from the end closer to 0."""
        table = self.table
        snapshot = self.snapshot
        current = self.request.offset
        if self.request.from_end:
            offset = max(current - message.rows, 0)
        elif snapshot is not None and snapshot.exact:
            offset = min(max(current + message.rows, 0), max(snapshot.total - table.capacity, 0))
        else:  # past the last row, the next read shows the last page
            offset = max(current + message.rows, 0)
        if offset == current:  # at an edge: put the cursor on the first or last row
            if table.row_count:
                table.move_cursor(row=table.row_count - 1 if message.rows > 0 else 0)
            return
        self.request = self.request.at(offset)
        self.reload(cursor=table.cursor_row, follow=False)

    @on(PagedTable.Jump)
    def _jump(self, message: PagedTable.Jump) -> None:
        """Home: the first page; End: the last, read from the end (no count of every job)."""
        capacity = self.table.capacity
        self.request = self.request.at(0, from_end=message.to_end)
        self.reload(cursor=capacity if message.to_end else 0, follow=False)

    # -- filters
    def set_request(self, **changes: Any) -> None:
        """A new filter starts at the top of its results."""
        self.request = replace(self.request, offset=0, from_end=False, **changes)
        self.reload(cursor=0, follow=False)

    @on(FilterBar.Changed)
    def _filter_changed(self, message: FilterBar.Changed) -> None:
        self.set_request(
            queues=(message.queue,) if message.queue else (),
            tags=tuple(t for t in message.tag.replace(",", " ").split() if t),
            search=message.search,
        )

    # -- sorting (in the store, so paging stays a LIMIT/OFFSET over the sorted jobs)
    def sort_by(self, column: Column, flip: bool = True) -> None:
        """Sort by a column; sorted by it already: the other way round (if `flip`)."""
        current = self.request.order_by or ""
        if current.removeprefix("-") == column.sort and flip:
            order = column.sort if current.startswith("-") else f"-{column.sort}"
        else:
            order = f"-{column.sort}" if column.descending_first else column.sort
        self.set_request(order_by=None if order == "-id" else order)

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = next((c for c in self.COLUMNS if c.key == event.column_key.value), None)
        if column is not None and column.sort:
            self.sort_by(column)

    def action_sort(self) -> None:
        """The next sortable column, then back to newest first."""
        sortable = [c for c in self.COLUMNS if c.sort and c.sort != "id"]
        current = (self.request.order_by or "").removeprefix("-")
        names = [c.sort for c in sortable]
        if current in names and names.index(current) == len(names) - 1:
            self.set_request(order_by=None)
            return
        following = sortable[names.index(current) + 1] if current in names else sortable[0]
        self.sort_by(following, flip=False)

    def action_reverse_sort(self) -> None:
        current = self.request.order_by or "-id"
        reverse = current.removeprefix("-") if current.startswith("-") else f"-{current}"
        self.set_request(order_by=None if reverse == "-id" else reverse)

    @on(Input.Submitted)
    def _input_done(self) -> None:
        self.table.focus()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_to_table(self) -> None:
        if self.focused is self.table and self.marked:
            self.marked.clear()  # Esc on the table forgets the marks
            self.reload()
        self.table.focus()

    # -- marks: several jobs for one action
    def action_mark(self) -> None:
        job = self.table.selected
        if job is None:
            return
        self.marked.symmetric_difference_update({job["id"]})
        if self.table.cursor_row < self.table.row_count - 1:
            self.table.move_cursor(row=self.table.cursor_row + 1)
        self.reload()

    def targets(self) -> list[int]:
        """The marked jobs, or else the one under the cursor (empty, with a note, if none)."""
        if self.marked:
            return sorted(self.marked)
        job = self.selected_job()
        return [job["id"]] if job is not None else []

    def forget_marks(self) -> None:
        """After an action on the marked jobs: they are done with."""
        self.marked.clear()

    # -- actions
    def selected_job(self) -> dict[str, Any] | None:
        job = self.table.selected
        if job is None:
            self.notify("no job selected", severity="warning", timeout=3, markup=False)
        return job

    @on(DataTable.RowSelected)
    def action_detail(self) -> None:
        """Enter (or a click) on a row opens the job's detail, alike on every screen of jobs."""
        from jobrunner.tui.screens.detail import DetailScreen

        job = self.selected_job()
        if job is not None:
            self.app.push_screen(DetailScreen(job["id"]))

    def run_action(self, action: Callable[..., str], *args: Any, confirm: str | None = None,
                   yes: str = "Yes") -> None:  # fmt: skip
        """Run a store action in a worker; with `confirm`, only after the user says yes."""
        if confirm is None:
            self._act(action, args)
            return

        def answered(ok: bool | None) -> None:
            if ok:
                self._act(action, args)

        self.app.push_screen(ConfirmDialog(confirm, yes=yes), answered)

    @work(thread=True, exit_on_error=False, group="actions", name="action")
    def _act(self, action: Callable[..., str], args: tuple) -> str:
        return action(self.app.store, *args, self.app.clock())
