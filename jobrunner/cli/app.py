"""The root `jobrunner` command: global options, sub-commands, and error handling.

Every JobrunnerError (and database error) becomes one line on stderr and an exit
code: 2 for usage/input mistakes, 1 for anything else. No traceback for a user mistake.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from jobrunner import __version__
from jobrunner.cli.context import AppState, state
from jobrunner.errors import JobrunnerError


class JobrunnerGroup(TyperGroup):
    """Turns expected errors into a one-line message and a meaningful exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except JobrunnerError as exc:
            typer.echo(f"jobrunner: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:  # `jobrunner list | head`
            if ctx.invoked_subcommand == "daemon":
                raise  # not its output: a daemon must not end quietly with 0 (systemd would not restart it)
            sys.stderr.close()
            raise typer.Exit(0) from None
        finally:
            if isinstance(ctx.obj, AppState):
                ctx.obj.close()


app = typer.Typer(
    name="jobrunner",
    cls=JobrunnerGroup,
    help="Run jobs in the background, reliably, and watch them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jobrunner {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="SQLite file or postgresql:// URL [env JOBRUNNER_DB; default: XDG state dir]"
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="jobs.toml to use [env JOBRUNNER_CONFIG; default: ./jobs.toml]"),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Run jobs in the background, reliably, and watch them."""
    current = state(ctx)
    current.db_option = db
    current.config_option = config


def _register() -> None:
    from jobrunner.cli import daemon, jobs, schedule, watch

    jobs.register(app)
    schedule.register(app)
    watch.register(app)
    daemon.register(app)
    from jobrunner.cli import health, systemd

    health.register(app)
    systemd.register(app)
    from jobrunner.cli import priority, tui

    priority.register(app)
    tui.register(app)


_register()


def main() -> None:
    """The Typer app on sys.argv: what jobrunner.cli.fast.main (the console script) falls back to."""
    app(prog_name="jobrunner")
