"""Listing call records and reading those a day lacks, for the slices and the revisits of one
run alike: ``IN_FLIGHT`` records read whole side by side (``whole_records``) within
``MEMORY_BYTES`` of answers, each committed with others in a small blob as soon as it is
complete (``archive.records.RecordBlobs``), each tried ``CALL_RECORDS_ATTEMPTS`` times before
it is set aside.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ..archive.blobstore import BlobStore
from ..archive.records import DayHoldings, RecordBlobs, Version, day_holdings, record_version
from ..archive.state import SetAside
from ..core.errors import (
    GraphDataError,
    GraphError,
    GraphUnavailableError,
    InstantParseError,
    PagingError,
    RowError,
)
from ..core.lanes import Lane
from ..core.rows import event_ticks, row_key
from ..core.settings import Settings
from ..core.slices import near_graphs_edge
from ..core.timefmt import parse_instant, utc_date_of_ticks
from ..core.windows import Window
from ..graph.client import GraphClient, Page
from ..observe.reports import SourceReport
from .whole_records import Memory, WholeRecord

log = logging.getLogger("collector")

IN_FLIGHT = 128
"""Records read whole at once: at Graph's 75 requests a second for call records and about
two requests a record, enough to keep the rate at the limit up to about 3 s of latency."""
MEMORY_BYTES = 24 * 1024 * 1024
"""Bytes of Graph's answers the records being read, and those waiting for their blob, may
hold before no new read starts and the records being read write out early
(``whole_records.EARLY_BYTES``): a run's memory stays bounded by bytes, whatever mix of
large meetings it meets."""
LANE_FAILURES = frozenset({401, 403, 429})
"""Statuses that say the lane cannot read now (no permission, out of budget): they fail
the run, not the record. Any other error, a timeout or a lost connection included, is one
failed read of the record."""


@dataclass
class Listing:
    """One listing (a slice, or a revisited day) and the records of it still being read."""

    window: Window
    pending: int = 0
    listing: bool = True
    """Pages are still being listed."""
    listed: bool = False
    """Every page was listed (not cut short by time or a failure)."""
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    set_aside: list[SetAside] = field(default_factory=list)
    rows: int = 0
    """Records listed."""

    def settle(self) -> None:
        """Mark the listing complete once it stopped and no read of it is under way."""
        if not self.listing and self.pending == 0:
            self.complete.set()


class RecordReads:
    """The records of one run's listings read whole (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        now: datetime,
        run_id: str,
        lane: Lane,
        graph: GraphClient,
        store: BlobStore,
        report: SourceReport,
        confirm_lease: Callable[[], Awaitable[None]],
        out_of_time: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._now = now
        self._lane = lane
        self._graph = graph
        self._store = store
        self._report = report
        self._out_of_time = out_of_time
        metadata = {"source": lane.source.name, **({"tenant": lane.tenant} if lane.tenant else {})}
        self.blobs = RecordBlobs(store, lane, run_id, metadata, confirm_lease, self._committed)
        """Where complete records go."""
        self._holdings: dict[date, DayHoldings] = {}
        self._loading: dict[date, asyncio.Lock] = {}
        self._reading: set[tuple[str, Version]] = set()
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._memory = Memory(MEMORY_BYTES, lambda: self.blobs.buffered)
        self._tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None
        """What failed the run (raised by it once its other reads are stopped)."""
        self.gone: dict[date, int] = {}
        """Records per day listed but gone at Graph's 30-day edge when read."""

    async def day(self, day: date) -> DayHoldings:
        """What ``day``'s blobs hold (read once a run, then kept up to date)."""
        if day not in self._holdings:
            async with self._loading.setdefault(day, asyncio.Lock()):
                if day not in self._holdings:
                    self._holdings[day] = await day_holdings(self._store, self._lane, day)
        return self._holdings[day]

    async def reload(self, day: date) -> DayHoldings:
        """What ``day``'s blobs hold, read again (blobs of earlier runs included)."""
        self._holdings[day] = await day_holdings(self._store, self._lane, day)
        return self._holdings[day]

    async def stop(self) -> None:
        """Stop every read under way."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def list_into(self, piece: Listing) -> None:
        """List ``piece``'s records page by page and start reading each the archive lacks;
        ``piece.listed`` says whether every page was listed (not cut short by time or a
        failure), ``piece.complete`` when its last read is done."""
        source = self._lane.source
        listing = self._graph.pages(source, piece.window, self._report.stats)
        try:
            async with aclosing(listing) as pages:
                piece.listed = await self._listed(piece, pages)
        finally:
            piece.listing = False
            piece.settle()

    async def _listed(self, piece: Listing, pages: AsyncIterator[Page]) -> bool:
        """Start reading every record of ``pages`` the archive lacks; False when time ran
        out before the last page."""
        source = self._lane.source
        async for page in pages:
            self._report.pages += 1
            for index, row in enumerate(page.rows):
                try:
                    key = row_key(source, row, index)
                    day = utc_date_of_ticks(event_ticks(source, row, index, key))
                except RowError as exc:
                    raise GraphDataError(
                        f"{self._lane.name} {piece.window} page {page.number} "
                        f"[request-id {page.request_id}]: {exc}"
                    ) from None
                version = record_version(row)
                piece.rows += 1
                if (key, version) in self._reading or (await self.day(day)).holds(key, version):
                    continue
                self._reading.add((key, version))
                await self._memory.room()
                await self._slots.acquire()
                if self.failure is not None:
                    self._slots.release()
                    raise self.failure
                piece.pending += 1
                task = asyncio.create_task(self._read(piece, key, version, day, row))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if page.more and self._out_of_time():
                return False
        return True

    async def _read(self, piece: Listing, key: str, listed: Version, day: date, row: Any) -> None:
        """Read one record whole (up to ``CALL_RECORDS_ATTEMPTS`` times) and buffer it for
        its blob; set it aside when every attempt failed."""
        attempts = self._settings.record_attempts
        try:
            error = ""
            for _ in range(attempts):
                record = WholeRecord(
                    self._graph,
                    self.blobs,
                    self._lane.source,
                    self._report.stats,
                    day,
                    key,
                    self._memory,
                )
                holdings = await self.day(day)
                try:
                    done = await record.read(holdings.parts_of(key), holdings.holds)
                except GraphError as exc:
                    if exc.status in LANE_FAILURES:
                        raise
                    if exc.status == 404 and self._at_the_edge(row):
                        self.gone[day] = self.gone.get(day, 0) + 1
                        log.warning(
                            "%s: %s was listed but Graph no longer has it (it keeps %d "
                            "days): not archived",
                            self._lane.name,
                            key,
                            self._lane.source.history.days,
                        )
                        return
                    error = " ".join(str(exc).split())
                except (GraphDataError, PagingError, GraphUnavailableError) as exc:
                    error = " ".join(str(exc).split())
                else:
                    if done is not None:  # else Graph answered a version archived already
                        holdings.add(key, done.version)
                        self._report.rows += 1
                    return
            log.error(
                "%s: record %s of %s failed %d read(s), set aside (the day goes on; its "
                "revisits try it again): %s",
                self._lane.name,
                key,
                day,
                attempts,
                error,
            )
            piece.set_aside.append(SetAside(key, day, listed, error, attempts))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # raised by the run, once its other reads are stopped
            self.failure = self.failure or exc
        finally:
            self._slots.release()
            piece.pending -= 1
            piece.settle()

    def _at_the_edge(self, row: Any) -> bool:
        """True when a listed record is within a day of leaving Graph's keeping."""
        stamp = row.get(self._lane.source.event_field or "") if isinstance(row, dict) else None
        try:
            moment = parse_instant(stamp) if isinstance(stamp, str) else None
        except InstantParseError:
            return False
        history = self._lane.source.history
        return moment is not None and near_graphs_edge(moment, self._now, history)

    def _committed(self, day: date, name: str, metadata: dict[str, str]) -> None:
        self._report.blobs += 1
        holdings = self._holdings.get(day)
        if holdings is not None:
            holdings.note(name, metadata)
