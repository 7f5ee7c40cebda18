"""One run's work on call records: hour slices past the lateness, and revisits of past days.

- **Slices** (``core.slices``): each hour of records is listed once it is past the lateness;
  every listed record the day's blobs do not hold yet (``archive.records.DayHoldings``) is
  read whole, ``IN_FLIGHT`` side by side across slices and days, and committed with others
  in a small blob as soon as it is complete (``archive.records.RecordBlobs``). The watermark
  passes a slice once all its records are committed or set aside; a day's manifest is
  written once the watermark passes its end. A run stopped at any instant loses only what
  was not committed: the next one lists the slice again and skips what is archived.
- **Failures**: a record that fails ``CALL_RECORDS_ATTEMPTS`` reads is set aside (kept in
  the state, named in the day's manifests and in ``status``); its slice and day go on.
- **Revisits**: at each of ``CALL_RECORDS_REVISIT_DAYS`` after a day ended, the day is
  listed again (a request per 60 records) and only records with a version the day lacks are
  read, archived beside the earlier versions (append-only) and named in a revisit manifest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..archive.blobstore import BlobStore
from ..archive.layout import (
    is_day_manifest,
    manifest_name,
    manifest_prefix,
    revisit_manifest_name,
    revisit_of,
)
from ..archive.records import DayHoldings, RecordBlobs, Version, day_holdings, record_version
from ..archive.state import SetAside, SourceState, StateBlob
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
from ..core.slices import (
    day_start,
    due_revisit,
    graph_has_whole,
    near_graphs_edge,
    plan_slices,
    slice_horizon,
)
from ..core.timefmt import format_instant, parse_instant, utc_date_of_ticks
from ..core.windows import Window, floor_to_midnight
from ..graph.client import GraphClient, Page
from ..observe.progress import SourceProgress
from ..observe.reports import SourceReport
from . import watermarks
from .scheduler import Deadlines, all_or_cancel
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
STATE_EVERY = 5.0
"""Seconds between watermark writes while slices pass (a day's end is written at once): a
run killed meanwhile only lists those slices again and skips their records."""
LANE_FAILURES = frozenset({401, 403, 429})
"""Statuses that say the lane cannot read now (no permission, out of budget): they fail
the run, not the record. Any other error, a timeout or a lost connection included, is one
failed read of the record."""


@dataclass
class _Slice:
    """One listing (a slice, or a revisited day) and the records of it still being read."""

    window: Window
    pending: int = 0
    listing: bool = True
    """Pages are still being listed."""
    listed: bool = False
    """Every page was listed (not cut short by time or a failure)."""
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    set_aside: list[SetAside] = field(default_factory=list)

    def settle(self) -> None:
        """Mark the listing complete once it stopped and no read of it is under way."""
        if not self.listing and self.pending == 0:
            self.complete.set()


@dataclass
class _Revisit:
    """What a revisit found, for its manifest."""

    day: date
    age: int
    listed: int = 0


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
        self._graph = graph
        self._store = store
        self._state_blob = state_blob
        self._report = report
        self._progress = progress
        self._confirm_lease = confirm_lease
        metadata = {"source": lane.source.name, **({"tenant": lane.tenant} if lane.tenant else {})}
        self._blobs = RecordBlobs(store, lane, run_id, metadata, confirm_lease, self._committed)
        self._holdings: dict[date, DayHoldings] = {}
        self._loading: dict[date, asyncio.Lock] = {}
        self._reading: set[tuple[str, Version]] = set()
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._memory = Memory(MEMORY_BYTES, lambda: self._blobs.buffered)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._gone: dict[date, int] = {}

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
                await all_or_cancel([self._read_slices(slices), self._revisits()])
        except TimeoutError:
            if not limit.expired():
                await self._stop_reads()
                await self._blobs.abort()
                raise
            self._report.out_of_time = True
            log.warning(
                "%s: records still being read at the hard time limit were stopped; the "
                "next run reads them again",
                self._lane.name,
            )
        except BaseException:
            await self._stop_reads()
            await self._blobs.abort()
            raise
        await self._stop_reads()
        await self._blobs.flush()  # what is complete is kept, even of a slice not finished
        if self._failure is not None:
            raise self._failure
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
        queue: asyncio.Queue[_Slice | None] = asyncio.Queue()

        async def lister() -> None:
            for window in slices:
                if self._out_of_time():
                    break
                piece = _Slice(window)
                await queue.put(piece)
                await self._list_into(piece, revisit=None)
                if not piece.listed:
                    break  # out of time, or a read failed: the follower stops at it
            await queue.put(None)

        await all_or_cancel([lister(), self._commit_slices(queue)])

    async def _commit_slices(self, queue: asyncio.Queue[_Slice | None]) -> None:
        """Pass the watermark over each slice once it is listed whole and every record of it
        is committed or set aside; write each day's manifest once the watermark passes it.
        A slice not listed whole, or any read that failed the run, stops it there."""
        last_write = time.monotonic()
        set_aside: list[SetAside] = []
        passed: datetime | None = None
        while (piece := await queue.get()) is not None:
            await piece.complete.wait()
            await self._blobs.flush()
            if not piece.listed or self._failure is not None:
                break
            set_aside.extend(piece.set_aside)
            passed = piece.window.end
            self._progress.read(piece.window, provisional=True)
            self._report.windows += 1
            midnight = passed == floor_to_midnight(passed)
            if midnight or set_aside or time.monotonic() - last_write >= STATE_EVERY:
                await self._pass(passed, set_aside)
                set_aside, passed, last_write = [], None, time.monotonic()
        if passed is not None and self._failure is None:
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
        holdings = await day_holdings(self._store, self._lane, day)
        self._holdings[day] = holdings
        failed = [r for r in state.set_aside if r.day == day]
        document = self._manifest(day, holdings, failed)
        document["status"] = "settled-with-failures" if failed else "settled"
        start = day_start(day)
        document.update(
            {
                "lateRows": 0,
                "changedRows": 0,
                "changedKeys": [],
                "goneRows": self._gone.get(day, 0),
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

    def _manifest(self, day: date, holdings: DayHoldings, failed: list[SetAside]) -> dict[str, Any]:
        """What every manifest of a call-records day says: its blobs, rows, records and
        revisions (rows that are a later version of a record), and the records set aside."""
        rows = sum(holdings.blobs.values())
        versions = holdings.rows
        return {
            "source": self._lane.source.name,
            **({"tenant": self._lane.tenant} if self._lane.tenant else {}),
            "date": day.isoformat(),
            "blobs": [{"name": n, "rows": r} for n, r in sorted(holdings.blobs.items())],
            "rows": rows,
            "records": len(holdings.versions),
            "revisions": versions - len(holdings.versions),
            "setAside": [r.document() for r in failed],
        }

    # ------------------------------------------------------------------ revisits

    async def _revisits(self) -> None:
        """Make every revisit due, oldest day first (the nearest to Graph's edge)."""
        ages = self._settings.revisit_days
        settled = self._state_blob.current.settled
        if not ages or settled is None:
            return
        names = await self._store.list_with_metadata(manifest_prefix(self._lane))
        final = {date.fromisoformat(n.rsplit("/", 1)[-1][:10]) for n in names if is_day_manifest(n)}
        done: dict[date, set[int]] = {}
        for name in names:
            if (found := revisit_of(name)) is not None:
                done.setdefault(found[0], set()).add(found[1])
        history = self._lane.source.history
        # A day is revisited while Graph has deleted none of it.
        kept = [d for d in final if graph_has_whole(d, self._now, history) and d < settled.date()]
        for day in sorted(kept):
            age = due_revisit(day, self._now, self._settings.lag, ages, done.get(day, ()))
            if age is not None:  # is it older than the day's first read?
                first, _ = await self._store.read_json(manifest_name(self._lane, day))
                read = parse_instant(first["readAsOf"]) if first and "readAsOf" in first else None
                age = due_revisit(day, self._now, self._settings.lag, ages, done.get(day, ()), read)
            if age is None:
                continue
            if self._out_of_time():
                return
            earlier = [n for n in names if (r := revisit_of(n)) is not None and r[0] == day]
            await self._revisit(day, age, [manifest_name(self._lane, day), *earlier])

    async def _revisit(self, day: date, age: int, manifests: list[str]) -> None:
        """List ``day`` again and read the records with a version it lacks; then write the
        revisit's manifest (the blobs no earlier of the day's ``manifests`` lists: those of
        this revisit, and of one stopped before its manifest) and update the records set
        aside."""
        start = day_start(day)
        piece = _Slice(Window(start, start + timedelta(days=1)))
        found = _Revisit(day, age)
        before = await self._day(day)
        known = {k: set(v) for k, v in before.versions.items()}
        blobs_before: set[str] = set()
        for name in manifests:
            document, _ = await self._store.read_json(name)
            for entry in (document or {}).get("blobs", []) + (document or {}).get("added", []):
                blobs_before.add(entry["name"])
        await self._list_into(piece, revisit=found)
        if not piece.listed:
            return  # out of time: the next run lists the day again
        await piece.complete.wait()
        await self._blobs.flush()
        if self._failure is not None:
            return  # the run fails: the next one makes this revisit
        holdings = await day_holdings(self._store, self._lane, day)
        self._holdings[day] = holdings
        earlier = {r.id: r for r in self._state_blob.current.set_aside if r.day == day}
        recovered = [r for r in earlier.values() if r.id in holdings.versions]
        prior = {r.id: r.attempts for r in earlier.values()}
        failing = [
            SetAside(r.id, day, r.version, r.error, r.attempts + prior.get(r.id, 0))
            for r in piece.set_aside
        ]
        # Set aside before and not listed now: Graph has it no more; named here, not retried.
        failed = {r.id for r in failing}
        unlisted = [
            r for r in earlier.values() if r.id not in holdings.versions and r.id not in failed
        ]
        still = [*failing, *unlisted]
        added = {n: r for n, r in holdings.blobs.items() if n not in blobs_before}
        document = self._manifest(day, holdings, still)
        document.update(
            {
                "pass": "revisit",
                "ageDays": age,
                "listed": found.listed,
                "added": [{"name": n, "rows": r} for n, r in sorted(added.items())],
                "addedRows": sum(added.values()),
                "revised": sum(
                    1 for k in holdings.versions if k in known and holdings.versions[k] != known[k]
                ),
                "appeared": sum(1 for k in holdings.versions if k not in known),
                "recovered": [r.id for r in recovered],
                "revisitedAt": format_instant(datetime.now(UTC).replace(microsecond=0)),
            }
        )
        self._report.changed_rows += document["revised"]
        self._report.late_rows += document["appeared"]
        await self._store.create_json(revisit_manifest_name(self._lane, day, age), document)
        last = age == max(self._settings.revisit_days)

        def update(st: SourceState) -> dict[str, Any]:
            # After the last revisit nothing tries a record again: its manifest names it.
            kept = [] if last else failing
            return {"set_aside": (*(r for r in st.set_aside if r.day != day), *kept)}

        await self._state_blob.apply(update)
        log.info(
            "%s: revisited %s at %d days: %d listed, %d revised, %d appeared, %d still set aside",
            self._lane.name,
            day,
            age,
            found.listed,
            document["revised"],
            document["appeared"],
            len(still),
        )

    # ------------------------------------------------------------------ listing and reading

    async def _list_into(self, piece: _Slice, revisit: _Revisit | None) -> None:
        """List ``piece``'s records page by page and start reading each the archive lacks;
        ``piece.listed`` says whether every page was listed (not cut short by time)."""
        source = self._lane.source
        listing = self._graph.pages(source, piece.window, self._report.stats)
        try:
            async with aclosing(listing) as pages:
                piece.listed = await self._listed(piece, pages, revisit)
        finally:
            piece.listing = False
            piece.settle()

    async def _listed(
        self, piece: _Slice, pages: AsyncIterator[Page], revisit: _Revisit | None
    ) -> bool:
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
                if revisit is not None:
                    revisit.listed += 1
                if (key, version) in self._reading or (await self._day(day)).holds(key, version):
                    continue
                self._reading.add((key, version))
                await self._memory.room()
                await self._slots.acquire()
                if self._failure is not None:
                    self._slots.release()
                    raise self._failure
                piece.pending += 1
                task = asyncio.create_task(self._read(piece, key, version, day, row))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if page.more and self._out_of_time():
                return False
        return True

    async def _day(self, day: date) -> DayHoldings:
        """What ``day``'s blobs hold (read once a run, then kept up to date)."""
        if day not in self._holdings:
            async with self._loading.setdefault(day, asyncio.Lock()):
                if day not in self._holdings:
                    self._holdings[day] = await day_holdings(self._store, self._lane, day)
        return self._holdings[day]

    async def _read(self, piece: _Slice, key: str, listed: Version, day: date, row: Any) -> None:
        """Read one record whole (up to ``CALL_RECORDS_ATTEMPTS`` times) and buffer it for
        its blob; set it aside when every attempt failed."""
        attempts = self._settings.record_attempts
        try:
            error = ""
            for _ in range(attempts):
                record = WholeRecord(
                    self._graph,
                    self._blobs,
                    self._lane.source,
                    self._report.stats,
                    day,
                    key,
                    self._memory,
                )
                holdings = await self._day(day)
                try:
                    done = await record.read(holdings.parts_of(key), holdings.holds)
                except GraphError as exc:
                    if exc.status in LANE_FAILURES:
                        raise
                    if exc.status == 404 and self._at_the_edge(row):
                        self._gone[day] = self._gone.get(day, 0) + 1
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
            self._failure = self._failure or exc
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

    async def _stop_reads(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _out_of_time(self) -> bool:
        return time.monotonic() >= self._deadlines.soft or self._failure is not None
