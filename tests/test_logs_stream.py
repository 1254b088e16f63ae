"""`jobrunner logs` streams a log of any size with flat memory: byte-exact when piped, visible on
a terminal, `--tail N` and `--follow` from the end without reading the whole file."""

from __future__ import annotations

import contextlib
import io
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from jobrunner.cli.logstream import PARTIAL_MAX, Sink, copy, tail_start
from jobrunner.config import log_dir_for
from jobrunner.present import visible
from jobrunner.trust import ensure_log_dir
from tests.conftest import run_on_pty, sql, wait_until

BIG = 48 * 1024 * 1024  # a log many times what `logs` may hold
JOBRUNNER = [sys.executable, "-m", "jobrunner"]
# Runs a command with its stdout to a file; prints its exit code and peak RSS (kB) once it has exited.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "with open(sys.argv[1], 'wb') as out:\n"
    "    code = subprocess.call(sys.argv[2:], stdout=out)\n"
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def plant_log(cli, store, db_path: Path, content: bytes | None = None, status: str = "succeeded",
              size: int = 0) -> tuple[int, Path]:  # fmt: skip
    """A job whose log file holds `content`, or `size` bytes of varied lines (every byte value)."""
    job_id = cli.submit("--", "true")
    log_dir = Path(log_dir_for(str(db_path)))
    ensure_log_dir(log_dir)  # as the daemon makes it: 0700, and its parents (a URL's is in the state dir)
    path = log_dir / f"{job_id}.log"
    with open(path, "wb") as handle:
        if content is not None:
            handle.write(content)
        else:
            block = b"".join(b"line %06d \x1b[2J\r\t%s\n" % (n, bytes(range(256))) for n in range(4000))
            written = 0
            while written < size:
                written += handle.write(block)
            handle.write(b"the last line, without a newline")
    with store.write():
        sql(store, "UPDATE job SET status=?, attempts=1, finished_at=?, log_path=? WHERE id=?",
                      (status, 1.0 if status == "succeeded" else None, str(path), job_id))  # fmt: skip
    return job_id, path


def last_lines(content: bytes, count: int) -> bytes:
    """The last `count` lines as `tail -n` sees them: only \\n ends a line."""
    parts = content.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    return b"".join(lines[max(0, len(lines) - count) :]) if count else b""


def peak_rss_kb(tmp_path: Path, *args: str) -> tuple[bytes, int]:
    """What `jobrunner ARGS` printed (to a file) and its peak resident set in kB."""
    out = tmp_path / "out.bin"
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, str(out), *JOBRUNNER, *args],
                            capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    code, peak = result.stdout.split()
    assert code == "0", result.stderr
    return out.read_bytes(), int(peak)


def test_a_big_log_comes_out_byte_exact_with_flat_memory(cli, store, db_path, tmp_path):
    small, small_path = plant_log(cli, store, db_path, b"one line\n")
    big, big_path = plant_log(cli, store, db_path, size=BIG)
    output, baseline = peak_rss_kb(tmp_path, "logs", str(small))
    assert output == small_path.read_bytes()
    output, peak = peak_rss_kb(tmp_path, "logs", str(big))
    assert output == big_path.read_bytes()  # every byte value, \r, escapes: as written
    assert peak - baseline < 16 * 1024, f"peak {peak} kB against {baseline} kB for a one-line log"


def test_tail_of_a_big_log_reads_only_its_end(cli, store, db_path, tmp_path):
    small, _ = plant_log(cli, store, db_path, b"one line\n")
    big, big_path = plant_log(cli, store, db_path, size=BIG)
    _, baseline = peak_rss_kb(tmp_path, "logs", str(small), "--tail", "3")
    output, peak = peak_rss_kb(tmp_path, "logs", str(big), "--tail", "3")
    with open(big_path, "rb") as handle:
        handle.seek(-3 * 4096, os.SEEK_END)
        end = handle.read()
    assert output == last_lines(end, 3)
    assert output.endswith(b"\nthe last line, without a newline") and output.count(b"\n") == 2
    assert peak - baseline < 16 * 1024


