"""Edit a job that has not started, or a dead or cancelled one before it is retried.

One transaction reads the job (locked on PostgreSQL: a claim skips it meanwhile), checks the
new fields with build_spec (the words of a submit), writes what changed and an event naming
each change, old → new; with `retry` it then puts the job back in the queue, in the same
transaction, so a refused retry leaves the job as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobrunner.domain import edits
from jobrunner.domain.jobspec import JobSpec, SpecError, build_spec
from jobrunner.domain.states import RETRYABLE, Status
from jobrunner.errors import NotFoundError, UsageError
from jobrunner.store import queries, repo
from jobrunner.store.db import Store, guarded

_JSON_KEYS = frozenset(
    {"command", "args", "kwargs", "retry_on", "retry_on_exit_codes", "tags", "metadata", "env"}
)


@dataclass(frozen=True)
class Edited:
    """What an edit did: the keys it changed (none: the job was left alone), in words too."""

    job_id: int
    old_status: Status
    status: Status
    changed: list[str]
    description: str
    retried: list[repo.Outcome] = field(default_factory=list)


def refusal(job_id: int, status: Status, retry: bool) -> str | None:
    """Why this job cannot be edited (or edited and retried) now, or None."""
    if retry and status not in RETRYABLE:
        return (f"nothing retried: job {job_id} is {status.value} (only dead, cancelled or retrying jobs can "
                "be retried; `jobrunner edit` changes one that has not started)")  # fmt: skip
    if status not in edits.EDITABLE:
        return f"job {job_id} is {status.value}: {edits.EDITABLE_TEXT} can be edited"
    return None


@guarded
def read_job(store: Store, job_id: int, lock: bool = False) -> dict[str, Any]:
    """The job as queries.job_to_dict gives it; with `lock`, its row locked until the commit
    (PostgreSQL; SQLite's BEGIN IMMEDIATE keeps every other writer out already)."""
    p = store.backend.param
    suffix = " FOR UPDATE" if lock and not store.is_sqlite else ""
    row = store.execute(
        f"SELECT {', '.join(queries.JOB_COLUMNS)} FROM job WHERE id = {p}{suffix}", (job_id,)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no job with id {job_id}; `jobrunner list` shows the ids")
    return queries.job_to_dict(row)


@guarded
def edit_job(
    store: Store,
    job_id: int,
    changes: Mapping[str, Any],
    now: float,
    *,
    whole: bool = False,
    add_to_mappings: bool = False,
    expect: dict[str, Any] | None = None,
    retry: bool = False,
    check: Callable[[JobSpec, list[str]], None] | None = None,
) -> Edited:
    """Change a job's fields, as a submit would have set them; raises SpecError naming a bad
    key (the caller words it as its submit does), UsageError for a job in the wrong state.

    `changes` replace the current values (None: back to the default), or with `whole` are
    every field (the JSON `retry --edit` opened); `add_to_mappings` adds kwargs, env and
    metadata names to the current ones (--arg, --env, --meta). `expect` is the job's fields as
    the user saw them: when the job changed since, nothing is written. `check(spec, keys)` may
    refuse the new fields knowing which keys changed (the CLI looks at this machine when the
    cwd or the callable did, as a submit does).
    """
    for key in changes:
        if key in edits.NOT_EDITABLE:
            raise SpecError(
                key, "cannot be edited: it says which job this is (submit a new job with another key)"
            )
    with store.write():
        job = read_job(store, job_id, lock=True)
        status = Status(job["status"])
        why = refusal(job_id, status, retry)
        if why:
            raise UsageError(why)
        current = edits.stored_fields(job)
        if expect is not None:
            moved = edits.differences(expect, current)
            if moved:
                raise UsageError(f"job {job_id} changed while it was being edited ({', '.join(moved)}): "
                                 "nothing changed; edit it again")  # fmt: skip
        fields = (
            dict(changes) if whole else edits.merge(current, dict(changes), add_to_mappings=add_to_mappings)
        )
        spec = build_spec(fields, task=job["task"])
        new = edits.spec_fields(spec)
        keys = edits.differences(current, new)
        if check is not None:
            check(spec, keys)  # it may settle a value (a relative cwd made absolute)
            new = edits.spec_fields(spec)
            keys = edits.differences(current, new)
        description = edits.describe(current, new, keys)
        if keys:
            _write(store, job, spec, new, keys, now)
            store.execute(
                store.backend.insert_event,
                (job_id, now, job["attempts"], status.value, status.value, f"edited: {description}",
                 json.dumps(edits.change_details(current, new, keys), default=str)),
            )  # fmt: skip
        if retry:
            from jobrunner.store.bulk import key_conflict

            held = key_conflict(store, job_id)
            if held:
                raise UsageError(f"nothing retried: {held}")
        outcomes = repo.retry(store, [job_id], now) if retry else []
    final = next((o.new for o in outcomes if o.job_id == job_id), status)
    return Edited(job_id, status, final, keys, description, outcomes)


def _write(store: Store, job: dict[str, Any], spec: JobSpec, new: dict[str, Any], keys: list[str],
           now: float) -> None:  # fmt: skip
    from jobrunner.store.models import Job

    columns: dict[str, Any] = {}
    for key in keys:
        value = new.get(key)
        if key == "backoff":
            columns.update(
                backoff_base=value["base"], backoff_factor=value["factor"], backoff_max=value["max"]
            )
            continue
        column = edits.spec_attribute(key)
        if column not in Job._meta.columns:
            raise SpecError(key, "cannot be edited")
        if key in _JSON_KEYS or isinstance(value, list | dict):
            value = None if value is None else json.dumps(value, separators=(",", ":"), default=str)
        columns[column] = value
    if spec.kind != job["kind"]:
        columns["kind"] = spec.kind
    columns["updated_at"] = now
    p = store.backend.param
    assignments = ", ".join(f"{column}={p}" for column in columns)
    store.execute(f"UPDATE job SET {assignments} WHERE id={p}", [*columns.values(), job["id"]])
