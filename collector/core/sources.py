"""The Graph call-log functions the collector reads, described as data.

Everything else in the collector is shared: adding a log means adding a row here. What
differs between logs is data: the function and its API version, the row key, and whether
rows are events (``event_field``) or a daily report aggregated over the range asked for.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One Graph call-log function and how to read and place its rows."""

    name: str
    """Name used in settings, blob paths and logs."""
    function: str
    """Graph function under ``/communications/callRecords/``."""
    version: str
    """Graph API version that serves the function (``v1.0`` or ``beta``)."""
    event_field: str | None
    """Row property holding the event time; it decides the row's date partition. None: the
    rows are not events but a report aggregated over the range asked for (see
    ``daily_report``)."""
    key_fields: tuple[str, ...]
    """Row properties that together identify a row (``rows.row_key``)."""

    @property
    def daily_report(self) -> bool:
        """True when rows are aggregates over the requested range, not events: a partial
        day's aggregate would be wrong forever, so the source is read one whole UTC day per
        window, only once the day is past the lateness horizon, and its rows are placed
        under that day (``windows.run_bounds``, ``rows.split_page``)."""
        return self.event_field is None

    def path(self, from_param: str, to_param: str) -> str:
        """Return the request path for an already URL-encoded time range."""
        return (
            f"/{self.version}/communications/callRecords/{self.function}"
            f"(fromDateTime={from_param},toDateTime={to_param})"
        )


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
    )
}
