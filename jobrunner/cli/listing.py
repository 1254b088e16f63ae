"""`jobrunner list` once its options are parsed, by Typer (jobrunner.cli.jobs) or the fast path.

No Typer here, and rich only when a table is printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobrunner.cli.output import note, print_json
from jobrunner.domain.states import Status, parse_status
from jobrunner.errors import UsageError

FOOTER_COUNT_UP_TO = 10_000  # past this the footer says "over 10,000" (counting costs per job)

if TYPE_CHECKING:
    from jobrunner.cli.context import AppState


def parse_statuses(values: list[str] | None) -> list[Status]:
    """--status values, repeated or comma-separated."""
    try:
        return [parse_status(v) for item in values or [] for v in item.split(",") if v]
    except ValueError as exc:
        raise UsageError(f"--status: {exc}") from None


def list_jobs(
    app_state: AppState,
    *,
    status: list[str] | None = None,
    queue: list[str] | None = None,
    tag: list[str] | None = None,
    search: str | None = None,
    limit: int = 50,
    oldest_first: bool = False,
    as_json: bool = False,
) -> None:
    """Print a page of jobs, newest first: a table for people, or JSON."""
    from jobrunner.store import queries

    store = app_state.store
    where = queries.JobFilter(
        statuses=parse_statuses(status), queues=queue or [], tags=tag or [], search=search
    )
    jobs = queries.list_jobs(store, where, limit=limit or None, newest_first=not oldest_first)
    if as_json:
        print_json(jobs)
        return
    from jobrunner.cli.output import console, jobs_table, print_table, stdout_is_terminal

    if not jobs:
        note("no jobs match" if where.where("?")[0] else "no jobs yet: jobrunner submit -- COMMAND")
        return
    # fitted to a terminal; piped, every value whole (a script or a pager reads it all)
    print_table(jobs_table(jobs, width=console().width if stdout_is_terminal() else None))
    if limit and len(jobs) == limit:
        total = queries.count_jobs(store, where, up_to=FOOTER_COUNT_UP_TO)
        if total > FOOTER_COUNT_UP_TO:
            note(f"showing {limit} of over {FOOTER_COUNT_UP_TO:,} jobs; --limit 0 shows all, `stats` counts them")
        elif total > limit:
            note(f"showing {limit} of {total} jobs; --limit 0 shows all")


def show_stats(app_state: AppState, as_json: bool = False) -> None:
    """`jobrunner stats`: jobs per status, overall and per queue (a table, or JSON)."""
    from jobrunner.store import queries

    data = queries.stats(app_state.store)
    if as_json:
        print_json(data)
        return
    from jobrunner.cli.output import console, stats_table

    console().print(stats_table(data))
