"""Follow a job's log file like `tail -f`: the last part first, then what is appended."""

from __future__ import annotations

import codecs
import os
import threading
from dataclasses import dataclass, field
from typing import BinaryIO

INITIAL_TAIL_BYTES = 64 * 1024
MAX_READ_BYTES = 1024 * 1024  # per refresh, so a runaway log cannot stall the worker


@dataclass
class LogChunk:
    lines: list[str] = field(default_factory=list)
    reset: bool = False  # the file was replaced or truncated: start the view again
    missing: bool = False


class LogTail:
    """Reads complete new lines of one file; a partial last line waits for its newline."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()  # a worker cancelled mid-read may overlap the next one
        self._position: int | None = None
        self._identity: tuple[int, int] | None = None
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def read(self) -> LogChunk:
        with self._lock:
            try:
                with open(self.path, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    return self._read(handle, stat)
            except FileNotFoundError:
                return LogChunk(missing=True)

    def _read(self, handle: BinaryIO, stat: os.stat_result) -> LogChunk:
        chunk = LogChunk()
        identity = (stat.st_dev, stat.st_ino)
        if self._position is None or identity != self._identity or stat.st_size < self._position:
            chunk.reset = self._position is not None
            self._identity = identity
            self._position = max(stat.st_size - INITIAL_TAIL_BYTES, 0)
            self._pending = ""
            self._decoder.reset()
            skip_partial = self._position > 0
        else:
            skip_partial = False
        handle.seek(self._position)
        data = handle.read(MAX_READ_BYTES)
        self._position += len(data)
        text = self._pending + self._decoder.decode(data)
        lines = text.split("\n")
        self._pending = lines.pop()
        if skip_partial and lines:
            lines = lines[1:]  # the tail starts mid-line
        chunk.lines = [line.rstrip("\r") for line in lines]
        return chunk
