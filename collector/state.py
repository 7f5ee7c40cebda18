"""A source's watermark and in-flight window, kept in one ETag-guarded blob."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .blobstore import BlobStore
from .layout import state_blob_name
from .sources import Source
from .timefmt import format_instant, parse_instant
from .windows import Window


@dataclass(frozen=True)
class SourceState:
    """Where a source's reading stands.

    ``watermark`` is the first instant not yet archived. ``pending`` is the window being
    written: a run that dies mid-window leaves it set, and the next run re-reads exactly that
    window, so its blobs (same names) are replaced rather than joined by overlapping ones.
    """

    watermark: datetime | None = None
    pending: Window | None = None
    etag: str | None = None

    def to_document(self, source: Source, now: datetime) -> dict[str, Any]:
        """Return the JSON document stored for this state."""
        pending = (
            None
            if self.pending is None
            else {
                "start": format_instant(self.pending.start),
                "end": format_instant(self.pending.end),
            }
        )
        return {
            "source": source.name,
            "watermark": None if self.watermark is None else format_instant(self.watermark),
            "pending": pending,
            "updatedAt": format_instant(now),
        }


def state_from_document(document: Any, etag: str | None) -> SourceState:
    """Parse a stored state document (``None`` for a source never collected)."""
    if document is None:
        return SourceState()
    pending = document.get("pending")
    watermark = document.get("watermark")
    return SourceState(
        watermark=None if watermark is None else parse_instant(watermark),
        pending=None
        if not pending
        else Window(parse_instant(pending["start"]), parse_instant(pending["end"])),
        etag=etag,
    )


class StateStore:
    """Loads and conditionally saves source states in the container."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store

    async def load(self, source: Source) -> SourceState:
        """Return the stored state of ``source`` with its ETag."""
        document, etag = await self._store.read_json(state_blob_name(source))
        return state_from_document(document, etag)

    async def save(
        self,
        source: Source,
        previous: SourceState,
        watermark: datetime,
        pending: Window | None,
        now: datetime,
    ) -> SourceState:
        """Replace ``previous`` by a new state; fails with ``StateConflictError`` if it changed."""
        new = SourceState(watermark=watermark, pending=pending)
        etag = await self._store.write_json(
            state_blob_name(source), new.to_document(source, now), previous.etag
        )
        return SourceState(watermark=watermark, pending=pending, etag=etag)
