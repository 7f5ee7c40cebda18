"""The Graph client's paging and error handling, end to end against the simulator."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import aiohttp
import pytest

from collector.core.auth import TokenProvider, credential_factory
from collector.core.errors import GraphError
from collector.core.settings import load_settings
from collector.core.sources import SOURCES
from collector.core.timefmt import parse_instant
from collector.core.windows import Window
from collector.graph.client import GraphClient, RequestStats, RetryPolicy, retry_after_seconds
from collector.observe.reports import RunReport
from collector.run.runner import run_cycle
from devstack.graph_simulator import Fault

from .conftest import Stack, assert_archive_matches

AS_OF = "2026-10-21T12:00:00Z"
START = "2026-10-20T00:00:00Z"
END = "2026-10-21T11:00:00Z"


def test_empty_page_with_next_link_is_followed(stack: Stack) -> None:
    stack.graph.simulator.add_fault(Fault("empty", count=2, source="direct_routing", after=1))
    assert stack.run(AS_OF, COLLECTOR_SOURCES="direct_routing") == 0
    assert_archive_matches(stack, "direct_routing", START, END)
    assert stack.graph.simulator.stats["fault:empty"] == 2


def test_repeated_next_link_fails_the_window(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.graph.simulator.add_fault(Fault("loop", count=-1, source="direct_routing"))
    assert stack.run(AS_OF, COLLECTOR_SOURCES="direct_routing") == 1
    assert "nextLink repeats an earlier page" in capsys.readouterr().out
    assert stack.watermark("direct_routing") == START
    assert not [n for n in stack.blobs() if not n.startswith("_")]


def test_slow_page_times_out_and_is_retried(stack: Stack) -> None:
    stack.graph.simulator.add_fault(Fault("slow", count=1, delay=3.0, source="sms"))
    assert stack.run(AS_OF, COLLECTOR_SOURCES="sms", GRAPH_TIMEOUT_SECONDS="1") == 0
    assert_archive_matches(stack, "sms", START, END)
    assert stack.graph.simulator.stats["requests:sms"] == 3  # 2 windows + 1 retry


def test_page_that_is_not_json_fails_the_window_and_commits_nothing(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.graph.simulator.add_fault(Fault("garbage", count=1, source="pstn", after=1))
    assert stack.run(AS_OF, COLLECTOR_SOURCES="pstn", COLLECTOR_WINDOWS_IN_FLIGHT="1") == 1
    line = capsys.readouterr().out
    assert "pstn window [2026-10-20T00:00:00Z, 2026-10-21T00:00:00Z) page 2" in line
    assert "not JSON" in line and "request-id" in line
    assert not [n for n in stack.blobs() if not n.startswith("_")]
    assert stack.watermark("pstn") == START
    assert stack.run(AS_OF, COLLECTOR_SOURCES="pstn") == 0  # the fault is gone: catches up
    assert_archive_matches(stack, "pstn", START, END)


def test_retries_are_bounded(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.graph.simulator.add_fault(Fault("503", count=-1, retry_after=0, source="sms"))
    assert stack.run(AS_OF, COLLECTOR_SOURCES="sms", COLLECTOR_WINDOWS_IN_FLIGHT="1") == 1
    assert f"after {RetryPolicy().max_attempts} attempts" in capsys.readouterr().out
    assert stack.graph.simulator.stats["requests:sms"] == RetryPolicy().max_attempts


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    assert [policy.backoff(n, 1.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.backoff(3, 0.0) == 2.0


def test_next_link_to_another_host_is_refused(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.graph.simulator.add_fault(Fault("foreign", source="direct_routing"))
    assert (
        stack.run(AS_OF, COLLECTOR_SOURCES="direct_routing", COLLECTOR_WINDOWS_IN_FLIGHT="1") == 1
    )
    assert "@odata.nextLink leaves http://127.0.0.1" in capsys.readouterr().out
    assert stack.graph.simulator.stats["requests"] == 1  # the token never went to 127.0.0.2


def test_rows_shifted_across_a_page_boundary_are_written_once(stack: Stack) -> None:
    # Offset paging: rows arriving meanwhile push the next page back by 7 rows.
    stack.graph.simulator.add_fault(Fault("shift", count=2, shift=7, source="direct_routing"))
    assert stack.run(AS_OF, COLLECTOR_SOURCES="direct_routing") == 0
    assert_archive_matches(stack, "direct_routing", START, END)


def read_sms_day(stack: Stack, slept: list[float]) -> tuple[list[object], RequestStats]:
    """Read Oct 20's SMS window with the real client, recording sleeps instead of sleeping."""
    settings = load_settings({**stack.env, "COLLECTOR_SOURCES": "sms"})
    stats = RequestStats()

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def collect() -> list[object]:
        tokens = TokenProvider(credential_factory(None), settings.graph_scope)
        try:
            async with aiohttp.ClientSession() as session:
                client = GraphClient(session, tokens, settings.graph_endpoint, sleep=record)
                window = Window(parse_instant(START), parse_instant("2026-10-21T00:00:00Z"))
                return [
                    r async for p in client.pages(SOURCES["sms"], window, stats) for r in p.rows
                ]
        finally:
            await tokens.close()

    return asyncio.run(collect()), stats


