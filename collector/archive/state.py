"""A lane's state blob (one source of one tenant): its progress (and its lease's fields),
changed only by conditional writes.

``watermark``: the first instant not yet read at all. ``settled``: every day before it was
re-read after the lateness horizon and is final. ``claims``: the windows being written
(several may be in flight); a run that dies leaves them set, and the next run reads exactly
those provisional windows again, so its blobs have the same names as any the dead run
committed (and storage keeps the first). ``owner`` and ``leaseUntil``: the run that may
write this source now (a lease that lapses by itself when that run dies).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from ..core.errors import StateConflictError
from ..core.lanes import Lane
from ..core.timefmt import format_instant, parse_instant
from ..core.windows import Window
from .blobstore import BlobStore
from .layout import state_blob_name

PROVISIONAL = "provisional"
SETTLE = "settle"


@dataclass(frozen=True)
class Claim:
    """A window a run is writing (its blobs may be partly committed): ``kind`` is
    provisional or settle.

    ``committed``: the window's blobs are all committed, but the watermark cannot pass it
    yet (an earlier window is unfinished); a later run need not read it again.
    """

    kind: str
    window: Window
    committed: bool = False


@dataclass(frozen=True)
class SetAside:
    """A call record that failed every attempt of a read: its day went on without it. It is
    read again at the day's revisits while Graph keeps it, and named in the day's manifests
    and in ``status`` until then."""

    id: str
    day: date
    version: int | None
    """The version Graph listed when it was set aside."""
    error: str
    """The last attempt's error, one line."""
    attempts: int
    """Reads that failed, over every pass that tried it."""

    def document(self) -> dict[str, Any]:
        """The record as stored in the state and in manifests."""
        return {
            "id": self.id,
            "date": self.day.isoformat(),
            "version": self.version,
            "error": self.error,
            "attempts": self.attempts,
        }

    @classmethod
    def parse(cls, document: dict[str, Any]) -> SetAside:
        """The inverse of ``document``."""
        version = document.get("version")
        return cls(
            str(document["id"]),
            date.fromisoformat(document["date"]),
            version if isinstance(version, int) else None,
            str(document.get("error", "")),
            int(document.get("attempts", 0)),
        )


@dataclass(frozen=True)
class SourceState:
    """What the state blob says about one source."""

    watermark: datetime | None = None
    settled: datetime | None = None
    claims: tuple[Claim, ...] = ()
    owner: str | None = None
    lease_until: float | None = None
    rows_per_day: float | None = None
    """How many rows a day of this source holds, as last measured (None: not yet known);
    runs size the work they take on by it."""
    set_aside: tuple[SetAside, ...] = ()
    """Call records set aside and not archived since (``SetAside``)."""


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else format_instant(moment)


def _instant(text: str | None) -> datetime | None:
    return None if text is None else parse_instant(text)


def state_to_document(lane: Lane, state: SourceState) -> dict[str, Any]:
    """Return the JSON document stored for ``state``."""
    return {
        "source": lane.source.name,
        **({"tenant": lane.tenant} if lane.tenant else {}),
        "watermark": _stamp(state.watermark),
        "settled": _stamp(state.settled),
        "claims": [
            {
                "kind": c.kind,
                "start": format_instant(c.window.start),
                "end": format_instant(c.window.end),
                **({"committed": True} if c.committed else {}),
            }
            for c in state.claims
        ],
        "rowsPerDay": state.rows_per_day,
        **({"setAside": [r.document() for r in state.set_aside]} if state.set_aside else {}),
        "owner": state.owner,
        "leaseUntil": None
        if state.lease_until is None
        else format_instant(datetime.fromtimestamp(state.lease_until, UTC)),
        "updatedAt": format_instant(datetime.now(UTC)),
    }


def state_from_document(document: Any) -> SourceState:
    """Parse a stored state document (``None``: a source never collected)."""
    if document is None:
        return SourceState()
    lease = _instant(document.get("leaseUntil"))
    return SourceState(
        watermark=_instant(document.get("watermark")),
        settled=_instant(document.get("settled")),
        claims=tuple(
            Claim(
                c["kind"],
                Window(parse_instant(c["start"]), parse_instant(c["end"])),
                c.get("committed") is True,
            )
            for c in document.get("claims") or []
        ),
        owner=document.get("owner"),
        lease_until=None if lease is None else lease.timestamp(),
        rows_per_day=_rate(document.get("rowsPerDay")),
        set_aside=tuple(SetAside.parse(r) for r in document.get("setAside") or []),
    )


