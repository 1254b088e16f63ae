"""How a job reads to a person, shared by `jobrunner show` and the TUI's detail view.

Pure functions of a job dict (the JSON contract) and `now`: no store, no CLI, no Textual.
Rich is imported inside the functions that build renderables, so importing this module
stays cheap for CLI commands that print plain text.
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime
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
MESSAGE_SHOWN = 1000  # characters of a progress message shown: progress.MAX_MESSAGE, what is stored
_PARTIAL_BLOCKS = " ▏▎▍▌▋▊▉"


# C0 controls, DEL and C1 controls (U+009B is a CSI of its own to some terminals), and the
# bidirectional embeddings, overrides and isolates (they reorder what a line shows), and the
# Unicode line and paragraph separators (a line break to some terminals and widgets)
_CONTROLS = (
    {c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))}
    | {c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
    | {9: "\\t", 10: "\\n", 13: "\\r"}
)
_CONTROLS_KEEP_LINES = {c: text for c, text in _CONTROLS.items() if c not in (9, 10)}
_SURROGATES = "[\ud800-\udfff]"


def visible(text: str | bytes | None, lines: bool = True, width: int | None = None) -> str:
    """Text a job provided (a name, an error, a progress message, a traceback, output) as a
    person may see it: the one place that decides, for `list`, `show`, the TUI, notifier
    texts and the daemon's log.

    - Invalid UTF-8 (bytes, or lone surrogates in a str) shows as U+FFFD.
    - With `lines`, newlines and tabs stay (a traceback in `show`), and a line rewritten with
      carriage returns (a progress bar) shows as its last state. Without, they are escaped
      too: one line that hides nothing (a log record).
    - Every other control character shows as `\\x1b` and the like, so a job's text cannot
      move the cursor, clear, recolour or retitle a terminal, or forge a log line.
    - With `width`, it is cut to that many terminal cells with an ellipsis.
    """
    if text is None:
        return ""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "replace")
    elif not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (surrogateescape'd bytes, a careless job)
            import re

            text = re.sub(_SURROGATES, "\ufffd", text)
    if lines and "\r" in text:
        text = "\n".join(_last_state(line) for line in text.split("\n"))
    text = text.translate(_CONTROLS_KEEP_LINES if lines else _CONTROLS)
    return text if width is None else fit(text, width)


def _last_state(line: str) -> str:
    """What a terminal last showed of a line rewritten with `\\r`: its last non-empty state."""
    for state in reversed(line.split("\r")):
        if state:
            return state
    return ""


def fit(text: str, width: int) -> str:
    """`text` (already visible) in at most `width` terminal cells: cut with an ellipsis."""
    if text.isascii():  # a cell per character
        return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) <= width:
        return text
    return set_cell_size(text, max(width - 1, 0)) + "…"


def styled_status(status: str) -> str:
    """The status in rich markup, coloured as everywhere else."""
    return f"[{STATUS_STYLES.get(status, '')}]{status}[/]"


def parse_iso(text: str | None) -> float | None:
    """A contract timestamp (ISO 8601) as epoch seconds; None for none, or for a placeholder
    such as "out of range" (a stored time no date can show)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def local_time(text: str | None) -> str:
    """A contract timestamp in local time with the zone's name, or '-' (a placeholder as it is)."""
    return _local(text, "%Y-%m-%d %H:%M:%S %Z")


def short_time(text: str | None) -> str:
    """Local time to the minute, for narrow columns."""
    return _local(text, "%Y-%m-%d %H:%M")


def _local(text: str | None, pattern: str) -> str:
    stamp = parse_iso(text)
    if stamp is None:
        return text or "-"  # "out of range" reads better than a traceback or a made-up date
    try:
        return datetime.fromtimestamp(stamp).astimezone().strftime(pattern)
    except (ValueError, OverflowError, OSError):  # within year 9999 in UTC, not in this zone
        return "out of range"


def zoned_time(text: str | None, timezone: str) -> str:
    """A contract timestamp in a schedule's own timezone, with the zone's abbreviation (the wall
    time its cron expression speaks of), to the second when it falls between minutes (an
    interval, a one-off, a manual run). An unknown zone (a broken schedule) reads in UTC."""
    if not text:
        return "-"
    from zoneinfo import ZoneInfo

    try:
        zone: Any = ZoneInfo(timezone)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        zone = UTC
    try:
        moment = datetime.fromisoformat(text).astimezone(zone)
    except (ValueError, OverflowError):  # a placeholder such as "out of range", or past year 9999 there
        return text if parse_iso(text) is None else "out of range"
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z" if moment.second else "%Y-%m-%d %H:%M %Z")


