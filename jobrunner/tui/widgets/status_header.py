"""The lines above the table: the daemon's heartbeat, counts per status, what is shown."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from jobrunner.domain.durations import format_duration
from jobrunner.domain.states import ALL_STATUSES
from jobrunner.tui.data import PageRequest, Snapshot, count_text
from jobrunner.tui.format import STATUS_STYLES


def daemon_line(daemons: list[dict[str, Any]], running: int) -> Text:
    """Whether anything runs the jobs, from the daemons' heartbeats; how many workers are busy,
    from the jobs running now (the count a heartbeat carries is up to one beat old)."""
    alive = [d for d in daemons if d["alive"]]
    if not alive:
        if not daemons:
            return Text.assemble(("○ no daemon", "bold red"), ("  jobs wait until one runs", "dim"))
        last = daemons[0]
        if last["state"] == "stopped":
            return Text.assemble(("○ daemon stopped", "bold red"), (f"  last on {last['host']}", "dim"))
        silent = format_duration(last["heartbeat_age"])
        return Text.assemble(("○ daemon silent", "bold red"), (f"  no heartbeat for {silent}", "dim"))
    workers = sum(d["workers"] for d in alive)
    busy = min(running, workers)
    if len(alive) == 1:
        where = f"pid {alive[0]['pid']} on {alive[0]['host']}"
        label = "● daemon up"
    else:
        where = ", ".join(sorted({d["host"] for d in alive}))
        label = f"● {len(alive)} daemons up"
    return Text.assemble((label, "bold green"), (f"  {busy}/{workers} workers busy · {where}", "dim"))


def rate_line(snapshot: Snapshot) -> Text:
    """`4 running · 262 queued · 12 finished/min`: is work moving, at a glance."""
    by_status = snapshot.stats["by_status"]
    return Text.assemble(
        (f"{count_text(by_status.get('running', 0), short=True)} running", STATUS_STYLES["running"]),
        ("  ·  ", "dim"),
        (f"{count_text(by_status.get('queued', 0), short=True)} queued", STATUS_STYLES["queued"]), ("  ·  ", "dim"),
        (f"{snapshot.finished_last_minute} finished/min", "bold"),
    )  # fmt: skip


def counts_line(stats: dict[str, Any], request: PageRequest, keys: bool, gap: str = "  ") -> Text:
    """`1 queued 12  2 scheduled 0 ...`: the numbers toggle the status filter, shown reversed;
    a count past the cap is `>10k`."""
    line = Text()
    chosen = {s.value for s in request.statuses}
    for number, status in enumerate(ALL_STATUSES, start=1):
        count = stats["by_status"].get(status.value, 0)
        style = STATUS_STYLES[status.value] + (" reverse" if status.value in chosen else "")
        if keys:
            line.append(f"{number}", style="bold dim")
            line.append(" ")
        line.append(f"{status.value} {count_text(count, short=True)}", style=style if count or chosen else "dim")
        line.append(gap)
    line.rstrip()
    return line


def window_line(snapshot: Snapshot, request: PageRequest, keys: bool, marked: int = 0) -> Text:
    shown = len(snapshot.jobs)
    first = snapshot.offset + 1 if shown else 0
    line = Text(f"total {count_text(snapshot.stats['total'])}", style="bold")
    where = " from the end" if snapshot.from_end else ""
    line.append(f"  ·  rows {first}–{snapshot.offset + shown}{where} of {count_text(snapshot.total)}", style="dim")
    filters = []
    if request.statuses and keys:  # the dead-letter view's status is implied
        filters.append("status " + ",".join(s.value for s in request.statuses))
    if request.queues:
        filters.append("queue " + ",".join(request.queues))
    if request.tags:
        filters.append("tag " + ",".join(request.tags))
    if request.search:
        filters.append(f"search {request.search!r}")
    if marked:
        line.append(f"  ·  {marked} marked (Esc forgets)", style="bold magenta")
    if request.order_by:
        column = request.order_by.removeprefix("-")
        line.append(
            f"  ·  sorted by {column} {'▼' if request.order_by.startswith('-') else '▲'}", style="cyan"
        )
    if filters:
        line.append("  ·  filter: " + "; ".join(filters), style="yellow")
    if snapshot.paused:
        line.append("  ·  paused queues: " + ", ".join(snapshot.paused), style="bold dark_orange")
    if snapshot.rate_limited:
        line.append("  ·  rate-limited: " + ", ".join(snapshot.rate_limited), style="dark_orange")
    return line


class StatusHeader(Static):
    """Three lines, rebuilt from each snapshot (a few dozen characters: cheaper than diffing)."""

    def __init__(self, title: str, keys: bool = True, **kwargs: Any) -> None:
        super().__init__(Text(title, style="bold"), **kwargs)
        self.title = title
        self.keys = keys
        self._last: Text | None = None

    def show(self, snapshot: Snapshot, request: PageRequest, marked: int = 0) -> None:
        running = snapshot.stats["by_status"].get("running", 0)
        head = Text.assemble(
            (self.title, "bold"), "  ", daemon_line(snapshot.daemons, running), "  ", rate_line(snapshot)
        )
        text = Text("\n").join(
            [
                head,
                self._counts(snapshot, request),
                window_line(snapshot, request, self.keys, marked),
            ]
        )
        if text != self._last:
            self._last = text
            self.update(text)

    def _counts(self, snapshot: Snapshot, request: PageRequest) -> Text:
        """The counts line, its gaps narrowed when it would not fit on one line."""
        line = counts_line(snapshot.stats, request, self.keys)
        width = self.content_size.width
        return counts_line(snapshot.stats, request, self.keys, gap=" ") if width and line.cell_len > width else line

    def show_error(self, message: str) -> None:
        text = Text.assemble((self.title, "bold"), "  ", ("database error: ", "bold red"), message)
        self._last = text
        self.update(text)
