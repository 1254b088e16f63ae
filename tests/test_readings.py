"""What `list`, `show`, `schedule list` and the TUI say about jobs and schedules: readings a
user acts on, so none may mislead (issue 13, "readings that mislead").

The daemon's part is played through the store's own claim and finish, with times given, so
an attempt that ran two seconds reads two seconds however long the test took.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from jobrunner.domain.failures import Failure, FailureKind
from jobrunner.store import queries, runs, schedules
from jobrunner.tui.screens.detail import DetailScreen
from jobrunner.tui.screens.schedules import SchedulesScreen
from tests.conftest import logs_of, run_jobrunner, run_on_pty, sql
from tests.tuihelpers import cell, drive, shown, text_of, until

OWNER = "test-host:1:readings"
EXIT_3 = Failure(FailureKind.EXIT, "exit code 3", exit_code=3)
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def run_attempt(store: Any, job_id: int, start: float, end: float, failure: Failure | None = None,
                progress: float | None = None) -> None:  # fmt: skip
    """One attempt as a daemon runs it: claimed at `start`, progress reported, ended at `end`.

    The job must be the first a claim of its queue picks."""
    queue = queries.get_job(store, job_id)["queue"]
    [claim] = runs.claim(
        store, OWNER, start, 1, 60.0, f"{logs_of(store.target)}/", only_queues=[queue]
    )
    assert claim.id == job_id
    if progress is not None:
        runs.save_progress(store, [(job_id, claim.attempt, progress, "step 2/5")], start + 0.1)
    runs.finish(store, OWNER, [runs.Outcome(job_id, claim.attempt, failure)], end)


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """A `list` table by job id, then header: cells found by the header's column positions."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    names = header.split()
    starts = [header.index(name) for name in names]
    ends = [*starts[1:], None]
    rows = {}
    for line in lines[1:]:
        # ID is right-aligned under a header that may start later than its widest id
        cells = {
            name: line[start if i else 0 : end].strip()
            for i, (name, start, end) in enumerate(zip(names, starts, ends, strict=True))
        }
        rows[cells["ID"]] = cells
    return rows


