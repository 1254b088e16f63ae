"""How jobs look in the TUI's tables: cells as rich Text.

Pure functions of a job dict (the JSON contract) and `now`, so they run in worker
threads and a test can freeze the clock. What `show` shares with the detail view lives
in jobrunner.present, and so does how job-provided text is shown (present.visible: every
name, error and message in a cell goes through one_line, which uses it).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from jobrunner.present import (
    BAR_WIDTH,
    STATUS_STYLES,
    job_duration,
    one_line,
    owner_host,
    parse_iso,
    progress_bar,
    progress_message,
    shows_progress,
    tries_text,
    visible,
)

__all__ = [
    "STATUS_STYLES",
    "age",
    "duration",
    "host",
    "one_line",
    "progress_cell",
    "short_age",
    "status_text",
    "tries",
    "visible",
]


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def progress_cell(job: dict[str, Any], width: int) -> Text:
    """Bar, percent and message in one cell; empty when the job has no progress to show (none
    reported, or its attempt ended other than succeeded)."""
    if not shows_progress(job):
        return Text("")
    style = "green" if job["status"] == "succeeded" else STATUS_STYLES.get(job["status"], "")
    text = Text(progress_bar(job["progress"]), style=style)
    text.append(f" {job['progress'] * 100:3.0f}%")
    if job["progress_message"]:
        text.append(" " + progress_message(job, width - BAR_WIDTH - 6), style="dim")
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
    stamp = parse_iso(job[field])
    return short_age(now - stamp) if stamp is not None else ""


def duration(job: dict[str, Any], now: float) -> str:
    """How long the last attempt ran (so far, while it runs); '' if none ran."""
    return job_duration(job, now)


def tries(job: dict[str, Any]) -> str:
    """Attempts in the current retry budget over that budget, as `list` shows them."""
    return tries_text(job)


def host(job: dict[str, Any]) -> str:
    """The host a running job runs on, from its lease (no query per row); '' for any other job
    (the detail view names the hosts of every attempt)."""
    return owner_host(job["lease_owner"]) if job["status"] == "running" else ""