def _rate(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return float(value) if ok else None


def _same_state(a: Any, b: dict[str, Any]) -> bool:
    """True when two state documents say the same (their write times aside)."""
    if not isinstance(a, dict):
        return False
    return {k: v for k, v in a.items() if k != "updatedAt"} == {
        k: v for k, v in b.items() if k != "updatedAt"
    }


Change = Callable[["SourceState"], dict[str, Any]]
"""A change to a state, computed from the current one: the fields to replace."""
_Queued = tuple[Change, "asyncio.Future[SourceState]"]


class StateBlob:
    """One lane's state blob: read once, then changed only by writes conditional on its
    ETag, so a run that another run took the source over from cannot write it any more.

    Changes queued while a write is in flight go out together in the next one (windows that
    finish at once cost one write), and ``stamp`` adds what every write must carry (the
    lease's owner and expiry). After a conflict every later write fails: the blob is lost.
    """

    def __init__(
        self, store: BlobStore, lane: Lane, stamp: Callable[[SourceState], SourceState]
    ) -> None:
        self._store = store
        self._lane = lane
        self._name = state_blob_name(lane)
        self._stamp = stamp
        self._etag: str | None = None
        self._lock = asyncio.Lock()
        self._queue: list[_Queued] = []
        self.lost: BaseException | None = None
        """Why writes fail now: another run changed the blob first."""
        self.proved_at = -math.inf
        """``time.monotonic()`` when a write last succeeded (taken before it was sent)."""
        self.current = SourceState()
        """The state as last read or written."""

    async def load(self) -> SourceState:
        """Read the blob (a source never collected reads as an empty state)."""
        document, self._etag = await self._store.read_json(self._name)
        self.current = state_from_document(document)
        return self.current

    async def apply(self, change: Change) -> SourceState:
        """Apply ``change`` to the current state and write the result conditionally.

        Shielded: when the window that asked is cancelled (another window failed), the write
        still finishes and its new ETag is kept; cut off halfway, storage could hold the
        write while this object kept the old ETag, and every later write would conflict.
        """
        return await asyncio.shield(self._apply(change))

    async def _apply(self, change: Change) -> SourceState:
        done: asyncio.Future[SourceState] = asyncio.get_running_loop().create_future()
        self._queue.append((change, done))
        async with self._lock:
            if not done.done():
                batch, self._queue = self._queue, []
                try:
                    new = await self._write(batch)
                except BaseException as exc:
                    for _, waiting in batch:
                        waiting.set_exception(exc)
                else:
                    for _, waiting in batch:
                        waiting.set_result(new)
        return done.result()

    async def _write(self, batch: list[_Queued]) -> SourceState:
        """Apply ``batch``'s changes in order and write the result once (lock held)."""
        if self.lost is not None:
            raise StateConflictError(f"lost the state of {self._lane.name}") from self.lost
        new = self.current
        for change, _ in batch:
            new = replace(new, **change(new))
        new = self._stamp(new)
        document = state_to_document(self._lane, new)
        began = time.monotonic()
        try:
            self._etag = await self._store.write_json(self._name, document, self._etag)
        except StateConflictError as exc:
            # The storage client retries a write whose answer was lost; if the first try
            # had landed, the retry conflicts with our own write: then it is not a loss.
            landed, etag = await self._store.read_json(self._name)
            if not _same_state(landed, document):
                self.lost = exc
                raise
            self._etag = etag
        self.current = new
        self.proved_at = began
        return new

    async def write_last(self, change: Change, ours: Callable[[SourceState], bool]) -> None:
        """Write ``change`` unstamped, as the last write (giving the lease up). If the
        blob moved on because an earlier write's answer was lost, apply ``change`` to what
        landed, provided ``ours(landed)``; otherwise raise ``StateConflictError``."""
        async with self._lock:
            if self.lost is not None:
                return
            new = replace(self.current, **change(self.current))
            try:
                self._etag = await self._store.write_json(
                    self._name, state_to_document(self._lane, new), self._etag
                )
            except StateConflictError:
                document, etag = await self._store.read_json(self._name)
                landed = state_from_document(document)
                if not ours(landed):
                    raise
                new = replace(landed, **change(landed))  # keep what landed
                self._etag = await self._store.write_json(
                    self._name, state_to_document(self._lane, new), etag
                )
            self.current = new
