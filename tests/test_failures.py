"""Failures stay contained: faults are retried, a failing source fails alone and catches up
later, bad data commits nothing, and bad settings are refused before anything is written."""

from __future__ import annotations

import json

import pytest

from devstack.graph_simulator import Fault

from .conftest import (
    ALL,
    FIRST,
    SECOND,
    SECOND_END,
    START,
    Stack,
    assert_archive_matches,
)


def test_transient_faults_still_give_a_complete_result(stack: Stack) -> None:
    sim = stack.graph.simulator
    sim.add_fault(Fault("429", count=2, retry_after=1, source="direct_routing", after=2))
    sim.add_fault(Fault("503", count=2, source="pstn", after=1))
    sim.add_fault(Fault("drop", count=2, source="sms", after=1))
    sim.add_fault(Fault("504", count=1, retry_after=1, source="direct_routing", after=5))
    assert stack.run(SECOND) == 0
    blobs = stack.blobs()
    for source in ALL:
        assert_archive_matches(stack, source, START, SECOND_END, blobs)
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
    assert stack.run(SECOND) == 1
    out = capsys.readouterr().out
    sms_line = next(line for line in out.splitlines() if line.startswith("sms:"))
    assert "failed" in sms_line and "HTTP 403 Forbidden" in sms_line and "request-id" in sms_line
    assert stack.watermark("sms") == START  # claimed, never advanced
    blobs = stack.blobs()
    assert not [n for n in blobs if n.startswith("sms/")]
    for source in ("direct_routing", "pstn"):
        assert_archive_matches(stack, source, START, SECOND_END, blobs)
    # Once Graph grants access again, the source catches up by itself.
    stack.graph.simulator.clear_faults()
    assert stack.run(SECOND) == 0
    assert_archive_matches(stack, "sms", START, SECOND_END)


def test_revoked_token_is_refreshed_once(stack: Stack) -> None:
    sim = stack.graph.simulator
    sim.add_fault(Fault("revoke", count=1, source="sms", after=2))
    assert stack.run(SECOND, COLLECTOR_SOURCES="sms") == 0
    assert_archive_matches(stack, "sms", START, SECOND_END)
    assert sim.stats["unauthorized"] >= 1  # one per window in flight at the revocation
    assert stack.graph.authority.issued == 2  # the first token and ONE refresh, shared


def test_token_rejected_twice_fails_the_source(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.graph.simulator.add_fault(
        Fault("status", count=-1, source="pstn", status=401, code="InvalidAuthenticationToken")
    )
    assert stack.run(SECOND, COLLECTOR_SOURCES="pstn") == 1
    out = capsys.readouterr().out
    assert "HTTP 401 InvalidAuthenticationToken" in out
    # Each request refreshes at most once, then gives up; windows that meet the same rejected
    # token share one refresh, and a window that starts later may refresh the refreshed one.
    arrivals = stack.graph.simulator.arrivals
    issued, windows = stack.graph.authority.issued, len({p for _, p, skip in arrivals if skip == 0})
    assert 2 <= issued <= 1 + windows, (issued, windows)


def test_long_outage_of_one_source_then_recovery(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = stack.graph.simulator
    sim.add_fault(Fault("503", count=-1, retry_after=0, source="sms"))
    for hour in ("06", "12", "18"):
        assert stack.run(f"2026-10-22T{hour}:00:00Z") == 1
        out = capsys.readouterr().out
        sms = next(line for line in out.splitlines() if line.startswith("sms:"))
        assert "failed" in sms and "HTTP 503 ServiceUnavailable" in sms and "request-id" in sms
        assert stack.watermark("sms") == START
        assert "direct_routing: ok" in out and "pstn: ok" in out
        end = f"2026-10-22T{int(hour) - 1:02d}:00:00Z"
        for source in ("direct_routing", "pstn"):
            assert_archive_matches(stack, source, START, end)
    sim.clear_faults()
    assert stack.run("2026-10-23T00:00:00Z") == 0
    for source in ("sms", "direct_routing", "pstn"):
        assert_archive_matches(stack, source, START, "2026-10-22T23:00:00Z")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", None, "has no 'id'"),
        ("startDateTime", None, "has no 'startDateTime'"),
        ("startDateTime", "21/11/2026 10:00", "unreadable startDateTime"),
        ("startDateTime", "2026-10-21T10:00:00", "without a time zone"),
    ],
)
def test_bad_rows_fail_the_window_and_commit_nothing(
    stack: Stack, capsys: pytest.CaptureFixture[str], field: str, value: str | None, message: str
) -> None:
    stack.graph.simulator.add_fault(
        Fault("corrupt", source="pstn", after=1, field=field, value=value)
    )
    assert stack.run(FIRST, COLLECTOR_SOURCES="pstn", COLLECTOR_WINDOWS_IN_FLIGHT="1") == 1
    line = capsys.readouterr().out
    assert (
        message in line
        and "pstn window [2026-10-20T00:00:00Z, 2026-10-21T00:00:00Z) page 2" in line
    )
    assert "request-id" in line and "nothing of this window was committed" in line
    assert not [n for n in stack.blobs() if n.startswith("pstn/")]
    assert stack.watermark("pstn") == START


