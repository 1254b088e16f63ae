"""The `jobrunner` console script: the common `submit`, `list`, `stats` and `daemon` forms without Typer.

Importing Typer and building the app costs more than a submit's own work, so this entry
point parses `jobrunner [--db X] [--config F] submit|list|stats|daemon [OPTIONS] [-- COMMAND...]`
by hand and calls the same functions the Typer commands call (submit.submit_job,
listing.list_jobs, listing.show_stats, rundaemon.run_daemon).
It takes only what it understands exactly as click would; anything else (help, --version,
shell completion, an unknown or bundled option, a missing value, a value that looks like an
option, a number click might read differently) goes to the Typer app untouched, so messages,
output and exit codes are the same whichever path ran. tests/test_cli_fast*.py compare both.
"""

from __future__ import annotations

import sys
from typing import Any

# jobrunner.store.backends.POSTGRES_DRIVERS (a test keeps them equal): importing that module
# here would import peewee, the very thing that must come after the block.
POSTGRES_DRIVERS = ("psycopg2", "psycopg2cffi", "psycopg")

#: option -> (parameter, kind). Kinds: "str", "int", "float", "strs"/"ints" (repeatable), "flag".
ROOT_OPTIONS = {"--db": ("db", "str"), "--config": ("config", "str"), "--verbose": ("verbose", "flag"), "-v": ("verbose", "flag")}
SUBMIT_OPTIONS = {
    "--call": ("call", "str"), "-c": ("call", "str"),
    "--arg": ("arg", "strs"), "-a": ("arg", "strs"),
    "--name": ("name", "str"), "-n": ("name", "str"),
    "--queue": ("queue", "str"), "-q": ("queue", "str"),
    "--priority": ("priority", "str"), "-p": ("priority", "str"),
    "--retries": ("retries", "int"), "-r": ("retries", "int"),
    "--timeout": ("timeout", "str"), "-t": ("timeout", "str"),
    "--backoff": ("backoff", "str"),
    "--tag": ("tag", "strs"),
    "--meta": ("meta", "strs"),
    "--env": ("env", "strs"), "-e": ("env", "strs"),
    "--env-file": ("env_file", "str"),
    "--cwd": ("cwd", "str"),
    "--at": ("at", "str"),
    "--in": ("delay", "str"),
    "--after": ("after", "strs"),  # ids: submit_job checks them, in its own words
    "--from-file": ("from_file", "str"), "-f": ("from_file", "str"),
    "--unique-key": ("unique_key", "str"),
    "--on-conflict": ("on_conflict", "str"),
    "--memory": ("memory", "str"),
    "--cpu-time": ("cpu_time", "str"),
    "--max-log-size": ("max_log_size", "str"),
}  # fmt: skip
LIST_OPTIONS = {
    "--status": ("status", "strs"), "-s": ("status", "strs"),
    "--queue": ("queue", "strs"), "-q": ("queue", "strs"),
    "--tag": ("tag", "strs"),
    "--search": ("search", "str"),
    "--limit": ("limit", "int"), "-n": ("limit", "int"),
    "--oldest-first": ("oldest_first", "flag"),
    "--json": ("as_json", "flag"),
}  # fmt: skip
DAEMON_OPTIONS = {
    "--workers": ("workers", "int"), "-w": ("workers", "int"),
    "--queue": ("queue", "strs"), "-q": ("queue", "strs"),
    "--grace": ("grace", "str"),
    "--kill-grace": ("kill_grace", "str"),
    "--lease": ("lease", "str"),
    "--heartbeat": ("heartbeat", "str"),
    "--poll": ("poll", "str"),
    "--allow-root": ("allow_root", "flag"),
    "--log-level": ("log_level", "str"),
    "--log-format": ("log_format", "str"),
}  # fmt: skip
STATS_OPTIONS = {"--json": ("as_json", "flag")}
COMMANDS = {"submit": SUBMIT_OPTIONS, "list": LIST_OPTIONS, "daemon": DAEMON_OPTIONS, "stats": STATS_OPTIONS}
#: Ranges click enforces (with its own messages): a value outside goes to Typer. Others: >= 0.
RANGES = {"workers": (1, 512)}
COMPLETE_VAR = "_JOBRUNNER_COMPLETE"  # click's variable for prog_name "jobrunner"


class Fallback(Exception):
    """These arguments need the full Typer app."""


def _options(args: list[str], table: dict[str, tuple[str, str]], *, stop_at_word: bool,
             words: list[str] | None) -> tuple[dict[str, Any], int]:  # fmt: skip
    """Options from args[0:] into a dict; returns it and the index where parsing stopped.

    Stops at `--` or (with stop_at_word) at the first word; other words go to `words`, or
    mean Fallback when the command takes none. Raises Fallback on anything click might read
    another way than the plain reading here.
    """
    values: dict[str, Any] = {}
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--" or (stop_at_word and not token.startswith("-")):
            break
        if not token.startswith("-"):
            if words is None:
                raise Fallback
            words.append(token)
            index += 1
            continue
        if token.startswith("--"):
            option, equals, value = token.partition("=")
        else:
            option, equals, value = token, "", ""  # -nX and -n=X: click reads those its own way
        if option not in table:
            raise Fallback  # --help, -h, --version, a typo, an abbreviation, a bundle of flags
        key, kind = table[option]
        index += 1
        if kind == "flag":
            if equals:
                raise Fallback
            values[key] = True
            continue
        if not equals:
            if index >= len(args) or (args[index].startswith("-") and args[index] != "-"):
                raise Fallback  # a missing value, or one click takes as is ("--name --")
            value = args[index]
            index += 1
        if kind in ("int", "ints"):
            if not (value.isascii() and value.isdigit()):
                raise Fallback  # click's int() also takes " 5", "+5", "1_0": let it answer
            value = int(value)
            low, high = RANGES.get(key, (0, None))
            if value < low or (high is not None and value > high):
                raise Fallback
        elif kind == "float":
            whole, _, fraction = value.partition(".")
            if not (whole.isascii() and whole.isdigit() and (not fraction or (fraction.isascii() and fraction.isdigit()))):
                raise Fallback  # "1e3", "inf", "-1", " 2": click's float() and its range decide
            value = float(value)
        if kind in ("strs", "ints"):
            values.setdefault(key, []).append(value)
        elif key in values:
            raise Fallback  # given twice: click keeps the last, but say it one way only
        else:
            values[key] = value
    return values, index


