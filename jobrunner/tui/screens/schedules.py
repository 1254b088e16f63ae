"""Schedules: each with its timing, next and last fire and last job; pause, resume, run now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static
from textual.worker import Worker, WorkerState

from jobrunner.present import STATUS_STYLES, parse_iso, schedule_state, zoned_time
from jobrunner.tui import data
from jobrunner.tui.format import short_age
from jobrunner.tui.screens.paged import REFRESH_S, error_text

if TYPE_CHECKING:
    from jobrunner.tui.app import JobrunnerApp

#: (key, label, width): narrow enough for 120 columns.
COLUMNS = (
    ("name", "NAME", 14), ("when", "WHEN", 21), ("next", "NEXT", 24), ("last", "LAST", 23),
    ("job", "LAST JOB", 12), ("missed", "MISSED", 6), ("state", "STATE", 6),
)  # fmt: skip
STATE_STYLES = {
    "active": "green", "paused": "bold dark_orange", "broken": "bold red", "fired": "dim", "done": "dim",
}  # fmt: skip


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(text: str | None, timezone: str, now: float) -> str:
    """The time in the schedule's own zone (as `schedule list` shows it) and how far off:
    `11-26 03:00 CET in 7h`."""
    stamp = parse_iso(text)
    if stamp is None:
        return "-"
    delta = stamp - now
    relative = f"in {short_age(delta)}" if delta >= 0 else f"{short_age(-delta)} ago"
    return f"{zoned_time(text, timezone)[5:]} {relative}"  # the year is noise here


def schedule_row(view: dict[str, Any], now: float) -> tuple[Text, ...]:
    """One schedule's cells (in the worker thread)."""
    width = {key: size for key, _, size in COLUMNS}
    when = f"{view['expression']}  ({view['description']})" if view["kind"] == "cron" else view["description"]
    job = ""
    if view["last_job_id"] is not None:
        job = f"{view['last_job_id']} {view['last_job_status'] or 'purged'}"
    state = schedule_state(view)
    zone = view["timezone"]
    upcoming = "-" if view["paused"] else _when(view["next_fire_at"], zone, now)
    cells = [
        Text(_fit(view["name"], width["name"])),
        Text(_fit(when, width["when"])),
        Text(_fit(upcoming, width["next"])),
        Text(_fit(_when(view["last_fire_at"], zone, now), width["last"])),
        Text(_fit(job, width["job"]), style=STATUS_STYLES.get(view["last_job_status"] or "", "")),
        Text(str(view["missed"]), justify="right", style="yellow" if view["missed"] else ""),
        Text(state, style=STATE_STYLES[state]),
    ]
    return tuple(cells)


class SchedulesScreen(Screen):
    """Few rows (one per schedule), so the whole list is read each refresh."""

    AUTO_FOCUS = "DataTable"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,s", "back", "Back"),
        Binding("p", "pause", "Pause/resume"),
        Binding("r", "run_now", "Run now"),
    ]

    app: JobrunnerApp

    def __init__(self) -> None:
        super().__init__()
        self.views: list[dict[str, Any]] = []
        self._shown: list[tuple[Text, ...]] = []
        self._loader: Worker | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("jobrunner · schedules", style="bold"), id="schedules-title")
        table: DataTable = DataTable(cursor_type="row", id="schedules")
        yield table
        yield Label("", id="schedule-note", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            table.add_column(
                Text(label, justify="right" if key == "missed" else "left"), key=key, width=width
            )
        self.set_interval(REFRESH_S, self._tick)
        self._tick()

    def _tick(self) -> None:
        if self.is_current and (self._loader is None or self._loader.is_finished):
            self._loader = self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="schedules", name="schedules")
    def _load(self) -> tuple[list[dict[str, Any]], list[tuple[Text, ...]]]:
        now = self.app.clock()
        views = data.fetch_schedules(self.app.store)
        return views, [schedule_row(view, now) for view in views]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.name == "schedules":
            if event.state == WorkerState.SUCCESS:
                self._apply(*worker.result)
            elif event.state == WorkerState.ERROR:
                self._title(Text.assemble(("database error: ", "bold red"), error_text(worker.error)))
        elif worker.name == "action" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            if event.state == WorkerState.SUCCESS:
                self.notify(worker.result, timeout=4, markup=False)
            else:
                self.notify(error_text(worker.error), severity="error", timeout=8, markup=False)
            self._tick()

    def _title(self, extra: Text) -> None:
        self.query_one("#schedules-title", Static).update(
            Text.assemble(("jobrunner · schedules", "bold"), "  ", extra)
        )

    def _apply(self, views: list[dict[str, Any]], rows: list[tuple[Text, ...]]) -> None:
        table = self.query_one(DataTable)
        names = [v["name"] for v in views]
        selected = self.selected
        if names == [v["name"] for v in self.views]:  # same schedules: changed cells only
            for name, old, new in zip(names, self._shown, rows, strict=True):
                for (key, _, _), before, after in zip(COLUMNS, old, new, strict=True):
                    if before != after:
                        table.update_cell(name, key, after)
        else:
            table.clear()
            for name, row in zip(names, rows, strict=True):
                table.add_row(*row, key=name)
            if selected is not None and selected["name"] in names:
                table.move_cursor(row=names.index(selected["name"]), animate=False)
        self.views, self._shown = views, rows
        paused = sum(v["paused"] for v in views)
        self._title(Text(f"{len(views)} schedules, {paused} paused", style="dim"))
        note = self.query_one("#schedule-note", Label)
        view = self.selected
        if not views:
            note.update("no schedules: jobrunner schedule add NAME --cron '0 3 * * *' -- COMMAND")
        elif view is not None and view["last_note"]:
            note.update(f"{view['name']}: {view['last_note']}")
        else:
            note.update("")

    @property
    def selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not self.views or not 0 <= table.cursor_row < len(self.views):
            return None
        return self.views[table.cursor_row]

    def _selected_or_say(self) -> dict[str, Any] | None:
        view = self.selected
        if view is None:
            self.notify("no schedule selected", severity="warning", timeout=3, markup=False)
        return view

    @work(thread=True, exit_on_error=False, group="actions", name="action")
    def _act(self, action: Any, args: tuple) -> str:
        return action(self.app.store, *args, self.app.clock())

    def action_back(self) -> None:
        self.dismiss()

    def action_pause(self) -> None:
        view = self._selected_or_say()
        if view is not None:
            self._act(data.set_schedule_paused, (view["name"], not view["paused"]))

    def action_run_now(self) -> None:
        view = self._selected_or_say()
        if view is not None:
            self._act(data.run_schedule_now, (view["name"], self.app.config))

    @on(DataTable.RowSelected)
    def action_last_job(self) -> None:
        from jobrunner.tui.screens.detail import DetailScreen

        view = self._selected_or_say()
        if view is None:
            return
        if view["last_job_id"] is None:
            self.notify(
                f"schedule {view['name']} has not fired yet", severity="warning", timeout=3, markup=False
            )
            return
        self.app.push_screen(DetailScreen(view["last_job_id"]))
