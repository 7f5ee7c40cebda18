"""Admission of windows by measured density, request budget and time left (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.core.windows import Window
from collector.graph.pace import Pace

DAY0 = datetime(2026, 9, 1, tzinfo=UTC)


def day(n: int, days: float = 1.0) -> Window:
    start = DAY0 + timedelta(days=n)
    return Window(start, start + timedelta(days=days))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_unknown_density_admits_everything_the_width_allows() -> None:
    pace = Pace(None, requests_per_second=50 / 60, hard_deadline=1500, clock=Clock())
    for n in range(16):
        assert pace.admits(day(n))
        pace.started(day(n))


def test_known_density_admits_only_what_the_budget_can_finish() -> None:
    clock = Clock()
    # A million rows a day: 1,001 pages; 50 requests a minute for 1,500 s, 80 % planned.
    pace = Pace(1_000_000, requests_per_second=50 / 60, hard_deadline=1500, clock=clock)
    assert pace.admits(day(0))  # nothing in flight: always (progress)
    pace.started(day(0))
    assert not pace.admits(day(1))  # 2,002 pages > 1,000 the budget allows
    pace.read(day(0), 900_000)  # most of day 0 read: 101 pages left
    assert pace.admits(day(1, days=0.5))  # 101 + 501 <= 1000
    clock.now = 1000  # 500 s left: 333 pages
    assert not pace.admits(day(1, days=0.5))
    # A sparse source: many windows fit.
    sparse = Pace(20_000, requests_per_second=50 / 60, hard_deadline=1500, clock=Clock())
    for n in range(16):
        assert sparse.admits(day(n))
        sparse.started(day(n))


def test_density_is_learned_from_whole_days_and_cut_off_windows() -> None:
    pace = Pace(None, requests_per_second=1, hard_deadline=100, clock=Clock())
    pace.started(day(0, days=1 / 24))
    pace.read(day(0, days=1 / 24), 10)
    pace.paged(day(0, days=1 / 24))
    assert pace.rows_per_day is None  # an hour says little about a day
    pace.started(day(1))
    pace.read(day(1), 3_000)
    pace.stopped(day(1))  # cut off: at least 3,000 rows a day
    assert pace.rows_per_day == 3_000
    pace.started(day(2))
    pace.read(day(2), 2_000)
    assert pace.is_reading(day(2)) and pace.reading == 1
    pace.paged(day(2))  # the run's first measurement replaces what was assumed
    assert not pace.is_reading(day(2)) and pace.reading == 0  # committing: never stopped
    assert pace.rows_per_day == 2_000
    pace.started(day(3, days=2))
    pace.read(day(3, days=2), 10_000)
    pace.paged(day(3, days=2))  # later ones keep the busiest
    assert pace.rows_per_day == 5_000
    pace.stopped(day(3, days=2))  # already finished: no effect
    assert pace.rows_per_day == 5_000


def test_a_first_page_with_a_next_link_proves_the_source_dense() -> None:
    pace = Pace(None, requests_per_second=1, hard_deadline=100, clock=Clock())
    pace.started(day(0))
    assert not pace.read(day(0), 0, more=True)  # an empty page with a link proves nothing
    assert not pace.dense
    pace.started(day(1))
    assert not pace.read(day(1), 400, more=False)  # one page holds the whole window
    assert not pace.dense
    pace.started(day(1, days=2))
    assert pace.read(day(1, days=2), 1000, more=True)  # needs another page: dense, once
    assert pace.dense
    assert not pace.read(day(1, days=2), 1000, more=True)  # already known: no new signal
