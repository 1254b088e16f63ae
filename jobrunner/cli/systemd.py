"""`jobrunner systemd unit|install`: a ready unit file for this install and this database."""

from __future__ import annotations

import getpass
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

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
WATCHDOG_SEC = 60


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
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=full",
        "",
        "[Install]",
        "WantedBy=" + ("default.target" if user else "multi-user.target"),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


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


def user_unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def _unit_for(ctx: typer.Context, user: bool, grace: float, kill_grace: float, workers: int | None) -> str:
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
    return unit_text(user=user, argv=jobrunner_argv(), db=db, config=str(path.absolute()) if path else None,
                     grace=grace, kill_grace=kill_grace, workers=workers, run_as=run_as,
                     python_path=config.python_path)  # fmt: skip


GraceOption = Annotated[float, typer.Option("--grace", min=0, metavar="SECONDS", help="How long running jobs get to finish on stop.")]
KillGraceOption = Annotated[float, typer.Option("--kill-grace", min=0, metavar="SECONDS", help="How long a stopped job gets between SIGTERM and SIGKILL.")]
WorkersOption = Annotated[int | None, typer.Option("--workers", "-w", min=1, max=512, metavar="N", help="How many worker processes to run [default: the CPU count].")]


@systemd_app.command("unit")
def unit_command(
    ctx: typer.Context,
    user: Annotated[bool, typer.Option("--user/--system", help="A user unit (the default) or a system unit.")] = True,
    grace: GraceOption = 30.0,
    kill_grace: KillGraceOption = 5.0,
    workers: WorkersOption = None,
) -> None:
    """Print a unit file for this jobrunner and database.

    The unit has Type=notify, a graceful stop and a watchdog.
    """
    typer.echo(_unit_for(ctx, user, grace, kill_grace, workers), nl=False)


@systemd_app.command("install")
def install_command(
    ctx: typer.Context,
    user: Annotated[bool, typer.Option("--user/--system", help="Only --user is installed for you.")] = True,
    grace: GraceOption = 30.0,
    kill_grace: KillGraceOption = 5.0,
    workers: WorkersOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a different unit file.")] = False,
) -> None:
    """Install the user unit and print the commands that start it.

    The unit is written to ~/.config/systemd/user/jobrunner.service.
    """
    if not user:
        raise UsageError(
            "install writes user units only; for a system unit run: jobrunner systemd unit --system | "
            f"sudo tee /etc/systemd/system/{UNIT_NAME}"
        )
    text = _unit_for(ctx, True, grace, kill_grace, workers)
    path = user_unit_path()
    if path.exists() and path.read_text() != text and not force:
        raise UsageError(f"{path} exists and differs: pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    note(f"wrote {path}")
    typer.echo("systemctl --user daemon-reload")
    typer.echo("systemctl --user enable --now jobrunner")
    note("to keep it running while you are logged out: loginctl enable-linger " + getpass.getuser())


def register(app: typer.Typer) -> None:
    app.add_typer(systemd_app, name="systemd")
