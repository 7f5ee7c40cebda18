"""Full call records end to end: each hour read once past the lateness horizon, every record
whole (all its sessions with their segments, all its participants), archived once per version
under its start day, committed in small blobs as records complete, with the day's manifest
once its last hour is read; within call records' own request limits; never further back than
the 30 days Graph keeps them."""

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

from .conftest import SECOND, Stack, data_rows, kill_after_write, spawn

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
    # and no larger, whatever page size the collector asks for
    sim.list_max_page_size, sim.sessions_max_page_size, sim.participants_max_page_size = 15, 5, 40
    stack.env.update(COLLECTOR_SOURCES=SOURCE)
    return stack


def run(stack: Stack, as_of: str, **env: str) -> int:
    records(stack).now = as_of  # Graph's clock: what it lists, and which version
    return stack.run(as_of, **env)


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_folder(day: date) -> str:
    return f"{SOURCE}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


def archived(stack: Stack, day: date) -> list[dict[str, Any]]:
    """Every record version archived under ``day``; asserts only call-record blobs are there."""
    blobs = stack.blobs()
    names = sorted(
        n for n in blobs if n.startswith(day_folder(day)) and "/" not in n[len(day_folder(day)) :]
    )
    assert all(n.rsplit("/", 1)[-1].startswith("records-") for n in names), names
    return [json.loads(line) for n in names for line in blobs[n].splitlines()]


def horizon(as_of: str) -> datetime:
    """Where a run as of ``as_of`` has read to: the hour 48 h (the lateness) before it."""
    moment = datetime.fromisoformat(as_of) - timedelta(hours=48)
    return moment.replace(minute=0, second=0, microsecond=0)


def assert_days(stack: Stack, days: list[date], as_of: str) -> dict[str, bytes]:
    """Assert the archive holds exactly ``days``, each with every record Graph keeps of it
    once, whole, in its version as of ``as_of``, and the day's manifest listing its blobs;
    and of the day after them, the hours before the run's horizon, without a manifest."""
    blobs = stack.blobs()
    folders = {n.rsplit("/", 1)[0] + "/" for n in blobs if n.startswith(f"{SOURCE}/")}
    sim = records(stack)
    partial = horizon(as_of)
    if partial.date() > days[-1]:
        assert folders == {day_folder(d) for d in (*days, partial.date())}
        expected = sim.expected(None, midnight(partial.date()), partial, as_of=as_of)
        rows = archived(stack, partial.date())
        assert {r["id"]: r for r in rows} == {r["id"]: r for r in expected}
        assert len(rows) == len(expected)
        assert f"_manifests/{SOURCE}/{partial.date().isoformat()}.json" not in blobs
    else:
        assert folders == {day_folder(d) for d in days}
    for day in days:
        expected = sim.expected(None, midnight(day), midnight(day) + timedelta(1), as_of=as_of)
        assert expected, f"no calls on {day}: the test tenant should have some"
        rows = archived(stack, day)
        assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in expected)
        assert {r["id"]: r for r in rows} == {r["id"]: r for r in expected}
        manifest = json.loads(blobs[f"_manifests/{SOURCE}/{day.isoformat()}.json"])
        assert manifest["rows"] == manifest["records"] == len(expected)
        assert manifest["status"] == "settled" and manifest["setAside"] == []
        assert {b["name"] for b in manifest["blobs"]} == {
            n for n in blobs if n.startswith(day_folder(day))
        }
    return blobs


def test_each_day_is_archived_once_whole_and_final_past_the_lateness(recorded: Stack) -> None:
    stack = recorded
    assert run(stack, SECOND) == 0
    # Only Oct 20 is past the 48 h horizon: later days' records may still appear or change.
    assert_days(stack, [date(2026, 10, 20)], SECOND)
    rows = archived(stack, date(2026, 10, 20))
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
    assert listed >= 36  # an hour a listing, Oct 20 00:00 to Oct 21 12:00

    reads = sim.stats["requests:get"]
    assert run(stack, LATER) == 0
    assert_days(stack, [date(2026, 10, d) for d in (20, 21, 22)], LATER)
    # Oct 21 12:00 to Oct 23 12:00 listed, and Oct 20 revisited (its 3-day revisit is due) in
    # pages of 15: no record read again, none of them changed since.
    assert sim.stats["requests:list"] - listed >= 48 + 3
    new = len(sim.expected(None, "2026-10-21T12:00:00Z", "2026-10-23T12:00:00Z", as_of=LATER))
    assert sim.stats["requests:get"] - reads == new
    revisit = json.loads(stack.blobs()[f"_manifests/{SOURCE}/2026-10-20.revisit-03d.json"])
    assert revisit["listed"] == 40 and revisit["added"] == [] and revisit["revised"] == 0
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


