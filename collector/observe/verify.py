"""``python -m collector verify``: check every settled day against its manifest, from storage
only: the blobs it lists exist and hold the rows it counts, no other data blob is in the day's
folder, every row belongs to that day, and no key appears twice. One day in memory at a time
(its keys in a ``KeyIndex``), so a year of a large tenant stays flat.

With ``ARCHIVE_DELETE_AFTER_DAYS`` set, a day in the expiry zone (``windows.expiry_horizon``)
may have lost blobs to the archive's retention rule: a listed blob missing there is counted as
expired, not as a mismatch, and the blobs still present are checked as usual. A day whose
manifest the rule deleted is no longer a settled day to verify (its data blobs are older than
the manifest, so they go no later), and is not listed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
from azure.core.exceptions import ResourceNotFoundError

from ..archive.blobstore import BlobStore, open_store
from ..archive.layout import (
    day_prefix,
    is_collector_blob,
    is_day_manifest,
    is_part_rows_blob,
    manifest_day,
    manifest_name,
    manifest_prefix,
    revisit_of,
)
from ..archive.records import SPLIT
from ..core.errors import RowError
from ..core.keyindex import KeyIndex
from ..core.lanes import Lane
from ..core.rows import event_ticks, row_key
from ..core.settings import Settings
from ..core.timefmt import utc_date_of_ticks
from ..core.windows import expiry_horizon


@dataclass
class DayCheck:
    """What verifying one settled day found."""

    source: str
    day: date
    blobs: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    listed: int = 0
    """Data blobs the day's manifest lists."""
    expired: int = 0
    """Listed blobs missing from a day in the expiry zone: deleted by the retention rule."""
    revisions: int = 0
    """Rows that are a later version of a record another row holds (call records)."""
    set_aside: int = 0
    """Records the day's latest manifest names as set aside (call records)."""

    def line(self) -> str:
        """One line for the terminal."""
        head = f"{self.source} {self.day.isoformat()}: {self.blobs} blobs, {self.rows} rows"
        if self.revisions:
            head += f" ({self.revisions} revisions)"
        if self.set_aside:
            head += f", {self.set_aside} record(s) set aside (not archived)"
        gone = (
            f"expired ({self.expired} of {self.listed} blobs deleted by the retention rule)"
            if self.expired
            else ""
        )
        if self.problems:
            return f"{head}: {gone + ', ' if gone else ''}MISMATCH: " + "; ".join(self.problems)
        return f"{head}: {gone}, the rest ok" if gone else f"{head}: ok"


@dataclass
class Summary:
    """What verifying every day found, for the last line and the exit code."""

    ok: int = 0
    expired: int = 0
    """Days the retention rule took blobs of (the blobs left are sound)."""
    mismatched: int = 0
    expired_before: date | None = None
    """The expiry zone's end (None: no retention rule)."""
    delete_after_days: int | None = None
    """``ARCHIVE_DELETE_AFTER_DAYS``, named in the last line so the reader knows the zone's cause."""

    @property
    def sound(self) -> bool:
        """True when no day has a mismatch (expired days are as the retention rule left them)."""
        return not self.mismatched

    def add(self, check: DayCheck) -> None:
        """Count one day's verdict."""
        if check.problems:
            self.mismatched += 1
        elif check.expired:
            self.expired += 1
        else:
            self.ok += 1

    def line(self) -> str:
        """The last line for the terminal."""
        total = self.ok + self.expired + self.mismatched
        line = (
            f"verified {total} day(s): {self.ok} ok, {self.expired} expired, "
            f"{self.mismatched} with a mismatch"
        )
        if self.expired_before is None:
            return line
        return (
            f"{line}; days before {self.expired_before.isoformat()} are past "
            f"ARCHIVE_DELETE_AFTER_DAYS={self.delete_after_days}: the retention rule may have "
            "deleted them (a day without its manifest is not listed)"
        )


class SplitRows:
    """A day's rows of large (split) call records, held to the counts their records'
    lines give (``collectorSplit``)."""

    def __init__(self) -> None:
        self._rows: Counter[tuple[str, str, str]] = Counter()
        self._claims: dict[tuple[str, str], dict[str, int]] = {}

    def row(self, name: str, row: Any) -> str:
        """Count one relation row of blob ``name``; return its key."""
        relation = name.rsplit("/", 2)[-2]
        record = (str(row.get("callRecordId")), str(row.get("callRecordVersion")))
        self._rows[(*record, relation)] += 1
        return f"{record[0]}@{record[1]}/{relation}/{row.get('id')}"

    def record(self, key: str, row: Any) -> None:
        """Note a record's line: a split one names how many rows of each relation it has."""
        claim = row.get(SPLIT) if isinstance(row, dict) else None
        if isinstance(claim, dict):
            self._claims[(key, str(row.get("version")))] = claim

    def problems(self) -> list[str]:
        """Split records whose rows are not all there, or too many."""
        found = []
        for (key, version), claim in sorted(self._claims.items()):
            for relation, rows in sorted(claim.items()):
                held = self._rows.get((key, version, relation), 0)
                if held != rows:
                    found.append(
                        f"record {key} version {version} has {held} {relation} row(s), its "
                        f"line says {rows}"
                    )
        return found


