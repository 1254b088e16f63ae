"""What every command needs: the global options, the config and the store, loaded on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typer stays out of the fast path (jobrunner.cli.fast), which uses AppState
    import typer

    from jobrunner.config import Config
    from jobrunner.store.db import Store


@dataclass
class AppState:
    """Global options and lazily opened resources for one CLI invocation."""

    db_option: str | None = None
    config_option: str | None = None
    _config: Config | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from jobrunner.config import load_config

            self._config = load_config(self.config_option)
        return self._config

    @property
    def db_target(self) -> str:
        from jobrunner.config import resolve_db_target

        return resolve_db_target(self.db_option, self.config)

    @property
    def store_open(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> Store:
        if self._store is None:
            from jobrunner.store import open_store

            self._store = open_store(self.db_target, durability=self.config.durability)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def state(ctx: typer.Context) -> AppState:
    """The AppState of this invocation (set by the root callback)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj
