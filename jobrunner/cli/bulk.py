"""Acting on the jobs a filter matches: `retry`, `cancel` and `purge` with --status, --queue,
--tag, --search, --since (and --dry-run), and `jobrunner dlq export`.

The store does the work a batch per transaction (jobrunner.store.bulk); this module turns the
options into a filter and the result into a line for people or JSON for scripts.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobrunner.cli.context import state
from jobrunner.cli.listing import parse_statuses
from jobrunner.cli.output import note, print_json
from jobrunner.domain.durations import parse_duration
from jobrunner.errors import UsageError

if TYPE_CHECKING:
    from jobrunner.cli.context import AppState
    from jobrunner.store.bulk import BulkResult
    from jobrunner.store.queries import JobFilter

IDS_SHOWN = 20  # ids a dry run names on one line; --json lists up to a thousand

QueueFilter = Annotated[
    list[str] | None,
    typer.Option("--queue", "-q", metavar="NAME", help="With no ID: only jobs in this queue; repeatable."),
]
TagFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", metavar="TAG", help="With no ID: only jobs with this tag; repeated, with all of them."
    ),
]
SearchFilter = Annotated[
    str | None,
    typer.Option(
        "--search",
        metavar="TEXT",
        help="With no ID: only jobs with this text in their name, command or callable.",
    ),
]
SinceFilter = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="DURATION",
        help="With no ID: only jobs that finished within this long (1h, 30m); unfinished ones: submitted within it.",
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Change nothing: print how many jobs would change, and their ids.")
]


def job_filter(status: list[str] | None, queue: list[str] | None, tag: list[str] | None,
               search: str | None, since: str | None, now: float) -> JobFilter | None:  # fmt: skip
    """The filter the options describe, or None when no filter option was given."""
    from jobrunner.domain.jobspec import NAME_PATTERN
    from jobrunner.store.queries import JobFilter

    if not (status or queue or tag or search or since is not None):
        return None
    for name in queue or []:
        if not NAME_PATTERN.match(name):
            raise UsageError(f"--queue: {name!r} is not a queue name (letters, digits, '_', '-', '.')")
    cutoff = None
    if since is not None:
        try:
            cutoff = now - parse_duration(since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    tags = [t for item in tag or [] for t in item.split(",") if t]
    return JobFilter(parse_statuses(status), list(queue or []), tags, search or None, cutoff)


def ids_or_filter(ids: list[str] | None, where: JobFilter | None, dry_run: bool, command: str) -> None:
    """Job ids, or filter options: one of the two."""
    if ids and (where is not None or dry_run):
        option = "--dry-run" if where is None else "the filter options"
        raise UsageError(f"give job ids or {option}, not both: `jobrunner {command} --status dead --dry-run` "
                         "shows what a filter matches")  # fmt: skip
    if not ids and where is None:
        raise UsageError(f"give job ids, or a filter (--status, --queue, --tag, --search, --since) to {command} "
                         "every job it matches")  # fmt: skip


def _progress(verb: str) -> Any:
    """A count on stderr after each batch, on a terminal only (a long action shows it is alive)."""
    if not sys.stderr.isatty():
        return None

    def show(result: BulkResult) -> None:
        sys.stderr.write(f"\r{verb} {_jobs(result.count)} so far…")
        sys.stderr.flush()

    return show


def _end_progress(progress: Any) -> None:
    if progress is not None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


def report(result: BulkResult, as_json: bool, verb: str, past: str) -> None:
    """`would retry 3 jobs: 4, 7, 9` or `retried 3 jobs`, and what was skipped and why."""
    if as_json:
        print_json(result.as_json())
        return
    if result.dry_run:
        listed = ", ".join(str(i) for i in result.ids[:IDS_SHOWN])
        more = f" and {result.count - IDS_SHOWN} more" if result.count > IDS_SHOWN else ""
        typer.echo(f"would {verb} {_jobs(result.count)}" + (f": {listed}{more}" if result.count else ""))
        return
    line = f"{past} {_jobs(result.count)}"
    if result.requested:
        line += f"; asked the daemon to stop {result.requested} running"
    if result.skipped:
        line += f"; skipped {result.skipped}"
    typer.echo(line)
    for reason in result.reasons:
        note(f"jobrunner: skipped: {reason}")
    if result.skipped > len(result.reasons):
        note(f"jobrunner: skipped {result.skipped - len(result.reasons)} more")


def retry_by_filter(app_state: AppState, where: JobFilter, dry_run: bool, as_json: bool) -> None:
    _by_filter(app_state, where, dry_run, as_json, "retry", "retried")


def cancel_by_filter(app_state: AppState, where: JobFilter, dry_run: bool, as_json: bool) -> None:
    _by_filter(app_state, where, dry_run, as_json, "cancel", "cancelled")


def _by_filter(app_state: AppState, where: JobFilter, dry_run: bool, as_json: bool, verb: str, past: str) -> None:
    """`retry` or `cancel` of every job the filter matches, with a count as it goes on a terminal."""
    from jobrunner.store import bulk

    act = bulk.retry_matching if verb == "retry" else bulk.cancel_matching
    progress = _progress(past)
    try:
        result = act(app_state.store, where, time.time(), dry_run=dry_run, progress=progress)
    finally:
        _end_progress(progress)
    report(result, as_json, verb, past)


def purge(app_state: AppState, where: JobFilter, older_than: float, dry_run: bool, as_json: bool) -> None:
    """`jobrunner purge`: the finished jobs the filter matches, older than `older_than`, with
    their history and log files, a batch at a time."""
    from jobrunner.config import log_dir_for
    from jobrunner.store import bulk, retention

    store = app_state.store
    log_dir = log_dir_for(store.target)
    ids: list[int] | None = [] if as_json else None  # the JSON lists every id (README's contract)
    progress = None if dry_run else _progress("purged")
    try:
        result = bulk.purge_matching(
            store, where, older_than, time.time(), dry_run=dry_run, all_ids=ids, progress=progress,
            on_purged=lambda rows: retention.delete_logs(rows, log_dir),
        )  # fmt: skip
    finally:
        _end_progress(progress)
    if as_json:
        count = result.count
        print_json({"purged": 0 if dry_run else count, "would_purge": count if dry_run else 0, "ids": ids})
        return
    report(result, False, "purge", "purged")


def export_command(
    ctx: typer.Context,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", metavar="NAME", help="Only dead jobs of this queue; repeatable."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", metavar="TAG", help="Only dead jobs with this tag; repeated, with all."),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            "--search",
            metavar="TEXT",
            help="Only dead jobs with this text in their name, command or callable.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="DURATION", help="Only jobs that died within this long (1h, 2d)."),
    ] = None,
) -> None:
    """Print dead jobs as JSON lines for `submit --from-file`.

    One job per line, oldest first, with every field a submit sets (name, command or callable,
    arguments, queue, priority, retries, timeout, tags, metadata, cwd, env, ...) and none of
    its history (id, status, times, attempts, errors). Env values are included: keep the file
    private. Read a batch at a time: any number of dead jobs.
    """
    from jobrunner.domain.states import Status
    from jobrunner.store import bulk
    from jobrunner.store.queries import JobFilter

    where = job_filter(None, queue, tag, search, since, time.time()) or JobFilter()
    where.statuses = [Status.DEAD]
    count = with_env = 0
    write = sys.stdout.write
    for job in bulk.matching_jobs(state(ctx).store, where):
        write(bulk.export_line(job) + "\n")
        count += 1
        with_env += bool(job["env"])
    sys.stdout.flush()
    note(
        f"exported {count} dead job{'' if count == 1 else 's'}"
        + (f" ({with_env} with env values: keep the file private)" if with_env else "")
    )


dlq_app = typer.Typer(
    help="Export the dead-letter queue: jobs that died.",
    no_args_is_help=True,
)
dlq_app.command("export")(export_command)


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
