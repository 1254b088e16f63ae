"""Whom jobrunner trusts, checked at every open (stdlib only).

Whoever can write the database, its -wal/-shm/-journal, its directory or the log directory
chooses what the daemon runs, as the daemon's user (root included). So, as ssh's StrictModes
judges ~/.ssh, each must belong to the current user (or root) and be writable by nobody else;
the directories above them may be writable by others only when sticky (as /tmp is). The
database's own directory may not be sticky and shared: another user could plant a -wal there
before it exists. Files are created with O_EXCL|O_NOFOLLOW and checked with fstat; a symlink as
the last component is refused, never followed. A shared queue is PostgreSQL with roles.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from jobrunner.errors import StoreError, UsageError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite replays a -wal or hot -journal found beside the file
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def refuse_untrusted(path: str | os.PathLike[str], log_dir: str | None = None) -> None:
    """Raise UsageError (one line: the file, what is wrong, the fix) if the SQLite database at
    `path` or its log directory breaks the trust model; a missing file is not a problem."""
    problems = database_problems(path, log_dir)
    if problems:
        raise UsageError(problems[0])


def database_problems(path: str | os.PathLike[str], log_dir: str | None = None) -> list[str]:
    """Every way the database at `path` (and `log_dir`) breaks the trust model, one line each."""
    path = Path(path).expanduser()
    directory = Path(os.path.realpath(path.parent))
    problems = _directory_problems(directory, "the database's directory", path.name)
    for suffix in ("", *SIDE_FILES):
        problems += _file_problems(directory / (path.name + suffix), suffix)
    if log_dir is not None:
        problems += log_dir_problems(log_dir)
    return list(dict.fromkeys(problems))


def log_dir_problems(log_dir: str | os.PathLike[str]) -> list[str]:
    """Ways the log directory (and the directory holding it) breaks the trust model."""
    path = Path(log_dir).expanduser()
    real = Path(os.path.realpath(path.parent)) / path.name
    problems = _directory_problems(real.parent, "the directory of the log directory", path.name)
    try:
        info = os.lstat(real)
    except FileNotFoundError:
        return problems
    except OSError as exc:
        return [*problems, f"cannot check the log directory {real}: {exc.strerror}"]
    if stat.S_ISLNK(info.st_mode):
        return [*problems, f"the log directory {real} is a symlink: jobrunner writes logs only into a real "
                f"directory of its own; remove it (rm {real}) and let jobrunner create it"]  # fmt: skip
    if not stat.S_ISDIR(info.st_mode):
        return [*problems, f"the log directory {real} is not a directory: remove it or move it away"]
    return problems + _owner_and_mode(real, info, "the log directory", sticky_ok=False)


def prepare_database(path: str | os.PathLike[str], log_dir: str | None = None) -> None:
    """At every open of a SQLite file: refuse what another user could write, then create a
    missing database owner-only (O_CREAT|O_EXCL|O_NOFOLLOW, 0600 whatever the umask)."""
    refuse_untrusted(path, log_dir)
    path = Path(path).expanduser()
    if os.path.lexists(path):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:  # another jobrunner made it meanwhile: judge that one
        refuse_untrusted(path, log_dir)
        return
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise UsageError(f"database {path} is not the file jobrunner just created: remove it and try again")
        os.fchmod(fd, PRIVATE_FILE)  # the umask may have taken bits from the mode above
    finally:
        os.close(fd)


def ensure_log_dir(log_dir: str | os.PathLike[str]) -> None:
    """Create the log directory 0700 (O_EXCL semantics: os.mkdir, not makedirs(exist_ok)), its
    missing parents too; an existing one must pass the same check, or UsageError."""
    path = Path(log_dir).expanduser()
    make_private_dirs(path.parent)
    problems = log_dir_problems(path)
    if problems:
        raise UsageError(problems[0])
    try:
        os.mkdir(path, PRIVATE_DIR)
    except FileExistsError:
        pass  # judged below, as made by someone else
    else:
        _fix_mode(path)
    problems = log_dir_problems(path)
    if problems:
        raise UsageError(problems[0])


def make_private_dirs(path: str | os.PathLike[str]) -> None:
    """Create `path` and its missing parents owner-only (0700) whatever the umask; directories
    that exist already are left as they are (the checks above judge them)."""
    path = Path(path).expanduser()
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:
            continue  # made meanwhile by another jobrunner
        _fix_mode(directory)


def owners(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """Who owns what a database path leads to: (what, uid) for its real directory, the name
    itself (a symlink's own owner) and the file it resolves to, where they exist."""
    path = Path(path).expanduser()
    directory = os.path.realpath(path.parent)
    found = [(f"its directory {directory}", os.stat(directory).st_uid)] if os.path.isdir(directory) else []
    name = os.path.join(directory, path.name)
    try:
        info = os.lstat(name)
    except OSError:
        return found
    if stat.S_ISLNK(info.st_mode):  # whoever made it chooses where root would write
        found.append((f"the symlink {name}", info.st_uid))
        target = os.path.realpath(name)
        holder = target if os.path.exists(target) else os.path.dirname(target)
        if os.path.exists(holder):
            found.append((f"{holder}, where it points,", os.stat(holder).st_uid))
    else:
        found.append((name, info.st_uid))
    return found


def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def config_problems(path: str | os.PathLike[str]) -> list[str]:
    """Why a config file must not be read: its owner, or whoever can write it or swap it in its
    directory, is not the current user or root (a config chooses the database, tasks, schedules
    and notifier commands: what jobrunner runs). Empty: it may be read."""
    path = Path(path)
    try:
        link = os.lstat(path)
        info = os.stat(path)
    except OSError as exc:
        return [f"cannot check the config {path}: {exc.strerror}"]
    problems = []
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (os.geteuid(), 0):  # a link's own mode means nothing
        problems.append(f"the config {path} is a symlink made by {user_name(link.st_uid)}, who chooses what it points "
                        "at: remove it, or pass --config with the real file")  # fmt: skip
    problems += _owner_and_mode(path, info, "the config", sticky_ok=False)
    directory = Path(os.path.realpath(path)).parent
    try:
        problems += _owner_and_mode(directory, os.stat(directory), "the config's directory", sticky_ok=True)
    except OSError as exc:
        problems.append(f"cannot check the config's directory {directory}: {exc.strerror}")
    return problems


def _fix_mode(directory: Path) -> None:
    fd = os.open(directory, DIR_FLAGS)  # the directory just made, not a symlink swapped in since
    try:
        os.fchmod(fd, PRIVATE_DIR)
    finally:
        os.close(fd)


def _directory_problems(directory: Path, role: str, name: str) -> list[str]:
    """The directory a file lives in (strict) and every directory above it (sticky allowed)."""
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return []  # check_sqlite_path says so; make_private_dirs creates a state directory
    except OSError as exc:
        return [f"cannot check {role} {directory}: {exc.strerror}"]
    problems = _owner_and_mode(directory, info, role, sticky_ok=False, planted=name)
    for parent in directory.parents:
        try:
            info = os.stat(parent)
        except OSError:
            continue
        problems += _owner_and_mode(parent, info, "the directory", sticky_ok=True, above=directory)
    return problems


def _owner_and_mode(path: Path, info: os.stat_result, what: str, sticky_ok: bool,
                    planted: str | None = None, above: Path | None = None) -> list[str]:  # fmt: skip
    me = os.geteuid()
    where = f" above {above}" if above is not None else ""
    if info.st_uid not in (me, 0):
        return [f"{what} {path}{where} belongs to {user_name(info.st_uid)}, not to you ({user_name(me)}) or root: "
                f"its owner could choose what jobrunner runs as you; use a directory of your own, or as root: "
                f"chown {user_name(me)} {path}"]  # fmt: skip
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o022 or (sticky_ok and mode & stat.S_ISVTX):
        return []
    if planted is not None and mode & stat.S_ISVTX:
        return [f"{what} {path} is writable by others (mode {mode:o}; sticky does not help): another user "
                f"can plant {planted}-wal there before it exists and SQLite would replay it; keep the database "
                f"in a private directory (mkdir -m 700 DIR), e.g. the default ~/.local/state/jobrunner"]  # fmt: skip
    return [f"{what} {path}{where} is writable by group or others (mode {mode:o}): whoever can write it "
            f"could choose what jobrunner runs as you; chmod go-w {path}"]  # fmt: skip


def _file_problems(path: Path, suffix: str) -> list[str]:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"cannot check {path}: {exc.strerror}"]
    what = "the database" if not suffix else f"the database's {suffix[1:]} file"
    if stat.S_ISLNK(info.st_mode):
        fix = f"give its real path {os.path.realpath(path)} instead" if not suffix else f"remove it (rm {path})"
        return [f"{what} {path} is a symlink: jobrunner does not follow one (whoever made it chooses the file); {fix}"]
    if not stat.S_ISREG(info.st_mode):
        return [f"{what} {path} is not a regular file: remove it or give another path"]
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        fix = ("SQLite would replay it into your database; if you did not make it, remove it (rm " + str(path) + ")"
               if suffix else f"its owner could choose what jobrunner runs as you; as root: chown {user_name(me)} {path}")  # fmt: skip
        return [f"{what} {path} belongs to {user_name(info.st_uid)}, not to you ({user_name(me)}) or root: {fix}"]
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        return [f"{what} {path} is writable by group or others (mode {mode:o}): whoever can write it could "
                f"choose what jobrunner runs as you; chmod 600 {path}"]  # fmt: skip
    return []
