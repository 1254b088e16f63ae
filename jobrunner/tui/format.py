"""How jobs look in the TUI: table cells and the detail view, as rich renderables.

Pure functions of a job dict (the JSON contract) and `now`, so they run in worker
threads and a test can freeze the clock.
"""

from __future__ import annotations

import json
import shlex
from datetime import datetime
from typing import Any

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

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


def ts(text: str | None) -> float | None:
    """A contract timestamp (ISO 8601) as epoch seconds."""
    return datetime.fromisoformat(text).timestamp() if text else None


def one_line(text: str | None, width: int) -> str:
    """The first line of a text, cut to width with an ellipsis: table cells never wrap."""
    line = (text or "").strip().replace("\t", " ")
    first = line.splitlines()[0] if line else ""
    if len(line.splitlines()) > 1:
        first += " …"
    return first if len(first) <= width else first[: max(width - 1, 0)] + "…"


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A bar in eighths of a cell: `█████▍    `."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_PARTIAL_BLOCKS[part] if part and full < width else "")
    return bar.ljust(width)


def progress_cell(job: dict[str, Any], width: int) -> Text:
    """Bar, percent and message in one cell; empty when the job never reported progress."""
    if job["progress"] is None:
        return Text("")
    style = "green" if job["status"] == "succeeded" else STATUS_STYLES.get(job["status"], "")
    text = Text(progress_bar(job["progress"]), style=style)
    text.append(f" {job['progress'] * 100:3.0f}%")
    if job["progress_message"]:
        text.append(" " + one_line(job["progress_message"], width - BAR_WIDTH - 6), style="dim")
    return text


def short_age(seconds: float | None) -> str:
    """12s, 3m, 2h, 4d: coarse, so the column does not churn every refresh."""
    if seconds is None:
        return ""
    if seconds < 0:
        return "in " + short_age(-seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def age(job: dict[str, Any], now: float, field: str = "created_at") -> str:
    stamp = ts(job[field])
    return short_age(now - stamp) if stamp is not None else ""


def duration(job: dict[str, Any], now: float) -> str:
    """Start to finish, or start to now while it runs."""
    started = ts(job["started_at"])
    if started is None:
        return ""
    end = ts(job["finished_at"]) or now
    return format_duration(max(end - started, 0))


def tries(job: dict[str, Any]) -> str:
    return f"{job['attempts']}/{job['max_retries'] + 1}"


def target(job: dict[str, Any], width: int = 400) -> str:
    """What a job runs, in one line: a call with its arguments, or the shell command."""
    if job["kind"] == "python":
        args = [json.dumps(a) for a in job["args"] or []]
        args += [f"{k}={json.dumps(v)}" for k, v in (job["kwargs"] or {}).items()]
        text = f"{job['callable']}({', '.join(args)})"
    else:
        command = job["command"] or []
        text = command[2] if command[:2] == ["/bin/sh", "-c"] and len(command) > 2 else shlex.join(command)
    return one_line(text, width)


def local_time(text: str | None) -> str:
    stamp = ts(text)
    return datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def _styled(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, '')}]{status}[/]"


def detail_fields(job: dict[str, Any], now: float) -> Table:
    """Every field `jobrunner show` prints, as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, str]] = [
        ("id", str(job["id"])),
        ("name", escape(job["name"]) + (f"  (task {escape(job['task'])})" if job["task"] else "")),
        ("status", _styled(job["status"]) + ("  (cancel requested)" if job["cancel_requested"] else "")),
        ("kind", job["kind"]),
        ("runs", escape(target(job, width=2000))),
        ("queue", escape(job["queue"])),
        ("priority", f"{priority_label(job['priority'])} ({job['priority']})"),
        ("attempts", f"{job['attempts']} (retries allowed {job['max_retries']}, left {job['retries_left']})"),
        ("timeout", format_duration(job["timeout"]) if job["timeout"] else "none"),
        ("backoff", "base {base:g}s, factor {factor:g}, max {max:g}s".format(**job["backoff"])),
        ("created", local_time(job["created_at"])),
        ("scheduled", local_time(job["scheduled_at"])),
        ("started", local_time(job["started_at"])),
        ("finished", local_time(job["finished_at"])),
        ("duration", duration(job, now) or "-"),
    ]
    if job["progress"] is not None:
        message = f" {escape(job['progress_message'])}" if job["progress_message"] else ""
        rows.append(("progress", f"{progress_bar(job['progress'])} {job['progress'] * 100:.0f}%{message}"))
    optional = [
        ("exit code", None if job["exit_code"] is None else str(job["exit_code"])),
        ("result", None if job["result"] is None else escape(json.dumps(job["result"]))),
        ("error", f"[red]{escape(job['error'])}[/]" if job["error"] else None),
        ("tags", escape(", ".join(job["tags"])) if job["tags"] else None),
        ("metadata", escape(json.dumps(job["metadata"])) if job["metadata"] else None),
        ("cwd", escape(job["cwd"]) if job["cwd"] else None),
        ("env", escape(" ".join(f"{k}={v}" for k, v in job["env"].items())) if job["env"] else None),
        ("log", escape(job["log_path"]) if job["log_path"] else None),
    ]
    rows += [(key, value) for key, value in optional if value is not None]
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def history_table(events: list[dict[str, Any]]) -> RenderableType:
    """Every state change, attempt by attempt, with errors and tracebacks."""
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    table.add_column("TIME", no_wrap=True)
    table.add_column("TRY", justify="right", no_wrap=True)
    table.add_column("CHANGE", no_wrap=True)
    table.add_column("MESSAGE", ratio=1)
    for event in events:
        change = _styled(event["to"])
        if event["from"] and event["from"] != event["to"]:
            change = f"{_styled(event['from'])} → {change}"
        message = escape(event["message"] or "")
        details = event["details"] or {}
        if details.get("traceback"):
            message += "\n[dim]" + escape(str(details["traceback"]).rstrip()) + "[/]"
        table.add_row(local_time(event["at"]), str(event["attempt"] or ""), change, message)
    return table
