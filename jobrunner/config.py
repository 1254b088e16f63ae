"""Find and load jobs.toml into typed settings, and decide which database to use.

Lookup order (first wins): --config, $JOBRUNNER_CONFIG, ./jobs.toml,
$XDG_CONFIG_HOME/jobrunner/jobs.toml. No file at all is fine: defaults apply.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobrunner import trust
from jobrunner.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from jobrunner.domain.jobspec import JobSpec, SpecError
    from jobrunner.domain.rates import Rate
    from jobrunner.domain.states import Status

APP_NAME = "jobrunner"
TOP_KEYS = ("db", "durability", "tasks", "queues", "schedules", "daemon", "retention", "notify", "serve")
QUEUE_KEYS = ("concurrency", "scope", "rate", "description")
QUEUE_SCOPES = ("daemon", "global")
#: When and how a [schedules.NAME] table fires; its other keys are its job's (schedule_job_keys).
SCHEDULE_TIMING_KEYS = ("cron", "every", "at", "timezone", "misfire", "misfire_grace", "max_running", "enabled")
DURABILITY = ("normal", "full")
DAEMON_KEYS = ("python_path", "max_log_size")
# [notify.NAME] tables: checked here with the rest, built into notifiers by daemon/notify.py


@dataclass(frozen=True)
class QueueConfig:
    """Per-queue settings; `concurrency` caps how many of its jobs run at once (None: no cap),
    in each daemon (`scope` "daemon") or across every daemon on the database ("global");
    `rate` how many may start per second, minute or hour, across every daemon (None: no cap)."""

    name: str
    concurrency: int | None = None
    scope: str = "daemon"
    rate: Rate | None = None


@dataclass
class Config:
    """What the config file says, validated; `path` is None when there was no file."""

    path: Path | None = None
    db: str | None = None
    durability: str = "normal"
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)  # daemon, retention, notify
    notifiers: list[dict[str, Any]] = field(default_factory=list)  # checked [notify.NAME] settings
    retention: dict[Status, float] = field(default_factory=dict)  # finished status -> max age (s)
    python_path: tuple[str, ...] = ()  # absolute directories the workers import job callables from
    max_log_size: int | None = None  # [daemon] max_log_size: bytes, for jobs without their own

    def task_spec(self, name: str, overrides: dict[str, Any] | None = None) -> JobSpec:
        """The job a named task makes, with `overrides` (CLI options, JSON fields) on top."""
        from jobrunner.domain.jobspec import SpecError, build_spec

        try:
            return build_spec(self.task_fields(name, overrides), task=name)
        except SpecError as exc:
            if overrides and exc.key.split(".")[0] in overrides:
                raise  # the caller's own value, which it names (`--memory`, `line 3: memory`)
            raise ConfigError(f"task {name!r}: {exc}") from None

    def task_fields(self, name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """A task's fields with `overrides` on top, unchecked: for callers that name a bad
        override themselves (`schedules.X.memory`, `--memory`) rather than blame the task."""
        if name not in self.tasks:
            known = ", ".join(sorted(self.tasks)) or "none are defined"
            where = f" in {self.path}" if self.path else " (no config file found)"
            raise ConfigError(f"unknown task {name!r}{where}; known tasks: {known}")
        fields = {**self.tasks[name], **(overrides or {})}
        if overrides and ("command" in overrides or "callable" in overrides):
            fields.pop("callable" if "command" in overrides else "command", None)
        if overrides and "kwargs" in overrides and "kwargs" in self.tasks[name]:
            fields["kwargs"] = {**self.tasks[name]["kwargs"], **overrides["kwargs"]}
        return fields


def default_config_path() -> Path:
    """$XDG_CONFIG_HOME/jobrunner/jobs.toml."""
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME)) / "jobs.toml"


def default_db_path() -> Path:
    """$XDG_STATE_HOME/jobrunner/jobs.db (~/.local/state/jobrunner/jobs.db)."""
    from platformdirs import user_state_dir

    return Path(user_state_dir(APP_NAME)) / "jobs.db"


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to load, or None; an explicitly named file must exist."""
    chosen = explicit or os.environ.get("JOBRUNNER_CONFIG")
    if chosen:
        path = Path(chosen).expanduser()
        source = "--config" if explicit else "JOBRUNNER_CONFIG"
        if not path.is_file():
            raise ConfigError(f"config file {path} (from {source}) does not exist")
        problems = trust.config_problems(path)
        if problems:
            raise ConfigError(f"{problems[0]} (from {source})")
        return path
    for candidate in (Path.cwd() / "jobs.toml", default_config_path()):
        if candidate.is_file():
            problems = trust.config_problems(candidate)
            if not problems:
                return candidate
            # found, not chosen: one line, and the next candidate (an explicit one is refused)
            sys.stderr.write(f"jobrunner: warning: not reading {candidate}: {problems[0]}\n")
    return None


