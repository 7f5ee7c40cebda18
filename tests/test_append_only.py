"""The archive is append-only: a committed data blob is never overwritten, appended to or
deleted, and every row Graph returned is in exactly one data blob at every instant.

Every end-to-end test runs against an immutable (WORM) container (``devstack.proxy``; the
``stack`` fixture fails a test in which the collector tried to replace or delete a data
blob). The tests here prove what readers downstream see.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from collector.core.timefmt import parse_instant

from .conftest import (
    FIRST,
    LATE_SOURCES,
    LATE_STAMPS,
    SECOND,
    SECOND_END,
    START,
    Stack,
    assert_archive_matches,
    data_rows,
    kill_after_write,
    late_rows,
)


def test_the_immutable_store_refuses_overwrites_and_deletes_of_data_blobs(stack: Stack) -> None:
    assert stack.run(FIRST, COLLECTOR_SOURCES="pstn") == 0
    data = next(n for n in stack.blobs() if n.startswith("pstn/"))
    through_proxy = BlobServiceClient.from_connection_string(stack.env["COLLECTOR_STORAGE"])
    container = through_proxy.get_container_client(stack.env["COLLECTOR_CONTAINER"])
    for attempt in (
        lambda: container.upload_blob(data, b"{}\n", overwrite=True),
        lambda: container.delete_blob(data),
    ):
        with pytest.raises(HttpResponseError) as refused:
            attempt()
        assert refused.value.status_code == 409
        assert getattr(refused.value, "error_code", None) == "BlobImmutableDueToPolicy"
    container.upload_blob("_state/scratch.json", b"{}", overwrite=True)  # not data: allowed
    container.upload_blob("_state/scratch.json", b"{}", overwrite=True)
    assert len(stack.proxy.refused) == 2
    stack.proxy.refused.clear()  # refused on purpose here; the fixture checks the collector


def test_an_event_driven_reader_receives_every_row_exactly_once(stack: Stack) -> None:
    """Runs with late rows, settling (48 h) and a run killed mid-way: the blobs an Event Grid
    subscriber is told about hold every row once, and nothing else."""
    stack.env.update(COLLECTOR_SOURCES=",".join(LATE_SOURCES), COLLECTOR_LEASE_SECONDS="1")
    assert stack.run(FIRST) == 0  # Oct 20-21 provisional
    late = late_rows(stack)  # rows of Oct 20 and 21 that Graph ingests only now
    assert stack.run("2026-10-22T12:00:00Z") == 0  # nothing is 48 h old yet
    # Killed after its first manifest: one day final, the others not.
    kill_after_write(stack, SECOND, "/_manifests/", 1)
    time.sleep(1.1)  # the killed run's lease lapses
    for as_of in (SECOND, "2026-10-24T12:30:00Z", "2026-10-25T12:30:00Z"):
        assert stack.run(as_of) == 0
    end = "2026-10-25T11:30:00Z"
    delivered: Counter[str] = Counter()
    for event in stack.proxy.created:
        for line in event.content.decode("utf-8").splitlines():
            delivered[json.loads(line)["id"]] += 1
    for source in LATE_SOURCES:
        rows = stack.tenant.rows_between(source, parse_instant(START), parse_instant(end))
        expected = {r["id"] for r in rows}
        assert expected <= set(delivered), source
        assert_archive_matches(stack, source, START, end)
    assert set(late) <= set(delivered)  # the late rows arrived, once each
    assert [k for k, n in delivered.items() if n > 1] == []
    archived = {r["id"] for s in LATE_SOURCES for _, r in data_rows(stack.blobs(), s)}
    assert archived == set(delivered)  # no blob exists that a reader was not told of


def test_a_settle_redone_after_its_blob_committed_writes_only_the_manifest(stack: Stack) -> None:
    stack.env.update(COLLECTOR_SOURCES="direct_routing", COLLECTOR_LEASE_SECONDS="1")
    assert stack.run(FIRST) == 0
    late = late_rows(stack)
    kill_after_write(stack, SECOND, "/settle-2026-10-20", 2)  # its one block, then its commit
    blobs = stack.blobs()
    settle_blob = "direct_routing/year=2026/month=10/day=20/settle-2026-10-20.jsonl"
    assert settle_blob in blobs and "_manifests/direct_routing/2026-10-20.json" not in blobs
    time.sleep(1.1)
    assert stack.run(SECOND) == 0
    blobs = stack.blobs()
    manifest = json.loads(blobs["_manifests/direct_routing/2026-10-20.json"])
    oct20 = [i for i, stamp in late.items() if stamp.startswith("2026-10-20")]
    assert manifest["lateRows"] == blobs[settle_blob].count(b"\n") == len(oct20) // 2
    assert settle_blob in [b["name"] for b in manifest["blobs"]]
    not_yet = {i for i, stamp in late.items() if stamp.startswith("2026-10-21")}
    assert_archive_matches(stack, "direct_routing", START, SECOND_END, not_yet=not_yet)


def test_a_settle_writes_only_the_late_rows(stack: Stack) -> None:
    stack.env.update(COLLECTOR_SOURCES="pstn")
    assert stack.run(FIRST) == 0
    provisional = {n: v for n, v in stack.blobs().items() if n.startswith("pstn/")}
    late_oct20 = {
        stack.tenant.add_row("pstn", stamp)["id"]
        for stamp in LATE_STAMPS
        if stamp.startswith("2026-10-20")
    }
    changed = stack.tenant.change_row("pstn", "2026-10-20", "calleeNumber", "+1555000****")
    before = len(stack.proxy.created)
    assert stack.run(SECOND) == 0
    blobs = stack.blobs()
    assert {n: v for n, v in blobs.items() if n in provisional} == provisional  # untouched
    new = {c.name: c.content for c in stack.proxy.created[before:] if "/day=20/" in c.name}
    settle_blob = "pstn/year=2026/month=10/day=20/settle-2026-10-20.jsonl"
    assert list(new) == [settle_blob]
    written = {json.loads(line)["id"] for line in new[settle_blob].splitlines()}
    assert written == late_oct20 and len(written) == 2
    manifest = json.loads(blobs["_manifests/pstn/2026-10-20.json"])
    assert manifest["lateRows"] == len(written) and manifest["changedRows"] == 1
    assert manifest["changedKeys"] == [changed]
    archived = next(r for _, r in data_rows(blobs, "pstn") if r["id"] == changed)
    assert archived["calleeNumber"] != "+1555000****"  # kept as first archived
