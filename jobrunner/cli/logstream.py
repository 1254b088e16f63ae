"""Streaming a job's log file to stdout for `jobrunner logs`: in chunks, with flat memory.

Piped or redirected, the bytes go out exactly as the job wrote them. On a terminal they are
decoded (invalid UTF-8 replaced) and shown through present.visible a line at a time, so a
job's escape sequences are printed as `\\x1b[2J`, never executed, and a line rewritten with
`\\r` shows its last state; a line longer than PARTIAL_MAX goes out in pieces, so memory stays
flat. `tail_start` finds where the last N lines begin by reading blocks backwards from the
end, never the whole file.
"""

from __future__ import annotations

import codecs
import os
from typing import BinaryIO, TextIO

CHUNK = 256 * 1024  # bytes read and written at a time: the whole of what `logs` holds
BLOCK = 64 * 1024  # bytes read at a time while looking backwards for newlines
PARTIAL_MAX = 64 * 1024  # characters of an unfinished line a terminal sink holds back


def tail_start(handle: BinaryIO, lines: int, block: int = BLOCK) -> int:
    """The offset where the last `lines` lines of the file begin (its end for 0).

    A final newline ends the last line rather than starting another, as in `tail -n`. Reads
    blocks backwards from the end until enough newlines are found: a few blocks for a file of
    ordinary lines, whatever its size.
    """
    end = handle.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    found = 0
    position = end
    while position > 0:
        size = min(block, position)
        position -= size
        handle.seek(position)
        data = handle.read(size)
        upto = len(data)
        if position + upto == end and data.endswith(b"\n"):
            upto -= 1  # the last line's own newline
        while (newline := data.rfind(b"\n", 0, upto)) >= 0:
            found += 1
            if found == lines:
                return position + newline + 1
            upto = newline
    return 0


class Sink:
    """Where log bytes go: stdout's binary buffer as they are, or a terminal, shown visibly.

    On a terminal, an unfinished line is held back until its newline comes (present.visible
    shows a `\\r`-rewritten line as its last state, which needs the whole line): of a longer
    one, only its last `\\r` state is kept, and a state longer than PARTIAL_MAX goes out as is.
    """

    def __init__(self, stdout: TextIO, terminal: bool | None = None) -> None:
        self.stdout = stdout
        if terminal is None:
            try:
                terminal = stdout.isatty()
            except (AttributeError, ValueError):
                terminal = False
        self.terminal = terminal
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace") if terminal else None
        self.raw = None if terminal else getattr(stdout, "buffer", None)
        self.partial = ""  # on a terminal: the unfinished line held back

    def write(self, chunk: bytes) -> None:
        if self.decoder is not None:
            text = self.partial + self.decoder.decode(chunk)
            end = text.rfind("\n") + 1
            self._show(text[:end])
            self.partial = text[end:]
            if len(self.partial) > PARTIAL_MAX:
                self._shorten()
        elif self.raw is not None:
            self.raw.write(chunk)
        else:  # a text-only stream (not a real stdout): the best it can take
            self.stdout.write(chunk.decode("utf-8", "replace"))

    def flush(self, partial: bool = False) -> None:
        """Push out what was written; with `partial` (following a live log), an unfinished line
        too, unless it is being rewritten with `\\r` (a progress bar waits for its newline)."""
        if partial and "\r" not in self.partial:
            self._show(self.partial)
            self.partial = ""
        (self.raw or self.stdout).flush()

    def close(self) -> None:
        """The end of the output: the last line without a newline, and a multi-byte character
        cut short by the end, are shown too."""
        if self.decoder is not None:
            self._show(self.partial + self.decoder.decode(b"", final=True))
            self.partial = ""
        (self.raw or self.stdout).flush()

    def _shorten(self) -> None:
        """Keep only the last `\\r` state of a long unfinished line; one still too long goes out."""
        states = self.partial.split("\r")
        if len(states) > 1:  # the state being written, or the last one shown and its \r
            self.partial = states[-1] or next((s for s in reversed(states) if s), "") + "\r"
        if len(self.partial) > PARTIAL_MAX:
            self._show(self.partial)
            self.partial = ""

    def _show(self, text: str) -> None:
        if text:
            from jobrunner.present import visible

            self.stdout.write(visible(text, lines=True))


def copy(handle: BinaryIO, sink: Sink, chunk: int = CHUNK) -> int:
    """Everything from the handle's position to the end of the file, chunk by chunk; returns
    the number of bytes copied."""
    copied = 0
    while data := handle.read(chunk):
        sink.write(data)
        copied += len(data)
    return copied


def open_log(path: str | None, tail: int | None) -> BinaryIO | None:
    """A job's log open for reading, at the start of its last `tail` lines (all of it for None);
    None if there is none yet. The caller closes it."""
    if not path:
        return None
    try:
        handle = open(path, "rb")  # noqa: SIM115 (the caller closes it)
    except FileNotFoundError:
        return None
    if tail is not None:
        handle.seek(tail_start(handle, tail))
    return handle


def replaced(handle: BinaryIO, path: str | None) -> bool:
    """Whether `path` now names another file than the one open (a retry's fresh log)."""
    try:
        current = os.stat(path) if path else None
    except OSError:
        return False
    opened = os.fstat(handle.fileno())
    return current is not None and (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino)
