"""Following a job from the shell: `logs [--follow]`, `wait`, and `progress` from inside a job."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import typer

from jobrunner.cli.context import parse_job_ids, state
from jobrunner.domain.states import FINISHED
from jobrunner.errors import UsageError
from jobrunner.present import visible

EXIT_JOB_FAILED = 1  # 0 ok, 1 a job failed, 2 a usage error: the CLI's convention
EXIT_WAIT_TIMEOUT = 124  # as coreutils `timeout` does
DAEMON_CHECK_EVERY_S = 2.0  # how often `wait` looks whether a daemon is alive to run the jobs


def logs_command(
    ctx: typer.Context,
    job_ref: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing output until the job finishes.")
    ] = False,
    tail: Annotated[
        int | None,
        typer.Option(
            "--tail",
            metavar="N",
            min=0,
            help="Start with the last N lines (--tail 0 --follow: only new ones).",
        ),
    ] = None,
) -> None:
    """Print a job's output.

    That is the stdout and stderr of every attempt, in the order they were written: byte for
    byte when piped; on a terminal, control characters are shown (as \\x1b), not executed.
    """
    from jobrunner.cli import logstream
    from jobrunner.store import queries

    (job_id,) = parse_job_ids([job_ref])
    store = state(ctx).store
    job = queries.get_job(store, job_id)
    sink = logstream.Sink(sys.stdout)
    handle = logstream.open_log(job["log_path"], tail)
    if not follow:
        if handle is None:
            done = job["status"] in FINISHED and job["attempts"]
            typer.echo(f"job {job_id} wrote no output" if done else f"job {job_id} has no output yet ({job['status']})",
                       err=True)  # fmt: skip
            return
        with handle:
            logstream.copy(handle, sink)
        sink.close()
        return
    try:
        while True:
            if handle is None:
                handle = logstream.open_log(job["log_path"], tail)
            elif logstream.replaced(handle, job["log_path"]):  # a file renamed over the path: follow it from its start
                logstream.copy(handle, sink)
                handle.close()
                handle = logstream.open_log(job["log_path"], None)
            if handle is not None and logstream.copy(handle, sink):
                sink.flush(partial=True)
            if job["status"] in FINISHED:  # read after the status: all it wrote before it finished is out
                sink.close()
                return
            time.sleep(0.1)
            job = queries.get_job(store, job_id)
    finally:
        if handle is not None:
            handle.close()


def wait_command(
    ctx: typer.Context,
    job_refs: Annotated[list[str], typer.Argument(metavar="ID...", help="The ids of the jobs to wait for.")],
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            help="Give up after this long (30s, 10m, 1h30m) with exit code 124.",
        ),
    ] = None,
) -> None:
    """Wait until the jobs finish.

    Exit 0 if all of them succeeded, 1 if any is dead or cancelled. With no daemon running, it
    says so on stderr once and keeps waiting: the jobs go on when a daemon starts.
    """
    from jobrunner.domain.durations import parse_duration
    from jobrunner.store import queries

    job_ids = parse_job_ids(job_refs)
    try:
        seconds = parse_duration(timeout) if timeout is not None else None
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    store = state(ctx).store
    deadline = time.monotonic() + seconds if seconds is not None else None
    pending = list(dict.fromkeys(job_ids))
    for job_id in pending:
        queries.get_job(store, job_id)  # unknown ids fail now, before any waiting
    failed = False
    delay = 0.01
    next_daemon_check, daemon_was_alive = 0.0, True
    while pending:
        for job_id in list(pending):
            job = queries.get_job(store, job_id)
            if job["status"] in FINISHED:
                pending.remove(job_id)
                if job["status"] != "succeeded":
                    failed = True
                    typer.echo(f"job {job_id} {job['status']}: {visible(job['error'] or '', lines=False)}".rstrip(": "), err=True)
        if not pending:
            break
        if deadline is not None and time.monotonic() >= deadline:
            typer.echo(
                f"jobrunner: still waiting for job(s) {', '.join(map(str, pending))} after {timeout}",
                err=True,
            )
            raise typer.Exit(EXIT_WAIT_TIMEOUT)
        if time.monotonic() >= next_daemon_check:
            next_daemon_check = time.monotonic() + DAEMON_CHECK_EVERY_S
            alive = any(d["alive"] for d in queries.daemons(store, time.time()))
            if daemon_was_alive and not alive:  # said once, and again only if one starts and stops
                waiting = ", ".join(map(str, pending))
                typer.echo(
                    f"jobrunner: no daemon is running: job(s) {waiting} will not progress until one starts "
                    "(jobrunner daemon); still waiting",
                    err=True,
                )
            daemon_was_alive = alive
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)
    raise typer.Exit(EXIT_JOB_FAILED if failed else 0)


def progress_command(
    ctx: typer.Context,
    fraction: Annotated[
        str,
        typer.Argument(
            metavar="FRACTION", help="How far the job is: a fraction like 0.4, or a percentage like 40%."
        ),
    ],
    message: Annotated[
        str | None, typer.Argument(metavar="MESSAGE", help="A short note, e.g. 'step 2/5'.")
    ] = None,
) -> None:
    """Report progress from inside a running shell job.

    The message is cut to 1,000 characters. Exit 2 if the job is unknown or not running.
    """
    from jobrunner import progress

    job_ref, attempt_ref = os.environ.get("JOBRUNNER_JOB_ID"), os.environ.get("JOBRUNNER_ATTEMPT")
    if not job_ref or not attempt_ref:
        raise UsageError("not inside a jobrunner job (JOBRUNNER_JOB_ID is not set)")
    value = progress.parse_fraction(fraction)
    if value is None:
        raise UsageError(progress.fraction_problem(fraction))
    if not (job_ref.isascii() and job_ref.isdigit() and attempt_ref.isascii() and attempt_ref.isdigit()):
        raise UsageError(f"JOBRUNNER_JOB_ID={job_ref!r} JOBRUNNER_ATTEMPT={attempt_ref!r}: not a job")
    if progress.send(value, message):  # the job's worker passes it on: no database write here
        return
    from jobrunner.store import queries, runs

    job_id, attempt = int(job_ref), int(attempt_ref)
    store = state(ctx).store
    queries.get_job(store, job_id)  # an unknown id: NotFoundError, exit 2
    if not runs.report_progress(store, job_id, attempt, value, message, time.time()):
        job = queries.get_job(store, job_id)
        if job["status"] == "running" and job["attempts"] != attempt:
            raise UsageError(f"job {job_id} attempt {attempt} is not running (attempt {job['attempts']} is)")
        raise UsageError(f"job {job_id} is not running ({job['status']})")


def register(app: typer.Typer) -> None:
    app.command("logs")(logs_command)
    app.command("wait")(wait_command)
    app.command("progress")(progress_command)
