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
    one_line,
    parse_iso,
    progress_text,
    short_time,
    styled_status,
    tries_text,
    visible,
)


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


# JSON escapes C0 controls itself; DEL and the C1 controls (U+009B is a CSI to some terminals)
# it leaves raw unless told: the same string, escaped, so `show --json` on a terminal is safe too
_JSON_CONTROLS = {c: f"\\u{c:04x}" for c in range(127, 160)}


def print_json(data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write(text.translate(_JSON_CONTROLS) + "\n")


def note(message: str) -> None:
    """A hint for people on stderr, never mixed into stdout that scripts read."""
    sys.stderr.write(message + "\n")


def age(text: str | None, now: float | None = None) -> str:
    ts = parse_iso(text)
    if ts is None:
        return ""
    delta = (now or time.time()) - ts
    return format_duration(delta) + " ago" if delta >= 0 else "in " + format_duration(-delta)


OPTIONAL_COLUMNS = frozenset({"PROGRESS", "TOOK", "ERROR"})  # hidden when no row has a value


DROP_ORDER = ("PROGRESS", "TOOK", "CREATED", "QUEUE", "TRIES", "PRI")  # first to go when narrow
FLEXIBLE_MIN = 12  # COMMAND and ERROR never get less than this on a terminal
UNLIMITED_WIDTH = 1_000_000  # piped: wider than any row


def stdout_is_terminal() -> bool:
    """Whether people read stdout on a terminal: tables fit its width; piped, values stay whole."""
    try:
        return sys.stdout.isatty()
    except ValueError:  # closed
        return False


def print_table(table: Any) -> None:
    """Print a table to stdout: on a terminal as wide as the terminal (rich fits it); piped or
    redirected as wide as its widest row, so no value is cut (rich would cut at 80 columns)."""
    out = console()
    if not stdout_is_terminal():
        # a table (not expand=True) takes the width its columns need and no more, and lines are
        # not padded to the console's: the same text as at its measured width, without rich
        # measuring every cell once more for that (a fifth of `list`'s table)
        out.width = UNLIMITED_WIDTH
    out.print(table)


def _share(room: int, needs: list[int]) -> list[int]:
    """Split `room` between columns that want `needs`: a column that needs less than an equal
    share keeps its need, and what it leaves goes to the others."""
    given = [0] * len(needs)
    order = sorted(range(len(needs)), key=lambda i: needs[i])
    for rank, index in enumerate(order):
        fair = room // (len(needs) - rank)
        given[index] = max(min(needs[index], fair), FLEXIBLE_MIN)
        room -= given[index]
    return given


JOB_HEADERS = ("ID", "NAME", "QUEUE", "PRI", "STATUS", "TRIES", "PROGRESS", "CREATED", "TOOK")


def _job_cells(job: dict[str, Any], now: float) -> tuple[str, ...]:
    """A job's cells under JOB_HEADERS, as plain text."""
    from jobrunner.domain.priority import priority_label

    return (
        str(job["id"]), job["name"], job["queue"], priority_label(job["priority"]), job["status"],
        tries_text(job), progress_text(job), age(job["created_at"], now), job_duration(job, now),
    )  # fmt: skip


def _drop_to_fit(widths: dict[int, int], reserve: int, width: int) -> None:
    """On a narrow terminal drop the least useful columns, rather than let rich squeeze out the
    ID, until the rest and `reserve` (the flexible columns' least) fit."""
    for header in DROP_ORDER:
        if sum(w + 2 for w in widths.values()) + reserve <= width:  # each cell is padded by 1 a side
            return
        widths.pop(JOB_HEADERS.index(header), None)


def jobs_table(jobs: list[dict[str, Any]], width: int | None = 200) -> Any:
    """The `list` table. Fitted to `width` (a terminal): every column shown whole except COMMAND
    and ERROR, which share what is left. With width None (piped): every value whole."""
    from rich.table import Table

    whole = width is None
    now = time.time()
    # one line each, as present.visible shows job text: no raw escape sequence, no \r frames
    rows = [tuple(one_line(cell, None) for cell in _job_cells(job, now)) for job in jobs]
    # the flexible columns: what runs, and why it failed (the dead-letter queue's reason)
    flexible = {"COMMAND": [job_target(job, width=None if whole else 200) for job in jobs]}
    errors = [one_line(job["error"], None if whole else 500) for job in jobs]
    if any(errors):
        flexible["ERROR"] = errors
    widths = {  # column index -> width, for the columns shown
        i: max([len(header)] + [len(row[i]) for row in rows])
        for i, header in enumerate(JOB_HEADERS)
        if header not in OPTIONAL_COLUMNS or any(row[i] for row in rows)
    }
    needs = [max([len(header)] + [len(cell) for cell in cells]) for header, cells in flexible.items()]
    if whole:
        flexible_widths = needs
    else:
        for i, header in enumerate(JOB_HEADERS):
            if header in ("NAME", "PROGRESS") and i in widths:
                widths[i] = min(widths[i], 24)  # long names and messages give way first
        _drop_to_fit(widths, len(flexible) * (FLEXIBLE_MIN + 2), width)
        if len(flexible) > 1 and sum(w + 2 for w in widths.values()) + 2 * (FLEXIBLE_MIN + 2) > width:
            del flexible["ERROR"]  # too narrow for both: what runs stays, `show` has the error
            needs = needs[:1]
        # every other column has its exact width; the flexible ones get what is left
        flexible_widths = _share(width - sum(w + 2 for w in widths.values()) - 2 * len(flexible), needs)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1))

    def sized(column_width: int) -> dict[str, int]:
        # Piped, the table always fits: a fixed width is the same layout, and rich measures no
        # cell for it (a third of printing the table). On a terminal min = max, as ever: rich
        # treats a fixed width another way when a table does not fit.
        return {"width": column_width} if whole else {"min_width": column_width, "max_width": column_width}

    for i, column_width in widths.items():
        header = JOB_HEADERS[i]
        table.add_column(header, justify="right" if header in ("ID", "TRIES") else "left", no_wrap=True,
                         overflow="ellipsis", **sized(column_width))  # fmt: skip
    for header, column_width in zip(flexible, flexible_widths, strict=True):
        table.add_column(header, overflow="ellipsis", no_wrap=True, **sized(column_width))
    for index, row in enumerate(rows):
        cells = [styled_status(row[i]) if JOB_HEADERS[i] == "STATUS" else _escape(row[i]) for i in widths]
        cells.append(_escape(flexible["COMMAND"][index]))
        if "ERROR" in flexible:
            cells.append(f"[red]{_escape(errors[index])}[/]")
        table.add_row(*_texts(cells))
    return table


def _texts(cells: list[str]) -> list[Any]:
    """Markup as rich Text, parsed once here as the console would parse it (emoji codes and
    all), not again at each of rich's passes over the cell (measure, fit, render)."""
    from rich.markup import render

    return [render(cell) for cell in cells]


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
