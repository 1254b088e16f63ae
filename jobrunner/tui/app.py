"""The Textual app: holds the store and the clock; the screens do the rest."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from jobrunner.config import Config
from jobrunner.store.db import Store
from jobrunner.tui.screens.dialogs import HelpScreen
from jobrunner.tui.screens.jobs import JobsScreen


class JobrunnerApp(App):
    """`jobrunner tui`. The store is opened (and its errors reported) before the app starts."""

    CSS_PATH = "app.tcss"
    TITLE = "jobrunner"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(
        self, store: Store, clock: Callable[[], float] = time.time, config: Config | None = None
    ) -> None:
        super().__init__()
        self.store = store
        self.clock = clock  # a test or a snapshot freezes it
        self._config = config
        self.sub_title = store.target

    @property
    def config(self) -> Config:
        """jobs.toml, for schedules that run a task (loaded on first use when not given)."""
        if self._config is None:
            from jobrunner.config import load_config

            self._config = load_config(None)
        return self._config

    def on_mount(self) -> None:
        self.push_screen(JobsScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
