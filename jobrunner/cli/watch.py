"""Following a job from the shell: `logs [--follow]`, `wait`, and `progress` from inside a job."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import typer

from jobrunner.cli.context import state
from jobrunner.domain.states import FINISHED
from jobrunner.errors import UsageError

EXIT_JOB_FAILED = 4
EXIT_WAIT_TIMEOUT = 124  # as coreutils `timeout` does


def logs_command(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(metavar="ID", help="The job's id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing output until the job finishes.")] = False,
) -> None:
    """Print a job's output (stdout and stderr of every attempt)."""
    from jobrunner.store import queries

    store = state(ctx).store
    job = queries.get_job(store, job_id)
    path = job["log_path"]
    if not follow:
        if not path or not os.path.exists(path):
            done = job["status"] in FINISHED and job["attempts"]
            typer.echo(f"job {job_id} wrote no output" if done else f"job {job_id} has no output yet ({job['status']})",
                       err=True)  # fmt: skip
            return
        with open(path, "rb") as handle:
            sys.stdout.buffer.write(handle.read())
        return
    position = 0
    while True:
        if path and os.path.exists(path):
            with open(path, "rb") as handle:
                handle.seek(position)
                chunk = handle.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                position += len(chunk)
        if job["status"] in FINISHED:
            if path and os.path.exists(path) and os.path.getsize(path) > position:
                continue  # drain what was written just before it finished
            return
        time.sleep(0.1)
        job = queries.get_job(store, job_id)
        path = job["log_path"]


def wait_command(
    ctx: typer.Context,
    job_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Jobs to wait for.")],
    timeout: Annotated[float | None, typer.Option("--timeout", min=0, help="Give up after this many seconds (exit 124).")] = None,
) -> None:
    """Block until the jobs finish: exit 0 if all succeeded, 4 if any is dead or cancelled."""
    from jobrunner.store import queries

    store = state(ctx).store
    deadline = time.monotonic() + timeout if timeout is not None else None
    pending = list(dict.fromkeys(job_ids))
    for job_id in pending:
        queries.get_job(store, job_id)  # unknown ids fail now, before any waiting
    failed = False
    delay = 0.01
    while pending:
        for job_id in list(pending):
            job = queries.get_job(store, job_id)
            if job["status"] in FINISHED:
                pending.remove(job_id)
                if job["status"] != "succeeded":
                    failed = True
                    typer.echo(f"job {job_id} {job['status']}: {job['error'] or ''}".rstrip(": "), err=True)
        if not pending:
            break
        if deadline is not None and time.monotonic() >= deadline:
            typer.echo(f"jobrunner: still waiting for job(s) {', '.join(map(str, pending))} after {timeout:g}s", err=True)
            raise typer.Exit(EXIT_WAIT_TIMEOUT)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)
    raise typer.Exit(EXIT_JOB_FAILED if failed else 0)


def progress_command(
    ctx: typer.Context,
    fraction: Annotated[str, typer.Argument(help="0.4, or 40%.")],
    message: Annotated[str | None, typer.Argument(help="A short note, e.g. 'step 2/5'.")] = None,
) -> None:
    """Report progress from inside a running shell job."""
    job_id, attempt = os.environ.get("JOBRUNNER_JOB_ID"), os.environ.get("JOBRUNNER_ATTEMPT")
    if not job_id or not attempt:
        raise UsageError("not inside a jobrunner job (JOBRUNNER_JOB_ID is not set)")
    try:
        value = float(fraction[:-1]) / 100 if fraction.endswith("%") else float(fraction)
    except ValueError:
        raise UsageError(f"{fraction!r} is not a fraction like 0.4 or 40%") from None
    if not 0 <= value <= 1:
        raise UsageError(f"progress {fraction} is out of range: use 0-1 or 0%-100%")
    from jobrunner.store import runs

    runs.save_progress(state(ctx).store, [(int(job_id), int(attempt), value, message)], time.time())


def register(app: typer.Typer) -> None:
    app.command("logs")(logs_command)
    app.command("wait")(wait_command)
    app.command("progress")(progress_command)
