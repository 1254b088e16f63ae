"""Progress from a shell job without a database write: a line on a FIFO its worker reads.

Every worker keeps a named pipe beside the job logs, owner-only, and every job's processes
find its path in JOBRUNNER_PROGRESS. A line `FRACTION [MESSAGE]` (`0.4 step 2/5`,
`40% step 2/5`) written there is the running job's progress: a shell loop reports with no
process start at all (`echo "40% step 2/5" > "$JOBRUNNER_PROGRESS"`), and `jobrunner
progress` writes the same line (this module imports nothing heavy: a call costs a Python start,
not a whole CLI start and a write transaction). The worker's watcher thread reads the pipe
and passes the last line of each read to the daemon, which writes progress in its batches.
"""

from __future__ import annotations

import os
import stat

PATH_VAR = "JOBRUNNER_PROGRESS"
MAX_LINE = 4096  # longer lines are cut: progress is a short note


def parse_fraction(text: str) -> float | None:
    """0.4 or 40% as a fraction in [0, 1]; None if it is neither."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return None
    return value if 0 <= value <= 1 else None  # NaN fails both comparisons


def parse_line(line: bytes) -> tuple[float, str | None] | None:
    """`FRACTION [MESSAGE]` -> (fraction, message); None for a line that is not progress."""
    text = line[:MAX_LINE].decode("utf-8", "replace").strip()
    fraction_text, _, message = text.partition(" ")
    fraction = parse_fraction(fraction_text)
    if fraction is None:
        return None
    return fraction, message.strip() or None


def send(fraction: float, message: str | None) -> bool:
    """Write a progress line to the job's worker; False if there is none (report another way)."""
    path = os.environ.get(PATH_VAR)
    if not path:
        return False
    try:  # non-blocking: a FIFO nobody reads (its worker is gone) fails at once instead of hanging
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISFIFO(info.st_mode) or info.st_uid != os.geteuid():
            return False
        note = " ".join((message or "").split())  # one line, whatever the message held
        data = f"{fraction:.6g} {note}".rstrip().encode("utf-8", "replace")[: MAX_LINE - 1] + b"\n"
        os.write(fd, data)  # under PIPE_BUF: one write, never mixed with another's
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