def test_a_record_that_keeps_failing_is_set_aside_and_recovered_at_a_revisit(
    recorded: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = recorded
    sim = records(stack)
    listed: list[Any] = sim.expected(None, "2026-10-20", "2026-10-21", as_of=SECOND)
    gone = listed[3]["id"]

    def forget(kind: str, _n: int) -> None:
        if kind == "participants":  # mid-record: between its first page and its participants
            sim.forget(gone)

    sim.on_request = forget
    assert run(stack, SECOND) == 0  # one record does not fail the run, nor hold its day
    sim.on_request = None
    day = date(2026, 10, 20)
    rows = archived(stack, day)
    assert gone not in {r["id"] for r in rows} and len(rows) == len(listed) - 1
    manifest = json.loads(stack.blobs()[f"_manifests/{SOURCE}/2026-10-20.json"])
    assert manifest["status"] == "settled-with-failures"
    [aside] = manifest["setAside"]
    assert aside["id"] == gone and aside["attempts"] == 3 and "404" in aside["error"]
    assert archived(stack, date(2026, 10, 21))  # later hours went on
    capsys.readouterr()
    assert main(["status", "--json", "--as-of", SECOND], stack.env) == 1
    [health] = json.loads(capsys.readouterr().out)["sources"]
    assert [r["id"] for r in health["setAside"]] == [gone] and not health["fresh"]
    assert main(["verify", "--as-of", SECOND], stack.env) == 0
    assert "1 record(s) set aside" in capsys.readouterr().out

    sim.forgotten.discard(gone)  # Graph answers for it again
    revisit = "2026-10-24T12:30:00Z"  # 3 days and 12 hours after Oct 20 ended
    assert run(stack, revisit) == 0
    rows = archived(stack, day)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in listed)
    document = json.loads(stack.blobs()[f"_manifests/{SOURCE}/2026-10-20.revisit-03d.json"])
    assert document["recovered"] == [gone] and document["appeared"] == 1
    assert document["setAside"] == [] and document["addedRows"] == 1
    capsys.readouterr()
    assert main(["status", "--json", "--as-of", revisit], stack.env) == 0
    assert json.loads(capsys.readouterr().out)["sources"][0]["setAside"] == []
    assert main(["verify", "--as-of", revisit], stack.env) == 0


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
        # Oct 20 (Oct 21 is read up to the run's horizon, into a folder of its own)
        found = {r["id"]: r for n, r in data_rows(blobs, SOURCE, tenant) if "/day=20/" in n}
        expected = {r["id"]: r for r in sim.expected(tenant, *day, as_of=SECOND)}
        assert found == expected and found, tenant
        assert f"_manifests/{SOURCE}/tenant={tenant}/2026-10-20.json" in blobs
    ids = [{r["id"] for _, r in data_rows(blobs, SOURCE, t)} for t in (CONTOSO, FABRIKAM)]
    assert not ids[0] & ids[1]  # two tenants' records, not one tenant's twice


@pytest.fixture
def town_hall(stack: Stack) -> Stack:
    """A day of a few calls and one meeting of 3,000 attendees (a session each), at Graph's
    documented page sizes, with call records' request limits scaled a hundredfold down
    (the 50 later pages a record may read in 5 minutes: in 3 s)."""
    sim = records(stack)
    sim.configure(
        records_per_day=6,
        sessions=(1, 3),
        huge_per_day=1,
        huge_participants=(3_000, 3_000),
        huge_session_per_attendee=True,
    )
    sim.sessions_page_size = sim.sessions_max_page_size
    stack.env.update(COLLECTOR_SOURCES=SOURCE, GRAPH_CALL_RECORDS_PERIOD_SCALE="0.01")
    return stack


