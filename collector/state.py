"""A source's progress and its lease, kept in one ETag-guarded state blob.

``watermark``: the first instant not yet read at all. ``settled``: every instant before it
was re-read after the lateness horizon and is final. ``pending``: the windows being written
(several may be in flight); a run that dies leaves them set, and the next run reads exactly
those provisional windows again, so their blobs (same names) are replaced rather than joined
by overlapping ones. ``owner`` and
``leaseUntil``: the run that may write this source now (a lease that lapses by itself when
that run dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .blobstore import BlobStore
from .errors import SourceBusyError, StateConflictError
from .layout import state_blob_name
from .sources import Source
from .timefmt import format_instant, parse_instant
from .windows import Window

log = logging.getLogger("collector.state")

PROVISIONAL = "provisional"
SETTLE = "settle"


@dataclass(frozen=True)
class Pending:
    """A window whose blobs may be partly written: ``kind`` is provisional or settle.

    ``committed``: the window's blobs are all committed, but the watermark cannot pass it
    yet (an earlier window is unfinished); a later run need not read it again.
    """

    kind: str
    window: Window
    committed: bool = False


@dataclass(frozen=True)
class SourceState:
    """What the state blob says about one source."""

    watermark: datetime | None = None
    settled: datetime | None = None
    pending: tuple[Pending, ...] = ()
    owner: str | None = None
    lease_until: float | None = None
    rows_per_day: float | None = None
    """How many rows a day of this source holds, as last measured (None: not yet known);
    runs size the work they take on by it."""


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else format_instant(moment)


def _instant(text: str | None) -> datetime | None:
    return None if text is None else parse_instant(text)


def state_to_document(source: Source, state: SourceState) -> dict[str, Any]:
    """Return the JSON document stored for ``state``."""
    return {
        "source": source.name,
        "watermark": _stamp(state.watermark),
        "settled": _stamp(state.settled),
        "pending": [
            {
                "kind": p.kind,
                "start": format_instant(p.window.start),
                "end": format_instant(p.window.end),
                **({"committed": True} if p.committed else {}),
            }
            for p in state.pending
        ],
        "rowsPerDay": state.rows_per_day,
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
    pending = document.get("pending") or []
    if isinstance(pending, dict):  # written before several windows could be in flight
        pending = [pending]
    lease = _instant(document.get("leaseUntil"))
    return SourceState(
        watermark=_instant(document.get("watermark")),
        settled=_instant(document.get("settled")),
        pending=tuple(
            Pending(
                p.get("kind", PROVISIONAL),
                Window(parse_instant(p["start"]), parse_instant(p["end"])),
                p.get("committed") is True,
            )
            for p in pending
        ),
        owner=document.get("owner"),
        lease_until=None if lease is None else lease.timestamp(),
        rows_per_day=_rate(document.get("rowsPerDay")),
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


_Change = Callable[[SourceState], dict[str, Any]]
_Queued = tuple[_Change, "asyncio.Future[SourceState]"]


class SourceLease:
    """One run's exclusive, self-renewing right to collect one source.

    Every state change goes through ``update``, conditional on the blob's ETag; a background
    task renews the lease every third of its length. If another run took the source over
    (this run stalled past its lease), the next ``update`` raises ``StateConflictError``.
    """

    def __init__(
        self,
        store: BlobStore,
        source: Source,
        run_id: str,
        seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._source = source
        self._name = state_blob_name(source)
        self._run_id = run_id
        self._seconds = seconds
        self._clock = clock
        self._etag: str | None = None
        self._lock = asyncio.Lock()
        self._lost: BaseException | None = None
        self._queue: list[_Queued] = []
        self._confirmed = -math.inf
        """``time.monotonic()`` when a write last proved the lease ours (taken before it)."""
        self.state = SourceState()

    async def acquire(self) -> SourceState:
        """Take the lease, or raise ``SourceBusyError`` while another run holds it."""
        document, self._etag = await self._store.read_json(self._name)
        current = state_from_document(document)
        now = self._clock()
        if current.owner not in (None, self._run_id) and (current.lease_until or 0) > now:
            until = datetime.fromtimestamp(current.lease_until or 0, UTC)
            raise SourceBusyError(
                f"{self._source.name} is being collected by run {current.owner} "
                f"(lease until {format_instant(until.replace(microsecond=0))}; a crashed run's "
                "lease lapses by itself)"
            )
        self.state = current
        try:
            return await self.update()
        except StateConflictError:
            raise SourceBusyError(
                f"{self._source.name}: another run took the lease at the same moment"
            ) from None

    async def confirm(self) -> None:
        """Make sure the lease is still ours before an irreversible step (a commit, a delete).

        No other run can take the source over before the lease lapses, so a write that
        renewed it less than a third of its length ago is proof enough; otherwise this writes
        (raising ``StateConflictError`` if another run took over). Windows that finish
        together then share one write instead of queueing one each.
        """
        if self._lost is None and time.monotonic() - self._confirmed < self._seconds / 3:
            return
        await self.update()

    async def update(self, **changes: Any) -> SourceState:
        """Apply ``changes`` to the state, renew the lease and write it conditionally."""
        return await self.apply(lambda _: changes)

    async def apply(self, change: _Change) -> SourceState:
        """Like ``update``, with the changes computed from the current state under the lock
        (so concurrent windows never write a stale pending list).

        Shielded: when the window that asked is cancelled (another window failed), the write
        still finishes and its new ETag is kept; cut off halfway, storage could hold the
        write while this object kept the old ETag, and every later write would conflict.
        """
        return await asyncio.shield(self._apply(change))

    async def _apply(self, change: _Change) -> SourceState:
        # Group commit: changes queued while a write is in flight go out together in the
        # next write, so windows finishing at once cost one state write, not one each.
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
        if self._lost is not None:
            raise StateConflictError(f"lost the lease of {self._source.name}") from self._lost
        new = self.state
        for change, _ in batch:
            new = replace(new, **change(new))
        new = replace(new, owner=self._run_id, lease_until=self._clock() + self._seconds)
        document = state_to_document(self._source, new)
        began = time.monotonic()
        try:
            self._etag = await self._store.write_json(self._name, document, self._etag)
        except StateConflictError as exc:
            # The storage client retries a write whose answer was lost; if the first try
            # had landed, the retry conflicts with our own write: then it is not a loss.
            landed, etag = await self._store.read_json(self._name)
            if not _same_state(landed, document):
                self._lost = exc
                raise
            self._etag = etag
        self.state = new
        self._confirmed = began
        return new

    async def release(self) -> None:
        """Give the lease up so the next run need not wait for it to lapse."""
        async with self._lock:
            if self._lost is not None:
                return
            new = replace(self.state, owner=None, lease_until=None)
            try:
                self._etag = await self._store.write_json(
                    self._name, state_to_document(self._source, new), self._etag
                )
            except StateConflictError:
                # A write whose answer was lost may have landed: if the blob still names
                # this run, it is ours to release.
                document, etag = await self._store.read_json(self._name)
                landed = state_from_document(document)
                if landed.owner != self._run_id:
                    raise
                new = replace(landed, owner=None, lease_until=None)  # keep what landed
                self._etag = await self._store.write_json(
                    self._name, state_to_document(self._source, new), etag
                )
            self.state = new

    async def _renew_until(self, stop: asyncio.Event) -> None:
        # Waits on an event rather than being cancelled, so a renewal write is never cut
        # off halfway (its new ETag would be lost and the release would then fail).
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._seconds / 3)
            if stop.is_set():
                return
            try:
                await self.update()
            except StateConflictError:
                return  # another run owns the source now; the main task's next update fails
            except Exception as exc:  # transient: the lease still runs, try again next time
                log.warning("%s: lease renewal failed, retrying: %s", self._source.name, exc)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[SourceLease]:
        """Acquire, keep renewed while the block runs, and release at the end."""
        await self.acquire()
        stop = asyncio.Event()
        renewer = asyncio.create_task(self._renew_until(stop))
        try:
            yield self
        finally:
            stop.set()
            await renewer
            try:
                await self.release()
            except Exception as exc:  # the lease then lapses by itself
                log.warning("%s: could not release the lease: %s", self._source.name, exc)
