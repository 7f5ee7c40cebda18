"""Pure planning of the time windows a run reads, and the day boundaries that follow from
the clock (settled, expired).

Windows are half-open ``[start, end)``: Graph's ``toDateTime`` is exclusive, so each
window starts exactly where the previous one ended (a row stamped exactly on the boundary
belongs to the later window; see ``rows.split_page``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .timefmt import compact_instant, format_instant

GRAPH_MAX_RANGE = timedelta(days=90)
"""Longest range Graph accepts in one request."""


@dataclass(frozen=True, order=True)
class Window:
    """A half-open time range ``[start, end)`` of one request sequence."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if not self.start < self.end:
            raise ValueError(f"empty or inverted window {self.start} .. {self.end}")
        if self.end - self.start > GRAPH_MAX_RANGE:
            raise ValueError(f"window longer than Graph's 90-day limit: {self}")

    @property
    def name(self) -> str:
        """Deterministic name of the window, used in blob names: a re-read of the window finds
        the blob an earlier read committed under the same name (and keeps it)."""
        return f"{compact_instant(self.start)}-{compact_instant(self.end)}"

    def __str__(self) -> str:
        return f"[{format_instant(self.start)}, {format_instant(self.end)})"


def next_midnight(moment: datetime) -> datetime:
    """Return the first UTC midnight strictly after ``moment``."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)


def floor_to_minute(moment: datetime) -> datetime:
    """Return ``moment`` in UTC with seconds and microseconds dropped."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def run_end(now: datetime, lag: timedelta) -> datetime:
    """Return the exclusive upper bound a run may read to: ``now - lag`` floored to the minute."""
    return floor_to_minute(now - lag)


def plan_windows(start: datetime, end: datetime) -> list[Window]:
    """Split ``[start, end)`` into contiguous windows cut at every UTC midnight.

    Returns an empty list when there is nothing to read (``end <= start``).
    """
    windows: list[Window] = []
    cursor = start
    while cursor < end:
        stop = min(next_midnight(cursor), end)
        windows.append(Window(cursor, stop))
        cursor = stop
    return windows


SETTLE_TARGET_PAGES = 50
"""Pages a settle window aims at: big enough that sparse history costs few requests, small
enough that one window finishes well within a run's time budget at Graph's throttle rate."""
SETTLE_MAX_DAYS = 89
"""Longest settle window in whole days; with a partial first day it stays within 90 days."""


def floor_to_midnight(moment: datetime) -> datetime:
    """Return 00:00 UTC of ``moment``'s day."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def settle_horizon(now: datetime, end: datetime, lateness: timedelta) -> datetime | None:
    """Return the midnight before which days are settled (None: settling is off).

    A day is settled once ``lateness`` has passed since it ended, and never past what a
    run reads at all (``end``).
    """
    if lateness <= timedelta(0):
        return None
    return floor_to_midnight(min(end, now - lateness))


def expiry_horizon(now: datetime, delete_after: timedelta | None) -> date | None:
    """Return the first UTC day nothing of which the archive's retention rule can have deleted
    as of ``now``: earlier days are in the expiry zone (None: blobs never expire).

    The rule (``ARCHIVE_DELETE_AFTER_DAYS``) deletes a blob once its creation time is more
    than ``delete_after`` ago. No blob of day D (data or manifest) is created before D's
    midnight, so D is intact while ``midnight(D) >= now - delete_after``; a day whose midnight
    is earlier may have lost some or all of its blobs, or none yet (Azure runs the rule about
    once a day, and a day collected late was created late).
    """
    if delete_after is None:
        return None
    cutoff = now - delete_after
    first = floor_to_midnight(cutoff)
    # A midnight exactly at the cutoff is not "more than N days ago": that day is intact.
    return first.date() if first == cutoff else first.date() + timedelta(days=1)


def may_have_expired(day: date, now: datetime, delete_after: timedelta | None) -> bool:
    """True when the retention rule may have deleted some or all of ``day``'s blobs."""
    horizon = expiry_horizon(now, delete_after)
    return horizon is not None and day < horizon


def history_edge(now: datetime, history: timedelta) -> datetime:
    """The first midnight whose whole day Graph still has, keeping rows ``history`` long, a
    day from now on too (a backfill reaches it later in the run, or in the next)."""
    return next_midnight(now - history + timedelta(days=1))


def default_start(end: datetime) -> datetime:
    """Where a lane with no watermark and no ``COLLECTOR_START`` begins: the previous UTC day."""
    return floor_to_midnight(end) - timedelta(days=1)


@dataclass(frozen=True)
class RunBounds:
    """Where one run of a lane reads."""

    start: datetime
    """Where the lane begins if it has no watermark yet."""
    end: datetime
    """The exclusive end of the run's provisional windows."""
    horizon: datetime | None
    """The midnight before which days are settled (None: settling is off)."""


def run_bounds(
    now: datetime,
    lag: timedelta,
    lateness: timedelta,
    start: datetime | None,
    read_once: bool,
) -> RunBounds:
    """Return where a run as of ``now`` reads, from ``start`` (``COLLECTOR_START``).

    A source read once (``Source.read_once``: a daily report, call records) is only ever
    settled, in whole UTC days: it has no provisional windows and starts at the midnight of
    ``start`` (its settings have a lateness).
    """
    end = run_end(now, lag)
    horizon = settle_horizon(now, end, lateness)
    if not read_once:
        return RunBounds(start or default_start(end), end, horizon)
    if horizon is None:
        raise ValueError("a source read once is read only past a lateness; none is set")
    return RunBounds(floor_to_midnight(start or default_start(horizon)), horizon, horizon)


def usual_lag(lag: timedelta, lateness: timedelta, read_once: bool) -> timedelta:
    """How far behind 'now' a lane's watermark may stand right after a good run (besides the
    minute it is floored to): ``lag`` for an event log; for a source read once, whose
    watermark is its horizon, up to a day past ``max(lag, lateness)``."""
    return max(lag, lateness) + timedelta(days=1) if read_once else lag


def settle_window(start: datetime, horizon: datetime, days: int) -> Window:
    """Return the settle window from ``start``: up to ``days`` midnights, ending at one."""
    days = max(1, min(days, SETTLE_MAX_DAYS))
    return Window(start, min(horizon, next_midnight(start) + timedelta(days=days - 1)))


def balanced_days(days: int, start: datetime, horizon: datetime, width: int) -> int:
    """Shorten a settle window so the days left are shared by ``width`` windows in flight.

    Without this, the last windows of a run are the longest and page alone at the end,
    leaving the request budget unused; with it, the run ends on several short windows.
    """
    days_left = -(-(horizon - floor_to_midnight(start)) // timedelta(days=1))
    return max(1, min(days, -(-days_left // max(1, width))))


def next_settle_days(days: int, pages: int, target: int = SETTLE_TARGET_PAGES) -> int:
    """Adapt the next settle window's length to how many pages this one took."""
    if pages * 2 <= target:
        return min(days * 2, SETTLE_MAX_DAYS)
    if pages > 2 * target:
        return max(1, days // 2)
    return days


def window_days(window: Window) -> list[date]:
    """Return the UTC dates ``window`` covers."""
    first = window.start.astimezone(UTC).date()
    last = (window.end - timedelta(microseconds=1)).astimezone(UTC).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
