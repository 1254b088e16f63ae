"""Commands about jobs: submit, list, show, retry, cancel, purge, stats."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from jobrunner.cli.context import state
from jobrunner.cli.output import note, print_json
from jobrunner.cli.submit import SubmitCommand, submit_command
from jobrunner.domain.durations import parse_duration
from jobrunner.domain.states import FINISHED, Status, parse_status
from jobrunner.errors import UsageError

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON (documented in README) instead of a table.")
]


def _statuses(values: list[str] | None) -> list[Status]:
    try:
        return [parse_status(v) for item in values or [] for v in item.split(",") if v]
    except ValueError as exc:
        raise UsageError(f"--status: {exc}") from None


def list_command(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", "-s", help="Only these statuses (repeat or comma-separate)."),
    ] = None,
    queue: Annotated[list[str] | None, typer.Option("--queue", "-q", help="Only these queues.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only jobs with this tag (repeat: all of them).")
    ] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="Text in the name, command or callable.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="At most this many (0: all).")] = 50,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="Oldest first instead of newest.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    from jobrunner.store import queries

    store = state(ctx).store
    where = queries.JobFilter(statuses=_statuses(status), queues=queue or [], tags=tag or [], search=search)
    jobs = queries.list_jobs(store, where, limit=limit or None, newest_first=not oldest_first)
    if as_json:
        print_json(jobs)
        return
    from jobrunner.cli.output import console, jobs_table

    if not jobs:
        note("no jobs match" if where.where("?")[0] else "no jobs yet: jobrunner submit -- COMMAND")
        return
    out = console()
    out.print(jobs_table(jobs, width=out.width))
    if limit and len(jobs) == limit:
        total = queries.count_jobs(store, where)
        if total > limit:
            note(f"showing {limit} of {total} jobs; --limit 0 shows all")


def show_command(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(metavar="ID", help="The job's id.")],
    as_json: JsonOption = False,
) -> None:
    """Everything about one job: what it runs, timings, progress, every attempt and error."""
    from jobrunner.store import queries

    store = state(ctx).store
    from jobrunner.store import dependencies

    job = {**queries.get_job(store, job_id), **dependencies.links(store, job_id)}
    events = queries.job_events(store, job_id)
    if as_json:
        print_json({**job, "events": events})
        return
    from jobrunner.cli.output import console, job_detail

    out = console()
    for part in job_detail(job, events, time.time()):
        out.print(part)


def _report(outcomes: list, as_json: bool) -> None:
    if as_json:
        print_json(
            [{"id": o.job_id, "from": o.old.value, "to": o.new.value, "message": o.message} for o in outcomes]
        )
        return
    for o in outcomes:
        change = o.new.value if o.old == o.new else f"{o.old.value} -> {o.new.value}"
        typer.echo(f"job {o.job_id}: {change}" + ("" if o.message in (o.new.value,) else f" ({o.message})"))


def retry_command(
    ctx: typer.Context,
    job_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Dead, cancelled or retrying jobs.")],
    as_json: JsonOption = False,
) -> None:
    """Put dead or cancelled jobs back in the queue (with a fresh retry budget)."""
    from jobrunner.store import repo

    _report(repo.retry(state(ctx).store, job_ids, time.time()), as_json)


def cancel_command(
    ctx: typer.Context,
    job_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Jobs to cancel.")],
    as_json: JsonOption = False,
) -> None:
    """Cancel jobs: queued, scheduled and waiting ones never start; running ones are stopped."""
    from jobrunner.store import repo

    _report(repo.cancel(state(ctx).store, job_ids, time.time()), as_json)


def purge_command(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than", help="Finished longer ago than this (7d, 12h).")],
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", "-s", help="Only these finished statuses [default: succeeded, dead, cancelled]."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say how many would go.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete finished jobs, their history and their log files."""
    from jobrunner.store import repo, retention

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    statuses = _statuses(status) or sorted(FINISHED)
    store, now = state(ctx).store, time.time()
    if dry_run:
        removed = repo.purge(store, age, statuses, now, dry_run=True)
    else:
        removed = retention.purge_with_logs(store, age, statuses, now)
    if as_json:
        print_json(
            {
                "purged": 0 if dry_run else len(removed),
                "would_purge": len(removed) if dry_run else 0,
                "ids": removed,
            }
        )
    else:
        typer.echo(f"{'would purge' if dry_run else 'purged'} {len(removed)} jobs")


def stats_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Counts per status, overall and per queue."""
    from jobrunner.store import queries

    data = queries.stats(state(ctx).store)
    if as_json:
        print_json(data)
        return
    from jobrunner.cli.output import console, stats_table

    console().print(stats_table(data))


def register(app: typer.Typer) -> None:
    app.command("submit", cls=SubmitCommand, no_args_is_help=True)(submit_command)
    app.command("list")(list_command)
    app.command("show")(show_command)
    app.command("retry")(retry_command)
    app.command("cancel")(cancel_command)
    app.command("purge")(purge_command)
    app.command("stats")(stats_command)
