"""One collection cycle: for every source, settle old days, then read the new windows.

Per source, under a lease (one live run per source):

1. a window left ``pending`` by a run that died is read again exactly;
2. **settle**: whole days older than the lateness horizon are read again in windows of up to
   89 days, written as one ``settled-<date>.jsonl`` blob per day, and the provisional
   ``part-*`` blobs they replace are deleted; a manifest marks each settled day;
3. **provisional**: ``[watermark, now - lag)`` is read in windows of at most one day, each
   written as ``part-<window>.jsonl`` blobs.

The watermarks move only after a window's blobs are committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import aiohttp
from azure.core.exceptions import AzureError

from .auth import CredentialFactory, TokenProvider, credential_factory
from .blobstore import BlobStore, open_store
from .budget import RequestBudget
from .errors import CollectorError, ConfigError, GraphDataError, StateConflictError
from .graph import GraphClient, RequestStats, RetryPolicy, send_tracing
from .layout import (
    PART_PREFIX,
    day_prefix,
    manifest_name,
    part_blob_name,
    settled_blob_name,
)
from .pace import Pace
from .partitions import (
    BUFFER_LIMIT,
    MIN_WINDOW_BUFFER,
    SOURCE_BUFFER_LIMIT,
    CommittedBlob,
    PartitionWriter,
)
from .rows import RowError, split_page
from .settings import Settings
from .sources import Source
from .state import PROVISIONAL, SETTLE, Pending, SourceLease, SourceState
from .timefmt import format_instant
from .windows import (
    SETTLE_MAX_DAYS,
    Window,
    balanced_span,
    floor_to_midnight,
    next_settle_span,
    plan_windows,
    run_end,
    settle_horizon,
    settle_window,
    window_days,
)

log = logging.getLogger("collector")

POLL_SECONDS = 0.1
"""How often a phase looks again at what it may start while its windows are being read."""
HARD_LIMIT_FACTOR = 1.25
"""The hard time limit of a run, as a multiple of ``COLLECTOR_TIME_BUDGET_SECONDS``."""

MAX_HISTORY = timedelta(days=365)
"""Oldest start accepted: Graph keeps PSTN and direct-routing logs 150-365 days by country."""


@dataclass
class SourceReport:
    """What one cycle did for one source."""

    source: str
    status: Literal["ok", "failed", "yielded"] = "ok"
    """``ok``; ``failed`` (error set, watermark kept); ``yielded`` (another run owns the source)."""
    windows: int = 0
    settled_days: int = 0
    rows: int = 0
    pages: int = 0
    blobs: int = 0
    boundary_skipped: int = 0
    outside_window: int = 0
    duplicates: int = 0
    out_of_time: bool = False
    """True when the time budget stopped the run at a window boundary; the next run goes on."""
    cut_off: int = 0
    """Windows still unfinished at the hard time limit, stopped (read again next run)."""
    stats: RequestStats = field(default_factory=RequestStats)
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    settled_after: datetime | None = None
    error: str | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for logs and the CLI."""

        def stamp(moment: datetime | None) -> str:
            return "none" if moment is None else format_instant(moment)

        line = (
            f"{self.source}: {self.status} windows={self.windows} settled_days={self.settled_days} "
            f"rows={self.rows} pages={self.pages} requests={self.stats.requests} "
            f"retries={self.stats.retries} throttled={self.stats.throttled} blobs={self.blobs} "
            f"watermark {stamp(self.watermark_before)} -> {stamp(self.watermark_after)} "
            f"settled {stamp(self.settled_after)} ({self.seconds:.1f}s)"
        )
        if self.cut_off:
            line += f" {self.cut_off} window(s) stopped at the hard time limit: read again next run"
        elif self.out_of_time:
            line += " time budget reached: the next run continues"
        return f"{line} error: {self.error}" if self.error else line


