"""How results reach the terminal: rich tables for people, stable JSON for scripts."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from jobrunner.domain.durations import format_duration
from jobrunner.present import (  # noqa: F401  (re-exported: the CLI's commands import them from here)
    STATUS_STYLES,
    job_detail,
    job_duration,
    job_target,
    local_time,
    parse_iso,
    progress_text,
    short_time,
    styled_status,
)


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def note(message: str) -> None:
    """A hint for people on stderr, never mixed into stdout that scripts read."""
    sys.stderr.write(message + "\n")


def age(text: str | None, now: float | None = None) -> str:
    ts = parse_iso(text)
    if ts is None:
        return ""
    delta = (now or time.time()) - ts
    return format_duration(delta) + " ago" if delta >= 0 else "in " + format_duration(-delta)


OPTIONAL_COLUMNS = frozenset({"PROGRESS", "TOOK"})  # hidden when no row has a value


DROP_ORDER = ("PROGRESS", "TOOK", "CREATED", "QUEUE", "TRIES", "PRI")  # first to go when narrow


def jobs_table(jobs: list[dict[str, Any]], width: int = 200) -> Any:
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
    widths = {}
    for index in shown:
        header = headers[index]
        widths[index] = max([len(header)] + [len(row[index]) for row in rows])
        if header in ("NAME", "PROGRESS"):
            widths[index] = min(widths[index], 24)  # long names and messages give way first
    # on a narrow terminal drop the least useful columns rather than let rich squeeze out the ID
    for header in DROP_ORDER:
        if sum(w + 2 for w in widths.values()) + 14 <= width:  # each cell is padded by 1 a side
            break
        index = headers.index(header)
        if index in widths:
            del widths[index]
            shown.remove(index)
    for index in shown:
        header = headers[index]
        table.add_column(
            header,
            justify="right" if header in ("ID", "TRIES") else "left",
            no_wrap=True,
            min_width=widths[index],
            max_width=widths[index],
            overflow="ellipsis",
        )
    # every other column has its exact width; COMMAND gets what is left, so rich never squeezes
    left = max(width - sum(w + 2 for w in widths.values()) - 2, 12)
    longest = max([len("COMMAND")] + [len(job_target(job, width=200)) for job in jobs])
    command_width = min(left, longest)
    table.add_column("COMMAND", overflow="ellipsis", no_wrap=True, min_width=command_width, max_width=command_width)
    for job, row in zip(jobs, rows, strict=True):
        cells = [styled_status(row[i]) if i == 4 else _escape(row[i]) for i in shown]
        table.add_row(*cells, _escape(job_target(job, width=200)))
    return table


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


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
