"""`jobrunner schedule ...`: cron, interval and one-off schedules kept in the database."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from jobrunner.cli import limit_options
from jobrunner.cli.context import state
from jobrunner.cli.jobs import DASHDASH, SubmitCommand
from jobrunner.cli.output import note, print_json
from jobrunner.errors import UsageError

schedule_app = typer.Typer(help="Add, list and change cron, interval and one-off schedules.", no_args_is_help=True)
MISFIRE = ("coalesce", "skip", "all")
#: Unit words people put after a number ("--every 5 minutes") -> the unit a duration takes.
UNIT_WORDS = {
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), "ms"),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "m"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("d", "day", "days"), "d"),
    **dict.fromkeys(("w", "week", "weeks"), "w"),
}


@schedule_app.command("add", cls=SubmitCommand, no_args_is_help=True)
def add_command(
    ctx: typer.Context,
    words: Annotated[list[str], typer.Argument(
        metavar="NAME [-- COMMAND...]", help="The schedule's name, then -- and a command for a shell job."
    )],
    cron: Annotated[str | None, typer.Option(
        "--cron", metavar="EXPRESSION", help="Fire on this crontab(5) expression, e.g. '0 3 * * sun' or @daily."
    )] = None,
    every: Annotated[str | None, typer.Option(
        "--every", metavar="DURATION", help="Fire at this interval, e.g. 5m or 1h30m."
    )] = None,
    at: Annotated[str | None, typer.Option("--at", metavar="TIME", help="Fire once, at this time (ISO 8601).")] = None,
    task: Annotated[str | None, typer.Option(
        "--task", metavar="NAME", help="Run this task, a [tasks.NAME] table of jobs.toml."
    )] = None,
    call: Annotated[str | None, typer.Option(
        "--call", "-c", metavar="MODULE:FUNCTION", help="Run this Python callable, e.g. 'myapp.reports:build'."
    )] = None,
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE", help="The IANA timezone of its times, e.g. Europe/Warsaw [default: the system's]."
    )] = None,
    misfire: Annotated[str, typer.Option(
        "--misfire", metavar="POLICY",
        help="What to do with fires missed while no daemon ran: coalesce (run once), skip, or all.",
    )] = "coalesce",
    misfire_grace: Annotated[str, typer.Option(
        "--misfire-grace", metavar="DURATION", help="How late a missed fire may still run."
    )] = "1h",
    max_running: Annotated[int, typer.Option(
        "--max-running", min=1, metavar="N", help="Start no new run while this many of its jobs are queued or running."
    )] = 1,
    queue: Annotated[str | None, typer.Option("--queue", "-q", metavar="NAME", help="The queue of its jobs.")] = None,
    priority: Annotated[str | None, typer.Option(
        "--priority", "-p", metavar="LEVEL", help="The priority of its jobs."
    )] = None,
    retries: Annotated[int | None, typer.Option(
        "--retries", "-r", metavar="N", help="How often to retry a failed attempt of its jobs [default: the task's, else 0]."
    )] = None,
    timeout: Annotated[str | None, typer.Option(
        "--timeout", "-t", metavar="DURATION", help="Stop an attempt of its jobs that runs longer than this (30s, 10m, 1h)."
    )] = None,
    backoff: Annotated[str | None, typer.Option(
        "--backoff", metavar="DURATION", help="The delay before the first retry, doubled for each one after."
    )] = None,
    tag: Annotated[list[str] | None, typer.Option(
        "--tag", metavar="TAG", help="A tag for its jobs; repeatable, or comma-separated."
    )] = None,
    meta: Annotated[list[str] | None, typer.Option(
        "--meta", metavar="KEY=VALUE", help="Metadata to keep with its jobs; repeatable."
    )] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", "-e", metavar="KEY[=VALUE]",
        help="An environment variable for its jobs (KEY alone: its value here, now); repeatable.",
    )] = None,
    env_file: Annotated[str | None, typer.Option(
        "--env-file", metavar="FILE", help="Environment variables for its jobs, a KEY=VALUE per line."
    )] = None,
    cwd: Annotated[str | None, typer.Option(
        "--cwd", metavar="DIR", help="The directory its jobs run in [default, for a command: the current one]."
    )] = None,
    memory: limit_options.Memory = None,
    cpu_time: limit_options.CpuTime = None,
    max_log_size: limit_options.MaxLogSize = None,
) -> None:
    """Add a schedule.

    For example, `jobrunner schedule add backup --cron '0 3 * * sun' --task nightly-backup` runs
    the task nightly-backup every Sunday at 03:00. The job options (--queue ... --max-log-size)
    apply to every job it fires, over a task's own; --env KEY takes KEY's value now, once.
    """
    import os

    from jobrunner.cli.editing import option_error
    from jobrunner.cli.submit import parse_env, parse_pairs, read_env_file
    from jobrunner.config import schedule_spec
    from jobrunner.domain.durations import parse_duration
    from jobrunner.domain.jobspec import SpecError
    from jobrunner.store import schedules
    from jobrunner.store.schedules import ScheduleRow
    from jobrunner.triggers import TriggerError, make_trigger, next_fire, system_timezone, zone

    after = ctx.meta.get(DASHDASH) or 0
    command = words[len(words) - after :] if after else []
    head = words[: len(words) - after]
    durations = {"--every": every, "--misfire-grace": misfire_grace, "--timeout": timeout,
                 "--backoff": backoff, "--cpu-time": cpu_time}  # fmt: skip
    name = _schedule_name(head, durations)
    whens = [(k, v) for k, v in (("cron", cron), ("every", every), ("at", at)) if v]
    if len(whens) != 1:
        raise UsageError("give exactly one of --cron, --every or --at")
    if sum(bool(x) for x in (task, call, command)) != 1:
        raise UsageError("give exactly one of --task NAME, --call module:function or -- COMMAND")
    if misfire not in MISFIRE:
        raise UsageError(f"--misfire: {misfire!r} must be one of {', '.join(MISFIRE)}")
    if tz:
        try:
            zone(tz)
        except TriggerError as exc:
            raise UsageError(f"--tz: {exc}") from None
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
    options = (("queue", queue), ("priority", priority), ("retries", retries), ("timeout", timeout),
               ("backoff", backoff), ("cwd", cwd), ("memory", memory), ("cpu_time", cpu_time),
               ("max_log_size", max_log_size))  # fmt: skip
    job.update((key, value) for key, value in options if value is not None)
    if tag:
        job["tags"] = [t for item in tag for t in item.split(",") if t]
    if meta:
        job["metadata"] = parse_pairs(meta, "--meta", decode=True)
    if env or env_file:  # kept in the schedule's row: every job it fires gets them
        job["env"] = {**(read_env_file(env_file) if env_file else {}), **parse_env(env or [])}
    try:  # as the daemon will build each job it fires
        schedule_spec(name, job, app_state.config)
    except SpecError as exc:
        raise option_error(exc) from None
    kind, expression = whens[0]
    now = time.time()
    timezone = tz or system_timezone()
    try:
        trigger = make_trigger(kind, expression, timezone, now)
    except TriggerError as exc:
        raise UsageError(f"--{kind}: {exc}" if not str(exc).startswith(kind) else f"--{exc}") from None
    first = next_fire(trigger, None, now)
    if kind == "at" and (first is None or first <= now):  # else reported as missed, as if the daemon was down
        raise UsageError(f"--at: {_wall(first or 0, timezone)} is in the past: it is now {_wall(now, timezone)}")
    if kind == "cron" and first is None:  # "0 0 30 2 *": no day it names ever comes
        raise UsageError(f"--cron {expression!r} never fires: no date matches it (check the day and month fields)")
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


def _schedule_name(head: list[str], durations: dict[str, str | None]) -> str:
    """The NAME: the one word before `--`; more words are a mistake, said for what it is."""
    if not head:
        raise UsageError("give the schedule a NAME, then -- COMMAND for a shell job")
    if len(head) > 1:
        unit = UNIT_WORDS.get(head[1].lower())
        for option, value in durations.items():
            if unit and value and value.replace(".", "", 1).isdigit():  # `--every 5 minutes`
                raise UsageError(
                    f"`{option} {value} {head[1]}`: write `{option} {value}{unit}` "
                    "(a duration is one word: 30s, 5m, 1h30m)"
                )
        raise UsageError(
            f"unexpected words {' '.join(head[1:])!r} after the NAME {head[0]!r}: "
            f"put a shell command after --, e.g. jobrunner schedule add {head[0]} --every 1h -- COMMAND"
        )
    return head[0]


def _wall(stamp: float, timezone: str) -> str:
    """A time on the schedule's own clock, to the second, with the zone's abbreviation."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(stamp, ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


