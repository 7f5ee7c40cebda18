"""Reading one window from Graph into blobs: page by page, one blob per event date, each
committed whole and only if no blob of its name exists yet. (Call records, whose listed
rows are summaries read whole, are read by ``records``.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from datetime import date
from typing import Any

from ..archive.blobstore import BlobStore
from ..archive.partitions import (
    BUFFER_LIMIT,
    MIN_WINDOW_BUFFER,
    SOURCE_BUFFER_LIMIT,
    CommittedBlob,
    PartitionWriter,
)
from ..core.errors import GraphDataError, RowError
from ..core.lanes import Lane
from ..core.rows import split_page
from ..core.timefmt import format_instant
from ..core.windows import Window
from ..graph.client import GraphClient
from ..graph.pace import Pace
from ..observe.reports import SourceReport

log = logging.getLogger("collector")

RowFilter = Callable[[date, list[str], list[bytes]], list[bytes]]
"""Given a day, its rows' keys and JSONL lines from one page, the lines to write."""


class WindowReader:
    """Reads windows of one lane into blobs (provisional and settle reads alike)."""

    def __init__(
        self,
        graph: GraphClient,
        store: BlobStore,
        lane: Lane,
        pace: Pace,
        report: SourceReport,
        confirm_lease: Callable[[], Awaitable[None]],
        on_dense: Callable[[], None],
    ) -> None:
        self._graph = graph
        self._store = store
        self._lane = lane
        self._pace = pace
        self._report = report
        self._confirm_lease = confirm_lease
        self._on_dense = on_dense

    async def read(
        self,
        window: Window,
        name_for: Callable[[date], str],
        keep: RowFilter | None = None,
        day_metadata: Callable[[date], dict[str, str]] | None = None,
        meanwhile: Callable[[], Awaitable[bool]] | None = None,
    ) -> tuple[list[CommittedBlob], int]:
        """Read ``window`` into the blobs ``name_for(day)`` (only the lines ``keep`` keeps;
        ``day_metadata`` adds to a blob's metadata) and commit them; return them and the
        number of pages read. ``meanwhile`` runs while the first page is on its way (so its
        storage reads add no latency before the window's first request); when it returns
        False the window is not read at all."""
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
            pages = await self._page_into(window, writer, keep, meanwhile)
            # Right before committing: a run that stalled past its lease and was taken over
            # finds out here (storage refuses to replace a committed blob in any case).
            await self._confirm_lease()
            metadata = {
                "source": self._lane.source.name,
                **({"tenant": self._lane.tenant} if self._lane.tenant else {}),
                "windowStart": format_instant(window.start),
                "windowEnd": format_instant(window.end),
            }
            blobs = await writer.commit(metadata, day_metadata)
        except BaseException:
            await writer.abort()  # no block may outlive its window's task
            raise
        for blob in blobs:
            if not blob.created:
                log.info(
                    "%s: %s was committed by an earlier attempt (%d rows): kept as it is",
                    self._lane.name,
                    blob.name,
                    blob.rows,
                )
        return blobs, pages

    async def _page_into(
        self,
        window: Window,
        writer: PartitionWriter,
        keep: RowFilter | None,
        meanwhile: Callable[[], Awaitable[bool]] | None,
    ) -> int:
        """Stream every page of ``window`` into ``writer``; return the number of pages."""
        pages = 0
        # The rows a page's repeats are recognised by: an event log's last page (offset
        # paging shifts rows by less than a page; a window holds a million rows), a daily
        # report's every page (a day's report is small, and a repeat must never pass).
        seen: dict[str, bytes] = {}
        source, report = self._lane.source, self._report
        async with aclosing(self._graph.pages(source, window, report.stats)) as paging:
            first = asyncio.ensure_future(anext(paging, None))
            try:
                wanted = meanwhile is None or await meanwhile()
            except BaseException:
                await _cancel(first)
                raise
            if not wanted:
                await _cancel(first)  # the window's days are final already
                return 0
            page = await first
            while page is not None:
                where = f"page {page.number}"
                seen = await self._write(
                    window, where, page.rows, seen, writer, keep, page.request_id
                )
                if self._pace.read(window, len(page.rows), page.more):
                    self._on_dense()
                pages += 1
                report.pages += 1
                page = await anext(paging, None)
        self._pace.paged(window)
        return pages

    async def _write(
        self,
        window: Window,
        where: str,
        rows: list[Any],
        seen: dict[str, bytes],
        writer: PartitionWriter,
        keep: RowFilter | None,
        request_id: str | None = None,
    ) -> dict[str, bytes]:
        """Place ``rows`` (from ``where``: a page, Graph's ``request_id``) into the window's
        blobs; return the rows their repeats are recognised by from now on (an event log's
        last page, a daily report's every row: see ``_page_into``)."""
        source, report = self._lane.source, self._report
        try:
            split = split_page(source, window, rows, seen)
        except RowError as exc:
            raise GraphDataError(
                f"{self._lane.name} window {window} {where} [request-id {request_id}]: {exc}; "
                "nothing of this window was committed"
            ) from None
        lines = split.lines
        if keep is not None:
            lines = {d: keep(d, split.line_keys[d], ls) for d, ls in lines.items()}
        await writer.add(lines)
        report.rows += split.rows
        if split.duplicates:
            log.info(
                "%s: %d rows of %s repeat a row read before in this window (offset paging "
                "shifts rows); each is archived once",
                self._lane.name,
                split.duplicates,
                where,
            )
        if split.outside:
            log.warning(
                "%s: %d rows of %s lie outside window %s; kept in their own date folders",
                self._lane.name,
                split.outside,
                where,
                window,
            )
        return {**seen, **split.keys} if source.daily_report else split.keys


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
