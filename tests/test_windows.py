"""Window planning (pure): contiguous, half-open, cut at UTC midnight, never over a day."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.core.windows import (
    Window,
    balanced_days,
    floor_to_midnight,
    next_settle_days,
    plan_windows,
    run_bounds,
    run_end,
    settle_horizon,
    settle_window,
    usual_lag,
    window_days,
)

instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)


@given(instants, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=100)))
def test_windows_tile_the_range(start: datetime, length: timedelta) -> None:
    end = start + length
    windows = plan_windows(start, end)
    if start >= end:
        assert windows == []
        return
    assert windows[0].start == start and windows[-1].end == end
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start  # toDateTime exclusive: next starts exactly there
    for w in windows:
        assert w.end - w.start <= timedelta(days=1)
        assert w.start.date() == (w.end - timedelta(microseconds=1)).date()  # one UTC day


def test_windows_align_to_midnight() -> None:
    start = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)
    end = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    assert [str(w) for w in plan_windows(start, end)] == [
        "[2026-11-20T13:00:00Z, 2026-11-21T00:00:00Z)",
        "[2026-11-21T00:00:00Z, 2026-11-22T00:00:00Z)",
        "[2026-11-22T00:00:00Z, 2026-11-22T06:00:00Z)",
    ]


def test_window_names_are_deterministic() -> None:
    w = Window(datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 20, 11, 30, tzinfo=UTC))
    assert w.name == "20261120T000000Z-20261120T113000Z"


def test_invalid_windows_are_refused() -> None:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        Window(day, day)
    with pytest.raises(ValueError):
        Window(day, day + timedelta(days=91))
    with pytest.raises(ValueError):
        Window(datetime(2026, 1, 1), datetime(2026, 1, 2))


def test_run_end_subtracts_lag_and_floors_to_the_minute() -> None:
    now = datetime(2026, 11, 23, 12, 34, 56, 789, tzinfo=UTC)
    assert run_end(now, timedelta(minutes=60)) == datetime(2026, 11, 23, 11, 34, tzinfo=UTC)


def test_settle_horizon_is_the_midnight_lateness_after_a_day_ends() -> None:
    now = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
    end = run_end(now, timedelta(hours=1))
    assert settle_horizon(now, end, timedelta(hours=48)) == datetime(2026, 11, 21, tzinfo=UTC)
    assert settle_horizon(now, end, timedelta(hours=6)) == datetime(2026, 11, 23, tzinfo=UTC)
    assert settle_horizon(now, end, timedelta(0)) is None  # settling off
    # Never past what the run reads at all (a lag longer than the lateness).
    late_end = run_end(now, timedelta(days=3))
    assert settle_horizon(now, late_end, timedelta(hours=1)) == datetime(2026, 11, 20, tzinfo=UTC)


def test_a_daily_report_reads_only_whole_days_past_lag_and_lateness() -> None:
    now, hour = datetime(2026, 11, 23, 12, 30, tzinfo=UTC), timedelta(hours=1)
    events = run_bounds(now, hour, timedelta(hours=48), None, read_once=False)
    assert events.end == datetime(2026, 11, 23, 11, 30, tzinfo=UTC)
    assert events.horizon == datetime(2026, 11, 21, tzinfo=UTC)
    assert events.start == datetime(2026, 11, 22, tzinfo=UTC)
    report = run_bounds(now, hour, timedelta(hours=48), None, read_once=True)
    # Nothing provisional: the report ends where settling does, and starts a day before.
    assert report.end == report.horizon == datetime(2026, 11, 21, tzinfo=UTC)
    assert report.start == datetime(2026, 11, 20, tzinfo=UTC)
    # A start within a day begins at its midnight: the day is reported whole.
    short = run_bounds(now, hour, timedelta(hours=6), datetime(2026, 11, 1, 6, tzinfo=UTC), True)
    assert short.end == short.horizon == datetime(2026, 11, 23, tzinfo=UTC)
    assert short.start == datetime(2026, 11, 1, tzinfo=UTC)
    # Settling off: events are read once; a report cannot be (settings refuse it).
    assert run_bounds(now, hour, timedelta(0), None, read_once=False).horizon is None
    with pytest.raises(ValueError, match="only past a lateness"):
        run_bounds(now, hour, timedelta(0), None, read_once=True)
    assert usual_lag(hour, timedelta(hours=48), read_once=False) == hour
    assert usual_lag(hour, timedelta(hours=48), read_once=True) == timedelta(hours=72)
    assert usual_lag(hour, timedelta(hours=6), read_once=True) == timedelta(hours=30)


@given(instants, st.integers(min_value=1, max_value=200), st.integers(min_value=1, max_value=400))
def test_settle_windows_end_at_midnight_within_90_days(
    start: datetime, length: int, days: int
) -> None:
    horizon = floor_to_midnight(start) + timedelta(days=days)
    window = settle_window(start, horizon, length)
    assert window.start == start and window.end <= horizon
    assert window.end == floor_to_midnight(window.end)
    assert window.end - window.start <= timedelta(days=90)
    assert len(window_days(window)) == min(length, 89, days)


def test_settle_window_length_doubles_when_sparse_and_halves_when_dense() -> None:
    assert [next_settle_days(s, 1) for s in (1, 2, 64, 89)] == [2, 4, 89, 89]
    assert next_settle_days(8, 50) == 8
    assert next_settle_days(8, 101) == 4
    assert next_settle_days(1, 5000) == 1


def test_window_days() -> None:
    w = Window(datetime(2026, 11, 20, 13, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
    assert [d.day for d in window_days(w)] == [20, 21, 22]


def test_settle_windows_shrink_so_the_last_days_are_shared() -> None:
    start = datetime(2026, 9, 1, tzinfo=UTC)
    horizon = datetime(2026, 9, 14, tzinfo=UTC)  # 13 days left
    assert balanced_days(2, start, horizon, 3) == 2  # far from the end: as adapted
    assert balanced_days(8, start, horizon, 3) == 5  # 13 days over 3 windows
    assert balanced_days(8, datetime(2026, 9, 10, tzinfo=UTC), horizon, 3) == 2
    assert balanced_days(8, datetime(2026, 9, 12, 6, tzinfo=UTC), horizon, 3) == 1
    assert balanced_days(89, start, horizon, 1) == 13  # one at a time: the rest at once
    # Planned that way, a run ends on several short windows, never on one long one.
    cursor, lengths = start, []
    while cursor < horizon:
        window = settle_window(cursor, horizon, balanced_days(4, cursor, horizon, 3))
        lengths.append(len(window_days(window)))
        cursor = window.end
    assert lengths == [4, 3, 2, 2, 1, 1]