def test_retry_after_is_honoured_in_full(stack: Stack) -> None:
    stack.graph.simulator.add_fault(Fault("429", count=2, retry_after=7, source="sms"))
    slept: list[float] = []
    rows, stats = read_sms_day(stack, slept)
    assert slept == [7.0, 7.0]
    assert stats.throttled == 2 and stats.retries == 2
    day = stack.tenant.rows_between(
        "sms", parse_instant(START), parse_instant("2026-10-21T00:00:00Z")
    )
    assert rows == day


def test_a_request_that_would_wait_too_long_fails_instead(stack: Stack) -> None:
    stack.graph.simulator.add_fault(Fault("429", count=-1, retry_after=400, source="sms"))
    slept: list[float] = []
    with pytest.raises(GraphError, match="HTTP 429 TooManyRequests after 2 attempts"):
        read_sms_day(stack, slept)
    assert slept == [400.0]  # a second 400 s wait would pass the 600 s limit


def _collect_with_budget(stack: Stack, per_log: int, per_app: int) -> RunReport:
    settings = load_settings(
        {
            **stack.env,
            "GRAPH_REQUESTS_PER_MINUTE_PER_LOG": str(per_log),
            "GRAPH_REQUESTS_PER_MINUTE": str(per_app),
        }
    )
    # Graph's minute scaled down to 2 s, on both sides.
    return asyncio.run(
        run_cycle(settings, parse_instant("2026-10-22T06:00:00Z"), budget_period=2.0)
    )


def test_the_client_budget_keeps_graph_from_throttling(stack: Stack) -> None:
    sim = stack.graph.simulator
    sim.throttle(per_log=6, per_app=10, period=2.0)
    report = _collect_with_budget(stack, per_log=6, per_app=10)
    assert report.ok and sim.stats["throttled"] == 0
    assert sum(r.stats.requests for r in report.sources) > 10  # more than one span allows
    for source in ("sms", "direct_routing", "pstn"):
        assert_archive_matches(stack, source, START, "2026-10-22T05:00:00Z")


def test_without_the_budget_graph_throttles_and_retry_after_recovers(stack: Stack) -> None:
    sim = stack.graph.simulator
    sim.throttle(per_log=6, per_app=10, period=2.0)
    report = _collect_with_budget(stack, per_log=1000, per_app=10000)
    assert report.ok and sim.stats["throttled"] > 0
    assert sum(r.stats.throttled for r in report.sources) == sim.stats["throttled"]
    for source in ("sms", "direct_routing", "pstn"):
        assert_archive_matches(stack, source, START, "2026-10-22T05:00:00Z")


def test_the_next_page_is_requested_while_this_one_is_processed(stack: Stack) -> None:
    sim = stack.graph.simulator
    settings = load_settings({**stack.env, "COLLECTOR_SOURCES": "direct_routing"})
    window = Window(parse_instant(START), parse_instant("2026-10-21T00:00:00Z"))
    seen: list[int] = []

    async def read(stop_after: int | None) -> int:
        tokens = TokenProvider(credential_factory(None), settings.graph_scope)
        try:
            async with aiohttp.ClientSession() as session:
                client = GraphClient(session, tokens, settings.graph_endpoint)
                before = sim.stats["requests"]
                async with aclosing(
                    client.pages(SOURCES["direct_routing"], window, RequestStats())
                ) as pages:
                    async for page in pages:
                        await asyncio.sleep(0.3)  # "processing" the page
                        seen.append(sim.stats["requests"] - before)
                        if page.number == stop_after:
                            break
                # Closing cancelled the request in flight: nothing is left running.
                assert asyncio.all_tasks() == {asyncio.current_task()}
                return int(sim.stats["requests"] - before)
        finally:
            await tokens.close()

    pages = -(-len(stack.tenant.rows_between("direct_routing", window.start, window.end)) // 1000)
    assert pages >= 3
    assert asyncio.run(read(None)) == pages
    # While page n was processed, page n+1 had already been asked for.
    assert seen == [*range(2, pages + 1), pages]
    seen.clear()
    sim.latency = 0.5
    assert asyncio.run(read(1)) == 2  # page 2 was in flight when the reader stopped
