"""Call records in the archive: which versions of which records a day holds, and whole
records committed in small create-only blobs as they complete.

Each blob of call records names the records it holds (``id:version``, in its metadata), so
a run learns what a day holds from one listing of the day's folder, without reading a byte
of data, and skips those records before reading them whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

from ..core.errors import GraphDataError
from ..core.lanes import Lane
from .blobstore import BlobStore
from .layout import (
    day_prefix,
    is_collector_blob,
    is_part_rows_blob,
    part_rows_name,
    records_blob_name,
)
from .state import SetAside

log = logging.getLogger("collector")

RECORDS_PER_BLOB = 100
"""Records a blob holds at most: its metadata names each (``id:version``, about 45 bytes),
and Azure allows 8 KB of metadata a blob."""
BLOB_BYTES = 4 * 1024 * 1024
"""Bytes of records after which a blob is committed: progress is saved every few seconds at
Graph's rate, and a run killed at any instant loses at most this much reading."""
COMMITS_UNDER_WAY = 4
"""Blobs being committed at once before adding waits for one: memory stays bounded when
storage is slower than Graph."""
PART_BYTES = 2 * 1024 * 1024
"""Bytes of a large record's relation rows after which they are committed: a record read
over several runs goes on from its last committed page."""
SPLIT = "collectorSplit"
"""The property of a large record's line that says it was split: its rows per relation,
written in the day's ``<relation>/`` folders."""
RECORDS_META = "records"
"""The metadata entry naming a blob's records."""

Version = int | None
"""A record's ``version`` (None: Graph sent none)."""


def versions_text(keys: list[tuple[str, Version]]) -> str:
    """The metadata value naming ``keys`` (record id and version)."""
    return " ".join(f"{key}:{'' if version is None else version}" for key, version in keys)


def parse_versions(text: str) -> Iterator[tuple[str, Version]]:
    """The inverse of ``versions_text``."""
    for item in text.split():
        key, _, version = item.rpartition(":")
        yield key, int(version) if version.isdigit() else None


def record_version(row: Any) -> Version:
    """A record's ``version`` (None when absent or not a whole number)."""
    version = row.get("version") if isinstance(row, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


@dataclass
class PartProgress:
    """How far one relation of a large record (split) has been committed as rows."""

    rows: int = 0
    pages: int = 0
    """Pages of the relation read into committed blobs."""
    next: str | None = None
    """The nextLink to go on from; None once the relation was read whole."""


@dataclass
class DayHoldings:
    """The call records one day's blobs hold."""

    versions: dict[str, set[Version]] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)
    """Every data blob of the day with its row count."""
    parts: dict[tuple[str, Version], dict[str, PartProgress]] = field(default_factory=dict)
    """The relation rows committed of large records, by record and version."""

    def add_part(self, key: str, version: Version, relation: str, meta: dict[str, str]) -> None:
        """Note a committed blob of a large record's relation rows (its metadata)."""
        progress = self.parts.setdefault((key, version), {}).setdefault(relation, PartProgress())
        progress.rows += int(meta.get("rows", "0"))
        pages = int(meta.get("pages", "0"))
        if pages >= progress.pages:
            progress.pages, progress.next = pages, meta.get("next") or None

    def note(self, name: str, meta: dict[str, str]) -> bool:
        """Note a committed blob of the day from its metadata; False when the metadata does
        not say which records it holds (a blob from before records were named there)."""
        self.blobs[name] = int(meta.get("rows", "0"))
        if is_part_rows_blob(name):
            stamp = meta.get("version", "")
            version = int(stamp) if stamp.isdigit() else None
            self.add_part(meta.get("callRecord", ""), version, meta.get("relation", ""), meta)
            return True
        if RECORDS_META not in meta:
            return False
        for key, held in parse_versions(meta[RECORDS_META]):
            self.add(key, held)
        return True

    def parts_of(self, key: str) -> tuple[Version, dict[str, PartProgress]] | None:
        """The latest version of ``key`` read in part, with its relations' progress."""
        found = [(v, p) for (k, v), p in self.parts.items() if k == key]
        if not found:
            return None
        return max(found, key=lambda vp: -1 if vp[0] is None else vp[0])

    def holds(self, key: str, version: Version) -> bool:
        """True when the day has this version of the record or a later one (without a
        version: any)."""
        held = self.versions.get(key)
        if not held or version is None:
            return bool(held)
        return any(v is not None and v >= version for v in held)

    def add(self, key: str, version: Version) -> None:
        """Note that the day now holds this version of the record."""
        self.versions.setdefault(key, set()).add(version)

    @property
    def rows(self) -> int:
        """Record versions the day holds."""
        return sum(len(v) for v in self.versions.values())


