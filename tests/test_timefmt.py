"""Parsing and formatting of Graph instants (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.core.errors import InstantParseError
from collector.core.timefmt import (
    compact_instant,
    format_instant,
    from_ticks,
    parse_instant,
    parse_ticks,
    to_ticks,
    utc_date_of_ticks,
)
from devstack.synthetic import format_ticks


def test_seven_fractional_digits_are_kept_exactly() -> None:
    a = parse_ticks("2022-10-06T11:15:48.6113555Z")
    b = parse_ticks("2022-10-06T11:15:48.6113556Z")
    assert b - a == 1
    assert a % 10_000_000 == 6_113_555


def test_date_only_is_midnight_utc_and_offsets_convert() -> None:
    assert parse_instant("2019-11-01") == datetime(2019, 11, 1, tzinfo=UTC)
    assert parse_ticks("2026-01-01T01:30:00+01:30") == parse_ticks("2026-01-01T00:00:00Z")
    assert parse_ticks("2025-12-31T22:00:00-02:00") == parse_ticks("2026-01-01T00:00:00Z")


def test_placeholder_parses() -> None:
    assert utc_date_of_ticks(parse_ticks("0001-01-01T00:00:00Z")) == date(1, 1, 1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-13-01",
        "2026-02-30T00:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01T25:00:00Z",
    ],
)
def test_bad_instants_are_rejected(text: str) -> None:
    with pytest.raises(InstantParseError):
        parse_ticks(text)


def test_formatting() -> None:
    moment = datetime(2026, 11, 23, 15, 45, 0, 120000, tzinfo=UTC)
    assert format_instant(moment) == "2026-11-23T15:45:00.12Z"
    assert format_instant(moment.replace(microsecond=0)) == "2026-11-23T15:45:00Z"
    assert compact_instant(moment) == "20261123T154500Z"


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10_000_000))
def test_ticks_round_trip_through_graph_format(ticks: int) -> None:
    assert parse_ticks(format_ticks(ticks)) == ticks
    assert to_ticks(from_ticks(ticks)) == ticks - ticks % 10
    assert utc_date_of_ticks(ticks) == from_ticks(ticks).date()
