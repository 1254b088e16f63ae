"""Edit a dead job's fields and retry it: the form of `jobrunner retry ID --edit`.

The form shows what it runs, its arguments, queue, priority, retries, timeout and tags; what
changed is checked as a submit checks it (build_spec, the same words) before the form closes,
and the screen that opened it stores it (store.edits: edit and retry in one transaction).
"""

from __future__ import annotations

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
#: (field, label, placeholder) in the order shown; priority is a Select, the rest are inputs.
FIELDS = (
    ("name", "name", "a name to show in lists"),
    ("run", "run", "shell command, or package.module:function"),
    ("args", "args", "JSON list: a callable's positional arguments"),
    ("kwargs", "kwargs", "JSON object: a callable's keyword arguments"),
    ("queue", "queue", "default"),
    ("priority", "priority", ""),
    ("retries", "retries", "0"),
    ("timeout", "timeout", "none (30s, 10m, 1h)"),
    ("tags", "tags", "comma-separated"),
)


class EditDialog(ModalScreen[dict[str, Any] | None]):
    """Returns the fields the user changed (checked), or None; the screen that opened it stores them."""

    DEFAULT_CSS = """
    EditDialog { align: center middle; }
    #edit-form { width: 84; height: auto; padding: 1 2; border: round $accent; background: $surface; }
    #edit-fields { grid-size: 2; grid-columns: 10 1fr; grid-rows: 1; grid-gutter: 1 0; height: auto; }
    #edit-fields Label { color: $text-muted; }
    #edit-error { color: $error; width: 100%; margin: 1 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, job: dict[str, Any], action: str = "Retry") -> None:
        super().__init__()
        self.job = job
        self.action = action
        self.before = data.form_values(job)

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-form"), Grid(id="edit-fields"):
            for key, label, hint in FIELDS:
                yield Label(label)
                if key == "priority":
                    current = self.before["priority"]
                    options = [(p, p) for p in (PRIORITIES if current in PRIORITIES else (*PRIORITIES, current))]
                    yield Select(options, value=current, allow_blank=False, compact=True, id="edit-priority")
                else:
                    kind = "integer" if key == "retries" else "text"
                    yield Input(self.before[key], placeholder=hint, type=kind, compact=True, id=f"edit-{key}")
        # outside the grid: a message and the buttons span the form's width
        with Vertical(id="edit-bottom"):
            yield Label("", id="edit-error", markup=False)
            with Horizontal(id="buttons"):
                yield Button(f"{self.action} (Enter)", variant="success", id="edit-save")
                yield Button("Cancel (Esc)", variant="primary", id="edit-cancel")

    def on_mount(self) -> None:
        self.query_one("#edit-form").border_title = f"edit job {self.job['id']} and {self.action.lower()} it"
        self.query_one("#edit-run", Input).focus()

    def values(self) -> dict[str, str]:
        found = {key: self.query_one(f"#edit-{key}", Input).value for key, _, _ in FIELDS if key != "priority"}
        priority = self.query_one("#edit-priority", Select).value
        found["priority"] = str(priority) if isinstance(priority, str) else self.before["priority"]
        return found

    def changes(self) -> dict[str, Any]:
        """The changed fields, checked; UsageError naming the first bad one."""
        changes = data.form_changes(self.job, self.before, self.values())
        if "callable" in changes:
            self._check_here(changes)
        return changes

    def _check_here(self, changes: dict[str, Any]) -> None:
        """What `jobrunner submit` refuses on this machine: a callable whose module is nowhere to
        import from (not for a database URL: the daemon may run elsewhere)."""
        from jobrunner.domain import edits
        from jobrunner.domain.jobspec import SpecError, build_spec
        from jobrunner.machine_checks import check_runs_here

        store = getattr(self.app, "store", None)
        if store is not None and not store.is_sqlite:
            return
        fields = edits.merge(edits.stored_fields(self.job), changes)
        try:
            spec = build_spec(fields)
            spec.cwd = None  # the job's directory was checked when it was submitted
            check_runs_here(spec, lambda: getattr(self.app, "config", None))
        except SpecError as exc:
            raise UsageError(str(exc)) from None

    @on(Input.Submitted)
    @on(Button.Pressed, "#edit-save")
    def _save(self, event: Any) -> None:
        event.stop()
        try:
            changes = self.changes()
        except UsageError as exc:
            self.query_one("#edit-error", Label).update(str(exc))
            return
        self.dismiss(changes)

    @on(Button.Pressed, "#edit-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
