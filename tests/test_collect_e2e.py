"""End-to-end: the collector against the Graph simulator, the identity endpoint and Azurite."""

from __future__ import annotations

import asyncio
import json

import pytest

from collector.reports import RunReport
from collector.runner import run_cycle
from collector.settings import load_settings
from collector.timefmt import parse_instant
from devstack.graph_simulator import Fault

from .conftest import Stack, assert_archive_matches, data_rows

AS_OF = "2026-10-23T12:30:00Z"
END = "2026-10-23T11:30:00Z"  # AS_OF minus the 60-minute lag
START = "2026-10-20T00:00:00Z"
ALL = ("sms", "direct_routing", "pstn")


def test_every_row_lands_once_in_its_partition(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.run(AS_OF) == 0
    blobs = stack.blobs()
    counts = {s: assert_archive_matches(stack, s, START, END, blobs) for s in ALL}
    # Several days and many 1,000-row pages per source.
    assert counts["direct_routing"] > 7_000 and counts["sms"] > 1_000
    days = {
        name.split("/day=")[0] + name.split("/day=")[1][:2]
        for name in blobs
        if name.startswith("pstn/")
    }
    assert len(days) == 4
    assert {s: stack.watermark(s) for s in ALL} == dict.fromkeys(ALL, END)
    out = capsys.readouterr().out
    assert "direct_routing: ok windows=4" in out


def test_state_lives_under_underscore_and_data_is_hive_partitioned(stack: Stack) -> None:
    assert stack.run(AS_OF) == 0
    names = list(stack.blobs())
    data = [n for n in names if not n.startswith("_")]
    # Oct 20 is older than the 48 h lateness horizon: settled at once, with a manifest.
    assert {n for n in names if n.startswith("_")} == {f"_state/{s}.json" for s in ALL} | {
        f"_manifests/{s}/2026-10-20.json" for s in ALL
    }
    for name in data:
        source, year, month, day, leaf = name.split("/")
        assert source in ALL and year.startswith("year=") and month.startswith("month=")
        assert day.startswith("day=") and leaf.endswith(".jsonl")
        settled = day == "day=20"
        assert leaf == "settle-2026-10-20.jsonl" if settled else leaf.startswith("part-")


def test_rows_on_window_boundaries_appear_once(stack: Stack) -> None:
    # The synthetic tenant already has a row exactly at every midnight; add rows exactly at
    # the run's end (the next run's start) and at the configured start.
    for source in ALL:
        stack.tenant.add_row(source, END)
        stack.tenant.add_row(source, START)
    assert stack.run(AS_OF) == 0
    assert stack.run("2026-10-23T13:00:00Z") == 0  # next window starts exactly at END
    blobs = stack.blobs()
    for source in ALL:
        assert_archive_matches(stack, source, START, "2026-10-23T12:00:00Z", blobs)
        stamped = [
            r
            for _, r in data_rows(blobs, source)
            if r.get("startDateTime", r.get("sentDateTime"))
            in ("2026-10-23T11:30:00.0000000Z", "2026-10-21T00:00:00Z")
        ]
        assert len(stamped) == 2, source


def test_second_run_with_no_new_time_writes_nothing(stack: Stack) -> None:
    assert stack.run(AS_OF) == 0
    before = stack.blobs()
    requests = stack.graph.simulator.stats["requests"]
    assert stack.run(AS_OF) == 0
    assert stack.blobs().keys() == before.keys()
    assert {k: v for k, v in stack.blobs().items() if not k.startswith("_")} == {
        k: v for k, v in before.items() if not k.startswith("_")
    }
    assert stack.graph.simulator.stats["requests"] == requests


def test_rereading_the_same_range_leaves_the_same_blobs(stack: Stack) -> None:
    assert stack.run(AS_OF) == 0
    first = {k: v for k, v in stack.blobs().items() if not k.startswith("_")}
    # Forget the watermarks: the next run reads the whole range again.
    container = stack.container()
    for source in ALL:
        container.delete_blob(f"_state/{source}.json")
    assert stack.run(AS_OF) == 0
    second = {k: v for k, v in stack.blobs().items() if not k.startswith("_")}
    assert second == first


def test_transient_faults_still_give_a_complete_result(stack: Stack) -> None:
    sim = stack.graph.simulator
    sim.add_fault(Fault("429", count=2, retry_after=1, source="direct_routing", after=2))
    sim.add_fault(Fault("503", count=2, source="pstn", after=1))
    sim.add_fault(Fault("drop", count=2, source="sms", after=1))
    sim.add_fault(Fault("504", count=1, retry_after=1, source="direct_routing", after=5))
    assert stack.run(AS_OF) == 0
    blobs = stack.blobs()
    for source in ALL:
        assert_archive_matches(stack, source, START, END, blobs)
    assert sim.stats["fault:429"] == 2
    assert sim.stats["fault:503"] == 2
    assert sim.stats["fault:drop"] == 2
    assert sim.stats["fault:504"] == 1


def test_permanent_4xx_fails_only_that_source(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.graph.simulator.add_fault(
        Fault("status", count=-1, source="sms", status=403, code="Forbidden")
    )
    assert stack.run(AS_OF) == 1
    out = capsys.readouterr().out
    sms_line = next(line for line in out.splitlines() if line.startswith("sms:"))
    assert "failed" in sms_line and "HTTP 403 Forbidden" in sms_line and "request-id" in sms_line
    assert stack.watermark("sms") == START  # claimed, never advanced
    blobs = stack.blobs()
    assert not [n for n in blobs if n.startswith("sms/")]
    for source in ("direct_routing", "pstn"):
        assert_archive_matches(stack, source, START, END, blobs)
    # Once Graph grants access again, the source catches up by itself.
    stack.graph.simulator.clear_faults()
    assert stack.run(AS_OF) == 0
    assert_archive_matches(stack, "sms", START, END)


def test_revoked_token_is_refreshed_once(stack: Stack) -> None:
    sim = stack.graph.simulator
    sim.add_fault(Fault("revoke", count=1, source="sms", after=2))
    assert stack.run(AS_OF, COLLECTOR_SOURCES="sms") == 0
    assert_archive_matches(stack, "sms", START, END)
    assert sim.stats["unauthorized"] >= 1  # one per window in flight at the revocation
    assert stack.graph.authority.issued == 2  # the first token and ONE refresh, shared


def test_token_rejected_twice_fails_the_source(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.graph.simulator.add_fault(
        Fault("status", count=-1, source="pstn", status=401, code="InvalidAuthenticationToken")
    )
    assert stack.run(AS_OF, COLLECTOR_SOURCES="pstn") == 1
    out = capsys.readouterr().out
    assert "HTTP 401 InvalidAuthenticationToken" in out
    assert stack.graph.authority.issued == 2  # refreshed once, then gave up


def test_failed_window_is_reread_exactly_on_the_next_run(stack: Stack) -> None:
    # Page 3 of direct routing fails for good: the first day's (settle) window stays claimed.
    sim = stack.graph.simulator
    sim.add_fault(
        Fault("status", count=-1, source="direct_routing", after=2, status=400, code="BadRequest")
    )
    assert stack.run(AS_OF, COLLECTOR_SOURCES="direct_routing") == 1
    state = stack.state("direct_routing")
    assert state is not None and state["watermark"] == START
    # Claimed: the failed settle window, and provisional windows read meanwhile (at once,
    # beyond the gap the failure left, so the watermark could not pass them).
    assert {"kind": "settle", "start": START, "end": "2026-10-21T00:00:00Z"} in state["claims"]
    assert sorted(p["kind"] for p in state["claims"])[-1:] == ["settle"]
    assert not [n for n in stack.blobs() if n.startswith("direct_routing/")]
    sim.clear_faults()
    # A later run still reads exactly the claimed window first, then the rest.
    assert stack.run("2026-10-23T18:00:00Z", COLLECTOR_SOURCES="direct_routing") == 0
    assert_archive_matches(stack, "direct_routing", START, "2026-10-23T17:00:00Z")
    assert stack.state("direct_routing")["claims"] == []  # type: ignore[index]


def test_crash_between_commit_and_watermark_write_duplicates_nothing(stack: Stack) -> None:
    assert stack.run(AS_OF, COLLECTOR_SOURCES="pstn") == 0
    # Rewind the state as a run would leave it if it died after committing the last
    # window's blob but before advancing the watermark past it.
    container = stack.container()
    state = stack.state("pstn")
    assert state is not None
    state.update(
        watermark="2026-10-23T00:00:00Z",
        claims=[{"kind": "provisional", "start": "2026-10-23T00:00:00Z", "end": END}],
    )
    container.upload_blob("_state/pstn.json", json.dumps(state), overwrite=True)
    assert stack.run("2026-10-23T20:00:00Z", COLLECTOR_SOURCES="pstn") == 0
    assert_archive_matches(stack, "pstn", START, "2026-10-23T19:00:00Z")
    names = sorted(n for n in stack.blobs() if n.startswith("pstn/year=2026/month=10/day=23/"))
    assert names == [
        "pstn/year=2026/month=10/day=23/part-20261023T000000Z-20261023T113000Z.jsonl",
        "pstn/year=2026/month=10/day=23/part-20261023T113000Z-20261023T190000Z.jsonl",
    ]


def test_two_runs_at_once_never_duplicate(stack: Stack) -> None:
    settings = load_settings(stack.env)
    now = parse_instant(AS_OF)

    async def both() -> list[RunReport]:
        return list(await asyncio.gather(run_cycle(settings, now), run_cycle(settings, now)))

    reports = asyncio.run(both())
    statuses = [r.status for report in reports for r in report.sources]
    assert "failed" not in statuses
    blobs = stack.blobs()
    for source in ALL:
        assert_archive_matches(stack, source, START, END, blobs)
        assert stack.watermark(source) == END
