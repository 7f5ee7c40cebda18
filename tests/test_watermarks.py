"""Pure bookkeeping of a source's progress: begin, redo, claim, advance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.archive.state import PROVISIONAL, SETTLE, Claim, SourceState
from collector.core.windows import Window
from collector.run import watermarks

DAY = datetime(2026, 10, 20, tzinfo=UTC)


def hours(a: int, b: int) -> Window:
    return Window(DAY + timedelta(hours=a), DAY + timedelta(hours=b))


def apply(state: SourceState, changes: dict[str, object]) -> SourceState:
    return SourceState(**{**state.__dict__, **changes})


def test_a_first_run_starts_both_watermarks_at_the_start() -> None:
    changes = watermarks.begin(SourceState(), DAY, DAY + timedelta(days=1))
    assert changes == {"watermark": DAY, "settled": DAY}
    assert watermarks.begin(SourceState(), DAY, None) == {"watermark": DAY, "settled": None}


def test_settling_switched_on_later_starts_at_the_watermarks_midnight() -> None:
    state = SourceState(watermark=DAY + timedelta(hours=11))
    assert watermarks.begin(state, DAY, DAY + timedelta(days=2)) == {"settled": DAY}


def test_settle_claims_are_dropped_and_unfinished_provisional_ones_redone() -> None:
    state = SourceState(
        watermark=DAY,
        settled=DAY,
        claims=(
            Claim(SETTLE, hours(0, 24)),
            Claim(PROVISIONAL, hours(24, 25)),
            Claim(PROVISIONAL, hours(25, 26), committed=True),
        ),
    )
    state = apply(state, watermarks.begin(state, DAY, DAY))
    assert [c.kind for c in state.claims] == [PROVISIONAL, PROVISIONAL]
    assert watermarks.to_redo(state) == [hours(24, 25)]  # the committed one is not read again


def test_the_watermark_passes_only_a_gapless_prefix_of_finished_windows() -> None:
    state = SourceState(watermark=DAY, settled=None)
    for window in (hours(0, 1), hours(1, 2), hours(2, 3)):
        state = apply(state, watermarks.claim(state, PROVISIONAL, window))
    assert watermarks.claim(state, PROVISIONAL, hours(0, 1)) == {}  # claimed once
    later = {Claim(PROVISIONAL, hours(1, 2)), Claim(PROVISIONAL, hours(2, 3))}
    state = apply(state, watermarks.advance(state, later))
    assert state.watermark == DAY and all(c.committed for c in state.claims[1:])
    state = apply(state, watermarks.advance(state, {*later, Claim(PROVISIONAL, hours(0, 1))}))
    assert state.watermark == DAY + timedelta(hours=3) and state.claims == ()


def test_settled_days_carry_the_watermark_along() -> None:
    state = SourceState(watermark=DAY, settled=DAY, claims=(Claim(SETTLE, hours(0, 48)),))
    state = apply(state, watermarks.advance(state, {Claim(SETTLE, hours(0, 48))}))
    assert state.settled == state.watermark == DAY + timedelta(days=2)


def test_new_provisional_windows_start_after_those_redone_this_run() -> None:
    state = SourceState(
        watermark=DAY, settled=DAY, claims=(Claim(PROVISIONAL, hours(0, 5), committed=True),)
    )
    assert watermarks.provisional_start(state, None) == DAY + timedelta(hours=5)
    assert watermarks.provisional_start(state, DAY + timedelta(days=1)) == DAY + timedelta(days=1)
