"""The state blob and the source lease on Azurite: grouped state writes, and confirming
ownership cheaply."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

from collector.archive.blobstore import BlobStore
from collector.archive.lease import SourceLease
from collector.archive.state import PROVISIONAL, Claim, SourceState
from collector.core.errors import StateConflictError
from collector.core.lanes import Lane
from collector.core.sources import SOURCES
from collector.core.windows import Window
from devstack.azurite import Azurite

_names = itertools.count(1)
DAY = datetime(2026, 10, 20, tzinfo=UTC)


class CountingStore(BlobStore):
    """A blob store that counts state writes."""

    writes = 0

    async def write_json(self, name: str, document: Any, etag: str | None) -> str:
        self.writes += 1
        return await super().write_json(name, document, etag)


def run_with_lease(azurite: Azurite, seconds: float, body: Any) -> None:
    async def main() -> None:
        async with BlobServiceClient.from_connection_string(azurite.connection_string) as svc:
            store = CountingStore(svc.get_container_client(f"lease{next(_names)}"), 1024)
            await store.ensure_container()
            lease = SourceLease(store, Lane(SOURCES["sms"]), "run-1", seconds)
            await lease.acquire()
            await body(store, lease)

    asyncio.run(main())


def hour(n: int) -> Window:
    return Window(DAY + timedelta(hours=n), DAY + timedelta(hours=n + 1))


def test_changes_made_at_once_share_writes_and_none_is_lost(azurite: Azurite) -> None:
    def claim(n: int) -> Any:
        return lambda st: {"claims": (*st.claims, Claim(PROVISIONAL, hour(n)))}

    async def body(store: CountingStore, lease: SourceLease) -> None:
        store.writes = 0
        results = await asyncio.gather(*(lease.state_blob.apply(claim(n)) for n in range(12)))
        # Every caller sees a state holding its own change...
        for n, state in enumerate(results):
            assert Claim(PROVISIONAL, hour(n)) in state.claims
        # ...all twelve landed, in order, with fewer writes than changes.
        document, _ = await store.read_json("_state/sms.json")
        assert [p["start"] for p in document["claims"]] == [
            f"2026-10-20T{n:02d}:00:00Z" for n in range(12)
        ]
        assert 1 <= store.writes < 12, store.writes

    run_with_lease(azurite, 300, body)


def test_a_failed_grouped_write_fails_every_change_in_it(azurite: Azurite) -> None:
    def later(n: int) -> Any:
        return lambda _: {"watermark": DAY + timedelta(hours=n)}

    async def body(store: CountingStore, lease: SourceLease) -> None:
        # Another run takes the source over behind this lease's back.
        _, etag = await store.read_json("_state/sms.json")
        await store.write_json("_state/sms.json", {"source": "sms", "owner": "other"}, etag)
        outcomes = await asyncio.gather(
            *(lease.state_blob.apply(later(n)) for n in range(4)),
            return_exceptions=True,
        )
        assert all(isinstance(o, StateConflictError) for o in outcomes), outcomes
        with pytest.raises(StateConflictError):
            await lease.confirm()  # and the lease stays lost

    run_with_lease(azurite, 300, body)


def test_confirm_writes_only_when_the_last_proof_is_old(azurite: Azurite) -> None:
    async def body(store: CountingStore, lease: SourceLease) -> None:
        store.writes = 0
        await lease.confirm()  # the acquire just proved it
        assert store.writes == 0
        await asyncio.sleep(0.35)  # over a third of the 0.9 s lease
        await lease.confirm()
        assert store.writes == 1
        # Taken over after that: the next confirm that must write finds out.
        _, etag = await store.read_json("_state/sms.json")
        await store.write_json("_state/sms.json", {"source": "sms", "owner": "other"}, etag)
        await asyncio.sleep(0.35)
        with pytest.raises(StateConflictError):
            await lease.confirm()

    run_with_lease(azurite, 0.9, body)


def test_grouped_writes_keep_the_state_it_started_from(azurite: Azurite) -> None:
    async def body(store: CountingStore, lease: SourceLease) -> None:
        await lease.state_blob.apply(lambda _: {"watermark": DAY})
        both = await asyncio.gather(
            lease.state_blob.apply(lambda st: {"settled": st.watermark}),
            lease.state_blob.apply(
                lambda st: {"watermark": (st.watermark or DAY) + timedelta(hours=1)}
            ),
        )
        final: SourceState = both[-1]
        assert final.settled == DAY and final.watermark == DAY + timedelta(hours=1)
        assert lease.state_blob.current == final

    run_with_lease(azurite, 300, body)