def test_randomized_fault_soak_is_complete_and_duplicate_free(stack: Stack) -> None:
    """Every data request has a 25 % chance of a 429, 503, 504, reset, slow page or empty
    page, over four simulated days of hourly runs (provisional and settle passes)."""
    sim = stack.graph.simulator
    sim.chaos(
        0.25,
        seed=2026,
        menu=(
            Fault("429", retry_after=0),
            Fault("503"),
            Fault("504", retry_after=0),
            Fault("drop"),
            Fault("slow", delay=0.05),
            Fault("empty"),
        ),
    )
    failures = 0
    runs = 0
    for hour in range(1, 24 * 4):
        day, at = divmod(hour, 24)
        code = stack.run(f"2026-10-{20 + day:02d}T{at:02d}:00:00Z")
        runs += 1
        failures += code != 0
    sim.chaos(0.0, seed=0, menu=(Fault("503"),))
    assert stack.run("2026-10-24T00:00:00Z") == 0
    for source in ("sms", "direct_routing", "pstn"):
        assert_archive_matches(stack, source, START, "2026-10-23T23:00:00Z")
    faults = {k: v for k, v in sim.stats.items() if k.startswith("fault:")}
    print(
        f"\nsoak: {runs} runs, {sim.stats['requests']} requests, {sum(faults.values())} faults "
        f"survived {dict(sorted(faults.items()))}, {failures} runs with a failed source"
    )
    assert sum(faults.values()) >= 50


def test_a_live_lease_makes_the_other_run_yield(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    held_until = "2099-01-01T00:00:00Z"
    stack.container().create_container()
    stack.container().upload_blob(
        "_state/pstn.json",
        json.dumps(
            {
                "source": "pstn",
                "watermark": START,
                "settled": START,
                "claims": None,
                "owner": "other-host",
                "leaseUntil": held_until,
            }
        ),
    )
    assert stack.run(SECOND, COLLECTOR_SOURCES="pstn") == 0
    line = capsys.readouterr().out
    assert "pstn: yielded" in line and "other-host" in line
    assert stack.graph.simulator.stats["requests"] == 0
    # Once that lease has lapsed, the source is collected as usual.
    state = stack.state("pstn")
    assert state is not None
    state["leaseUntil"] = "2026-01-01T00:00:00Z"
    stack.container().upload_blob("_state/pstn.json", json.dumps(state), overwrite=True)
    assert stack.run(SECOND, COLLECTOR_SOURCES="pstn") == 0
    assert_archive_matches(stack, "pstn", START, SECOND_END)


def test_start_older_than_graph_keeps_is_refused(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.run(SECOND, COLLECTOR_START="2025-09-01") == 2
    err = capsys.readouterr().err
    assert "COLLECTOR_START='2025-09-01T00:00:00Z'" in err and "365 days" in err
    assert stack.graph.simulator.stats["requests"] == 0
    assert not stack.container().exists()  # nothing written
    # Sources with a watermark ignore the start: a year after its backfill began, an app
    # that still has the setting keeps running...
    assert stack.run(SECOND, COLLECTOR_SOURCES="sms,pstn") == 0
    old_start = {"COLLECTOR_START": "2025-09-01"}
    assert stack.run("2026-10-23T13:30:00Z", COLLECTOR_SOURCES="sms,pstn", **old_start) == 0
    # ...and a source added then fails alone, untouched, while the others go on.
    assert stack.run("2026-10-23T14:30:00Z", **old_start) == 1
    out = capsys.readouterr().out
    assert "direct_routing: failed" in out and "COLLECTOR_START" in out, out
    assert "sms: ok" in out and "pstn: ok" in out
    assert stack.state("direct_routing") is None
    assert stack.watermark("pstn") == "2026-10-23T13:30:00Z"
