"""`jobrunner web`: the TUI in a browser. textual-serve and aiohttp load only when the command runs."""

from __future__ import annotations

from typing import Annotated

import typer

from jobrunner.cli.context import state


def web_command(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(
        "--port", min=0, max=65535, metavar="PORT", show_default=False,
        help="The port on 127.0.0.1 [default: 8766; 0: any free one].",
    )] = 8766,
) -> None:
    """Serve the TUI to a browser, on this machine only.

    Every tab gets its own TUI, the same as `jobrunner tui`. It listens on 127.0.0.1; from another
    machine, use an SSH tunnel (ssh -L 8766:127.0.0.1:8766 HOST). A new token at each start, in
    web.token in the database's log directory, opens the page (/?token=...).
    """
    import importlib.util

    from jobrunner.errors import UsageError

    if importlib.util.find_spec("textual_serve") is None:
        raise UsageError("`jobrunner web` needs textual-serve: pip install 'jobrunner[web]'")
    current = state(ctx)
    current.store  # noqa: B018 - a missing or broken database is one line here, not a blank page later
    config_path = current.config.path
    current.close()
    from jobrunner.web import run

    raise typer.Exit(run(current.db_target, str(config_path.absolute()) if config_path else None, port))


def register(app: typer.Typer) -> None:
    app.command("web")(web_command)
