"""`jobrunner systemd unit|install`: a ready unit file for this install and this database, for
the daemon, or with --serve for the HTTP API (`jobrunner serve`)."""

from __future__ import annotations

import getpass
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from jobrunner.cli.context import state
from jobrunner.cli.output import note
from jobrunner.errors import UsageError
from jobrunner.secrets import redact_target, target_password

systemd_app = typer.Typer(
    name="systemd",
    help="Run the daemon under systemd: print or install a unit file.",
    no_args_is_help=True,
)

UNIT_NAME = "jobrunner.service"
SERVE_UNIT_NAME = "jobrunner-serve.service"
WATCHDOG_SEC = 60
SERVE_STOP_SEC = 15  # serve gives open streams 5 s after SIGTERM (serve.run.GRACEFUL_S)


def jobrunner_argv() -> list[str]:
    """How to start this very jobrunner: its console script by absolute path, else python -m."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "jobrunner" and script.is_file():
        return [str(script.absolute())]
    found = shutil.which("jobrunner", path=str(Path(sys.executable).parent))
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "jobrunner"]


def quote_arg(arg: str) -> str:
    """One ExecStart= word: systemd expands % specifiers and $VARS, so those are doubled."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in " \t\n\"'\\;"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(*, user: bool, argv: list[str], db: str, config: str | None, grace: float, kill_grace: float,
              workers: int | None, run_as: str | None = None, python_path: tuple[str, ...] = ()) -> str:  # fmt: skip
    """The unit file. Type=notify: systemd waits for READY=1 and pings the watchdog."""
    _refuse_control_characters([("the database", db), ("the config path", config or ""), ("the user", run_as or ""),
                                *(("this jobrunner's path", a) for a in argv),
                                *(("[daemon] python_path", p) for p in python_path)])  # fmt: skip
    command = [*argv, "--db", db]
    if config:
        command += ["--config", config]
    command += ["daemon", "--grace", f"{grace:g}", "--kill-grace", f"{kill_grace:g}"]
    if workers:
        command += ["--workers", str(workers)]
    stop_timeout = int(grace + kill_grace + 15)  # drain, then SIGKILL stragglers, then exit
    lines = [
        "# Written by `jobrunner systemd unit`. Reload after editing: systemctl"
        + (" --user" if user else "") + " daemon-reload",
        "[Unit]",
        "Description=jobrunner daemon: background jobs from " + db,
    ]  # fmt: skip
    if not user:
        lines += ["After=network-online.target", "Wants=network-online.target"]
    lines += [
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
    ]
    if not user:
        lines += [f"User={run_as}", "# the daemon refuses a database owned by another user; run it as the owner"]
    lines += [
        "WorkingDirectory=~",
        "ExecStart=" + " ".join(quote_arg(a) for a in command),
        "ExecReload=/bin/kill -HUP $MAINPID",
        "# SIGTERM to the daemon only: it stops claiming and lets running jobs finish for --grace",
        "# seconds; whatever is left in the unit when it exits (or TimeoutStopSec runs out) gets SIGKILL.",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={stop_timeout}",
        f"WatchdogSec={WATCHDOG_SEC}",
        "Restart=on-failure",
        "RestartSec=5",
        "# a job killed by the OOM killer fails that attempt; the daemon keeps running",
        "OOMPolicy=continue",
        "Environment=PYTHONUNBUFFERED=1",
        *_python_path_lines(python_path),
        "# SMTP passwords and other secrets for [notify.*]: KEY=VALUE lines in a file only you can read",
        "# EnvironmentFile=-%h/.config/jobrunner/secrets.env" if user else
        "# EnvironmentFile=-/etc/jobrunner/secrets.env",
        "",
        "# Moderate hardening: jobs can still write in your home and anywhere you can, except",
        "# /usr, /boot and /etc (ProtectSystem=full), and /tmp is private to the service.",
        *_hardened_and_installed(user),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def serve_unit_text(*, user: bool, argv: list[str], db: str, config: str | None, host: str | None,
                    port: int | None, run_as: str | None = None, python_path: tuple[str, ...] = ()) -> str:  # fmt: skip
    """The unit of `jobrunner serve`. The token is never in it: it comes from the environment file
    the unit names (or the variable [serve] token_env names, set there); without one, serve makes
    its own in the database's owner-only log directory and listens on 127.0.0.1 only."""
    _refuse_control_characters([("the database", db), ("the config path", config or ""), ("the user", run_as or ""),
                                ("--host", host or ""), *(("this jobrunner's path", a) for a in argv),
                                *(("[daemon] python_path", p) for p in python_path)])  # fmt: skip
    command = [*argv, "--db", db]
    if config:
        command += ["--config", config]
    command += ["serve"]
    if host is not None:
        command += ["--host", host]
    if port is not None:
        command += ["--port", str(port)]
    env_file = "%h/.config/jobrunner/serve.env" if user else "/etc/jobrunner/serve.env"
    lines = [
        "# Written by `jobrunner systemd unit --serve`. Reload after editing: systemctl"
        + (" --user" if user else "") + " daemon-reload",
        "[Unit]",
        "Description=jobrunner HTTP API for " + db,
        "After=" + ("jobrunner.service" if user else "network-online.target jobrunner.service"),
    ]  # fmt: skip
    if not user:
        lines += ["Wants=network-online.target"]
    lines += ["", "[Service]", "Type=exec"]
    if not user:
        lines += [f"User={run_as}", "# serve refuses a database owned by another user; run it as the owner"]
    lines += [
        "# shell jobs submitted without a cwd run in the directory serve was started in",
        "WorkingDirectory=~",
        "ExecStart=" + " ".join(quote_arg(a) for a in command),
        "# SIGTERM: open event streams end, requests under way finish; exit 0",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={SERVE_STOP_SEC}",
        "Restart=on-failure",
        "RestartSec=5",
        "Environment=PYTHONUNBUFFERED=1",
        *_python_path_lines(python_path),
        "# The token, never in this file: JOBRUNNER_API_TOKEN=<a long random secret> (and, for a",
        "# read-only one, JOBRUNNER_API_READ_TOKEN=...), or the variables [serve] token_env and",
        "# read_only_token_env name, in a file only you can read (chmod 600). Without it, serve writes",
        "# a new token to api.token in the database's log directory at each start, and listens on",
        "# 127.0.0.1 only.",
        f"EnvironmentFile=-{env_file}",
        "",
        "# Moderate hardening: serve writes only the database, its log directory and api.token.",
        *_hardened_and_installed(user),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _hardened_and_installed(user: bool) -> list[str]:
    """The units' moderate hardening and [Install] section (after a comment saying what it allows)."""
    return ["NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=full", "",
            "[Install]", "WantedBy=" + ("default.target" if user else "multi-user.target")]  # fmt: skip


def _refuse_control_characters(values: list[tuple[str, str]]) -> None:
    """A newline (or any control character) in a value would start a directive of its own in
    the unit (`ExecStartPre=` that runs anything): refused, whatever quoting could do."""
    for what, value in values:
        bad = next((c for c in value if ord(c) < 32 or 127 <= ord(c) < 160), None)
        if bad is not None:
            raise UsageError(f"{what} {value!r} holds a control character ({bad!r}), which a unit file cannot "
                             "carry safely: rename or move it")  # fmt: skip


def _python_path_lines(python_path: tuple[str, ...]) -> list[str]:
    """[daemon] python_path as PYTHONPATH, so the unit shows (and the whole daemon gets) where job
    callables import from; Environment= expands % specifiers, and a quoted value takes C escapes."""
    if not python_path:
        return []
    for directory in python_path:
        if ":" in directory:
            raise UsageError(f"[daemon] python_path: {directory} holds ':', which PYTHONPATH cannot carry: "
                             "rename or link the directory")  # fmt: skip
    value = ":".join(python_path).replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return ["# [daemon] python_path from the config: where Python jobs' callables are imported from",
            f'Environment="PYTHONPATH={value}"']  # fmt: skip


def user_unit_path(name: str = UNIT_NAME) -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / name


@dataclass
class UnitChoice:
    """What `unit` and `install` were asked for: the daemon's unit, or serve's (--serve)."""

    serve: bool = False
    grace: float | None = None
    kill_grace: float | None = None
    workers: int | None = None
    host: str | None = None
    port: int | None = None

    def checked(self) -> UnitChoice:
        """Each option belongs to one of the two units: one given to the other is a mistake."""
        if self.serve:
            given = [name for name, value in (("--grace", self.grace), ("--kill-grace", self.kill_grace),
                                              ("--workers", self.workers)) if value is not None]  # fmt: skip
            if given:
                raise UsageError(f"{given[0]} is the daemon's option, not serve's: leave it out with --serve")
            import importlib.util

            missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
            if missing:
                raise UsageError(f"`jobrunner serve` needs {', '.join(missing)}: pip install 'jobrunner[serve]' "
                                 "before writing its unit")  # fmt: skip
        else:
            given = [name for name, value in (("--host", self.host), ("--port", self.port)) if value is not None]
            if given:
                raise UsageError(f"{given[0]} is for the API's unit: add --serve")
        return self

    @property
    def name(self) -> str:
        return SERVE_UNIT_NAME if self.serve else UNIT_NAME


def _unit_for(ctx: typer.Context, user: bool, choice: UnitChoice) -> str:
    current = state(ctx)
    config = current.config  # first: the daemon would refuse a broken config, so the unit does too
    db = current.db_target
    if "://" in db:
        if target_password(db) is not None:
            raise UsageError(f"the database URL {redact_target(db)} holds a password, and a unit file is readable "
                             "by others: keep the password in ~/.pgpass (and out of the URL), or put "
                             "JOBRUNNER_DB=<the URL> in a file only you can read, named by EnvironmentFile=, "
                             "and drop --db from ExecStart")  # fmt: skip
    else:
        db = str(Path(db).absolute())
    path = config.path
    run_as = None if user else getpass.getuser()
    config_path = str(path.absolute()) if path else None
    if choice.serve:
        _check_serve_host(config, choice.host)
        return serve_unit_text(user=user, argv=jobrunner_argv(), db=db, config=config_path, host=choice.host,
                               port=choice.port, run_as=run_as, python_path=config.python_path)  # fmt: skip
    return unit_text(user=user, argv=jobrunner_argv(), db=db, config=config_path,
                     grace=30.0 if choice.grace is None else choice.grace,
                     kill_grace=5.0 if choice.kill_grace is None else choice.kill_grace,
                     workers=choice.workers, run_as=run_as, python_path=config.python_path)  # fmt: skip


def _check_serve_host(config: Any, host: str | None) -> None:
    """The config's [serve] is checked as serve checks it; a host other than loopback works only
    with a token, which the unit cannot see: say where it goes."""
    from jobrunner.config_checks import check_serve
    from jobrunner.serve.settings import TOKEN_ENV, is_loopback

    table = check_serve(config.sections.get("serve"), str(config.path or "config"))
    host = host or table["host"]
    if not is_loopback(host):
        variable = table["token_env"] or TOKEN_ENV
        note(f"serve refuses --host {host} without a token: put {variable}=<a long random secret> in the "
             "unit's EnvironmentFile (chmod 600)")  # fmt: skip


GraceOption = Annotated[float | None, typer.Option("--grace", min=0, metavar="SECONDS", help="How long running jobs get to finish on stop [default: 30].")]
KillGraceOption = Annotated[float | None, typer.Option("--kill-grace", min=0, metavar="SECONDS", help="How long a stopped job gets between SIGTERM and SIGKILL [default: 5].")]
WorkersOption = Annotated[int | None, typer.Option("--workers", "-w", min=1, max=512, metavar="N", help="How many worker processes to run [default: the CPU count].")]
ServeOption = Annotated[bool, typer.Option("--serve", help="The unit of the HTTP API (jobrunner serve) instead of the daemon's.")]
HostOption = Annotated[str | None, typer.Option("--host", metavar="ADDRESS", help="With --serve: the address to listen on [default: 127.0.0.1, or [serve] host].")]
PortOption = Annotated[int | None, typer.Option("--port", min=0, max=65535, metavar="PORT", help="With --serve: the port [default: 8765, or [serve] port].")]


@systemd_app.command("unit")
def unit_command(
    ctx: typer.Context,
    user: Annotated[bool, typer.Option("--user/--system", help="A user unit (the default) or a system unit.")] = True,
    grace: GraceOption = None,
    kill_grace: KillGraceOption = None,
    workers: WorkersOption = None,
    serve: ServeOption = False,
    host: HostOption = None,
    port: PortOption = None,
) -> None:
    """Print a unit file for this jobrunner and database.

    The daemon's unit has Type=notify, a graceful stop and a watchdog. With --serve, the unit of
    the HTTP API, its token read from an environment file (never written in the unit).
    """
    choice = UnitChoice(serve, grace, kill_grace, workers, host, port).checked()
    typer.echo(_unit_for(ctx, user, choice), nl=False)


@systemd_app.command("install")
def install_command(
    ctx: typer.Context,
    user: Annotated[bool, typer.Option("--user/--system", help="Only --user is installed for you.")] = True,
    grace: GraceOption = None,
    kill_grace: KillGraceOption = None,
    workers: WorkersOption = None,
    serve: ServeOption = False,
    host: HostOption = None,
    port: PortOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a different unit file.")] = False,
) -> None:
    """Install the user unit and print the commands that start it.

    The unit is written to ~/.config/systemd/user/jobrunner.service (with --serve:
    jobrunner-serve.service).
    """
    choice = UnitChoice(serve, grace, kill_grace, workers, host, port).checked()
    if not user:
        raise UsageError(
            f"install writes user units only; for a system unit run: jobrunner systemd unit --system"
            f"{' --serve' if serve else ''} | sudo tee /etc/systemd/system/{choice.name}"
        )
    text = _unit_for(ctx, True, choice)
    path = user_unit_path(choice.name)
    if path.exists() and path.read_text() != text and not force:
        raise UsageError(f"{path} exists and differs: pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    note(f"wrote {path}")
    typer.echo("systemctl --user daemon-reload")
    typer.echo(f"systemctl --user enable --now {choice.name.removesuffix('.service')}")
    if serve:
        note("the token: JOBRUNNER_API_TOKEN=... in ~/.config/jobrunner/serve.env (chmod 600); without it, "
             "serve makes one in the database's log directory (api.token) and listens on 127.0.0.1 only")  # fmt: skip
    note("to keep it running while you are logged out: loginctl enable-linger " + getpass.getuser())


def register(app: typer.Typer) -> None:
    app.add_typer(systemd_app, name="systemd")
