"""Progress from a shell job without a database write: a line on a FIFO its worker reads.

Every worker keeps a named pipe beside the job logs, owner-only, and every job's processes
find its path in JOBRUNNER_PROGRESS. A line `FRACTION [MESSAGE]` (`0.4 step 2/5`,
`40% step 2/5`) written there is the running job's progress: a shell loop reports with no
process start at all (`echo "40% step 2/5" > "$JOBRUNNER_PROGRESS"`), and `jobrunner
progress` writes the same line (this module imports nothing heavy: a call costs a Python start,
not a whole CLI start and a write transaction). The worker's watcher thread reads the pipe
and passes the latest line on to the daemon a few times a second, which writes it in its batches.

What every way in shares (the FIFO, `jobrunner progress`, `job.report()`): a fraction is a
number from 0 to 1 (NaN, infinities and anything outside are refused), and a message is a
short note, cut to MAX_MESSAGE characters with an ellipsis.
"""

from __future__ import annotations

import os
import stat

PATH_VAR = "JOBRUNNER_PROGRESS"
MAX_MESSAGE = 1000  # characters; longer messages are cut with an ellipsis (a note, not a log)
MAX_LINE = 4096  # bytes of a FIFO line: a fraction and MAX_MESSAGE characters of UTF-8 fit


def parse_fraction(text: str) -> float | None:
    """0.4 or 40% as a fraction in [0, 1]; None if it is neither (NaN and infinities neither)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return None
    return value if 0 <= value <= 1 else None  # NaN fails both comparisons


def fraction_problem(text: str) -> str:
    """Why `text` is not a fraction, in one line for the user."""
    return f"{text!r} is not a fraction from 0 to 1 like 0.4, or a percentage like 40%"


def check_fraction(value: object) -> float:
    """`value` as a float from 0 to 1; ValueError for NaN, an infinity, anything outside or not a number."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = None
    if number is None or not 0.0 <= number <= 1.0:  # NaN fails both comparisons
        raise ValueError(f"progress must be a number from 0 to 1, not {value!r}")
    return number


def clean_message(message: object) -> str | None:
    """A message as it may be stored: at most MAX_MESSAGE characters (cut with an ellipsis),
    valid Unicode (a lone surrogate becomes U+FFFD), no NUL (PostgreSQL refuses one); None
    for none or an empty one. Cheap for the common short ASCII note (called per report)."""
    if message is None:
        return None
    if type(message) is not str:
        message = str(message)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    if not message.isascii():
        try:
            message.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: not text any database takes
            import re

            message = re.sub("[\ud800-\udfff]", "\ufffd", message)
    if "\0" in message:
        message = message.replace("\0", "\ufffd")
    return message or None


def parse_line(line: bytes) -> tuple[float, str | None] | None:
    """`FRACTION [MESSAGE]` -> (fraction, message); None for a line that is not progress."""
    text = line[:MAX_LINE].decode("utf-8", "replace").strip()
    fraction_text, _, message = text.partition(" ")
    fraction = parse_fraction(fraction_text)
    if fraction is None:
        return None
    return fraction, clean_message(message.strip())


def _inside_worker(path: str) -> bool:
    """Whether this process is the worker that reads the FIFO at `path` (`.progress-PID`) or
    descends from it, as every process of the job it runs does (the worker is their
    subreaper): a shell that kept a finished job's environment is not inside any job. Where
    /proc cannot say (not Linux), assumed."""
    name = os.path.basename(path)
    if not name.startswith(".progress-") or not name[len(".progress-") :].isdigit():
        return True
    worker, pid = int(name[len(".progress-") :]), os.getpid()
    for _ in range(256):  # ancestors, nearest first
        if pid == worker:
            return True
        if pid <= 1:
            return False
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                text = handle.read()
        except OSError:
            return pid == os.getpid()  # no /proc here: assumed; a process gone meanwhile: not ours
        pid = int(text[text.rindex(b")") + 2 :].split()[1])  # the name may hold spaces and parens
    return False


def send(fraction: float, message: str | None) -> bool:
    """Write a progress line to the job's worker; False if there is none, or this process is
    not inside the job it runs (then the caller reports another way, or says why not)."""
    path = os.environ.get(PATH_VAR)
    if not path:
        return False
    try:  # non-blocking: a FIFO nobody reads (its worker is gone) fails at once instead of hanging
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISFIFO(info.st_mode) or info.st_uid != os.geteuid() or not _inside_worker(path):
            return False
        note = clean_message(" ".join((message or "").split())) or ""  # one line, whatever the message held
        data = f"{fraction:.6g} {note}".rstrip().encode("utf-8", "replace")[: MAX_LINE - 1] + b"\n"
        os.write(fd, data)  # under PIPE_BUF: one write, never mixed with another's
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
