"""Which files some process still has open, from /proc/PID/fd: retention keeps such a log.

A finished job's detached child (a daemon it started, a process left behind by a killed
daemon) may still be writing into the job's log: deleting the file then would throw that
output away unseen and keep its disk space until the process exits. Linux only: elsewhere
no file is seen open. Processes of other users are not readable and not seen.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def held_open(paths: Iterable[str | os.PathLike[str]]) -> set[Path]:
    """The files among `paths` that a process (this one included) has open now.

    One walk of /proc: a readlink per descriptor; only a link whose name matches one of the
    files is checked further, by device and inode (so a path seen through a symlink or a
    bind mount still counts, and a file deleted and created again does not).
    """
    wanted: dict[str, dict[tuple[int, int], Path]] = {}
    for path in map(Path, paths):
        try:
            found = os.stat(path)
        except OSError:
            continue
        wanted.setdefault(path.name, {})[(found.st_dev, found.st_ino)] = path
    if not wanted:
        return set()
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return set()
    held: set[Path] = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone meanwhile, or another user's
            continue
        for fd in fds:
            link = f"{fd_dir}/{fd}"
            try:
                name = os.readlink(link).rpartition("/")[2]
                if name not in wanted:
                    continue
                target = os.stat(link)
            except OSError:
                continue
            path = wanted[name].get((target.st_dev, target.st_ino))
            if path is not None:
                held.add(path)
    return held
