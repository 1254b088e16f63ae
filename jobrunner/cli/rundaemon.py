"""Start the daemon from parsed options: shared by the Typer command and the fast entry point.

No Typer here: `jobrunner daemon` skips importing it (tens of ms of every daemon start).
"""

from __future__ import annotations

import os
import threading

from jobrunner.cli.context import AppState
from jobrunner.errors import UsageError


def run_daemon(app_state: AppState, workers: int | None = None, queue: list[str] | None = None,
               grace: float | str = "30", kill_grace: float | str = "5", lease: float | str = "30",
               heartbeat: float | str = "5", poll: float | str = "1", allow_root: bool = False,
               log_level: str = "info", log_format: str = "text") -> int:  # fmt: skip
    """Run the daemon in the foreground until a signal stops it; returns its exit code."""
    from pathlib import Path

    from jobrunner.config import check_sqlite_path, log_dir_for
    from jobrunner.daemon.logsetup import configure_logging
    from jobrunner.daemon.pool import StartingPool
    from jobrunner.trust import ensure_log_dir, refuse_untrusted

    configure_logging(log_level, log_format)  # timestamps, journald `<N>` levels, or JSON; checks both
    config = app_state.config
    refuse_foreign_database_as_root(app_state.db_target, allow_root)
    if "://" not in app_state.db_target:
        check_sqlite_path(Path(app_state.db_target))  # before the workers make its log directory
        refuse_untrusted(app_state.db_target, log_dir_for(app_state.db_target))
    workers = workers or os.cpu_count() or 2
    grace, kill_grace, lease, heartbeat, poll = (_seconds(name, value) for name, value in (
        ("--grace", grace), ("--kill-grace", kill_grace), ("--lease", lease), ("--heartbeat", heartbeat),
        ("--poll", poll)))  # fmt: skip
    if poll < 0.01:
        raise UsageError("--poll must be at least 10 ms (0.01)")
    if lease < 1 or heartbeat < 0.1:
        raise UsageError("--lease must be at least 1 second and --heartbeat at least 0.1 s")
    if heartbeat * 3 > lease:
        raise UsageError(f"--heartbeat {heartbeat:g} is too long for --lease {lease:g}: make it at most a third of the lease")
    from jobrunner.daemon.notify import keep_passwords

    keep_passwords(config.notifiers)  # out of os.environ before any worker (and so any job) inherits it
    ensure_log_dir(log_dir_for(app_state.db_target))  # 0700, or an existing one we trust
    # Workers first, forked from this process while it is small, has no threads and no open
    # database: a forkserver would take ~0.1 s to boot before the first job could start.
    starting = StartingPool(workers, app_state.db_target, log_dir_for(app_state.db_target),
                            fork=not app_state.store_open and threading.active_count() == 1,
                            kill_grace=kill_grace, python_path=config.python_path)  # fmt: skip
    try:
        from jobrunner.daemon.service import Options, Service

        store = app_state.store
        options = Options(workers=workers, queues=list(queue or []), grace=grace, kill_grace=kill_grace,
                          lease=lease, heartbeat=heartbeat, poll=poll)
        service = Service(store, config, options, log_dir_for(store.target), starting)
    except BaseException:
        starting.close()
        raise
    return service.run()


def refuse_foreign_database_as_root(target: str, allowed: bool) -> None:
    """Root running another user's jobs (and writing root-owned files into their state) is a
    mistake far more often than an intent. Judged on the resolved path: its directory, a
    symlink and where it points, so a database not created yet is judged by its directory."""
    if allowed or os.geteuid() != 0:
        return
    if "://" in target:
        raise UsageError(
            "refusing to run as root on a server database: whoever can write its job rows chooses "
            "what runs as root; run the daemon as an unprivileged user, or pass --allow-root if you mean it"
        )
    from jobrunner.trust import owners, user_name

    for what, owner in owners(target):
        if owner != 0:
            raise UsageError(
                f"refusing to run as root on {target}: {what} belongs to {user_name(owner)}, who could "
                f"then choose what runs as root; run the daemon as {user_name(owner)} instead"
            )


def _seconds(option: str, value: float | str) -> float:
    """A duration option: seconds, or a duration with units as everywhere else (30s, 2m)."""
    from jobrunner.domain.durations import parse_duration

    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(value, maximum=86400 * 365)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
