"""The detail screen's log as a person sees it, whatever a job prints (issue 15).

The real app over a real SQLite file and a real log file that the test appends to the way a
job would; every wait is a condition with a deadline. What is checked is what the view holds
(LogView.lines, the unfinished line last) and what it draws (its rows on screen).
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Label

from jobrunner.domain.jobspec import build_spec
from jobrunner.store import repo
from jobrunner.tui.app import JobrunnerApp
from jobrunner.tui.logtail import LINE_BYTES, LINES_KEPT, TAIL_BYTES, LogTail, size_text
from jobrunner.tui.logview import CHARS_KEPT, LogView
from jobrunner.tui.screens.detail import DetailScreen
from tests.conftest import sql
from tests.tuihelpers import drive, shown, text_of, until


def job_with_log(cli: Any, store: Any, log: Path, content: bytes = b"", status: str = "running") -> int:
    log.write_bytes(content)
    job_id = cli.submit("--name", "printer", "--", "sh", "-c", "./print-things")
    sql(store,
        "UPDATE job SET status=?, attempts=1, started_at=?, log_path=? WHERE id=?",
        (status, time.time(), str(log), job_id),
    )
    return job_id


def append(log: Path, data: bytes) -> None:
    with log.open("ab") as handle:
        handle.write(data)


async def open_log(pilot: Pilot, job_id: int) -> LogView:
    await until(pilot, lambda: shown(pilot) == [job_id])
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen))
    return pilot.app.screen.query_one(LogView)


def on_screen(log: LogView) -> list[str]:
    """The log's rows as drawn, top to bottom."""
    return [log.render_line(y).text.rstrip() for y in range(log.scrollable_content_region.height)]


def log_title(pilot: Pilot) -> str:
    return text_of(pilot.app.screen.query_one("#log-title", Label))


MARKER = r"… [0-9.]+ (MB|KB) skipped: jobrunner logs %d shows all"


def skipped(job_id: int, count: int) -> str:
    return f"… {size_text(count)} skipped: jobrunner logs {job_id} shows all"


def test_the_live_log_keeps_following_past_ten_thousand_lines(cli, store, tmp_path):
    """Issue 15 item 1: 9,950 lines, then ticks: the latest tick shows, and `f` follows again."""
    log = tmp_path / "job.log"
    job_id = job_with_log(cli, store, log, "".join(f"{n}\n" for n in range(1, 9951)).encode())

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        view = await open_log(pilot, job_id)
        await until(pilot, lambda: view.lines[-1:] == ["9950"])
        for last in (50, 100, 150, 200):  # past 10,000 lines in all, over several refreshes
            append(log, "".join(f"tick {n}\n" for n in range(last - 49, last + 1)).encode())
            await until(pilot, lambda last=last: on_screen(view)[-1] == f"tick {last}")
        assert len(view.lines) == LINES_KEPT + 1
        assert view.lines[0] == f"… earlier lines not kept here: jobrunner logs {job_id} shows all"
        assert "following" in log_title(pilot)
        # Scrolled up to read: new lines arrive without moving the view, until `f`.
        view.scroll_home(animate=False, immediate=True)
        append(log, b"tick 201\n")
        await until(
            pilot, lambda: view.lines[-1:] == ["tick 201"] and "paused: f follows" in log_title(pilot)
        )
        assert "tick 201" not in on_screen(view)
        await pilot.press("f")
        await until(pilot, lambda: on_screen(view)[-1] == "tick 201")
        append(log, b"tick 202\n")
        await until(pilot, lambda: on_screen(view)[-1] == "tick 202" and "following" in log_title(pilot))

    drive(store, scenario)


def test_escape_sequences_are_shown_never_run(cli, store, tmp_path):
    """Item 2: a clear-screen, a retitle, C1 controls and invalid UTF-8 read as text."""
    log = tmp_path / "job.log"
    content = (
        b"\x1b[2J\x1b[Hcleared?\n"
        b"\x1b]0;TITLE\x07retitled?\n"
        b"\xc2\x9b31m C1 CSI, \xc2\x9d OSC\n"
        b"bad \xff\xfe utf-8 \xe2\x82\n"
        b"tab\there, bell \x07, NUL \x00\n"
    )
    job_id = job_with_log(cli, store, log, content)

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        view = await open_log(pilot, job_id)
        expected = [
            "\\x1b[2J\\x1b[Hcleared?",
            "\\x1b]0;TITLE\\x07retitled?",
            "\\x9b31m C1 CSI, \\x9d OSC",
            "bad \ufffd\ufffd utf-8 \ufffd",
            "tab\there, bell \\x07, NUL \\x00",
        ]
        await until(pilot, lambda: list(view.lines) == expected)
        drawn = "\n".join(on_screen(view))
        assert "\\x1b]0;TITLE\\x07retitled?" in drawn and "tab     here" in drawn
        assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in drawn.replace("\n", ""))

    drive(store, scenario)


