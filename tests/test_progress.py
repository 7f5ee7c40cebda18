"""Progress on long work: live bars in a terminal, a line per source every so often in logs."""

from __future__ import annotations

import itertools
import logging
import os
import pty
import re
import subprocess
import sys
from collections import defaultdict

import pytest

from collector.core.settings import load_settings
from collector.core.slices import plan_slices
from collector.core.timefmt import parse_instant
from collector.core.windows import Window, plan_windows
from collector.graph.budget import CALL_RECORDS_PER_APP, records_span
from collector.graph.pace import Pace
from collector.observe.progress import LogView, SourceProgress, needs
from collector.observe.reports import SourceReport
from collector.run.runner import run_cycle

from .conftest import FIRST, ROOT, SECOND, Stack, run_async

LONG_START = "2026-09-01T00:00:00Z"
"""A catch-up of seven weeks: settle windows, then a few days of provisional ones."""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def long_catch_up(stack: Stack) -> None:
    """Seven weeks to read at 30 ms a page, with a request budget that does not slow it."""
    stack.env.update(
        COLLECTOR_START=LONG_START,
        GRAPH_REQUESTS_PER_MINUTE_PER_LOG="6000",
        GRAPH_REQUESTS_PER_MINUTE="20000",
    )
    stack.graph.simulator.latency = 0.03


def test_call_records_need_the_call_record_budget_for_two_requests_a_record() -> None:
    report = SourceReport("call_records")
    span = records_span(CALL_RECORDS_PER_APP)  # 20.3 s: 1,500 requests
    progress = SourceProgress(report, Pace(40_000, 50 / 61, 0.0), 1_500 / span)
    slices = plan_slices(parse_instant("2026-10-20T00:00:00Z"), parse_instant(FIRST))
    progress.plan_windows(slices)  # Oct 20 and half of Oct 21, in hours
    for piece in slices[:24]:
        progress.read(piece, provisional=True)
    # Half a day of 40,000 records left: 20,000 GETs, 20,000 participants' pages, 333 lists.
    expected = 20_000 * (2 + 1 / 60) / (1_500 / span)
    assert progress.budget_seconds_needed() == pytest.approx(expected)
    assert "budget needs ~10m more" in progress.line()  # 40,333 requests at 74 a second


def test_a_source_s_line_says_what_is_done_and_what_the_budget_still_needs() -> None:
    report = SourceReport("pstn")
    progress = SourceProgress(report, Pace(None, 50 / 61, 0.0), 50 / 61)
    windows = plan_windows(parse_instant("2026-10-21T00:00:00Z"), parse_instant(SECOND))
    progress.plan_windows(windows)
    progress.plan_settle(
        parse_instant("2026-10-01T00:00:00Z"), parse_instant("2026-10-21T00:00:00Z")
    )
    assert progress.line() == (
        "windows 0/3, settled 0/20 days, 0 rows, 0 requests, "
        "budget needed: unknown until a day is read"
    )
    progress.pace.rows_per_day = 100_000  # 100 pages a day
    report.rows, report.stats.requests, report.settled_days = 2_000_000, 2_040, 20
    progress.read(Window(parse_instant("2026-10-01T00:00:00Z"), windows[0].start), False)
    progress.read(windows[0], provisional=True)
    # Left: Oct 22 and Oct 23 until 12:30, 1.52 days of 100 pages; 2 windows; 1 for the tail.
    pages = 100 * (1 + 12.5 / 24) + 2 + 1
    assert progress.budget_seconds_needed() == pytest.approx(pages / (50 / 61))
    assert progress.line() == (
        "windows 1/3, settled 20/20 days, 2,000,000 rows, 2,040 requests, budget needs ~4m more"
    )
    assert needs(7_300) == "budget needs ~2h02m more"
    assert needs(0.2) == "budget needs nothing more"


