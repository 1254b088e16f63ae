"""`jobrunner status` (is a daemon working on this database?) and `jobrunner doctor` (what is wrong?)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from jobrunner.cli.context import state
from jobrunner.cli.output import print_json
from jobrunner.domain.durations import format_duration
from jobrunner.errors import JobrunnerError
from jobrunner.secrets import redact_target, redact_text

NOT_RUNNING = 3  # `status` exit code when no daemon is alive (as `systemctl status` does)
WAL_WARN_BYTES = 64 * 1024 * 1024
IMPORT_TIMEOUT_S = 30.0  # for importing every configured callable: a module that hangs fails the check

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _existing_store(ctx: typer.Context) -> Any:
    """The store, without creating a database that is not there yet (status must not create one):
    AppState.store refuses that for every command that adds nothing."""
    return state(ctx).store


def status_data(store: Any, now: float) -> dict[str, Any]:
    """What `status --json` prints: daemons (alive or last seen), job counts, queues, paused queues."""
    from jobrunner.store import queries, rates

    daemons = queries.daemons(store, now)
    for daemon in daemons:
        daemon["free"] = max(daemon["workers"] - daemon["busy"], 0)
    counts = queries.stats(store)
    limits = rates.states(store, now)
    for name, queue in counts["queues"].items():  # a queue out of tokens with jobs queued is rate-limited
        limit = limits.get(name) or {"rate": None, "next_token_in": None}
        limited = limit["next_token_in"] is not None and queue["by_status"].get("queued", 0) > 0
        queue.update(rate=limit["rate"], rate_limited=limited, next_start_in=limit["next_token_in"] if limited else None)
    return {
        "database": redact_target(store.target),
        "alive": any(d["alive"] for d in daemons),
        "daemons": daemons,
        "jobs": counts["by_status"],
        "queues": counts["queues"],
        "paused_queues": queries.paused_queues(store),
    }


def status_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Tell whether a daemon is running on this database.

    It shows each daemon's heartbeat, pid, busy and free workers, and queues. Exit 3 if none runs.
    """
    data = status_data(_existing_store(ctx), time.time())
    if as_json:
        print_json(data)
    else:
        for line in status_lines(data):
            typer.echo(line)
    raise typer.Exit(0 if data["alive"] else NOT_RUNNING)


def status_lines(data: dict[str, Any]) -> list[str]:
    lines = [f"database  {data['database']}"]
    alive = [d for d in data["daemons"] if d["alive"]]
    for d in alive:
        beat = f"heartbeat {format_duration(d['heartbeat_age'])} ago, {d['state']}"
        if d["silent"]:  # queries.daemons: heard from longer ago than its own rhythm allows
            beat = f"no heartbeat for {format_duration(d['heartbeat_age'])}: reconnecting to the database, or stalled"
        lines.append(f"daemon    up: pid {d['pid']} on {d['host']}, jobrunner {d['version']}, {beat}")
        queues = ", ".join(d["queues"]) or "all"
        lines.append(f"          workers {d['workers']}: {d['busy']} busy, {d['free']} free; queues {queues}")
    if not alive:
        last = data["daemons"][0] if data["daemons"] else None
        seen = (
            f" (last seen: pid {last['pid']} on {last['host']}, {format_duration(max(last['heartbeat_age'], 0))} ago, "
            f"{last['state']})"
            if last
            else ""
        )
        lines.append(f"daemon    none running{seen}: start one with `jobrunner daemon` or its systemd unit")
    jobs = data["jobs"]
    shown = ("running", "queued", "scheduled", "retrying", "waiting", "dead")
    lines.append("jobs      " + ", ".join(f"{jobs.get(s, 0)} {s}" for s in shown))
    for name, queue in sorted(data["queues"].items()):
        by = queue["by_status"]
        paused = "  (paused)" if queue["paused"] else ""
        if queue.get("rate_limited"):
            paused += f"  (rate-limited: {queue['rate']}, next start in {format_duration(queue['next_start_in'])})"
        elif queue.get("rate"):
            paused += f"  (rate {queue['rate']})"
        lines.append(f"queue     {name}: {by.get('running', 0)} running, {by.get('queued', 0)} queued{paused}")
    paused_only = [q for q in data["paused_queues"] if q not in data["queues"]]
    for name in paused_only:
        lines.append(f"queue     {name}: empty  (paused)")
    return lines


