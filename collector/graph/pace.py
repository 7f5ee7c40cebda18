"""How much reading a run can still take on: a source's measured density against the
request budget and the time left.

A window's pages can only be read one after another, and all windows of a log share its
request budget, so a run that starts more windows than the budget can finish before its hard
time limit finishes none of them (a day of a million calls is 1,000 pages: 20 minutes of one
log's budget). Windows are admitted only while the pages they are expected to need fit in
what the budget allows until then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from ..core.windows import Window

PAGE_ROWS = 1000
"""Rows in a full Graph page."""
SAFETY = 0.8
"""Share of the remaining budget a run plans to use (estimates are rough; days differ)."""
_DAY = timedelta(days=1)


def days_long(window: Window) -> float:
    """Length of ``window`` in days."""
    return (window.end - window.start) / _DAY


class Pace:
    """One source's density estimate and the windows of it being read in one run."""

    def __init__(
        self,
        rows_per_day: float | None,
        requests_per_second: float,
        hard_deadline: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rows_per_day = rows_per_day
        """Rows a day of this source holds, as last measured (None: unknown yet)."""
        self._rate = requests_per_second
        self._hard_deadline = hard_deadline
        self._clock = clock
        self._reading: dict[Window, int] = {}
        self._pages: dict[Window, int] = {}
        self._measured_this_run = False
        self.dense = rows_per_day is not None and rows_per_day >= PAGE_ROWS
        """True once a window needed more than one page (or the stored density says so)."""

    @property
    def reading(self) -> int:
        """Windows being read now."""
        return len(self._reading)

    def pages(self, window: Window) -> float:
        """Pages ``window`` is expected to take (0 while the density is unknown)."""
        if self.rows_per_day is None:
            return 0.0
        return self.rows_per_day * days_long(window) / PAGE_ROWS + 1

    def admits(self, window: Window) -> bool:
        """True when ``window`` may start now: nothing is being read, the density is not
        known yet (the hard time limit is then the safety net), or the pages left of the
        windows being read plus this one's fit in the budget until the hard time limit."""
        if not self._reading or self.rows_per_day is None:
            return True
        left = sum(max(1.0, self.pages(w) - rows / PAGE_ROWS) for w, rows in self._reading.items())
        seconds = max(0.0, self._hard_deadline - self._clock())
        return left + self.pages(window) <= self._rate * seconds * SAFETY

    def started(self, window: Window) -> None:
        """``window`` is now being read."""
        self._reading[window] = 0

    def read(self, window: Window, rows: int, more: bool = False) -> bool:
        """``window`` got a page of ``rows`` rows (``more``: another page follows). Return
        True when this page showed the source to be dense (a window needs several pages)."""
        self._reading[window] = self._reading.get(window, 0) + rows
        self._pages[window] = pages = self._pages.get(window, 0) + 1
        # A first page that has rows and a nextLink already proves it: waiting for the
        # second page would cost the whole run one page latency of narrow reading.
        proves = pages > 1 or (more and rows > 0)
        if self.dense or not proves:
            return False
        self.dense = True
        return True

    def is_reading(self, window: Window) -> bool:
        """True while ``window`` has pages left to read."""
        return window in self._reading

    def rows_read(self, window: Window) -> int:
        """Rows ``window`` has read so far (0 once it has read its last page)."""
        return self._reading.get(window, 0)

    def paged(self, window: Window) -> None:
        """``window`` has read its last page: learn the density from it (whole days only:
        the newest hours may still be filling in)."""
        rows = self._reading.pop(window, 0)
        self._pages.pop(window, None)
        days = days_long(window)
        if days >= 1:
            measured = rows / days
            # The first measurement of a run replaces the stored one (the tenant may have
            # shrunk); later ones keep the busiest day seen, so a quiet day does not invite
            # more windows than a busy one can finish.
            if not self._measured_this_run or self.rows_per_day is None:
                self.rows_per_day = measured
            else:
                self.rows_per_day = max(self.rows_per_day, measured)
            self._measured_this_run = True

    def stopped(self, window: Window) -> None:
        """``window`` ended unfinished (cut off, failed): its rows so far are a lower bound."""
        if window not in self._reading:
            return
        rows = self._reading.pop(window)
        self._pages.pop(window, None)
        days = days_long(window)
        if days >= 1 and rows:
            self.rows_per_day = max(self.rows_per_day or 0.0, rows / days)
