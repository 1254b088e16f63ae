"""`jobrunner tui`: open the full-screen app over the database the CLI would use."""

from __future__ import annotations

from pathlib import Path

import typer

from jobrunner.cli.context import state
from jobrunner.errors import UsageError


def tui_command(ctx: typer.Context) -> None:
    """Watch and steer jobs live in a full-screen terminal UI (q quits, ? lists the keys)."""
    current = state(ctx)
    target = current.db_target
    if "://" not in target and not Path(target).exists():
        # Watching a typo would create an empty database and show nothing: say so instead.
        raise UsageError(
            f"no database at {target} yet: submit a job first (jobrunner submit -- COMMAND) or pass --db"
        )
    store = current.store  # opening errors become one line here, before the screen is taken over
    from jobrunner.tui.app import JobrunnerApp  # textual loads only for this command

    JobrunnerApp(store, config=current.config).run()


def register(app: typer.Typer) -> None:
    app.command("tui")(tui_command)