def load_config(explicit: str | os.PathLike[str] | None = None,
                on_problem: Callable[[ConfigError], None] | None = None) -> Config:  # fmt: skip
    """Find and parse the config; raises ConfigError naming the file and key.

    With `on_problem` (commands that only read), a mistake outside `db` and `durability` goes
    to it instead, and the config comes back with just those two: enough to find the database.
    """
    path = find_config(explicit)
    if path is None:
        return Config()
    import tomllib  # only when there is a file: most commands run without one

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if on_problem is None:
        return parse_config(data, path)
    try:
        return parse_config(data, path)
    except ConfigError as problem:
        place = Config(path=path)
        _read_place(data, place, lambda key, message: ConfigError(f"{path}: {key}: {message}"))
        on_problem(problem)  # only once the database can still be found
        return place


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    """Validate a parsed TOML document; every error names its key."""
    # here, not at the top: `jobrunner list` with no config file never needs them
    from jobrunner.config_checks import check_notifiers, check_serve, parse_retention
    from jobrunner.domain.jobspec import SpecError, build_spec, unknown_key_message

    where = str(path) if path else "config"

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {message}")

    for key in data:
        if key not in TOP_KEYS:
            raise fail(key, unknown_key_message(key, TOP_KEYS))
    config = Config(path=path)
    _read_place(data, config, fail)

    for name, table in _tables(data, "tasks", fail).items():
        fields = {k: v for k, v in table.items() if k != "description"}
        try:
            build_spec(fields, task=name)
        except SpecError as exc:
            raise fail(f"tasks.{name}.{exc.key}" if exc.key else f"tasks.{name}", _tail(exc)) from None
        config.tasks[name] = fields

    for name, table in _tables(data, "queues", fail).items():
        for key in table:
            if key not in QUEUE_KEYS:
                raise fail(f"queues.{name}", unknown_key_message(key, QUEUE_KEYS))
        concurrency = table.get("concurrency")
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise fail(f"queues.{name}.concurrency", f"{concurrency!r} must be a whole number >= 1")
        scope = table.get("scope", "daemon")
        if scope not in QUEUE_SCOPES:
            raise fail(f"queues.{name}.scope", f"{scope!r} must be \"daemon\" (each daemon) or \"global\" (all daemons)")
        if scope == "global" and concurrency is None:
            raise fail(f"queues.{name}.scope", "a global scope needs a concurrency to apply to")
        rate = None
        if "rate" in table:
            from jobrunner.domain.rates import parse_rate

            try:
                rate = parse_rate(table["rate"])
            except ValueError as exc:
                raise fail(f"queues.{name}.rate", str(exc)) from None
        config.queues[name] = QueueConfig(name=name, concurrency=concurrency, scope=scope, rate=rate)

    for name, table in _tables(data, "schedules", fail).items():
        schedule_keys = (*SCHEDULE_TIMING_KEYS, *schedule_job_keys())
        for key in table:
            if key not in schedule_keys:
                raise fail(f"schedules.{name}", unknown_key_message(key, schedule_keys))
        if sum(k in table for k in ("cron", "every", "at")) != 1:
            raise fail(f"schedules.{name}", "give exactly one of cron, every or at")
        if sum(k in table for k in ("task", "command", "callable")) != 1:
            raise fail(f"schedules.{name}", "give exactly one of task, command or callable")
        if "task" in table and table["task"] not in config.tasks:
            raise fail(f"schedules.{name}.task", f"unknown task {table['task']!r}")
        _check_schedule(table, f"schedules.{name}", fail)
        try:
            schedule_spec(name, schedule_job(table), config)
        except SpecError as exc:
            raise fail(f"schedules.{name}.{exc.key}" if exc.key else f"schedules.{name}", _tail(exc)) from None
        config.schedules[name] = dict(table)

    for section in ("daemon", "retention", "notify", "serve"):
        if section in data:
            if not isinstance(data[section], dict):
                raise fail(section, "must be a table")
            config.sections[section] = data[section]
    config.python_path = _python_path(config.sections.get("daemon", {}), path, fail)
    config.max_log_size = _max_log_size(config.sections.get("daemon", {}), fail)
    config.retention = parse_retention(config.sections.get("retention"), where)
    config.notifiers = check_notifiers(config.sections.get("notify"), where)
    check_serve(config.sections.get("serve"), where)  # `jobrunner serve`'s table, read by jobrunner.serve
    return config