async def day_holdings(store: BlobStore, lane: Lane, day: date) -> DayHoldings:
    """What ``day``'s blobs hold: from their metadata, or for a blob without it (written
    before records were committed in small blobs) from its lines."""
    holdings = DayHoldings()
    listed = await store.list_with_metadata(day_prefix(lane, day))
    for name, meta in sorted(listed.items()):
        if not is_collector_blob(name) or holdings.note(name, meta):
            continue
        async for line in store.read_lines(name):
            row = orjson.loads(line)
            holdings.add(str(row.get("id")), record_version(row))
    return holdings


def day_manifest(
    lane: Lane, day: date, holdings: DayHoldings, set_aside: list[SetAside]
) -> dict[str, Any]:
    """What every manifest of a call-records day says (the day's and each revisit's): its
    blobs, rows, records and revisions (record lines that are a later version of a record),
    and the records ``set_aside``."""
    return {
        "source": lane.source.name,
        **({"tenant": lane.tenant} if lane.tenant else {}),
        "date": day.isoformat(),
        "blobs": [{"name": n, "rows": r} for n, r in sorted(holdings.blobs.items())],
        "rows": sum(holdings.blobs.values()),
        "records": len(holdings.versions),
        "revisions": holdings.rows - len(holdings.versions),
        "setAside": [r.document() for r in set_aside],
    }


@dataclass
class _Batch:
    day: date
    lines: list[bytes] = field(default_factory=list)
    keys: list[tuple[str, Version]] = field(default_factory=list)
    size: int = 0


