"""Pure planning of the time windows a run reads.

Windows are half-open ``[start, end)``: Graph's ``toDateTime`` is exclusive, so each
window starts exactly where the previous one ended and no instant is read twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .timefmt import compact_instant, format_instant

GRAPH_MAX_RANGE = timedelta(days=90)
"""Longest range Graph accepts in one request."""


@dataclass(frozen=True, order=True)
class Window:
    """A half-open time range ``[start, end)`` of one request sequence."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if not self.start < self.end:
            raise ValueError(f"empty or inverted window {self.start} .. {self.end}")
        if self.end - self.start > GRAPH_MAX_RANGE:
            raise ValueError(f"window longer than Graph's 90-day limit: {self}")

    @property
    def name(self) -> str:
        """Deterministic name of the window, used in blob names so a re-read replaces."""
        return f"{compact_instant(self.start)}-{compact_instant(self.end)}"

    def __str__(self) -> str:
        return f"[{format_instant(self.start)}, {format_instant(self.end)})"


def next_midnight(moment: datetime) -> datetime:
    """Return the first UTC midnight strictly after ``moment``."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)


def floor_to_minute(moment: datetime) -> datetime:
    """Return ``moment`` in UTC with seconds and microseconds dropped."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def run_end(now: datetime, lag: timedelta) -> datetime:
    """Return the exclusive upper bound a run may read to: ``now - lag`` floored to the minute."""
    return floor_to_minute(now - lag)


def plan_windows(start: datetime, end: datetime) -> list[Window]:
    """Split ``[start, end)`` into contiguous windows cut at every UTC midnight.

    Returns an empty list when there is nothing to read (``end <= start``).
    """
    windows: list[Window] = []
    cursor = start
    while cursor < end:
        stop = min(next_midnight(cursor), end)
        windows.append(Window(cursor, stop))
        cursor = stop
    return windows