def _read_place(data: dict[str, Any], config: Config, fail: Any) -> None:
    """`db` and `durability`: what even a command that only reads needs to find the database."""
    db = data.get("db")
    if db is not None:
        if not isinstance(db, str) or not db:
            raise fail("db", "must be a path or a URL string")
        if "://" not in db and config.path is not None:
            db = str((config.path.parent / Path(db).expanduser()).resolve())
        config.db = db
    durability = data.get("durability", "normal")
    if durability not in DURABILITY:
        raise fail("durability", f"{durability!r} must be one of {', '.join(DURABILITY)}")
    config.durability = durability


def _python_path(section: dict[str, Any], path: Path | None, fail: Any) -> tuple[str, ...]:
    """[daemon] python_path: directories (relative to the config file) put first on the workers' sys.path."""
    from jobrunner.domain.jobspec import unknown_key_message

    for key in section:
        if key not in DAEMON_KEYS:
            raise fail("daemon", unknown_key_message(key, DAEMON_KEYS))
    value = section.get("python_path", [])
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(
        isinstance(e, str) and e.strip() and not any(ord(c) < 32 for c in e) for e in entries
    ):
        raise fail("daemon.python_path", 'give a list of directories, like ["src", "/opt/app"]')
    base = path.parent if path is not None else Path.cwd()
    return tuple(dict.fromkeys(str((base / Path(e).expanduser()).resolve()) for e in entries))


def _max_log_size(section: dict[str, Any], fail: Any) -> int | None:
    """[daemon] max_log_size: the cap of a job's log for jobs that set none (None: no cap)."""
    if section.get("max_log_size") is None:
        return None
    from jobrunner.domain.jobspec import SpecError, log_size_limit

    try:
        return log_size_limit("daemon.max_log_size", section["max_log_size"])
    except SpecError as exc:
        raise fail(exc.key, _tail(exc)) from None


def schedule_job_keys() -> tuple[str, ...]:
    """A schedule's job: a task (its other keys override the task's), or a job of its own, with
    any key a task takes (memory, timeout, retries...). A function: jobspec loads only when needed."""
    from jobrunner.domain.jobspec import JOB_KEYS

    return ("task", *JOB_KEYS)


def schedule_job(table: dict[str, Any]) -> dict[str, Any]:
    """The job fields of a [schedules.NAME] table, as its row stores them."""
    return {key: table[key] for key in schedule_job_keys() if key in table}


