"""Blob writing and state on Azurite: atomic blobs, bounded buffers, conditional state."""

from __future__ import annotations

import asyncio
import itertools
from datetime import date
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient

from collector.archive.blobstore import BlobStore
from collector.archive.partitions import PartitionWriter
from collector.core.errors import StateConflictError
from devstack.azurite import Azurite

_names = itertools.count(1)


class InspectableStore(BlobStore):
    """The store, with what tests look at."""

    async def list_names(self, prefix: str = "") -> list[str]:
        """The names of all blobs under ``prefix``, sorted."""
        return sorted([b.name async for b in self._container.list_blobs(name_starts_with=prefix)])

    async def read_bytes(self, name: str) -> bytes:
        """A blob's content."""
        downloader = await self._container.get_blob_client(name).download_blob()
        return await downloader.readall()


async def _with_store(azurite: Azurite, block_size: int, body: Any) -> None:
    async with AsyncBlobServiceClient.from_connection_string(azurite.connection_string) as service:
        store = InspectableStore(service.get_container_client(f"store{next(_names)}"), block_size)
        await store.ensure_container()
        await store.ensure_container()  # idempotent
        await body(store)


def test_blob_appears_only_when_committed_and_buffers_stay_small(azurite: Azurite) -> None:
    lines = [f'{{"id":"{i}","note":"ünïcode"}}'.encode() for i in range(3_000)]
    seen: dict[str, object] = {}

    async def body(store: InspectableStore) -> None:
        writer = store.writer("src/year=2026/month=01/day=01/part-x.jsonl")
        for start in range(0, len(lines), 500):
            await writer.write_lines(lines[start : start + 500])
            assert len(writer._buffer) < 16 * 1024  # staged as it goes, never the whole blob
        assert await store.list_names("src/") == []  # staged blocks are invisible
        await writer.commit({"rows": str(writer.lines)})
        seen["names"] = await store.list_names("src/")
        seen["data"] = await store.read_bytes("src/year=2026/month=01/day=01/part-x.jsonl")
        client = store._container.get_blob_client("src/year=2026/month=01/day=01/part-x.jsonl")
        committed, _ = await client.get_block_list("committed")
        seen["blocks"] = len(committed)

    asyncio.run(_with_store(azurite, 16 * 1024, body))
    assert seen["names"] == ["src/year=2026/month=01/day=01/part-x.jsonl"]
    assert seen["data"] == b"\n".join(lines) + b"\n"
    assert isinstance(seen["blocks"], int) and seen["blocks"] >= 5


def test_a_committed_blob_is_never_replaced_by_a_second_writer(azurite: Azurite) -> None:
    result: dict[str, Any] = {}

    async def body(store: InspectableStore) -> None:
        a, b = store.writer("x.jsonl"), store.writer("x.jsonl")
        await a.write_lines([b"a"] * 10)
        await b.write_lines([b"b"] * 20)
        assert await a.commit({"rows": "10"}) is None  # created
        # Storage refuses the second commit (If-None-Match: *); b learns what is there.
        result["existing"] = await b.commit({"rows": "20"})
        late = store.writer("x.jsonl")  # a redo long after, e.g. a run that stalled
        await late.write_lines([b"c"])
        result["late"] = await late.commit({"rows": "1"})
        result["data"] = await store.read_bytes("x.jsonl")

    asyncio.run(_with_store(azurite, 8, body))
    assert result["data"] == b"a\n" * 10
    assert result["existing"] == result["late"] == {"rows": "10"}


def test_state_writes_are_conditional(azurite: Azurite) -> None:
    async def body(store: InspectableStore) -> None:
        assert await store.read_json("_state/a.json") == (None, None)
        etag = await store.write_json("_state/a.json", {"w": 1}, None)
        with pytest.raises(StateConflictError):
            await store.write_json("_state/a.json", {"w": 2}, None)  # create-only
        newer = await store.write_json("_state/a.json", {"w": 3}, etag)
        with pytest.raises(StateConflictError):
            await store.write_json("_state/a.json", {"w": 4}, etag)  # stale ETag
        assert await store.read_json("_state/a.json") == ({"w": 3}, newer)

    asyncio.run(_with_store(azurite, 1024, body))


def test_sync_client_sees_the_same(azurite: Azurite) -> None:
    # The Azurite fixture is usable by plain SDK clients too (used by the e2e helpers).
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    assert service.get_account_information()["account_kind"]


