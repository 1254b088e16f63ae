"""Each job's log file, opened fast and owner-only (job output may hold secrets)."""

from __future__ import annotations

import os
import threading
from contextlib import suppress


class Logs:
    """Opens each job's log, owner-only (job output may hold secrets).

    Creating a file is the slowest step between a job arriving and its code starting (0.3 to
    0.6 ms on a VM's ext4, more than all the rest together). So a worker about to wait for
    work creates a spare file beside the logs, and the next job whose log does not exist yet
    gets it by a rename. In a run of short jobs each job borrows the spare instead (see
    run_python's quiet_log), and only a job that printed something gets a file of its own;
    one that turns out long gets it while it runs (`publish`, from the watcher thread), so
    `logs --follow` and the TUI see its output live.
    """

    FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW  # a symlink planted as a log is never followed

    def __init__(self, log_dir: str | None) -> None:
        self.log_dir = log_dir.rstrip("/") if log_dir else None
        self.dir_fd: int | None = None  # the log directory, opened O_NOFOLLOW: files open relative to it
        self.spare = spare_log_path(log_dir, os.getpid()) if log_dir else None
        self.spare_fd: int | None = None
        self.dirty = False  # the spare holds a silent job's header
        self.lent_to: str | None = None
        self.published: int | None = None  # the spare's descriptor, renamed to the job's log  # the job whose output the spare holds now
        self.lock = threading.Lock()  # borrow/give_back (main thread) against publish (watcher)

    def prepare(self) -> None:
        """Before waiting for work: make sure a spare is there."""
        if self.spare is None or self.spare_fd is not None:
            return
        with suppress(OSError):  # no log directory (yet), or a read-only one: jobs will say so
            self.spare_fd = self._open(self.spare, self.FLAGS | os.O_CREAT | os.O_TRUNC)
            self.dirty = False

    def open(self, path: str, attempt: int) -> int:
        """An append descriptor on `path`, created if need be."""
        fd = self.spare_fd
        if fd is not None and self._is_new(path, attempt):
            try:
                if self.dirty:
                    os.ftruncate(fd, 0)  # a silent job before left its header there
                self._rename(self.spare, path)  # type: ignore[arg-type]
            except OSError:
                pass
            else:
                self.spare_fd = None
                return fd
        return self._open(path, self.FLAGS | os.O_CREAT)

    def borrow(self, path: str, attempt: int) -> int | None:
        """The spare, emptied, to write a job's output into; None: open the log itself."""
        if self.spare_fd is None:
            self.prepare()
        if self.spare_fd is None or not self._is_new(path, attempt):  # a retry appends to its log
            return None
        os.ftruncate(self.spare_fd, 0)
        self.dirty = True
        self.lent_to = path
        return self.spare_fd

    def publish(self) -> None:
        """The job borrowing the spare runs long: make the spare its log now (output is live)."""
        with self.lock:
            if self.lent_to is None or self.spare_fd is None:
                return
            try:
                self._rename(self.spare, self.lent_to)  # type: ignore[arg-type]
            except OSError:
                return  # give_back copies it at the end instead
            self.lent_to = None
            self.published = self.spare_fd
            self.spare_fd = None

    @staticmethod
    def _is_new(path: str, attempt: int) -> bool:
        """No log yet: a first attempt has none (one system call less on the way to its start)."""
        return attempt <= 1 or not os.path.lexists(path)

    def give_back(self, path: str, header: int) -> None:
        """After a borrowed run: output (past the header) becomes the job's log; else nothing."""
        with self.lock:
            self.lent_to = None
            if self.published is not None:  # already its log (publish)
                os.close(self.published)
                self.published = None
                return
        fd = self.spare_fd
        assert fd is not None
        if os.fstat(fd).st_size <= header:
            return  # silent: the spare is emptied again before its next use
        try:
            self._rename(self.spare, path)  # type: ignore[arg-type]
        except OSError:  # a log appeared meanwhile, or another file system: append a copy
            os.lseek(fd, 0, os.SEEK_SET)
            target = self._open(path, self.FLAGS | os.O_CREAT)
            try:
                while chunk := os.read(fd, 1 << 16):
                    os.write(target, chunk)
            finally:
                os.close(target)
            return
        os.close(fd)
        self.spare_fd = None

    def close(self) -> None:
        if self.spare_fd is not None:
            os.close(self.spare_fd)
            with suppress(OSError):
                name, dir_fd = self._where(self.spare)  # type: ignore[arg-type]
                os.unlink(name, dir_fd=dir_fd)
            self.spare_fd = None
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None

    def _where(self, path: str) -> tuple[str, int | None]:
        """A file in the log directory as a name relative to the directory's descriptor (opened
        O_NOFOLLOW): a symlink planted for the directory or the file cannot redirect a write."""
        if self.log_dir is None or os.path.dirname(path) != self.log_dir:
            return path, None
        if self.dir_fd is None:
            self.dir_fd = os.open(self.log_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.path.basename(path), self.dir_fd

    def _open(self, path: str, flags: int) -> int:
        name, dir_fd = self._where(path)
        return os.open(name, flags, 0o600, dir_fd=dir_fd)

    def _rename(self, source: str, target: str) -> None:
        (src, src_fd), (dst, dst_fd) = self._where(source), self._where(target)
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def spare_log_path(log_dir: str, pid: int) -> str:
    """Where worker `pid` keeps its spare log (for the supervisor to clear up after a dead one)."""
    return os.path.join(log_dir, f".spare-{pid}.log")
