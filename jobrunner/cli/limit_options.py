"""The resource-limit options `submit` and `edit` share: one definition, one help text."""

from __future__ import annotations

from typing import Annotated

import typer

Memory = Annotated[
    str | None,
    typer.Option(
        "--memory", metavar="SIZE",
        help="Fail an attempt whose processes use more memory than this (512M, 2G; per process "
        "without a delegated cgroup).",
    ),
]  # fmt: skip
CpuTime = Annotated[
    str | None,
    typer.Option(
        "--cpu-time", metavar="DURATION",
        help="Fail an attempt whose processes use more CPU time than this (30s, 10m; per process "
        "without a delegated cgroup).",
    ),
]  # fmt: skip
MaxLogSize = Annotated[
    str | None,
    typer.Option(
        "--max-log-size", metavar="SIZE",
        help="Keep the job's log within this size (50M): the head and the tail, the middle cut with a note.",
    ),
]  # fmt: skip
