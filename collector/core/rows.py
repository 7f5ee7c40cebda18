"""Pure handling of Graph rows: where each row belongs and its JSONL line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

from .errors import InstantParseError, RowError
from .sources import Source
from .timefmt import parse_ticks, to_ticks, utc_date_of_ticks
from .windows import Window, floor_to_midnight, next_midnight


@dataclass
class PageSplit:
    """A page's rows as JSONL lines grouped by UTC event date, with counts."""

    lines: dict[date, list[bytes]] = field(default_factory=dict)
    """UTF-8 JSON texts (no newline) by event date."""
    line_keys: dict[date, list[str]] = field(default_factory=dict)
    """The key of each of ``lines``' rows, in the same order."""
    keys: dict[str, bytes] = field(default_factory=dict)
    """Each key of this page with its row's line (to recognise repeats on the next page)."""
    rows: int = 0
    duplicates: int = 0
    """Rows whose key was already on this page or the previous one: dropped."""
    boundary_skipped: int = 0
    """Rows stamped exactly at the window's end: they belong to the next window."""
    outside: int = 0
    """Rows whose event time lies outside the window (kept, in their own date's folder)."""


def split_page(
    source: Source,
    window: Window,
    rows: Iterable[Any],
    previous_keys: Mapping[str, bytes] | None = None,
) -> PageSplit:
    """Validate ``rows`` of one page of ``window`` and group their JSONL lines by event date
    (a daily report's rows all go under the window's one day).

    A row whose key is on this page already or on the previous page (``previous_keys``) is
    dropped: offset paging shifts rows across page boundaries when rows arrive meanwhile.
    A row stamped exactly at the window's exclusive end is dropped too: the next window,
    whose ``fromDateTime`` is inclusive, returns it (Graph may return it here as well, as the
    PSTN docs call ``toDateTime`` inclusive). The archive is append-only, so a boundary row
    kept by both windows would stay archived twice.

    A daily report's rows are identified by their group (``key_fields``), not by an id
    Graph guarantees: a group repeated with other totals raises ``RowError`` rather than
    keep or drop either (a day's total must not be guessed); the same row repeated is
    dropped like an event's (``previous_keys``: for a report, every earlier page's).
    """
    start, end = to_ticks(window.start), to_ticks(window.end)
    report_day = _report_day(source, window)
    previous = previous_keys or {}
    split = PageSplit()
    for index, row in enumerate(rows):
        key = row_key(source, row, index)
        ticks = 0 if report_day else event_ticks(source, row, index, key)  # 0: no time
        # orjson's bytes keep its whole output buffer (about 8 KB for a 700-byte row: 8 MB
        # a page); an exact-size copy is faster than the page faults that would cost.
        line = b"%b" % orjson.dumps(row)
        seen = split.keys.get(key) or previous.get(key)
        if seen is not None:
            if report_day and seen != line:
                raise RowError(
                    f"row {index} repeats the group {key} of another row with other totals: "
                    "the report changed while it was paged (the next run reads it again), or "
                    "Graph now tells rows apart by a property the collector's key lacks "
                    "(the source stops at this day until its key_fields are extended)"
                )
            split.duplicates += 1
            continue
        split.keys[key] = line
        if report_day:
            day = report_day
        elif ticks == end:
            split.boundary_skipped += 1
            continue
        else:
            split.outside += not start <= ticks < end
            day = utc_date_of_ticks(ticks)
        split.lines.setdefault(day, []).append(line)
        split.line_keys.setdefault(day, []).append(key)
        split.rows += 1
    return split


def _report_day(source: Source, window: Window) -> date | None:
    """The day a daily report's rows belong to (None for events, placed by their time)."""
    if not source.daily_report:
        return None
    if window.start != floor_to_midnight(window.start) or window.end != next_midnight(window.start):
        raise ValueError(f"{source.name} is read one whole UTC day at a time, not {window}")
    return window.start.date()


def row_key(source: Source, row: Any, index: int) -> str:
    """Return the key of ``row`` (its ``key_fields``), or raise ``RowError`` saying what is
    wrong. One key field: its value, a non-empty string. Several (an aggregate's group):
    their values as a JSON array, each a string or null, not all null."""
    if not isinstance(row, dict):
        raise RowError(f"row {index} is not a JSON object")
    fields = source.key_fields
    if len(fields) == 1:
        key = row.get(fields[0])
        if not isinstance(key, str) or not key:
            raise RowError(f"row {index} has no {fields[0]!r}")
        return key
    parts = [row.get(name) for name in fields]
    wrong = [n for n, v in zip(fields, parts, strict=True) if not isinstance(v, str | None)]
    if wrong:
        raise RowError(f"row {index} has a {wrong[0]!r} that is not a string")
    if all(v is None for v in parts):
        raise RowError(f"row {index} has none of {', '.join(fields)}")
    return orjson.dumps(parts).decode("utf-8")


def event_ticks(source: Source, row: Any, index: int, key: str | None = None) -> int:
    """Return the event time of ``row`` of an event log in ticks, or raise ``RowError``
    saying what is wrong (``key``: the row's, when already known)."""
    key = row_key(source, row, index) if key is None else key
    field = source.event_field
    assert field is not None, f"{source.name} rows are a report, not events"
    stamp = row.get(field)
    if not isinstance(stamp, str):
        raise RowError(f"row {index} ({key}) has no {field!r}")
    try:
        return parse_ticks(stamp)
    except InstantParseError as exc:
        raise RowError(f"row {index} ({key}) has an unreadable {field}: {exc}") from None


def key_of_line(source: Source, line: bytes) -> str:
    """Return the key of an archived JSONL line (``orjson.dumps`` of a Graph row).

    Graph sends an event's key property first, so the line usually starts ``{"id":"…"``:
    that is read without parsing the row (a day's blobs hold a million lines); anything
    else is parsed."""
    if len(source.key_fields) == 1:
        head = b'{"' + source.key_fields[0].encode() + b'":"'
        if line.startswith(head):
            end = line.find(b'"', len(head))
            key = line[len(head) : end]
            if end > 0 and b"\\" not in key:
                return key.decode("utf-8")
    return row_key(source, orjson.loads(line), 0)
