"""The detail screen's log: what a LogTail read, kept within a fixed budget, drawn like a Log.

Textual's `Log(max_lines=...)` drops old lines and then refreshes line numbers that no longer
exist, so past its limit the view stops redrawing (issue 15). This keeps the lines itself:
finished ones, then the unfinished tail that the next chunk replaces; past LINES_KEPT lines or
CHARS_KEPT characters the oldest go and a note takes the top line, and every change redraws
what is on screen (only the visible lines are ever rendered).
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.geometry import Size
from textual.widgets import Log

from jobrunner.tui.logtail import LINES_KEPT, LogChunk

# ~8 MB of text even when every line holds 4-byte characters: the TUI's memory stays flat
CHARS_KEPT = 2_000_000


class LogView(Log):
    """A Log fed by chunks (LogTail.read): lines are added, the unfinished tail is replaced."""

    def __init__(self, note: str = "… earlier lines not kept here", *, lines_kept: int = LINES_KEPT,
                 chars_kept: int = CHARS_KEPT, id: str | None = None) -> None:  # fmt: skip
        super().__init__(max_lines=None, auto_scroll=False, id=id)
        self.note = note  # the top line once older lines were dropped
        self.lines_kept, self.chars_kept = lines_kept, chars_kept
        self._open = 0  # how many of the last lines are the tail the next chunk replaces
        self._chars = 0
        self._noted = False  # the first line is the note
        self._at_end = True  # following when last scrolled or fed: kept when the pane is resized

    @property
    def following(self) -> bool:
        """The end is in view: new lines scroll in."""
        return self.max_scroll_y == 0 or self.scroll_y >= self.max_scroll_y

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._at_end = self.following

    def on_resize(self) -> None:
        """The detail view sizes its panes by their content: a log that followed its end before
        the pane grew or shrank still does."""
        if self._at_end and not self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def clear(self) -> LogView:
        super().clear()
        self._open, self._chars, self._noted = 0, 0, False
        return self

    def add(self, chunk: LogChunk, follow: bool) -> None:
        """Show a chunk: its lines after the ones shown, its tail instead of the last tail."""
        lines = self._lines
        if not (chunk.lines or chunk.trimmed) and chunk.tail == lines[len(lines) - self._open :]:
            return  # nothing new: nothing to redraw
        if self._open:
            self._chars -= _chars(lines[-self._open :])
            del lines[-self._open :]
        lines += chunk.lines
        lines += chunk.tail
        self._open = len(chunk.tail)
        self._chars += _chars(chunk.lines) + _chars(chunk.tail)
        removed = self._trim(chunk.trimmed)
        self._width = max(self._width, chunk.width)
        self._render_line_cache.clear()  # line numbers moved, the tail changed
        self.virtual_size = Size(self._width, len(lines))
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif removed:  # the lines a reader looks at stay in place
            self.scroll_to(y=max(self.scroll_y - removed, 0), animate=False, immediate=True)
        self._at_end = self.following
        self.refresh()

    def _trim(self, trimmed: bool) -> int:
        """Drop the oldest lines past the budget (never the tail); how many lines went."""
        lines = self._lines
        start = 1 if self._noted else 0
        count = max(len(lines) - start - self.lines_kept, 0)
        dropped = _chars(lines[start : start + count])
        last = len(lines) - max(self._open, 1)  # the newest line stays, however long
        while self._chars - dropped > self.chars_kept and start + count < last:
            dropped += len(lines[start + count])
            count += 1
        if count:
            del lines[start : start + count]
            self._chars -= dropped
        if (count or trimmed) and not self._noted:
            lines.insert(0, self.note)
            self._chars += len(self.note)
            self._noted = True
            return count - 1
        return count


def _chars(lines: Sequence[str]) -> int:
    return sum(map(len, lines))
