"""Revisits of call-record days: at each of ``CALL_RECORDS_REVISIT_DAYS`` after a day ended
(the latest due, never one the day's first read had reached), the day is listed again (a
request per 60 records) and only records with a version the day lacks are read
(``record_reads``), archived beside the earlier versions (append-only) and named in a revisit
manifest, with the records still set aside and those recovered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..archive.blobstore import BlobStore
from ..archive.layout import (
    is_day_manifest,
    manifest_name,
    manifest_prefix,
    revisit_manifest_name,
    revisit_of,
)
from ..archive.records import day_manifest
from ..archive.state import SetAside, SourceState, StateBlob
from ..core.lanes import Lane
from ..core.settings import Settings
from ..core.slices import day_start, due_revisit, graph_has_whole
from ..core.timefmt import format_instant, parse_instant
from ..core.windows import Window
from ..observe.reports import SourceReport
from .record_reads import Listing, RecordReads

log = logging.getLogger("collector")


class Revisits:
    """The revisits one run makes (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        now: datetime,
        lane: Lane,
        store: BlobStore,
        state_blob: StateBlob,
        report: SourceReport,
        reads: RecordReads,
        out_of_time: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._now = now
        self._lane = lane
        self._store = store
        self._state_blob = state_blob
        self._report = report
        self._reads = reads
        self._out_of_time = out_of_time

    async def run(self) -> None:
        """Make every revisit due, oldest day first (the nearest to Graph's edge)."""
        ages = self._settings.revisit_days
        settled = self._state_blob.current.settled
        if not ages or settled is None:
            return
        names = await self._store.list_with_metadata(manifest_prefix(self._lane))
        final = {date.fromisoformat(n.rsplit("/", 1)[-1][:10]) for n in names if is_day_manifest(n)}
        done: dict[date, set[int]] = {}
        for name in names:
            if (found := revisit_of(name)) is not None:
                done.setdefault(found[0], set()).add(found[1])
        history = self._lane.source.history
        # A day is revisited while Graph has deleted none of it.
        kept = [d for d in final if graph_has_whole(d, self._now, history) and d < settled.date()]
        for day in sorted(kept):
            if due_revisit(day, self._now, self._settings.lag, ages, done.get(day, ())) is None:
                continue
            # Due by the clock; and not older than the day's first read (its manifest says)?
            first, _ = await self._store.read_json(manifest_name(self._lane, day))
            read = parse_instant(first["readAsOf"]) if first and "readAsOf" in first else None
            age = due_revisit(day, self._now, self._settings.lag, ages, done.get(day, ()), read)
            if age is None:
                continue
            if self._out_of_time():
                return
            earlier = [n for n in names if (r := revisit_of(n)) is not None and r[0] == day]
            await self._revisit(day, age, [first or {}, *[await self._read(n) for n in earlier]])

    async def _read(self, name: str) -> dict[str, Any]:
        document, _ = await self._store.read_json(name)
        return document or {}

    async def _revisit(self, day: date, age: int, manifests: list[dict[str, Any]]) -> None:
        """List ``day`` again and read the records with a version it lacks; then write the
        revisit's manifest (the blobs no earlier of the day's ``manifests`` lists: those of
        this revisit, and of one stopped before its manifest) and update the records set
        aside."""
        start = day_start(day)
        piece = Listing(Window(start, start + timedelta(days=1)))
        before = await self._reads.day(day)
        known = {k: set(v) for k, v in before.versions.items()}
        blobs_before = {
            entry["name"] for m in manifests for entry in m.get("blobs", []) + m.get("added", [])
        }
        await self._reads.list_into(piece)
        if not piece.listed:
            return  # out of time: the next run lists the day again
        await piece.complete.wait()
        await self._reads.blobs.flush()
        if self._reads.failure is not None:
            return  # the run fails: the next one makes this revisit
        holdings = await self._reads.reload(day)
        earlier = {r.id: r for r in self._state_blob.current.set_aside if r.day == day}
        recovered = [r for r in earlier.values() if r.id in holdings.versions]
        prior = {r.id: r.attempts for r in earlier.values()}
        failing = [
            SetAside(r.id, day, r.version, r.error, r.attempts + prior.get(r.id, 0))
            for r in piece.set_aside
        ]
        # Set aside before and not listed now: Graph has it no more; named here, not retried.
        failed = {r.id for r in failing}
        unlisted = [
            r for r in earlier.values() if r.id not in holdings.versions and r.id not in failed
        ]
        still = [*failing, *unlisted]
        added = {n: r for n, r in holdings.blobs.items() if n not in blobs_before}
        document = day_manifest(self._lane, day, holdings, still)
        document.update(
            {
                "pass": "revisit",
                "ageDays": age,
                "listed": piece.rows,
                "added": [{"name": n, "rows": r} for n, r in sorted(added.items())],
                "addedRows": sum(added.values()),
                "revised": sum(
                    1 for k in holdings.versions if k in known and holdings.versions[k] != known[k]
                ),
                "appeared": sum(1 for k in holdings.versions if k not in known),
                "recovered": [r.id for r in recovered],
                "revisitedAt": format_instant(datetime.now(UTC).replace(microsecond=0)),
            }
        )
        self._report.changed_rows += document["revised"]
        self._report.late_rows += document["appeared"]
        await self._store.create_json(revisit_manifest_name(self._lane, day, age), document)
        last = age == max(self._settings.revisit_days)

        def update(st: SourceState) -> dict[str, Any]:
            # After the last revisit nothing tries a record again: its manifest names it.
            kept = [] if last else failing
            return {"set_aside": (*(r for r in st.set_aside if r.day != day), *kept)}

        await self._state_blob.apply(update)
        log.info(
            "%s: revisited %s at %d days: %d listed, %d revised, %d appeared, %d still set aside",
            self._lane.name,
            day,
            age,
            piece.rows,
            document["revised"],
            document["appeared"],
            len(still),
        )
