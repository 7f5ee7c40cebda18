"""Client-side request budget: Graph's throttling limits, enforced before a request starts.

Graph allows about 50 requests a minute per call-log function and 200 per app per tenant.
A limiter here never lets more than ``limit`` requests start in ANY ``period``-second span
(a sliding log of start times, not a token bucket: a bucket that holds a full minute's burst
on top of its steady refill can start twice the limit within one span). A 429's Retry-After
pauses the budget it belongs to for every worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Start:
    """When one request started; moved later once it has really been sent."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


class SlidingWindowLimiter:
    """At most ``limit`` starts in any ``period`` seconds, plus pauses on demand."""

    def __init__(self, limit: int, period: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._starts: list[Start] = []
        self._paused_until = 0.0

    def wait_time(self) -> float:
        """Seconds until a request may start (0: now)."""
        now = self._clock()
        self._starts = [s for s in self._starts if s.at > now - self.period]
        wait = max(0.0, self._paused_until - now)
        if len(self._starts) >= self.limit:
            wait = max(wait, min(s.at for s in self._starts) + self.period - now)
        return wait

    def record(self, start: Start) -> None:
        """Count a request starting at ``start``."""
        self._starts.append(start)

    def pause(self, seconds: float) -> None:
        """Start nothing for ``seconds`` (Graph said Retry-After)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)


class RequestBudget:
    """The per-log limiters and the per-app limiter of one run, shared by all its workers."""

    def __init__(
        self,
        per_log: int,
        per_app: int,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        margin: float = 1.0,
    ) -> None:
        # Graph counts a request when it arrives; network jitter makes one request arrive
        # later than it was sent by more than the next one: spans are stretched by ``margin``
        # seconds so the two counts never disagree (1.7 % of Graph's minute).
        period += margin
        self.span = period
        """Seconds each counted span lasts: the period plus the margin."""
        self._per_log = per_log
        self._period = period
        self._clock = clock
        self._sleep = sleep
        self._app = SlidingWindowLimiter(per_app, period, clock)
        self._logs: dict[str, SlidingWindowLimiter] = {}
        self._turns: dict[str, asyncio.Lock] = {}

    def _log(self, name: str) -> SlidingWindowLimiter:
        limiter = self._logs.get(name)
        if limiter is None:
            limiter = self._logs[name] = SlidingWindowLimiter(
                self._per_log, self._period, self._clock
            )
        return limiter

    async def acquire(self, log: str) -> Callable[[], None]:
        """Wait until a request of ``log`` may start within both limits, and count it.

        Returns a callback to call when the request has really been sent: Graph counts a
        request when it arrives, which can be well after it was allowed here (connection
        set-up, a busy event loop), so its start is moved to then.
        """
        limiter = self._log(log)
        # Requests of one log take their turns first come, first served (asyncio's lock is
        # fair): equal windows in flight then advance together and finish together, instead
        # of one straggler paging alone at the end of a run.
        async with self._turns.setdefault(log, asyncio.Lock()):
            while True:
                # No await between check and record: atomic across workers.
                wait = max(limiter.wait_time(), self._app.wait_time())
                if wait <= 0:
                    start = Start(self._clock())
                    limiter.record(start)
                    self._app.record(start)
                    return lambda: setattr(start, "at", max(start.at, self._clock()))
                await self._sleep(wait)

    def pause(self, log: str, seconds: float) -> None:
        """Pause ``log``'s budget after Graph throttled it."""
        self._log(log).pause(seconds)
