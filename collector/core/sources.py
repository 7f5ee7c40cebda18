"""The Graph call-log functions (and call records) the collector reads, described as data.

Everything else in the collector is shared: adding a log means adding a row here. What
differs between logs is data: the function and its API version, the row key, whether rows
are events (``event_field``) or a daily report aggregated over the range asked for, whether
they may change until the lateness horizon (``final_only``), how long Graph keeps them, and
whether a listed row is only a summary of one read whole afterwards (``expand``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote


@dataclass(frozen=True)
class Source:
    """One Graph call-log function and how to read and place its rows."""

    name: str
    """Name used in settings, blob paths and logs."""
    function: str
    """Graph function under ``/communications/callRecords/``; empty: the ``callRecords``
    collection itself, listed with ``$filter`` on ``event_field``."""
    version: str
    """Graph API version that serves the function (``v1.0`` or ``beta``)."""
    event_field: str | None
    """Row property holding the event time; it decides the row's date partition. None: the
    rows are not events but a report aggregated over the range asked for (see
    ``daily_report``)."""
    key_fields: tuple[str, ...]
    """Row properties that together identify a row (``rows.row_key``)."""
    final_only: bool = False
    """Rows may still change until the lateness horizon: each day is read once, past it, and
    never provisionally (a daily report is final-only too)."""
    history: timedelta = timedelta(days=365)
    """How long Graph keeps rows: a start further back is refused (call logs: 150-365 days
    by country; call records: 30 days)."""
    expand: str | None = None
    """A listed row is a summary: each is read whole with ``$expand=<this>`` (following every
    expanded relation's nextLink). None: a listed row is complete."""
    relations: tuple[str, ...] = ()
    """Relations of a row read from their own paged endpoint (``{row}/{relation}``) and added
    to it whole."""
    records_budget: bool = False
    """Requests count against Graph's call-record limits, not the call-log functions'."""
    page_sizes: tuple[tuple[str, int], ...] = ()
    """Per relation, the largest page Graph serves, asked for with ``Prefer:
    odata.maxpagesize`` (fewer requests a record; documented as optional, up to these)."""
    versioned: bool = False
    """Rows are versions of a record (its ``version`` goes up as Graph changes it): the
    archive keeps every version, so a row is identified by its key and its version."""

    @property
    def expanded(self) -> tuple[str, ...]:
        """The relations ``expand`` asks for (``sessions($expand=segments)``: sessions)."""
        return (self.expand.split("(", 1)[0],) if self.expand else ()

    def page_size(self, relation: str) -> int | None:
        """The page size to ask for ``relation`` (None: Graph's default)."""
        return dict(self.page_sizes).get(relation)

    @property
    def daily_report(self) -> bool:
        """True when rows are aggregates over the requested range, not events: a partial
        day's aggregate would be wrong forever, so the source is read one whole UTC day per
        window, only once the day is past the lateness horizon, and its rows are placed
        under that day (``windows.run_bounds``, ``rows.split_page``)."""
        return self.event_field is None

    @property
    def read_once(self) -> bool:
        """True when each day is read once, whole, past the lateness horizon: no provisional
        windows (``windows.run_bounds``)."""
        return self.final_only or self.daily_report

    def path(self, from_param: str, to_param: str) -> str:
        """Return the request path for an already URL-encoded time range."""
        if not self.function:
            field = self.event_field
            return (
                f"/{self.version}/communications/callRecords?$filter="
                f"{field}%20ge%20{from_param}%20and%20{field}%20lt%20{to_param}"
            )
        return (
            f"/{self.version}/communications/callRecords/{self.function}"
            f"(fromDateTime={from_param},toDateTime={to_param})"
        )

    def row_path(self, key: str) -> str:
        """Return the path of one listed row read whole (``expand``)."""
        return (
            f"/{self.version}/communications/callRecords/{quote(key, safe='')}"
            f"?$expand={quote(self.expand or '', safe='()=$')}"
        )

    def relation_path(self, key: str, relation: str) -> str:
        """Return the first page of one of a row's ``relations``."""
        return f"/{self.version}/communications/callRecords/{quote(key, safe='')}/{relation}"


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        # getSmsLog does not say which time its range applies to; sentDateTime is the only
        # one its rows carry, so windows are taken to select by it, like the others.
        Source("sms", "getSmsLog", "beta", "sentDateTime", ("id",)),
        Source("direct_routing", "getDirectRoutingCalls", "v1.0", "startDateTime", ("id",)),
        Source("pstn", "getPstnCalls", "v1.0", "startDateTime", ("id",)),
        # Toll-fraud protection: who was blocked or unblocked from PSTN calling, and why. Its
        # rows have no id; remediationId identifies each block or unblock action.
        Source(
            "pstn_blocked_users",
            "getPstnBlockedUsersLog",
            "beta",
            "blockDateTime",
            ("remediationId",),
        ),
        # Audio-conferencing dial-out usage and charges, aggregated per user, usage location,
        # destination context and currency over the range asked for: one report per UTC day.
        # Its rows carry no id: every property but the totals makes the group a row is of.
        Source(
            "pstn_dialout_report",
            "getPstnOnlineMeetingDialoutReport",
            "beta",
            None,
            (
                "userId",
                "userPrincipalName",
                "userDisplayName",
                "usageLocation",
                "destinationContext",
                "currency",
            ),
        ),
        # Every Teams call and meeting: listed by startDateTime, each read whole with its
        # sessions (and their segments) and its participants. A record is created after the
        # call ends and may change afterwards, and Graph keeps it 30 days: each day is read
        # once, past the lateness horizon, within call records' own request limits.
        Source(
            "call_records",
            "",
            "v1.0",
            "startDateTime",
            ("id",),
            final_only=True,
            history=timedelta(days=30),
            expand="sessions($expand=segments)",
            relations=("participants_v2",),
            records_budget=True,
            # "Maximum page size: 130 entries for participants and 60 entries for sessions"
            # (Get callRecord, List sessions, List participants_v2).
            page_sizes=(("sessions", 60), ("participants_v2", 130)),
            versioned=True,
        ),
    )
}