def test_a_window_buffers_only_its_share_of_the_limit(azurite: Azurite) -> None:
    # The limit is asked at each page: when more windows are being read, each holds less.
    share = [64 * 1024]
    lines = [f'{{"id":"{i}","pad":"{"x" * 90}"}}'.encode() for i in range(2_000)]
    result: dict[str, Any] = {}

    async def body(store: InspectableStore) -> None:
        writer = PartitionWriter(store, lambda day: f"src/{day}.jsonl", lambda: share[0])
        day = date(2026, 1, 1)
        peaks = []
        for start in range(0, len(lines), 100):
            if start == 1_000:
                share[0] = 8 * 1024  # seven more windows started
            await writer.add({day: lines[start : start + 100]})
            peaks.append(sum(w.buffered for w in writer._writers.values()))
        await writer.commit({})
        result["early"], result["late"] = max(peaks[:10]), max(peaks[10:])
        result["data"] = await store.read_bytes(f"src/{day}.jsonl")

    asyncio.run(_with_store(azurite, 1024 * 1024, body))
    assert 8 * 1024 < result["early"] <= 64 * 1024
    assert result["late"] <= 8 * 1024
    assert result["data"] == b"\n".join(lines) + b"\n"


def test_a_block_travels_while_the_next_fills_and_its_failure_is_not_lost(
    azurite: Azurite,
) -> None:
    result: dict[str, Any] = {}

    async def body(store: InspectableStore) -> None:
        writer = store.writer("travel.jsonl")
        await writer.write_lines([b"x" * 1023])  # a full block: staged in the background
        result["in_flight"] = writer.buffered  # still in memory until storage has it
        await writer.flush()
        result["flushed"] = writer.buffered
        await writer.write_lines([b"y" * 1023])
        await writer.commit({})
        result["data"] = await store.read_bytes("travel.jsonl")

        # A block that fails on its way fails the commit: nothing is silently lost.
        doomed = store.writer("doomed.jsonl")
        await store._container.delete_container()
        await doomed.write_lines([b"z" * 1023])
        with pytest.raises(HttpResponseError):
            await doomed.commit({})

    asyncio.run(_with_store(azurite, 1024, body))
    assert result["in_flight"] == 1024 and result["flushed"] == 0
    assert result["data"] == b"x" * 1023 + b"\n" + b"y" * 1023 + b"\n"


def test_an_aborted_writer_stops_its_block_and_commits_nothing(azurite: Azurite) -> None:
    result: dict[str, Any] = {}

    async def body(store: InspectableStore) -> None:
        writer = PartitionWriter(store, lambda day: f"src/{day}.jsonl")
        await writer.add({date(2026, 1, 1): [b"a" * 2047]})  # one block on its way
        await writer.abort()
        result["buffered"] = sum(w.buffered for w in writer._writers.values())
        result["names"] = await store.list_names("src/")

    asyncio.run(_with_store(azurite, 1024, body))
    assert result == {"buffered": 0, "names": []}


def test_a_block_that_failed_fails_every_later_commit_with_its_own_error(
    azurite: Azurite,
) -> None:
    async def body() -> None:
        async with AsyncBlobServiceClient.from_connection_string(
            azurite.connection_string
        ) as service:
            store = InspectableStore(service.get_container_client(f"late{next(_names)}"), 1024)
            writer = store.writer("w.jsonl")
            await writer.write_lines([b"q" * 1023])  # its container does not exist yet
            with pytest.raises(ResourceNotFoundError):
                await writer.flush()
            await store.ensure_container()
            # The block list still names the lost block: the commit must not pass, nor be
            # mistaken for another run's commit (StateConflictError).
            with pytest.raises(ResourceNotFoundError):
                await writer.commit({})
            assert await store.list_names("") == []

    asyncio.run(body())


def test_lines_are_read_whole_across_ranged_reads(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("collector.archive.blobstore.READ_SIZE", 7)  # reads cut lines everywhere
    lines = [b"x" * n for n in (1, 6, 7, 8, 13, 14, 15, 2)]
    result: dict[str, list[bytes]] = {}

    async def body(store: InspectableStore) -> None:
        writer = store.writer("lines.jsonl")
        await writer.write_lines(lines)
        await writer.commit({})
        result["read"] = [line async for line in store.read_lines("lines.jsonl")]

    asyncio.run(_with_store(azurite, 1024, body))
    assert result["read"] == lines
