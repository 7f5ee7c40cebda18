"""Progress of a run while it works: per source, what is planned and done, and the time
Graph's request budget still needs for the rest.

``SourceProgress`` is kept by the run (pure bookkeeping); a view shows every source's every
so often: ``LogView`` writes one line per source at most every 30 s (the Function, a
redirected CLI), ``TerminalView`` draws live bars with ``rich`` (the CLI in a terminal).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Protocol

from ..core.sources import SOURCES
from ..core.windows import Window
from ..graph.pace import PAGE_ROWS, Pace, days_long
from .reports import SourceReport

log = logging.getLogger("collector")

RECORD_REQUESTS = 2 + 1 / 60
"""Requests a record read whole takes: its GET (with its first sessions) and its
participants' first page, and its share of a list page of 60 (later pages of large meetings
come on top)."""
LOG_SECONDS = 30.0
"""At most one progress line per source this often."""
_DAY = timedelta(days=1)


@dataclass
class SourceProgress:
    """One source's work in this run: days of its history to read, windows, settled days."""

    report: SourceReport
    pace: Pace
    requests_per_second: float
    """The source's share of Graph's request budget."""
    days_planned: float = 0.0
    days_done: float = 0.0
    windows_planned: int = 0
    """Provisional windows (and unfinished ones read again): known at the start."""
    windows_done: int = 0
    settle_days_planned: int = 0

    @property
    def name(self) -> str:
        """The lane's name (``pstn``, or ``pstn@<tenant>``)."""
        return self.report.name

    def plan_windows(self, windows: list[Window]) -> None:
        """The run will read ``windows`` (provisional, or left claimed by a dead run)."""
        self.windows_planned += len(windows)
        self.days_planned += sum(days_long(w) for w in windows)

    def plan_settle(self, start: datetime, horizon: datetime) -> None:
        """The run will settle the whole days from ``start`` to ``horizon``."""
        days = (horizon - start) / _DAY
        self.settle_days_planned += round(days)
        self.days_planned += days

    def read(self, window: Window, provisional: bool) -> None:
        """``window`` is committed."""
        self.days_done += days_long(window)
        if provisional:
            self.windows_done += 1

    def budget_seconds_needed(self) -> float | None:
        """Seconds of the source's request budget the rest of the plan needs (one request a
        page, at least one a window); None while the source's density is unknown."""
        if self.pace.rows_per_day is None or self.requests_per_second <= 0:
            return None
        days_left = max(0.0, self.days_planned - self.days_done)
        source = SOURCES[self.report.source]
        if source.expand is not None:  # each listed row is read whole
            return self.pace.rows_per_day * days_left * RECORD_REQUESTS / self.requests_per_second
        pages = self.pace.rows_per_day * days_left / PAGE_ROWS
        pages += self.windows_planned - self.windows_done
        if source.read_once:  # a request a day, however few rows
            pages = max(pages, math.ceil(days_left))
        else:
            pages += days_left > 0
        return pages / self.requests_per_second

    def line(self) -> str:
        """Where the source stands, in one line."""
        parts = [f"windows {self.windows_done}/{self.windows_planned}"]
        if self.settle_days_planned:
            parts.append(f"settled {self.report.settled_days}/{self.settle_days_planned} days")
        parts.append(f"{self.report.rows:,} rows")
        parts.append(f"{self.report.stats.requests:,} requests")
        parts.append(needs(self.budget_seconds_needed()))
        return ", ".join(parts)

    def changed(self) -> tuple[float, int, int]:
        """What moves when the source makes progress (a view shows nothing new otherwise)."""
        return (self.days_done, self.report.rows, self.report.stats.requests)


def needs(seconds: float | None) -> str:
    """``seconds`` of request budget, as a reader wants it (``budget needs ~1h05m more``)."""
    if seconds is None:
        return "budget needed: unknown until a day is read"
    if seconds < 1:
        return "budget needs nothing more"
    minutes = math.ceil(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"budget needs ~{hours}h{minutes:02d}m more" if hours else f"budget needs ~{minutes}m more"
    )


class View(Protocol):
    """Shows the progress of every source of a run."""

    interval: float
    """Seconds between two ``show`` calls."""

    def show(self, sources: list[SourceProgress]) -> None:
        """Show where ``sources`` stand now."""

    def close(self, sources: list[SourceProgress]) -> None:
        """The run is over."""


class LogView:
    """One INFO line per source that moved, at most every ``interval`` seconds: nothing in a
    run shorter than that, a line every 30 s during a long catch-up."""

    def __init__(self, interval: float = LOG_SECONDS) -> None:
        self.interval = interval
        self._shown: dict[str, tuple[float, int, int]] = {}

    def show(self, sources: list[SourceProgress]) -> None:
        """Log the sources that moved since their last line."""
        for progress in sources:
            now = progress.changed()
            if self._shown.get(progress.name) != now:
                self._shown[progress.name] = now
                log.info("%s: progress: %s", progress.name, progress.line())

    def close(self, sources: list[SourceProgress]) -> None:
        """Nothing: the run's summary lines follow."""


class TerminalView:
    """Live bars, one per source (days of its history read), redrawn in place by ``rich``."""

    interval = 0.2

    def __init__(self, stream: IO[str] | None = None) -> None:
        # Imported here: the Function never draws, and does not pay for it.
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

        self._bars = Progress(
            TextColumn("[bold]{task.description:<15}"),
            BarColumn(),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=Console(file=stream or sys.stderr),
            auto_refresh=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def show(self, sources: list[SourceProgress]) -> None:
        """Redraw every source's bar (the first call starts drawing)."""
        if not self._bars.live.is_started:
            self._bars.start()
        for progress in sources:
            task = self._tasks.get(progress.name)
            if task is None:
                task = self._tasks[progress.name] = self._bars.add_task(progress.name, line="")
            # A source with nothing to read is up to date: a full bar.
            total = progress.days_planned or 1.0
            self._bars.update(
                task,
                total=total,
                completed=progress.days_done if progress.days_planned else total,
                line=progress.line(),
            )
        self._bars.refresh()

    def close(self, sources: list[SourceProgress]) -> None:
        """Draw the last state, leave it on screen, and give the terminal back."""
        try:
            self.show(sources)
        finally:
            self._bars.stop()

    def logging_handler(self) -> logging.Handler:
        """A log handler that prints above the bars instead of through them."""
        from rich.logging import RichHandler

        return RichHandler(console=self._bars.console, show_path=False)
