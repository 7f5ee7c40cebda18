"""``python -m collector verify``: check every settled day against its manifest, from storage
only: the blobs it lists exist and hold the rows it counts, no other data blob is in the day's
folder, every row belongs to that day, and no key appears twice. One day in memory at a time
(its keys in a ``KeyIndex``), so a year of a large tenant stays flat."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import orjson

from .blobstore import BlobStore, open_store
from .errors import RowError
from .keyindex import KeyIndex
from .lanes import Lane
from .layout import day_prefix, is_collector_blob, manifest_day, manifest_name, manifest_prefix
from .rows import event_ticks, row_key
from .settings import Settings
from .timefmt import utc_date_of_ticks


@dataclass
class DayCheck:
    """What verifying one settled day found."""

    source: str
    day: date
    blobs: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the terminal."""
        head = f"{self.source} {self.day.isoformat()}: {self.blobs} blobs, {self.rows} rows"
        return (
            f"{head}: ok" if not self.problems else f"{head}: MISMATCH: " + "; ".join(self.problems)
        )


async def verify(
    settings: Settings,
    first: date | None,
    last: date | None,
    report: Callable[[DayCheck], None],
) -> bool:
    """Check every settled day of every lane in ``[first, last]``; True when all are sound."""
    sound = True
    async with open_store(settings.storage, settings.container) as store:
        for lane in settings.lanes:
            manifests = await store.list_with_metadata(manifest_prefix(lane))
            days = sorted(manifest_day(name) for name in manifests)
            for day in days:
                if (first and day < first) or (last and day > last):
                    continue
                check = await check_day(store, lane, day)
                report(check)
                sound = sound and not check.problems
    return sound


async def check_day(store: BlobStore, lane: Lane, day: date) -> DayCheck:
    """Check one settled day against its manifest."""
    source = lane.source
    check = DayCheck(lane.name, day)
    manifest, _ = await store.read_json(manifest_name(lane, day))
    listed: dict[str, int] = {b["name"]: int(b["rows"]) for b in manifest.get("blobs", [])}
    present = {
        n for n in await store.list_with_metadata(day_prefix(lane, day)) if is_collector_blob(n)
    }
    for name in sorted(listed.keys() - present):
        check.problems.append(f"{name} is listed but missing")
    for name in sorted(present - listed.keys()):
        check.problems.append(f"{name} is not in the manifest")
    index = KeyIndex()
    elsewhere = 0
    for name in sorted(present):
        count = 0
        async for line in store.read_lines(name):
            count += 1
            row = orjson.loads(line)
            try:
                key = row_key(source, row, count - 1)
                # A daily report's rows carry no time: they belong to their folder's day.
                if not source.daily_report:
                    elsewhere += utc_date_of_ticks(event_ticks(source, row, count - 1)) != day
            except RowError as exc:
                check.problems.append(f"{name}: {exc}")
                key = line.decode("utf-8", "replace")
            index.add(key, line)
        check.blobs += 1
        check.rows += count
        if name in listed and listed[name] != count:
            check.problems.append(f"{name} holds {count} rows, the manifest says {listed[name]}")
    if manifest.get("rows") != sum(listed.values()):
        check.problems.append(f"the manifest's total {manifest.get('rows')} is not its blobs' sum")
    if elsewhere:
        check.problems.append(f"{elsewhere} row(s) belong to another day's folder")
    if index.repeated:
        check.problems.append(f"{index.repeated} row(s) repeat a key")
    return check