def parse(args: list[str]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(command, root options, command arguments), or Fallback."""
    root, index = _options(args, ROOT_OPTIONS, stop_at_word=True, words=None)
    if index >= len(args) or args[index] not in COMMANDS:
        raise Fallback  # no command (help), an unknown one, or `--`
    command, rest = args[index], args[index + 1 :]
    if command == "submit" and not rest:
        raise Fallback  # rare: the Typer command says what is missing, as it would here
    words: list[str] = []
    values, stop = _options(rest, COMMANDS[command], stop_at_word=False,
                            words=words if command == "submit" else None)  # fmt: skip
    if stop < len(rest):  # at `--`: what follows is the command, whatever it looks like
        if command != "submit":
            raise Fallback
        after = rest[stop + 1 :]
        values["words"], values["after_dashdash"] = words + after, len(after)
    elif words:
        values["words"] = words
    return command, root, values


def run(command: str, root: dict[str, Any], values: dict[str, Any]) -> int:
    """What JobrunnerGroup.invoke and click's main do around a command, minus click."""
    from jobrunner.cli.context import AppState
    from jobrunner.errors import JobrunnerError, error_line

    app_state = AppState(db_option=root.get("db"), config_option=root.get("config"), command=(command,),
                         verbose=bool(root.get("verbose")))  # fmt: skip
    try:
        if command == "submit":
            from jobrunner.cli.submit import submit_job

            submit_job(app_state, **values)
        elif command == "daemon":
            from jobrunner.cli.rundaemon import run_daemon

            return run_daemon(app_state, **values)
        elif command == "stats":
            from jobrunner.cli.listing import show_stats

            show_stats(app_state, **values)
        else:
            from jobrunner.cli.listing import list_jobs

            list_jobs(app_state, **values)
    except JobrunnerError as exc:
        _echo_error(error_line(str(exc)))
        return exc.exit_code
    except BrokenPipeError:  # `jobrunner list | head`
        if command == "daemon":
            raise  # not its output: a daemon must not end quietly with 0 (systemd would not restart it)
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130  # as Typer's main: no message
    finally:
        app_state.close()
    return 0


def _echo_error(message: str) -> None:
    """What click.echo(message, err=True) writes: ANSI codes stripped unless stderr is a terminal."""
    stream = sys.stderr
    try:
        terminal = stream.isatty()
    except Exception:
        terminal = False
    if not terminal:
        import re

        message = re.sub(r"\033\[[;?0-9]*[a-zA-Z]", "", message)
    stream.write(message + "\n")
    stream.flush()


def _streams_as_click_sees_them() -> bool:
    """click re-wraps a stderr whose encoding is ASCII: leave that rare case to click."""
    import codecs

    try:
        return codecs.lookup(sys.stderr.encoding).name != "ascii"
    except (AttributeError, LookupError, TypeError):
        return False


def _progress(args: list[str]) -> bool:
    """`jobrunner progress FRACTION [MESSAGE]` inside a shell job: one line to its worker's
    progress pipe, importing next to nothing (a loop of reports must not pay a CLI start each).
    The pipe's worker is this process's ancestor, so the job is the one it runs now (progress.send).
    False: anything else (a bad fraction, no pipe, not inside that worker's job); the Typer
    command then does it from the database, or says why not in one line (exit 2)."""
    if not args or args[0] != "progress" or not 2 <= len(args) <= 3:
        return False
    if any(a.startswith("-") for a in args[1:]):
        return False
    import os

    if not os.environ.get("JOBRUNNER_JOB_ID"):
        return False
    from jobrunner import progress

    fraction = progress.parse_fraction(args[1])
    return fraction is not None and progress.send(fraction, args[2] if len(args) == 3 else None)


def main() -> None:
    """Console-script entry point: the fast path when it applies, else the Typer app."""
    # peewee imports psycopg2 and psycopg (up to 150 ms) when imported, even for a SQLite file; blocked
    # here, jobrunner.store.db lifts the block and loads it when a postgresql:// URL is opened.
    for name in POSTGRES_DRIVERS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    import os

    if _progress(sys.argv[1:]):
        raise SystemExit(0)
    if not os.environ.get(COMPLETE_VAR) and _streams_as_click_sees_them():
        try:
            command, root, values = parse(sys.argv[1:])
        except Fallback:
            pass
        else:
            code = run(command, root, values)
            # What is left is freed by the exit, not by the interpreter's last collection over
            # every object the imports made (exit: 11 -> 4 ms of `stats`; atexit still runs)
            import gc

            gc.freeze()
            raise SystemExit(code)
    from jobrunner.cli.app import main as typer_main

    typer_main()