def schedule_spec(name: str, job: dict[str, Any], config: Config) -> JobSpec:
    """The job schedule `name` fires: its task's with its own `job` fields on top, or its own,
    checked as a submit checks it; a bad field raises SpecError naming the field, not the task."""
    from jobrunner.domain.jobspec import build_spec

    fields = dict(job)
    task = fields.pop("task", None)
    if task is not None:
        return build_spec(config.task_fields(task, fields), task=task)
    return build_spec({"name": name, **fields})


def _check_schedule(table: dict[str, Any], where: str, fail: Any) -> None:
    """Reject at load time what would otherwise only fail when the daemon fires it."""
    from jobrunner.domain.cron import CronError, parse_cron
    from jobrunner.domain.durations import parse_duration

    try:
        if "cron" in table:
            parse_cron(str(table["cron"]))
        if "every" in table and parse_duration(table["every"]) < 1:
            raise ValueError("the interval must be at least 1s")
        if "misfire_grace" in table:
            parse_duration(table["misfire_grace"])
    except (CronError, ValueError) as exc:
        key = next(k for k in ("cron", "every", "misfire_grace") if k in table)
        raise fail(f"{where}.{key}", str(exc)) from None
    if table.get("misfire", "coalesce") not in ("coalesce", "skip", "all"):
        raise fail(f"{where}.misfire", f"{table['misfire']!r} must be coalesce, skip or all")
    running = table.get("max_running", 1)
    if isinstance(running, bool) or not isinstance(running, int) or running < 1:
        raise fail(f"{where}.max_running", f"{running!r} must be a whole number >= 1")
    if "timezone" in table:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(str(table["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise fail(f"{where}.timezone", f"unknown timezone {table['timezone']!r}") from None


def _tables(data: dict[str, Any], key: str, fail: Any) -> dict[str, dict[str, Any]]:
    from jobrunner.domain.jobspec import NAME_PATTERN

    tables = data.get(key, {})
    if not isinstance(tables, dict):
        raise fail(key, f"must be tables like [{key}.NAME]")
    for name, table in tables.items():
        if not NAME_PATTERN.match(name):
            raise fail(f"{key}.{name}", "names use letters, digits, '_', '-' and '.'")
        if not isinstance(table, dict):
            raise fail(f"{key}.{name}", f"must be a table [{key}.{name}]")
    return tables


def _tail(exc: SpecError) -> str:
    text = str(exc)
    return text[len(exc.key) + 2 :] if exc.key and text.startswith(exc.key + ": ") else text


def resolve_db_target(explicit: str | None, config: Config | None) -> str:
    """--db, then $JOBRUNNER_DB, then `db` in the config, then the XDG state default."""
    for value in (explicit, os.environ.get("JOBRUNNER_DB"), config.db if config else None):
        if value:
            return value if "://" in value else str(Path(value).expanduser())
    path = default_db_path()
    from jobrunner.trust import make_private_dirs

    make_private_dirs(path.parent)  # the default place always works; owner-only whatever the umask
    return str(path)


def check_sqlite_path(path: Path) -> None:
    """Refuse a database path that cannot be a SQLite file, before anything is created beside it
    (the daemon makes its log directory there before it opens the database)."""
    if path.is_dir():
        raise UsageError(f"database path {path} is a directory: give a file path, e.g. {path}/jobs.db")
    if not path.parent.exists():
        raise UsageError(f"directory {path.parent} for the database does not exist: create it first")


def log_dir_for(db_target: str) -> str:
    """Where job logs go: beside a SQLite file (jobs.db -> jobs.logs/); for a URL, a directory of
    its own in the XDG state dir, named from a hash of the URL without its password (two
    databases on one server must not share `ID.log` names, nor one's retention the other's)."""
    if "://" in db_target:
        import hashlib

        from platformdirs import user_state_dir

        from jobrunner.secrets import without_password

        digest = hashlib.sha256(without_password(db_target).encode()).hexdigest()[:16]
        return str(Path(user_state_dir(APP_NAME)) / f"logs-{digest}")
    path = Path(db_target)
    return str(path.parent / f"{path.stem}.logs")