def test_a_writer_that_outruns_the_view_is_followed_at_its_end(cli, store, tmp_path):
    """Item 3: 20 MB at once is not read line by line: the view jumps to the end, with a marker."""
    log = tmp_path / "job.log"
    job_id = job_with_log(cli, store, log, b"start\n")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        view = await open_log(pilot, job_id)
        await until(pilot, lambda: list(view.lines) == ["start"])
        append(log, (b"x" * 99 + b"\n") * 200_000 + b"the end\n")
        await until(pilot, lambda: on_screen(view)[-1] == "the end")
        # The view may have looked while the 20 MB were still being written: a marker per jump.
        markers = [n for n, text in enumerate(view.lines) if re.fullmatch(MARKER % job_id, text)]
        assert view.lines[0] == "start" and markers[0] == 1
        between = [text for n, text in enumerate(view.lines[1:-1], 1) if n not in markers]
        assert "x" * 99 in between and all(re.fullmatch(r"x{1,99}( …)?", text) for text in between)
        assert len(view.lines) <= len(markers) * (TAIL_BYTES // 100 + 1) + 2

    drive(store, scenario)


def test_a_big_log_opens_at_its_end_under_a_marker(cli, store, tmp_path):
    log = tmp_path / "job.log"
    content = b"".join(b"line %d\n" % n for n in range(1, 300_001))
    job_id = job_with_log(cli, store, log, content, status="succeeded")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        view = await open_log(pilot, job_id)
        await until(pilot, lambda: view.lines[-1:] == ["line 300000"])
        assert view.lines[0] == skipped(job_id, len(content) - TAIL_BYTES)
        first = int(view.lines[1].split()[1])  # a whole line: the cut one above it is left out
        assert view.lines[1:] == [f"line {n}" for n in range(first, 300_001)]
        assert on_screen(view)[-1] == "line 300000"

    drive(store, scenario)


def test_a_giant_line_is_cut_with_a_marker(cli, store, tmp_path):
    """Item 3: a live line without a newline shows its first LINE_BYTES and how much more;
    past a skip, the latest part of it."""
    log = tmp_path / "job.log"
    job_id = job_with_log(cli, store, log, b"before\n")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        view = await open_log(pilot, job_id)
        await until(pilot, lambda: list(view.lines) == ["before"])
        head = "y" * LINE_BYTES
        for written in (300_000, 600_000):  # growing, at a pace the view keeps up with
            append(log, b"y" * 300_000)
            await until(
                pilot,
                lambda w=written: (
                    view.lines[-1:] == [f"{head} … {size_text(w - LINE_BYTES)} more in this line"]
                ),
            )
        append(log, b"y" * 49_400_000 + b"z" * 10)  # 50 MB in all, too fast to read
        await until(pilot, lambda: view.lines[-1:] == ["…" + "y" * (LINE_BYTES - 10) + "z" * 10])
        assert view.lines[-3] == f"{head} … {size_text(600_000 - LINE_BYTES)} more in this line …"
        assert re.fullmatch(MARKER % job_id, view.lines[-2])  # how much: test_skips_are_counted_exactly
        append(log, b"\nafter\n")
        await until(pilot, lambda: view.lines[-1:] == ["after"])
        assert view.lines[-2] == "…" + "y" * (LINE_BYTES - 10) + "z" * 10
        assert max(map(len, view.lines)) < LINE_BYTES + 100

    drive(store, scenario)


def test_a_finished_job_that_printed_one_50_mb_line_shows_its_end(cli, store, tmp_path):
    """Items 3 and 5: nothing empty, nothing huge: a marker, then the line's last part."""
    log = tmp_path / "job.log"
    job_id = job_with_log(cli, store, log, b"a" * 50_000_000 + b"the end", status="succeeded")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        view = await open_log(pilot, job_id)
        size = log.stat().st_size
        expected = [skipped(job_id, size - TAIL_BYTES), "…" + "a" * (LINE_BYTES - 7) + "the end"]
        await until(pilot, lambda: list(view.lines) == expected)
        rows = on_screen(view)
        assert rows[0] == expected[0] and rows[1].startswith("…aaaaaaaa")
        assert "job not running" in log_title(pilot)

    drive(store, scenario)


def test_a_last_line_without_newline_shows_live_then_whole(cli, store, tmp_path):
    """Item 4: the unfinished line shows as it stands, replaced as it grows, also at the end."""
    log = tmp_path / "job.log"
    job_id = job_with_log(cli, store, log, b"one\ntw")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        view = await open_log(pilot, job_id)
        await until(pilot, lambda: list(view.lines) == ["one", "tw"])
        append(log, b"o\nthr")
        await until(pilot, lambda: list(view.lines) == ["one", "two", "thr"])
        sql(store, "UPDATE job SET status='succeeded', finished_at=? WHERE id=?", (time.time(), job_id))
        append(log, b"ee")  # the job's last words, with no newline
        await until(pilot, lambda: list(view.lines) == ["one", "two", "three"])
        await until(pilot, lambda: "job not running" in log_title(pilot))
        assert on_screen(view)[:3] == ["one", "two", "three"]

    drive(store, scenario)


def test_carriage_return_bars_show_their_last_frame(cli, store, tmp_path):
    """Item 5: one line per bar, not per frame; a bar being drawn shows its latest frame."""
    log = tmp_path / "job.log"
    job_id = job_with_log(cli, store, log, b"frame 1\rframe 2\rframe 3\nwindows\r\ncurl  10%\rcurl  20%")

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        view = await open_log(pilot, job_id)
        await until(pilot, lambda: list(view.lines) == ["frame 3", "windows", "curl  20%"])
        append(log, b"\rcurl  6")
        await until(pilot, lambda: view.lines[-1:] == ["curl  6"])  # a frame being drawn
        append(log, b"0%\rcurl 100%\r")
        await until(pilot, lambda: view.lines[-1:] == ["curl 100%"])  # the bar's last state, not ""
        append(log, b"\ndone\n")
        await until(pilot, lambda: list(view.lines) == ["frame 3", "windows", "curl 100%", "done"])
        assert on_screen(view)[:4] == ["frame 3", "windows", "curl 100%", "done"]

    drive(store, scenario)


def test_memory_stays_bounded_however_long_the_lines(cli, store, tmp_path):
    """Item 3: past CHARS_KEPT the oldest lines go (a note says so), and no line is huge."""
    log = tmp_path / "job.log"
    job_id = job_with_log(cli, store, log)
    line = b"w" * 9_000 + b"\n"

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        view = await open_log(pilot, job_id)
        for batch in range(1, 5):  # 3.6 MB in all, each batch under the catch-up limit
            append(log, b"%d " % batch + line * 100)
            await until(
                pilot, lambda b=batch: len(view.lines) >= 100 and view.lines[-100].startswith(f"{b} ")
            )
        assert sum(map(len, view.lines)) <= CHARS_KEPT + LINE_BYTES + 100
        assert view.lines[0].startswith("… earlier lines not kept here")
        assert view.lines[-1] == f"{'w' * LINE_BYTES} … {size_text(9_000 - LINE_BYTES)} more in this line"

    drive(store, scenario)


def test_the_log_is_read_off_the_ui_thread(cli, store, tmp_path, monkeypatch):
    log = tmp_path / "job.log"
    job_id = job_with_log(cli, store, log, b"hello\n")
    readers: set[int] = set()
    read = LogTail.read

    def spy(self: LogTail) -> Any:
        readers.add(threading.get_ident())
        return read(self)

    monkeypatch.setattr(LogTail, "read", spy)

    async def scenario(pilot: Pilot, notes: list[str]) -> None:
        view = await open_log(pilot, job_id)
        await until(pilot, lambda: list(view.lines) == ["hello"])
        assert readers and threading.get_ident() not in readers

    drive(store, scenario)


# -- the reader alone: what each read adds, with no screen and no timing in between ------------


def test_skips_are_counted_exactly(tmp_path):
    """However many jumps a line without a newline takes, one marker counts all that is not shown."""
    path = tmp_path / "job.log"
    path.write_bytes(b"before\n")
    tail = LogTail(str(path), 7)
    assert tail.read().lines == ["before"]
    append(path, b"y" * 600_000)
    assert tail.read().tail == [f"{'y' * LINE_BYTES} … {size_text(600_000 - LINE_BYTES)} more in this line"]
    append(path, b"y" * 30_000_000)
    first = tail.read()
    assert first.lines == [f"{'y' * LINE_BYTES} … {size_text(600_000 - LINE_BYTES)} more in this line …"]
    append(path, b"y" * 30_000_000 + b"z")
    second = tail.read()
    shown = path.stat().st_size - TAIL_BYTES
    assert second.lines == []
    assert second.tail == [skipped(7, shown - 600_007), "…" + "y" * (LINE_BYTES - 1) + "z"]
    append(path, b"\nafter\n")
    assert tail.read().lines == [skipped(7, shown - 600_007), "…" + "y" * (LINE_BYTES - 1) + "z", "after"]


def test_a_character_split_between_reads_is_not_replaced(tmp_path):
    path = tmp_path / "job.log"
    path.write_bytes(b"caf\xc3")
    tail = LogTail(str(path), 7)
    assert tail.read().tail == ["caf"]  # the rest of the character is on its way
    append(path, b"\xa9 cr\xc3\xa8me\n\xe2\x82")
    chunk = tail.read()
    assert chunk.lines == ["café crème"] and chunk.tail == []
    append(path, b"\xac!")
    assert tail.read().tail == ["€!"]
    append(path, b" \xe2\x82\n")  # a line that ends mid-character: replaced once it is whole
    assert tail.read().lines == ["€! \ufffd"]
    append(path, "é".encode() * 600_000 + b"!")  # 1.2 MB: what is kept starts inside an é
    assert tail.read().tail[-1] == "…" + "é" * (LINE_BYTES // 2 - 1) + "!"


def test_a_replaced_or_truncated_log_starts_the_view_again(tmp_path):
    path = tmp_path / "job.log"
    path.write_bytes(b"attempt 1\n")
    tail = LogTail(str(path), 7)
    assert tail.read().lines == ["attempt 1"]
    path.write_bytes(b"again\n")  # truncated, then written: shorter than what was read
    chunk = tail.read()
    assert chunk.reset and chunk.lines == ["again"]
    path.unlink()
    assert tail.read().missing
    path.write_bytes(b"back\n")
    assert tail.read().lines == ["back"]
    (tmp_path / "new").write_bytes(b"a new file in its place\n")
    os.replace(tmp_path / "new", path)
    chunk = tail.read()
    assert chunk.reset and chunk.lines == ["a new file in its place"]


# -- the look ----------------------------------------------------------------------------------

FROZEN = 1_800_000_000.0  # 2027-01-15 08:00 UTC


@pytest.fixture
def messy_job(store: Any) -> Any:
    """A running job whose log holds escapes, bars and an unfinished line, at a frozen time in UTC."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    Path("job.log").write_bytes(
        b"=== jobrunner: job 1 attempt 1 started 2027-01-15 07:50:30 ===\n"
        b"\x1b[2J\x1b[Hthis tried to clear the screen\n"
        b"\x1b]0;owned\x07this tried to retitle the terminal\n"
        b"\x1b[31mred\x1b[0m, \xc2\x9b2J a C1 CSI, bad UTF-8: \xff\xfe\n"
        b"frame 1\rframe 2\rframe 3\n"
        b"downloading   7%\rdownloading  42%"
    )
    job_id = repo.submit(store, build_spec({"command": ["./messy.sh"], "name": "messy"}), FROZEN - 600)
    sql(store,
        "UPDATE job SET status='running', attempts=1, started_at=?, log_path='job.log' WHERE id=?",
        (FROZEN - 570, job_id),
    )
    try:
        yield store
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_messy_log_snapshot(messy_job, snap_compare):
    async def ready(pilot: Pilot) -> None:
        await until(pilot, lambda: shown(pilot) == [1])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.job)
        view = pilot.app.screen.query_one(LogView)
        await until(pilot, lambda: view.lines[-1:] == ["downloading  42%"])

    app = JobrunnerApp(messy_job, clock=lambda: FROZEN)
    assert snap_compare(app, terminal_size=(120, 35), run_before=ready)
