"""Long catch-ups: a run takes on what it can finish, stops at its time limits, and the next
run goes on; sparse history costs few requests, dense history is read wide."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from collector.core.settings import load_settings
from collector.core.timefmt import parse_instant, parse_ticks
from collector.observe.reports import SourceReport
from collector.run.runner import run_cycle
from devstack.graph_simulator import Fault

from .conftest import (
    SECOND,
    SECOND_END,
    START,
    Stack,
    assert_archive_matches,
)


def test_time_budget_stops_at_a_window_boundary_and_the_next_run_continues(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.graph.simulator.add_fault(Fault("slow", count=-1, delay=0.4, source="direct_routing"))
    env = {
        "COLLECTOR_SOURCES": "direct_routing",
        "COLLECTOR_TIME_BUDGET_SECONDS": "1",
        "COLLECTOR_WINDOWS_IN_FLIGHT": "1",
    }
    watermarks: list[str] = []
    for _ in range(12):
        assert stack.run(SECOND, **env) == 0
        watermarks.append(stack.watermark("direct_routing") or "")
        if watermarks[-1] == SECOND_END:
            break
    out = capsys.readouterr().out
    assert "time budget reached: the next run continues" in out
    assert len(watermarks) >= 3 and watermarks[-1] == SECOND_END
    assert watermarks == sorted(watermarks)  # steady progress, never backwards
    assert_archive_matches(stack, "direct_routing", START, SECOND_END)


def test_too_much_in_flight_for_one_run_is_cut_off_and_later_runs_take_less(
    stack: Stack,
) -> None:
    """A dense tenant in miniature: Graph's budget (4 requests a second here) cannot finish
    the windows a first run starts before its hard time limit. The run stops them (nothing
    half-written stays), later runs size what they take on by the measured density, and the
    archive completes exactly."""
    as_of = parse_instant("2026-10-21T12:00:00Z")
    settings = load_settings(
        {
            **stack.env,
            "COLLECTOR_SOURCES": "direct_routing",
            "COLLECTOR_START": "2026-10-12T00:00:00Z",  # 7 days to settle, 2.5 to read
            "COLLECTOR_TIME_BUDGET_SECONDS": "2",
            "COLLECTOR_WINDOWS_IN_FLIGHT": "8",
            "GRAPH_REQUESTS_PER_MINUTE_PER_LOG": "4",  # per 1 s "minute" below
        }
    )
    reports: list[SourceReport] = []
    state: dict[str, Any] | None = None
    while len(reports) < 60:
        report = asyncio.run(
            run_cycle(settings, as_of, budget_period=1.0, budget_margin=0.0)
        ).sources[0]
        assert report.status == "ok", report.summary()
        # The hard limit is 1.25 x the budget; stopping and releasing take a little more.
        assert report.seconds < 2.5 + 1.5, report.summary()
        reports.append(report)
        state = stack.state("direct_routing")
        assert state is not None
        if state["watermark"] == "2026-10-21T11:00:00Z" and state["settled"] == (
            "2026-10-19T00:00:00Z"
        ):
            break
    first = reports[0]
    # The first run cannot know the density: it starts all 10 windows, too many to finish;
    # at the hard limit it stops the ones still reading but one, which it finishes...
    assert first.cut_off >= 3 and first.windows >= 1, first.summary()
    # ...and later runs, knowing it (2,300 rows a day), take on what they can finish.
    assert sum(r.cut_off > 0 for r in reports) <= 2, [r.summary() for r in reports]
    assert all(r.windows > 0 for r in reports[2:]), [r.summary() for r in reports]
    assert state is not None and state["claims"] == [] and state["owner"] is None
    assert state["rowsPerDay"] == 2300
    assert_archive_matches(stack, "direct_routing", "2026-10-12T00:00:00Z", "2026-10-21T11:00:00Z")
    settled = [n for n in stack.blobs() if "/settle-" in n and "direct_routing" in n]
    assert len(settled) == 7  # one blob per settled day, nothing left half-done


def test_sparse_backfill_uses_few_large_windows(stack: Stack) -> None:
    stack.tenant.rows_per_day.update(sms=3)
    as_of = "2026-10-23T12:30:00Z"
    assert stack.run(as_of, COLLECTOR_SOURCES="sms", COLLECTOR_START="2026-08-01") == 0
    windows = stack.graph.simulator.windows
    settle = [(a, b) for _, a, b in windows if b <= parse_ticks("2026-10-21T00:00:00Z")]
    # 81 settled days in settle windows of 1, 2, 4, 8, 16, 32, 18 days; then 3 provisional.
    assert len(settle) == 7 and len(windows) == 10
    assert max(b - a for a, b in settle) <= 90 * 86_400 * 10_000_000
    assert_archive_matches(stack, "sms", "2026-08-01T00:00:00Z", SECOND_END)
    manifests = [n for n in stack.blobs() if n.startswith("_manifests/sms/")]
    assert len(manifests) == 81  # Aug 1 .. Oct 20, each marked settled


def test_a_first_backfill_goes_wide_once_a_first_page_has_a_next_link(stack: Stack) -> None:
    # 2,500 rows a day: three pages. The first settle window reads alone until a page shows
    # that windows need more than one; its first page already does (rows and a nextLink), so
    # the other settle days start before that window's third page is even asked for.
    stack.tenant.rows_per_day.update(sms=2_500)
    stack.graph.simulator.latency = 0.1
    assert stack.run(SECOND, COLLECTOR_SOURCES="sms", COLLECTOR_START="2026-10-15") == 0
    arrivals = [(params[13:23], skip) for source, params, skip in stack.graph.simulator.arrivals]
    first_page = arrivals.index(("2026-10-15", 0))
    third_page = arrivals.index(("2026-10-15", 2000))
    settle_days = ("2026-10-16", "2026-10-17", "2026-10-18", "2026-10-19", "2026-10-20")
    for day in settle_days:
        # Not before the probe window's first page (one window first), not after its third.
        assert first_page < arrivals.index((day, 0)) < third_page, (day, arrivals)
    assert_archive_matches(stack, "sms", "2026-10-15T00:00:00Z", SECOND_END)


def test_an_unfinished_settle_window_is_redone_shorter(stack: Stack) -> None:
    stack.container().create_container()
    stack.container().upload_blob(
        "_state/sms.json",
        json.dumps(
            {
                "source": "sms",
                "watermark": "2026-10-01T00:00:00Z",
                "settled": "2026-10-01T00:00:00Z",
                "owner": None,
                "leaseUntil": None,
                "claims": [
                    {
                        "kind": "settle",
                        "start": "2026-10-01T00:00:00Z",
                        "end": "2026-10-11T00:00:00Z",
                    }
                ],
            }
        ),
    )
    assert stack.run(SECOND, COLLECTOR_SOURCES="sms") == 0
    settle = [
        w for w in stack.graph.simulator.windows if w[2] <= parse_ticks("2026-10-21T00:00:00Z")
    ]
    first = min(settle, key=lambda w: w[1])
    assert (first[1], first[2]) == (
        parse_ticks("2026-10-01T00:00:00Z"),
        parse_ticks("2026-10-02T00:00:00Z"),  # restarted small, then grows again
    )
    assert_archive_matches(stack, "sms", "2026-10-01T00:00:00Z", SECOND_END)
