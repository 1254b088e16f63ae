"""Schedules in the database: add, list, pause, remove, and fire exactly once per fire time.

A fire inserts its job(s) and advances the schedule in one transaction, guarded by the
(schedule, fire_at) primary key of schedule_fire: two daemons or a restart mid-fire
cannot enqueue a fire time twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobrunner.domain.jobspec import JobSpec
from jobrunner.errors import NotFoundError, UsageError
from jobrunner.store import repo
from jobrunner.store.db import Store, guarded
from jobrunner.store.queries import iso

if TYPE_CHECKING:
    from jobrunner.config import Config

ACTIVE = ("queued", "scheduled", "waiting", "running", "retrying")
#: How last_note starts on a schedule that cannot fire (its task left the config, a field no
#: longer validates...); the reason follows. The daemon skips it until the row is replaced or
#: its config is reloaded (scheduler.Scheduler.load checks every schedule again).
BROKEN = "broken: "
COLUMNS = (
    "name", "source", "kind", "expression", "timezone", "job", "misfire", "misfire_grace",
    "max_running", "paused", "next_fire_at", "last_fire_at", "last_job_id", "missed", "last_note",
    "created_at", "updated_at",
)  # fmt: skip
#: The columns `schedule list --json` shows, the fire times as ISO text (ISO_COLUMNS); the API's
#: ScheduleOut (serve.schemas) is made from them and ScheduleRow's types.
VIEW_COLUMNS = COLUMNS[: COLUMNS.index("created_at")]
ISO_COLUMNS = ("next_fire_at", "last_fire_at")


@dataclass
class ScheduleRow:
    name: str
    source: str
    kind: str
    expression: str
    timezone: str
    job: dict[str, Any]
    misfire: str
    misfire_grace: float
    max_running: int
    paused: bool
    next_fire_at: float | None
    last_fire_at: float | None
    last_job_id: int | None
    missed: int
    last_note: str | None
    created_at: float
    updated_at: float


def _row(values: Sequence[Any]) -> ScheduleRow:
    data = dict(zip(COLUMNS, values, strict=True))
    data["job"] = json.loads(data["job"])
    data["paused"] = bool(data["paused"])
    return ScheduleRow(**data)


@guarded
def all_schedules(store: Store) -> list[ScheduleRow]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM schedule ORDER BY name"
    return [_row(r) for r in store.execute(sql).fetchall()]


@guarded
def get_schedule(store: Store, name: str) -> ScheduleRow:
    p = store.backend.param
    row = store.execute(f"SELECT {', '.join(COLUMNS)} FROM schedule WHERE name={p}", (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"no schedule named {name!r}; `jobrunner schedule list` shows them")
    return _row(row)


@guarded
def save_schedule(store: Store, row: ScheduleRow, replace: bool) -> None:
    """Insert a schedule; with `replace`, overwrite one of the same name (config reloads)."""
    p = store.backend.param
    with store.write():
        exists = store.execute(f"SELECT source FROM schedule WHERE name={p}", (row.name,)).fetchone()
        if exists and not replace:
            raise UsageError(f"a schedule named {row.name!r} exists already (from {exists[0]}): remove it first")
        if exists:
            store.execute(f"DELETE FROM schedule WHERE name={p}", (row.name,))
        values = [getattr(row, c) for c in COLUMNS]
        values[COLUMNS.index("job")] = json.dumps(row.job)
        store.execute(
            f"INSERT INTO schedule ({', '.join(COLUMNS)}) VALUES ({', '.join([p] * len(COLUMNS))})", values
        )


def broken_reason(row: ScheduleRow) -> str | None:
    """Why a schedule cannot fire, or None when it can."""
    note = row.last_note or ""
    return note[len(BROKEN) :] if note.startswith(BROKEN) else None


@guarded
def mark_broken(store: Store, name: str, reason: str, now: float) -> bool:
    """Record why a schedule cannot fire; False if that very reason was recorded already."""
    p = store.backend.param
    note = BROKEN + reason
    with store.write():
        return store.execute(
            f"UPDATE schedule SET last_note={p}, updated_at={p} "
            f"WHERE name={p} AND (last_note IS NULL OR last_note <> {p})",
            (note, now, name, note),
        ).rowcount == 1


@guarded
def clear_broken(store: Store, name: str, now: float) -> bool:
    """A schedule fires again: drop its broken mark. False if it had none."""
    p = store.backend.param
    with store.write():
        return store.execute(
            f"UPDATE schedule SET last_note=NULL, updated_at={p} WHERE name={p} AND last_note LIKE {p}",
            (now, name, BROKEN + "%"),
        ).rowcount == 1


def problem(row: ScheduleRow, config: Config) -> str | None:
    """Why this schedule could not fire under `config` (its timing or its job), or None."""
    from jobrunner.triggers import make_trigger

    try:
        make_trigger(row.kind, row.expression, row.timezone, row.created_at)
        job_spec_for(row, config)
    except Exception as exc:  # whatever it is, it is this schedule's and only this one's
        return describe_error(exc)
    return None


def describe_error(exc: BaseException) -> str:
    """One line for a schedule's error: our own errors by their message, anything else with its type too."""
    from jobrunner.errors import JobrunnerError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, JobrunnerError | ValueError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def repair_hint(row: ScheduleRow) -> str:
    """How a user gets a broken schedule firing again (or rid of it)."""
    reload = "then reload the daemon (SIGHUP, `systemctl reload jobrunner`) or restart it"
    if row.source == "config":
        return f"fix [schedules.{row.name}] (or the task it names) in the daemon's config, {reload}"
    remove = f"or remove the schedule: `jobrunner schedule remove {row.name}`"
    task = row.job.get("task")
    if task is not None:
        return f"restore [tasks.{task}] in the daemon's config, {reload}; {remove}"
    return f"fix the daemon's config, {reload}; {remove} (and add it again)"