def split_rows(stack: Stack, day: date, relation: str) -> list[dict[str, Any]]:
    """Every row of ``relation`` (sessions, participants_v2) of the day's large records."""
    blobs = stack.blobs()
    folder = f"{day_folder(day)}{relation}/"
    return [
        json.loads(line)
        for n in sorted(blobs)
        if n.startswith(folder)
        for line in blobs[n].splitlines()
    ]


def assert_town_hall(stack: Stack, as_of: str = SECOND) -> None:
    """The 3,000-attendee meeting is archived whole: its line says it was split and how, and
    its sessions and participants are rows of their own, each once, as Graph serves them."""
    day = date(2026, 10, 20)
    expected = {
        r["id"]: r for r in records(stack).expected(None, "2026-10-20", "2026-10-21", as_of=as_of)
    }
    [hall] = [r for r in expected.values() if len(r["participants_v2"]) == 3_000]
    lines = {r["id"]: r for r in archived(stack, day)}
    assert lines.keys() == expected.keys()
    line = lines.pop(hall["id"])
    assert line["collectorSplit"] == {"sessions": len(hall["sessions"]), "participants_v2": 3_000}
    assert len(hall["sessions"]) >= 3_000
    whole = {k: v for k, v in hall.items() if k not in ("sessions", "participants_v2")}
    assert {k: v for k, v in line.items() if k != "collectorSplit"} == whole
    assert lines == {k: v for k, v in expected.items() if k != hall["id"]}  # the others whole
    head = {"callRecordId": hall["id"], "callRecordVersion": hall["version"]}
    for relation in ("sessions", "participants_v2"):
        rows = split_rows(stack, day, relation)
        assert sorted(rows, key=lambda r: r["id"]) == sorted(
            ({**head, **item} for item in hall[relation]), key=lambda r: r["id"]
        )
    longest = max(len(line) for blob in stack.blobs().values() for line in blob.splitlines())
    assert longest < 8 * 1024 * 1024


def test_a_meeting_of_3000_attendees_is_archived_whole_in_rows_of_its_own(
    town_hall: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = town_hall
    assert run(stack, SECOND) == 0
    assert_town_hall(stack)
    manifest = json.loads(stack.blobs()[f"_manifests/{SOURCE}/2026-10-20.json"])
    listed = {b["name"] for b in manifest["blobs"]}
    assert any("/sessions/" in n for n in listed) and any("/participants_v2/" in n for n in listed)
    assert manifest["records"] == 6 and manifest["revisions"] == 0
    capsys.readouterr()
    assert main(["verify", "--as-of", SECOND], stack.env) == 0
    assert "ok" in capsys.readouterr().out


def test_a_meeting_too_large_for_one_run_goes_on_from_its_last_committed_page(
    town_hall: Stack,
) -> None:
    stack = town_hall
    stack.env.update(COLLECTOR_LEASE_SECONDS="1")
    sim = records(stack)
    as_of = "2026-10-23T00:30:00Z"  # Oct 20 is past the lateness, Oct 21 not yet
    sim.now = as_of  # the killed run is another process: it reads Graph's clock from here
    # Killed once two blobs of the meeting's sessions are committed (storage has them): a
    # blob is two writes, its block and its block list.
    kill_after_write(stack, as_of, "/sessions/sessions-", 4)
    blobs = stack.blobs()
    assert sum("/sessions/" in n for n in blobs) == 2
    assert not [n for n in blobs if n.startswith(f"_manifests/{SOURCE}/")]
    done = len(split_rows(stack, date(2026, 10, 20), "sessions"))
    pages = sim.stats["requests:sessions"]
    time.sleep(1.1)  # the killed run's lease lapses
    assert run(stack, as_of) == 0
    assert_town_hall(stack, as_of)  # each row once: the run went on, it did not start over
    total = len(split_rows(stack, date(2026, 10, 20), "sessions"))
    # The second run asked only for the pages after the committed ones (60 sessions a page).
    assert sim.stats["requests:sessions"] - pages <= -(-(total - done) // 60) + 1
