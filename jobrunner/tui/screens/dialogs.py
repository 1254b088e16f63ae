"""Modal dialogs: a yes/no confirmation for destructive actions, and the key help."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmDialog(ModalScreen[bool]):
    """Asks before anything that cannot be undone; `y` or Enter on Yes confirms, `n`/Escape does not."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question", markup=False)
            with Horizontal(id="buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe answer is the default

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


KEYS: list[tuple[str, list[tuple[str, str]]]] = [
    ("Jobs", [
        ("↑ ↓ PgUp PgDn Home End", "move; past an edge shows the next jobs"),
        ("Enter", "the job's detail and log"),
        ("space", "mark the job (again: unmark); c, r, + and - then act on every marked job; Esc forgets"),
        ("c", "cancel the job (asks first)"),
        ("C", "cancel every job the filters match that has not started (running ones too if filtered by running; asks first)"),
        ("r", "retry a dead, cancelled or retrying job"),
        ("+ / -", "raise / lower the priority of a job that has not started"),
        ("n", "submit a new job (command or module:function, queue, priority, retries)"),
        ("p", "pause or resume the job's queue"),
        ("o / O", "sort by the next column / the other way round (or click a header)"),
        ("1 … 8", "add or remove a status filter (numbers as in the header)"),
        ("0", "all statuses"),
        ("/", "search name and command; f: queue and tag filters"),
        ("x", "clear every filter"),
        ("Esc", "back to the table"),
        ("d", "dead letters"),
        ("s", "schedules"),
    ]),
    ("Dead letters", [
        ("r", "retry the job"),
        ("e", "edit the job (what it runs, arguments, queue, priority, retries, timeout, tags), then retry it"),
        ("a", "retry every dead job that matches the queue and search filters (asks first)"),
        ("P", "purge every dead job and its history (asks first)"),
        ("o / O", "sort, as in jobs"),
        ("Enter / Esc", "detail / back to jobs"),
    ]),
    ("Schedules", [
        ("p", "pause or resume the schedule"),
        ("r", "run it now, once (its next time stays)"),
        ("Enter / Esc", "its last job / back to jobs"),
    ]),
    ("Job detail", [
        ("c / r / p", "cancel / retry / pause or resume the queue"),
        ("f", "follow the log again after scrolling up"),
        ("Tab", "between the fields and the log"),
        ("Esc", "back"),
    ]),
    ("Everywhere", [("?", "this help"), ("q", "quit")]),
]  # fmt: skip


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for section, keys in KEYS:
        table.add_row(f"[bold]{section}[/]", "")
        for key, meaning in keys:
            table.add_row(key, meaning)
        table.add_row("", "")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,enter", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_table())

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "keys  (Esc closes)"

    def action_close(self) -> None:
        self.dismiss(None)