@pytest.mark.parametrize(
    "content",
    [b"", b"\n", b"\n\n\n", b"no newline", b"a\nb\nc", b"a\nb\nc\n", b"a\n\nb\n\n", b"x" * 1000 + b"\ny\n"],
)
def test_tail_start_is_where_the_last_lines_begin(content):
    for lines in range(6):
        for block in (1, 2, 3, 7, 64 * 1024):
            handle = io.BytesIO(content)
            handle.seek(tail_start(handle, lines, block))
            expected = last_lines(content, lines)
            assert handle.read() == expected, (content, lines, block)


def test_tail_start_on_random_logs():
    rng = random.Random(15)
    for _ in range(300):
        content = bytes(rng.choice(b"ab\n\r\x00") for _ in range(rng.randrange(60)))
        lines, block = rng.randrange(8), rng.randrange(1, 9)
        handle = io.BytesIO(content)
        handle.seek(tail_start(handle, lines, block))
        assert handle.read() == last_lines(content, lines)


class CountingReads(io.BytesIO):
    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_tail_start_reads_a_few_blocks_of_a_long_log():
    content = b"".join(b"line %d\n" % n for n in range(500_000))  # about 6 MB
    handle = CountingReads(content)
    start = tail_start(handle, 10)
    assert content[start:] == b"".join(b"line %d\n" % n for n in range(499_990, 500_000))
    assert handle.bytes_read <= 64 * 1024


def test_sink_shows_control_characters_on_a_terminal_and_keeps_bytes_when_piped():
    data = "a \x1b]0;TITLE\x07 b \x1b[2J é\n10%\r50%\r100%\ndone\r\n\x9b1m".encode() + b"\xff"
    raw = io.TextIOWrapper(io.BytesIO())
    piped = Sink(raw, terminal=False)
    copy(io.BytesIO(data), piped, chunk=3)
    piped.close()
    assert raw.buffer.getvalue() == data
    whole = visible(data, lines=True)
    assert "\x1b" not in whole and "\x9b" not in whole and "TITLE" in whole
    for chunk in (1, 2, 3, 5, 64):  # characters and \r-rewritten lines cut across chunks come out whole
        shown = io.StringIO()
        terminal = Sink(shown, terminal=True)
        copy(io.BytesIO(data), terminal, chunk=chunk)
        terminal.close()
        assert shown.getvalue() == whole, chunk


def test_sink_holds_back_at_most_a_bounded_part_of_a_long_line():
    bar = b"".join(b"%d%%\r" % (n % 100) for n in range(100_000))  # 500 kB of one rewritten line
    shown = io.StringIO()
    terminal = Sink(shown, terminal=True)
    for start in range(0, len(bar), 4096):
        terminal.write(bar[start : start + 4096])
        assert len(terminal.partial) <= PARTIAL_MAX
    terminal.write(b"done\n")
    terminal.close()
    assert shown.getvalue() == visible(b"99%\rdone\n")  # the line as its last state
    long_line = b"x" * (3 * PARTIAL_MAX) + b"\n"
    shown = io.StringIO()
    terminal = Sink(shown, terminal=True)
    copy(io.BytesIO(long_line), terminal, chunk=4096)
    terminal.close()
    assert shown.getvalue() == long_line.decode()  # out in pieces, all of it


def test_logs_on_a_terminal_shows_escapes_instead_of_running_them(cli, store, db_path):
    job_id, path = plant_log(cli, store, db_path, b"\x1b]0;TITLE\x07title\n\x1b[2J\x1b[Hcleared\n")
    out, code = run_on_pty([*JOBRUNNER, "logs", str(job_id)], dict(os.environ))
    assert code == 0
    assert b"\x1b" not in out and b"\x07" not in out
    assert out == visible(path.read_bytes()).replace("\n", "\r\n").encode()  # the pty adds each \r
    assert b"TITLE" in out and b"cleared" in out
    piped = subprocess.run([*JOBRUNNER, "logs", str(job_id)], capture_output=True, timeout=60)
    assert piped.stdout == path.read_bytes()


