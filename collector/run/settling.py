"""Settling days: reading them again once the lateness horizon has passed, writing only the
rows no blob of the day holds yet, and marking each day final with its manifest.

Nothing archived is rewritten or deleted: a day's provisional ``part-*`` blobs stay, the
rows Graph added since (late rows) go into one new ``settle-<date>.jsonl`` (none if there are
none; on a first backfill it holds the whole day), and the manifest lists every data blob of
the day. Each step is recognised when redone: a day with a manifest is final, and a day
whose settle blob is committed only lacks its manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..archive.blobstore import BlobStore
from ..archive.layout import (
    day_prefix,
    is_collector_blob,
    manifest_name,
    part_blob_name,
    settle_blob_name,
)
from ..archive.partitions import CommittedBlob
from ..core.keyindex import KeyIndex, Seen
from ..core.lanes import Lane
from ..core.rows import key_of_line
from ..core.timefmt import format_instant
from ..core.windows import Window, window_days

log = logging.getLogger("collector")

LOGGED_CHANGED_KEYS = 10
"""Keys of rows that came back changed, logged and kept in the manifest per day (all are
counted): a property Graph adds to every row would otherwise log a whole day."""


@dataclass
class DaySettle:
    """One day of a settle window: what it held, and what the settle read found."""

    day: date
    index: KeyIndex | None
    """The rows archived for the day; None when nothing is to be written for it."""
    final: bool = False
    """The day has its manifest already (an earlier attempt finished it)."""
    late: int = 0
    changed: int = 0
    changed_keys: list[str] = field(default_factory=list)
    gone: int = 0


class Settlement:
    """The settle pass over the days of one window."""

    def __init__(self, store: BlobStore, lane: Lane, window: Window) -> None:
        self._store = store
        self._lane = lane
        self._window = window
        self.days: dict[date, DaySettle] = {}

    @property
    def needs_read(self) -> bool:
        """True when some day still needs its rows from Graph."""
        return any(d.index is not None for d in self.days.values())

    async def prepare(self) -> bool:
        """Find, per day, whether it is final, only lacks its manifest, or needs reading;
        for the latter, index the rows its blobs hold. Return whether Graph must be read."""
        for day in window_days(self._window):
            document, _ = await self._store.read_json(manifest_name(self._lane, day))
            if document is not None:
                self.days[day] = DaySettle(day, None, final=True)
                continue
            listed = await self._listed(day)
            settle_blob = listed.get(settle_blob_name(self._lane, day))
            if settle_blob is not None:
                # Written by an earlier attempt: its counts are in its metadata.
                self.days[day] = DaySettle(
                    day,
                    None,
                    late=int(settle_blob.get("rows", "0")),
                    changed=int(settle_blob.get("changedRows", "0")),
                    gone=int(settle_blob.get("goneRows", "0")),
                )
                continue
            index = KeyIndex()
            for name in sorted(listed):
                async for line in self._store.read_lines(name):
                    index.add(key_of_line(self._lane.source, line), line)
            self.days[day] = DaySettle(day, index)
        return self.needs_read

    async def _listed(self, day: date) -> dict[str, dict[str, str]]:
        """The collector's data blobs of ``day`` with their metadata."""
        listed = await self._store.list_with_metadata(day_prefix(self._lane, day))
        return {name: meta for name, meta in listed.items() if is_collector_blob(name)}

    def name_for(self, day: date) -> str:
        """The blob a settle read writes a day's rows to."""
        if day in self.days:
            return settle_blob_name(self._lane, day)
        # Rows outside the window (not expected from Graph) keep a window-named blob, so
        # they never take the name of another day's settle blob.
        return part_blob_name(self._lane, day, self._window)

    def keep(self, day: date, keys: list[str], lines: list[bytes]) -> list[bytes]:
        """The lines of a page to write for ``day``: the rows its blobs do not hold yet."""
        settling = self.days.get(day)
        if settling is None:
            return lines
        index = settling.index
        if index is None:
            return []
        kept = []
        for key, line in zip(keys, lines, strict=True):
            seen = index.check(key, line)
            if seen is Seen.NEW:
                kept.append(line)
            elif seen is Seen.CHANGED:
                settling.changed += 1
                if len(settling.changed_keys) < LOGGED_CHANGED_KEYS:
                    settling.changed_keys.append(key)
                    log.warning(
                        "%s: row %s of %s came back with other content; the archived one is kept",
                        self._lane.name,
                        key,
                        day,
                    )
        settling.late += len(kept)
        return kept

    def late_rows(self, committed: list[CommittedBlob]) -> int:
        """The late rows this settle read wrote (not those of blobs another attempt wrote)."""
        if self._lane.source.read_once:  # no provisional blobs: nothing is late
            return 0
        return sum(b.rows for b in committed if b.created and b.day in self.days)

    def blob_metadata(self, day: date) -> dict[str, str]:
        """What a day's settle blob records besides its rows, so that a redo that finds it
        committed can still write the day's manifest."""
        settling = self.days.get(day)
        if settling is None or settling.index is None:
            return {}
        settling.gone = settling.index.unseen
        return {"changedRows": str(settling.changed), "goneRows": str(settling.gone)}

    async def finish(self, committed: list[CommittedBlob], lateness: timedelta) -> int:
        """Write the manifest of every day not final yet; return how many days this was."""
        for blob in committed:
            settling = self.days.get(blob.day)
            if settling is not None and not blob.created:
                settling.late = blob.rows  # another attempt's settle blob stands
        marked = 0
        for settling in self.days.values():
            if settling.final:
                continue
            if settling.index is not None:
                settling.gone = settling.index.unseen
            listed = await self._listed(settling.day)
            blobs = {name: int(meta.get("rows", "0")) for name, meta in listed.items()}
            document = manifest_document(
                self._lane, self._window, settling, blobs, lateness, datetime.now(UTC)
            )
            name = manifest_name(self._lane, settling.day)
            if not await self._store.create_json(name, document):
                log.info(
                    "%s: %s is final already (another attempt wrote it)", self._lane.name, name
                )
            marked += 1
        return marked


def manifest_document(
    lane: Lane,
    window: Window,
    settled: DaySettle,
    blobs: dict[str, int],
    lateness: timedelta,
    now: datetime,
) -> dict[str, Any]:
    """Return the manifest of a settled day: its data blobs with their row counts (every
    row of the day is in exactly one of them) and what the settle read found."""
    day = settled.day
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return {
        "source": lane.source.name,
        **({"tenant": lane.tenant} if lane.tenant else {}),
        "date": day.isoformat(),
        "status": "settled",
        "blobs": [{"name": name, "rows": rows} for name, rows in sorted(blobs.items())],
        "rows": sum(blobs.values()),
        "lateRows": 0 if lane.source.read_once else settled.late,
        "changedRows": settled.changed,
        "changedKeys": settled.changed_keys,
        "goneRows": settled.gone,
        "coveredFrom": format_instant(max(day_start, window.start)),
        "coveredTo": format_instant(min(day_start + timedelta(days=1), window.end)),
        "settledAt": format_instant(now.replace(microsecond=0)),
        "lateness": f"PT{int(lateness.total_seconds() // 3600)}H",
    }
