"""Running a phase's windows: several at once, as many as the budget can finish, within the
run's two time limits.

A window's pages can only be read one after another, so a source keeps several windows in
flight to use Graph's request budget. Two limits bound a run: at the **soft** limit
(``COLLECTOR_TIME_BUDGET_SECONDS``) no new window starts; at the **hard** limit (1.25 times that)
every window still paging but the one furthest on is stopped, so a run that took on too
much still finishes one window, and ends before the host kills it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..core.windows import Window
from ..graph.pace import Pace
from ..observe.reports import SourceReport

log = logging.getLogger("collector")

POLL_SECONDS = 0.1
"""How often a phase looks again at what it may start while its windows are being read."""
HARD_LIMIT_FACTOR = 1.25
"""The hard time limit of a run, as a multiple of ``COLLECTOR_TIME_BUDGET_SECONDS``."""


@dataclass(frozen=True)
class Deadlines:
    """A run's two time limits, in ``time.monotonic()`` seconds."""

    soft: float
    """No window starts after this."""
    hard: float
    """Windows still paging are stopped, all but one."""

    @classmethod
    def after(cls, budget_seconds: float) -> Deadlines:
        """The limits of a run that starts now with a time budget of ``budget_seconds``."""
        now = time.monotonic()
        return cls(now + budget_seconds, now + budget_seconds * HARD_LIMIT_FACTOR)


Process = Callable[[Window], Coroutine[Any, Any, object]]


class Scheduler:
    """Starts the windows of one source's phases, stops them at the limits, and reports it.

    Both phases of a source share one scheduler: the hard limit stops windows of either,
    and a page proving the source dense widens both at once (``widen``).
    """

    def __init__(
        self,
        deadlines: Deadlines,
        pace: Pace,
        in_flight: int,
        report: SourceReport,
        budget_seconds: float,
    ) -> None:
        self._deadlines = deadlines
        self._pace = pace
        self._in_flight = in_flight
        self._report = report
        self._budget_seconds = budget_seconds
        self._cut = False
        """True once the hard limit has stopped windows: nothing new starts."""
        self._survivor: asyncio.Task[object] | None = None
        """The one window kept paging past the hard limit."""
        self._wakers: set[asyncio.Event] = set()
        """One per running phase: set by ``widen`` so a phase reading one window at a time
        widens at once rather than at its next poll."""

    def widen(self) -> None:
        """The source proved dense: let every phase start more windows now."""
        for wake in self._wakers:
            wake.set()

    def out_of_time(self) -> bool:
        """True (and said once in the log) when the soft limit has passed."""
        if time.monotonic() < self._deadlines.soft:
            return False
        if not self._report.out_of_time:
            self._report.out_of_time = True
            log.warning(
                "%s: time budget of %.0fs reached; stopping at a window boundary, the next "
                "run continues",
                self._report.name,
                self._budget_seconds,
            )
        return True

    async def run(
        self,
        next_window: Callable[[], Window | None],
        process: Process,
        width: Callable[[], int] | None = None,
    ) -> None:
        """Process windows from ``next_window`` (None: no more) with up to ``width()``
        (default: ``COLLECTOR_WINDOWS_IN_FLIGHT``) at once, and only as many as the budget
        can finish before the hard limit (``Pace``). The first failure cancels the others
        (they stay claimed) and is raised."""
        running: dict[asyncio.Task[object], Window] = {}
        held: Window | None = None  # the next window, waiting to be admitted
        exhausted = stopped = False
        wake = asyncio.Event()
        self._wakers.add(wake)
        try:
            while True:
                while (
                    not exhausted
                    and not self._cut
                    and len(running) < (width() if width else self._in_flight)
                    and not self.out_of_time()
                ):
                    if held is None:
                        held = next_window()
                        if held is None:
                            exhausted = True
                            break
                    if not self._pace.admits(held):
                        break
                    window, held = held, None
                    self._pace.started(window)
                    running[asyncio.create_task(self._tracked(process, window))] = window
                if not running:
                    if held is None or self._cut or self.out_of_time():
                        return
                    await asyncio.sleep(POLL_SECONDS)  # the other phase's windows end first
                    continue
                left = self._deadlines.hard - time.monotonic()
                woken = asyncio.ensure_future(wake.wait())
                try:
                    finished, _ = await asyncio.wait(
                        [*running, woken],
                        # Polled too: what ``Pace`` admits grows as the windows read pages.
                        timeout=None if stopped else max(0.0, min(left, POLL_SECONDS)),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    woken.cancel()  # also when this phase is cancelled while it waits
                wake.clear()
                finished.discard(woken)
                for task in finished:
                    del running[task]
                errors = [e for e in (t.exception() for t in finished) if e is not None]
                if errors:
                    raise errors[0]
                if not stopped and time.monotonic() >= self._deadlines.hard:
                    await self._cut_off(running)  # in each phase, once
                    stopped = True
        finally:
            self._wakers.discard(wake)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _cut_off(self, running: dict[asyncio.Task[object], Window]) -> None:
        """At the hard limit: keep the source's window furthest on, and those that have read
        their last page (they only commit now), and stop the rest."""
        self._cut = True
        self._report.out_of_time = True
        paging = [t for t in running if self._pace.is_reading(running[t])]
        if paging and (self._survivor is None or self._survivor.done()):
            self._survivor = max(paging, key=lambda t: self._pace.rows_read(running[t]))
        stopped = [t for t in paging if t is not self._survivor]
        for task in stopped:
            task.cancel()
            del running[task]
        await asyncio.gather(*stopped, return_exceptions=True)
        if stopped:
            self._report.cut_off += len(stopped)
            log.warning(
                "%s: %d window(s) still reading at the hard time limit (%.0fs) were stopped; "
                "the next run reads them again (%.0f rows a day measured)",
                self._report.name,
                len(stopped),
                self._budget_seconds * HARD_LIMIT_FACTOR,
                self._pace.rows_per_day or 0,
            )

    async def _tracked(self, process: Process, window: Window) -> object:
        try:
            return await process(window)
        finally:
            self._pace.stopped(window)  # no-op once its last page was read


async def all_or_cancel(work: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` concurrently; the first failure cancels the rest and is raised."""
    tasks = [asyncio.create_task(w) for w in work]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