async def verify(
    settings: Settings,
    first: date | None,
    last: date | None,
    report: Callable[[DayCheck], None],
    now: datetime,
) -> Summary:
    """Check every settled day of every lane in ``[first, last]`` as of ``now`` (which days
    the retention rule may have thinned); the summary says whether all are sound."""
    expired_before = expiry_horizon(now, settings.delete_after)
    summary = Summary(
        expired_before=expired_before,
        delete_after_days=None if settings.delete_after is None else settings.delete_after.days,
    )
    async with open_store(settings.storage, settings.container) as store:
        for lane in settings.lanes:
            manifests = await store.list_with_metadata(manifest_prefix(lane))
            days = sorted(manifest_day(name) for name in manifests if is_day_manifest(name))
            revisits: dict[date, list[str]] = {}
            for name in sorted(manifests):
                if (found := revisit_of(name)) is not None:
                    revisits.setdefault(found[0], []).append(name)
            for day in days:
                if (first and day < first) or (last and day > last):
                    continue
                expiring = expired_before is not None and day < expired_before
                check = await check_day(store, lane, day, expiring, revisits.get(day, []))
                if check is None:
                    continue
                report(check)
                summary.add(check)
    return summary


async def check_day(
    store: BlobStore,
    lane: Lane,
    day: date,
    expiring: bool = False,
    revisits: list[str] | None = None,
) -> DayCheck | None:
    """Check one settled day against its manifest and its ``revisits``' manifests, which
    list the blobs each revisit added (``expiring``: the day is in the expiry zone, where a
    listed blob may be missing because the retention rule deleted it). None: the rule deleted
    the day's manifest since it was listed (the rule may run while verify does)."""
    source = lane.source
    check = DayCheck(lane.name, day)
    manifest, _ = await store.read_json(manifest_name(lane, day))
    if manifest is None:
        if expiring:
            return None
        check.problems.append("its manifest was deleted while verify ran")
        return check
    listed: dict[str, int] = {b["name"]: int(b["rows"]) for b in manifest.get("blobs", [])}
    latest = manifest
    for name in revisits or []:
        revisit, _ = await store.read_json(name)
        if revisit is not None:
            listed.update({b["name"]: int(b["rows"]) for b in revisit.get("added", [])})
            latest = revisit
    check.set_aside = len(latest.get("setAside") or [])
    check.listed = len(listed)
    present = {
        n for n in await store.list_with_metadata(day_prefix(lane, day)) if is_collector_blob(n)
    }
    if expiring:
        # The rule deletes blobs, never adds or alters one: only "missing" is its doing; an
        # unlisted blob or a wrong count below is still a mismatch.
        check.expired = len(listed.keys() - present)
    else:
        for name in sorted(listed.keys() - present):
            check.problems.append(f"{name} is listed but missing")
    for name in sorted(present - listed.keys()):
        check.problems.append(f"{name} is not in the manifest")
    index = KeyIndex()
    records: set[str] = set()
    versions = 0
    split = SplitRows()
    elsewhere = 0
    for name in sorted(present):
        count = 0
        part_rows = is_part_rows_blob(name)
        try:
            async for line in store.read_lines(name):
                count += 1
                row = orjson.loads(line)
                if part_rows:  # a large record's session or participant: its record's day
                    index.add(split.row(name, row), line)
                    continue
                try:
                    key = row_key(source, row, count - 1)
                    if source.versioned:  # every version is archived: a row is both
                        records.add(key)
                        versions += 1
                        split.record(key, row)
                        key = f"{key}@{row.get('version')}"
                    # A daily report's rows carry no time: they belong to their folder's day.
                    if not source.daily_report:
                        elsewhere += utc_date_of_ticks(event_ticks(source, row, count - 1)) != day
                except RowError as exc:
                    check.problems.append(f"{name}: {exc}")
                    key = line.decode("utf-8", "replace")
                index.add(key, line)
        except ResourceNotFoundError:
            if not (expiring and name in listed):
                raise
            # Listed a moment ago, deleted by the rule since: expired like the ones before.
            check.expired += 1
            continue
        check.blobs += 1
        check.rows += count
        if name in listed and listed[name] != count:
            check.problems.append(f"{name} holds {count} rows, the manifest says {listed[name]}")
    check.revisions = versions - len(records)
    check.problems.extend(split.problems())
    own = sum(int(b["rows"]) for b in manifest.get("blobs", []))
    if manifest.get("rows") != own:
        check.problems.append(f"the manifest's total {manifest.get('rows')} is not its blobs' sum")
    if elsewhere:
        check.problems.append(f"{elsewhere} row(s) belong to another day's folder")
    if index.repeated:
        check.problems.append(f"{index.repeated} row(s) repeat a key")
    return check
