"""`jobrunner tui`: the real app driven by Pilot against a real SQLite file.

Each test changes the database the way the CLI or a daemon would (or presses the keys a
user would) and waits, with a deadline, until the screen shows it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Log, Static

from jobrunner.errors import StoreError
from jobrunner.store import pages, queries
from jobrunner.tui.screens.dead import DeadLetterScreen
from jobrunner.tui.screens.detail import DetailScreen
from jobrunner.tui.screens.dialogs import ConfirmDialog
from tests.conftest import sql
from tests.tuihelpers import cell, drive, shown, table, text_of, until


def status_of(store: Any, job_id: int) -> str:
    return queries.get_job(store, job_id)["status"]


def make_dead(store: Any, job_id: int, error: str) -> None:
    sql(store,
        "UPDATE job SET status='dead', attempts=1, finished_at=?, error=? WHERE id=?",
        (time.time() - 5, error, job_id),
    )


def test_rows_appear_and_follow_store_writes_in_place(cli, store):
    ids = [cli.submit("--name", f"job{i}", "--", "true") for i in range(3)]

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: shown(pilot) == ids[::-1])
        table(pilot).move_cursor(row=1)  # the middle job
        sql(store,
            "UPDATE job SET status='running', attempts=1, started_at=?, progress=0.5, "
            "progress_message='halfway' WHERE id=?",
            (time.time(), ids[1]),
        )
        await until(pilot, lambda: "50% halfway" in cell(pilot, ids[1], "progress"))
        assert cell(pilot, ids[1], "status") == "running"
        assert table(pilot).cursor_row == 1
        # A new job arrives on top: the cursor stays on the job it was on.
        newest = cli.submit("--name", "newest", "--", "true")
        await until(pilot, lambda: shown(pilot)[:1] == [newest])
        assert table(pilot).selected["id"] == ids[1]
        header = text_of(pilot.app.screen.query_one("#header", Static))
        assert "running 1" in header and "queued 3" in header and "no daemon" in header

    drive(store, scenario)


def test_workers_busy_follows_the_running_jobs_not_the_last_heartbeat(cli, store):
    """A daemon's heartbeat row says how busy it was at its last beat (seconds ago): the
    header counts the jobs running now."""
    from jobrunner.store import runs

    runs.register_daemon(store, "vm:1:abc", "vm", 1, "0.1.0", 2, [], time.time())  # busy 0
    job = cli.submit("--", "true")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        header = lambda: text_of(pilot.app.screen.query_one("#header", Static))  # noqa: E731
        await until(pilot, lambda: "0/2 workers busy" in header())
        sql(store,
            "UPDATE job SET status='running', attempts=1, started_at=? WHERE id=?", (time.time(), job)
        )
        await until(pilot, lambda: "1/2 workers busy" in header())

    drive(store, scenario)


def test_only_the_visible_page_is_loaded(cli, store, tmp_path):
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("".join(json.dumps({"command": ["true"], "name": f"n{i}"}) + "\n" for i in range(150)))
    cli.ok("submit", "--from-file", str(lines))

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: shown(pilot)[:1] == [150])
        rows = len(shown(pilot))
        assert 10 < rows < 40  # what fits, not all 150
        await pilot.press("end")
        await until(pilot, lambda: shown(pilot)[-1:] == [1])
        assert table(pilot).cursor_row == rows - 1
        await pilot.press("home")
        await until(pilot, lambda: shown(pilot)[:1] == [150])
        table(pilot).move_cursor(row=rows - 1)
        await pilot.press("down")  # past the bottom edge: the window moves by one job
        await until(pilot, lambda: shown(pilot)[:1] == [149])
        await pilot.press("pagedown")
        await until(pilot, lambda: shown(pilot)[:1] == [149 - rows])

    drive(store, scenario)


def test_filters_and_search_narrow_the_table(cli, store):
    alpha = cli.submit("--name", "alpha-report", "-q", "reports", "--tag", "monthly", "--", "true")
    beta = cli.submit("--name", "beta", "-q", "mail", "--", "echo", "hello")
    gamma = cli.submit("--name", "gamma", "-q", "mail", "--tag", "monthly", "--", "true")
    make_dead(store, beta, "exit code 1")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: shown(pilot) == [gamma, beta, alpha])
        await pilot.press("7")  # dead only
        await until(pilot, lambda: shown(pilot) == [beta])
        await pilot.press("1")  # and queued
        await until(pilot, lambda: shown(pilot) == [gamma, beta, alpha])
        await pilot.press("0", "slash", *"cho")  # the command's text; c is a key of the table
        await until(pilot, lambda: shown(pilot) == [beta])
        assert pilot.app.screen.query_one("#search", Input).value == "cho"
        await pilot.press("enter", "x")
        await until(pilot, lambda: shown(pilot) == [gamma, beta, alpha])
        await pilot.press("f", "tab")  # the queue select, then the tag box
        assert pilot.app.focused is pilot.app.screen.query_one("#tag", Input)
        pilot.app.focused.value = "monthly"
        await until(pilot, lambda: shown(pilot) == [gamma, alpha])
        await pilot.press("escape", "x")
        await until(pilot, lambda: shown(pilot) == [gamma, beta, alpha])
        pilot.app.screen.query_one("#queue").value = "mail"
        await until(pilot, lambda: shown(pilot) == [gamma, beta])
        pilot.app.screen.query_one("#search", Input).value = "no-such-job"
        await until(pilot, lambda: shown(pilot) == [] and pilot.app.screen.query_one("#empty").display)

    drive(store, scenario)


def test_detail_shows_history_and_follows_the_log(cli, store, tmp_path):
    job_id = cli.submit("--name", "builder", "--", "make", "all")
    log_path = tmp_path / "job.log"
    log_path.write_text("".join(f"line {n}\n" for n in range(1, 6)))
    sql(store,
        "UPDATE job SET status='running', attempts=1, started_at=?, log_path=? WHERE id=?",
        (time.time(), str(log_path), job_id),
    )

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: shown(pilot) == [job_id])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen))
        log = pilot.app.screen.query_one(Log)
        await until(pilot, lambda: list(log.lines) == [f"line {n}" for n in range(1, 6)])
        fields = text_of(pilot.app.screen.query_one("#fields", Static))
        assert "make all" in fields and "submitted" in fields and str(log_path) in fields
        with log_path.open("a") as handle:
            handle.write("line 6\nhalf a li")
        await until(pilot, lambda: log.lines[-2:] == ["line 6", "half a li"])  # the partial line, live
        with log_path.open("a") as handle:
            handle.write("ne\n")
        await until(pilot, lambda: log.lines[-1:] == ["half a line"])
        await pilot.press("escape")
        await until(pilot, lambda: shown(pilot) == [job_id])

    drive(store, scenario)


def test_dead_letters_retry_one_then_all(cli, store):
    ids = [cli.submit("--name", f"fails{i}", "--", "false") for i in range(3)]
    for job_id in ids:
        make_dead(store, job_id, f"exit code 1 from {job_id}")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await pilot.press("d")
        await until(pilot, lambda: isinstance(pilot.app.screen, DeadLetterScreen))
        await until(pilot, lambda: shown(pilot) == ids[::-1])
        assert cell(pilot, ids[2], "error") == f"exit code 1 from {ids[2]}"
        await pilot.press("r")  # the selected (newest) one
        await until(pilot, lambda: status_of(store, ids[2]) == "queued")
        await until(pilot, lambda: shown(pilot) == ids[1::-1])
        await pilot.press("a")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: all(status_of(store, i) == "queued" for i in ids))
        await until(pilot, lambda: shown(pilot) == [])

    drive(store, scenario)


def test_cancel_asks_first(cli, store):
    job_id = cli.submit("--", "sleep", "60")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: shown(pilot) == [job_id])
        await pilot.press("c")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(pilot.app.screen, ConfirmDialog))
        assert status_of(store, job_id) == "queued"
        await pilot.press("c", "y")
        await until(pilot, lambda: status_of(store, job_id) == "cancelled")
        await until(pilot, lambda: cell(pilot, job_id, "status") == "cancelled")
        await pilot.press("c")  # already finished: said, not asked
        await until(pilot, lambda: any("already cancelled" in n for n in notes))
        await pilot.press("r")
        await until(pilot, lambda: status_of(store, job_id) == "queued")

    drive(store, scenario)


def test_purge_is_guarded_by_a_confirmation(cli, store):
    ids = [cli.submit("--", "false") for _ in range(2)]
    keep = cli.submit("--", "true")
    for job_id in ids:
        make_dead(store, job_id, "boom")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await pilot.press("d")
        await until(pilot, lambda: shown(pilot) == ids[::-1])
        await pilot.press("P")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(pilot.app.screen, DeadLetterScreen))
        assert queries.count_jobs(store) == 3
        await pilot.press("P", "y")
        await until(pilot, lambda: queries.count_jobs(store) == 1)
        await until(pilot, lambda: shown(pilot) == [])
        assert status_of(store, keep) == "queued"

    drive(store, scenario)


def test_pause_resume_and_errors_are_shown_not_raised(cli, store, monkeypatch):
    cli.submit("-q", "emails", "--", "true")
    working_counts = pages.status_counts  # what every refresh reads first

    def locked(store: Any, up_to: int = 0) -> dict:
        raise StoreError("database jobs.db is locked")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: len(shown(pilot)) == 1)
        await pilot.press("p")
        await until(pilot, lambda: queries.paused_queues(store) == ["emails"])
        await until(
            pilot, lambda: "paused queues: emails" in text_of(pilot.app.screen.query_one("#header", Static))
        )
        await pilot.press("p")
        await until(pilot, lambda: queries.paused_queues(store) == [])
        await pilot.press("r")  # a queued job cannot be retried: a note, not a crash
        await until(pilot, lambda: any(n.startswith("nothing retried") for n in notes))
        header = pilot.app.screen.query_one("#header", Static)
        monkeypatch.setattr(pages, "status_counts", locked)  # the database fails under the running app
        await until(pilot, lambda: "database error: database jobs.db is locked" in text_of(header))
        monkeypatch.setattr(pages, "status_counts", working_counts)
        await until(pilot, lambda: "queued 1" in text_of(header))
        assert pilot.app.is_running

    drive(store, scenario)


@pytest.mark.sqlite_only(reason="a missing or garbage SQLite file")
@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        ("missing", 2, "no database at"),
        ("garbage", 1, "not a usable jobrunner database"),
    ],
)
def test_unusable_database_is_one_line_not_a_traceback(cli, tmp_path: Path, setup, code, words):
    path = tmp_path / "other.db"
    if setup == "garbage":
        path.write_bytes(b"this is not sqlite" * 100)
    result = cli("--db", str(path), "tui")
    assert result.exit_code == code
    assert words in result.stderr and "Traceback" not in result.stderr
    assert setup == "garbage" or not path.exists()  # a typo does not create a database


def test_tui_imports_neither_cli_nor_daemon_and_cli_does_not_load_textual():
    """Imports point one way (DESIGN.md), and `jobrunner --help` stays fast."""
    import ast
    import subprocess
    import sys

    package = Path(__file__).parent.parent / "jobrunner" / "tui"
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.startswith(("jobrunner.cli", "jobrunner.daemon")) for n in names), path
    present = Path(__file__).parent.parent / "jobrunner" / "present.py"  # shared by CLI and TUI
    for node in ast.walk(ast.parse(present.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jobrunner"):
            assert node.module.startswith("jobrunner.domain"), node.module
    check = "import sys, jobrunner.cli.app; assert 'textual' not in sys.modules, 'textual loaded'"
    subprocess.run([sys.executable, "-c", check], check=True)


def test_counts_past_the_cap_say_over_and_end_reads_from_the_end(cli, store, tmp_path, monkeypatch):
    """Counting stops at a cap (10,000; 5 here): the header says ">5" and "over 5", and End shows the
    oldest jobs without a count of every job, the window counting rows from the end."""
    from jobrunner.tui import data

    monkeypatch.setattr(data, "COUNT_CAP", 5)
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("".join(json.dumps({"command": ["true"], "name": f"n{i}"}) + "\n" for i in range(60)))
    cli.ok("submit", "--from-file", str(lines))
    make_dead(store, 3, "exit code 1")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        header = lambda: text_of(pilot.app.screen.query_one("#header", Static))  # noqa: E731
        await until(pilot, lambda: shown(pilot)[:1] == [60])
        rows = len(shown(pilot))
        assert "queued >5" in header() and "dead 1" in header() and "total over 5" in header()
        assert f"rows 1–{rows} of over 5" in header()
        await pilot.press("end")
        await until(pilot, lambda: shown(pilot)[-1:] == [1])
        assert f"rows 1–{rows} from the end of over 5" in header()
        assert table(pilot).cursor_row == rows - 1
        await pilot.press("pageup")
        await until(pilot, lambda: shown(pilot)[-1:] == [1 + rows])
        assert f"rows {rows + 1}–{2 * rows} from the end of over 5" in header()
        await pilot.press("home")
        await until(pilot, lambda: shown(pilot)[:1] == [60])
        await pilot.press("7")  # one dead job: an exact count again
        await until(pilot, lambda: shown(pilot) == [3])
        assert "rows 1–1 of 1" in header()

    drive(store, scenario)
