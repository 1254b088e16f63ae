"""`jobrunner priority ID... PRIORITY`: reorder jobs that have not started yet."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from jobrunner.cli.context import parse_job_ids, state
from jobrunner.cli.output import print_json
from jobrunner.errors import UsageError


def priority_command(
    ctx: typer.Context,
    words: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ID... PRIORITY",
            show_default=False,
            help="Job ids, then the priority: low, normal, high, critical, or 0-9.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a line per job.")] = False,
) -> None:
    """Change the priority of jobs that have not started.

    Queued, scheduled, waiting and retrying jobs can be changed; the higher priority runs first.
    """
    from jobrunner.store import repo

    if not words or len(words) < 2:
        raise UsageError("give one or more job ids, then the priority: jobrunner priority 12 13 high")
    *raw_ids, priority = words
    try:
        ids = parse_job_ids(raw_ids)
    except UsageError as exc:
        raise UsageError(f"{exc} (give the ids first, the priority last)") from None
    outcomes = repo.set_priority(state(ctx).store, ids, priority, time.time())
    if as_json:
        print_json([{"id": o.job_id, "status": o.new.value, "message": o.message} for o in outcomes])
        return
    for o in outcomes:
        typer.echo(f"job {o.job_id}: {o.message}")


def register(app: typer.Typer) -> None:
    app.command("priority")(priority_command)  # no arguments: the command says what to give
