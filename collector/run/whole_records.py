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

import logging
from contextlib import aclosing
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
    ) -> None:
        self._graph = graph
        self._blobs = blobs
        self._source = source
        self._stats = stats
        self._day = day
        self._key = key

    async def read(self, earlier: tuple[Version, dict[str, PartProgress]] | None) -> Version:
        """Read the record (going on from ``earlier``: its version read in part before, with
        each relation's progress) and buffer its line; return the version archived."""
        if earlier is not None:
            log.info(
                "%s: %s was read in part before: going on from %s",
                self._source.name,
                self._key,
                ", ".join(f"{r} page {p.pages + 1}" for r, p in sorted(earlier[1].items())),
            )
            try:
                return await self._attempt(earlier)
            except _VersionMoved:
                pass  # its rows so far are of an older version: read the new one from its start
        return await self._attempt(None)

    async def _attempt(self, earlier: tuple[Version, dict[str, PartProgress]] | None) -> Version:
        """One read; raises ``_VersionMoved`` when the record's version is not the one
        ``earlier`` read in part."""
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
                    version = record_version(record)
                    if earlier is not None:
                        if version != earlier[0]:
                            raise _VersionMoved
                        for relation, progress in earlier[1].items():
                            writers[relation] = self._writer(version, relation, progress)
                    continue
                relation = page.relation
                if writers or earlier is not None:
                    await self._writer_of(writers, version, relation).add(page.items, page.next)
                    continue
                arrays.setdefault(relation, []).extend(page.items)
                nexts[relation] = page.next
                size += page.size or len(orjson.dumps(page.items))
                if size > SPLIT_BYTES:
                    for name, items in arrays.items():
                        await self._writer_of(writers, version, name).add(items, nexts[name])
                    arrays.clear()
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
        return version

    def _writer(self, version: Version, relation: str, before: PartProgress) -> PartRows:
        return self._blobs.part_rows(self._day, self._key, version, relation, before)

    def _writer_of(self, writers: dict[str, PartRows], version: Version, relation: str) -> PartRows:
        if relation not in writers:
            writers[relation] = self._writer(version, relation, PartProgress())
        return writers[relation]


class _VersionMoved(Exception):
    """The record's version moved on since it was read in part."""
