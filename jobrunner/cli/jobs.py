"""Commands about jobs: submit, list, show, retry, cancel, purge, stats."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from jobrunner.cli import bulk, limit_options
from jobrunner.cli.context import parse_job_ids, state
from jobrunner.cli.listing import list_jobs
from jobrunner.cli.output import print_json
from jobrunner.cli.submit import submit_job
from jobrunner.domain.durations import parse_duration
from jobrunner.errors import UsageError

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON (documented in README) instead of a table.")
]
# `list` and `purge` narrow by the same --queue and --search (retry's and cancel's, which also
# take ids, are bulk.QueueFilter and bulk.SearchFilter).
QueueFilterOption = Annotated[
    list[str] | None,
    typer.Option("--queue", "-q", metavar="NAME", help="Only jobs in this queue; repeatable."),
]
SearchFilterOption = Annotated[
    str | None,
    typer.Option("--search", metavar="TEXT", help="Only jobs with this text in their name, command or callable."),
]
# `submit` and `edit` (jobrunner.cli.editing) take the same --backoff.
BackoffOption = Annotated[
    str | None,
    typer.Option(
        "--backoff",
        metavar="DURATION",
        help="The delay before the first retry, doubled for each one after.",
    ),
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
            metavar="[TASK] [-- COMMAND...]",
            show_default=False,
            help="A task name from jobs.toml, or a shell command after --.",
        ),
    ] = None,
    call: Annotated[
        str | None,
        typer.Option(
            "--call",
            "-c",
            metavar="MODULE:FUNCTION",
            help="Run this Python callable, e.g. 'myapp.reports:build'.",
        ),
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            "-a",
            metavar="KEY=VALUE",
            help="A keyword argument for --call; VALUE is read as JSON when it parses. Repeatable.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", metavar="NAME", help="A name to show in lists.")
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", "-q", metavar="NAME", help="The queue to run in [default: default]."),
    ] = None,
    priority: Annotated[
        str | None,
        typer.Option(
            "--priority", "-p", metavar="LEVEL", help="Low, normal, high, critical, or 0-9 [default: normal]."
        ),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(
            "--retries", "-r", metavar="N", help="How often to retry a failed attempt [default: 0]."
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            "-t",
            metavar="DURATION",
            help="Stop an attempt that runs longer than this (30s, 10m, 1h).",
        ),
    ] = None,
    backoff: BackoffOption = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", metavar="TAG", help="A tag to filter by later; repeatable, or comma-separated."
        ),
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option("--meta", metavar="KEY=VALUE", help="Metadata to keep with the job; repeatable."),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env", "-e", metavar="KEY[=VALUE]",
            help="An environment variable for the job (KEY alone: its value here); repeatable.",
        ),
    ] = None,
    env_file: Annotated[
        str | None,
        typer.Option("--env-file", metavar="FILE", help="Environment variables for the job, a KEY=VALUE per line."),
    ] = None,
    cwd: Annotated[
        str | None,
        typer.Option("--cwd", metavar="DIR", help="The directory to run in [default: the current one]."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", metavar="TIME", help="Run at this time: ISO 8601, local unless it has an offset."
        ),
    ] = None,
    delay: Annotated[
        str | None, typer.Option("--in", metavar="DURATION", help="Run after this delay (10m, 2h).")
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option("--after", metavar="ID", help="Run only once this job has succeeded; repeatable."),
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from-file",
            "-f",
            metavar="FILE",
            help="Submit one JSON job per line of FILE ('-' for stdin), all in one transaction.",
        ),
    ] = None,
    unique_key: Annotated[
        str | None,
        typer.Option(
            "--unique-key", metavar="KEY",
            help="At most one unfinished job holds KEY; a submit while one does is settled by --on-conflict.",
        ),
    ] = None,
    on_conflict: Annotated[
        str | None,
        typer.Option(
            "--on-conflict", metavar="MODE",
            help="When a job holds the --unique-key: reuse (print its id), replace (cancel it if it "
            "has not started, submit this) or reject (exit 2 naming it) [default: reuse].",
        ),
    ] = None,
    memory: limit_options.Memory = None,
    cpu_time: limit_options.CpuTime = None,
    max_log_size: limit_options.MaxLogSize = None,
) -> None:
    """Store a new job and print its id.

    stdout holds the id alone, so `id=$(jobrunner submit -- make test)` works.
    """
    submit_job(
        state(ctx), words, ctx.meta.get(DASHDASH), call=call, arg=arg, name=name, queue=queue,
        priority=priority, retries=retries, timeout=timeout, backoff=backoff, tag=tag, meta=meta,
        env=env, env_file=env_file, cwd=cwd, at=at, delay=delay, after=after, from_file=from_file,
        unique_key=unique_key, on_conflict=on_conflict, memory=memory, cpu_time=cpu_time,
        max_log_size=max_log_size,
    )  # fmt: skip


def list_command(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            "-s",
            metavar="STATUS",
            help="Only jobs in these statuses; repeat it or separate them with commas.",
        ),
    ] = None,
    queue: QueueFilterOption = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", metavar="TAG", help="Only jobs with this tag; repeated, with all of them."),
    ] = None,
    search: SearchFilterOption = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=0, metavar="N", help="Show at most this many jobs (0 shows all)."),
    ] = 50,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="Show the oldest jobs first instead of the newest.")
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
    job_ref: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show everything about one job.

    What it runs, its timings and progress, and every attempt and error.
    """
    from jobrunner.store import queries

    (job_id,) = parse_job_ids([job_ref])
    store = state(ctx).store
    from jobrunner.store import dependencies

    job = {**queries.get_job(store, job_id), **dependencies.links(store, job_id)}
    events = queries.job_events(store, job_id)
    if as_json:
        print_json({**job, "events": events})
        return
    from jobrunner.cli.output import console, job_detail

    out = console()
    for part in job_detail(job, events, time.time(), queries.dependency_links(store, job_id)):
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
    job_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[ID...]", show_default=False,
                       help="The ids of dead, cancelled or retrying jobs; or none, and a filter."),
    ] = None,
    edit: Annotated[
        bool,
        typer.Option("--edit", help="Open the job's fields as JSON in $VISUAL or $EDITOR (else vi), then store "
                     "them, checked as submit checks them, and retry it; one job id."),
    ] = False,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", "-s", metavar="STATUS",
                     help="With no ID: retry the jobs in these statuses (dead, cancelled, retrying) [default: dead]."),
    ] = None,
    queue: bulk.QueueFilter = None,
    tag: bulk.TagFilter = None,
    search: bulk.SearchFilter = None,
    since: bulk.SinceFilter = None,
    dry_run: bulk.DryRun = False,
    as_json: JsonOption = False,
) -> None:
    """Put dead or cancelled jobs back in the queue.

    Each starts again with a fresh retry budget. With a filter instead of ids (--status,
    --queue, --tag, --search, --since) every matching job is retried, a batch at a time.
    """
    from jobrunner.store import repo

    app_state = state(ctx)
    where = bulk.job_filter(status, queue, tag, search, since, time.time())
    bulk.ids_or_filter(job_ids, where, dry_run, "retry")
    if edit:
        if where is not None or len(job_ids or []) != 1:
            raise UsageError("--edit takes one job id (and no filter)")
        from jobrunner.cli.editing import edit_in_editor

        edit_in_editor(app_state, parse_job_ids(job_ids or [])[0], retry=True, as_json=as_json)
    elif where is not None:
        bulk.retry_by_filter(app_state, where, dry_run, as_json)
    else:
        _report(repo.retry(app_state.store, parse_job_ids(job_ids or []), time.time()), as_json)


