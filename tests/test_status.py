"""``python -m collector status``: each source's health from storage alone, for an admin or a
monitoring probe."""

from __future__ import annotations

import json
import os
import signal

import pytest

from collector.cli import main
from devstack.graph_simulator import Fault

from .conftest import FIRST, SECOND, SECOND_END, Stack, spawn


def status(stack: Stack, *args: str, **env: str) -> int:
    return main(["status", *args], {**stack.env, **env})


def test_after_a_backfill_every_source_is_fresh_with_its_coverage(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.run(SECOND) == 0
    capsys.readouterr()
    assert status(stack, "--as-of", SECOND, "--days", "7") == 0
    out = capsys.readouterr().out
    assert "S settled  p provisional" in out
    for source in ("sms", "direct_routing", "pstn"):
        assert f"{source}: fresh" in out
    # Oct 17-19 before the start (nothing archived), Oct 20 settled, Oct 21-23 provisional.
    assert "  2026-10-17 ...Sppp 2026-10-23" in out
    assert f"watermark {SECOND_END} (1h00m behind)" in out
    assert "last run 2026-10-23T12:30:00Z: ok" in out
    assert status(stack, "--as-of", SECOND, "--days", "7", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    (pstn,) = [s for s in report["sources"] if s["source"] == "pstn"]
    assert pstn["fresh"] is True and pstn["lagSeconds"] == 3600
    assert pstn["settled"] == "2026-10-21T00:00:00Z"
    assert pstn["coverage"] == {"from": "2026-10-17", "days": "...Sppp", "expired": []}
    assert pstn["lastRun"]["outcome"] == "ok" and pstn["lastRun"]["rows"] > 0
    assert pstn["lease"] is None and pstn["claims"] == []


def test_a_failing_source_makes_status_exit_1_and_says_why(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.graph.simulator.add_fault(Fault("status", count=-1, source="sms", status=403))
    assert stack.run(SECOND) == 1
    capsys.readouterr()
    assert status(stack, "--as-of", SECOND) == 1
    out = capsys.readouterr().out
    assert "sms: NOT FRESH: never collected" in out or "sms: NOT FRESH" in out
    assert "last run failed" in out and "HTTP 403" in out
    assert "direct_routing: fresh" in out and "pstn: fresh" in out


def test_a_killed_run_shows_its_lease_and_a_growing_lag(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.env.update(COLLECTOR_SOURCES="pstn")
    assert stack.run(FIRST) == 0
    process = spawn(stack, SECOND)

    def kill(_total: int) -> None:
        os.kill(process.pid, signal.SIGKILL)

    stack.graph.simulator.on_request = kill
    process.communicate(timeout=120)
    stack.graph.simulator.on_request = None
    capsys.readouterr()
    # A day later nothing has run since: the watermark lags far beyond the limit.
    assert status(stack, "--as-of", "2026-10-24T12:00:00Z", "--json") == 1
    (pstn,) = json.loads(capsys.readouterr().out)["sources"]
    assert pstn["fresh"] is False and pstn["lagSeconds"] == 3 * 86_400 + 3600
    assert pstn["lease"]["owner"] and pstn["lease"]["until"]
    assert pstn["lastRun"]["at"] == "2026-10-21T12:00:00Z"  # the killed run recorded nothing
    assert "more than 4h00m" in pstn["problems"][0]


def test_bad_settings_or_arguments_exit_2(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert status(stack, COLLECTOR_SOURCES="fax") == 2
    assert "COLLECTOR_SOURCES" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        status(stack, "--days", "0")
    assert refused.value.code == 2
