"""How results reach the terminal: rich tables for people, stable JSON for scripts."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any

from jobrunner.domain.durations import format_duration

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


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def note(message: str) -> None:
    """A hint for people on stderr, never mixed into stdout that scripts read."""
    sys.stderr.write(message + "\n")


def styled_status(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, '')}]{status}[/]"


def parse_iso(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def age(text: str | None, now: float | None = None) -> str:
    ts = parse_iso(text)
    if ts is None:
        return ""
    delta = (now or time.time()) - ts
    return format_duration(delta) + " ago" if delta >= 0 else "in " + format_duration(-delta)


def local_time(text: str | None) -> str:
    ts = parse_iso(text)
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if ts else "-"


def short_time(text: str | None) -> str:
    """Local time to the minute, for narrow columns."""
    ts = parse_iso(text)
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def job_target(job: dict[str, Any], width: int = 60) -> str:
    """What a job runs, in one short line."""
    if job["kind"] == "python":
        args = [json.dumps(a) for a in job["args"]] + [
            f"{k}={json.dumps(v)}" for k, v in job["kwargs"].items()
        ]
        text = f"{job['callable']}({', '.join(args)})"
    else:
        command = job["command"] or []
        text = command[2] if command[:2] == ["/bin/sh", "-c"] else _join_argv(command)
    return text if len(text) <= width else text[: width - 1] + "…"


def _join_argv(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


def progress_text(job: dict[str, Any]) -> str:
    if job["progress"] is None:
        return ""
    text = f"{job['progress'] * 100:.0f}%"
    return f"{text} {job['progress_message']}" if job["progress_message"] else text


def job_duration(job: dict[str, Any], now: float | None = None) -> str:
    started = parse_iso(job["started_at"])
    if started is None:
        return ""
    end = parse_iso(job["finished_at"]) or (now or time.time())
    return format_duration(max(end - started, 0))


OPTIONAL_COLUMNS = frozenset({"PROGRESS", "TOOK"})  # hidden when no row has a value


def jobs_table(jobs: list[dict[str, Any]]) -> Any:
    """The `list` table: every column shown whole except COMMAND, which takes what is left."""
    from rich.table import Table

    from jobrunner.domain.priority import priority_label

    now = time.time()
    headers = ("ID", "NAME", "QUEUE", "PRI", "STATUS", "TRIES", "PROGRESS", "CREATED", "TOOK")
    rows = [
        (
            str(job["id"]),
            job["name"],
            job["queue"],
            priority_label(job["priority"]),
            job["status"],
            f"{job['attempts']}/{job['max_retries'] + 1}",
            progress_text(job),
            age(job["created_at"], now),
            job_duration(job, now),
        )
        for job in jobs
    ]
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1))
    shown = [i for i, h in enumerate(headers) if h not in OPTIONAL_COLUMNS or any(r[i] for r in rows)]
    for index in shown:
        header = headers[index]
        width = max([len(header)] + [len(row[index]) for row in rows])
        if header in ("NAME", "PROGRESS"):
            width = min(width, 24)  # long names and messages give way before the command does
        table.add_column(
            header,
            justify="right" if header in ("ID", "TRIES") else "left",
            no_wrap=True,
            min_width=width,
            max_width=width,
            overflow="ellipsis",
        )
    table.add_column("COMMAND", overflow="ellipsis", no_wrap=True, ratio=1, min_width=12)
    for job, row in zip(jobs, rows, strict=True):
        cells = [styled_status(row[i]) if i == 4 else _escape(row[i]) for i in shown]
        table.add_row(*cells, _escape(job_target(job, width=200)))
    return table


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def job_detail(job: dict[str, Any], events: list[dict[str, Any]]) -> list[Any]:
    """The renderables `show` prints: fields, then the history attempt by attempt."""
    from rich.table import Table

    from jobrunner.domain.priority import priority_label

    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column()
    rows: list[tuple[str, str]] = [
        ("id", str(job["id"])),
        ("name", _escape(job["name"]) + (f"  (task {job['task']})" if job["task"] else "")),
        (
            "status",
            styled_status(job["status"]) + ("  (cancel requested)" if job["cancel_requested"] else ""),
        ),
        ("kind", job["kind"]),
        ("runs", _escape(job_target(job, width=400))),
        ("queue", job["queue"]),
        ("priority", f"{priority_label(job['priority'])} ({job['priority']})"),
        ("attempts", f"{job['attempts']} (retries allowed {job['max_retries']}, left {job['retries_left']})"),
        ("timeout", format_duration(job["timeout"]) if job["timeout"] else "none"),
        ("backoff", "base {base:g}s, factor {factor:g}, max {max:g}s".format(**job["backoff"])),
        ("created", local_time(job["created_at"])),
        ("scheduled", local_time(job["scheduled_at"])),
        ("started", local_time(job["started_at"])),
        ("finished", local_time(job["finished_at"])),
        ("duration", job_duration(job) or "-"),
    ]
    if job["progress"] is not None:
        rows.append(("progress", _escape(progress_text(job))))
    if job["exit_code"] is not None:
        rows.append(("exit code", str(job["exit_code"])))
    if job["result"] is not None:
        rows.append(("result", _escape(json.dumps(job["result"]))))
    if job["error"]:
        rows.append(("error", f"[red]{_escape(job['error'])}[/]"))
    if job["tags"]:
        rows.append(("tags", ", ".join(job["tags"])))
    if job["metadata"]:
        rows.append(("metadata", _escape(json.dumps(job["metadata"]))))
    if job["cwd"]:
        rows.append(("cwd", _escape(job["cwd"])))
    if job["env"]:
        rows.append(("env", _escape(" ".join(f"{k}={v}" for k, v in job["env"].items()))))
    if job["log_path"]:
        rows.append(("log", _escape(job["log_path"])))
    for key, value in rows:
        fields.add_row(key, value)

    history = Table(box=None, header_style="bold", pad_edge=False, title_justify="left")
    for column in ("TIME", "TRY", "CHANGE", "MESSAGE"):
        history.add_column(column, no_wrap=column != "MESSAGE")
    for event in events:
        change = styled_status(event["to"])
        if event["from"] and event["from"] != event["to"]:
            change = f"{styled_status(event['from'])} → {change}"
        message = _escape(event["message"] or "")
        details = event["details"] or {}
        if details.get("traceback"):
            message += "\n[dim]" + _escape(details["traceback"].rstrip()) + "[/]"
        history.add_row(local_time(event["at"]), str(event["attempt"] or ""), change, message)
    return [fields, "", "[bold]history[/]", history]


def stats_table(data: dict[str, Any]) -> Any:
    """A status per row and a queue per column: few queues are the common case."""
    from rich.table import Table

    queues = list(data["queues"])
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("STATUS", no_wrap=True)
    for name in queues:
        label = name + (" (paused)" if data["queues"][name]["paused"] else "")
        table.add_column(_escape(label), justify="right", no_wrap=True)
    table.add_column("ALL", justify="right", style="bold", no_wrap=True)
    for status, count in data["by_status"].items():
        per_queue = [str(data["queues"][q]["by_status"].get(status, 0)) for q in queues]
        table.add_row(styled_status(status), *per_queue, str(count))
    totals = [str(data["queues"][q]["total"]) for q in queues]
    table.add_row("[bold]total[/]", *totals, str(data["total"]))
    return table