def schedule_state(view: dict[str, Any]) -> str:
    """What a schedule is doing: active, paused, broken, or finished with nothing more to fire:
    `fired` (a one-off that ran) or `done` (it never fired, its time missed)."""
    if view["broken"]:
        return "broken"
    if view["paused"]:
        return "paused"
    if view["next_fire_at"] is None:
        return "fired" if view["last_fire_at"] is not None else "done"
    return "active"


def one_line(text: str | None, width: int | None) -> str:
    """The first line of a text as `visible` shows it, cut to width with an ellipsis: table
    cells never wrap. With width None, the whole text on one line, its lines joined by ⏎
    (piped output cuts nothing)."""
    lines = visible(text).strip().replace("\t", " ").splitlines()
    if width is None:
        return " ⏎ ".join(lines)
    first = lines[0] if lines else ""
    if len(lines) > 1:
        first += " …"
    return fit(first, width)


def job_target(job: dict[str, Any], width: int | None = 60) -> str:
    """What a job runs, in one line: a call with its arguments, or the shell command (whole,
    with width None)."""
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


def shows_progress(job: dict[str, Any]) -> bool:
    """Progress belongs to a running attempt (and stays, full, on a success): an attempt that
    ended otherwise leaves none, even in rows written before the store cleared it."""
    return job["progress"] is not None and job["status"] in ("running", "succeeded")


def progress_message(job: dict[str, Any], width: int | None = None) -> str:
    """The progress message as a person sees it: one line, at most MESSAGE_SHOWN characters (a
    row written before messages were cut may hold megabytes), `width` cells if given."""
    message = job["progress_message"]
    if not message:
        return ""
    if len(message) > MESSAGE_SHOWN:
        message = message[: MESSAGE_SHOWN - 1] + "…"
    return one_line(message, width)


def progress_text(job: dict[str, Any]) -> str:
    """`40% step 2/5`, or '' when the job has no progress to show."""
    if not shows_progress(job):
        return ""
    text = f"{job['progress'] * 100:.0f}%"
    return f"{text} {progress_message(job)}" if job["progress_message"] else text


def job_duration(job: dict[str, Any], now: float) -> str:
    """How long the last attempt ran, or has run so far; '' when no attempt ever ran (time spent
    queued, waiting or cancelled is not running time)."""
    if job["status"] == "running":
        started = parse_iso(job["started_at"])
        return format_duration(max(now - started, 0)) if started is not None else ""
    return format_duration(job["duration"]) if job["duration"] is not None else ""


def tries_text(job: dict[str, Any]) -> str:
    """`1/3`: attempts counted against the current retry budget, over that budget (retries + 1).
    A manual retry starts a fresh budget, so this never reads `2/1`."""
    return f"{job['tries_used']}/{job['tries_allowed']}"


def tries_detail(job: dict[str, Any]) -> str:
    """TRIES with what is left and, when they differ, every attempt ever started."""
    left = job["retries_left"]
    text = f"{tries_text(job)} ({left} {'retry' if left == 1 else 'retries'} left"
    if job["attempts"] != job["tries_used"]:  # a manual retry or an interruption restarted the count
        text += f"; {job['attempts']} {'attempt' if job['attempts'] == 1 else 'attempts'} in all"
    return text + ")"


#: Dependencies listed by name in `show`; past this many, the rest are counted.
LINKS_SHOWN = 20


def links_text(links: list[dict[str, Any]]) -> str:
    """`41 extract succeeded, 42 transform running`, statuses coloured (rich markup)."""
    parts = [
        f"{link['id']} {_escape(link['name'])} {styled_status(link['status'])}"
        if link["status"] is not None
        else f"{link['id']} [dim](purged)[/]"
        for link in links[:LINKS_SHOWN]
    ]
    if len(links) > LINKS_SHOWN:
        parts.append(f"and {len(links) - LINKS_SHOWN} more")
    return ", ".join(parts)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(visible(text))


