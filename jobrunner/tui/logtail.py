"""Follow a job's log file like `tail -f`, for a person: the end first, then what is appended.

This runs in the detail screen's loader thread, never on the UI thread, and holds little:
each read takes at most CATCH_UP_BYTES, and a line at most LINE_BYTES, whatever the job
prints. What a person gets of each line:
- control characters shown as `\\x1b` and the like (present.visible), never executed, and
  invalid UTF-8 as U+FFFD;
- a line rewritten with carriage returns (a progress bar) as its last frame;
- at most LINE_BYTES of a line, then `… 49.9 MB more in this line`;
- the unfinished last line as it stands, replaced as it grows (LogChunk.tail);
- when the writer is more than CATCH_UP_BYTES ahead (or the log is opened), the last
  TAIL_BYTES only, under a marker line: `… 280 MB skipped: jobrunner logs 7 shows all`.
"""

from __future__ import annotations

import codecs
import os
import re
import threading
from dataclasses import dataclass, field
from typing import BinaryIO

from rich.cells import cell_len

from jobrunner.present import visible

TAIL_BYTES = 64 * 1024  # what is shown of a log when it is opened, or after a skip
CATCH_UP_BYTES = 1024 * 1024  # further behind the writer than this, the view skips to its end
LINE_BYTES = 8 * 1024  # shown of one line (one frame of it); the rest is counted
LINES_KEPT = 10_000  # no view keeps more, so older lines of one read are not even decoded

# Line and paragraph separators are no controls to present.visible, but a terminal may break a
# line at them; shown like the rest, so one line of the file stays one line of the view.
_SEPARATORS = re.compile("[\u2028\u2029]")


