"""Window planning (pure): contiguous, half-open, cut at UTC midnight, never over a day."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.windows import Window, plan_windows, run_end

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
