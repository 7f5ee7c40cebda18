"""The request budget (pure, on a fake clock): never more than the limit in any 60 s span,
and call records' own limits in their own spans (20 s, 5 min, scaled on their own)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.graph.budget import (
    CALL_RECORDS_PER_APP,
    RECORD_FIRST_PAGE,
    RECORD_LATER_PAGES,
    RECORDS_MARGIN_SECONDS,
    RequestBudget,
    Scope,
)

M = RECORDS_MARGIN_SECONDS
"""Call records' spans are stretched by this (0.3 s): their limits' waits end that much later."""


class FakeTime:
    """A clock (in whole milliseconds, so sums are exact) that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def max_in_any_span(starts: list[float], period: float) -> int:
    starts = sorted(starts)
    best, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] <= t - period:
            j += 1
        best = max(best, i - j + 1)
    return best


def run_workers(
    budget: RequestBudget, time: FakeTime, plan: Sequence[tuple[str, float]]
) -> dict[str, list[float]]:
    """Each worker acquires for its log, then 'works' for a random while; returns start times."""
    starts: dict[str, list[float]] = {}

    async def worker(log: str, work: float) -> None:
        for _ in range(30):
            await budget.acquire(Scope(log))
            starts.setdefault(log, []).append(time.now)
            await time.sleep(work)

    async def main() -> None:
        await asyncio.gather(*(worker(log, work) for log, work in plan))

    asyncio.run(main())
    return starts


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["sms", "direct_routing", "pstn"]), st.integers(0, 3_000)),
        min_size=1,
        max_size=12,
    )
)
def test_no_span_of_60_seconds_holds_more_than_the_limits(plan: list[tuple[str, int]]) -> None:
    time = FakeTime()
    budget = RequestBudget(
        per_log=50, per_app=80, period=60_000, clock=time.clock, sleep=time.sleep
    )
    starts = run_workers(budget, time, plan)
    assert max_in_any_span([t for ts in starts.values() for t in ts], 60_000) <= 80
    for log_starts in starts.values():
        assert max_in_any_span(log_starts, 60_000) <= 50


def test_the_budget_is_used_fully_not_just_kept() -> None:
    time = FakeTime()
    budget = RequestBudget(
        per_log=50, per_app=200, period=60.0, clock=time.clock, sleep=time.sleep, margin=0
    )
    starts = run_workers(budget, time, [("pstn", 0)] * 4)  # 120 requests, no latency
    # 50 at once, 50 more at t=60, the last 20 at t=120: the least time the limit allows.
    assert sorted(starts["pstn"])[-1] == 120.0


def test_retry_after_pauses_every_worker_of_that_log_only() -> None:
    time = FakeTime()
    budget = RequestBudget(
        per_log=50, per_app=200, period=60.0, clock=time.clock, sleep=time.sleep, margin=0
    )

    async def main() -> tuple[float, float]:
        budget.pause(Scope("sms"), 30.0)
        await budget.acquire(Scope("pstn"))
        other = time.now
        await budget.acquire(Scope("sms"))
        return other, time.now

    other, paused = asyncio.run(main())
    assert other == 0.0 and paused == 30.0


def test_random_interleaving_keeps_the_app_limit() -> None:
    rng = random.Random(5)
    time = FakeTime()
    budget = RequestBudget(
        per_log=50, per_app=60, period=60_000, clock=time.clock, sleep=time.sleep
    )
    plan = [(rng.choice(["sms", "pstn", "direct_routing"]), rng.randrange(1_000)) for _ in range(9)]
    starts = run_workers(budget, time, plan)
    assert max_in_any_span([t for ts in starts.values() for t in ts], 60_000) == 60


def test_requests_of_one_log_are_served_in_the_order_they_asked() -> None:
    time = FakeTime()
    budget = RequestBudget(
        per_log=1, per_app=10, period=10.0, clock=time.clock, sleep=time.sleep, margin=0
    )
    order: list[str] = []

    async def take(name: str) -> None:
        await budget.acquire(Scope("sms"))
        order.append(name)

    async def main() -> None:
        await take("first")
        waiting = asyncio.create_task(take("waiting"))
        await asyncio.sleep(0)  # it now waits for the slot to free
        late = asyncio.create_task(take("late"))  # asks just as the slot frees
        await asyncio.gather(waiting, late)

    asyncio.run(main())
    # A late request never takes the slot a waiting one was due: windows in flight advance
    # together instead of one falling behind and paging alone at the end of a run.
    assert order == ["first", "waiting", "late"]


def test_call_records_count_against_their_own_limits_not_the_call_logs() -> None:
    time = FakeTime()
    budget = RequestBudget(
        per_log=2, per_app=2, period=60.0, clock=time.clock, sleep=time.sleep, margin=0,
        records_per_app=1_500,
    )  # fmt: skip

    async def main() -> tuple[list[float], list[float]]:
        logs, records = [], []
        for _ in range(3):
            await budget.acquire(Scope("pstn"))
            logs.append(time.now)
        for _ in range(300):  # listing pages: only the 1,500 per 20 s apply
            await budget.acquire(Scope("call_records", records=True))
            records.append(time.now)
        return logs, records

    logs, records = asyncio.run(main())
    assert logs == [0.0, 0.0, 60.0]  # the third call-log request waited its minute
    assert records == [60.0] * 300  # none of them waited for the call logs' app limit


