"""The TUI's rough edges, seen in a browser (issue 17), and the hosts it names (issue 16):
header lines that never wrap and read with their separators, a history whose columns stay
apart, panes sized by their content, progress messages as wide as the screen allows, and the
host of every daemon and of each job's attempts."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from textual.containers import VerticalScroll
from textual.pilot import Pilot
from textual.widgets import Label, Static

from jobrunner.present import attempt_hosts, owner_host
from jobrunner.store import runs
from jobrunner.tui.logview import LogView
from jobrunner.tui.screens.detail import DetailScreen
from jobrunner.tui.widgets.status_header import StatusHeader
from tests.conftest import sql
from tests.tuihelpers import cell, drive, shown, text_of, until

MESSAGE = "processing shard 17 of 40 from s3://bucket/prefix/part-00017.parquet into analytics.daily_rollup (rows 1,234,567)"


def header_lines(pilot: Pilot) -> list[str]:
    return pilot.app.screen.query_one(StatusHeader).content.plain.split("\n")


def add_event(store: Any, job_id: int, at: float, attempt: int, old: str | None, new: str, message: str,
              details: dict | None = None) -> None:  # fmt: skip
    sql(store,
        "INSERT INTO event (job_id, at, attempt, from_status, to_status, message, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job_id, at, attempt, old, new, message, json.dumps(details) if details else None),
    )  # fmt: skip


def run_on(store: Any, job_id: int, owner: str, **extra: Any) -> None:
    """The job running, claimed by `owner` (host:pid:random) as a daemon claims it."""
    values = {"status": "running", "attempts": 1, "started_at": time.time(), "lease_owner": owner,
              "lease_until": time.time() + 60, **extra}  # fmt: skip
    sql(store, f"UPDATE job SET {', '.join(f'{k}=?' for k in values)} WHERE id=?", [*values.values(), job_id])
    add_event(store, job_id, time.time(), 1, "queued", "running", f"attempt 1 started by {owner}")


async def open_detail(pilot: Pilot, job_id: int) -> DetailScreen:
    await until(pilot, lambda: job_id in shown(pilot))
    pilot.app.screen.query_one("#jobs").move_cursor(row=shown(pilot).index(job_id))
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.job)
    return pilot.app.screen


def test_header_reads_with_separators_and_never_wraps(cli, store):
    """`○ no daemon · jobs wait until one runs`, and at any width three lines that each fit: a
    shorter form first, an ellipsis last, never a word pushed onto the next line."""
    cli.submit("--", "true")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: header_lines(pilot)[0].startswith("jobrunner  ○ no daemon"))
        assert header_lines(pilot)[0] == "jobrunner  ○ no daemon · jobs wait until one runs  0 running  ·  1 queued  ·  0 finished/min"
        for width, first in ((80, "jobrunner  ○ no daemon  0 running  ·  1 queued  ·  0 finished/min"),
                             (60, "jobrunner  ○ no daemon  0 running · 1 queued"),
                             (40, "○ no daemon  0 running · 1 queued")):  # fmt: skip
            await pilot.resize_terminal(width, 24)
            await until(pilot, lambda first=first: header_lines(pilot)[0] == first)
            header = pilot.app.screen.query_one(StatusHeader)
            drawn = [header.render_line(y).text.strip() for y in range(3)]  # what the screen shows
            assert drawn[0] == first and drawn[2] == "total 1  ·  rows 1–1 of 1", drawn
            assert not any(line.endswith("·") for line in drawn), drawn
        assert drawn[1] == "1 queued 1 2 sched 0 3 wait 0 4 run 0…"  # at 40 columns: cut, not wrapped

    drive(store, scenario)


def test_header_and_table_name_the_hosts(cli, store):
    """A daemon's host in the header; a running job's host (from its lease, no query per row) in
    the HOST column, where a wide screen shows it."""
    runs.register_daemon(store, "build-7:4242:abc123", "build-7", 4242, "0.1.0", 2, [], time.time())
    running, queued = cli.submit("--name", "busy", "--", "true"), cli.submit("--", "true")
    run_on(store, running, "build-7:4242:abc123")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: cell(pilot, running, "host") == "build-7")
        assert cell(pilot, queued, "host") == ""
        assert "● daemon up · 1/2 workers busy · pid 4242 on build-7" in header_lines(pilot)[0]
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: "● daemon up · 1/2 busy on build-7" in header_lines(pilot)[0])

    drive(store, scenario, size=(160, 30))


def test_progress_takes_the_room_a_wide_screen_has_and_the_detail_shows_it_whole(cli, store):
    job_id = cli.submit("--name", "loader", "--", "true")
    run_on(store, job_id, "vm:1:abc", progress=0.42, progress_message=MESSAGE)

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: "42%" in cell(pilot, job_id, "progress"))
        narrow = cell(pilot, job_id, "progress")
        await pilot.resize_terminal(200, 30)
        await until(pilot, lambda: len(cell(pilot, job_id, "progress")) > len(narrow) + 30)
        assert "s3://bucket/prefix/part-00017.parquet" in cell(pilot, job_id, "progress")
        detail = await open_detail(pilot, job_id)
        fields = " ".join(text_of(detail.query_one("#fields", Static)).split())  # the lines it wrapped into, joined
        assert MESSAGE in fields

    drive(store, scenario)


def test_an_id_past_a_million_is_shown_whole_and_the_table_still_fits(cli, store):
    """At a million jobs an id has seven digits: the id column widens to it (it used to read
    `10000…`), the progress column gives up the room, and nothing scrolls sideways."""
    small = cli.submit("--", "true")
    if store.is_sqlite:  # ids go on past the floor (a purge's), on PostgreSQL past the sequence
        sql(store, "INSERT OR REPLACE INTO meta (key, value) VALUES ('job_id_floor', '1234566')")
    else:
        sql(store, "SELECT setval(pg_get_serial_sequence('job', 'id'), 1234566)")
    big = cli.submit("--name", "late", "--", "true")
    assert big == 1234567

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: cell(pilot, big, "id") == "1234567")
        assert cell(pilot, small, "id").strip() == str(small)
        table = pilot.app.screen.query_one("#jobs")
        assert table.virtual_size.width <= table.scrollable_content_region.width

    drive(store, scenario)


def test_history_columns_stay_apart_and_the_hosts_of_the_attempts_are_named(cli, store):
    job_id = cli.submit("--name", "month-report", "--retries", "2", "--", "make", "report")
    start = time.time() - 60
    for attempt, host in ((1, "h1"), (2, "h1"), (3, "db-2")):
        add_event(store, job_id, start + attempt, attempt, "queued", "running", f"attempt {attempt} started by {host}:9:abc")
        failed = "dead" if attempt == 3 else "retrying"
        add_event(store, job_id, start + attempt + 0.5, attempt, "running", failed, "KeyError: 'month'",
                  {"traceback": "Traceback (most recent call last):\nKeyError: 'month'"})  # fmt: skip
    sql(store, "UPDATE job SET status='dead', attempts=3, error=?, finished_at=? WHERE id=?",
        ("KeyError: 'month'", start + 4, job_id))  # fmt: skip

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        detail = await open_detail(pilot, job_id)
        await until(pilot, lambda: "history" in text_of(detail.query_one("#fields", Static)))
        fields = text_of(detail.query_one("#fields", Static))
        assert re.search(r"\bqueued\s+│\s+submitted", fields), fields
        assert re.search(r"running → dead\s+│\s+KeyError: 'month'", fields), fields
        assert re.search(r"hosts\s+attempts 1–2 on h1, 3 on db-2 *\n", fields), fields

    drive(store, scenario)


def test_attempt_hosts_from_the_history_and_the_lease():
    started = lambda n, owner: {"to": "running", "message": f"attempt {n} started by {owner}"}  # noqa: E731
    job = {"status": "running", "attempts": 2, "lease_owner": "web-1:77:f00"}
    assert attempt_hosts(job, [started(1, "web-1:70:aaa")]) == "attempts 1–2 on web-1 (running: daemon pid 77)"
    assert attempt_hosts({**job, "status": "queued", "attempts": 0}, []) is None
    assert owner_host("a.example:1:ff") == "a.example" and owner_host(None) == ""


def test_detail_panes_are_sized_by_their_content(cli, store, tmp_path):
    """Fields and history as tall as they are, the log the rest; an empty log keeps a line when
    the fields need the room, a long log a third of it."""
    quiet = cli.submit("--name", "quiet", "--", "true")
    busy = cli.submit("--name", "busy", "--", "true")
    for n in range(30):
        add_event(store, busy, time.time() - 100 + n, n + 1, "queued", "running", f"attempt {n + 1} started by vm:1:abc")
    log_path = tmp_path / "busy.log"
    log_path.write_text("".join(f"line {n}\n" for n in range(200)))
    sql(store, "UPDATE job SET log_path=? WHERE id=?", (str(log_path), busy))
    room = 40 - 3  # the title, the log's title and the footer

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        detail = await open_detail(pilot, quiet)
        info, log = detail.query_one("#info", VerticalScroll), detail.query_one(LogView)
        await until(pilot, lambda: info.size.height and info.size.height == info.virtual_size.height)
        assert info.size.height < room - 5  # all of it in view, not scrolled in a cramped pane
        assert "none yet" in detail.query_one("#log-title", Label).content.plain
        await pilot.press("escape")
        detail = await open_detail(pilot, busy)
        info, log = detail.query_one("#info", VerticalScroll), detail.query_one(LogView)
        await until(pilot, lambda: log.line_count == 200)
        await until(pilot, lambda: info.size.height == room - room // 3)
        assert log.size.height == room // 3 and info.virtual_size.height > info.size.height  # the rest scrolls

    drive(store, scenario, size=(120, 40))