def size_text(count: int) -> str:
    """`280 MB`, `49.9 MB`, `12 bytes`: a byte count as a person reads it."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= scale:
            value = count / scale
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    return f"{count} byte{'s' if count != 1 else ''}"


def line_text(raw: bytes, more: int = 0, final: bool = True) -> str:
    """One line's bytes (already its last frame, at most LINE_BYTES) as it is shown; `more`
    bytes of it were left out; not `final`: more may come (the line is being written)."""
    if more or not final:  # cut or paused mid-character, perhaps: that is no U+FFFD
        text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(raw, final=False)
    else:
        text = raw.decode("utf-8", "replace")
    text = visible(text)
    if "\u2028" in text or "\u2029" in text:
        text = _SEPARATORS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return f"{text} … {size_text(more)} more in this line" if more else text


def last_frame(raw: bytes) -> bytes:
    """What a terminal would leave of a line rewritten with `\\r`: its last non-empty frame."""
    return raw.rstrip(b"\r").rpartition(b"\r")[2] if b"\r" in raw else raw


def cut(raw: bytes) -> tuple[bytes, int]:
    return (raw, 0) if len(raw) <= LINE_BYTES else (raw[:LINE_BYTES], len(raw) - LINE_BYTES)


@dataclass
class LogChunk:
    lines: list[str] = field(default_factory=list)  # finished lines, to add
    tail: list[str] = field(default_factory=list)  # replaces the last chunk's tail: the unfinished line
    width: int = 0  # in cells, the widest of lines and tail
    trimmed: bool = False  # lines of this read were left out (more than any view keeps)
    reset: bool = False  # the file was replaced or truncated: start the view again
    missing: bool = False


class _OpenLine:
    """The line still being written: its current frame and its last finished one, each at most
    LINE_BYTES with the rest counted, so a 50 MB line costs no more than a short one. Of a line
    whose start was skipped, the latest LINE_BYTES are kept: that is the tail to follow."""

    def __init__(self, cut_head: bool = False) -> None:
        self.frame = bytearray()
        self.more = 0
        self.frame_cut = cut_head  # its start lies in skipped bytes: shown after a `…`
        self.last: tuple[bytes, int, bool] = (b"", 0, False)  # the last finished frame
        self.shown = False  # it was in a chunk's tail

    def add(self, data: bytes) -> None:
        if b"\r" not in data:
            self._extend(data)
            return
        pieces = data.split(b"\r")
        self._extend(pieces[0])
        self._close()
        for piece in reversed(pieces[1:-1]):  # of the frames within `data`, only the last counts
            if piece:
                self._extend(piece)
                self._close()
                break
        self._extend(pieces[-1])

    def _extend(self, data: bytes) -> None:
        if self.frame_cut:  # the end of a line whose start was skipped: its latest bytes count
            self.frame += data[-LINE_BYTES:]
            excess = len(self.frame) - LINE_BYTES
            if excess > 0:
                del self.frame[:excess]
            self.more += max(len(data) - LINE_BYTES, 0) + max(excess, 0)
            return
        room = LINE_BYTES - len(self.frame)
        if room > 0:
            self.frame += data[:room]
        self.more += max(len(data) - max(room, 0), 0)

    def _close(self) -> None:
        if self.frame or self.more:
            self.last = (bytes(self.frame), self.more, self.frame_cut)
        self.frame, self.more, self.frame_cut = bytearray(), 0, False

    @property
    def empty(self) -> bool:
        return not (self.frame or self.more or self.last[0] or self.last[1])

    def shown_frame(self) -> tuple[bytes, int, bool]:
        """The frame a terminal would show now: (its bytes, how many more, whether its start was skipped)."""
        return (bytes(self.frame), self.more, self.frame_cut) if self.frame or self.more else self.last

    def text(self, final: bool = False) -> str:
        """As shown: `final` once its newline came, else as it stands while being written."""
        raw, more, head_cut = self.shown_frame()
        if not head_cut:
            return line_text(raw, more, final)
        start = 0
        while start < min(len(raw), 3) and raw[start] & 0xC0 == 0x80:
            start += 1  # skipped to the middle of a character: no U+FFFD for its tail
        return "…" + line_text(raw[start:], final=final)


class LogTail:
    """Reads one log file, a chunk per call: finished lines, and the unfinished tail to show."""

    def __init__(self, path: str, job_id: int | None = None) -> None:
        self.path = path
        self.job_id = job_id
        self._lock = threading.Lock()  # a worker cancelled mid-read may overlap the next one
        self._position: int | None = None
        self._identity: tuple[int, int] | None = None
        self._line = _OpenLine()
        self._skipped = 0  # bytes skipped since the last finished line: a marker waiting above it
        self._skip_start = 0  # where those bytes start

    def read(self) -> LogChunk:
        with self._lock:
            try:
                with open(self.path, "rb") as handle:
                    return self._read(handle, os.fstat(handle.fileno()))
            except FileNotFoundError:
                return LogChunk(missing=True)

    def marker(self, skipped: int) -> str:
        where = f"jobrunner logs {self.job_id}" if self.job_id is not None else "the file"
        return f"… {size_text(skipped)} skipped: {where} shows all"

    def _read(self, handle: BinaryIO, stat: os.stat_result) -> LogChunk:
        chunk = LogChunk()
        identity = (stat.st_dev, stat.st_ino)
        size = stat.st_size
        if self._position is None or identity != self._identity or size < self._position:
            chunk.reset = self._position is not None
            self._identity, self._position = identity, 0
            self._line, self._skipped = _OpenLine(), 0
            if size > TAIL_BYTES:
                self._skip(handle, size - TAIL_BYTES, chunk.lines)
        elif size - self._position > CATCH_UP_BYTES:  # the writer outran the view: follow its end
            self._skip(handle, size - TAIL_BYTES, chunk.lines)
        handle.seek(self._position)
        data = handle.read(size - self._position)  # what grew since fstat waits for the next read
        self._position += len(data)
        chunk.trimmed = self._feed(data, chunk.lines)
        if self._skipped:
            chunk.tail.append(self.marker(self._skipped))
        text = "" if self._line.empty else self._line.text()
        if text:
            chunk.tail.append(text)
            self._line.shown = True
        chunk.width = max((cell_len(text.expandtabs()) for text in (*chunk.lines, *chunk.tail)), default=0)
        return chunk

    def _skip(self, handle: BinaryIO, to: int, out: list[str]) -> None:
        """Jump to `to`: the line being read ends (as far as it was read), a marker follows."""
        if not self._skipped:
            if not self._line.empty:
                out.append(self._line.text() + " …")
            self._skip_start = self._position or 0
        # else nothing finished since the last skip: one marker for both, and what lay between
        self._skipped = to - self._skip_start
        handle.seek(to - 1)
        self._line = _OpenLine(cut_head=handle.read(1) != b"\n")
        self._position = to

    def _feed(self, data: bytes, out: list[str]) -> bool:
        """Add `data` to the open line and `out`; True when lines were left out (too many)."""
        first = data.find(b"\n")
        if first < 0:
            self._line.add(data)
            return False
        self._line.add(data[:first])
        self._finish(out)
        last = data.rfind(b"\n")
        if last > first:
            lines = data[first + 1 : last].split(b"\n")
            out.extend(line_text(*cut(last_frame(raw))) for raw in lines[-LINES_KEPT:])
        self._line.add(data[last + 1 :])
        if len(out) > LINES_KEPT:
            del out[:-LINES_KEPT]
            return True
        return False

    def _finish(self, out: list[str]) -> None:
        if self._skipped:
            out.append(self.marker(self._skipped))
            self._skipped = 0
        line = self._line
        if line.shown or not line.shown_frame()[2]:  # the unseen end of a skipped line is left out
            out.append(line.text(final=True))
        self._line = _OpenLine()