def on_terminal(db: Path, *args: str, columns: int = 100) -> str:
    """What `jobrunner ARGS` prints on a terminal `columns` wide (a real pty), colours removed."""
    env = {**os.environ, "JOBRUNNER_DB": str(db), "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    out, code = run_on_pty([sys.executable, "-m", "jobrunner", *args], env, columns)
    assert code == 0, out
    return ANSI.sub("", out.decode()).replace("\r\n", "\n")


def piped(db: Path, *args: str) -> str:
    """What `jobrunner ARGS | cat` gets: stdout is a pipe."""
    result = run_jobrunner(*args, env={"JOBRUNNER_DB": str(db), "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- TRIES: attempts in the current retry budget, never `2/1`


def test_tries_start_afresh_after_a_manual_retry(cli, store):
    job_id = cli.submit("--name", "flaky", "--", "false")
    now = time.time()
    run_attempt(store, job_id, now - 60, now - 59, EXIT_3)
    assert table_rows(cli.ok("list"))[str(job_id)]["TRIES"] == "1/1"
    cli.ok("retry", str(job_id))
    assert table_rows(cli.ok("list"))[str(job_id)]["TRIES"] == "0/1"  # was 1/1, then 2/1 once it ran
    job = cli.job(job_id)
    assert (job["attempts"], job["max_retries"], job["retries_left"]) == (1, 0, 0)  # as documented
    assert (job["tries_used"], job["tries_allowed"]) == (0, 1)
    run_attempt(store, job_id, now - 30, now - 29, EXIT_3)
    assert table_rows(cli.ok("list"))[str(job_id)]["TRIES"] == "1/1"
    shown_ = cli.ok("show", str(job_id))
    assert re.search(r"^tries\s+1/1 \(0 retries left; 2 attempts in all\)", shown_, re.M), shown_


def test_an_interrupted_attempt_does_not_count_as_a_try(cli, store):
    job_id = cli.submit("--retries", "2", "--", "sleep", "9")
    now = time.time()
    run_attempt(store, job_id, now - 10, now - 9, Failure(FailureKind.INTERRUPTED, "interrupted: shutdown"))
    assert table_rows(cli.ok("list"))[str(job_id)]["TRIES"] == "0/3"
    job = cli.job(job_id)
    assert job["status"] == "queued" and job["attempts"] == 1 and job["tries_used"] == 0


# -- TOOK: the time the last attempt ran, nothing when none ran


def test_took_is_empty_for_a_job_that_never_ran(cli):
    job_id = cli.submit("--", "sleep", "100")
    cli.ok("cancel", str(job_id))
    job = cli.job(job_id)
    assert job["duration"] is None
    assert "TOOK" not in cli.ok("list").splitlines()[0]  # no row has a value: no column
    assert re.search(r"^duration\s+-\s*$", cli.ok("show", str(job_id)), re.M)


def test_took_is_the_last_attempts_run_time_not_the_wait_after_it(cli, store):
    ran, retrying, cancelled = (cli.submit("--retries", r, "--", "false") for r in ("0", "3", "0"))
    now = time.time()
    run_attempt(store, ran, now - 300, now - 298, EXIT_3)  # dead after 2 s
    run_attempt(store, retrying, now - 200, now - 197, EXIT_3)  # retrying, 3 s
    run_attempt(store, cancelled, now - 100, now - 96, EXIT_3)  # dead after 4 s ...
    cli.ok("retry", str(cancelled))  # ... retried, then cancelled before it ran again
    cli.ok("cancel", str(cancelled))
    durations = {job["id"]: job["duration"] for job in cli.json("list")}
    assert durations == {ran: pytest.approx(2.0), retrying: pytest.approx(3.0), cancelled: pytest.approx(4.0)}
    rows = table_rows(cli.ok("list"))
    assert [rows[str(i)]["TOOK"] for i in (ran, retrying, cancelled)] == ["2s", "3s", "4s"]
    assert re.search(r"^duration\s+4s\s*$", cli.ok("show", str(cancelled)), re.M)


# -- PROGRESS: it belongs to a running attempt


def test_progress_is_cleared_when_an_attempt_ends_other_than_succeeded(cli, store):
    retrying, interrupted, dead, succeeded = (
        cli.submit("--retries", retries, "--queue", f"q{n}", "--", "x") for n, retries in enumerate("2201")
    )
    now = time.time()
    run_attempt(store, retrying, now - 50, now - 49, EXIT_3, progress=0.4)
    run_attempt(store, interrupted, now - 40, now - 39, Failure(FailureKind.INTERRUPTED, "interrupted"), 0.4)
    run_attempt(store, dead, now - 30, now - 29, EXIT_3, progress=0.4)
    run_attempt(store, succeeded, now - 20, now - 19, None, progress=0.4)
    jobs = {job["id"]: job for job in cli.json("list")}
    assert [jobs[i]["status"] for i in (retrying, interrupted, dead, succeeded)] == [
        "retrying", "queued", "dead", "succeeded"]  # fmt: skip
    assert [jobs[i]["progress"] for i in (retrying, interrupted, dead)] == [None, None, None]
    assert jobs[succeeded]["progress"] == 1.0  # a success fills its bar
    rows = table_rows(cli.ok("list"))
    assert [rows[str(i)]["PROGRESS"] for i in (retrying, interrupted, dead)] == ["", "", ""]
    assert rows[str(succeeded)]["PROGRESS"].startswith("100%")


def test_stale_progress_in_an_old_row_is_not_shown(cli, store):
    """A row written before the store cleared progress still reads right."""
    job_id = cli.submit("--", "x")
    sql(store,
        "UPDATE job SET status='dead', progress=0.4, progress_message='step 2/5' WHERE id=?", (job_id,)
    )
    assert "step 2/5" not in cli.ok("list") and "PROGRESS" not in cli.ok("list")
    assert "step 2/5" not in cli.ok("show", str(job_id)) and "40%" not in cli.ok("show", str(job_id))


# -- show: dependencies and dependents, each with its status


def test_show_lists_dependencies_and_dependents_with_their_status(cli, store):
    extract = cli.submit("--name", "extract", "--", "true")
    transform = cli.submit("--name", "transform", "--after", str(extract), "--", "true")
    load = cli.submit("--name", "load", "--after", str(extract), "--after", str(transform), "--", "true")
    run_attempt(store, extract, time.time(), time.time() + 1)  # after the submits: released as queued
    text = cli.ok("show", str(transform))
    assert re.search(rf"^after\s+{extract} extract succeeded\s*$", text, re.M), text
    assert re.search(rf"^dependents\s+{load} load waiting\s*$", text, re.M), text
    text = cli.ok("show", str(extract))
    assert re.search(rf"^dependents\s+{transform} transform queued, {load} load waiting\s*$", text, re.M)
    assert not re.search(r"^after", text, re.M)


# -- list: an ERROR column where failed jobs show; whole values when piped


def test_list_of_dead_jobs_shows_the_last_error(cli, store, db_path):
    fine = cli.submit("--name", "fine", "--", "true")
    dead = cli.submit("--name", "broken", "--queue", "other", "--", "false")
    reason = "ValueError: the month " + "is not a month " * 20 + "END"
    now = time.time()
    run_attempt(store, dead, now - 10, now - 9, Failure(FailureKind.PERMANENT, reason))
    out = piped(db_path, "list", "--status", "dead")
    assert table_rows(out)[str(dead)]["ERROR"] == reason and "…" not in out
    rows = table_rows(piped(db_path, "list"))
    assert rows[str(fine)]["ERROR"] == ""
    # on a terminal the error is cut to fit, never the line
    screen = on_terminal(db_path, "list", "--status", "dead", columns=100)
    lines = [line for line in screen.splitlines() if line.strip()]
    assert lines[0].split()[0] == "ID" and lines[0].split()[-1] == "ERROR"
    assert all(len(line) <= 100 for line in lines)
    assert "ValueError: the month" in lines[1] and lines[1].rstrip().endswith("…")


def test_piped_list_prints_every_value_whole(cli, db_path):
    name = "a-rather-long-job-name-that-goes-on-and-on"
    script = "echo " + "x" * 150 + " && echo done"
    job_id = cli.submit("--name", name, "--", "sh", "-c", script)
    out = piped(db_path, "list")
    assert "…" not in out
    row = table_rows(out)[str(job_id)]
    assert row["NAME"] == name and row["COMMAND"] == f"sh -c '{script}'"


def test_a_piped_table_reads_as_at_its_measured_width(cli, capsys):
    """Piped, print_table lets a table take the width its columns need instead of measuring it
    first (rich would measure every cell once more): the same text, wide characters, emoji
    codes, markup-like text and a column that may wrap included."""
    import io

    from rich.console import Console
    from rich.table import Table

    from jobrunner.cli.output import jobs_table, print_table

    cli.submit("--name", "名前:smile: [bold]x[/bold]", "--", "echo", "[red]x[/] :thumbs_up: 日本語")
    cli.submit("--name", "emoji 🎉 wide", "--", "sh", "-c", "echo " + "x" * 150)
    wrapping = Table(box=None, pad_edge=False)
    wrapping.add_column("A", min_width=24)
    wrapping.add_column("B", no_wrap=True)
    wrapping.add_row("a few words that could wrap " * 3, "日本語 :fire:")
    for table in (jobs_table(cli.json("list"), width=None), wrapping):
        measured = Console(file=io.StringIO(), highlight=False, soft_wrap=False, width=1_000_000)
        measured.width = measured.measure(table).maximum
        measured.print(table)
        capsys.readouterr()
        print_table(table)
        assert capsys.readouterr().out == measured.file.getvalue()


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_list_fits_a_terminal_of_any_width_and_keeps_the_id(cli, db_path, columns):
    job_id = cli.submit("--name", "a-rather-long-job-name", "--", "sh", "-c", "echo " + "x" * 150)
    lines = [line for line in on_terminal(db_path, "list", columns=columns).splitlines() if line.strip()]
    assert lines[0].split()[0] == "ID"
    assert lines[1].split()[0] == str(job_id)
    assert all(len(line) <= columns for line in lines)


# -- schedule list: times in the schedule's own zone, a fired one-off reads fired


def fire_once(store: Any, name: str, at: float) -> None:
    """What the daemon does when a one-off's time comes: one job, and nothing more to fire."""
    from jobrunner.domain.jobspec import build_spec

    schedules.fire(store, name, schedules.get_schedule(store, name).next_fire_at, [at], 0, None,
                   lambda row: build_spec({"command": ["true"], "name": name}), at)  # fmt: skip


def test_schedule_list_shows_times_in_the_schedules_own_zone(cli, db_path):
    cli.ok("schedule", "add", "nightly", "--cron", "0 3 * * *", "--tz", "America/New_York", "--", "true")
    cli.ok("schedule", "add", "tokyo-once", "--at", "2099-06-01T09:30:15", "--tz", "Asia/Tokyo", "--", "true")
    rows = {row["NAME"]: row for row in schedule_rows(on_terminal(db_path, "schedule", "list", columns=200))}
    # 03:00 in New York (EST or EDT), not 07:00 or 08:00 UTC, to the minute; the one-off to the second
    assert re.fullmatch(r"\d{4}-\d\d-\d\d 03:00 E[SD]T", rows["nightly"]["NEXT"]), rows
    assert rows["tokyo-once"]["NEXT"] == "2099-06-01 09:30:15 JST"


def schedule_rows(text: str) -> list[dict[str, str]]:
    """`schedule list` rows by the header's column positions (every column starts at its header)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    names = ["NAME", "WHEN", "TZ", "NEXT", "LAST", "LAST JOB", "MISSED", "STATE"]
    starts = [header.index(f"{name} ") if name != "STATE" else header.index(name) for name in names]
    return [
        {
            name: line[start:end].strip()
            for name, start, end in zip(names, starts, [*starts[1:], None], strict=True)
        }
        for line in lines[1:]
    ]


def test_a_fired_one_off_reads_fired_not_active(cli, store, db_path):
    cli.ok("schedule", "add", "once", "--at", "2099-01-01T00:00", "--tz", "UTC", "--", "true")
    cli.ok("schedule", "add", "every", "--every", "10m", "--", "true")
    fire_once(store, "once", time.time())
    rows = {row["NAME"]: row for row in schedule_rows(on_terminal(db_path, "schedule", "list", columns=200))}
    assert (rows["once"]["STATE"], rows["once"]["NEXT"]) == ("fired", "-")
    assert rows["every"]["STATE"] == "active"
    views = {view["name"]: view for view in cli.json("schedule", "list")}
    assert (views["once"]["state"], views["every"]["state"]) == ("fired", "active")
    assert views["once"]["next_fire_at"] is None


def test_piped_schedule_list_is_not_cut_at_80_columns(cli, db_path):
    name = "a-schedule-with-a-name-long-enough-to-matter"
    cli.ok(
        "schedule",
        "add",
        name,
        "--cron",
        "0 3 * * 1-5",
        "--tz",
        "America/Argentina/Buenos_Aires",
        "--",
        "true",
    )
    out = piped(db_path, "schedule", "list")
    assert "…" not in out
    [row] = schedule_rows(out)
    assert row["NAME"] == name and row["TZ"] == "America/Argentina/Buenos_Aires" and row["STATE"] == "active"


# -- the TUI reads the same


def test_tui_cells_and_detail_read_as_the_cli_does(cli, store):
    extract = cli.submit("--name", "extract", "--retries", "0", "--", "false")
    load = cli.submit("--name", "load", "--after", str(extract), "--", "true")
    never = cli.submit("--name", "never", "--", "true")
    now = time.time()
    run_attempt(store, extract, now - 100, now - 98, EXIT_3, progress=0.5)
    cli.ok("retry", str(extract), str(load))  # the dependent comes back to waiting with it
    cli.ok("cancel", str(never))

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: shown(pilot) == [never, load, extract])
        assert cell(pilot, extract, "tries") == "0/1"  # a fresh budget, not 1/1 or 2/1
        assert cell(pilot, extract, "took") == "2s"  # its attempt, not the time since
        assert cell(pilot, extract, "progress") == ""  # that attempt's bar is gone
        assert cell(pilot, never, "took") == ""
        pilot.app.screen.query_one("#jobs").move_cursor(row=2)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.job)
        fields = text_of(pilot.app.screen.query_one("#fields", Static))
        assert re.search(r"^tries\s+0/1 \(0 retries left; 1 attempt in all\)", fields, re.M), fields
        assert re.search(rf"^dependents\s+{load} load waiting", fields, re.M), fields

    drive(store, scenario)


def test_tui_schedules_read_as_schedule_list_does(cli, store):
    cli.ok("schedule", "add", "once", "--at", "2099-01-01T00:00", "--tz", "UTC", "--", "true")
    cli.ok("schedule", "add", "nightly", "--cron", "0 3 * * *", "--tz", "Asia/Tokyo", "--", "true")
    fire_once(store, "once", time.time())

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await pilot.press("s")
        await until(pilot, lambda: isinstance(pilot.app.screen, SchedulesScreen) and pilot.app.screen.views)
        table = pilot.app.screen.query_one("#schedules")
        assert table.get_cell("once", "state").plain == "fired"
        assert re.fullmatch(r"\d\d-\d\d 03:00 JST in .*", table.get_cell("nightly", "next").plain)

    drive(store, scenario)


def test_json_contract_keeps_its_fields(cli, store):
    """Only fields are added: what scripts read stays as documented."""
    job_id = cli.submit("--retries", "2", "--", "true")
    job = cli.job(job_id)
    assert {"attempts", "max_retries", "retries_left", "duration", "after", "dependents"} <= set(job)
    assert json.loads(json.dumps(job))["tries_allowed"] == 3
