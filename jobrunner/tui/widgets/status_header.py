"""The lines above the table: the daemon's heartbeat, counts per status, what is shown."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from jobrunner.domain.durations import format_duration
from jobrunner.domain.states import ALL_STATUSES
from jobrunner.tui.data import PageRequest, Snapshot, count_text
from jobrunner.tui.format import STATUS_STYLES

SEP = (" · ", "dim")


def daemon_line(daemons: list[dict[str, Any]], running: int, brief: bool = False) -> Text:
    """Whether anything runs the jobs, from the daemons' heartbeats, and on which hosts; how many
    workers are busy, from the jobs running now (the count a heartbeat carries is up to one beat
    old). `brief`: the shorter form, for a narrow screen."""
    alive = [d for d in daemons if d["alive"]]
    if not alive:
        if not daemons:
            return Text.assemble(
                ("○ no daemon", "bold red"), *(() if brief else (SEP, ("jobs wait until one runs", "dim")))
            )
        last = daemons[0]
        if last["state"] == "stopped":
            return Text.assemble(("○ daemon stopped", "bold red"), SEP, (f"last on {last['host']}", "dim"))
        silent = format_duration(last["heartbeat_age"])
        if brief:
            return Text.assemble(("○ daemon silent", "bold red"), SEP, (last["host"], "dim"))
        return Text.assemble(
            ("○ daemon silent", "bold red"), SEP, (f"no heartbeat from {last['host']} for {silent}", "dim")
        )
    workers = sum(d["workers"] for d in alive)
    busy = min(running, workers)
    hosts = ", ".join(sorted({d["host"] for d in alive}))
    if len(alive) == 1:
        label, where = "● daemon up", f"pid {alive[0]['pid']} on {hosts}"
    else:
        label, where = f"● {len(alive)} daemons up", f"on {hosts}"
    if brief:
        return Text.assemble((label, "bold green"), SEP, (f"{busy}/{workers} busy on {hosts}", "dim"))
    return Text.assemble(
        (label, "bold green"), SEP, (f"{busy}/{workers} workers busy", "dim"), SEP, (where, "dim")
    )


def rate_line(snapshot: Snapshot, brief: bool = False) -> Text:
    """`4 running · 262 queued · 12 finished/min`: is work moving, at a glance (`brief`: without
    the finished jobs, for a narrow screen)."""
    by_status = snapshot.stats["by_status"]
    gap = (" · ", "dim") if brief else ("  ·  ", "dim")
    line = Text.assemble(
        (f"{count_text(by_status.get('running', 0), short=True)} running", STATUS_STYLES["running"]), gap,
        (f"{count_text(by_status.get('queued', 0), short=True)} queued", STATUS_STYLES["queued"]),
    )  # fmt: skip
    if not brief:
        line.append_text(Text.assemble(gap, (f"{snapshot.finished_last_minute} finished/min", "bold")))
    return line


def head_line(title: str, snapshot: Snapshot, width: int | None) -> Text:
    """The first line: the title, the daemons and the rates, in their longest form that fits
    `width` (None: unknown, the longest); parts go rather than wrap onto the next line."""
    running = snapshot.stats["by_status"].get("running", 0)
    full_daemon, brief_daemon = (
        daemon_line(snapshot.daemons, running),
        daemon_line(snapshot.daemons, running, True),
    )
    full_rate, brief_rate = rate_line(snapshot), rate_line(snapshot, brief=True)
    head = Text(title, style="bold")
    candidates = [
        Text.assemble(head, "  ", full_daemon, "  ", full_rate),
        Text.assemble(head, "  ", brief_daemon, "  ", full_rate),
        Text.assemble(head, "  ", brief_daemon, "  ", brief_rate),
        Text.assemble(brief_daemon, "  ", brief_rate),
    ]
    return first_fitting(candidates, width)


#: Status names in the counts line when the whole names do not fit (80 columns).
SHORT_NAMES = {"scheduled": "sched", "waiting": "wait", "running": "run", "retrying": "retry",
               "succeeded": "ok", "cancelled": "cancel"}  # fmt: skip


def counts_line(stats: dict[str, Any], request: PageRequest, keys: bool, gap: str = "  ",
                short: bool = False) -> Text:  # fmt: skip
    """`1 queued 12  2 scheduled 0 ...`: the numbers toggle the status filter, shown reversed;
    a count past the cap is `>10k`; `short`: the names shortened (`sched`, `ok`)."""
    line = Text()
    chosen = {s.value for s in request.statuses}
    for number, status in enumerate(ALL_STATUSES, start=1):
        count = stats["by_status"].get(status.value, 0)
        style = STATUS_STYLES[status.value] + (" reverse" if status.value in chosen else "")
        if keys:
            line.append(f"{number}", style="bold dim")
            line.append(" ")
        name = SHORT_NAMES.get(status.value, status.value) if short else status.value
        line.append(f"{name} {count_text(count, short=True)}", style=style if count or chosen else "dim")
        line.append(gap)
    line.rstrip()
    return line


def first_fitting(candidates: list[Text], width: int | None) -> Text:
    """The first text that fits in `width` cells; else the last, to be cut with an ellipsis."""
    if width:
        for text in candidates:
            if text.cell_len <= width:
                return text
    return candidates[-1] if width else candidates[0]


#: A sort's column as the tables' headers name it (TRIES, AGE, the dead letters' DIED).
SORT_WORDS = {"attempts": "tries", "created_at": "age", "finished_at": "died"}


def window_line(snapshot: Snapshot, request: PageRequest, keys: bool, marked: int = 0) -> Text:
    shown = len(snapshot.jobs)
    first = snapshot.offset + 1 if shown else 0
    line = Text(f"total {count_text(snapshot.stats['total'])}", style="bold")
    where = " from the end" if snapshot.from_end else ""
    line.append(
        f"  ·  rows {first}–{snapshot.offset + shown}{where} of {count_text(snapshot.total)}", style="dim"
    )
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
        column = SORT_WORDS.get(column, column)
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
    """Three lines, rebuilt from each snapshot (a few dozen characters: cheaper than diffing).
    A line never wraps (it would push the next one out of the header): it takes a shorter form
    that fits, or is cut with an ellipsis."""

    def __init__(self, title: str, keys: bool = True, **kwargs: Any) -> None:
        super().__init__(Text(title, style="bold"), **kwargs)
        self.title = title
        self.keys = keys
        self._last: Text | None = None
        self._shown: tuple[Snapshot, PageRequest, int] | None = None

    def show(self, snapshot: Snapshot, request: PageRequest, marked: int = 0) -> None:
        self._shown = (snapshot, request, marked)
        width = self.content_size.width or None
        text = Text("\n").join(
            [
                head_line(self.title, snapshot, width),
                self._counts(snapshot, request, width),
                window_line(snapshot, request, self.keys, marked),
            ]
        )
        text.no_wrap, text.overflow = True, "ellipsis"
        if text != self._last:
            self._last = text
            self.update(text)

    def on_resize(self) -> None:
        if self._shown is not None:
            self.show(*self._shown)

    def _counts(self, snapshot: Snapshot, request: PageRequest, width: int | None) -> Text:
        """The counts line, its gaps narrowed and then its names shortened when it would not fit."""
        stats, keys = snapshot.stats, self.keys
        return first_fitting(
            [counts_line(stats, request, keys), counts_line(stats, request, keys, gap=" "),
             counts_line(stats, request, keys, gap=" ", short=True)],
            width,
        )  # fmt: skip

    def show_error(self, message: str) -> None:
        text = Text.assemble((self.title, "bold"), "  ", ("database error: ", "bold red"), message)
        self._last = text
        self._shown = None
        self.update(text)
