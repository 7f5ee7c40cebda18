"""Placing rows (pure): event date, boundary rule, bad rows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest

from collector.core.errors import RowError
from collector.core.rows import key_of_line, split_page
from collector.core.sources import SOURCES
from collector.core.windows import Window

DR = SOURCES["direct_routing"]
WINDOW = Window(datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))


def row(stamp: str, **extra: object) -> dict[str, object]:
    return {"id": f"id-{stamp}", "startDateTime": stamp, **extra}


def test_rows_are_grouped_by_utc_event_date_and_kept_verbatim() -> None:
    rows = [
        row(
            "2026-11-20T00:00:00Z",
            userDisplayName="Zoë 李雷 🙂",
            callCharge=0.0075,
            unknownNew={"a": [1, None]},
        ),
        row("2026-11-20T23:59:59.9999999Z"),
    ]
    split = split_page(DR, WINDOW, rows)
    assert split.rows == 2 and split.outside == 0
    lines = split.lines[date(2026, 11, 20)]
    assert [json.loads(line) for line in lines] == rows
    assert "Zoë 李雷 🙂".encode() in lines[0]  # UTF-8, not \\u escapes


def test_row_exactly_at_the_exclusive_end_belongs_to_the_next_window() -> None:
    split = split_page(
        DR, WINDOW, [row("2026-11-21T00:00:00Z"), row("2026-11-21T00:00:00.0000000Z")]
    )
    assert split.rows == 0 and split.boundary_skipped == 2


def test_rows_outside_the_window_are_kept_in_their_own_date() -> None:
    split = split_page(
        DR, WINDOW, [row("2026-11-19T23:00:00Z"), row("2026-11-21T00:00:00.0000001Z")]
    )
    assert split.outside == 2
    assert set(split.lines) == {date(2026, 11, 19), date(2026, 11, 21)}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"startDateTime": "2026-11-20T01:00:00Z"}, "has no 'id'"),
        ({"id": "x"}, "has no 'startDateTime'"),
        ({"id": "x", "startDateTime": "20.11.2026"}, "unreadable startDateTime"),
        ("not an object", "not a JSON object"),
    ],
)
def test_bad_rows_are_refused(bad: object, message: str) -> None:
    with pytest.raises(RowError, match=message):
        split_page(DR, WINDOW, [row("2026-11-20T01:00:00Z"), bad])


def test_an_sms_stamped_on_the_window_end_is_left_to_the_next_window() -> None:
    # Its docs do not say which time the range applies to; an archive that cannot drop a
    # second copy later keeps a boundary row only in the window that starts there.
    end = "2026-11-21T00:00:00Z"
    split = split_page(SOURCES["sms"], WINDOW, [{"id": "b", "sentDateTime": end}])
    assert split.rows == 0 and split.boundary_skipped == 1


def test_sms_uses_sent_date_time() -> None:
    split = split_page(
        SOURCES["sms"], WINDOW, [{"id": "a", "sentDateTime": "2026-11-20T05:00:00Z"}]
    )
    assert split.rows == 1


@pytest.mark.parametrize(
    "row",
    [
        {"id": "5f0c-guid", "startDateTime": "2026-11-20T01:00:00Z"},
        {"startDateTime": "2026-11-20T01:00:00Z", "id": "later"},  # key not first
        {"id": 'with \\"quote\\" and \\\\ backslash', "x": 1},
        {"id": "ünïcode", "nested": {"id": "not this one"}},
    ],
)
def test_the_key_of_an_archived_line_is_read_with_or_without_parsing(row: dict[str, Any]) -> None:
    assert key_of_line(DR, orjson.dumps(row)) == row["id"]


REPORT = SOURCES["pstn_dialout_report"]


def report_row(user: str, context: str | None, calls: int = 1) -> dict[str, object]:
    return {
        "userId": f"id-{user}",
        "userPrincipalName": f"{user}@contoso.com",
        "usageLocation": "US",
        "destinationContext": context,
        "currency": "USD",
        "totalCalls": calls,
    }


def test_a_daily_report_s_rows_go_under_its_day_keyed_by_their_group() -> None:
    rows = [report_row("a", "Domestic"), report_row("a", "International"), report_row("b", None)]
    first = split_page(REPORT, WINDOW, rows)
    assert first.rows == 3 and set(first.lines) == {date(2026, 11, 20)}
    assert first.boundary_skipped == first.outside == 0
    # Offset paging repeats a row across pages: its whole group is the key.
    again = split_page(REPORT, WINDOW, [report_row("b", None), report_row("c", None)], first.keys)
    assert again.rows == 1 and again.duplicates == 1
    line = first.lines[date(2026, 11, 20)][0]
    assert key_of_line(REPORT, line) == first.line_keys[date(2026, 11, 20)][0]
    assert key_of_line(REPORT, line) == '["id-a","a@contoso.com",null,"US","Domestic","USD"]'


def test_a_report_row_repeating_a_group_with_other_totals_is_refused_not_dropped() -> None:
    # Graph guarantees no key for report rows: a group seen twice with other totals may be
    # two rows the key does not tell apart, or the report changing under the paging.
    first = split_page(REPORT, WINDOW, [report_row("a", "Domestic", calls=2)])
    with pytest.raises(RowError, match=r"repeats the group .* with other totals"):
        split_page(REPORT, WINDOW, [report_row("a", "Domestic", calls=3)], first.keys)
    with pytest.raises(RowError, match="repeats the group"):
        split_page(REPORT, WINDOW, [report_row("b", None), report_row("b", None, calls=9)])
    with pytest.raises(RowError, match="has none of userId, userPrincipalName"):
        split_page(REPORT, WINDOW, [{"totalCalls": 1}, {"totalCalls": 2}])


def test_a_daily_report_is_read_a_whole_day_at_a_time_and_its_key_must_be_text() -> None:
    for partial in (
        Window(datetime(2026, 11, 20, 6, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)),
        Window(datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 20, 12, tzinfo=UTC)),
        Window(datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC)),
    ):
        with pytest.raises(ValueError, match="one whole UTC day"):
            split_page(REPORT, partial, [report_row("a", "Domestic")])
    with pytest.raises(RowError, match="'currency' that is not a string"):
        split_page(REPORT, WINDOW, [{**report_row("a", "Domestic"), "currency": 840}])
