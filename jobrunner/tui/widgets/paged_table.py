"""One DataTable that shows one page of jobs and updates its cells in place.

Rows are slots (keys "0", "1", ...): a refresh changes only the cells whose text
changed, so the cursor and the view stay put and nothing flickers. The table holds
only as many rows as fit; moving past an edge asks the screen for another offset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

Cell = str | Text
MARK_STYLE = "bold reverse magenta"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    render: Callable[[dict[str, Any], float], Cell]
    right: bool = False
    sort: str | None = None  # the store column it sorts by (queries.SORTABLE); None: not sortable
    descending_first: bool = False  # numbers and times: biggest/newest first on the first click
    # draws the cell at a given width: the column takes the room the others leave, `width` at least
    fill: Callable[[dict[str, Any], float, int], Cell] | None = None
    optional: bool = False  # shown only where the others keep their widths beside it (else 0 wide)
    fit: bool = False  # as wide as its widest cell on the page, never cut (an id past 999,999)


def fitted_widths(columns: list[Column], room: int, padding: int = 1,
                  needs: dict[str, int] | None = None) -> dict[str, int]:  # fmt: skip
    """Each column's width in a table `room` cells wide: a `fit` column as wide as `needs`
    says its cells are, optional columns (the last first) go when the others would not fit
    beside them, and the first that fills takes what is left, never less than its own width."""
    needs = needs or {}
    widths = {column.key: max(column.width, needs.get(column.key, 0)) for column in columns}
    used = sum(widths.values()) + 2 * padding * len(columns)
    for column in reversed(columns):
        if column.optional and used > room:
            widths[column.key] = 0
            used -= column.width
    filling = next((column for column in columns if column.fill), None)
    if filling is not None:
        widths[filling.key] = max(filling.width, filling.width + room - used)
    return widths


def page_rows(columns: list[Column], jobs: list[dict[str, Any]], now: float, marked: frozenset[int],
              room: tuple[int, int]) -> tuple[list[tuple[Cell, ...]], dict[str, int]]:  # fmt: skip
    """A page's cells and the widths they were cut to, in a table of `room` (its width, its
    cell padding): the `fit` columns first measured on these jobs (runs in the worker thread)."""
    needs = {column.key: max((len(str(column.render(job, now))) for job in jobs), default=0)
             for column in columns if column.fit}  # fmt: skip
    widths = fitted_widths(columns, room[0], room[1], needs)
    return render_rows(columns, jobs, now, marked, widths), widths


def render_rows(columns: list[Column], jobs: list[dict[str, Any]], now: float,
                marked: frozenset[int] = frozenset(), widths: dict[str, int] | None = None) -> list[tuple[Cell, ...]]:  # fmt: skip
    """Cells for every job, cut to their column's width (`widths`, fitted_widths: else each
    column's own) (runs in the worker thread); a marked job's first cell is shown reversed."""
    rows = []
    widths = widths or {}
    for job in jobs:
        cells: list[Cell] = []
        for index, column in enumerate(columns):
            width = widths.get(column.key, column.width)
            cell = column.fill(job, now, width) if column.fill else column.render(job, now)
            if index == 0 and job["id"] in marked:  # shown reversed, so the width stays
                cell = Text(cell, style=MARK_STYLE) if isinstance(cell, str) else cell
                cell.stylize(MARK_STYLE)
            if width <= 0:  # an optional column with no room
                cell = Text("")
            elif isinstance(cell, str):
                cell = Text(cell if len(cell) <= width else cell[: width - 1] + "…")
            else:
                cell.truncate(width, overflow="ellipsis")
            if column.right:
                cell.justify = "right"
            cells.append(cell)
        rows.append(tuple(cells))
    return rows


class PagedTable(DataTable):
    """A window onto a long list of jobs; the screen decides which page it shows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home", "scroll_top", "Top", show=False),
        Binding("end", "scroll_bottom", "Bottom", show=False),
    ]

    class Shift(Message):
        """The user scrolled past an edge: show the page `rows` further (negative: back)."""

        def __init__(self, rows: int) -> None:
            super().__init__()
            self.rows = rows

    class Jump(Message):
        """Home or End: the first or last page."""

        def __init__(self, to_end: bool) -> None:
            super().__init__()
            self.to_end = to_end

    def __init__(self, columns: list[Column], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.job_columns = columns
        self.jobs: list[dict[str, Any]] = []
        self._shown: list[tuple[Cell, ...]] = []
        self._needs: dict[str, int] = {}  # the fit columns' widths on the page shown

    def on_mount(self) -> None:
        for column in self.job_columns:  # optional ones come in once the width is known to have room
            width = 0 if column.optional else column.width
            self.add_column(self._label(column, None), key=column.key, width=width)

    @property
    def room(self) -> tuple[int, int]:
        """What page_rows needs to know of the table: its width now and its cell padding."""
        return self.scrollable_content_region.width, self.cell_padding

    @property
    def widths(self) -> dict[str, int]:
        """The columns' widths at the table's width now (a filling column takes the room left)."""
        return fitted_widths(self.job_columns, *self.room, self._needs)

    def on_resize(self) -> None:
        self._set_widths(self.widths)

    def _set_widths(self, widths: dict[str, int]) -> None:
        changed = False
        for key, width in widths.items():
            column = self.columns[ColumnKey(key)]
            if column.width != width:
                column.width = width
                changed = True
        if changed:
            self._require_update_dimensions = True
            self._clear_caches()
            self.refresh()

    @staticmethod
    def _label(column: Column, order_by: str | None) -> Text:
        label = Text(column.label, justify="right" if column.right else "left")
        if column.sort and order_by and order_by.removeprefix("-") == column.sort:
            label.append("▼" if order_by.startswith("-") else "▲", style="bold")
        return label

    def show_order(self, order_by: str | None) -> None:
        """Mark the column the page is sorted by (none for the default, newest first)."""
        changed = False
        for column in self.job_columns:
            label = self._label(column, order_by)
            current = self.columns[ColumnKey(column.key)]
            if current.label != label:
                current.label = label
                changed = True
        if changed:
            self._clear_caches()  # header cells are cached by row; labels are not tracked
            self.refresh()

    @property
    def capacity(self) -> int:
        """How many rows fit without scrolling."""
        height = self.scrollable_content_region.height - (self.header_height if self.show_header else 0)
        return max(height, 1)

    @property
    def selected(self) -> dict[str, Any] | None:
        if not self.jobs or not 0 <= self.cursor_row < len(self.jobs):
            return None
        return self.jobs[self.cursor_row]

    def show(self, jobs: list[dict[str, Any]], rows: list[tuple[Cell, ...]], cursor: int | None = None,
             follow: int | None = None, widths: dict[str, int] | None = None) -> None:  # fmt: skip
        """Put a page in place: changed cells only, in the `widths` they were cut to (page_rows);
        then the cursor on job `follow` if it is on this page, else on row `cursor`, else where it was."""
        if widths is not None:
            self._needs = {column.key: widths[column.key] for column in self.job_columns if column.fit}
            self._set_widths(widths)
        keys = [column.key for column in self.job_columns]
        for index, row in enumerate(rows):
            if index >= len(self._shown):
                self.add_row(*row, key=str(index))
                continue
            for key, old, new in zip(keys, self._shown[index], row, strict=True):
                if old != new:
                    self.update_cell(str(index), key, new)
        for index in range(len(self._shown) - 1, len(rows) - 1, -1):
            self.remove_row(str(index))
        self._shown = list(rows)
        self.jobs = jobs
        ids = [job["id"] for job in jobs]
        if follow is not None and follow in ids:
            cursor = ids.index(follow)
        if cursor is not None and rows:
            self.move_cursor(row=min(max(cursor, 0), len(rows) - 1), animate=False)

    # Moving past the edges turns pages instead of scrolling inside the table.
    def action_cursor_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1:
            self.post_message(self.Shift(1))
        else:
            super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.cursor_row <= 0:
            self.post_message(self.Shift(-1))
        else:
            super().action_cursor_up()

    def action_page_down(self) -> None:
        self.post_message(self.Shift(self.capacity))

    def action_page_up(self) -> None:
        self.post_message(self.Shift(-self.capacity))

    def action_scroll_top(self) -> None:
        self.post_message(self.Jump(to_end=False))

    def action_scroll_bottom(self) -> None:
        self.post_message(self.Jump(to_end=True))

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self.post_message(self.Shift(3))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self.post_message(self.Shift(-3))
