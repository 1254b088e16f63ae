"""The schema as peewee models. Times are UTC epoch seconds (REAL): cheap to index and compare.

JSON-valued columns (command, args, kwargs, tags, metadata, env, result, ...) are TEXT.
"""

from __future__ import annotations

from peewee import (
    SQL,
    AutoField,
    BigIntegerField,
    BooleanField,
    CompositeKey,
    DatabaseProxy,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

database = DatabaseProxy()


def db_default(value: object) -> list[SQL]:
    """A default the database applies too: hot statements insert rows without peewee."""
    if isinstance(value, bool):
        literal = "TRUE" if value else "FALSE"
    else:
        literal = f"'{value}'" if isinstance(value, str) else str(value)
    return [SQL(f"DEFAULT {literal}")]


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Job(BaseModel):
    id = AutoField()  # never reused (schema v8: see backends.NEXT_JOB_ID): a stale finish cannot hit a new job
    name = TextField()
    kind = TextField()  # "shell" or "python"
    task = TextField(null=True)  # the [tasks.NAME] it came from
    command = TextField(null=True)  # JSON list of argv
    callable = TextField(null=True)  # "package.module:function"
    args = TextField(default="[]", constraints=db_default("[]"))
    kwargs = TextField(default="{}", constraints=db_default("{}"))
    queue = TextField(default="default", constraints=db_default("default"))
    priority = IntegerField(default=5, constraints=db_default(5))
    status = TextField()
    attempts = IntegerField(
        default=0, constraints=db_default(0)
    )  # attempts started, ever; never reused, so stale workers lose
    max_retries = IntegerField(default=0, constraints=db_default(0))
    retry_offset = IntegerField(
        default=0, constraints=db_default(0)
    )  # attempts at the last manual retry: a fresh budget
    timeout = DoubleField(null=True)
    backoff_base = DoubleField(default=1.0, constraints=db_default(1.0))
    backoff_factor = DoubleField(default=2.0, constraints=db_default(2.0))
    backoff_max = DoubleField(default=300.0, constraints=db_default(300.0))
    retry_on = TextField(default="[]", constraints=db_default("[]"))
    retry_on_exit_codes = TextField(default="[]", constraints=db_default("[]"))
    tags = TextField(default="[]", constraints=db_default("[]"))
    metadata = TextField(default="{}", constraints=db_default("{}"))
    cwd = TextField(null=True)
    env = TextField(default="{}", constraints=db_default("{}"))
    created_at = DoubleField()
    run_at = DoubleField()  # not before this time
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)
    updated_at = DoubleField()
    lease_owner = TextField(null=True)
    lease_until = DoubleField(null=True)
    cancel_requested = BooleanField(default=False, constraints=db_default(False))
    progress = DoubleField(null=True)
    progress_message = TextField(null=True)
    exit_code = IntegerField(null=True)
    result = TextField(null=True)
    error = TextField(null=True)
    log_path = TextField(null=True)
    schedule = TextField(null=True)  # the schedule that fired it (schema v3)
    # at most one unfinished job per key (schema v9: the partial unique index job_unique_key)
    unique_key = TextField(null=True)
    # resource limits (schema v10), NULL for none: bytes, CPU seconds, bytes of log
    memory_limit = BigIntegerField(null=True)
    cpu_time_limit = DoubleField(null=True)
    max_log_size = BigIntegerField(null=True)


class Event(BaseModel):
    """One row per state change: the history `show` prints, attempt by attempt."""

    id = AutoField()
    job = ForeignKeyField(Job, on_delete="CASCADE", column_name="job_id")
    at = DoubleField()
    attempt = IntegerField(default=0, constraints=db_default(0))
    from_status = TextField(null=True)
    to_status = TextField()
    message = TextField(null=True)
    details = TextField(null=True)  # JSON: traceback, exit code, signal


class QueueState(BaseModel):
    """Runtime state of a queue that users change from the CLI (pause/resume)."""

    name = TextField(primary_key=True)
    paused = BooleanField(default=False, constraints=db_default(False))
    updated_at = DoubleField()


class Meta(BaseModel):
    """Key/value facts about the database itself, such as the schema version."""

    key = TextField(primary_key=True)
    value = TextField()


class Daemon(BaseModel):
    """A running (or lately running) daemon, kept fresh by its heartbeat; the TUI and `status` read it."""

    id = TextField(primary_key=True)  # the lease owner name: host:pid:random
    host = TextField()
    pid = IntegerField()
    version = TextField()
    started_at = DoubleField()
    heartbeat_at = DoubleField()
    workers = IntegerField(default=0, constraints=db_default(0))
    busy = IntegerField(default=0, constraints=db_default(0))
    queues = TextField(default="[]", constraints=db_default("[]"))  # JSON list; [] means all
    state = TextField(default="running", constraints=db_default("running"))  # running, stopping, stopped
    heartbeat_every = DoubleField(null=True)  # seconds between its heartbeats (NULL: the default, 5)


class Schedule(BaseModel):
    """A cron, interval or one-off schedule; the row is the truth about what fired when."""

    name = TextField(primary_key=True)
    source = TextField()  # "config" (from jobs.toml, replaced on load) or "cli"
    kind = TextField()  # cron, every, at
    expression = TextField()
    timezone = TextField()
    job = TextField()  # JSON: {"task": ...} or job fields, as in a JSON line of bulk submit
    misfire = TextField(default="coalesce", constraints=db_default("coalesce"))
    misfire_grace = DoubleField(default=3600.0, constraints=db_default(3600.0))
    max_running = IntegerField(default=1, constraints=db_default(1))
    paused = BooleanField(default=False, constraints=db_default(False))
    next_fire_at = DoubleField(null=True)
    last_fire_at = DoubleField(null=True)
    last_job_id = IntegerField(null=True)
    missed = IntegerField(default=0, constraints=db_default(0))
    last_note = TextField(null=True)  # why the last fire time did not run, if it did not
    created_at = DoubleField()
    updated_at = DoubleField()


class ScheduleFire(BaseModel):
    """One row per (schedule, fire time): the unique key that makes a fire happen once."""

    schedule = TextField()
    fire_at = DoubleField()
    job_id = IntegerField(null=True)

    class Meta:
        primary_key = CompositeKey("schedule", "fire_at")


class QueueRate(BaseModel):
    """A queue's token bucket (schema v9): `[queues.NAME] rate` as every daemon on the database
    shares it. Each start takes a token; tokens come back at `per_second`, up to `capacity`."""

    queue = TextField(primary_key=True)
    rate = TextField()  # as configured: "30/m"
    per_second = DoubleField()
    capacity = DoubleField()
    tokens = DoubleField()  # as of updated_at
    updated_at = DoubleField()


MODELS = [Job, Event, QueueState, Meta, Daemon, Schedule, ScheduleFire, QueueRate]
