"""One job: every field `jobrunner show` prints, its history, and its log followed live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, Static
from textual.worker import Worker, WorkerState

from jobrunner import present
from jobrunner.domain.states import CANCELLABLE, FINISHED, Status
from jobrunner.tui import data, format
from jobrunner.tui.logtail import LogChunk, LogTail
from jobrunner.tui.logview import LogView
from jobrunner.tui.screens.dialogs import ConfirmDialog
from jobrunner.tui.screens.paged import REFRESH_S, error_text

if TYPE_CHECKING:
    from jobrunner.tui.app import JobrunnerApp


class DetailScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "retry", "Retry"),
        Binding("p", "pause", "Pause queue"),
        Binding("f", "follow", "Follow log"),
    ]

    app: JobrunnerApp

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: dict[str, Any] | None = None
        self._shown: tuple | None = None
        self._tail: LogTail | None = None  # touched only by the (one at a time) loader
        self._loader: Worker | None = None

    def compose(self) -> ComposeResult:
        yield Label(f"job {self.job_id}", id="detail-title")
        with VerticalScroll(id="info"):
            yield Static(id="fields")
        yield Label("log", id="log-title")
        yield LogView(f"… earlier lines not kept here: jobrunner logs {self.job_id} shows all", id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(REFRESH_S, self._tick)
        self._tick()

    def _tick(self) -> None:
        if self._loader is None or self._loader.is_finished:
            self._loader = self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail", name="detail")
    def _load(self) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], LogChunk | None]:
        job, events, links = data.fetch_job(self.app.store, self.job_id)
        path = job["log_path"]
        if path and (self._tail is None or self._tail.path != path):
            self._tail = LogTail(path, self.job_id)
            chunk = self._tail.read()
            chunk.reset = True
        else:
            chunk = self._tail.read() if path and self._tail else None
        return job, events, links, chunk

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.name == "detail":
            if event.state == WorkerState.SUCCESS:
                self._apply(*worker.result)
            elif event.state == WorkerState.ERROR:
                self.query_one("#detail-title", Label).update(
                    Text.assemble(
                        (f"job {self.job_id}  ", "bold"), ("error: ", "bold red"), error_text(worker.error)
                    )
                )
        elif worker.name == "action":
            if event.state == WorkerState.SUCCESS:
                self.notify(worker.result, timeout=4, markup=False)
            elif event.state == WorkerState.ERROR:
                self.notify(error_text(worker.error), severity="error", timeout=8, markup=False)
            self._tick()

    def _apply(self, job: dict[str, Any], events: list[dict[str, Any]], links: dict[str, Any],
               chunk: LogChunk | None) -> None:  # fmt: skip
        self.job = job
        now = self.app.clock()
        title = Text.assemble(
            (f"job {job['id']}  ", "bold"),
            (format.visible(job["name"], lines=False), "bold"),
            "  ",
            format.status_text(job["status"]),
        )
        if present.shows_progress(job):  # the message as wide as the line allows; whole in the fields below
            title.append("  ")
            title.append_text(format.progress_cell(job, max(self.size.width - title.cell_len - 4, 30)))
        self.query_one("#detail-title", Label).update(title)
        shown = (job, events, links, format.duration(job, now))
        if shown != self._shown:  # a running job's duration ticks; otherwise nothing to redraw
            self._shown = shown
            self.query_one("#fields", Static).update(
                Group(*present.job_detail(job, events, now, links, ruled=True))
            )
        self._show_log(job, chunk)
        self._size_panes()

    def on_resize(self) -> None:
        self.call_after_refresh(self._size_panes)

    def _size_panes(self) -> None:
        """Fields and history take the room they need, the log the rest: an empty log keeps a
        line, a log keeps at least its lines up to a third of the room (the rest scrolls)."""
        room = self.size.height - 3  # the title, the log's title, the footer
        if room <= 0:
            return
        keep = min(max(self.query_one(LogView).line_count, 1), max(room // 3, 3))
        most = max(room - keep, 3)
        info = self.query_one("#info", VerticalScroll)
        if info.styles.max_height is None or info.styles.max_height.value != most:
            info.styles.max_height = most

    def _show_log(self, job: dict[str, Any], chunk: LogChunk | None) -> None:
        log = self.query_one(LogView)
        title = self.query_one("#log-title", Label)
        if chunk is None:
            title.update(Text("log  (none yet: the daemon writes one when the job runs)", style="dim"))
            return
        following = log.following
        if chunk.reset:
            log.clear()
            following = True
        if not chunk.missing:
            log.add(chunk, follow=following)
        state = (
            "file not there (yet)" if chunk.missing else ("following" if following else "paused: f follows")
        )
        running = job["status"] == Status.RUNNING.value
        title.update(
            Text.assemble(
                ("log  ", "bold"),
                (job["log_path"], ""),
                (f"  · {state if running else 'job not running'}", "dim"),
            )
        )

    # -- actions
    def action_back(self) -> None:
        self.dismiss()

    def action_follow(self) -> None:
        self.query_one(LogView).scroll_end(animate=False)

    def _act(self, action: Any, *args: Any, confirm: str | None = None, yes: str = "Yes") -> None:
        def go(ok: bool | None = True) -> None:
            if ok:
                self._run(action, args)

        if confirm:
            self.app.push_screen(ConfirmDialog(confirm, yes=yes), go)
        else:
            go()

    @work(thread=True, exit_on_error=False, group="actions", name="action")
    def _run(self, action: Any, args: tuple) -> str:
        return action(self.app.store, *args, self.app.clock())

    def action_cancel(self) -> None:
        if self.job is None:
            return
        status = Status(self.job["status"])
        if status in FINISHED:
            self.notify(
                f"job {self.job_id} is already {status.value}", severity="warning", timeout=4, markup=False
            )
            return
        what = "It never starts." if status in CANCELLABLE else "The daemon stops it."
        self._act(data.cancel_jobs, [self.job_id], confirm=f"Cancel job {self.job_id} ({status.value})? {what}",
                  yes="Cancel job")  # fmt: skip

    def action_retry(self) -> None:
        self._act(data.retry_jobs, [self.job_id])

    def action_pause(self) -> None:
        if self.job is not None:
            self._act(data.toggle_queue_pause, self.job["queue"])
