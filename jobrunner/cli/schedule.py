"""`jobrunner schedule ...`: cron, interval and one-off schedules kept in the database."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from jobrunner.cli.context import state
from jobrunner.cli.jobs import DASHDASH, SubmitCommand
from jobrunner.cli.output import note, print_json
from jobrunner.errors import UsageError

schedule_app = typer.Typer(help="Cron, interval and one-off schedules.", no_args_is_help=True)
MISFIRE = ("coalesce", "skip", "all")


@schedule_app.command("add", cls=SubmitCommand, no_args_is_help=True)
def add_command(
    ctx: typer.Context,
    words: Annotated[list[str], typer.Argument(help="NAME, then `-- COMMAND...` for a shell job.")],
    cron: Annotated[str | None, typer.Option("--cron", help="crontab(5) expression, e.g. '0 3 * * sun' or @daily.")] = None,
    every: Annotated[str | None, typer.Option("--every", help="Interval, e.g. 5m.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Once, at this time (ISO 8601).")] = None,
    task: Annotated[str | None, typer.Option("--task", help="A [tasks.NAME] from jobs.toml.")] = None,
    call: Annotated[str | None, typer.Option("--call", "-c", help="A Python callable 'package.module:function'.")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="IANA timezone [default: the system's].")] = None,
    misfire: Annotated[str, typer.Option("--misfire", help="After downtime: coalesce (run once), skip, or all.")] = "coalesce",
    misfire_grace: Annotated[str, typer.Option("--misfire-grace", help="How late a missed fire may still run.")] = "1h",
    max_running: Annotated[int, typer.Option("--max-running", min=1, help="No new run while this many are queued or running.")] = 1,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Queue for its jobs.")] = None,
    priority: Annotated[str | None, typer.Option("--priority", "-p", help="Priority for its jobs.")] = None,
) -> None:
    """Add a schedule: `schedule add backup --cron '0 3 * * sun' --task nightly-backup`."""
    import os

    from jobrunner.domain.durations import parse_duration
    from jobrunner.domain.jobspec import SpecError, build_spec
    from jobrunner.store import schedules
    from jobrunner.store.schedules import ScheduleRow
    from jobrunner.triggers import TriggerError, make_trigger, next_fire, system_timezone

    after = ctx.meta.get(DASHDASH) or 0
    command = words[len(words) - after :] if after else []
    head = words[: len(words) - after]
    if len(head) != 1:
        raise UsageError("give the schedule a NAME, then -- COMMAND for a shell job")
    name = head[0]
    whens = [(k, v) for k, v in (("cron", cron), ("every", every), ("at", at)) if v]
    if len(whens) != 1:
        raise UsageError("give exactly one of --cron, --every or --at")
    if sum(bool(x) for x in (task, call, command)) != 1:
        raise UsageError("give exactly one of --task NAME, --call module:function or -- COMMAND")
    if misfire not in MISFIRE:
        raise UsageError(f"--misfire: {misfire!r} must be one of {', '.join(MISFIRE)}")
    try:
        grace = parse_duration(misfire_grace)
    except ValueError as exc:
        raise UsageError(f"--misfire-grace: {exc}") from None
    app_state = state(ctx)
    job: dict[str, Any] = {}
    if task:
        if task not in app_state.config.tasks:
            raise UsageError(f"--task: unknown task {task!r} in {app_state.config.path or 'jobs.toml (none found)'}")
        job["task"] = task
    elif call:
        job["callable"] = call
    else:
        job["command"] = command
        job["cwd"] = os.getcwd()
    if queue:
        job["queue"] = queue
    if priority:
        job["priority"] = priority
    try:
        if task:
            app_state.config.task_spec(task, {k: v for k, v in job.items() if k != "task"})
        else:
            build_spec(job)
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    kind, expression = whens[0]
    now = time.time()
    timezone = tz or system_timezone()
    try:
        trigger = make_trigger(kind, expression, timezone, now)
    except TriggerError as exc:
        raise UsageError(f"--{kind}: {exc}" if not str(exc).startswith(kind) else f"--{exc}") from None
    first = next_fire(trigger, None, now)
    row = ScheduleRow(
        name=name, source="cli", kind=kind, expression=expression, timezone=timezone, job=job,
        misfire=misfire, misfire_grace=grace, max_running=max_running, paused=False,
        next_fire_at=first, last_fire_at=None, last_job_id=None, missed=0, last_note=None,
        created_at=now, updated_at=now,
    )  # fmt: skip
    schedules.save_schedule(app_state.store, row, replace=False)
    from jobrunner.cli.output import local_time
    from jobrunner.store.queries import iso

    typer.echo(f"schedule {name} added; next run {local_time(iso(first)) if first else 'never'}")


@schedule_app.command("list")
def list_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Schedules with their next and last fire time, last job status and missed fires; broken ones say why."""
    from jobrunner.store import schedules

    store = state(ctx).store
    views: list[dict[str, Any]] = []
    hints: dict[str, str] = {}
    for row in schedules.all_schedules(store):
        view = schedules.schedule_view(store, row)
        view["description"] = schedules.describe(row.kind, row.expression)
        views.append(view)
        if view["broken"]:
            hints[row.name] = schedules.repair_hint(row)
    if as_json:
        print_json(views)
        return
    if not views:
        note("no schedules: jobrunner schedule add NAME --cron '0 3 * * *' -- COMMAND")
        return
    from rich.markup import escape
    from rich.table import Table

    from jobrunner.cli.output import console, short_time, styled_status

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "WHEN", "TZ", "NEXT", "LAST", "LAST JOB", "MISSED", "STATE"):
        table.add_column(column, no_wrap=column != "WHEN", min_width=24 if column == "WHEN" else None)
    for v in views:
        last_job = f"{v['last_job_id']} {styled_status(v['last_job_status'])}" if v["last_job_id"] else ""
        state_text = "paused" if v["paused"] else "active"
        next_text = short_time(v["next_fire_at"]) if not v["paused"] else "-"
        if v["broken"]:  # in NEXT too: a narrow terminal cuts the last columns
            state_text = "[bold red]broken[/]" + (", paused" if v["paused"] else "")
            next_text = "[bold red]broken[/]"
        table.add_row(
            v["name"], escape(f"{v['expression']}  ({v['description']})"), v["timezone"], next_text,
            short_time(v["last_fire_at"]), last_job, str(v["missed"]), state_text,
        )  # fmt: skip
    console().print(table)
    for v in views:
        if v["broken"]:
            typer.echo(f"\n{v['name']} is broken: {v['error']}\n  to fix it: {hints[v['name']]}")


@schedule_app.command("pause")
def pause_command(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Stop firing a schedule until resumed."""
    from jobrunner.store import schedules

    schedules.set_paused(state(ctx).store, name, True, time.time())
    typer.echo(f"schedule {name} paused")


@schedule_app.command("resume")
def resume_command(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Fire a paused schedule again, from its next time after now (no burst of missed runs)."""
    from jobrunner.store import schedules

    schedules.resume(state(ctx).store, name, time.time())
    typer.echo(f"schedule {name} resumed")


@schedule_app.command("remove")
def remove_command(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Delete a schedule (its jobs stay)."""
    from jobrunner.store import schedules

    schedules.remove(state(ctx).store, name)
    typer.echo(f"schedule {name} removed")


@schedule_app.command("run")
def run_command(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Fire a schedule now, once, without changing its next time; prints the job id."""
    from jobrunner.store import schedules

    app_state = state(ctx)
    typer.echo(str(schedules.run_now(app_state.store, name, app_state.config, time.time())))


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")
