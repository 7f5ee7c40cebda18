"""Parsing and formatting of Graph's ISO 8601 instants.

Graph timestamps carry up to seven fractional digits (100 ns ticks), one more than
``datetime`` holds, so exact comparisons use integer ticks since the Unix epoch.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime, timedelta

from .errors import InstantParseError

TICKS_PER_SECOND = 10_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_INSTANT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,7}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?"
)


_MIDNIGHTS: dict[str, int] = {}
"""Seconds since the epoch of each ``YYYY-MM-DD`` seen: rows of a window share a few days."""


def parse_ticks(text: str, *, require_zone: bool = True) -> int:
    """Return ``text`` as 100 ns ticks since 1970-01-01T00:00:00Z.

    Accepts ``YYYY-MM-DD`` (midnight UTC) and date-times with ``Z`` or a numeric offset.
    A date-time without a zone is rejected unless ``require_zone`` is false (then UTC).
    """
    fast = _parse_graph_utc(text) if isinstance(text, str) else None
    return fast if fast is not None else _parse_general(text, require_zone)


def _parse_graph_utc(text: str) -> int | None:
    """Graph's own shape, ``YYYY-MM-DDTHH:MM:SS[.f{1,7}]Z``, without a regex (the hot path:
    once per row); None sends anything else to the general parser."""
    size = len(text)
    if size < 20 or text[-1] != "Z" or text[10] != "T" or text[13] != ":" or text[16] != ":":
        return None
    clock = text[11:13] + text[14:16] + text[17:19]
    fraction = text[20:-1] if size > 20 else ""
    if not clock.isdigit() or (
        size > 20 and (text[19] != "." or not 0 < len(fraction) <= 7 or not fraction.isdigit())
    ):
        return None
    hours, minutes, seconds = int(clock[:2]), int(clock[2:4]), int(clock[4:])
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    midnight = _MIDNIGHTS.get(text[:10])
    if midnight is None:
        midnight = _parse_general(text[:10], True) // TICKS_PER_SECOND  # validates the date
        _MIDNIGHTS[text[:10]] = midnight
    whole = midnight + hours * 3600 + minutes * 60 + seconds
    return whole * TICKS_PER_SECOND + (int(fraction.ljust(7, "0")) if fraction else 0)


def _parse_general(text: str, require_zone: bool) -> int:
    m = _INSTANT.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise InstantParseError(f"not an ISO 8601 instant: {text!r}")
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    if hh is not None and zone is None and require_zone:
        raise InstantParseError(f"date-time without a time zone: {text!r}")
    try:
        # Validates the calendar fields (month 13, Feb 30 ...).
        datetime(int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0))
    except ValueError as exc:
        raise InstantParseError(f"not a valid instant: {text!r} ({exc})") from None
    seconds = calendar.timegm(
        (int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0), 0, 0, 0)
    )
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    fraction = int((frac or "").ljust(7, "0")) if frac else 0
    return seconds * TICKS_PER_SECOND + fraction


def parse_instant(text: str, *, require_zone: bool = True) -> datetime:
    """Return ``text`` as an aware UTC ``datetime`` (sub-microsecond digits dropped)."""
    return from_ticks(parse_ticks(text, require_zone=require_zone))


def to_ticks(moment: datetime) -> int:
    """Return an aware ``datetime`` as ticks since the Unix epoch."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND + delta.microseconds * 10


def from_ticks(ticks: int) -> datetime:
    """Return ticks since the Unix epoch as an aware UTC ``datetime`` (floored to µs)."""
    return _EPOCH + timedelta(microseconds=ticks // 10)


_DATES: dict[int, date] = {}


def utc_date_of_ticks(ticks: int) -> date:
    """Return the UTC calendar date of an instant given in ticks."""
    day = ticks // (86_400 * TICKS_PER_SECOND)
    found = _DATES.get(day)
    if found is None:
        found = _DATES[day] = (_EPOCH + timedelta(days=day)).date()
    return found


def format_instant(moment: datetime) -> str:
    """Format an aware ``datetime`` as Graph-style ISO 8601 UTC (``…Z``, fraction only if any)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def compact_instant(moment: datetime) -> str:
    """Format an instant for use inside a blob name (``20261123T154500Z``)."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