# ---------------------------------------------------------------------------- doctor
@dataclass
class Check:
    name: str
    level: str  # ok, warn, fail
    message: str


def doctor_checks(ctx: typer.Context, now: float) -> list[Check]:
    """Every check, in order; a check that cannot run says why instead of raising."""
    current = state(ctx)
    checks: list[Check] = []
    config = None
    try:
        config = current.config
    except JobrunnerError as exc:
        checks.append(Check("config", "fail", str(exc)))
    else:
        checks.append(_config_check(config))
        checks += _import_checks(config)
    from jobrunner.machine_checks import limits_mechanism

    checks.append(Check("limits", "ok", limits_mechanism()))  # how memory and cpu_time are enforced
    from jobrunner.config import load_config, resolve_db_target

    place = config
    if place is None:  # a broken config still names the database (unless `db` itself is what is broken)
        with contextlib.suppress(JobrunnerError):
            place = load_config(current.config_option, on_problem=lambda problem: None)
    target = resolve_db_target(current.db_option, place)
    path = None if "://" in target else Path(target)
    trusted = _trust_checks(target)
    checks += trusted
    if any(check.level == "fail" for check in trusted):
        return checks  # every command refuses it; opening it could replay a planted WAL
    if path is not None:
        if not path.exists():
            hint = "it is created by the first submit or daemon" if path.parent.is_dir() else (
                f"its directory {path.parent} does not exist"
            )  # fmt: skip
            checks.append(Check("database", "warn" if path.parent.is_dir() else "fail",
                                f"no database at {path} yet: {hint}"))  # fmt: skip
            return checks
        checks += _file_checks(path)
    checks += _database_checks(target, config, now)
    return checks


def _config_check(config: Any) -> Check:
    from jobrunner.daemon.notify import notifiers_from_config
    from jobrunner.store.retention import retention_from_config

    try:
        notifiers = notifiers_from_config(config)
        retention = retention_from_config(config)
    except JobrunnerError as exc:
        return Check("config", "fail", str(exc))
    if config.path is None:
        return Check("config", "ok", "no config file: defaults apply")
    parts = [f"{len(config.tasks)} tasks", f"{len(config.queues)} queues", f"{len(config.schedules)} schedules"]
    if notifiers:
        parts.append("notify: " + ", ".join(f"{n.name} ({n.kind})" for n in notifiers))
    if retention:
        parts.append("retention: " + ", ".join(f"{s.value} {format_duration(a)}" for s, a in retention.items()))
    missing = [f"{n.name}: {n.password_env}" for n in notifiers if getattr(n, "password_env", None)
               and n.password_env not in os.environ]  # fmt: skip
    if missing:
        return Check("config", "warn", f"{config.path}: valid, but password_env not set here "
                     f"({'; '.join(missing)}): the daemon's environment needs it")  # fmt: skip
    return Check("config", "ok", f"{config.path}: {', '.join(parts)}")


# Run by `python -P -c` (no working directory on sys.path, as a daemon started by its console
# script has none): argv[1] is python_path, argv[2] the [owner, callable] pairs. The imported
# code's own output goes to stderr; one JSON line per callable goes to the real stdout.
_IMPORT_SCRIPT = """
import json, os, pkgutil, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.path[:0] = json.loads(sys.argv[1])
for owner, target in json.loads(sys.argv[2]):
    out.write(json.dumps([owner, None]) + "\\n")
    out.flush()
    try:
        error = None if callable(pkgutil.resolve_name(target)) else "it imports, but is not callable"
    except BaseException as exc:
        error = "cannot import it: " + (type(exc).__name__ + ": " + str(exc)).strip().splitlines()[0]
    out.write(json.dumps([owner, error or ""]) + "\\n")
    out.flush()
"""


