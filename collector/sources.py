"""The Graph call-log functions the collector reads, described as data.

Everything else in the collector is shared: adding a log means adding a row here.
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
    event_field: str
    """Row property holding the event time; it decides the row's date partition."""
    key_field: str
    """Row property that identifies a row uniquely."""

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
        Source("sms", "getSmsLog", "beta", "sentDateTime", "id"),
        Source("direct_routing", "getDirectRoutingCalls", "v1.0", "startDateTime", "id"),
        Source("pstn", "getPstnCalls", "v1.0", "startDateTime", "id"),
        # Toll-fraud protection: who was blocked or unblocked from PSTN calling, and why. Its
        # rows have no id; remediationId identifies each block or unblock action.
        Source(
            "pstn_blocked_users", "getPstnBlockedUsersLog", "beta", "blockDateTime", "remediationId"
        ),
    )
}