@guarded
def remove_config_schedules_except(store: Store, keep: Sequence[str]) -> list[str]:
    """Config schedules no longer in the file are dropped on load; CLI ones stay."""
    p = store.backend.param
    with store.write():
        names = [r[0] for r in store.execute("SELECT name FROM schedule WHERE source='config'").fetchall()]
        gone = [n for n in names if n not in keep]
        for name in gone:
            store.execute(f"DELETE FROM schedule WHERE name={p}", (name,))
    return gone


@guarded
def set_paused(store: Store, name: str, paused: bool, now: float, next_fire_at: float | None = None) -> None:
    p = store.backend.param
    get_schedule(store, name)
    with store.write():
        store.execute(
            f"UPDATE schedule SET paused={p}, updated_at={p}, next_fire_at=COALESCE({p}, next_fire_at) "
            f"WHERE name={p}",
            (paused, now, next_fire_at, name),
        )


@guarded
def remove(store: Store, name: str) -> None:
    p = store.backend.param
    get_schedule(store, name)
    with store.write():
        store.execute(f"DELETE FROM schedule WHERE name={p}", (name,))
        store.execute(f"DELETE FROM schedule_fire WHERE schedule={p}", (name,))


@guarded
def active_runs(store: Store, name: str) -> int:
    p = store.backend.param
    marks = ", ".join([p] * len(ACTIVE))
    return int(
        store.execute(
            f"SELECT COUNT(*) FROM job WHERE schedule={p} AND status IN ({marks})", (name, *ACTIVE)
        ).fetchone()[0]
    )


@dataclass(frozen=True)
class FireResult:
    job_ids: list[int]
    missed: int
    note: str | None


def _submit_keyed(store: Store, spec: JobSpec, now: float) -> tuple[int | None, str]:
    """A fire's job with a unique key: (its id, "") or (None, why not). A held key skips the fire
    whatever on_conflict says, but replace (it cancels a job that has not started): a schedule
    never answers with somebody else's job, and a refusal must not break the schedule."""
    from jobrunner.errors import KeyHeldError
    from jobrunner.store.keys import submit_keyed

    try:
        done = submit_keyed(store, spec, now)
    except KeyHeldError as exc:
        return None, f"unique key {spec.unique_key!r} is held by job {exc.job_id} ({exc.status})"
    if not done.created:
        return None, f"unique key {spec.unique_key!r} is held by job {done.job_id}"
    return done.job_id, ""