def _import_checks(config: Any) -> list[Check]:
    """Import each configured callable as a worker would ([daemon] python_path first on sys.path),
    in child processes with one deadline: a broken or hanging import cannot take doctor down."""
    owners = {f"task {name}": table["callable"] for name, table in config.tasks.items() if "callable" in table}
    owners.update((f"schedule {name}", table["callable"]) for name, table in config.schedules.items()
                  if "callable" in table)  # fmt: skip
    if not owners:
        return []
    where = f"python_path: {', '.join(config.python_path)}" if config.python_path else "no [daemon] python_path in the config"
    deadline = time.monotonic() + IMPORT_TIMEOUT_S
    results: dict[str, str] = {}
    pending = list(owners.items())
    while pending and time.monotonic() < deadline:  # again after an import that ended the process
        results.update(_import_run(config.python_path, pending, deadline - time.monotonic()))
        pending = [(owner, target) for owner, target in pending if owner not in results]
    checks = []
    for owner, target in owners.items():
        error = results.get(owner, f"not tried: the check ran out of its {IMPORT_TIMEOUT_S:g}s")
        if error:
            level = "warn" if owner not in results else "fail"
            checks.append(Check("imports", level, f"{owner}: {target}: {error} ({where})"))
    if not checks:
        checks.append(Check("imports", "ok", f"{len(owners)} callable(s) import" +
                            (f" ({where})" if config.python_path else "")))  # fmt: skip
    return checks


def _import_run(python_path: tuple[str, ...], pending: list[tuple[str, str]], timeout: float) -> dict[str, str]:
    """One child importing `pending` in order: {owner: "" or why not}, up to the one that ended it."""
    argv = [sys.executable, "-P", "-c", _IMPORT_SCRIPT, json.dumps(python_path), json.dumps(pending)]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               start_new_session=True, text=True)  # fmt: skip
    try:
        out, _ = process.communicate(timeout=max(timeout, 0.1))
        ended = f"cannot import it: the import ended the process ({_exit_words(process.returncode)})"
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)  # and whatever the import started
        out, _ = process.communicate()
        ended = f"cannot import it: the import did not finish within {IMPORT_TIMEOUT_S:g}s"
    results: dict[str, str] = {}
    for line in out.splitlines():
        with contextlib.suppress(ValueError):  # a line cut short by the kill
            owner, error = json.loads(line)
            results[owner] = ended if error is None else error  # None: started, never finished
    if not results and pending:  # the interpreter itself did not start
        results[pending[0][0]] = ended
    return results


def _exit_words(code: int | None) -> str:
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"


def _trust_checks(target: str) -> list[Check]:
    """The trust model (README, Security): each file or directory another user could write fails,
    as every command refuses it."""
    from jobrunner.config import log_dir_for
    from jobrunner.trust import database_problems, log_dir_problems

    log_dir = log_dir_for(target)
    problems = log_dir_problems(log_dir) if "://" in target else database_problems(target, log_dir)
    if problems:
        return [Check("trust", "fail", problem) for problem in problems]
    what = "the log directory" if "://" in target else "the database, its directory and its log directory"
    return [Check("trust", "ok", f"{what}: only you (or root) can write them")]