def test_a_daily_report_needs_a_request_a_day_however_few_its_rows() -> None:
    report = SourceReport("pstn_dialout_report")
    progress = SourceProgress(report, Pace(150, 50 / 61, 0.0), 50 / 61)
    progress.plan_settle(
        parse_instant("2026-07-01T00:00:00Z"), parse_instant("2026-10-01T00:00:00Z")
    )
    day = parse_instant("2026-07-01T00:00:00Z")
    for first in plan_windows(day, parse_instant("2026-08-02T00:00:00Z")):  # 32 days read
        progress.read(first, provisional=False)
    # 60 days left of 150 rows would be 9 pages; it is 60 one-day requests.
    assert progress.budget_seconds_needed() == pytest.approx(60 / (50 / 61))


def test_a_long_catch_up_logs_one_progress_line_per_source_at_most_every_interval(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    long_catch_up(stack)
    interval = 0.5
    settings = load_settings(stack.env)
    with caplog.at_level(logging.INFO, logger="collector"):
        report = run_async(run_cycle(settings, parse_instant(SECOND), progress=LogView(interval)))
    assert report.ok
    lines: dict[str, list[logging.LogRecord]] = defaultdict(list)
    for record in caplog.records:
        match = re.fullmatch(r"(\w+): progress: (.*)", record.getMessage())
        if match:
            lines[match[1]].append(record)
    assert set(lines) == {"sms", "direct_routing", "pstn"}
    for source, records in lines.items():
        assert len(records) >= 2, source
        gaps = [b.created - a.created for a, b in itertools.pairwise(records)]
        assert min(gaps) >= interval * 0.9, (source, gaps)
        first = records[0].getMessage()
        assert re.search(r"windows \d+/3, settled \d+/50 days, [\d,]+ rows, [\d,]+ requests", first)
        assert "budget" in first
        rows = [
            int(re.findall(r"([\d,]+) rows", r.getMessage())[0].replace(",", "")) for r in records
        ]
        final = {r.source: r.rows for r in report.sources}[source]
        assert rows == sorted(rows) and rows[-1] <= final, (rows, final)


def test_a_short_run_logs_no_progress_at_all(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="collector"):
        assert stack.run(FIRST) == 0
    assert not [r for r in caplog.records if ": progress: " in r.getMessage()]


def in_terminal(stack: Stack, as_of: str) -> tuple[int, str, bytes]:
    """Run ``python -m collector run`` with its stderr on a pseudo-terminal: the exit code,
    what the terminal received, and stdout."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--as-of", as_of],
        cwd=ROOT,
        env={**os.environ, **stack.env, "COLUMNS": "200", "TERM": "xterm-256color"},
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    screen = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's last writer has gone
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    summary, _ = process.communicate(timeout=60)
    return process.returncode, screen.decode(errors="replace"), summary


def test_a_terminal_gets_live_bars_per_source(stack: Stack) -> None:
    long_catch_up(stack)
    code, drawn, summary = in_terminal(stack, SECOND)
    assert code == 0, drawn
    redraws = drawn.count("\x1b[2K")  # rich erases the bars' lines to draw them again
    assert redraws > 3 * 5, drawn[-2000:]
    assert drawn.rstrip().endswith("\x1b[?25h")  # the cursor is given back
    text = ANSI.sub("", drawn)
    for source in ("sms", "direct_routing", "pstn"):
        assert re.search(rf"{source}\s+━+", text), source
    assert re.search(r"windows 3/3, settled 50/50 days, [\d,]+ rows, [\d,]+ requests", text)
    assert "window (settle)" in text  # log lines print above the bars, not through them
    assert b"pstn: ok" in summary  # the summary goes to stdout as before


def test_a_run_refused_before_it_starts_leaves_the_terminal_as_it_was(stack: Stack) -> None:
    stack.env.update(COLLECTOR_START="2024-01-01")  # older than Graph keeps: refused
    code, drawn, _ = in_terminal(stack, SECOND)
    assert code == 2
    assert "\x1b[?25l" not in drawn  # the cursor was never hidden
    assert "configuration error: setting COLLECTOR_START='2024-01-01T00:00:00Z' is not" in drawn