def detail_fields(job: dict[str, Any], now: float,
                  links: dict[str, list[dict[str, Any]]] | None = None,
                  events: list[dict[str, Any]] | None = None) -> Any:  # fmt: skip
    """Every field of a job as a two-column grid (what `show` prints first); `links` are its
    dependencies and dependents with their statuses (queries.dependency_links); `events`, its
    history, say on which hosts its attempts ran."""
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
        ("tries", tries_detail(job)),
        *([("hosts", hosts)] if (hosts := attempt_hosts(job, events or [])) else []),
        ("timeout", format_duration(job["timeout"]) if job["timeout"] else "none"),
        ("backoff", "base {base:g}s, factor {factor:g}, max {max:g}s".format(**job["backoff"])),
        ("created", local_time(job["created_at"])),
        ("scheduled", local_time(job["scheduled_at"])),
        ("started", local_time(job["started_at"])),
        ("finished", local_time(job["finished_at"])),
        ("duration", job_duration(job, now) or "-"),
    ]
    # right below the status: what a waiting job waits for, and what waits for this one
    rows[3:3] = [(key, links_text(links[key])) for key in ("after", "dependents") if links and links[key]]
    if shows_progress(job):
        message = f" {_escape(progress_message(job))}" if job["progress_message"] else ""
        rows.append(("progress", f"{progress_bar(job['progress'])} {job['progress'] * 100:.0f}%{message}"))
    optional = [
        ("exit code", None if job["exit_code"] is None else str(job["exit_code"])),
        ("result", None if job["result"] is None else _escape(json.dumps(job["result"]))),
        ("error", f"[red]{_escape(job['error'])}[/]" if job["error"] else None),
        ("unique key", _escape(job["unique_key"]) if job.get("unique_key") else None),
        ("limits", limits_text(job)),
        ("tags", _escape(", ".join(job["tags"])) if job["tags"] else None),
        ("metadata", _escape(json.dumps(job["metadata"])) if job["metadata"] else None),
        ("cwd", _escape(job["cwd"]) if job["cwd"] else None),
        # values may be secrets: shown as *** (`show --json` has them, for scripts of the same user)
        ("env", _escape(" ".join(f"{k}=***" for k in job["env"])) if job["env"] else None),
        ("log", _escape(job["log_path"]) if job["log_path"] else None),
    ]
    rows += [(key, value) for key, value in optional if value is not None]
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def limits_text(job: dict[str, Any]) -> str | None:
    """`memory 200M, cpu time 10m, log 50M`: the limits a job set; None when it set none."""
    from jobrunner.domain.edits import duration_text
    from jobrunner.domain.sizes import format_size

    parts = [
        f"{what} {show(job[key])}"
        for what, key, show in (("memory", "memory", format_size), ("cpu time", "cpu_time", duration_text),
                                ("log", "max_log_size", format_size))
        if job.get(key) is not None
    ]  # fmt: skip
    return ", ".join(parts) or None


def history_table(events: list[dict[str, Any]], ruled: bool = False) -> Any:
    """Every state change, attempt by attempt, with errors and tracebacks. `ruled`: the columns
    apart by a line as well as by spaces (the TUI, where a browser's copy of the screen loses
    runs of spaces), and the heading underlined."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.MINIMAL if ruled else None, header_style="bold", pad_edge=False, expand=True,
                  show_edge=False, border_style="dim")  # fmt: skip
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


def job_detail(job: dict[str, Any], events: list[dict[str, Any]], now: float,
               links: dict[str, list[dict[str, Any]]] | None = None, ruled: bool = False) -> list[Any]:  # fmt: skip
    """The renderables `show` prints and the TUI's detail view shows: fields, then history
    (`ruled`: its columns apart by lines, see history_table)."""
    return [detail_fields(job, now, links, events), "", "[bold]history[/]", history_table(events, ruled)]


_STARTED = re.compile(r"attempt (\d+) started by (\S+)")


def owner_host(owner: str | None) -> str:
    """The host of a lease owner (`host:pid:random`, what a daemon claims jobs as); '' for none."""
    if not owner:
        return ""
    parts = owner.rsplit(":", 2)
    return parts[0] if len(parts) == 3 else owner


def attempt_hosts(job: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    """`attempts 1–2 on vm, 3 on db1 (now pid 4389)`: where each attempt ran, from the history's
    "attempt N started by host:pid:random" events, and the running one from its lease; None when
    no attempt ran."""
    ran: list[tuple[int, str]] = []
    for event in events:
        found = _STARTED.match(event["message"] or "") if event["to"] == "running" else None
        if found:
            ran.append((int(found[1]), owner_host(found[2])))
    owner = job.get("lease_owner") if job["status"] == "running" else None
    if owner and not any(attempt == job["attempts"] for attempt, _ in ran):
        ran.append((job["attempts"], owner_host(owner)))  # its event purged or not written yet
    if not ran:
        return None
    groups: list[tuple[int, int, str]] = []  # first attempt, last attempt, host
    for attempt, host in ran:
        if groups and groups[-1][2] == host:
            groups[-1] = (groups[-1][0], attempt, host)
        else:
            groups.append((attempt, attempt, host))
    parts = [
        (f"{first}" if first == last else f"{first}–{last}") + f" on {_escape(host)}"
        for first, last, host in groups
    ]
    many = len(ran) > 1
    text = ("attempts " if many else "attempt ") + ", ".join(parts)
    if owner:
        pid = owner.rsplit(":", 2)[1] if owner.count(":") >= 2 else ""
        text += f" (running{f': daemon pid {pid}' if pid else ''})"
    return text
