"""What every benchmark shares: a figure (runs -> median, min, max), its bar, a table, an isolated environment."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    """One measured quantity: every run's value, summarised as median (min-max)."""

    name: str
    unit: str  # "jobs/s", "ms", "MB", "% core" or "x" (a ratio)
    values: list[float]
    higher_is_better: bool = True
    bar: float | None = None  # the figure to clear, in `unit`; None: context only
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    @property
    def verdict(self) -> str:
        if self.bar is None:
            return ""
        ok = self.median >= self.bar if self.higher_is_better else self.median <= self.bar
        return "ok" if ok else "MISS"

    def bar_text(self) -> str:
        if self.bar is None:
            return ""
        return f"{'>=' if self.higher_is_better else '<='} {number(self.bar, self.unit)}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name.strip(), "unit": self.unit, "median": self.median, "min": self.low,
            "max": self.high, "runs": len(self.values), "values": self.values, "bar": self.bar,
            "higher_is_better": self.higher_is_better, "verdict": self.verdict or None,
            "note": self.note, **self.extra,
        }  # fmt: skip


def number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}"
    if unit in ("ms", "MB"):
        return f"{value:,.1f}"
    if unit.startswith("%"):
        return f"{value:.2f}"
    return f"{value:,.0f}"


def table(figures: list[Figure]) -> str:
    """A plain-text table: name, median, min-max, unit, runs, the bar and whether the median clears it."""
    rows = [("benchmark", "median", "min-max", "unit", "runs", "bar", "")]
    for f in figures:
        rows.append((f.name, number(f.median, f.unit), f"{number(f.low, f.unit)}-{number(f.high, f.unit)}",
                     f.unit, str(len(f.values)), f.bar_text(), f.verdict))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i in (0, 3) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    notes = [f"  {f.name.strip()}: {f.note}" for f in figures if f.note]
    return "\n".join(lines + (["", *notes] if notes else []))


@contextmanager
def isolated(workdir: os.PathLike[str] | str, **env: str | None) -> Iterator[None]:
    """Run in `workdir` with no user config in sight and `env` applied; restore both afterwards."""
    workdir = str(workdir)
    changes: dict[str, str | None] = {
        "JOBRUNNER_CONFIG": None,
        "XDG_CONFIG_HOME": os.path.join(workdir, "config"),
        "XDG_STATE_HOME": os.path.join(workdir, "state"),
        **env,
    }
    saved = {key: os.environ.get(key) for key in changes}
    cwd = os.getcwd()
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.chdir(workdir)
        yield
    finally:
        os.chdir(cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def standalone(measure: Callable[..., list[Figure]], doc: str | None, helps: dict[str, str] | None = None,
               argv: list[str] | None = None) -> None:  # fmt: skip
    """`python -m benchmarks.NAME`: an option per parameter of `measure` (its default, its type),
    then the table, and --json FILE to keep the figures."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, param in inspect.signature(measure).parameters.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(param.default), default=param.default,
                            help=(helps or {}).get(name))  # fmt: skip
    parser.add_argument("--json", metavar="FILE", dest="json_file", help="also write the figures as JSON")
    options = vars(parser.parse_args(argv))
    path = options.pop("json_file")
    if options.get("runs", 3) < 3:
        parser.error("--runs must be at least 3 (a median needs them)")
    figures = measure(**options)
    print(table(figures))
    if path:
        with open(path, "w") as handle:
            handle.write(json.dumps([f.as_dict() for f in figures], indent=2) + "\n")