def test_logs_piped_into_head_ends_quietly(cli, store, db_path):
    job_id, _ = plant_log(cli, store, db_path, size=BIG)
    logs = subprocess.Popen([*JOBRUNNER, "logs", str(job_id)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-1"], stdin=logs.stdout, capture_output=True, timeout=60)
    logs.stdout.close()
    assert logs.wait(timeout=60) == 0
    assert logs.stderr.read() == b""
    assert head.stdout == b"line 000000 \x1b[2J\r\t" + bytes(range(10)) + b"\n"
    logs.stderr.close()


def test_follow_starts_at_the_end_and_shows_what_is_appended(cli, store, db_path):
    job_id, path = plant_log(cli, store, db_path, status="running", size=BIG)
    with open(path, "ab") as handle:
        handle.write(b"\nlast old line\n")
    follow = subprocess.Popen([*JOBRUNNER, "logs", "--follow", "--tail", "1", str(job_id)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    seen = bytearray()

    def read() -> None:
        while chunk := follow.stdout.read1(65536):
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: bytes(seen) == b"last old line\n", timeout=30)
        with open(path, "ab") as handle:
            handle.write(b"appended while following\n")
        wait_until(lambda: b"appended while following\n" in seen, timeout=30)
        with open(path, "ab") as handle:
            handle.write(b"written just before the end\n")
        with store.write():
            sql(store, "UPDATE job SET status='succeeded', finished_at=? WHERE id=?", (2.0, job_id))
        assert follow.wait(timeout=30) == 0
        reader.join(timeout=30)
    finally:
        follow.kill()
        follow.wait()
        follow.stdout.close()
        follow.stderr.close()
    assert bytes(seen) == b"last old line\nappended while following\nwritten just before the end\n"


def test_follow_waits_for_a_log_that_does_not_exist_yet(cli, store, db_path):
    job_id = cli.submit("--", "true")
    path = Path(log_dir_for(str(db_path))) / f"{job_id}.log"
    with store.write():
        sql(store,
            "UPDATE job SET status='running', attempts=1, log_path=? WHERE id=?", (str(path), job_id)
        )
    follow = subprocess.Popen([*JOBRUNNER, "logs", "-f", str(job_id)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)  # fmt: skip
    try:
        # once it has the database open, it is looking for the log file in its loop
        wait_until(lambda: has_database_open(follow.pid, db_path), timeout=30)
        ensure_log_dir(path.parent)
        path.write_bytes(b"late output\n")
        with store.write():
            sql(store, "UPDATE job SET status='succeeded', finished_at=? WHERE id=?", (2.0, job_id))
        out, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
        follow.wait()
    assert follow.returncode == 0 and err == b""
    assert out == b"late output\n"


def has_database_open(pid: int, target: Path | str) -> bool:
    """The process has the SQLite file open, or a connection to the PostgreSQL server's port."""
    if "://" not in str(target):
        return str(target) in open_files(pid)
    port = f":{urlparse(str(target)).port or 5432:04X}"
    sockets = {name[len("socket:["):-1] for name in open_files(pid) if name.startswith("socket:[")}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[2].endswith(port) and fields[9] in sockets:  # remote address, inode
                    return True
    return False


def open_files(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return found


def test_a_negative_tail_is_one_line_exit_2(cli, store, db_path):
    job_id, _ = plant_log(cli, store, db_path, b"x\n")
    result = subprocess.run([*JOBRUNNER, "logs", str(job_id), "--tail", "-1"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("jobrunner: error: --tail: -1 is out of range")
    assert result.stderr.count("\n") == 1


def test_follow_moves_to_a_file_renamed_over_the_log(cli, store, db_path, tmp_path):
    """A worker may rename its spare file over a job's log path: `--follow` reads the new file."""
    job_id, path = plant_log(cli, store, db_path, b"old file\n", status="running")
    follow = subprocess.Popen([*JOBRUNNER, "logs", "--follow", str(job_id)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)  # fmt: skip
    seen = bytearray()
    reader = threading.Thread(target=lambda: seen.extend(follow.stdout.read()), daemon=True)
    reader.start()
    try:
        wait_until(lambda: path in {Path(p) for p in open_files(follow.pid)}, timeout=30)
        spare = path.with_name(".spare.log")
        spare.write_bytes(b"new file\n")
        os.rename(spare, path)
        with store.write():
            sql(store, "UPDATE job SET status='succeeded', finished_at=? WHERE id=?", (2.0, job_id))
        assert follow.wait(timeout=30) == 0
        reader.join(timeout=30)
    finally:
        follow.kill()
        follow.wait()
    assert bytes(seen) == b"old file\nnew file\n"
