"""A Python job's stdout and stderr: into its log, live, and put back after it whatever it did
to them, so one job never breaks the output of the next on the same worker."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

_saved_std: tuple[int, int] | None = None
_STD_NAMES = ("stdout", "stderr")  # on descriptors 1 and 2
_streams: list[Any] = []  # this worker's own sys.stdout and sys.stderr, made at its first Python job
_stream_codecs: list[tuple[str, str]] = []


@contextmanager
def output_to(log_fd: int) -> Iterator[None]:
    """Send this process's stdout and stderr (and its children's) to the job's log file; afterwards
    put back whatever of them the job replaced, closed or left unflushed."""
    global _saved_std
    if _saved_std is None:  # the worker's own stdout/stderr, kept open for its whole life
        _install_streams()
        _saved_std = os.dup(1), os.dup(2)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        yield
    finally:
        _tidy_streams()
        _restore_descriptors()


class _JobOutput(io.TextIOWrapper):
    """sys.stdout or sys.stderr while jobs run. A job that closes it only flushes it, so whatever
    holds it (a logging handler an earlier job set up) goes on working for the jobs after it."""

    def close(self) -> None:
        self.flush()


def _own_stream(index: int) -> _JobOutput:
    """Line-buffered text on descriptor 1 or 2, which it does not own: a job's print is in its
    log as it runs, PYTHONUNBUFFERED or not (a line costs one write either way)."""
    encoding, errors = _stream_codecs[index]
    raw = io.FileIO(index + 1, "w", closefd=False)
    return _JobOutput(io.BufferedWriter(raw), encoding=encoding, errors=errors, line_buffering=True)


def _install_streams() -> None:
    """Once per worker: our own sys.stdout and sys.stderr (in the codecs the originals had)."""
    for index, name in enumerate(_STD_NAMES):
        original = getattr(sys, name)
        with suppress(Exception):  # the originals stay open (they own 1 and 2): a job that writes
            original.flush()  # to sys.__stdout__ has its lines in its log too
            original.reconfigure(line_buffering=True)
        _stream_codecs.append((getattr(original, "encoding", None) or "utf-8",
                               getattr(original, "errors", None) or "backslashreplace"))  # fmt: skip
        _streams.append(_own_stream(index))
        setattr(sys, name, _streams[index])


def _tidy_streams() -> None:
    """After a job: flush what it printed; put ours back where it replaced them; and make new ones
    where it broke ours (detached their buffer) or their output cannot be written (a full disk):
    what is stuck in them must not come out in the next job's log."""
    for index, name in enumerate(_STD_NAMES):
        ours, current = _streams[index], getattr(sys, name)
        if current is not ours:
            with suppress(Exception):  # the job's own object, whatever it is: its output is the job's
                current.flush()
            setattr(sys, name, ours)
        try:
            ours.flush()
            continue
        except (OSError, ValueError):
            with suppress(Exception):  # its raw file closed first: nothing is flushed later
                ours.buffer.raw.close()
        _streams[index] = _own_stream(index)
        setattr(sys, name, _streams[index])


def _restore_descriptors() -> None:
    """Descriptors 1 and 2 back to the worker's own, even if the job closed those copies."""
    global _saved_std
    assert _saved_std is not None
    try:
        os.dup2(_saved_std[0], 1)
        os.dup2(_saved_std[1], 2)
    except OSError:  # a job closed every descriptor it could find: our output goes nowhere now
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        _saved_std = null, os.dup(null)


def job_failed_here(log_fd: int, text: str) -> None:
    """A job's traceback into its log, through whatever the job did to its output."""
    _tidy_streams()
    with suppress(OSError):  # a full disk: the failure is still recorded
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stderr.write(text)
        sys.stderr.flush()
