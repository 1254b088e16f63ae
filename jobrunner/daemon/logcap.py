"""A job's log within max_log_size: the head as it is written, a rolling tail, a note between.

A job with a max_log_size writes into a pipe instead of its log file; a thread of the worker
copies the pipe into the log. The first half of the room an attempt has goes straight to the
file (live: `logs --follow` and the TUI see it as it comes); after that the thread keeps only
the last part in memory, dropping whole chunks from its front, and when the attempt ends it
appends a note saying how much was cut, then that tail. The file is only ever appended to, so
a follower reading it never sees it shrink.

The room is what the log has left when the attempt starts: a retry appends to the log of the
attempts before it, so a log that earlier attempts filled keeps its header lines and a note.
"""

from __future__ import annotations

import os
import select
import threading
from collections import deque
from contextlib import suppress

from jobrunner.domain.sizes import format_size

NOTE_ROOM = 128  # bytes kept for the note: "\n[jobrunner: 123456789 bytes cut here; max_log_size 50M]\n"
RECENT_BYTES = 8192  # the last output of the attempt, kept whatever was cut: evidence of a MemoryError
CHUNK = 1 << 16
STOP_POLL_S = 0.2  # how often a copier waiting for output checks whether it was told to stop
LINE_SLACK = 1024  # the head ends, and the tail starts, at a line's end this near the cut, if one is


class LogCap:
    """Copies an attempt's output from a pipe into its log, keeping it within `limit` bytes
    (None: no limit, everything copied; the pipe then serves only `recent`)."""

    def __init__(self, log_fd: int, limit: int | None) -> None:
        self.limit = limit
        self.log_fd = os.dup(log_fd)  # ours: the caller closes its own when the job ends
        self.read_fd, write_fd = os.pipe()
        self.write_fd: int | None = write_fd  # the job's stdout and stderr
        self.head_left: int | None = None  # bytes that may still go straight to the file
        self.tail_room = 0
        if limit is not None:
            room = max(limit - os.fstat(log_fd).st_size - NOTE_ROOM, 0)
            self.head_left = room // 2
            self.tail_room = room - self.head_left
        self.tail: deque[bytes] = deque()
        self.tail_bytes = 0
        self.cut = 0  # bytes dropped from the front of the tail
        self.ends_line = True  # what the file holds so far ends with a newline (the header does)
        self.recent = bytearray()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._copy, name="jobrunner-logcap", daemon=True)
        self.thread.start()

    def close_writer(self) -> None:
        """The worker's copy of the write end: closed once the job has it (end-of-file comes
        when every process holding it is gone)."""
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None

    def finish(self, wait: float = 2.0) -> bytes:
        """After the job's processes are gone: copy what is left, append the note and the tail;
        returns the attempt's last RECENT_BYTES of output."""
        self.close_writer()
        self.thread.join(wait)
        if self.thread.is_alive():  # something outside the job holds the pipe: stop reading it
            self.stop.set()
            self.thread.join()
        tail = b"".join(self.tail)
        if len(tail) > self.tail_room:
            self.cut += len(tail) - self.tail_room
            tail = tail[len(tail) - self.tail_room :]
        if self.cut:
            newline = tail.find(b"\n", 0, LINE_SLACK)
            if newline >= 0:  # start at a whole line
                self.cut += newline + 1
                tail = tail[newline + 1 :]
            note = f"[jobrunner: {self.cut} bytes cut here; max_log_size {format_size(self.limit)}]\n"
            tail = ("" if self.ends_line else "\n").encode() + note.encode() + tail
        self._write(tail)
        os.close(self.read_fd)
        os.close(self.log_fd)
        return bytes(self.recent)

    def _copy(self) -> None:
        while True:
            try:
                if not select.select([self.read_fd], [], [], STOP_POLL_S)[0]:
                    if self.stop.is_set():
                        return
                    continue
                data = os.read(self.read_fd, CHUNK)
            except OSError:
                return
            if not data:
                return
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        self.recent += data
        if len(self.recent) > RECENT_BYTES:
            del self.recent[: len(self.recent) - RECENT_BYTES]
        if self.head_left is None:
            self._write(data)
            return
        if self.head_left:
            head = data[: self.head_left]
            if len(head) == self.head_left:  # the head ends here: at a line's end, if one is near
                newline = head.rfind(b"\n", max(len(head) - LINE_SLACK, 0))
                if newline >= 0:
                    self.tail_room += len(head) - newline - 1  # the room the head leaves goes to the tail
                    head = head[: newline + 1]
                self.head_left = len(head)
            self._write(head)
            self.head_left -= len(head)
            self.ends_line = head.endswith(b"\n") if head else self.ends_line
            data = data[len(head) :]
        if data:
            self.tail.append(data)
            self.tail_bytes += len(data)
            while self.tail and self.tail_bytes - len(self.tail[0]) >= self.tail_room:
                dropped = self.tail.popleft()  # whole chunks: the final cut trims the rest
                self.tail_bytes -= len(dropped)
                self.cut += len(dropped)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        with suppress(OSError):  # a full disk: the output is lost, the job goes on
            while view:
                view = view[os.write(self.log_fd, view) :]
