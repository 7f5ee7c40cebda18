"""The Graph client's paging and error handling, end to end against the simulator."""

from __future__ import annotations

import pytest

from collector.graph import RetryPolicy, retry_after_seconds
from devstack.graph_simulator import Fault

from .conftest import Stack, assert_archive_matches

AS_OF = "2026-11-21T12:00:00Z"
START = "2026-11-20T00:00:00Z"
END = "2026-11-21T11:00:00Z"


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
    assert stack.run(AS_OF, COLLECTOR_SOURCES="pstn") == 1
    line = capsys.readouterr().out
    assert "pstn window [2026-11-20T00:00:00Z, 2026-11-21T00:00:00Z) page 2" in line
    assert "not JSON" in line and "request-id" in line
    assert not [n for n in stack.blobs() if not n.startswith("_")]
    assert stack.watermark("pstn") == START
    assert stack.run(AS_OF, COLLECTOR_SOURCES="pstn") == 0  # the fault is gone: catches up
    assert_archive_matches(stack, "pstn", START, END)


def test_retries_are_bounded(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.graph.simulator.add_fault(Fault("503", count=-1, retry_after=0, source="sms"))
    assert stack.run(AS_OF, COLLECTOR_SOURCES="sms") == 1
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
