"""Streaming one window's rows into one blob per UTC event date, within a memory budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from .blobstore import BlobStore, BlockBlobWriter

BUFFER_LIMIT = 8 * 1024 * 1024
"""Bytes all of a window's blobs may hold in memory together before the largest is staged."""
SOURCE_BUFFER_LIMIT = 16 * 1024 * 1024
"""Bytes the windows of one source in flight may buffer together (split between them, at
most ``BUFFER_LIMIT`` each)."""
MIN_WINDOW_BUFFER = 1024 * 1024
"""Least buffer a window gets: smaller blocks would only add storage requests."""


@dataclass(frozen=True)
class CommittedBlob:
    """A blob of a window: committed by it, or found committed by an earlier attempt."""

    day: date
    name: str
    rows: int
    created: bool = True
    """False: a blob of this name was already committed (it stays as it was; ``rows`` is
    its count)."""


class PartitionWriter:
    """Writes a window's rows to the blob ``name_for(day)`` of each row's date.

    A 90-day window may touch 90 blobs at once; their buffers share ``buffer_limit`` (a
    number, or a function asked at each page: the share of a budget that several windows
    split) so memory stays bounded by a page plus that limit, whatever the window's size.
    """

    def __init__(
        self,
        store: BlobStore,
        name_for: Callable[[date], str],
        buffer_limit: int | Callable[[], int] = BUFFER_LIMIT,
    ) -> None:
        self._store = store
        self._name_for = name_for
        self._buffer_limit = buffer_limit if callable(buffer_limit) else lambda: buffer_limit
        self._writers: dict[date, BlockBlobWriter] = {}

    async def add(self, lines_by_day: dict[date, list[bytes]]) -> None:
        """Append lines to their day's blob."""
        for day, lines in lines_by_day.items():
            writer = self._writers.get(day)
            if writer is None:
                writer = self._writers[day] = self._store.writer(self._name_for(day))
            await writer.write_lines(lines)
        limit = self._buffer_limit()
        while sum(w.buffered for w in self._writers.values()) > limit:
            await max(self._writers.values(), key=lambda w: w.buffered).flush()

    async def abort(self) -> None:
        """Stop the blocks still on their way (the window ends without committing)."""
        # Cancel all before awaiting any: a second cancellation while awaiting cannot leave
        # an upload running past its window.
        stopped = [task for w in self._writers.values() for task in w.stop_staging()]
        await asyncio.gather(*stopped, return_exceptions=True)

    async def commit(
        self,
        metadata: dict[str, str],
        day_metadata: Callable[[date], dict[str, str]] | None = None,
    ) -> list[CommittedBlob]:
        """Commit every blob that has rows (each appears whole at once, and only if no blob
        of its name exists yet) and say what is there. Each blob's metadata is ``metadata``,
        its row count and ``day_metadata(day)``."""
        committed = []
        for day, writer in sorted(self._writers.items()):
            if not writer.lines:
                continue  # every row of the day was filtered out: no empty blob
            extra = day_metadata(day) if day_metadata else {}
            existing = await writer.commit({**metadata, **extra, "rows": str(writer.lines)})
            if existing is None:
                committed.append(CommittedBlob(day, writer.name, writer.lines))
            else:
                rows = int(existing.get("rows", "0"))
                committed.append(CommittedBlob(day, writer.name, rows, created=False))
        return committed
