"""Graph's call-records throttling limits, as the simulator enforces them.

The numbers are the collector's own (``collector/graph/budget.py``), so the simulator and the
client that must stay within them cannot drift apart. Graph documents them at
https://learn.microsoft.com/en-us/graph/throttling-limits#call-records-limits
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace

from collector.graph.budget import CALL_RECORDS_PER_APP, RECORD_FIRST_PAGE, RECORD_LATER_PAGES

PER_TENANT = 10_000
"""Every call-record request of one tenant, whatever the app, per ``period``. It stays here,
not in ``budget.py``: the collector is one app and only ever meets the per-app limit, so the
budget has no per-tenant figure to share; Graph applies this one to all apps together."""


@dataclass(frozen=True)
class CallRecordLimits:
    """Graph's documented call-records limits (periods in seconds)."""

    per_app: int = CALL_RECORDS_PER_APP.count
    per_tenant: int = PER_TENANT
    period: float = CALL_RECORDS_PER_APP.seconds
    """The span of both ``per_app`` and ``per_tenant`` (Graph gives both the same 20 s)."""
    record_first: int = RECORD_FIRST_PAGE.count
    record_first_period: float = RECORD_FIRST_PAGE.seconds
    record_later: int = RECORD_LATER_PAGES.count
    record_later_period: float = RECORD_LATER_PAGES.seconds

    def scaled(self, scale: float) -> CallRecordLimits:
        """The same counts over periods ``scale`` times as long (a benchmark's faster time)."""
        return replace(
            self,
            period=self.period * scale,
            record_first_period=self.record_first_period * scale,
            record_later_period=self.record_later_period * scale,
        )


class Limiter:
    """Sliding-window request counts per limit key, in real (monotonic) time."""

    def __init__(self, limits: CallRecordLimits) -> None:
        self.limits = limits
        self._starts: dict[tuple[str, ...], deque[float]] = {}
        self._lock = threading.Lock()
        self._admitted = 0

    def admit(
        self, tenant: str, app: str, record: str | None, later: bool
    ) -> tuple[str, float] | None:
        """None when the request is within every limit (then counted), else the limit it
        exceeds and the seconds until a slot frees."""
        limits = self.limits
        checks: list[tuple[str, tuple[str, ...], int, float]] = []
        if record is not None:
            if later:
                checks.append(
                    (
                        "record_later",
                        ("later", tenant, record),
                        limits.record_later,
                        limits.record_later_period,
                    )
                )
            else:
                checks.append(
                    (
                        "record_first",
                        ("first", tenant, record),
                        limits.record_first,
                        limits.record_first_period,
                    )
                )
        checks.append(("app", ("app", tenant, app), limits.per_app, limits.period))
        checks.append(("tenant", ("tenant", tenant), limits.per_tenant, limits.period))
        now = time.monotonic()
        with self._lock:
            windows: list[deque[float]] = []
            for name, key, limit, period in checks:
                window = self._starts.setdefault(key, deque())
                while window and window[0] <= now - period:
                    window.popleft()
                if len(window) >= limit:
                    return name, window[0] + period - now
                windows.append(window)
            for window in windows:
                window.append(now)
            self._admitted += 1
            if self._admitted % 4096 == 0:  # forget records nobody asks for any more
                longest = max(limits.period, limits.record_first_period, limits.record_later_period)
                self._starts = {
                    k: w for k, w in self._starts.items() if w and w[-1] > now - longest
                }
        return None
