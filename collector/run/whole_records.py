"""One call record read whole, as one line or, when it is large, split.

A record is kept in memory whole while its pages add up to less than ``SPLIT_BYTES`` and
written as one JSON line. A larger one (a meeting with thousands of attendees) is split:
from then on each page of its sessions and participants is written out as rows of their own
(``archive.records.PartRows``: each row carries ``callRecordId`` and ``callRecordVersion``),
committed with the nextLink to go on from, and the record's own line, written last, carries
``collectorSplit`` (the number of rows of each relation) instead of those arrays. Memory
per record stays below ``SPLIT_BYTES`` plus a few pages, and no line in the archive is
longer than that plus one page; a record whose pages cannot all be read in one run goes on in
the next from its last committed page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from ..archive.records import (
    SPLIT,
    PartProgress,
    PartRows,
    RecordBlobs,
    Version,
    record_version,
)
from ..core.errors import GraphDataError
from ..core.sources import Source
from ..graph.client import GraphClient, RequestStats

log = logging.getLogger("collector")

SPLIT_BYTES = 4 * 1024 * 1024
"""Bytes of Graph's answers for one record beyond which it is split (DuckDB reads lines of
up to 16 MB by default; the archive keeps every line under 8 MB)."""
EARLY_BYTES = 256 * 1024
"""A record holding this much is split (or, split, commits its rows) early while the
run's memory is full: memory stays bounded however many large meetings are read at once."""


class Memory:
    """Bytes of Graph's answers the records being read hold in memory (and ``waiting``:
    those of records waiting for their blob), so that a run admits new reads by bytes, not
    by a count of records, and records being read write out early when it is full."""

    def __init__(self, limit: int, waiting: Callable[[], int] = lambda: 0) -> None:
        self.held = 0
        self.limit = limit
        self._waiting = waiting
        self._changed = asyncio.Event()

    def full(self) -> bool:
        """True when the records in memory hold ``limit`` bytes or more."""
        return self.held + self._waiting() >= self.limit

    def take(self, size: int) -> None:
        """``size`` more bytes are held."""
        self.held += size

    def give(self, size: int) -> None:
        """``size`` bytes are held no more."""
        self.held -= size
        self._changed.set()

    async def room(self) -> None:
        """Wait until the memory is not ``full`` (or no read holds any: what records waiting
        for their blob hold is written out by the reads that go on, never by waiting)."""
        while self.full() and self.held > 0:
            self._changed.clear()
            await self._changed.wait()


class WholeRecord:
    """Reads one record and hands its line to ``blobs`` (see the module's docstring)."""

    def __init__(
        self,
        graph: GraphClient,
        blobs: RecordBlobs,
        source: Source,
        stats: RequestStats,
        day: date,
        key: str,
        memory: Memory,
    ) -> None:
        self._memory = memory
        self._graph = graph
        self._blobs = blobs
        self._source = source
        self._stats = stats
        self._day = day
        self._key = key

    async def read(
        self,
        earlier: tuple[Version, dict[str, PartProgress]] | None,
        holds: Callable[[str, Version], bool],
    ) -> Archived | None:
        """Read the record (going on from ``earlier``: its version read in part before, with
        each relation's progress) and buffer its line; return the version archived, or None
        when Graph answers with a version the day ``holds`` already (it lists one version
        and answers an older one for a moment after a change)."""
        if earlier is not None:
            log.info(
                "%s: %s was read in part before: going on from %s",
                self._source.name,
                self._key,
                ", ".join(f"{r} page {p.pages + 1}" for r, p in sorted(earlier[1].items())),
            )
            try:
                return await self._attempt(earlier, holds)
            except _VersionMoved:
                pass  # its rows so far are of an older version: read the new one from its start
        return await self._attempt(None, holds)

    async def _attempt(
        self,
        earlier: tuple[Version, dict[str, PartProgress]] | None,
        holds: Callable[[str, Version], bool],
    ) -> Archived | None:
        """One read; raises ``_VersionMoved`` when the record's version is not the one
        ``earlier`` read in part."""
        held = _Held(self._memory)
        try:
            return await self._read(earlier, holds, held)
        finally:
            held.release()

    async def _read(
        self,
        earlier: tuple[Version, dict[str, PartProgress]] | None,
        holds: Callable[[str, Version], bool],
        held: _Held,
    ) -> Archived | None:
        resume = None
        if earlier is not None:
            resume = {r: p.next for r, p in earlier[1].items()}
        record: dict[str, Any] = {}
        arrays: dict[str, list[Any]] = {}
        writers: dict[str, PartRows] = {}
        nexts: dict[str, str | None] = {}
        size = 0
        version: Version = None
        pages = self._graph.row_pages(self._source, self._key, self._stats, resume)
        async with aclosing(pages) as paging:
            async for page in paging:
                if page.relation is None:
                    record, size = page.document, page.size
                    held.set(size)
                    version = record_version(record)
                    if version is not None and holds(self._key, version):
                        return None
                    if earlier is not None:
                        if version != earlier[0]:
                            raise _VersionMoved
                        for relation, progress in earlier[1].items():
                            writers[relation] = self._writer(version, relation, progress)
                    continue
                relation = page.relation
                if writers or earlier is not None:
                    writer = self._writer_of(writers, version, relation)
                    await writer.add(page.items, page.next)
                    if self._memory.full() and writer.buffered >= EARLY_BYTES:
                        await writer.commit()  # out of memory: write out what is read
                    held.set(sum(w.buffered for w in writers.values()))
                    continue
                arrays.setdefault(relation, []).extend(page.items)
                nexts[relation] = page.next
                size += page.size or len(orjson.dumps(page.items))
                held.set(size)
                if size > SPLIT_BYTES or (size >= EARLY_BYTES and self._memory.full()):
                    for name, items in arrays.items():
                        await self._writer_of(writers, version, name).add(items, nexts[name])
                    arrays.clear()
                    held.set(sum(w.buffered for w in writers.values()))
        if writers or earlier is not None:
            for writer in writers.values():
                await writer.commit()
            relations = (*self._source.expanded, *self._source.relations)
            record[SPLIT] = {r: writers[r].progress.rows if r in writers else 0 for r in relations}
        else:
            record.update(arrays)
        line = orjson.dumps(record)
        if b"@odata.nextLink" in line:
            raise GraphDataError(
                f"{self._source.name} row {self._key}: a relation's nextLink was left unfollowed"
            )
        await self._blobs.add(self._day, self._key, version, line)
        return Archived(version)

    def _writer(self, version: Version, relation: str, before: PartProgress) -> PartRows:
        return self._blobs.part_rows(self._day, self._key, version, relation, before)

    def _writer_of(self, writers: dict[str, PartRows], version: Version, relation: str) -> PartRows:
        if relation not in writers:
            writers[relation] = self._writer(version, relation, PartProgress())
        return writers[relation]


@dataclass(frozen=True)
class Archived:
    """A record's line, buffered for its blob."""

    version: Version


class _Held:
    """What one read holds of ``Memory``."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory
        self._size = 0

    def set(self, size: int) -> None:
        """The read now holds ``size`` bytes."""
        if size > self._size:
            self._memory.take(size - self._size)
        else:
            self._memory.give(self._size - size)
        self._size = size

    def release(self) -> None:
        """The read holds nothing any more."""
        self.set(0)


class _VersionMoved(Exception):
    """The record's version moved on since it was read in part."""