def cancel_command(
    ctx: typer.Context,
    job_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="[ID...]", show_default=False,
                       help="The ids of the jobs to cancel; or none, and a filter."),
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", "-s", metavar="STATUS",
                     help="With no ID: cancel the jobs in these statuses [default: queued, scheduled, waiting, "
                     "retrying; running ones only when named]."),
    ] = None,
    queue: bulk.QueueFilter = None,
    tag: bulk.TagFilter = None,
    search: bulk.SearchFilter = None,
    since: bulk.SinceFilter = None,
    dry_run: bulk.DryRun = False,
    as_json: JsonOption = False,
) -> None:
    """Cancel jobs.

    Queued, scheduled and waiting jobs never start; running ones are stopped. With a filter
    instead of ids (--status, --queue, --tag, --search, --since) every matching job is
    cancelled, a batch at a time.
    """
    from jobrunner.store import repo

    app_state = state(ctx)
    where = bulk.job_filter(status, queue, tag, search, since, time.time())
    bulk.ids_or_filter(job_ids, where, dry_run, "cancel")
    if where is not None:
        bulk.cancel_by_filter(app_state, where, dry_run, as_json)
    else:
        _report(repo.cancel(app_state.store, parse_job_ids(job_ids or []), time.time()), as_json)


def purge_command(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", metavar="DURATION", help="Only jobs that finished longer ago than this (7d, 12h)."
        ),
    ],
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            "-s",
            metavar="STATUS",
            help="Only jobs in these finished statuses [default: succeeded, dead, cancelled].",
        ),
    ] = None,
    queue: QueueFilterOption = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", metavar="TAG", help="Only jobs with this tag; repeated, with all.")
    ] = None,
    search: SearchFilterOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Delete nothing: print how many jobs would go, and their ids.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete finished jobs, with their history and log files.

    They go a batch at a time, so the CLI, TUI and daemon never wait long.
    """
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    from jobrunner.store.queries import JobFilter

    where = bulk.job_filter(status, queue, tag, search, None, time.time()) or JobFilter()
    bulk.purge(state(ctx), where, age, dry_run, as_json)


def stats_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Count jobs per status, overall and per queue."""
    from jobrunner.cli.listing import show_stats

    show_stats(state(ctx), as_json)


def register(app: typer.Typer) -> None:
    app.command("submit", cls=SubmitCommand)(submit_command)  # no arguments: submit_job says what is missing
    app.command("list")(list_command)
    app.command("show")(show_command)
    app.command("retry")(retry_command)
    app.command("cancel")(cancel_command)
    app.command("purge")(purge_command)
    app.command("stats")(stats_command)
