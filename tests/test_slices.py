"""Pure planning of call records: hour slices past the lateness, the revisit due, Graph's
30-day edge, and what a day's blobs hold (from their metadata)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from collector.archive.records import DayHoldings, parse_versions, versions_text
from collector.core.slices import (
    due_revisit,
    graph_has_whole,
    near_graphs_edge,
    plan_slices,
    slice_horizon,
)
from collector.core.timefmt import parse_instant

DAY = date(2026, 10, 20)
HOUR, LAG, LATENESS = timedelta(hours=1), timedelta(minutes=60), timedelta(hours=48)
THIRTY = timedelta(days=30)


def at(text: str) -> datetime:
    return parse_instant(text)


def test_an_hour_is_read_once_it_is_past_the_lateness_and_slices_end_on_the_hour() -> None:
    assert slice_horizon(at("2026-10-23T12:30:00Z"), LAG, LATENESS) == at("2026-10-21T12:00:00Z")
    assert slice_horizon(at("2026-10-23T12:00:00Z"), LAG, LATENESS) == at("2026-10-21T12:00:00Z")
    # A lag longer than the lateness holds the horizon back instead.
    assert slice_horizon(at("2026-10-23T12:30:00Z"), timedelta(hours=50), LATENESS) == at(
        "2026-10-21T10:00:00Z"
    )
    slices = plan_slices(at("2026-10-20T22:30:00Z"), at("2026-10-21T02:00:00Z"))
    assert [(s.start.hour, s.start.minute, s.end.hour) for s in slices] == [
        (22, 30, 23), (23, 0, 0), (0, 0, 1), (1, 0, 2),
    ]  # fmt: skip
    assert all(s.end - s.start <= HOUR for s in slices)
    assert plan_slices(at("2026-10-21T02:00:00Z"), at("2026-10-21T02:00:00Z")) == []


def test_the_latest_age_passed_is_due_once_and_never_one_before_the_first_read() -> None:
    ages = (3, 7, 14, 28)
    now = at("2026-10-24T00:30:00Z")  # 3 days after Oct 20 ended, lag not yet passed
    assert due_revisit(DAY, now, LAG, ages, ()) is None
    now = at("2026-10-24T01:00:00Z")
    assert due_revisit(DAY, now, LAG, ages, ()) == 3
    assert due_revisit(DAY, now, LAG, ages, (3,)) is None
    # Missed (the app was stopped): only the latest age passed is made, once.
    now = at("2026-10-30T12:00:00Z")
    assert due_revisit(DAY, now, LAG, ages, ()) == 7
    assert due_revisit(DAY, now, LAG, ages, (7,)) is None
    assert due_revisit(DAY, now, LAG, ages, (14,)) is None
    # A day first read at 9 days old (a backfill) is not revisited at 7 days.
    first = at("2026-10-30T06:00:00Z")
    assert due_revisit(DAY, now, LAG, ages, (), first) is None
    assert due_revisit(DAY, at("2026-11-04T01:00:00Z"), LAG, ages, (), first) == 14
    assert due_revisit(DAY, now, LAG, (), ()) is None


def test_graphs_edge_a_day_before_it_deletes_and_whole_days_while_it_has_them() -> None:
    now = at("2026-11-19T10:00:00Z")
    # Graph deletes what ended 30 days ago; the last day before that is its edge.
    assert near_graphs_edge(at("2026-10-21T09:59:59Z"), now, THIRTY)
    assert not near_graphs_edge(at("2026-10-21T10:00:00Z"), now, THIRTY)
    assert graph_has_whole(DAY, at("2026-11-18T23:59:59Z"), THIRTY)
    assert not graph_has_whole(DAY, at("2026-11-19T00:00:00Z"), THIRTY)


def test_a_day_holds_a_version_or_a_later_one_and_parts_go_on_from_the_last_page() -> None:
    keys = [("a", 1), ("b", None), ("c", 12)]
    assert list(parse_versions(versions_text(keys))) == keys
    assert len(versions_text([(f"{n:036d}", 1234) for n in range(100)])) < 8_192 - 512
    day = DayHoldings()
    for key, version in keys:
        day.add(key, version)
    assert day.holds("a", 1) and not day.holds("a", 2) and day.holds("c", 3)
    assert day.holds("b", None) and day.holds("b", 5) is False and not day.holds("z", None)
    assert day.rows == 3
    meta = {"callRecord": "m", "version": "4", "relation": "sessions", "rows": "300"}
    assert day.note(
        "x/day=20/sessions/sessions-r-00001.jsonl", {**meta, "pages": "5", "next": "L5"}
    )
    assert day.note("x/day=20/sessions/sessions-r-00002.jsonl", {**meta, "pages": "9", "next": ""})
    assert day.note(
        "x/day=20/sessions/sessions-q-00001.jsonl", {**meta, "pages": "2", "next": "L2"}
    )
    found = day.parts_of("m")
    assert found is not None
    version, progress = found
    assert version == 4 and progress["sessions"].rows == 900
    assert (progress["sessions"].pages, progress["sessions"].next) == (9, None)  # read whole
    assert "m" not in day.versions  # its line is not committed yet: not held
    assert not day.note("x/day=20/settle-2026-10-20.jsonl", {"rows": "3"})  # read its lines
