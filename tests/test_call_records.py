"""Full call records end to end: each day read once, past the lateness horizon, every record
whole (all its sessions with their segments, all its participants), archived exactly once
under its start day with the day's manifest; within call records' own request limits; never
further back than the 30 days Graph keeps them."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from collector.cli import main
from devstack.call_records import CallRecords

from .conftest import SECOND, Stack, data_rows, spawn

SOURCE = "call_records"
LATER = "2026-10-25T12:30:00Z"
"""Two days after ``SECOND``: the 48 h horizon has moved from Oct 21 to Oct 23."""


def records(stack: Stack) -> CallRecords:
    sim: CallRecords = stack.graph.simulator.call_records
    return sim


@pytest.fixture
def recorded(stack: Stack) -> Stack:
    """A tenant of 40 calls and meetings a day (one a huge meeting), small pages so that every
    kind of paging happens, collecting call records only."""
    sim = records(stack)
    sim.configure(records_per_day=40, sessions=(1, 8), huge_per_day=1)
    sim.list_page_size, sim.sessions_page_size, sim.participants_page_size = 15, 5, 40
    stack.env.update(COLLECTOR_SOURCES=SOURCE)
    return stack


def run(stack: Stack, as_of: str, **env: str) -> int:
    records(stack).now = as_of  # Graph's clock: what it lists, and which version
    return stack.run(as_of, **env)


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_folder(day: date) -> str:
    return f"{SOURCE}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


def assert_days(stack: Stack, days: list[date], as_of: str) -> dict[str, bytes]:
    """Assert the archive holds exactly ``days``, each as one settle blob with every record
    Graph keeps of it, whole and in its final version, and its manifest."""
    blobs = stack.blobs()
    names = sorted(n for n in blobs if n.startswith(f"{SOURCE}/"))
    assert names == [f"{day_folder(d)}settle-{d.isoformat()}.jsonl" for d in days]
    sim = records(stack)
    for day, name in zip(days, names, strict=True):
        expected = sim.expected(None, midnight(day), midnight(day) + timedelta(1), as_of=as_of)
        assert expected, f"no calls on {day}: the test tenant should have some"
        archived = [json.loads(line) for line in blobs[name].splitlines()]
        assert sorted(r["id"] for r in archived) == sorted(r["id"] for r in expected)
        assert {r["id"]: r for r in archived} == {r["id"]: r for r in expected}
        manifest = json.loads(blobs[f"_manifests/{SOURCE}/{day.isoformat()}.json"])
        assert manifest["rows"] == len(expected) and manifest["lateRows"] == 0
    return blobs


def test_each_day_is_archived_once_whole_and_final_past_the_lateness(recorded: Stack) -> None:
    stack = recorded
    assert run(stack, SECOND) == 0
    # Only Oct 20 is past the 48 h horizon: later days' records may still appear or change.
    blobs = assert_days(stack, [date(2026, 10, 20)], SECOND)
    rows = [row for _, row in data_rows(blobs, SOURCE)]
    sim = records(stack)
    final = {info.id: info for info in sim.timeline(None, "2026-10-20", "2026-10-21")}
    assert all(row["version"] == final[row["id"]].final_version for row in rows)
    assert any(final[row["id"]].changes for row in rows)  # some changed before settling
    sessions = [len(row["sessions"]) for row in rows]
    assert max(sessions) > sim.sessions_page_size  # paged sessions were followed
    assert all(seg for row in rows for s in row["sessions"] for seg in s["segments"])
    assert max(len(row["participants_v2"]) for row in rows) > sim.participants_page_size
    assert not [k for row in rows for k in row if k.endswith(("@odata.nextLink", "context"))]
    listed = sim.stats["requests:list"]
    assert listed >= 3  # 40 records in pages of 15

    assert run(stack, LATER) == 0
    assert_days(stack, [date(2026, 10, d) for d in (20, 21, 22)], LATER)
    assert sim.stats["requests:list"] - listed >= 2 * 3  # Oct 21 and 22, not Oct 20 again
    assert main(["status", "--as-of", LATER], stack.env) == 0
    assert main(["verify", "--as-of", LATER], stack.env) == 0


def test_a_start_older_than_graph_keeps_begins_at_its_edge_and_other_sources_go_on(
    recorded: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = recorded
    records(stack).configure(records_per_day=4, sessions=(1, 3), huge_per_day=0)
    caplog.set_level(logging.WARNING, "collector")
    as_of = "2026-10-23T12:30:00Z"
    assert run(stack, as_of, COLLECTOR_SOURCES=f"sms,{SOURCE}", COLLECTOR_START="2026-09-10") == 0
    # Graph keeps 30 days: the first whole day it will still have a day from now is Sep 25.
    assert "more than 30 days back" in caplog.text and "starting at 2026-09-25" in caplog.text
    days = [date(2026, 9, 25) + timedelta(days=n) for n in range(26)]  # Sep 25 .. Oct 20
    assert_days(stack, days, as_of)
    sms = sorted(n for n in stack.blobs() if n.startswith("sms/"))
    assert sms[0].startswith("sms/year=2026/month=09/day=10/")  # the call logs from the start


def test_throttled_requests_are_retried_and_every_record_archived_once(recorded: Stack) -> None:
    stack = recorded
    sim = records(stack)
    # Graph's per-record first-page limit, 10 per 20 s, scaled to 10 per 0.4 s, and an app
    # limit of 30 per 0.4 s that 40 records' requests must exceed.
    sim.throttle(scale=0.02, per_app=30)
    assert run(stack, SECOND) == 0
    assert sim.stats["throttled"] > 0
    assert_days(stack, [date(2026, 10, 20)], SECOND)


def test_a_run_killed_between_a_day_and_its_manifest_is_finished_once(recorded: Stack) -> None:
    stack = recorded
    stack.env.update(COLLECTOR_LEASE_SECONDS="1")

    def kill(_n: int, phase: str, path: str) -> bool:
        if phase == "before" and f"/_manifests/{SOURCE}/" in path:  # the day's blob is in
            os.kill(process.pid, signal.SIGKILL)
            return True
        return False

    records(stack).now = SECOND  # the killed run is another process: it reads Graph's clock
    stack.proxy.on_write = kill
    process = spawn(stack, SECOND)
    process.communicate(timeout=300)
    stack.proxy.on_write = None
    assert process.returncode == -signal.SIGKILL
    assert [n for n in stack.blobs() if n.startswith(f"{SOURCE}/")]
    assert not [n for n in stack.blobs() if n.startswith(f"_manifests/{SOURCE}/")]
    time.sleep(1.1)  # the killed run's lease lapses
    assert run(stack, SECOND) == 0
    assert_days(stack, [date(2026, 10, 20)], SECOND)  # the fixture: no blob written twice


def test_a_record_gone_at_graphs_30_day_edge_is_skipped_with_a_warning(
    recorded: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = recorded
    sim = records(stack)
    sim.configure(records_per_day=12, sessions=(1, 3), huge_per_day=0)
    assert run(stack, "2026-10-21T12:00:00Z") == 0  # Oct 20 is not past the lateness yet
    caplog.set_level(logging.WARNING, "collector")
    late = "2026-11-19T10:00:00Z"  # 29 days 14 hours after Oct 20 ended: at Graph's edge
    listed = sim.expected(None, "2026-10-20T10:30:00Z", "2026-10-21", as_of=late)
    gone = listed[0]["id"]
    sim.forget(gone)  # Graph deletes it between listing it and the collector reading it
    assert run(stack, late) == 0
    assert f"{gone} was listed but Graph no longer has it" in caplog.text
    archived = Counter(row["id"] for _, row in data_rows(stack.blobs(), SOURCE))
    assert gone not in archived and set(archived.values()) == {1}
    assert "older than Graph keeps call_records" in caplog.text  # the watermark fell behind


def test_a_record_gone_well_inside_graphs_30_days_fails_the_day_until_graph_has_it_again(
    recorded: Stack,
) -> None:
    stack = recorded
    sim = records(stack)
    listed: list[Any] = sim.expected(None, "2026-10-20", "2026-10-21", as_of=SECOND)
    gone = listed[3]["id"]

    def forget(kind: str, _n: int) -> None:
        if kind == "participants":  # mid-record: between its first page and its participants
            sim.forget(gone)

    sim.on_request = forget
    assert run(stack, SECOND) == 1  # a day is read once: it must not lose the record
    state = json.loads(stack.blobs()[f"_state/{SOURCE}.run.json"])
    assert "404" in state["error"] and "ExceptionGroup" not in state["error"]
    assert not [n for n in stack.blobs() if n.startswith(f"{SOURCE}/")]
    sim.on_request = None
    sim.forgotten.discard(gone)  # Graph answers for it again
    assert run(stack, SECOND) == 0
    assert_days(stack, [date(2026, 10, 20)], SECOND)


def test_each_customer_tenant_gets_its_own_records(recorded: Stack) -> None:
    from .test_tenants import CONTOSO, FABRIKAM, customers
    from .test_tenants import run as run_tenants

    stack = recorded
    customers(stack, consented=(CONTOSO, FABRIKAM))
    stack.env.update(COLLECTOR_SOURCES=SOURCE)
    sim = records(stack)
    sim.now = SECOND  # the run is another process: it reads Graph's clock from here
    done = run_tenants(stack, SECOND)
    assert done.returncode == 0, done.stderr
    blobs = stack.blobs()
    day = (midnight(date(2026, 10, 20)), midnight(date(2026, 10, 21)))
    for tenant in (CONTOSO, FABRIKAM):
        archived = {r["id"]: r for _, r in data_rows(blobs, SOURCE, tenant)}
        expected = {r["id"]: r for r in sim.expected(tenant, *day, as_of=SECOND)}
        assert archived == expected and archived, tenant
        assert f"_manifests/{SOURCE}/tenant={tenant}/2026-10-20.json" in blobs
    ids = [{r["id"] for _, r in data_rows(blobs, SOURCE, t)} for t in (CONTOSO, FABRIKAM)]
    assert not ids[0] & ids[1]  # two tenants' records, not one tenant's twice
