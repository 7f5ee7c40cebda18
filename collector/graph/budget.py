"""Client-side request budget: Graph's throttling limits, enforced before a request starts.

Graph allows about 50 requests a minute per call-log function and 200 per app per tenant.
Full call records have limits of their own, per kind of request: 1,500 per 20 s per app per
tenant for every call-record request, and per call record 10 per 20 s for its first page and
50 per 5 minutes for its later pages (sessions, participants). A limiter here never lets more
than ``limit`` requests start in ANY ``period``-second span (a sliding log of start times, not
a token bucket: a bucket that holds a full minute's burst on top of its steady refill can
start twice the limit within one span). A 429's Retry-After pauses the budget it belongs to
for every worker.

The call logs' spans are Graph's minute (``period``, which benchmarks shrink) plus a 1 s
margin; the call records' spans are their own (20 s, 5 min) times ``records_scale`` (1 in
production; ``GRAPH_CALL_RECORDS_PERIOD_SCALE`` for tests and benchmarks against a simulator
scaled alike) plus ``RECORDS_MARGIN_SECONDS``, scaled alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    """What one request counts against."""

    log: str
    """The source (lane) the request reads for."""
    records: bool = False
    """Call records' limits, not the call-log functions' (``Source.records_budget``)."""
    record: str | None = None
    """The call record a detail request is for (None: a listing page)."""
    later: bool = False
    """A record's later page (sessions, participants), not its first."""


@dataclass(frozen=True)
class Limit:
    """At most ``count`` requests in any ``seconds`` (Graph's minute: 60)."""

    count: int
    seconds: float


CALL_RECORDS_PER_APP = Limit(1_500, 20.0)
"""Every call-record request of one app in one tenant."""
RECORD_FIRST_PAGE = Limit(10, 20.0)
"""A call record's first page (the record with its first sessions)."""
RECORD_LATER_PAGES = Limit(50, 300.0)
"""A call record's later pages."""
RECORDS_MARGIN_SECONDS = 0.3
"""Seconds each call-record span is stretched by (times ``records_scale``). Graph counts a
request when it arrives, and one request can take longer to arrive than the next one sent
after it: the margin covers that spread of arrival delays, so Graph never counts more in a
span than was counted here. The start counted here is moved to when the request really left
(``RequestBudget.acquire``'s callback, on a monotonic clock) and every request goes through
one HTTP connection pool, which keep the spread to a fraction of a second; the call logs'
60 s span keeps a full 1 s, but 1 s on a 20 s span would give up 5 % of Graph's call-record
limits, where 0.3 s gives up 1.5 %."""
RECORDS_REMEMBERED = 4_096
"""Per-record limiters kept before the idle ones are dropped (a record is read once)."""


def records_span(limit: Limit, scale: float = 1.0) -> float:
    """Seconds each counted span of a call-record ``limit`` lasts: its own span plus
    ``RECORDS_MARGIN_SECONDS``, both times ``scale`` (``GRAPH_CALL_RECORDS_PERIOD_SCALE``)."""
    return (limit.seconds + RECORDS_MARGIN_SECONDS) * scale


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

    def idle(self) -> bool:
        """True when no start counts any more and no pause holds."""
        return self.wait_time() == 0 and not self._starts


class RequestBudget:
    """The limiters of one run (per log, per app, and call records' per kind of request),
    shared by all its workers."""

    def __init__(
        self,
        per_log: int,
        per_app: int,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        margin: float = 1.0,
        records_per_app: int = CALL_RECORDS_PER_APP.count,
        records_scale: float = 1.0,
    ) -> None:
        if not 0 < records_scale <= 1:
            raise ValueError(f"records_scale must be above 0 and at most 1, not {records_scale}")
        self.records_scale = records_scale
        """Call records' spans (20 s, 5 min) and their margin, times this."""
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
        self._records = self._limiter(Limit(records_per_app, CALL_RECORDS_PER_APP.seconds))
        self._logs: dict[str, SlidingWindowLimiter] = {}
        self._per_record: dict[tuple[str, bool], SlidingWindowLimiter] = {}
        self._turns: dict[str, asyncio.Lock] = {}

    def records_span(self, limit: Limit) -> float:
        """Seconds each counted span of a call-record ``limit`` lasts (``records_span``)."""
        return records_span(limit, self.records_scale)

    def _limiter(self, limit: Limit) -> SlidingWindowLimiter:
        return SlidingWindowLimiter(limit.count, self.records_span(limit), self._clock)

    def _log(self, name: str) -> SlidingWindowLimiter:
        limiter = self._logs.get(name)
        if limiter is None:
            limiter = self._logs[name] = SlidingWindowLimiter(
                self._per_log, self._period, self._clock
            )
        return limiter

    def _record(self, scope: Scope) -> SlidingWindowLimiter:
        assert scope.record is not None
        key = (scope.record, scope.later)
        limiter = self._per_record.get(key)
        if limiter is None:
            if len(self._per_record) >= RECORDS_REMEMBERED:
                self._per_record = {k: v for k, v in self._per_record.items() if not v.idle()}
            limit = RECORD_LATER_PAGES if scope.later else RECORD_FIRST_PAGE
            limiter = self._per_record[key] = self._limiter(limit)
        return limiter

    def _shared(self, scope: Scope) -> tuple[SlidingWindowLimiter, ...]:
        """The limiters every request of ``scope``'s kind takes its turn for."""
        return (self._records,) if scope.records else (self._log(scope.log), self._app)

    async def acquire(self, scope: Scope) -> Callable[[], None]:
        """Wait until a request of ``scope`` may start within all its limits, and count it.

        Returns a callback to call when the request has really been sent: Graph counts a
        request when it arrives, which can be well after it was allowed here (connection
        set-up, a busy event loop), so its start is moved to then.
        """
        starts = []
        if scope.record is not None:
            # A record's own limit first, outside the turns: one record's paging waiting for
            # its 5 minutes must not hold up every other record's requests.
            own = self._record(scope)
            while (wait := own.wait_time()) > 0:
                await self._sleep(wait)
            starts.append(Start(self._clock()))
            own.record(starts[-1])
        shared = self._shared(scope)
        # Requests of one log take their turns first come, first served (asyncio's lock is
        # fair): equal windows in flight then advance together and finish together, instead
        # of one straggler paging alone at the end of a run.
        async with self._turns.setdefault(scope.log, asyncio.Lock()):
            while True:
                # No await between check and record: atomic across workers.
                wait = max(limiter.wait_time() for limiter in shared)
                if wait <= 0:
                    start = Start(self._clock())
                    for limiter in shared:
                        limiter.record(start)
                    starts.append(start)
                    break
                await self._sleep(wait)

        def sent() -> None:
            for start in starts:
                start.at = max(start.at, self._clock())

        return sent

    def pause(self, scope: Scope, seconds: float) -> None:
        """Pause the budget Graph throttled. A 429 does not say which limit it was: for a
        record's request, the record's own when that was full, else every request of its
        kind (the app's limit) too."""
        if scope.record is not None:
            own = self._record(scope)
            full = own.wait_time() > 0
            own.pause(seconds)
            if full:
                return
        for limiter in self._shared(scope):
            if limiter is not self._app:
                limiter.pause(seconds)
