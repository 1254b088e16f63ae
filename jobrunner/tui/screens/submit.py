"""A small form for a new job: what it runs, its queue, priority and retries."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from jobrunner.errors import UsageError
from jobrunner.tui import data

PRIORITIES = ("low", "normal", "high", "critical")


class SubmitDialog(ModalScreen[dict[str, Any] | None]):
    """Returns the job's fields (checked) or None; the screen that opened it stores the job."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, queue: str = "default", cwd: str | None = None) -> None:
        super().__init__()
        self.queue = queue
        self.cwd = cwd or os.getcwd()

    def compose(self) -> ComposeResult:
        with Vertical(id="submit-form"):
            with Grid(id="submit-fields"):
                yield Label("run")
                yield Input(
                    placeholder="shell command, or package.module:function", compact=True, id="target"
                )
                yield Label("queue")
                yield Input(self.queue, compact=True, id="submit-queue")
                yield Label("priority")
                yield Select([(p, p) for p in PRIORITIES], value="normal", allow_blank=False, compact=True,
                             id="priority")  # fmt: skip
                yield Label("retries")
                yield Input("0", type="integer", compact=True, id="retries")
                yield Label("unique key")
                yield Input(placeholder="optional: a second submit with it gets the unfinished job's id",
                            compact=True, id="unique-key")  # fmt: skip
            yield Label("", id="submit-error", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Submit (Enter)", variant="success", id="submit")
                yield Button("Cancel (Esc)", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#submit-form").border_title = "new job"
        self.query_one("#target", Input).focus()

    def fields(self) -> dict[str, Any]:
        priority = self.query_one("#priority", Select).value
        fields = data.job_fields(
            self.query_one("#target", Input).value,
            self.query_one("#submit-queue", Input).value,
            str(priority) if isinstance(priority, str) else "normal",
            self.query_one("#retries", Input).value,
            self.cwd,
            self.query_one("#unique-key", Input).value,
        )
        self._check_here(fields)
        return fields

    def _check_here(self, fields: dict[str, Any]) -> None:
        """What `jobrunner submit` refuses on this machine too: a callable whose module is nowhere
        to import from, a working directory gone (not for a database URL: the daemon may be elsewhere)."""
        from jobrunner.domain.jobspec import SpecError, build_spec
        from jobrunner.machine_checks import check_runs_here

        store = getattr(self.app, "store", None)
        if store is not None and not store.is_sqlite:
            return
        try:
            check_runs_here(build_spec(fields), lambda: getattr(self.app, "config", None))
        except SpecError as exc:
            raise UsageError(str(exc)) from None

    @on(Input.Submitted)
    @on(Button.Pressed, "#submit")
    def _submit(self, event: Any) -> None:
        event.stop()
        try:
            fields = self.fields()
        except UsageError as exc:
            self.query_one("#submit-error", Label).update(str(exc))
            return
        self.dismiss(fields)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
