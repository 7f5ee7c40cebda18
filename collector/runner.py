"""One collection cycle: for every source, read the due windows and archive them."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import aiohttp
from azure.core.exceptions import AzureError

from .auth import CredentialFactory, TokenProvider, credential_factory
from .blobstore import BlobStore, BlockBlobWriter, open_store
from .errors import CollectorError, GraphDataError, StateConflictError
from .graph import GraphClient, RequestStats, RetryPolicy
from .layout import data_blob_name
from .rows import RowError, split_page
from .settings import Settings
from .sources import Source
from .state import StateStore
from .timefmt import format_instant
from .windows import Window, plan_windows, run_end

log = logging.getLogger("collector")


@dataclass
class SourceReport:
    """What one cycle did for one source."""

    source: str
    status: str = "ok"
    """``ok``; ``failed`` (error set, watermark kept); ``yielded`` (another run owns the source)."""
    windows: int = 0
    rows: int = 0
    pages: int = 0
    blobs: int = 0
    boundary_skipped: int = 0
    outside_window: int = 0
    stats: RequestStats = field(default_factory=RequestStats)
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    error: str | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for logs and the CLI."""

        def stamp(moment: datetime | None) -> str:
            return "none" if moment is None else format_instant(moment)

        line = (
            f"{self.source}: {self.status} windows={self.windows} rows={self.rows} "
            f"pages={self.pages} requests={self.stats.requests} retries={self.stats.retries} "
            f"throttled={self.stats.throttled} blobs={self.blobs} "
            f"watermark {stamp(self.watermark_before)} -> {stamp(self.watermark_after)} "
            f"({self.seconds:.1f}s)"
        )
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
) -> RunReport:
    """Collect every configured source up to ``now - lag`` (``now`` defaults to the clock)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    tokens = TokenProvider(
        graph_credentials or credential_factory(settings.identity_client_id), settings.graph_scope
    )
    storage_factory = storage_credentials or credential_factory(settings.storage.client_id)
    try:
        async with open_store(settings.storage, settings.container, storage_factory) as store:
            await store.ensure_container()
            async with aiohttp.ClientSession() as session:
                graph = GraphClient(
                    session,
                    tokens,
                    settings.graph_endpoint,
                    timeout=settings.graph_timeout,
                    retry=retry,
                )
                collector = _SourceCollector(settings, graph, store, now)
                reports = await asyncio.gather(*(collector.run(s) for s in settings.sources))
    finally:
        await tokens.close()
    return RunReport(list(reports))


class _SourceCollector:
    """Collects sources for one cycle; instances hold only what all sources share."""

    def __init__(
        self, settings: Settings, graph: GraphClient, store: BlobStore, now: datetime
    ) -> None:
        self._settings = settings
        self._graph = graph
        self._store = store
        self._states = StateStore(store)
        self._now = now

    async def run(self, source: Source) -> SourceReport:
        """Collect one source; errors end this source only and are reported, not raised."""
        report = SourceReport(source.name)
        began = time.monotonic()
        try:
            await self._collect(source, report)
        except StateConflictError as exc:
            report.status = "yielded"
            report.error = f"another run is collecting {source.name} ({exc}); stopped cleanly"
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

    async def _collect(self, source: Source, report: SourceReport) -> None:
        state = await self._states.load(source)
        end = run_end(self._now, self._settings.lag)
        start = state.watermark or self._settings.start or default_start(end)
        report.watermark_before = state.watermark
        report.watermark_after = state.watermark
        windows = plan_windows(start, end)
        if state.pending is not None:
            # A run died inside this window: read exactly it again so its blobs are replaced.
            log.info("%s: re-reading unfinished window %s", source.name, state.pending)
            windows = [state.pending, *plan_windows(state.pending.end, end)]
        if not windows:
            log.info("%s: up to date (watermark %s)", source.name, format_instant(start))
        for number, window in enumerate(windows, 1):
            state = await self._states.save(source, state, window.start, window, self._now)
            rows = await self._collect_window(source, window, report)
            state = await self._states.save(source, state, window.end, None, self._now)
            report.windows += 1
            report.watermark_after = window.end
            log.info(
                "%s: window %d/%d %s committed: %d rows (run so far: %d rows, %d requests)",
                source.name,
                number,
                len(windows),
                window,
                rows,
                report.rows,
                report.stats.requests,
            )

    async def _collect_window(self, source: Source, window: Window, report: SourceReport) -> int:
        """Read ``window`` page by page into its blobs, commit them, and return its row count."""
        writers: dict[date, BlockBlobWriter] = {}
        rows = 0
        async for page in self._graph.pages(source, window, report.stats):
            try:
                split = split_page(source, window, page.rows)
            except RowError as exc:
                raise GraphDataError(
                    f"{source.name} window {window} page {page.number} "
                    f"[request-id {page.request_id}]: {exc}; nothing of this window was committed"
                ) from None
            for day, lines in split.lines.items():
                writer = writers.get(day)
                if writer is None:
                    writer = writers[day] = self._store.writer(data_blob_name(source, day, window))
                await writer.write_lines(lines)
            rows += split.rows
            report.pages += 1
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
        metadata = {
            "source": source.name,
            "windowStart": format_instant(window.start),
            "windowEnd": format_instant(window.end),
        }
        for writer in writers.values():
            await writer.commit({**metadata, "rows": str(writer.lines)})
        report.rows += rows
        report.blobs += len(writers)
        return rows
