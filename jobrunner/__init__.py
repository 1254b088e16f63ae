"""jobrunner: a terminal-first background job runner over one database.

Importing this package stays cheap: the store and CLI load only when used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "connect", "submit", "task"]


def __getattr__(name: str) -> Any:
    if name in ("submit", "task", "connect", "Task"):
        from jobrunner import api

        return getattr(api, name)
    raise AttributeError(f"module 'jobrunner' has no attribute {name!r}")
