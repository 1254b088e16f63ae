"""The root `jobrunner` command: global options, sub-commands, and error handling.

Every JobrunnerError (and database error) becomes one line on stderr and an exit
code: 2 for usage/input mistakes, 1 for anything else. No traceback for a user mistake.
Click's own usage errors (an unknown option, a missing value, a bad number) get the same
one line and exit 2, instead of Typer's box; a group given nothing (`jobrunner`) prints its
help on stdout. Help is plain text, so no word in [brackets] is taken for Rich markup.
"""

from __future__ import annotations

import sys
from difflib import get_close_matches
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from jobrunner import __version__
from jobrunner.cli.context import AppState, state
from jobrunner.errors import JobrunnerError, error_line


class JobrunnerGroup(TyperGroup):
    """Turns expected errors into a one-line message and a meaningful exit code."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        """Click's main, with its usage errors said as every other error is: in one line."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except typer.TyperException as exc:  # click's ClickException and all its usage errors
            if _is_bare_group(exc):  # `jobrunner`, `jobrunner schedule`: asking what there is
                typer.echo(exc.ctx.get_help())  # type: ignore[attr-defined]
                sys.exit(0)
            typer.echo(error_line(usage_message(exc)), err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("jobrunner: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)  # non-standalone click returns Exit's code

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except JobrunnerError as exc:
            typer.echo(error_line(str(exc)), err=True)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:  # `jobrunner list | head`
            if ctx.invoked_subcommand == "daemon":
                raise  # not its output: a daemon must not end quietly with 0 (systemd would not restart it)
            sys.stderr.close()
            raise typer.Exit(0) from None
        finally:
            if isinstance(ctx.obj, AppState):
                ctx.obj.close()


def _is_bare_group(exc: Any) -> bool:
    ctx = getattr(exc, "ctx", None)
    return type(exc).__name__ == "NoArgsIsHelpError" and hasattr(getattr(ctx, "command", None), "commands")


def usage_message(exc: Any) -> str:
    """A click usage error in this CLI's words: lower case, the option first, no box."""
    ctx, param = getattr(exc, "ctx", None), getattr(exc, "param", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # a command given nothing: its message is the help
        message = "missing arguments"
    elif isinstance(exc, typer.BadParameter) and param is not None and not hasattr(exc, "param_type"):
        # a bad value (MissingParameter, which has a param_type, words itself: "missing argument 'ID'")
        option = getattr(param, "param_type_name", "") == "option"
        name = param.opts[0] if option else param.human_readable_name
        message = f"{name}: {_in_range_words(param, exc.message)}".rstrip(".")
    else:
        message = exc.format_message()
        if getattr(exc, "possibilities", None):  # an option typo: click's suggestions, closest first
            ranked = get_close_matches(exc.option_name, exc.possibilities, n=len(exc.possibilities), cutoff=0)
            guesses = ", ".join(ranked[:-1]) + " or " + ranked[-1] if len(ranked) > 1 else ranked[0]
            message = f"{exc.message} (did you mean {guesses}?)"
        head, found, suggestion = message.partition(". Did you mean ")  # a command typo (Typer's words)
        if found:
            message = f"{head} (did you mean {suggestion.rstrip('?')}?)"
        message = message[:1].lower() + message[1:].rstrip(".")  # "No such option" -> "no such option"
    if ctx is not None:
        message += f"; see `{ctx.command_path} --help`"
    return message


def _in_range_words(param: Any, message: str) -> str:
    """Click's "0 is not in the range 1<=x<=512." as "0 is out of range: give 1 to 512"."""
    low, high = getattr(param.type, "min", None), getattr(param.type, "max", None)
    value, found, _ = message.partition(" is not in the range ")
    if not found:
        return message
    if low is not None and high is not None:
        return f"{value} is out of range: give {low:g} to {high:g}"
    if low is not None:
        return f"{value} is out of range: give {low:g} or more"
    return f"{value} is out of range: give {high:g} or less"


app = typer.Typer(
    name="jobrunner",
    cls=JobrunnerGroup,
    help="Run jobs in the background, reliably, and watch them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is plain text: Rich markup would eat words in [brackets]
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
            "--db",
            metavar="PATH|URL",
            help="The SQLite file or postgresql:// URL [env JOBRUNNER_DB; default: in the XDG state dir].",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="The jobs.toml to use [env JOBRUNNER_CONFIG; default: ./jobs.toml].",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say on stderr which database and config file the command uses.")
    ] = False,
) -> None:
    """Run jobs in the background, reliably, and watch them."""
    current = state(ctx)
    current.db_option = db
    current.config_option = config
    current.verbose = verbose


def _register() -> None:
    from jobrunner.cli import daemon, jobs, schedule, watch

    jobs.register(app)
    from jobrunner.cli import bulk, editing

    editing.register(app)  # edit
    bulk.register(app)  # dlq export
    schedule.register(app)
    watch.register(app)
    daemon.register(app)
    from jobrunner.cli import health, systemd

    health.register(app)
    systemd.register(app)
    from jobrunner.cli import dbcmd, priority, tui

    priority.register(app)
    tui.register(app)
    dbcmd.register(app)
    from jobrunner.cli import serve, web  # FastAPI, textual-serve: loaded only when `serve`, `web` run

    serve.register(app)
    web.register(app)


_register()


def main() -> None:
    """The Typer app on sys.argv: what jobrunner.cli.fast.main (the console script) falls back to."""
    app(prog_name="jobrunner")
