"""`jobrunner edit ID [OPTIONS] [-- COMMAND...]` and `jobrunner retry ID --edit`.

Options change fields as `submit`'s options set them, checked by the same build_spec with the
same words; with none, or with `retry --edit`, $VISUAL or $EDITOR (else vi) opens the job's
fields as JSON. A file that no longer parses or validates is refused in one line, and the job
is left as it was; so is a job that changed (or started) while the editor was open.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobrunner.cli import limit_options
from jobrunner.cli.context import parse_job_ids, state
from jobrunner.cli.jobs import DASHDASH, BackoffOption, SubmitCommand
from jobrunner.cli.output import print_json
from jobrunner.cli.submit import OPTION_NAMES, check_here, parse_env, parse_pairs, read_env_file
from jobrunner.domain.jobspec import SpecError
from jobrunner.errors import JobrunnerError, UsageError

if TYPE_CHECKING:
    from jobrunner.cli.context import AppState
    from jobrunner.store.edits import Edited


def option_error(exc: SpecError) -> UsageError:
    """A bad value, worded as `submit` words it: the option first (`--timeout: ...`)."""
    key = exc.key.split(".")[0]
    if key in OPTION_NAMES:
        return UsageError(f"{OPTION_NAMES[key]}: {str(exc)[len(exc.key) + 2 :]}")
    return UsageError(str(exc))


def changes_from_options(words: list[str], after_dashdash: int | None, *, call: str | None,
                         arg: list[str] | None, name: str | None, queue: str | None,
                         priority: str | None, retries: int | None, timeout: str | None,
                         backoff: str | None, tag: list[str] | None, meta: list[str] | None,
                         env: list[str] | None, env_file: str | None, cwd: str | None,
                         memory: str | None = None, cpu_time: str | None = None,
                         max_log_size: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The fields the options set, as submit_job reads the same options."""
    command = words[len(words) - after_dashdash :] if after_dashdash is not None else []
    if len(command) != len(words):
        extra = " ".join(words[: len(words) - len(command)])
        raise UsageError(f"unexpected words {extra!r}: edit takes one job id; put a new command after --, "
                         "e.g. jobrunner edit 12 -- ./report.sh")  # fmt: skip
    changes: dict[str, Any] = {}
    for key, value in (("name", name), ("queue", queue), ("priority", priority), ("retries", retries),
                       ("timeout", timeout), ("backoff", backoff), ("cwd", cwd), ("memory", memory),
                       ("cpu_time", cpu_time), ("max_log_size", max_log_size)):  # fmt: skip
        if value is not None:
            changes[key] = value
    if tag is not None:
        changes["tags"] = [t for item in tag for t in item.split(",") if t]
    if meta:
        changes["metadata"] = parse_pairs(meta, "--meta", decode=True)
    if env or env_file:
        changes["env"] = {**(read_env_file(env_file) if env_file else {}), **parse_env(env or [])}
    if call:
        changes["callable"] = call
        if command:
            changes["args"] = [_json_or_text(word) for word in command]
    elif command:
        changes["command"] = command
    if arg:
        changes["kwargs"] = parse_pairs(arg, "--arg", decode=True)
    return changes


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def edit_with_options(app_state: AppState, job_id: int, changes: dict[str, Any], as_json: bool) -> None:
    from jobrunner.store.edits import edit_job

    def check(spec: Any, keys: list[str]) -> None:
        if "kwargs" in changes and spec.kind == "shell":
            raise UsageError("--arg is for Python callables (--call or a callable task)")
        _check_if_moved(spec, keys, app_state)

    try:
        edited = edit_job(app_state.store, job_id, changes, time.time(), add_to_mappings=True, check=check)
    except SpecError as exc:
        raise option_error(exc) from None
    say(edited, as_json)


def say(edited: Edited, as_json: bool) -> None:
    """`job 12: priority normal → high; timeout none → 10m` (then the retry, if any)."""
    if as_json:
        print_json({
            "id": edited.job_id, "status": edited.status.value, "changed": edited.changed,
            "message": edited.description,
            "retried": [{"id": o.job_id, "from": o.old.value, "to": o.new.value, "message": o.message}
                        for o in edited.retried],
        })  # fmt: skip
        return
    typer.echo(f"job {edited.job_id}: {edited.description or 'nothing changed'}")
    for o in edited.retried:
        change = o.new.value if o.old == o.new else f"{o.old.value} -> {o.new.value}"
        typer.echo(f"job {o.job_id}: {change}" + ("" if o.message == o.new.value else f" ({o.message})"))


def editor_command() -> list[str]:
    """$VISUAL, else $EDITOR, else vi (on a terminal), split as a shell would ("code --wait")."""
    text = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not text and not sys.stdin.isatty():  # a script, a pipe: vi would wait for a terminal
        raise UsageError("no editor to open: set VISUAL or EDITOR, or give the changes as options "
                         "(jobrunner edit --help)")  # fmt: skip
    text = text or "vi"
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot read the editor command {text!r} (VISUAL or EDITOR): {exc}") from None
    return words or ["vi"]


