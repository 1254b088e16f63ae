"""What every command needs: the global options, the config and the store, loaded on first use."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jobrunner.errors import UsageError

if TYPE_CHECKING:  # typer stays out of the fast path (jobrunner.cli.fast), which uses AppState
    import typer

    from jobrunner.config import Config
    from jobrunner.errors import ConfigError
    from jobrunner.store.db import Store

#: The commands that add something, and so may create a missing database; any other command
#: on a missing SQLite file says so rather than leave an empty database behind (a typo'd --db).
CREATING_COMMANDS = frozenset({("submit",), ("daemon",), ("schedule", "add"), ("db", "migrate")})
#: The commands that only read, and so open a SQLite file whose schema is current without peewee
#: (store.db.SqliteReader): a fifth of their start-up.
READING_COMMANDS = frozenset({("list",), ("stats",)})


@dataclass
class AppState:
    """Global options and lazily opened resources for one CLI invocation."""

    db_option: str | None = None
    config_option: str | None = None
    command: tuple[str, ...] = ()  # the command being run, e.g. ("schedule", "add")
    verbose: bool = False  # say on stderr which database and config the command uses
    _config: Config | None = field(default=None, repr=False)
    _config_problem: ConfigError | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        """The whole config, checked: a command that acts on it refuses a broken one (exit 2)."""
        if self._config_problem is not None:
            raise self._config_problem
        if self._config is None:
            from jobrunner.config import load_config

            self._config = load_config(self.config_option)
        return self._config

    @property
    def config_for_database(self) -> Config:
        """The config as far as finding and opening the database goes: a mistake elsewhere in it
        is one warning, so reads go on, while `config` still refuses it."""
        if self._config is None and self._config_problem is None:
            from jobrunner.config import load_config

            self._config = load_config(self.config_option, on_problem=self._warn)
        assert self._config is not None
        return self._config

    def _warn(self, problem: ConfigError) -> None:
        self._config_problem = problem
        sys.stderr.write(f"jobrunner: warning: {problem} (ignored: this command needs only the database)\n")

    @property
    def db_target(self) -> str:
        from jobrunner.config import resolve_db_target

        if self.db_option and "://" in self.db_option:
            from jobrunner.secrets import redact_target, target_password

            if target_password(self.db_option):  # a command line is public: `ps` shows it to every user
                raise UsageError(
                    f"--db {redact_target(self.db_option)} carries a password, which every local user "
                    "can read in `ps`: put the password in ~/.pgpass, or the URL in JOBRUNNER_DB"
                )
        return resolve_db_target(self.db_option, self.config_for_database)

    @property
    def store_open(self) -> bool:
        return self._store is not None

    @property
    def database_missing(self) -> bool:
        """The database is a SQLite file that does not exist yet."""
        target = self.db_target
        return "://" not in target and not Path(target).exists()

    @property
    def store(self) -> Store:
        """The open store; only a CREATING_COMMANDS command may create the database."""
        if self._store is None:
            from jobrunner.store import open_store

            if self.command not in CREATING_COMMANDS and self.database_missing:
                raise no_database(self.db_target)
            self._store = open_store(self.db_target, durability=self.config_for_database.durability,
                                     reading=self.command in READING_COMMANDS,
                                     application_name=self.application_name())  # fmt: skip
            self.say_where()
        return self._store

    def application_name(self) -> str:
        """How this command's connections show in PostgreSQL's pg_stat_activity, so an operator
        can tell which host and process holds one: `jobrunner daemon db1:4242`."""
        import os
        import socket

        return " ".join(("jobrunner", *self.command, f"{socket.gethostname()}:{os.getpid()}"))

    def say_where(self) -> None:
        """With --verbose: which database and config this command uses (one line, on stderr)."""
        if not self.verbose:
            return
        from jobrunner.secrets import redact_target

        config = self._config.path if self._config is not None and self._config.path else "none found"
        sys.stderr.write(f"jobrunner: database {redact_target(self.db_target)}, config {config}\n")
        self.verbose = False  # once per command

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def state(ctx: typer.Context) -> AppState:
    """The AppState of this invocation (set by the root callback), told which command asks."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    if names:  # the root callback asks first, then the command itself
        root.obj.command = tuple(reversed(names))
    return root.obj


def no_database(target: str) -> UsageError:
    """The one answer of every command that needs a database which is not there."""
    if not Path(target).parent.exists():  # a typo in the directory: no submit would help
        return UsageError(
            f"no database at {target}: its directory {Path(target).parent} does not exist; check --db"
        )
    return UsageError(
        f"no database at {target} yet: submit a job first (jobrunner submit -- COMMAND) or pass --db"
    )


def parse_job_ids(words: Iterable[str | int], where: str = "") -> list[int]:
    """Job ids as the user typed them; anything else (a word, 0, past 64 bits) is a UsageError.

    `where` prefixes the message, e.g. "--after: "."""
    from jobrunner.domain.jobspec import MAX_JOB_ID

    ids = []
    for word in words:
        text = str(word).strip()
        # the length first: int() refuses thousands of digits with a ValueError of its own
        if not (text.isascii() and text.isdigit()) or len(text) > 19 or not 0 < int(text) <= MAX_JOB_ID:
            raise UsageError(
                f"{where}{str(word)!r} is not a job id: ids are positive whole numbers, as `jobrunner list` shows them"
            )
        ids.append(int(text))
    return ids
