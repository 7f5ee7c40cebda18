"""A lane's lease: one live run at a time may collect a lane (one source of one tenant).

The lease lives in the source's state blob (``owner``, ``leaseUntil``): every state write
renews it, a background task renews it every third of its length while the run works, and
the run gives it up at the end. A run that dies leaves it to lapse by itself; a run that
stalled past it finds out at its next write, which conflicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime

from ..core.errors import SourceBusyError, StateConflictError
from ..core.lanes import Lane
from ..core.timefmt import format_instant
from .blobstore import BlobStore
from .state import SourceState, StateBlob

log = logging.getLogger("collector.lease")


class SourceLease:
    """One run's exclusive, self-renewing right to collect one source, and its state blob
    (``state_blob``), whose every write renews the lease."""

    def __init__(
        self,
        store: BlobStore,
        lane: Lane,
        run_id: str,
        seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lane = lane
        self._run_id = run_id
        self._seconds = seconds
        self._clock = clock
        self.state_blob = StateBlob(store, lane, self._stamp)

    def _stamp(self, state: SourceState) -> SourceState:
        return replace(state, owner=self._run_id, lease_until=self._clock() + self._seconds)

    async def acquire(self) -> SourceState:
        """Take the lease, or raise ``SourceBusyError`` while another run holds it."""
        current = await self.state_blob.load()
        if current.owner not in (None, self._run_id) and (current.lease_until or 0) > self._clock():
            until = datetime.fromtimestamp(current.lease_until or 0, UTC)
            raise SourceBusyError(
                f"{self._lane.name} is being collected by run {current.owner} "
                f"(lease until {format_instant(until.replace(microsecond=0))}; a crashed run's "
                "lease lapses by itself)"
            )
        try:
            return await self.state_blob.apply(lambda _: {})
        except StateConflictError:
            raise SourceBusyError(
                f"{self._lane.name}: another run took the lease at the same moment"
            ) from None

    async def confirm(self) -> None:
        """Make sure the lease is still ours before an irreversible step (a commit).

        No other run can take the source over before the lease lapses, so a write that
        renewed it less than a third of its length ago is proof enough; otherwise this writes
        (raising ``StateConflictError`` if another run took over). Windows that finish
        together then share one write instead of queueing one each.
        """
        blob = self.state_blob
        if blob.lost is None and time.monotonic() - blob.proved_at < self._seconds / 3:
            return
        await blob.apply(lambda _: {})

    async def release(self) -> None:
        """Give the lease up so the next run need not wait for it to lapse."""
        await self.state_blob.write_last(
            lambda _: {"owner": None, "lease_until": None},
            # A write whose answer was lost may have landed: if the blob still names this
            # run, the lease is still ours to give up.
            lambda landed: landed.owner == self._run_id,
        )

    async def _renew_until(self, stop: asyncio.Event) -> None:
        # Waits on an event rather than being cancelled, so a renewal write is never cut
        # off halfway (its new ETag would be lost and the release would then fail).
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._seconds / 3)
            if stop.is_set():
                return
            try:
                await self.state_blob.apply(lambda _: {})
            except StateConflictError:
                return  # another run owns the source now; the main task's next write fails
            except Exception as exc:  # transient: the lease still runs, try again next time
                log.warning("%s: lease renewal failed, retrying: %s", self._lane.name, exc)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[StateBlob]:
        """Acquire, keep renewed while the block runs, and release at the end; the block
        gets the state blob to change."""
        await self.acquire()
        stop = asyncio.Event()
        renewer = asyncio.create_task(self._renew_until(stop))
        try:
            yield self.state_blob
        finally:
            stop.set()
            await renewer
            try:
                await self.release()
            except Exception as exc:  # the lease then lapses by itself
                log.warning("%s: could not release the lease: %s", self._lane.name, exc)