@dataclass
class RunReport:
    """What one cycle did for every source."""

    sources: list[SourceReport]

    @property
    def ok(self) -> bool:
        """True when no source failed."""
        return all(r.status != "failed" for r in self.sources)


def default_start(end: datetime) -> datetime:
    """Where a source with no watermark and no ``COLLECTOR_START`` begins: the previous UTC day."""
    return end.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


async def run_cycle(
    settings: Settings,
    now: datetime | None = None,
    *,
    retry: RetryPolicy | None = None,
    graph_credentials: CredentialFactory | None = None,
    storage_credentials: CredentialFactory | None = None,
    budget_period: float = 60.0,
    budget_margin: float = 1.0,
) -> RunReport:
    """Collect every configured source up to ``now - lag`` (``now`` defaults to the clock).

    ``budget_period`` is the span the request limits apply to: 60 s, except in benchmarks that
    scale Graph's minute down; ``budget_margin`` widens it for arrival jitter.
    """
    budget = RequestBudget(
        settings.requests_per_minute_per_log,
        settings.requests_per_minute,
        budget_period,
        margin=budget_margin,
    )
    cycle = _Cycle(settings, (now or datetime.now(UTC)).astimezone(UTC), budget.span)
    tokens = TokenProvider(
        graph_credentials or credential_factory(settings.identity_client_id), settings.graph_scope
    )
    storage_factory = storage_credentials or credential_factory(settings.storage.client_id)
    try:
        async with open_store(settings.storage, settings.container, storage_factory) as store:
            await store.ensure_container()
            async with aiohttp.ClientSession(trace_configs=[send_tracing()]) as session:
                graph = GraphClient(
                    session,
                    tokens,
                    settings.graph_endpoint,
                    timeout=settings.graph_timeout,
                    retry=retry,
                    budget=budget,
                )
                reports = await asyncio.gather(
                    *(cycle.collect(source, graph, store) for source in settings.sources)
                )
    finally:
        await tokens.close()
    return RunReport(list(reports))


class _Cycle:
    """What every source of one cycle shares: settings, 'now', run id and deadline."""

    def __init__(self, settings: Settings, now: datetime, budget_span: float = 61.0) -> None:
        self.settings = settings
        self.now = now
        self.run_id = uuid.uuid4().hex[:12]
        self.deadline = time.monotonic() + settings.time_budget
        self.hard_deadline = time.monotonic() + settings.time_budget * HARD_LIMIT_FACTOR
        """Windows still reading now are stopped, so a run ends before the host kills it."""
        self.budget_span = budget_span
        """Seconds each span of the request budget lasts (``RequestBudget.span``)."""

    async def collect(self, source: Source, graph: GraphClient, store: BlobStore) -> SourceReport:
        """Collect one source; errors end this source only and are reported, not raised."""
        report = SourceReport(source.name)
        began = time.monotonic()
        lease = SourceLease(store, source, self.run_id, self.settings.lease_seconds)
        try:
            async with lease.held():
                await _SourceRun(self, source, graph, store, lease, report).run()
        except StateConflictError as exc:
            report.status = "yielded"
            report.error = f"{exc}; this run leaves {source.name} alone"
            log.warning("%s: %s", source.name, report.error)
        except (CollectorError, AzureError) as exc:
            report.status = "failed"
            report.error = str(exc)
            log.error("%s: failed: %s", source.name, exc)
        except Exception as exc:  # a bug must not hide the other sources' results
            report.status = "failed"
            report.error = f"unexpected {type(exc).__name__}: {exc}"
            log.exception("%s: unexpected failure", source.name)
        report.seconds = time.monotonic() - began
        return report


