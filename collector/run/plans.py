"""Which window a phase reads next: pure, fed back with what each window took.

The provisional plan is fixed at the start of a run (windows of at most a day up to
``now - lag``); the settle plan sizes each window from the pages the last one needed, so a
sparse history is read in a few long windows and a busy one in many one-day windows.
"""

from __future__ import annotations

from datetime import datetime

from ..core.windows import (
    SETTLE_MAX_DAYS,
    Window,
    balanced_days,
    next_settle_days,
    plan_windows,
    settle_window,
)


class ProvisionalPlan:
    """The provisional windows of one run, ``[start, end)`` cut at every midnight."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.windows = plan_windows(start, end)
        self._next = 0

    def next_window(self) -> Window | None:
        """The next window to read, or None when all have been handed out."""
        if self._next == len(self.windows):
            return None
        self._next += 1
        return self.windows[self._next - 1]

    def label(self, window: Window) -> str:
        """Where ``window`` stands in the plan, for the log (`` 3/10``)."""
        return f" {self.windows.index(window) + 1}/{len(self.windows)}"


class SettlePlan:
    """Settle windows from the settled watermark up to the horizon.

    The first window is one day. Each finished window sets the next one's length
    (``next_settle_days``); near the end, windows shrink so that the windows in flight
    share the last days rather than one long window paging alone.
    """

    def __init__(
        self, start: datetime, horizon: datetime, in_flight: int, *, one_day: bool = False
    ) -> None:
        self._cursor = start
        self._horizon = horizon
        self._in_flight = in_flight
        self._max_days = 1 if one_day else SETTLE_MAX_DAYS
        """``one_day``: every window is one day (a daily report's)."""
        self._days = 1
        self._sparse = False
        self._measured = False

    def next_window(self, dense: bool = False) -> Window | None:
        """The next window to settle, or None once the horizon is reached."""
        if self._cursor >= self._horizon:
            return None
        days = balanced_days(self._days, self._cursor, self._horizon, self.width(dense))
        window = settle_window(self._cursor, self._horizon, days)
        self._cursor = window.end
        return window

    def finished(self, pages: int) -> None:
        """A window of this plan took ``pages`` pages: size the next one by it."""
        self._days = min(next_settle_days(self._days, pages), self._max_days)
        self._sparse = pages <= 2  # near-empty days: grow one window at a time
        self._measured = True

    def width(self, dense: bool) -> int:
        """How many windows may be read at once: one first, unless the source is known to
        be ``dense`` (a window needs several pages); one at a time while a sparse history
        grows the windows (each sized from the last); else all the run allows."""
        if dense:
            return self._in_flight
        growing = self._sparse and self._days < self._max_days
        return 1 if growing or not self._measured else self._in_flight