def edit_in_editor(app_state: AppState, job_id: int, retry: bool, as_json: bool) -> None:
    """Open the job's fields in the editor, then store the file's fields (and retry the job)."""
    from jobrunner.domain import edits
    from jobrunner.domain.states import Status
    from jobrunner.store import edits as store_edits

    store = app_state.store
    job = store_edits.read_job(store, job_id)
    why = store_edits.refusal(job_id, Status(job["status"]), retry)
    if why:
        raise UsageError(why)
    base = edits.stored_fields(job)
    label = f"job-{job_id}.json"
    text = json.dumps(edits.for_user(base), indent=2, ensure_ascii=False) + "\n"
    edited_text = _edit_text(text, label, job_id)
    left = f"job {job_id} left as it was"
    try:
        fields = json.loads(edited_text)
    except ValueError as exc:
        raise UsageError(f"{label}: invalid JSON: {exc}; {left}") from None
    except RecursionError:
        raise UsageError(f"{label}: nested too deep; {left}") from None
    if not isinstance(fields, dict):
        raise UsageError(f"{label}: expected a JSON object, got {type(fields).__name__}; {left}")
    try:
        edited = store_edits.edit_job(store, job_id, fields, time.time(), whole=True, expect=base, retry=retry,
                                      check=lambda spec, keys: _check_if_moved(spec, keys, app_state))  # fmt: skip
    except SpecError as exc:
        raise UsageError(f"{label}: {exc}; {left}") from None
    say(edited, as_json)


def _check_if_moved(spec: Any, keys: list[str], app_state: AppState) -> None:
    """What a submit checks on this machine, when the cwd or the callable changed."""
    if "cwd" in keys or "callable" in keys:
        check_here(spec, app_state)


def _run_editor(argv: list[str]) -> int:
    """The editor's exit code. Ctrl-C and Ctrl-\\ belong to the editor meanwhile (vi uses them), as
    git does it: jobrunner ignores them with a handler of its own, which exec resets in the child."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return subprocess.call(argv)
    saved = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGQUIT)}
    try:
        return subprocess.call(argv)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _edit_text(text: str, label: str, job_id: int) -> str:
    """What the user saved in the editor (a private temporary file, removed afterwards)."""
    argv = editor_command()
    folder = tempfile.mkdtemp(prefix="jobrunner-edit-")  # 0700: env values may be in the file
    path = Path(folder) / label
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            code = _run_editor([*argv, str(path)])
        except OSError as exc:
            raise UsageError(
                f"cannot run the editor {argv[0]!r}: {exc.strerror or exc}; set VISUAL or EDITOR"
            ) from None
        if code != 0:
            raise JobrunnerError(
                f"the editor ({argv[0]}) exited with code {code}: job {job_id} left as it was"
            )
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{label}: not UTF-8 text; job {job_id} left as it was") from None
        except OSError as exc:
            raise UsageError(
                f"{label}: cannot read it back: {exc.strerror}; job {job_id} left as it was"
            ) from None
    finally:
        for leftover in Path(folder).iterdir():  # the editor's swap or backup files too
            leftover.unlink(missing_ok=True)
        os.rmdir(folder)


def edit_command(
    ctx: typer.Context,
    words: Annotated[
        list[str],
        typer.Argument(
            metavar="ID [-- COMMAND...]",
            show_default=False,
            help="The job to change; a new shell command after --.",
        ),
    ],
    call: Annotated[
        str | None,
        typer.Option(
            "--call", "-c", metavar="MODULE:FUNCTION", help="Run this callable instead (drops the command)."
        ),
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            "-a",
            metavar="KEY=VALUE",
            help="Set one keyword argument of the callable (VALUE read as JSON when it parses); "
            "the others stay. Repeatable.",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", metavar="NAME", help="A new name.")] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", metavar="NAME", help="Move it to this queue.")
    ] = None,
    priority: Annotated[
        str | None,
        typer.Option("--priority", "-p", metavar="LEVEL", help="Low, normal, high, critical, or 0-9."),
    ] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", "-r", metavar="N", help="How often to retry a failed attempt.")
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", "-t", metavar="DURATION", help="Stop an attempt that runs longer (30s, 10m, 1h)."
        ),
    ] = None,
    backoff: BackoffOption = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", metavar="TAG", help="Its tags from now on (repeat or comma-separate; '' clears them)."
        ),
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option(
            "--meta", metavar="KEY=VALUE", help="Set one metadata key; the others stay. Repeatable."
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            metavar="KEY[=VALUE]",
            help="Set one environment variable (KEY alone: its value here); the others stay. Repeatable.",
        ),
    ] = None,
    env_file: Annotated[
        str | None,
        typer.Option(
            "--env-file", metavar="FILE", help="Set the environment variables of a KEY=VALUE-per-line file."
        ),
    ] = None,
    cwd: Annotated[str | None, typer.Option("--cwd", metavar="DIR", help="Run in this directory.")] = None,
    memory: limit_options.Memory = None,
    cpu_time: limit_options.CpuTime = None,
    max_log_size: limit_options.MaxLogSize = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what changed as JSON.")] = False,
) -> None:
    """Change a job before it starts, or a dead one before a retry.

    It may be queued, scheduled, waiting, retrying, dead or cancelled. Values are checked as `submit` checks them; the job's history records each change, old and
    new. With no option, $VISUAL or $EDITOR (else vi) opens the job's fields as JSON. A running
    or succeeded job is refused.
    """
    after = ctx.meta.get(DASHDASH)
    head = words[: len(words) - after] if after is not None else words
    if not head:
        raise UsageError("missing the job id: jobrunner edit ID [OPTIONS] [-- COMMAND...]")
    (job_id,) = parse_job_ids(head[:1])
    rest = words[1:]
    changes = changes_from_options(
        rest, after, call=call, arg=arg, name=name, queue=queue, priority=priority, retries=retries,
        timeout=timeout, backoff=backoff, tag=tag, meta=meta, env=env, env_file=env_file, cwd=cwd,
        memory=memory, cpu_time=cpu_time, max_log_size=max_log_size,
    )  # fmt: skip
    app_state = state(ctx)
    if not changes:
        edit_in_editor(app_state, job_id, retry=False, as_json=as_json)
    else:
        edit_with_options(app_state, job_id, changes, as_json)


def register(app: typer.Typer) -> None:
    app.command("edit", cls=SubmitCommand)(edit_command)
