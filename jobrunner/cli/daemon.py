"""`jobrunner daemon` and the queue switches it obeys: `pause` and `resume`."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from jobrunner.cli.context import state
from jobrunner.errors import UsageError


def daemon_command(
    ctx: typer.Context,
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, max=512, metavar="N", help="How many worker processes to run [default: the CPU count].")] = None,
    queue: Annotated[list[str] | None, typer.Option("--queue", "-q", metavar="NAME", help="Only run jobs from this queue; repeatable.")] = None,
    grace: Annotated[str, typer.Option("--grace", metavar="DURATION", help="How long running jobs get to finish after SIGTERM (seconds, or 30s, 2m).")] = "30",
    kill_grace: Annotated[str, typer.Option("--kill-grace", metavar="DURATION", help="How long a stopped job gets between SIGTERM and SIGKILL.")] = "5",
    lease: Annotated[str, typer.Option("--lease", metavar="DURATION", help="How long a claimed job's lease lasts; it is renewed every --heartbeat.")] = "30",
    heartbeat: Annotated[str, typer.Option("--heartbeat", metavar="DURATION", help="How long between lease renewals; at most a third of --lease.")] = "5",
    poll: Annotated[str, typer.Option("--poll", metavar="DURATION", help="How often to look for work when nothing wakes the daemon (a submit wakes it at once).")] = "1",
    allow_root: Annotated[bool, typer.Option("--allow-root", help="Run as root on a database that another user owns.")] = False,
    log_level: Annotated[str, typer.Option("--log-level", metavar="LEVEL", help="The log level: debug, info, warning or error.")] = "info",
    log_format: Annotated[str, typer.Option("--log-format", metavar="FORMAT", help="The log format: text (journald-aware) or json.")] = "text",
) -> None:
    """Run jobs: a supervised pool of workers, in the foreground.

    Ctrl-C or SIGTERM stops it gracefully.
    """
    from jobrunner.cli.rundaemon import run_daemon

    code = run_daemon(state(ctx), workers=workers, queue=queue, grace=grace, kill_grace=kill_grace,
                      lease=lease, heartbeat=heartbeat, poll=poll, allow_root=allow_root, log_level=log_level, log_format=log_format)  # fmt: skip
    raise typer.Exit(code)


def _set_paused(ctx: typer.Context, queue: str, paused: bool, create: bool = False) -> None:
    from jobrunner import wakeup
    from jobrunner.store import repo

    app_state = state(ctx)
    store = app_state.store
    if not create:  # a typo would otherwise pause a queue no job will ever use
        known = {"default", *repo.known_queues(store), *_config_queues(app_state.config_for_database)}
        if queue not in known:
            hint = "pass --create to pause it before its first job" if paused else "nothing to resume"
            raise UsageError(f"no queue named {queue!r}: no job, schedule or config uses it "
                             f"(known queues: {', '.join(sorted(known))}); {hint}")  # fmt: skip
    was = repo.set_queue_paused(store, queue, paused, time.time())
    word = "paused" if paused else "resumed"
    if was == paused:
        typer.echo(f"queue {queue} was already {'paused' if paused else 'running'}")
    else:
        typer.echo(f"queue {queue} {word}" + (": running jobs finish, nothing new starts" if paused else ""))
    if not paused:
        wakeup.poke(store.target)


def _config_queues(config: Any) -> set[str]:
    """The queues the config names: its [queues.NAME] tables and its tasks' and schedules' queues."""
    tables = [*config.tasks.values(), *config.schedules.values()]
    return {*config.queues, *(t["queue"] for t in tables if isinstance(t.get("queue"), str))}


def pause_command(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(metavar="QUEUE", help="The queue's name.")],
    create: Annotated[bool, typer.Option("--create", help="Pause a queue no job, schedule or config uses yet.")] = False,
) -> None:
    """Stop starting jobs from a queue; running ones finish."""
    _set_paused(ctx, queue, True, create)


def resume_command(ctx: typer.Context, queue: Annotated[str, typer.Argument(metavar="QUEUE", help="The queue's name.")]) -> None:
    """Start jobs from a paused queue again."""
    _set_paused(ctx, queue, False)


def register(app: typer.Typer) -> None:
    app.command("daemon")(daemon_command)
    app.command("pause")(pause_command)
    app.command("resume")(resume_command)