def _file_checks(path: Path) -> list[Check]:
    checks = []
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    size = _size(info.st_size)
    if not os.access(path, os.R_OK | os.W_OK):
        checks.append(Check("database", "fail", f"{path} ({size}) is not readable and writable by this user"))
    elif not os.access(path.parent, os.W_OK):
        checks.append(Check("database", "fail", f"{path}: its directory {path.parent} is not writable "
                            "(SQLite needs it for the WAL and SHM files)"))  # fmt: skip
    else:
        checks.append(Check("database", "ok", f"{path} (SQLite, {size})"))
    loose = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists() and p.stat().st_mode & 0o077]
    if loose:
        listed = ", ".join(f"{p.name} {stat.S_IMODE(p.stat().st_mode):o}" for p in loose)
        checks.append(Check("permissions", "warn", f"readable by others ({listed}): jobs hold commands and "
                            f"environments; chmod 600 {path}*"))  # fmt: skip
    else:
        checks.append(Check("permissions", "ok", f"owner-only ({mode:o})"))
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        checks.append(Check("owner", "warn", f"{path} belongs to uid {info.st_uid}, not to you ({os.geteuid()})"))
    wal = Path(f"{path}-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    level = "warn" if wal_bytes > WAL_WARN_BYTES else "ok"
    hint = ": a running daemon checkpoints it; long-lived readers keep it from shrinking" if level == "warn" else ""
    checks.append(Check("wal", level, f"WAL {_size(wal_bytes)}{hint}"))
    return checks


def _database_checks(target: str, config: Any, now: float) -> list[Check]:
    from jobrunner.store import open_store, queries
    from jobrunner.store.migrations import SCHEMA_VERSION, current_version

    try:
        store = open_store(target, durability=config.durability if config else "normal", migrate=False)
    except JobrunnerError as exc:
        return [Check("database", "fail", str(exc))]
    try:
        version = current_version(store)
        if version > SCHEMA_VERSION:
            return [Check("schema", "fail", f"v{version} is newer than this jobrunner (v{SCHEMA_VERSION}): upgrade")]
        if version < SCHEMA_VERSION:
            return [Check("schema", "warn", f"v{version}: migrated to v{SCHEMA_VERSION} when next opened")]
        checks = [Check("schema", "ok", f"v{version}")]
        p = store.backend.param
        from jobrunner.store.migrations import NOT_QUEUED

        stale = store.execute(
            f"SELECT COUNT(*) FROM job WHERE status='running' AND {NOT_QUEUED} AND lease_until < {p}", (now,)
        ).fetchone()[0]
        daemons = [d for d in queries.daemons(store, now) if d["alive"]]
        if stale:
            who = "a running daemon recovers them shortly" if daemons else "start a daemon: it recovers them"
            checks.append(Check("leases", "warn", f"{stale} running job(s) with an expired lease: {who}"))
        else:
            checks.append(Check("leases", "ok", "no stale leases"))
        if daemons:
            listed = ", ".join(f"pid {d['pid']} on {d['host']} ({d['busy']}/{d['workers']} busy)" for d in daemons)
            checks.append(Check("daemon", "ok", f"alive: {listed}"))
        else:
            checks.append(Check("daemon", "warn", "none running: queued jobs wait (`jobrunner daemon`, or "
                                "`jobrunner systemd install --user`)"))  # fmt: skip
        return checks + _schedule_checks(store, config)
    except JobrunnerError as exc:
        return [Check("database", "fail", str(exc))]
    except Exception as exc:  # a damaged file: say so rather than a traceback
        return [Check("database", "fail", redact_text(f"{target}: {exc}", target))]
    finally:
        store.close()


def _schedule_checks(store: Any, config: Any) -> list[Check]:
    """A schedule the daemon marked broken fails; one that would not fire with the config read
    here warns (the daemon may run with another config)."""
    from jobrunner.store import schedules

    rows = schedules.all_schedules(store)
    checks = []
    for row in rows:
        hint = schedules.repair_hint(row)
        reason = schedules.broken_reason(row)
        if reason is not None:
            checks.append(Check("schedules", "fail", f"{row.name} is broken, the daemon skips it: {reason}; "
                                f"to fix it: {hint}"))  # fmt: skip
        elif config is not None and (reason := schedules.problem(row, config)) is not None:
            where = config.path or "no config file"
            checks.append(Check("schedules", "warn", f"{row.name} cannot fire with the config here ({where}): "
                                f"{reason}; the daemon marks it broken if its config is this one; "
                                f"to fix it: {hint}"))  # fmt: skip
    if not checks:
        checks.append(Check("schedules", "ok", f"{len(rows)}, none broken" if rows else "none"))
    return checks


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def doctor_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Check what could be wrong, and say how to fix it.

    It checks the database, its files and permissions, schema and WAL, the config, leases, daemon
    and schedules, and says how job resource limits are enforced. Exit 1 on a fail.
    """
    checks = doctor_checks(ctx, time.time())
    if as_json:
        print_json([{"check": c.name, "level": c.level, "message": c.message} for c in checks])
    else:
        for check in checks:
            typer.echo(f"{check.level:<5} {check.name:<12} {check.message}")
    raise typer.Exit(1 if any(c.level == "fail" for c in checks) else 0)


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
    app.command("doctor")(doctor_command)
