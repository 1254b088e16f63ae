"""How a job reads to a person, shared by `jobrunner show` and the TUI's detail view.

Pure functions of a job dict (the JSON contract) and `now`: no store, no CLI, no Textual.
Rich is imported inside the functions that build renderables, so importing this module
stays cheap for CLI commands that print plain text.
"""

from __future__ import annotations

import json
import shlex
from datetime import datetime
from typing import Any

from jobrunner.domain.durations import format_duration
from jobrunner.domain.priority import priority_label

STATUS_STYLES = {
    "queued": "cyan",
    "scheduled": "blue",
    "waiting": "magenta",
    "running": "bold yellow",
    "retrying": "dark_orange",
    "succeeded": "green",
    "dead": "bold red",
    "cancelled": "dim",
}
BAR_WIDTH = 10
_PARTIAL_BLOCKS = " ▏▎▍▌▋▊▉"


def styled_status(status: str) -> str:
    """The status in rich markup, coloured as everywhere else."""
    return f"[{STATUS_STYLES.get(status, '')}]{status}[/]"


def parse_iso(text: str | None) -> float | None:
    """A contract timestamp (ISO 8601) as epoch seconds."""
    return datetime.fromisoformat(text).timestamp() if text else None


def local_time(text: str | None) -> str:
    """A contract timestamp in local time with the zone's name, or '-'."""
    stamp = parse_iso(text)
    return datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if stamp else "-"


def short_time(text: str | None) -> str:
    """Local time to the minute, for narrow columns."""
    stamp = parse_iso(text)
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M") if stamp else "-"


def one_line(text: str | None, width: int) -> str:
    """The first line of a text, cut to width with an ellipsis: table cells never wrap."""
    line = (text or "").strip().replace("\t", " ")
    first = line.splitlines()[0] if line else ""
    if len(line.splitlines()) > 1:
        first += " …"
    return first if len(first) <= width else first[: max(width - 1, 0)] + "…"


def job_target(job: dict[str, Any], width: int = 60) -> str:
    """What a job runs, in one line: a call with its arguments, or the shell command."""
    if job["kind"] == "python":
        args = [json.dumps(a) for a in job["args"] or []]
        args += [f"{k}={json.dumps(v)}" for k, v in (job["kwargs"] or {}).items()]
        text = f"{job['callable']}({', '.join(args)})"
    else:
        command = job["command"] or []
        text = command[2] if command[:2] == ["/bin/sh", "-c"] and len(command) > 2 else shlex.join(command)
    return one_line(text, width)


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A bar in eighths of a cell: `█████▍    `."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_PARTIAL_BLOCKS[part] if part and full < width else "")
    return bar.ljust(width)


def progress_text(job: dict[str, Any]) -> str:
    """`40% step 2/5`, or '' when the job never reported progress."""
    if job["progress"] is None:
        return ""
    text = f"{job['progress'] * 100:.0f}%"
    return f"{text} {job['progress_message']}" if job["progress_message"] else text


def job_duration(job: dict[str, Any], now: float) -> str:
    """Start to finish, or start to now while it runs."""
    started = parse_iso(job["started_at"])
    if started is None:
        return ""
    end = parse_iso(job["finished_at"]) or now
    return format_duration(max(end - started, 0))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def detail_fields(job: dict[str, Any], now: float) -> Any:
    """Every field of a job as a two-column grid (what `show` prints first)."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, str]] = [
        ("id", str(job["id"])),
        ("name", _escape(job["name"]) + (f"  (task {_escape(job['task'])})" if job["task"] else "")),
        (
            "status",
            styled_status(job["status"]) + ("  (cancel requested)" if job["cancel_requested"] else ""),
        ),
        ("kind", job["kind"]),
        ("runs", _escape(job_target(job, width=2000))),
        ("queue", _escape(job["queue"])),
        ("priority", f"{priority_label(job['priority'])} ({job['priority']})"),
        ("attempts", f"{job['attempts']} (retries allowed {job['max_retries']}, left {job['retries_left']})"),
        ("timeout", format_duration(job["timeout"]) if job["timeout"] else "none"),
        ("backoff", "base {base:g}s, factor {factor:g}, max {max:g}s".format(**job["backoff"])),
        ("created", local_time(job["created_at"])),
        ("scheduled", local_time(job["scheduled_at"])),
        ("started", local_time(job["started_at"])),
        ("finished", local_time(job["finished_at"])),
        ("duration", job_duration(job, now) or "-"),
    ]
    if job["progress"] is not None:
        message = f" {_escape(job['progress_message'])}" if job["progress_message"] else ""
        rows.append(("progress", f"{progress_bar(job['progress'])} {job['progress'] * 100:.0f}%{message}"))
    optional = [
        ("exit code", None if job["exit_code"] is None else str(job["exit_code"])),
        ("result", None if job["result"] is None else _escape(json.dumps(job["result"]))),
        ("error", f"[red]{_escape(job['error'])}[/]" if job["error"] else None),
        ("tags", _escape(", ".join(job["tags"])) if job["tags"] else None),
        ("metadata", _escape(json.dumps(job["metadata"])) if job["metadata"] else None),
        ("cwd", _escape(job["cwd"]) if job["cwd"] else None),
        ("env", _escape(" ".join(f"{k}={v}" for k, v in job["env"].items())) if job["env"] else None),
        ("log", _escape(job["log_path"]) if job["log_path"] else None),
    ]
    rows += [(key, value) for key, value in optional if value is not None]
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def history_table(events: list[dict[str, Any]]) -> Any:
    """Every state change, attempt by attempt, with errors and tracebacks."""
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    table.add_column("TIME", no_wrap=True)
    table.add_column("TRY", justify="right", no_wrap=True)
    table.add_column("CHANGE", no_wrap=True)
    table.add_column("MESSAGE", ratio=1)
    for event in events:
        change = styled_status(event["to"])
        if event["from"] and event["from"] != event["to"]:
            change = f"{styled_status(event['from'])} → {change}"
        message = _escape(event["message"] or "")
        details = event["details"] or {}
        if details.get("traceback"):
            message += "\n[dim]" + _escape(str(details["traceback"]).rstrip()) + "[/]"
        table.add_row(local_time(event["at"]), str(event["attempt"] or ""), change, message)
    return table


def job_detail(job: dict[str, Any], events: list[dict[str, Any]], now: float) -> list[Any]:
    """The renderables `show` prints and the TUI's detail view shows: fields, then history."""
    return [detail_fields(job, now), "", "[bold]history[/]", history_table(events)]