class _SourceRun:
    """The work of one cycle on one source."""

    def __init__(
        self,
        cycle: _Cycle,
        source: Source,
        graph: GraphClient,
        store: BlobStore,
        lease: SourceLease,
        report: SourceReport,
    ) -> None:
        self._cycle = cycle
        self._settings = cycle.settings
        self._source = source
        self._graph = graph
        self._store = store
        self._lease = lease
        self._report = report
        self._finished: set[Pending] = set()
        self._progress: dict[Window, str] = {}
        self._cut = False
        """True once the hard time limit has stopped windows: nothing new starts."""
        self._survivor: asyncio.Task[object] | None = None
        """The one window kept reading past the hard time limit."""
        self._wakers: set[asyncio.Event] = set()
        """One per ``_in_flight`` loop: set when the source proves dense, so a phase
        reading one window at a time widens at once rather than at its next poll."""
        settings = cycle.settings
        per_log = min(
            settings.requests_per_minute_per_log,
            settings.requests_per_minute / len(settings.sources),
        )
        self._pace = Pace(
            lease.state.rows_per_day, per_log / cycle.budget_span, cycle.hard_deadline
        )

    async def run(self) -> None:
        state = self._lease.state
        end = run_end(self._cycle.now, self._settings.lag)
        horizon = settle_horizon(self._cycle.now, end, self._settings.lateness)
        start = state.watermark or self._first_start(end)
        self._report.watermark_before = state.watermark
        if state.watermark is None:
            # First run: settling starts where reading does.
            state = await self._lease.update(
                watermark=start, settled=start if horizon is not None else None
            )
        elif horizon is not None and state.settled is None:
            # Settling just switched on: from the current day's midnight, so that day's
            # settled blob covers it whole (earlier days stay provisional).
            state = await self._lease.update(settled=floor_to_midnight(state.watermark))
        self._report.watermark_after = state.watermark
        self._report.settled_after = state.settled
        settled = state.settled
        kept = tuple(
            p
            for p in state.pending
            # A window the settled watermark has passed was replaced by settled blobs.
            if p.kind == PROVISIONAL and (settled is None or p.window.end > settled)
        )
        if len(kept) != len(state.pending):
            # Settled blobs are named by day: the settle phase simply starts again at the
            # settled watermark (with small windows, so a huge one cannot wedge the source).
            state = await self._lease.update(pending=kept)
        # Windows committed whole are not read again: reading them first, every run, could
        # take the whole time budget from the settle window they wait for, run after run.
        redo = sorted(p.window for p in kept if not p.committed)
        if redo:
            log.info("%s: re-reading %d unfinished window(s)", self._source.name, len(redo))
            await self._in_flight(iter(redo).__next__, self._provisional)
        # Both phases at once: settling [S, horizon) and reading [max(W, horizon), now - lag)
        # never touch the same days, and the tail of one fills the budget the other leaves.
        phases = [self._provisional_phase(end, horizon)]
        if horizon is not None:
            phases.append(self._settle_phase(horizon))
        await _all_or_cancel(phases)
        if self._pace.rows_per_day != self._lease.state.rows_per_day:
            await self._lease.update(rows_per_day=self._pace.rows_per_day)

    def _first_start(self, end: datetime) -> datetime:
        start = self._settings.start or default_start(end)
        if start < self._cycle.now - MAX_HISTORY:
            raise ConfigError(
                "COLLECTOR_START",
                format_instant(start),
                f"at most {MAX_HISTORY.days} days before now: Graph keeps call logs "
                "150-365 days depending on the country, so older windows would read nothing",
            )
        return start

    def _out_of_time(self) -> bool:
        if time.monotonic() < self._cycle.deadline:
            return False
        if not self._report.out_of_time:
            self._report.out_of_time = True
            log.warning(
                "%s: time budget of %.0fs reached; stopping at a window boundary, the next "
                "run continues",
                self._source.name,
                self._settings.time_budget,
            )
        return True

    async def _in_flight(
        self,
        next_window: Callable[[], Window],
        process: Callable[[Window], Coroutine[Any, Any, object]],
        width: Callable[[], int] | None = None,
    ) -> None:
        """Process windows from ``next_window`` (StopIteration: no more) with up to
        ``COLLECTOR_WINDOWS_IN_FLIGHT`` at once, so page latency does not leave the request
        budget unused (``width`` may change as it goes), and only as many as the budget can
        finish before the run's hard time limit (``Pace``). The first failure cancels the
        others (they stay pending). At the hard time limit every window of the source but
        the one furthest on is stopped (they stay pending), so a run that took on too much
        still finishes one window, and ends."""
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
                    and len(running) < (width() if width else self._settings.windows_in_flight)
                    and not self._out_of_time()
                ):
                    if held is None:
                        try:
                            held = next_window()
                        except StopIteration:
                            exhausted = True
                            break
                    if not self._pace.admits(held):
                        break
                    window, held = held, None
                    self._pace.started(window)
                    running[asyncio.create_task(self._tracked(process, window))] = window
                if not running:
                    if held is None or self._cut or self._out_of_time():
                        return
                    await asyncio.sleep(POLL_SECONDS)  # the other phase's windows end first
                    continue
                left = self._cycle.hard_deadline - time.monotonic()
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
                if not stopped and time.monotonic() >= self._cycle.hard_deadline:
                    await self._cut_off(running)  # in each phase, once
                    stopped = True
        finally:
            self._wakers.discard(wake)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _cut_off(self, running: dict[asyncio.Task[object], Window]) -> None:
        """At the hard time limit: keep the source's window furthest on, and those that have
        read their last page (they only commit now), and stop the rest."""
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
                self._source.name,
                len(stopped),
                self._settings.time_budget * HARD_LIMIT_FACTOR,
                self._pace.rows_per_day or 0,
            )

    async def _tracked(
        self, process: Callable[[Window], Coroutine[Any, Any, object]], window: Window
    ) -> object:
        try:
            return await process(window)
        finally:
            self._pace.stopped(window)  # no-op once its last page was read

    async def _settle_phase(self, horizon: datetime) -> None:
        settled = self._lease.state.settled
        if settled is None or settled >= horizon:
            return
        cursor, span = settled, 1

        def next_window() -> Window:
            nonlocal cursor
            if cursor >= horizon:
                raise StopIteration
            window = settle_window(cursor, horizon, balanced_span(span, cursor, horizon, width()))
            cursor = window.end
            return window

        sparse = False
        measured = False

        async def settle(window: Window) -> None:
            nonlocal span, sparse, measured
            pages = await self._settle(window)
            span = next_settle_span(span, pages)
            sparse = pages <= 2  # near-empty days: grow one window at a time
            measured = True

        def width() -> int:
            # One window first, unless a window is known to need several pages: a sparse
            # history is then read in a few growing windows (one at a time, each sized from
            # the last), a busy one in many one-day windows at once.
            if self._pace.dense:
                return self._settings.windows_in_flight
            growing = sparse and span < SETTLE_MAX_DAYS
            return 1 if growing or not measured else self._settings.windows_in_flight

        await self._in_flight(next_window, settle, width)

    async def _provisional_phase(self, end: datetime, horizon: datetime | None) -> None:
        watermark = self._lease.state.watermark
        assert watermark is not None
        if horizon is not None:
            watermark = max(watermark, horizon)  # days before the horizon are settled instead
        # Windows already read in this run (pending ones redone) but not yet under the
        # watermark: new windows start after them, never overlapping their blobs.
        for claim in sorted(self._lease.state.pending, key=lambda p: p.window):
            if claim.kind == PROVISIONAL and claim.window.start == watermark:
                watermark = claim.window.end
        windows = plan_windows(watermark, end)
        if not windows:
            log.info("%s: up to date (watermark %s)", self._source.name, format_instant(watermark))
        numbered = iter(enumerate(windows, 1))

        def next_window() -> Window:
            number, window = next(numbered)
            self._progress[window] = f" {number}/{len(windows)}"
            return window

        await self._in_flight(next_window, self._provisional)

    async def _provisional(self, window: Window) -> None:
        claim = Pending(PROVISIONAL, window)
        await self._lease.apply(
            lambda st: {} if claim in st.pending else {"pending": (*st.pending, claim)}
        )
        blobs, pages = await self._read(
            window, lambda day: part_blob_name(self._source, day, window)
        )
        self._finished.add(claim)
        state = await self._lease.apply(self._advance)
        self._done(window, self._progress.get(window, ""), blobs, pages)
        self._report.watermark_after = state.watermark

    def _advance(self, state: SourceState) -> dict[str, object]:
        """Move the settled watermark over finished settle windows that follow it without a
        gap, the watermark to at least there, then over finished provisional windows."""
        settled, watermark = state.settled, state.watermark
        pending = sorted(state.pending, key=lambda p: p.window)
        for claim in list(pending):
            if claim.kind == SETTLE and claim in self._finished and claim.window.start == settled:
                settled = claim.window.end
                pending.remove(claim)
        assert watermark is not None
        if settled is not None and settled > watermark:
            watermark = settled
        for claim in list(pending):
            if claim.kind != PROVISIONAL or not (claim.committed or claim in self._finished):
                continue
            if claim.window.start == watermark:
                watermark = claim.window.end
                pending.remove(claim)
            elif claim.window.end <= watermark:
                pending.remove(claim)  # a settle window read it again meanwhile
        # Finished windows the watermark cannot pass yet stay, marked as committed whole.
        pending = [
            replace(c, committed=True) if c.kind == PROVISIONAL and c in self._finished else c
            for c in pending
        ]
        return {"settled": settled, "watermark": watermark, "pending": tuple(pending)}

    async def _settle(self, window: Window) -> int:
        """Read ``window`` again as final data: one blob per day, replacing the day's parts."""
        claim = Pending(SETTLE, window)
        await self._lease.apply(lambda st: {"pending": (*st.pending, claim)})
        days = set(window_days(window))
        source = self._source

        def name_for(day: date) -> str:
            # Rows outside the window (not expected from Graph) keep a provisional-style name
            # so they can never overwrite another day's settled blob.
            return (
                settled_blob_name(source, day)
                if day in days
                else part_blob_name(source, day, window)
            )

        blobs, pages = await self._read(window, name_for)
        await self._lease.confirm()  # still ours: deletes below must not hit a newer run's blobs
        rows = {b.day: b for b in blobs}
        manifests = [await self._replace_parts(day, rows.get(day), window) for day in sorted(days)]
        await self._lease.confirm()
        for manifest in manifests:
            await self._store.put_json(
                manifest_name(source, date.fromisoformat(str(manifest["date"]))), manifest
            )
        self._finished.add(claim)
        state = await self._lease.apply(self._advance)
        self._report.settled_days += len(days)
        self._report.settled_after = state.settled
        self._report.watermark_after = state.watermark
        self._done(window, " (settle)", blobs, pages)
        return pages

    async def _replace_parts(
        self, day: date, settled: CommittedBlob | None, window: Window
    ) -> dict[str, object]:
        """Delete the provisional blobs of ``day`` that its settled blob replaces; return the
        day's manifest.

        If the settle read holds fewer rows than the day's parts (Graph no longer returns
        rows it returned before: retention ran out, or a long outage), nothing archived is
        deleted: the parts stay, the new settled blob goes, and the manifest says so.
        """
        listed = await self._store.list_with_metadata(day_prefix(self._source, day))
        ours = {settled.name} if settled is not None else set()
        parts = {n: m for n, m in listed.items() if n.rsplit("/", 1)[-1].startswith(PART_PREFIX)}
        part_rows = sum(int(m.get("rows", "0")) for m in parts.values())
        settled_rows = 0 if settled is None else settled.rows
        if part_rows > settled_rows:
            log.warning(
                "%s: settling %s read %d rows but its provisional blobs hold %d: keeping them",
                self._source.name,
                day,
                settled_rows,
                part_rows,
            )
            await self._store.delete(sorted(ours))
            return self._manifest(day, window, None, "kept-provisional", part_rows)
        stale = [n for n in listed if n not in ours]  # parts, and an older settled blob
        await self._store.delete(sorted(stale))
        return self._manifest(day, window, settled, "settled", part_rows)

    def _manifest(
        self, day: date, window: Window, blob: CommittedBlob | None, status: str, part_rows: int
    ) -> dict[str, object]:
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return {
            "source": self._source.name,
            "date": day.isoformat(),
            "status": status,
            "blob": None if blob is None else blob.name,
            "rows": 0 if blob is None else blob.rows,
            "provisionalRows": part_rows,
            "coveredFrom": format_instant(max(day_start, window.start)),
            "coveredTo": format_instant(min(day_start + timedelta(days=1), window.end)),
            "settledAt": format_instant(datetime.now(UTC).replace(microsecond=0)),
            "lateness": f"PT{int(self._settings.lateness.total_seconds() // 3600)}H",
        }

    async def _read(
        self, window: Window, name_for: Callable[[date], str]
    ) -> tuple[list[CommittedBlob], int]:
        """Read ``window`` page by page into its blobs and commit them."""
        # The windows being read share one memory budget for buffered blocks.
        writer = PartitionWriter(
            self._store,
            name_for,
            lambda: min(
                BUFFER_LIMIT,
                max(MIN_WINDOW_BUFFER, SOURCE_BUFFER_LIMIT // max(1, self._pace.reading)),
            ),
        )
        try:
            pages = await self._page_into(window, writer)
            # Right before committing: a run that stalled past its lease and was taken over
            # finds out here, before it can replace the newer blobs.
            await self._lease.confirm()
            metadata = {
                "source": self._source.name,
                "windowStart": format_instant(window.start),
                "windowEnd": format_instant(window.end),
            }
            return await writer.commit(metadata), pages
        except BaseException:
            await writer.abort()  # no block may outlive its window's task
            raise

    async def _page_into(self, window: Window, writer: PartitionWriter) -> int:
        """Stream every page of ``window`` into ``writer``; return the number of pages."""
        pages = 0
        previous_keys: set[str] = set()
        source, report = self._source, self._report
        async with aclosing(self._graph.pages(source, window, report.stats)) as paging:
            async for page in paging:
                try:
                    split = split_page(source, window, page.rows, previous_keys)
                except RowError as exc:
                    raise GraphDataError(
                        f"{source.name} window {window} page {page.number} "
                        f"[request-id {page.request_id}]: {exc}; nothing of this window was committed"
                    ) from None
                await writer.add(split.lines)
                if self._pace.read(window, split.rows, page.more):
                    for wake in self._wakers:
                        wake.set()
                previous_keys = split.keys
                pages += 1
                report.duplicates += split.duplicates
                report.pages += 1
                report.rows += split.rows
                report.boundary_skipped += split.boundary_skipped
                report.outside_window += split.outside
                if split.outside:
                    log.warning(
                        "%s: %d rows of page %d lie outside window %s; kept in their own date folders",
                        source.name,
                        split.outside,
                        page.number,
                        window,
                    )
        self._pace.paged(window)
        return pages

    def _done(self, window: Window, label: str, blobs: list[CommittedBlob], pages: int) -> None:
        self._report.windows += 1
        self._report.blobs += len(blobs)
        log.info(
            "%s: window%s %s committed: %d rows, %d pages (run so far: %d rows, %d requests)",
            self._source.name,
            label,
            window,
            sum(b.rows for b in blobs),
            pages,
            self._report.rows,
            self._report.stats.requests,
        )


async def _all_or_cancel(work: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` concurrently; the first failure cancels the rest and is raised."""
    tasks = [asyncio.create_task(w) for w in work]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
