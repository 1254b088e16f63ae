"""Queue, tag and search filters in one line; every change posts FilterBar.Changed."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Label, Select


class FilterBar(Horizontal):
    class Changed(Message):
        def __init__(self, queue: str | None, tag: str, search: str) -> None:
            super().__init__()
            self.queue = queue
            self.tag = tag
            self.search = search

    def __init__(self, with_queue: bool = True, with_tag: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.with_queue = with_queue
        self.with_tag = with_tag
        self._queues: list[str] = []

    def compose(self) -> ComposeResult:
        if self.with_queue:
            yield Label("queue")
            yield Select[str]([], prompt="all", compact=True, id="queue")
        if self.with_tag:
            yield Label("tag")
            yield Input(placeholder="any", compact=True, id="tag")
        yield Label("search")
        yield Input(placeholder="name or command (/)", compact=True, id="search")

    def set_queues(self, names: list[str]) -> None:
        """Offer the queues that exist; keep the chosen one even while it has no jobs."""
        if not self.with_queue:
            return
        select = self.query_one("#queue", Select)
        chosen = select.value if isinstance(select.value, str) else None
        wanted = sorted(set(names) | ({chosen} if chosen else set()))
        if wanted != self._queues:
            self._queues = wanted
            with select.prevent(Select.Changed):
                select.set_options([(name, name) for name in wanted])
                if chosen:
                    select.value = chosen

    def clear(self) -> None:
        for widget in self.query(Input):
            widget.value = ""
        if self.with_queue:
            self.query_one("#queue", Select).clear()

    @on(Select.Changed)
    @on(Input.Changed)
    def _changed(self, event: Message) -> None:
        event.stop()
        queue = None
        if self.with_queue:
            value = self.query_one("#queue", Select).value
            queue = value if isinstance(value, str) else None
        tag = self.query_one("#tag", Input).value.strip() if self.with_tag else ""
        self.post_message(self.Changed(queue, tag, self.query_one("#search", Input).value.strip()))
