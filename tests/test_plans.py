"""Which window a phase reads next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.run.plans import ProvisionalPlan, SettlePlan

DAY = datetime(2026, 8, 1, tzinfo=UTC)


def test_a_sparse_history_is_settled_in_growing_windows_one_at_a_time() -> None:
    plan = SettlePlan(DAY, DAY + timedelta(days=81), in_flight=16)
    lengths = []
    while (window := plan.next_window()) is not None:
        assert plan.width(dense=False) == 1
        lengths.append((window.end - window.start).days)
        plan.finished(pages=1)
    assert lengths == [1, 2, 4, 8, 16, 32, 18]


def test_a_dense_source_settles_day_windows_side_by_side() -> None:
    plan = SettlePlan(DAY, DAY + timedelta(days=5), in_flight=16)
    assert plan.width(dense=True) == 16
    windows = [plan.next_window(dense=True) for _ in range(5)]
    assert all(w is not None and w.end - w.start == timedelta(days=1) for w in windows)
    assert plan.next_window(dense=True) is None


def test_provisional_windows_are_cut_at_midnight_and_numbered() -> None:
    plan = ProvisionalPlan(DAY + timedelta(hours=20), DAY + timedelta(days=1, hours=3))
    first, second = plan.next_window(), plan.next_window()
    assert first is not None and second is not None and plan.next_window() is None
    assert first.end == second.start == DAY + timedelta(days=1)
    assert plan.label(second) == " 2/2"


def test_a_daily_report_is_settled_one_day_a_window_however_sparse() -> None:
    plan = SettlePlan(DAY, DAY + timedelta(days=6), in_flight=4, one_day=True)
    lengths = []
    while (window := plan.next_window()) is not None:
        lengths.append(window.end - window.start)
        plan.finished(pages=1)
    assert lengths == [timedelta(days=1)] * 6
    assert plan.width(dense=False) == 4  # nothing to grow: the days go side by side
