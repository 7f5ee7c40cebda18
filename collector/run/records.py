"""One run's work on call records: hour slices past the lateness, and revisits of past days
(``revisits``), side by side within the run's time limits.

- **Slices** (``core.slices``): each hour of records is listed once it is past the lateness;
  every listed record the day's blobs do not hold yet is read whole and committed
  (``record_reads``), across slices and days. The watermark passes a slice once all its
  records are committed or set aside; a day's manifest is written once the watermark passes
  its end. A run stopped at any instant loses only what was not committed: the next one
  lists the slice again and skips what is archived.
- **Failures**: a record that fails ``CALL_RECORDS_ATTEMPTS`` reads is set aside (kept in
  the state, named in the day's manifests and in ``status``); its slice and day go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

from ..archive.blobstore import BlobStore
from ..archive.layout import (
    manifest_name,
)
from ..archive.records import day_manifest
from ..archive.state import SetAside, SourceState, StateBlob
from ..core.lanes import Lane
from ..core.settings import Settings
from ..core.slices import (
    day_start,
    graph_has_whole,
    near_graphs_edge,
    plan_slices,
    slice_horizon,
)
from ..core.timefmt import format_instant
from ..core.windows import Window, floor_to_midnight
from ..graph.client import GraphClient
from ..observe.progress import SourceProgress
from ..observe.reports import SourceReport
from . import watermarks
from .record_reads import Listing, RecordReads
from .revisits import Revisits
from .scheduler import Deadlines, all_or_cancel

log = logging.getLogger("collector")

STATE_EVERY = 5.0
"""Seconds between watermark writes while slices pass (a day's end is written at once): a
run killed meanwhile only lists those slices again and skips their records."""


class RecordRun:
    """One run of a call-records lane (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        now: datetime,
        run_id: str,
        deadlines: Deadlines,
        lane: Lane,
        graph: GraphClient,
        store: BlobStore,
        state_blob: StateBlob,
        report: SourceReport,
        progress: SourceProgress,
        confirm_lease: Callable[[], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._now = now
        self._deadlines = deadlines
        self._lane = lane
        self._store = store
        self._state_blob = state_blob
        self._report = report
        self._progress = progress
        self._reads = RecordReads(
            settings, now, run_id, lane, graph, store, report, confirm_lease, self._out_of_time
        )
        self._revisits = Revisits(
            settings, now, lane, store, state_blob, report, self._reads, self._out_of_time
        )

    # ------------------------------------------------------------------ the run

    async def run(self, start: datetime) -> None:
        """Read every slice from the watermark (``start`` for a new lane) to the slice
        horizon, and the revisits due, within the run's time limits."""
        settings, source = self._settings, self._lane.source
        horizon = slice_horizon(self._now, settings.lag, settings.lateness)
        state = await self._state_blob.apply(
            lambda st: {
                **watermarks.begin(st, start, horizon),
                "set_aside": self._kept(st.set_aside),
            }
        )
        self._report.watermark_before = state.watermark
        assert state.watermark is not None
        await self._finish_days()  # a run killed between a day's end and its manifest
        slices = plan_slices(self._state_blob.current.watermark or start, horizon)
        self._progress.plan_windows(slices)
        if not slices:
            log.info("%s: up to date (watermark %s)", self._lane.name, format_instant(horizon))
        limit = asyncio.timeout(max(0.0, self._deadlines.hard - time.monotonic()))
        try:
            async with limit:
                await all_or_cancel([self._read_slices(slices), self._revisits.run()])
        except TimeoutError:
            if not limit.expired():
                await self._reads.stop()
                await self._reads.blobs.abort()
                raise
            self._report.out_of_time = True
            log.warning(
                "%s: records still being read at the hard time limit were stopped; the "
                "next run reads them again",
                self._lane.name,
            )
        except BaseException:
            await self._reads.stop()
            await self._reads.blobs.abort()
            raise
        await self._reads.stop()
        await self._reads.blobs.flush()  # what is complete is kept, even of a slice not finished
        if self._reads.failure is not None:
            raise self._reads.failure
        current = self._state_blob.current
        self._report.watermark_after = current.watermark
        self._report.settled_after = current.settled
        if source.records_budget and current.set_aside:
            log.warning(
                "%s: %d record(s) set aside after failing every attempt (see status)",
                self._lane.name,
                len(current.set_aside),
            )

    def _kept(self, set_aside: tuple[SetAside, ...]) -> tuple[SetAside, ...]:
        """The records set aside that Graph may still have: older ones are named in their
        day's manifests and no longer tried."""
        history = self._lane.source.history
        return tuple(r for r in set_aside if graph_has_whole(r.day, self._now, history))

    # ------------------------------------------------------------------ slices

    async def _read_slices(self, slices: list[Window]) -> None:
        """List each slice in order and read its records; a follower commits the slices as
        they complete, in order, while the next ones are listed (the pipeline stays full
        across slice and day boundaries). The first failure of either stops both."""
        queue: asyncio.Queue[Listing | None] = asyncio.Queue()

        async def lister() -> None:
            for window in slices:
                if self._out_of_time():
                    break
                piece = Listing(window)
                await queue.put(piece)
                await self._reads.list_into(piece)
                if not piece.listed:
                    break  # out of time, or a read failed: the follower stops at it
            await queue.put(None)

        await all_or_cancel([lister(), self._commit_slices(queue)])

    async def _commit_slices(self, queue: asyncio.Queue[Listing | None]) -> None:
        """Pass the watermark over each slice once it is listed whole and every record of it
        is committed or set aside; write each day's manifest once the watermark passes it.
        A slice not listed whole, or any read that failed the run, stops it there."""
        last_write = time.monotonic()
        set_aside: list[SetAside] = []
        passed: datetime | None = None
        while (piece := await queue.get()) is not None:
            await piece.complete.wait()
            await self._reads.blobs.flush()
            if not piece.listed or self._reads.failure is not None:
                break
            set_aside.extend(piece.set_aside)
            passed = piece.window.end
            self._progress.read(piece.window, provisional=True)
            self._report.windows += 1
            midnight = passed == floor_to_midnight(passed)
            if midnight or set_aside or time.monotonic() - last_write >= STATE_EVERY:
                await self._pass(passed, set_aside)
                set_aside, passed, last_write = [], None, time.monotonic()
        if passed is not None and self._reads.failure is None:
            await self._pass(passed, set_aside)

    async def _pass(self, watermark: datetime, set_aside: list[SetAside]) -> None:
        """Move the watermark to ``watermark`` with the records set aside before it, then
        write the manifests of the days it passed."""
        await self._state_blob.apply(
            lambda st: {
                "watermark": max(watermark, st.watermark or watermark),
                "set_aside": (*st.set_aside, *set_aside),
            }
        )
        await self._finish_days()

    async def _finish_days(self) -> None:
        """Write the manifest of every day the watermark has passed and the settled
        watermark has not, then move the settled watermark."""
        state = self._state_blob.current
        assert state.watermark is not None
        settled = state.settled or floor_to_midnight(state.watermark)
        end = floor_to_midnight(state.watermark)
        while settled < end:
            await self._write_manifest(settled.date(), state)
            settled += timedelta(days=1)
            self._report.settled_days += 1
        if settled != state.settled:
            await self._state_blob.apply(lambda _: {"settled": settled})

    async def _write_manifest(self, day: date, state: SourceState) -> None:
        holdings = await self._reads.reload(day)
        failed = [r for r in state.set_aside if r.day == day]
        document = day_manifest(self._lane, day, holdings, failed)
        document["status"] = "settled-with-failures" if failed else "settled"
        start = day_start(day)
        document.update(
            {
                "lateRows": 0,
                "changedRows": 0,
                "changedKeys": [],
                "goneRows": self._reads.gone.get(day, 0),
                "coveredFrom": format_instant(start),
                "coveredTo": format_instant(start + timedelta(days=1)),
                "settledAt": format_instant(datetime.now(UTC).replace(microsecond=0)),
                # The run's "now" (``--as-of``): what the revisits are timed against.
                "readAsOf": format_instant(self._now),
                "lateness": f"PT{int(self._settings.lateness.total_seconds() // 3600)}H",
                "revisitDays": list(self._settings.revisit_days),
                # Read when Graph had begun deleting the day: what it deleted first is not
                # here, and nothing can count it.
                "readAtGraphsEdge": near_graphs_edge(start, self._now, self._lane.source.history),
            }
        )
        if not await self._store.create_json(manifest_name(self._lane, day), document):
            log.info("%s: the manifest of %s was written by an earlier run", self._lane.name, day)
        if holdings.versions:  # what progress estimates size the next days by
            await self._state_blob.apply(lambda _: {"rows_per_day": float(len(holdings.versions))})

    def _out_of_time(self) -> bool:
        return time.monotonic() >= self._deadlines.soft or self._reads.failure is not None
