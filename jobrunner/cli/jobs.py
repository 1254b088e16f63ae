"""Commands about jobs: submit, list, show, retry, cancel, purge, stats."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from jobrunner.cli.context import state
from jobrunner.cli.listing import list_jobs, parse_statuses
from jobrunner.cli.output import print_json
from jobrunner.cli.submit import submit_job
from jobrunner.domain.durations import parse_duration
from jobrunner.domain.states import FINISHED
from jobrunner.errors import UsageError

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON (documented in README) instead of a table.")
]


# The console script parses `submit` and `list` by hand first (jobrunner.cli.fast): an option
# changed here must change in its tables too (tests/test_cli_fast.py compares them).
DASHDASH = "jobrunner.words_after_dashdash"


class SubmitCommand(TyperCommand):
    """Remembers how many words came after `--`: those are a command, never a task name."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta[DASHDASH] = len(args) - args.index("--") - 1 if "--" in args else None
        return super().parse_args(ctx, args)


def submit_command(
    ctx: typer.Context,
    words: Annotated[
        list[str] | None,
        typer.Argument(
            help="A task name from jobs.toml, or `-- COMMAND ARGS...` for a shell job.", show_default=False
        ),
    ] = None,
    call: Annotated[
        str | None, typer.Option("--call", "-c", help="Run a Python callable 'package.module:function'.")
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg", "-a", help="KEY=VALUE keyword argument for --call (JSON values decoded); repeatable."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="A name to show in lists.")] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Queue to run in [default: default].")
    ] = None,
    priority: Annotated[
        str | None, typer.Option("--priority", "-p", help="low, normal, high, critical or 0-9.")
    ] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", "-r", help="Retries after a failed attempt [default: 0].")
    ] = None,
    timeout: Annotated[
        str | None, typer.Option("--timeout", "-t", help="Kill an attempt after this long (30s, 10m, 1h).")
    ] = None,
    backoff: Annotated[
        str | None, typer.Option("--backoff", help="Base delay before the first retry, doubled each time.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="A tag to filter by later; repeatable.")
    ] = None,
    meta: Annotated[list[str] | None, typer.Option("--meta", help="KEY=VALUE metadata; repeatable.")] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE environment for the job; repeatable.")
    ] = None,
    cwd: Annotated[
        str | None, typer.Option("--cwd", help="Working directory [default: the current one].")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Run at this time (ISO 8601, local unless an offset is given).")
    ] = None,
    delay: Annotated[str | None, typer.Option("--in", help="Run after this delay (10m, 2h).")] = None,
    after: Annotated[
        list[int] | None, typer.Option("--after", help="Run only when this job has succeeded; repeatable.")
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from-file", "-f", help="Submit one JSON job per line ('-' for stdin), all in one transaction."
        ),
    ] = None,
) -> None:
    """Store a new job and print its id (stdout holds the id alone)."""
    submit_job(
        state(ctx), words, ctx.meta.get(DASHDASH), call=call, arg=arg, name=name, queue=queue,
        priority=priority, retries=retries, timeout=timeout, backoff=backoff, tag=tag, meta=meta,
        env=env, cwd=cwd, at=at, delay=delay, after=after, from_file=from_file,
    )  # fmt: skip


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
    list_jobs(
        state(ctx), status=status, queue=queue, tag=tag, search=search, limit=limit,
        oldest_first=oldest_first, as_json=as_json,
    )  # fmt: skip


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
    statuses = parse_statuses(status) or sorted(FINISHED)
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