@guarded
def fire(store: Store, name: str, expected_next: float | None, run_times: Sequence[float], missed: int,
         next_fire_at: float | None, make_spec: Callable[[ScheduleRow], JobSpec], now: float,
         manual: bool = False) -> FireResult | None:  # fmt: skip
    """Enqueue the jobs of due fire times and advance the schedule, in one transaction.

    Returns None when someone else (another daemon) fired it first.
    """
    p = store.backend.param
    with store.write():
        row = get_schedule(store, name)
        if not manual and row.next_fire_at != expected_next:
            return None
        note = None
        ids: list[int] = []
        runnable = list(run_times)
        room = row.max_running - active_runs(store, name) if runnable and not manual else len(runnable)
        if len(runnable) > max(room, 0):
            skipped = len(runnable) - max(room, 0)
            note = f"skipped {skipped} fire(s): previous run still active (max_running={row.max_running})"
            missed += skipped
            runnable = runnable[skipped:]  # keep the latest ones
        for fire_at in runnable:
            inserted = store.execute(
                f"INSERT INTO schedule_fire (schedule, fire_at) VALUES ({p}, {p}) ON CONFLICT DO NOTHING",
                (name, fire_at),
            ).rowcount
            if inserted != 1:
                continue  # this fire time was enqueued already
            spec = make_spec(row)
            if spec.unique_key is not None:  # a task's key held by a job not finished: this fire is skipped
                job_id, held = _submit_keyed(store, spec, now)
                if job_id is None:
                    if manual:  # `schedule run`: said at once, nothing written
                        raise UsageError(f"schedule {name!r} not run: {held}")
                    note = f"skipped a fire: {held}"
                    continue
            else:
                job_id = repo.submit(store, spec, now)
            store.execute(f"UPDATE job SET schedule={p} WHERE id={p}", (name, job_id))
            store.execute(
                f"UPDATE schedule_fire SET job_id={p} WHERE schedule={p} AND fire_at={p}", (job_id, name, fire_at)
            )
            ids.append(job_id)
        if missed and note is None:
            note = f"missed {missed} fire time(s) while the daemon was down or the schedule broken (misfire={row.misfire})"
        updates = f"missed=missed+{p}, updated_at={p}"
        params: list[Any] = [missed, now]
        if not manual:
            updates += f", next_fire_at={p}"
            params.append(next_fire_at)
        if ids:
            updates += f", last_fire_at={p}, last_job_id={p}"
            params += [max(runnable) if not manual else now, ids[-1]]
        if (note is not None or ids) and not (manual and broken_reason(row) is not None):
            updates += f", last_note={p}"
            params.append(note)
        store.execute(f"UPDATE schedule SET {updates} WHERE name={p}", [*params, name])
    return FireResult(ids, missed, note)


def schedule_view(store: Store, row: ScheduleRow) -> dict[str, Any]:
    """A schedule as `schedule list --json` prints it."""
    last_status = None
    if row.last_job_id is not None:
        found = store.execute(
            f"SELECT status FROM job WHERE id={store.backend.param}", (row.last_job_id,)
        ).fetchone()
        last_status = found[0] if found else None
    view = {column: getattr(row, column) for column in VIEW_COLUMNS}
    view.update({column: iso(view[column]) for column in ISO_COLUMNS})
    if isinstance(row.job.get("env"), dict):  # values may be secrets, as a task's are in GET /api/tasks
        from jobrunner.secrets import masked_env

        view["job"] = {**row.job, "env": masked_env(row.job["env"])}
    view.update(last_job_status=last_status, broken=broken_reason(row) is not None, error=broken_reason(row))
    return view


def job_spec_for(row: ScheduleRow, config: Config) -> JobSpec:
    """The job a schedule enqueues: its task's (with overrides), or its own fields, limits,
    timeout and retries included: the same check as the config's (config.schedule_spec)."""
    from jobrunner.config import schedule_spec

    return schedule_spec(row.name, row.job, config)


def describe(kind: str, expression: str) -> str:
    """A schedule's timing in words: `every day at 03:00`, `every 10m`, `once at ...`."""
    if kind == "cron":
        from jobrunner.domain.cron import parse_cron

        try:
            return parse_cron(expression).describe()
        except ValueError:  # a row an older version accepted: listed (and marked broken), not fatal
            return "not a valid cron expression"
    return f"every {expression}" if kind == "every" else f"once at {expression}"


def resume(store: Store, name: str, now: float) -> float | None:
    """Fire a paused schedule again from its next time after now (no burst of missed runs)."""
    from jobrunner.triggers import make_trigger, next_fire

    row = get_schedule(store, name)
    upcoming = next_fire(make_trigger(row.kind, row.expression, row.timezone, row.created_at), None, now)
    set_paused(store, name, False, now, next_fire_at=upcoming)
    return upcoming


def run_now(store: Store, name: str, config: Config, now: float) -> int:
    """Fire a schedule once, now, without moving its next time; returns the new job's id."""
    result = fire(store, name, None, [now], 0, None, lambda row: job_spec_for(row, config), now, manual=True)
    assert result is not None  # a manual fire is never pre-empted
    return result.job_ids[0]