@schedule_app.command("list")
def list_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the schedules.

    Each with its next and last fire time, the status of its last job and its missed fires; a broken
    one says why.
    """
    from jobrunner.present import schedule_state
    from jobrunner.store import schedules

    store = state(ctx).store
    views: list[dict[str, Any]] = []
    hints: dict[str, str] = {}
    for row in schedules.all_schedules(store):
        view = schedules.schedule_view(store, row)
        view["description"] = schedules.describe(row.kind, row.expression)
        view["state"] = schedule_state(view)
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

    from jobrunner.cli.output import print_table, styled_status
    from jobrunner.present import zoned_time

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "WHEN", "TZ", "NEXT", "LAST", "LAST JOB", "MISSED", "STATE"):
        table.add_column(column, no_wrap=column != "WHEN", min_width=24 if column == "WHEN" else None)
    for v in views:
        last_job = ""
        if v["last_job_id"]:
            last_job = f"{v['last_job_id']} {styled_status(v['last_job_status'] or 'purged')}"
        state_text = v["state"]
        # in the schedule's own timezone: the wall time its expression speaks of
        next_text = zoned_time(v["next_fire_at"], v["timezone"]) if not v["paused"] else "-"
        if v["broken"]:  # in NEXT too: a narrow terminal cuts the last columns
            state_text = "[bold red]broken[/]" + (", paused" if v["paused"] else "")
            next_text = "[bold red]broken[/]"
        table.add_row(
            escape(v["name"]), escape(f"{v['expression']}  ({v['description']})"), v["timezone"], next_text,
            zoned_time(v["last_fire_at"], v["timezone"]), last_job, str(v["missed"]), state_text,
        )  # fmt: skip
    print_table(table)
    for v in views:
        if v["broken"]:
            typer.echo(f"\n{v['name']} is broken: {v['error']}\n  to fix it: {hints[v['name']]}")


@schedule_app.command("pause")
def pause_command(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]) -> None:
    """Stop firing a schedule until resumed."""
    from jobrunner.store import schedules

    schedules.set_paused(state(ctx).store, name, True, time.time())
    typer.echo(f"schedule {name} paused")


@schedule_app.command("resume")
def resume_command(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]) -> None:
    """Fire a paused schedule again.

    It fires from its next time after now: no burst of the runs it missed.
    """
    from jobrunner.store import schedules

    schedules.resume(state(ctx).store, name, time.time())
    typer.echo(f"schedule {name} resumed")


@schedule_app.command("remove")
def remove_command(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]) -> None:
    """Delete a schedule; its jobs stay.

    A schedule from the config file is deleted there, not here.
    """
    from jobrunner.store import schedules

    app_state = state(ctx)
    if schedules.get_schedule(app_state.store, name).source == "config":  # the next reload would bring it back
        config = app_state.config_for_database
        where = f"the config file {config.path}" if name in config.schedules else "the daemon's config file"
        raise UsageError(
            f"schedule {name} lives in {where} ([schedules.{name}]) and comes back when the daemon reloads it: "
            f"delete it there (or set enabled = false) and reload the daemon; "
            f"`jobrunner schedule pause {name}` stops it until then"
        )
    schedules.remove(app_state.store, name)
    typer.echo(f"schedule {name} removed")


@schedule_app.command("run")
def run_command(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]) -> None:
    """Fire a schedule once, now, and print the new job's id.

    Its next time stays as it was.
    """
    from jobrunner.store import schedules

    app_state = state(ctx)
    config = app_state.config  # first: a broken config is refused with one line, before the store warns
    typer.echo(str(schedules.run_now(app_state.store, name, config, time.time())))


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")