class RecordBlobs:
    """Whole records of one run, buffered per day and committed in blobs of at most
    ``RECORDS_PER_BLOB`` records or about ``BLOB_BYTES`` bytes, each under a name unique to
    the run; ``flush`` commits what is buffered and waits for every commit under way."""

    def __init__(
        self,
        store: BlobStore,
        lane: Lane,
        run_id: str,
        metadata: dict[str, str],
        confirm_lease: Callable[[], Awaitable[None]],
        on_commit: Callable[[date, str, dict[str, str]], None],
    ) -> None:
        self._store = store
        self._lane = lane
        self._run_id = run_id
        self._metadata = metadata
        self._confirm_lease = confirm_lease
        self._on_commit = on_commit
        self._batches: dict[date, _Batch] = {}
        self._committing: set[asyncio.Task[None]] = set()
        self._failed: BaseException | None = None
        self._number = 0

    @property
    def buffered(self) -> int:
        """Bytes of records held in memory, not yet committed."""
        return sum(b.size for b in self._batches.values())

    async def add(self, day: date, key: str, version: Version, line: bytes) -> None:
        """Buffer one record's line for ``day``; commit the day's batch once it is full."""
        batch = self._batches.setdefault(day, _Batch(day))
        batch.lines.append(line)
        batch.keys.append((key, version))
        batch.size += len(line) + 1
        if len(batch.keys) >= RECORDS_PER_BLOB or batch.size >= BLOB_BYTES:
            del self._batches[day]
            await self._start(batch)

    async def flush(self) -> None:
        """Commit every batch buffered, and wait until every commit started has landed
        (raising the first failure)."""
        batches, self._batches = list(self._batches.values()), {}
        for batch in batches:
            await self._start(batch)
        await self._landed(asyncio.ALL_COMPLETED)

    async def abort(self) -> None:
        """Stop commits under way and drop what is buffered (a cancelled run)."""
        self._batches.clear()
        for task in self._committing:
            task.cancel()
        await asyncio.gather(*self._committing, return_exceptions=True)
        self._committing.clear()

    async def _start(self, batch: _Batch) -> None:
        while len(self._committing) >= COMMITS_UNDER_WAY:
            await self._landed(asyncio.FIRST_COMPLETED)
        self._landed_now()
        self._committing.add(asyncio.create_task(self._commit(batch)))

    async def _landed(self, when: str) -> None:
        """Wait for the first (or every) commit under way to land; raise a failure."""
        if self._committing:
            await asyncio.wait(self._committing, return_when=when)
        self._landed_now()

    def _landed_now(self) -> None:
        """Forget the commits that landed; raise the first that failed, now and at every
        later add and flush: the records it held were never saved, and nothing may pass
        them (the run fails, and the next one reads them again)."""
        for task in [t for t in self._committing if t.done()]:
            self._committing.discard(task)
            failure = None if task.cancelled() else task.exception()
            self._failed = self._failed or failure
        if self._failed is not None:
            raise self._failed

    async def _commit(self, batch: _Batch) -> None:
        self._number += 1
        name = records_blob_name(self._lane, batch.day, self._run_id, self._number)
        extra = {RECORDS_META: versions_text(batch.keys)}
        await self.commit(batch.day, name, batch.lines, extra)

    async def commit(
        self, day: date, name: str, lines: list[bytes], metadata: dict[str, str]
    ) -> None:
        """Commit ``lines`` as blob ``name`` of ``day`` (a name of this run's own)."""
        writer = self._store.writer(name)
        await writer.write_lines(lines)
        await self._confirm_lease()  # a run that lost its lane writes nothing more
        metadata = {**self._metadata, "rows": str(len(lines)), **metadata}
        if await writer.commit(metadata) is not None:
            raise RuntimeError(f"{name} exists already: run ids must be unique")
        self._on_commit(day, name, metadata)

    def part_rows(
        self, day: date, key: str, version: Version, relation: str, before: PartProgress
    ) -> PartRows:
        """A writer of one relation's rows of a large record, going on from ``before``."""
        return PartRows(self, day, key, version, relation, before)

    def next_name(self, day: date, relation: str) -> str:
        """A new blob name of this run for a large record's ``relation`` rows."""
        self._number += 1
        return part_rows_name(self._lane, day, relation, self._run_id, self._number)


class PartRows:
    """One relation's rows of one large record (sessions, participants), each with
    ``callRecordId`` and ``callRecordVersion`` first, committed every ``PART_BYTES`` with
    the nextLink to go on from, so that a later run continues where this one stopped."""

    def __init__(
        self,
        blobs: RecordBlobs,
        day: date,
        key: str,
        version: Version,
        relation: str,
        before: PartProgress,
    ) -> None:
        self._blobs = blobs
        self._day = day
        self._key = key
        self._version = version
        self._relation = relation
        self.progress = PartProgress(before.rows, before.pages, before.next)
        self._lines: list[bytes] = []
        self._size = 0

    @property
    def buffered(self) -> int:
        """Bytes of rows not committed yet."""
        return self._size

    async def add(self, items: list[Any], next_link: str | None) -> None:
        """Add one page's ``items``; ``next_link``: the page after it (None: the last)."""
        head = {"callRecordId": self._key, "callRecordVersion": self._version}
        for item in items:
            line = orjson.dumps({**head, **item} if isinstance(item, dict) else item)
            if b"@odata.nextLink" in line:
                raise GraphDataError(
                    f"call record {self._key} {self._relation}: a nextLink was left unfollowed"
                )
            self._lines.append(line)
            self._size += len(line) + 1
        self.progress.pages += 1
        self.progress.next = next_link
        if self._size >= PART_BYTES or (next_link is None and self._lines):
            await self.commit()

    async def commit(self) -> None:
        """Commit the rows buffered (nothing when none are)."""
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        self.progress.rows += len(lines)
        await self._blobs.commit(
            self._day,
            self._blobs.next_name(self._day, self._relation),
            lines,
            {
                "callRecord": self._key,
                "version": "" if self._version is None else str(self._version),
                "relation": self._relation,
                "pages": str(self.progress.pages),
                "next": self.progress.next or "",
            },
        )
