"""`jobrunner daemon` and the queue switches it obeys: `pause` and `resume`."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from jobrunner.cli.context import state


def daemon_command(
    ctx: typer.Context,
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, max=512, help="Worker processes [default: CPU count].")] = None,
    queue: Annotated[list[str] | None, typer.Option("--queue", "-q", help="Only run jobs from these queues (repeatable).")] = None,
    grace: Annotated[float, typer.Option("--grace", min=0, help="Seconds running jobs get to finish after SIGTERM.")] = 30.0,
    kill_grace: Annotated[float, typer.Option("--kill-grace", min=0, help="Seconds between SIGTERM and SIGKILL when a job is stopped.")] = 5.0,
    lease: Annotated[float, typer.Option("--lease", help="Seconds a claimed job's lease lasts; renewed every --heartbeat.")] = 30.0,
    heartbeat: Annotated[float, typer.Option("--heartbeat", help="Seconds between lease renewals (under a third of --lease).")] = 5.0,
    allow_root: Annotated[bool, typer.Option("--allow-root", help="Run as root on a database another user owns.")] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    log_format: Annotated[str, typer.Option("--log-format", help="text (journald-aware) or json.")] = "text",
) -> None:
    """Run jobs: a supervised pool of workers, in the foreground. Ctrl-C or SIGTERM stops it gracefully."""
    from jobrunner.cli.rundaemon import run_daemon

    code = run_daemon(state(ctx), workers=workers, queue=queue, grace=grace, kill_grace=kill_grace,
                      lease=lease, heartbeat=heartbeat, allow_root=allow_root, log_level=log_level, log_format=log_format)  # fmt: skip
    raise typer.Exit(code)


def _set_paused(ctx: typer.Context, queue: str, paused: bool) -> None:
    from jobrunner import wakeup
    from jobrunner.store import repo

    store = state(ctx).store
    was = repo.set_queue_paused(store, queue, paused, time.time())
    word = "paused" if paused else "resumed"
    if was == paused:
        typer.echo(f"queue {queue} was already {'paused' if paused else 'running'}")
    else:
        typer.echo(f"queue {queue} {word}" + (": running jobs finish, nothing new starts" if paused else ""))
    if not paused:
        wakeup.poke(store.target)


def pause_command(ctx: typer.Context, queue: Annotated[str, typer.Argument(help="Queue name.")]) -> None:
    """Stop starting jobs from a queue; running ones finish."""
    _set_paused(ctx, queue, True)


def resume_command(ctx: typer.Context, queue: Annotated[str, typer.Argument(help="Queue name.")]) -> None:
    """Start jobs from a paused queue again."""
    _set_paused(ctx, queue, False)


def register(app: typer.Typer) -> None:
    app.command("daemon")(daemon_command)
    app.command("pause")(pause_command)
    app.command("resume")(resume_command)
