"""`jobrunner tui`: open the full-screen app over the database the CLI would use."""

from __future__ import annotations

import typer

from jobrunner.cli.context import state


def tui_command(ctx: typer.Context) -> None:
    """Watch and steer jobs live in a full-screen terminal UI.

    Press q to quit and ? to list the keys.
    """
    current = state(ctx)
    # A missing database (a typo'd --db) is refused here, and opening errors become one line,
    # before the screen is taken over.
    store = current.store
    from jobrunner.tui.app import JobrunnerApp  # textual loads only for this command

    JobrunnerApp(store, config=current.config).run()


def register(app: typer.Typer) -> None:
    app.command("tui")(tui_command)
