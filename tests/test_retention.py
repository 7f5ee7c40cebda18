"""Retention: with ``ARCHIVE_DELETE_AFTER_DAYS`` set, the days the archive's lifecycle rule may
have deleted are reported expired by ``status`` and ``verify``, never missing or a mismatch;
the rule itself is pure (``windows.expiry_horizon``), the reports are checked end to end after
deleting blobs from Azurite as the rule would."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.cli import main
from collector.core.windows import expiry_horizon, floor_to_midnight, may_have_expired
from collector.observe.health import AHEAD, EMPTY, EXPIRED, LEGEND, PROVISIONAL, SETTLED, day_marks

from .conftest import FIRST, SECOND, Stack

# --- the rule (pure) -------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)


def test_a_day_expires_only_once_its_midnight_is_more_than_n_days_before_now() -> None:
    thirty = timedelta(days=30)
    # 30 days before now is exactly Oct 1 00:00: Oct 1's blobs are at most 30 days old.
    now = datetime(2026, 10, 31, tzinfo=UTC)
    assert expiry_horizon(now, thirty) == date(2026, 10, 1)
    assert not may_have_expired(date(2026, 10, 1), now, thirty)
    assert may_have_expired(date(2026, 9, 30), now, thirty)
    # A microsecond later Oct 1's midnight is more than 30 days ago: it may be thinned.
    later = now + timedelta(microseconds=1)
    assert expiry_horizon(later, thirty) == date(2026, 10, 2)
    assert may_have_expired(date(2026, 10, 1), later, thirty)
    # As the day goes on, the horizon stays: the next midnight is not 30 days old yet.
    assert expiry_horizon(now + timedelta(hours=23, minutes=59), thirty) == date(2026, 10, 2)


def test_without_a_retention_rule_no_day_ever_expires() -> None:
    now = datetime(2026, 10, 31, 12, tzinfo=UTC)
    assert expiry_horizon(now, None) is None
    assert not may_have_expired(date(2015, 1, 1), now, None)


@given(
    instants,
    st.integers(min_value=1, max_value=400),
    st.integers(min_value=-500, max_value=5),
)
def test_the_horizon_is_the_rule_day_by_day(now: datetime, days: int, offset: int) -> None:
    delete_after = timedelta(days=days)
    day = now.date() + timedelta(days=offset)
    midnight = datetime.combine(day, datetime.min.time(), UTC)
    assert may_have_expired(day, now, delete_after) == (midnight < now - delete_after)
    horizon = expiry_horizon(now, delete_after)
    assert horizon is not None
    assert floor_to_midnight(now - delete_after).date() <= horizon
    assert may_have_expired(horizon - timedelta(days=1), now, delete_after)
    assert not may_have_expired(horizon, now, delete_after)


def test_the_coverage_strip_marks_expired_what_it_would_call_empty_or_provisional() -> None:
    first, last = date(2026, 10, 1), date(2026, 10, 8)
    days = [first + timedelta(days=i) for i in range(8)]
    settled = {days[0], days[3]}
    archived = {days[0], days[1], days[3], days[5]}
    watermark = datetime(2026, 10, 7, 6, tzinfo=UTC)

    def strip(expired_before: date | None) -> str:
        marks = day_marks(first, last, settled, archived, watermark, expired_before)
        return "".join(marks[d] for d in days)

    assert strip(None) == "".join(
        (SETTLED, PROVISIONAL, EMPTY, SETTLED, EMPTY, PROVISIONAL, EMPTY, AHEAD)
    )
    # Before Oct 6: a manifest still says final; no manifest, or no blobs, may be the rule's
    # doing. From Oct 6 on, nothing can have expired. A day not read yet stays "not yet
    # reached", whatever its age.
    assert strip(date(2026, 10, 6)) == "".join(
        (SETTLED, EXPIRED, EXPIRED, SETTLED, EXPIRED, PROVISIONAL, EMPTY, AHEAD)
    )
    assert strip(date(2026, 10, 7)) == "".join(
        (SETTLED, EXPIRED, EXPIRED, SETTLED, EXPIRED, EXPIRED, EMPTY, AHEAD)
    )
    assert strip(date(2026, 12, 1))[-1] == AHEAD
    assert f"{EXPIRED} expired" in LEGEND


# --- status and verify on the local stack --------------------------------------------------

NOW = "2026-10-26T12:30:00Z"
"""A third run: settles Oct 21-23; Oct 24-26 stay provisional."""
KEEP_5 = {"ARCHIVE_DELETE_AFTER_DAYS": "5"}
"""As of ``NOW`` the rule may have deleted Oct 20 and 21 (their midnights are more than five
days before it), nothing later."""
KEEP_6 = {"ARCHIVE_DELETE_AFTER_DAYS": "6"}
"""As of ``NOW`` only Oct 20 may be expired."""


def day_folder(day: int) -> str:
    return f"pstn/year=2026/month=10/day={day:02d}/"


def manifest(day: int) -> str:
    return f"_manifests/pstn/2026-10-{day:02d}.json"


@pytest.fixture
def archived(stack: Stack) -> Stack:
    """Oct 20-26 of pstn collected, Oct 20-23 settled; Oct 21 in two part blobs (the first run
    read its morning, the second the rest)."""
    stack.env.update(COLLECTOR_SOURCES="pstn")
    for as_of in (FIRST, SECOND, NOW):
        assert stack.run(as_of) == 0
    listed = json.loads(stack.blobs()[manifest(21)])["blobs"]
    assert len(listed) == 2
    return stack


def expire(stack: Stack, *names: str) -> None:
    """Delete blobs straight from Azurite, as the lifecycle rule does (not through the
    collector, which never deletes)."""
    container = stack.container()
    for name in names:
        container.delete_blob(name)


def expire_days(stack: Stack, *days: int) -> None:
    """Delete every blob of these days, their manifests included."""
    doomed = [n for n in stack.blobs() if n.startswith(tuple(day_folder(d) for d in days))]
    expire(stack, *doomed, *(manifest(d) for d in days))


def command(stack: Stack, *args: str, **env: str) -> int:
    return main([*args, "--as-of", NOW], {**stack.env, **env})


def test_days_the_rule_deleted_are_expired_in_status_and_verify_and_all_stays_healthy(
    archived: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    expire_days(archived, 20, 21)
    capsys.readouterr()
    assert command(archived, "status", "--days", "7", **KEEP_5) == 0
    out = capsys.readouterr().out
    assert f"{LEGEND}" in out and "x expired" in out
    assert "pstn: fresh" in out
    assert "  2026-10-20 xxSSppp 2026-10-26" in out
    assert command(archived, "status", "--days", "7", "--json", **KEEP_5) == 0
    (pstn,) = json.loads(capsys.readouterr().out)["sources"]
    assert pstn["fresh"] is True and pstn["problems"] == []
    assert pstn["coverage"] == {
        "from": "2026-10-20",
        "days": "xxSSppp",
        "expired": ["2026-10-20", "2026-10-21"],
    }
    assert command(archived, "verify", **KEEP_5) == 0
    *days, summary = capsys.readouterr().out.splitlines()
    # Their manifests are gone with them: they are no settled days to check any more.
    assert [d.split(":")[0] for d in days] == ["pstn 2026-10-22", "pstn 2026-10-23"]
    assert all(d.endswith(": ok") for d in days)
    assert summary.startswith("verified 2 day(s): 2 ok, 0 expired, 0 with a mismatch; ")
    assert "ARCHIVE_DELETE_AFTER_DAYS=5" in summary and "days before 2026-10-22" in summary


def test_without_the_setting_the_same_deletion_is_missing(
    archived: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    expire_days(archived, 20, 21)
    capsys.readouterr()
    for unset in ({}, {"ARCHIVE_DELETE_AFTER_DAYS": ""}, {"ARCHIVE_DELETE_AFTER_DAYS": "0"}):
        assert command(archived, "status", "--days", "7", **unset) == 0
        out = capsys.readouterr().out
        assert "  2026-10-20 ..SSppp 2026-10-26" in out  # read, nothing archived
        assert command(archived, "status", "--days", "7", "--json", **unset) == 0
        (pstn,) = json.loads(capsys.readouterr().out)["sources"]
        assert pstn["coverage"]["expired"] == []


def test_a_partly_expired_day_is_expired_and_its_remaining_blobs_are_still_checked(
    archived: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = sorted(n for n in archived.blobs() if n.startswith(day_folder(21)))
    rows = archived.blobs()[second].count(b"\n")
    expire(archived, first)  # the older part blob went first; the manifest is still there
    capsys.readouterr()
    assert command(archived, "verify", **KEEP_5) == 0
    *days, summary = capsys.readouterr().out.splitlines()
    assert days[0].startswith("pstn 2026-10-20: 1 blobs, ") and days[0].endswith(": ok")
    assert days[1] == (
        f"pstn 2026-10-21: 1 blobs, {rows} rows: "
        "expired (1 of 2 blobs deleted by the retention rule), the rest ok"
    )
    assert all(d.endswith(": ok") for d in days[2:]) and len(days) == 4
    assert summary.startswith("verified 4 day(s): 3 ok, 1 expired, 0 with a mismatch")
    # The manifest is there: status still shows the day final (verify says what is left).
    assert command(archived, "status", "--days", "7", **KEEP_5) == 0
    assert "  2026-10-20 SSSSppp 2026-10-26" in capsys.readouterr().out
    # A blob left behind is checked as ever: a line gone from it is a mismatch.
    lines = archived.blobs()[second].splitlines(keepends=True)
    archived.container().upload_blob(second, b"".join(lines[1:]), overwrite=True)
    assert command(archived, "verify", **KEEP_5) == 1
    out = capsys.readouterr().out
    assert (
        f"pstn 2026-10-21: 1 blobs, {rows - 1} rows: expired (1 of 2 blobs deleted by the "
        f"retention rule), MISMATCH: {second} holds {rows - 1} rows, the manifest says {rows}"
    ) in out
    assert out.splitlines()[-1].startswith("verified 4 day(s): 3 ok, 0 expired, 1 with a mismatch")


def test_a_blob_missing_from_a_day_outside_the_zone_or_without_the_setting_is_a_mismatch(
    archived: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = sorted(n for n in archived.blobs() if n.startswith(day_folder(21)))
    rows = archived.blobs()[second].count(b"\n")
    expire(archived, first)
    capsys.readouterr()
    # With six days only Oct 20 may be expired; unset, nothing may be.
    for env in (KEEP_6, {}):
        assert command(archived, "verify", **env) == 1
        out = capsys.readouterr().out
        line = f"pstn 2026-10-21: 1 blobs, {rows} rows: MISMATCH: {first} is listed but missing"
        assert line in out
        assert "expired (" not in out
        assert out.splitlines()[-1].startswith("verified 4 day(s): 3 ok, 0 expired, 1 with")
