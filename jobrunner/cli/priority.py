"""`jobrunner priority ID... PRIORITY`: reorder jobs that have not started yet."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from jobrunner.cli.context import state
from jobrunner.cli.output import print_json
from jobrunner.errors import UsageError


def priority_command(
    ctx: typer.Context,
    words: Annotated[
        list[str],
        typer.Argument(metavar="ID... PRIORITY", help="Job ids, then low, normal, high, critical or 0-9."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a line per job.")] = False,
) -> None:
    """Change the priority of queued, scheduled, waiting or retrying jobs (higher runs first)."""
    from jobrunner.store import repo

    if len(words) < 2:
        raise UsageError("give one or more job ids, then the priority: jobrunner priority 12 13 high")
    *raw_ids, priority = words
    try:
        ids = [int(word) for word in raw_ids]
    except ValueError:
        bad = next(word for word in raw_ids if not word.lstrip("-").isdigit())
        raise UsageError(f"{bad!r} is not a job id (give the ids first, the priority last)") from None
    outcomes = repo.set_priority(state(ctx).store, ids, priority, time.time())
    if as_json:
        print_json([{"id": o.job_id, "status": o.new.value, "message": o.message} for o in outcomes])
        return
    for o in outcomes:
        typer.echo(f"job {o.job_id}: {o.message}")


def register(app: typer.Typer) -> None:
    app.command("priority", no_args_is_help=True)(priority_command)
