"""jobrunner: a terminal-first background job runner over one database.

Importing this package stays cheap: the store and CLI load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ hands out, for type checkers and editors
    from jobrunner.api import Task, connect, submit, task
    from jobrunner.control import (
        JobFailed,
        cancel,
        get,
        list_jobs,
        retry,
        stats,
        submit_async,
        submit_many,
        wait,
        wait_async,
    )
    from jobrunner.editing import cancel_matching, edit, edit_and_retry, export_dead, retry_matching
    from jobrunner.jobcontext import JobContext, current_job

__version__ = "0.1.0"
_EDITING = ("edit", "edit_and_retry", "retry_matching", "cancel_matching", "export_dead")
_CONTROL = ("JobFailed", "cancel", "get", "list_jobs", "retry", "stats", "submit_async", "submit_many", "wait",
            "wait_async")  # fmt: skip
__all__ = [
    "JobContext",
    "JobFailed",
    "Task",
    "__version__",
    "cancel",
    "cancel_matching",
    "connect",
    "current_job",
    "edit",
    "edit_and_retry",
    "export_dead",
    "get",
    "list_jobs",
    "retry",
    "retry_matching",
    "stats",
    "submit",
    "submit_async",
    "submit_many",
    "task",
    "wait",
    "wait_async",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in ("submit", "task", "connect", "Task"):
        from jobrunner import api

        return getattr(api, name)
    if name in _CONTROL:
        from jobrunner import control

        return getattr(control, name)
    if name in _EDITING:
        from jobrunner import editing

        return getattr(editing, name)
    if name in ("current_job", "JobContext"):  # a job module imports it: keep that cheap
        from jobrunner import jobcontext

        return getattr(jobcontext, name)
    raise AttributeError(f"module 'jobrunner' has no attribute {name!r}")
