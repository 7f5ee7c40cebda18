"""The dial-out report end to end: one report per whole UTC day past the lateness horizon,
written once under that day, rows as Graph returned them and consistent with the PSTN log's
conference dial-out calls of the same day."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from collector.cli import main
from collector.core.timefmt import to_ticks
from devstack.graph_simulator import Fault

from .conftest import SECOND, Stack, data_rows, kill_after_write

REPORT = "pstn_dialout_report"
LATER = "2026-10-25T12:30:00Z"
"""Two days after ``SECOND``: the 48 h horizon has moved from Oct 21 to Oct 23."""


def day_folder(day: date, source: str = REPORT) -> str:
    return f"{source}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def assert_reported(stack: Stack, days: list[date]) -> dict[str, bytes]:
    """Assert the archive holds exactly one report blob for each of ``days`` and for no other
    day, each with the rows Graph serves for that whole day, in its order and unchanged."""
    blobs = stack.blobs()
    reports = sorted(n for n in blobs if n.startswith(f"{REPORT}/"))
    assert reports == [f"{day_folder(d)}settle-{d.isoformat()}.jsonl" for d in days]
    for day, name in zip(days, reports, strict=True):
        served = stack.tenant.rows_between(REPORT, midnight(day), midnight(day) + timedelta(1))
        assert served, f"no dial-out on {day}: the test tenant should have some"
        assert [json.loads(line) for line in blobs[name].splitlines()] == served
        manifest = json.loads(blobs[f"_manifests/{REPORT}/{day.isoformat()}.json"])
        assert manifest["lateRows"] == 0  # a report has no provisional rows to be late to
        assert manifest["rows"] == len(served) and manifest["blobs"] == [
            {"name": name, "rows": len(served)}
        ]
    return blobs


def requested_days(stack: Stack) -> list[tuple[int, int]]:
    """The (fromDateTime, toDateTime) ticks of every report the collector asked Graph for."""
    return [
        (start, end) for source, start, end in stack.graph.simulator.windows if source == REPORT
    ]


def whole_day(day: date) -> tuple[int, int]:
    return to_ticks(midnight(day)), to_ticks(midnight(day) + timedelta(days=1))


def test_one_report_per_whole_day_past_the_lateness_consistent_with_the_pstn_log(
    stack: Stack,
) -> None:
    stack.env.update(COLLECTOR_SOURCES=f"pstn,{REPORT}")
    assert stack.run(SECOND) == 0
    # Oct 20 is the only day past the 48 h horizon: Oct 21 onwards would be partial totals.
    assert_reported(stack, [date(2026, 10, 20)])
    assert requested_days(stack) == [whole_day(date(2026, 10, 20))]
    assert main(["status", "--as-of", SECOND], stack.env) == 0

    # A dial-out call Graph ingests late, on a day not yet reported: its report includes it.
    late = stack.tenant.add_row("pstn", "2026-10-22T09:00:00.5Z")
    late["callType"] = "conf_out"
    assert stack.run(LATER) == 0
    days = [date(2026, 10, 20), date(2026, 10, 21), date(2026, 10, 22)]
    blobs = assert_reported(stack, days)
    # Each day asked for once, whole; Oct 20 not again.
    assert sorted(requested_days(stack)) == [whole_day(d) for d in days]

    for day in days:
        calls = [
            row
            for name, row in data_rows(blobs, "pstn")
            if name.startswith(day_folder(day, "pstn")) and row["callType"] == "conf_out"
        ]
        report = [
            json.loads(line) for line in blobs[f"{day_folder(day)}settle-{day}.jsonl"].splitlines()
        ]
        calls_per_user = Counter(c["userPrincipalName"] for c in calls)
        reported_per_user: Counter[str] = Counter()
        for row in report:
            reported_per_user[row["userPrincipalName"]] += row["totalCalls"]
        assert reported_per_user == calls_per_user, day
        assert sum(r["totalCallSeconds"] for r in report) == sum(c["duration"] for c in calls)
        charged = sum(c["charge"] + c["connectionCharge"] for c in calls)
        assert abs(sum(r["totalCallCharge"] for r in report) - charged) < 0.001 * len(report)
    assert late["id"] in {row["id"] for _, row in data_rows(blobs, "pstn")}

    assert main(["verify"], stack.env) == 0
    assert main(["status", "--as-of", LATER], stack.env) == 0
    # With no run since, the report goes stale like any log, only later: its watermark
    # (Oct 23) may lag max(lag, lateness) + 1 day + 3 h = 75 h, the PSTN log's 4 h.
    report_only = {**stack.env, "COLLECTOR_SOURCES": REPORT}
    assert main(["status", "--as-of", "2026-10-26T02:59:00Z"], report_only) == 0
    assert main(["status", "--as-of", "2026-10-26T03:01:00Z"], report_only) == 1


def test_a_report_needs_a_lateness_and_reads_whole_days_from_a_start_within_one(
    stack: Stack, capsys: Any
) -> None:
    # Without a lateness a day would be reported an hour after it ended, before Graph has
    # ingested its late calls: a wrong total, forever. Refused before anything is read.
    stack.env.update(COLLECTOR_SOURCES=f"pstn,{REPORT}", COLLECTOR_LATENESS_HOURS="0")
    assert stack.run(SECOND) == 2
    assert "COLLECTOR_LATENESS_HOURS" in capsys.readouterr().err
    assert stack.graph.simulator.stats["requests"] == 0 and not stack.blobs()

    stack.env.update(COLLECTOR_LATENESS_HOURS="6", COLLECTOR_START="2026-10-20T06:00:00Z")
    assert stack.run(SECOND) == 0  # reads to Oct 23 11:30, past 6 h: Oct 20-22 are whole
    days = [date(2026, 10, 20), date(2026, 10, 21), date(2026, 10, 22)]
    assert_reported(stack, days)
    assert sorted(requested_days(stack)) == [whole_day(d) for d in days]
    assert main(["status", "--as-of", SECOND], stack.env) == 0


def test_a_day_that_fails_is_reported_by_the_next_run_and_no_day_twice(
    stack: Stack, capsys: Any
) -> None:
    stack.env.update(COLLECTOR_SOURCES=REPORT, COLLECTOR_LATENESS_HOURS="6")
    stack.graph.simulator.add_fault(
        Fault(
            "status", status=403, code="Forbidden", source=REPORT, window="fromDateTime=2026-10-21"
        )
    )
    assert stack.run(SECOND) != 0
    assert f"{REPORT}: failed" in capsys.readouterr().out
    state = stack.state(REPORT)
    assert state is not None and state["settled"] == "2026-10-21T00:00:00Z"
    assert main(["status", "--as-of", SECOND], stack.env) != 0

    assert stack.run(SECOND) == 0
    assert_reported(stack, [date(2026, 10, 20), date(2026, 10, 21), date(2026, 10, 22)])
    assert main(["verify"], stack.env) == 0
    assert main(["status", "--as-of", SECOND], stack.env) == 0


def test_a_report_paged_with_repeats_is_archived_once_and_a_changed_group_is_refused(
    stack: Stack, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collector")
    stack.env.update(COLLECTOR_SOURCES=REPORT, COLLECTOR_LATENESS_HOURS="6")
    stack.graph.simulator.page_size = 40  # a day's report on several pages
    day = "fromDateTime=2026-10-21"
    # Offset paging repeats the last 5 rows of page 1 on page 2: archived once.
    stack.graph.simulator.add_fault(Fault("shift", source=REPORT, window=day))
    assert stack.run(SECOND) == 0
    assert stack.graph.simulator.stats["fault:shift"] == 1
    assert "5 rows of page 2 repeat a row read before in this window" in caplog.text
    assert_reported(stack, [date(2026, 10, 20), date(2026, 10, 21), date(2026, 10, 22)])

    # The next day, read while Graph's report changes: the repeated group comes back with
    # other totals. Nothing of the day is committed; the next run reads it again.
    stack.graph.simulator.add_fault(Fault("shift", source=REPORT, window="fromDateTime=2026-10-23"))
    stack.graph.simulator.add_fault(
        Fault(
            "corrupt",
            source=REPORT,
            field="totalCalls",
            value=999,
            window="fromDateTime=2026-10-23",
        )
    )
    assert stack.run("2026-10-24T12:30:00Z") == 1
    assert "repeats the group" in capsys.readouterr().out
    assert not [n for n in stack.blobs() if "day=23/" in n or n.endswith("2026-10-23.json")]
    assert stack.run("2026-10-24T12:30:00Z") == 0
    assert_reported(stack, [date(2026, 10, d) for d in (20, 21, 22, 23)])
    assert main(["verify"], stack.env) == 0


def test_a_report_day_killed_between_its_blob_and_its_manifest_is_finished_not_rewritten(
    stack: Stack,
) -> None:
    stack.env.update(COLLECTOR_SOURCES=REPORT, COLLECTOR_LEASE_SECONDS="1")
    kill_after_write(stack, SECOND, "/settle-2026-10-20", 2)  # its one block, then its commit
    blobs = stack.blobs()
    assert f"{day_folder(date(2026, 10, 20))}settle-2026-10-20.jsonl" in blobs
    assert f"_manifests/{REPORT}/2026-10-20.json" not in blobs
    time.sleep(1.1)  # the killed run's lease lapses
    assert stack.run(SECOND) == 0
    assert_reported(stack, [date(2026, 10, 20)])  # the blob as first committed, now final
    assert main(["verify"], stack.env) == 0
