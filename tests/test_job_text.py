"""Text a job provides reaches a person through one place, present.visible (issue 15, item 2).

A job's name, error, exception message or progress message holding `\\e]0;T\\a` (retitle the
terminal) or `\\e[2J` (clear it) never reaches a terminal raw: `list`, `show`, the TUI's
tables and detail fields, and notifier texts show control characters as `\\x1b`; a line
rewritten with `\\r` shows its last state; invalid UTF-8 shows as U+FFFD; cells are cut to
their width with an ellipsis. The raw text stays in the database (`show --json`).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from jobrunner.present import fit, one_line, visible
from tests.conftest import run_on_pty, sql, wait_until

TITLE, CLEAR = "\x1b]0;T\x07", "\x1b[2J"
EVIL = f"evil{TITLE}{CLEAR}name"
SHOWN = "evil\\x1b]0;T\\x07\\x1b[2Jname"
COLOURS = re.compile(rb"\x1b\[[0-9;]*m")  # what rich itself writes on a terminal: colours only


def report_then_wait(marker: str, job=None) -> str:
    """A job whose progress message holds escapes, rewritten with \\r like a progress bar."""
    job.report(0.5, f"10%\r50% {EVIL}")
    deadline = time.monotonic() + 60
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "done"


# ---------------------------------------------------------------- the one place
@pytest.mark.parametrize(
    ("text", "lines", "shown"),
    [
        (EVIL, True, SHOWN),
        ("a\x9bb\x7fc\x00", True, "a\\x9bb\\x7fc\\x00"),  # C1 CSI, DEL, NUL
        ("\u202eevil", True, "\\u202eevil"),  # a bidi override reorders what follows
        ("one\n\ttwo", True, "one\n\ttwo"),
        ("one\n\ttwo", False, "one\\n\\ttwo"),
        ("10%\r50%\r100%", True, "100%"),  # a progress bar: its last state
        ("bar 1\rbar 2\r\nnext\r", True, "bar 2\nnext"),
        ("a\rb", False, "a\\rb"),  # one log line hides nothing
        (b"ok \xff\xfe", True, "ok \ufffd\ufffd"),
        ("lone \udcff", True, "lone \ufffd"),
        (None, True, ""),
    ],
)
def test_visible(text, lines, shown):
    assert visible(text, lines=lines) == shown
    assert visible(shown, lines=lines) == shown  # shown text shows as it is


def test_width_is_cut_in_terminal_cells_with_an_ellipsis():
    assert visible("abcdef", width=4) == "abc…"
    assert visible("abcd", width=4) == "abcd"
    assert visible("\x1b[2J", width=5) == "\\x1b…"  # escaped first, then cut
    wide = fit("日本語のテキスト", 7)
    from rich.cells import cell_len

    assert wide.endswith("…") and cell_len(wide) <= 7
    assert one_line("first\nsecond", 20) == "first …"
    assert one_line("first\r\nsecond", None) == "first ⏎ second"
    assert one_line(f"{EVIL}\nmore", 12) == "evil\\x1b]0;…"


# ---------------------------------------------------------------- the CLI on a real terminal
def on_pty(db: Path, *args: str) -> bytes:
    env = {**os.environ, "JOBRUNNER_DB": str(db), "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    out, code = run_on_pty([sys.executable, "-m", "jobrunner", *args], env, columns=200)
    assert code == 0, out
    return out


def assert_nothing_raw(out: bytes) -> None:
    """No escape sequence but rich's own colours, no bell: nothing from a job's text."""
    assert TITLE.encode() not in out and CLEAR.encode() not in out
    assert b"\x07" not in out and b"\x9b" not in out
    assert b"\x1b" not in COLOURS.sub(b"", out), out


def test_list_and_show_on_a_terminal_show_job_text_escaped(cli, daemon, db_path, tmp_path):
    daemon.start("--workers", "2")
    marker = tmp_path / "go-on"
    dead = cli.submit("--name", EVIL, "--retries", "0", "--call", "tests.jobfuncs:fail_with",
                      "--arg", "kind=runtime", "--arg", f"message={EVIL}")  # fmt: skip
    python = cli.submit(
        "--name", EVIL, "--call", "tests.test_job_text:report_then_wait", "--arg", f"marker={marker}"
    )
    shell = cli.submit(
        "--name", EVIL, "--", "sh", "-c",
        f"jobrunner progress 0.25 \"$(printf 'x\\033]0;T\\007\\033[2Jy')\"; while [ ! -e {marker} ]; do sleep 0.02; done",
    )  # fmt: skip
    wait_until(lambda: cli.job(dead)["status"] == "dead", timeout=30)
    wait_until(lambda: cli.job(python)["progress"] == 0.5 and cli.job(shell)["progress"] == 0.25, timeout=30)
    # stored as the job gave it: `show --json` and `logs` keep the raw text for scripts
    assert cli.job(dead)["error"] == f"RuntimeError: {EVIL}"
    assert cli.job(python)["progress_message"] == f"10%\r50% {EVIL}"
    assert cli.job(shell)["progress_message"] == f"x{TITLE}{CLEAR}y"

    listing = on_pty(db_path, "list")
    assert_nothing_raw(listing)
    text = listing.decode()
    # NAME and PROGRESS give way to the rest on a terminal: cut, with an ellipsis
    assert "evil\\x1b]0;T" in text and "50% 50% evil\\x1b]0" in text and "x\\x1b]0;T\\x07" in text
    assert "10%" not in text  # the \r-rewritten message shows its last state
    assert f"RuntimeError: {SHOWN}" in text
    for job in (dead, python, shell):
        shown = on_pty(db_path, "show", str(job))
        assert_nothing_raw(shown)
        assert SHOWN in shown.decode()
    assert f"RuntimeError: {SHOWN}" in on_pty(db_path, "show", str(dead)).decode()
    for args in (("list", "--json"), ("show", str(python), "--json")):
        assert_nothing_raw(on_pty(db_path, *args))  # JSON escapes them: the same strings
    marker.touch()
    wait_until(lambda: cli.job(python)["status"] == cli.job(shell)["status"] == "succeeded", timeout=30)


# ---------------------------------------------------------------- the TUI's tables and fields
def test_tui_tables_and_detail_fields_show_job_text_escaped(cli, store):
    from textual.pilot import Pilot
    from textual.widgets import Static

    from jobrunner.tui.screens.dead import DeadLetterScreen
    from jobrunner.tui.screens.detail import DetailScreen
    from tests.tuihelpers import cell, drive, shown, text_of, until

    running = cli.submit("--name", EVIL, "--", "true")
    dead = cli.submit("--name", EVIL, "--", "false")
    with store.write():
        sql(store,
            "UPDATE job SET status='running', attempts=1, started_at=?, progress=0.5, progress_message=? WHERE id=?",
            (time.time(), f"10%\r50% {EVIL}", running),
        )
        sql(store,
            "UPDATE job SET status='dead', attempts=1, finished_at=?, error=? WHERE id=?",
            (time.time(), f"RuntimeError: {EVIL}", dead),
        )

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        await until(pilot, lambda: sorted(shown(pilot)) == [running, dead])
        name, progress = cell(pilot, running, "name"), cell(pilot, running, "progress")
        assert "\x1b" not in name + progress and name.startswith("evil\\x1b")
        assert "50% evil\\x1" in progress and "10%" not in progress
        await pilot.press("d")
        await until(pilot, lambda: isinstance(pilot.app.screen, DeadLetterScreen))
        await until(pilot, lambda: shown(pilot) == [dead])
        error = cell(pilot, dead, "error")
        assert "\x1b" not in error + cell(pilot, dead, "name") and error.startswith(
            "RuntimeError: evil\\x1b]0;T\\x07"
        )
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen))
        fields = pilot.app.screen.query_one("#fields", Static)
        await until(pilot, lambda: SHOWN in text_of(fields))
        assert "\x1b" not in text_of(fields) and "\x07" not in text_of(fields)

    drive(store, scenario)


# ---------------------------------------------------------------- notifier texts
def test_mail_text_shows_job_text_escaped_and_json_keeps_it():
    from jobrunner.daemon.notify import EmailNotifier, job_json

    job = {"id": 7, "name": EVIL + "\nBcc: someone", "status": "dead", "queue": "default", "attempts": 1,
           "error": f"RuntimeError: {EVIL}\x9b", "exit_code": None, "env": {}}  # fmt: skip
    mail = EmailNotifier(name="ops", sender="jr@example.com", to=("me@example.com",))
    message = mail.message("dead", job)
    text = message.as_string()
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert message["Subject"] == f"jobrunner: job 7 dead: {SHOWN}\\nBcc: someone"
    body = message.get_content()
    assert f"Job 7 ({SHOWN}\\nBcc: someone) is dead." in body and f"error: RuntimeError: {SHOWN}\\x9b" in body
    payload = job_json(job)
    assert b"\x1b" not in payload and b"\x9b" not in payload
    assert json.loads(payload) == job  # machines get the job's own text back
