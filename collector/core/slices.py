"""Pure planning of how call records are read: in hour slices of their start time, each once
it is past the lateness, and each day listed again at chosen ages to find later versions.

A day of a large tenant holds far more records than one run can read at Graph's limits, so
the unit of work is an hour (``SLICE``): a 100,000-record day is 24 runs of about 4,000
records, each hour read the run after it passes the lateness, not one run that cannot finish.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from .windows import Window

SLICE = timedelta(hours=1)
"""The time span of call records one slice lists (by ``startDateTime``)."""


def floor_to_hour(moment: datetime) -> datetime:
    """Return the start of ``moment``'s UTC hour."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def slice_horizon(now: datetime, lag: timedelta, lateness: timedelta) -> datetime:
    """The first hour whose records are not read yet as of ``now``: every earlier hour ended
    at least ``lateness`` (and ``lag``) ago, so its records have appeared and mostly settled."""
    return floor_to_hour(now - max(lag, lateness))


def plan_slices(start: datetime, horizon: datetime) -> list[Window]:
    """The hour slices from ``start`` (any instant; the first slice ends at the next hour) to
    ``horizon``, in order."""
    slices: list[Window] = []
    cursor = start
    while cursor < horizon:
        stop = min(floor_to_hour(cursor) + SLICE, horizon)
        slices.append(Window(cursor, stop))
        cursor = stop
    return slices


def day_start(day: date) -> datetime:
    """The midnight ``day`` begins at."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_end(day: date) -> datetime:
    """The midnight after ``day``."""
    return day_start(day) + timedelta(days=1)


def due_revisit(
    day: date,
    now: datetime,
    lag: timedelta,
    ages: Iterable[int],
    done: Iterable[int],
    first_read: datetime | None = None,
) -> int | None:
    """The revisit of ``day`` to make now: the latest of ``ages`` (whole days after the day
    ended, ``CALL_RECORDS_REVISIT_DAYS``) that has passed, unless it or a later one is
    ``done``, or the day was first read (its manifest, ``first_read``) after it: a backfill
    reads a day at its latest already. An earlier age missed (the app was stopped) is covered
    by the later one: both would list the same records. None: nothing is due."""
    passed = [a for a in sorted(ages) if day_end(day) + timedelta(days=a) <= now - lag]
    if not passed:
        return None
    latest = passed[-1]
    if first_read is not None and first_read >= day_end(day) + timedelta(days=latest):
        return None
    return None if any(a >= latest for a in done) else latest


def near_graphs_edge(moment: datetime, now: datetime, history: timedelta) -> bool:
    """True when a record started at ``moment`` is within a day of leaving Graph's keeping
    (``history`` after its call ended): one listed may be gone a moment later."""
    return moment < now - history + timedelta(days=1)


def graph_has_whole(day: date, now: datetime, history: timedelta) -> bool:
    """True while Graph still keeps every record of ``day`` (none ended ``history`` ago)."""
    return day_start(day) + history > now