def test_call_records_keep_1500_per_20_seconds() -> None:
    time = FakeTime()
    budget = RequestBudget(
        per_log=50, per_app=200, period=60.0, clock=time.clock, sleep=time.sleep, margin=0
    )

    async def main() -> list[float]:
        starts = []
        for _ in range(3_100):
            await budget.acquire(Scope("call_records", records=True))
            starts.append(time.now)
        return starts

    starts = asyncio.run(main())
    assert max_in_any_span(starts, 20.0) == 1_500
    assert max_in_any_span(starts, 20.0 + M) == 1_500  # the margin holds too
    # 1,500 at 0, 1,500 at 20.3, the last 100 at 40.6: the margin, not the call logs' 1 s.
    assert starts[-1] == pytest.approx(2 * (20.0 + M))


def test_a_record_has_its_own_limits_for_its_first_and_its_later_pages() -> None:
    time = FakeTime()
    budget = RequestBudget(
        per_log=50, per_app=200, period=60.0, clock=time.clock, sleep=time.sleep, margin=0
    )

    async def pages(scope: Scope, count: int) -> list[float]:
        out = []
        for _ in range(count):
            await budget.acquire(scope)
            out.append(time.now)
        return out

    async def main() -> tuple[list[float], list[float], list[float]]:
        first = await pages(Scope("call_records", records=True, record="big"), 10)
        other = await pages(Scope("call_records", records=True, record="small"), 3)
        more = await pages(Scope("call_records", records=True, record="big"), 1)
        later = await pages(Scope("call_records", records=True, record="big", later=True), 51)
        return first + more, other, later

    first, other, later = asyncio.run(main())
    due = 20.0 + M
    assert first == pytest.approx([0.0] * 10 + [due])  # 10 per 20 s for a record's first page
    assert other == [0.0, 0.0, 0.0]  # another record is not held to the first one's limit
    # 50 per 5 minutes for its later pages
    assert later == pytest.approx([due] * 50 + [due + 300.0 + M])


def test_a_429_on_a_record_at_its_own_limit_pauses_only_that_record() -> None:
    time = FakeTime()
    budget = RequestBudget(
        per_log=50, per_app=200, period=60.0, clock=time.clock, sleep=time.sleep, margin=0
    )
    big = Scope("call_records", records=True, record="big")

    async def main() -> tuple[float, float]:
        for _ in range(10):  # its first-page limit is full: the 429 was that limit's
            await budget.acquire(big)
        budget.pause(big, 30.0)
        await budget.acquire(Scope("call_records", records=True, record="small"))
        other = time.now
        await budget.acquire(big)
        return other, time.now

    assert asyncio.run(main()) == (0.0, 30.0)


def test_a_429_on_a_record_below_its_own_limit_pauses_every_call_record_request() -> None:
    time = FakeTime()
    budget = RequestBudget(
        per_log=50, per_app=200, period=60.0, clock=time.clock, sleep=time.sleep, margin=0
    )

    async def main() -> tuple[float, float]:
        # Graph's 429 does not say which limit: not the record's own, so the app's.
        budget.pause(Scope("call_records", records=True, record="big", later=True), 30.0)
        await budget.acquire(Scope("pstn"))
        logs = time.now
        await budget.acquire(Scope("call_records", records=True, record="small"))
        return logs, time.now

    assert asyncio.run(main()) == (0.0, 30.0)  # the call logs' budget is another


def test_records_scale_shrinks_call_records_spans_and_their_margin_not_the_call_logs() -> None:
    time = FakeTime()
    # Graph's minute shrunk to 6 s for the call logs does not shrink the call records' spans
    # (it did once: they followed ``period / 60``); records_scale does, margin included.
    budget = RequestBudget(
        per_log=1, per_app=200, period=6.0, clock=time.clock, sleep=time.sleep, margin=0,
        records_scale=0.05,
    )  # fmt: skip
    assert budget.span == 6.0
    assert budget.records_span(CALL_RECORDS_PER_APP) == pytest.approx((20.0 + M) * 0.05)
    assert budget.records_span(RECORD_FIRST_PAGE) == pytest.approx(1.015)  # 20 s -> 1 s
    assert budget.records_span(RECORD_LATER_PAGES) == pytest.approx(15.015)  # 5 min -> 15 s

    async def pages(scope: Scope, count: int) -> list[float]:
        out = []
        for _ in range(count):
            await budget.acquire(scope)
            out.append(time.now)
        return out

    async def main() -> tuple[list[float], list[float], list[float], list[float]]:
        logs = await pages(Scope("pstn"), 2)
        first = await pages(Scope("call_records", records=True, record="r"), 11)
        later = await pages(Scope("call_records", records=True, record="r", later=True), 51)
        listing = await pages(Scope("call_records", records=True), 1_500)
        return logs, first, later, listing

    logs, first, later, listing = asyncio.run(main())
    assert logs == [0.0, 6.0]  # the call logs' minute: 6 s, as given
    assert first == pytest.approx([6.0] * 10 + [6.0 + 1.015])
    assert later == pytest.approx([7.015] * 50 + [7.015 + 15.015])
    # 1,500 per 1.015 s in all: 61 of them already started in the span before.
    assert max_in_any_span([*first, *later, *listing], 1.015) == 1_500


def test_unscaled_call_records_keep_graphs_own_spans_whatever_the_call_logs_minute() -> None:
    for period in (1.0, 60.0):
        budget = RequestBudget(per_log=50, per_app=200, period=period)
        assert budget.records_span(RECORD_FIRST_PAGE) == pytest.approx(20.3)
        assert budget.records_span(RECORD_LATER_PAGES) == pytest.approx(300.3)
        assert budget.records_span(CALL_RECORDS_PER_APP) == pytest.approx(20.3)


@pytest.mark.parametrize("scale", [0.0, -0.1, 1.5, float("nan")])
def test_records_scale_is_above_0_and_at_most_1(scale: float) -> None:
    with pytest.raises(ValueError, match="records_scale"):
        RequestBudget(per_log=50, per_app=200, records_scale=scale)
