"""Every error the collector raises, in one place.

Each class says when it is raised. Errors carry what an operator needs to act:
the setting and its allowed values, or Graph's status, error code and request-id.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base class of every error the collector raises on purpose."""


# --- configuration ---------------------------------------------------------


class ConfigError(CollectorError):
    """A setting is missing or has a value the collector cannot use."""

    def __init__(self, setting: str, value: str | None, allowed: str) -> None:
        self.setting = setting
        self.value = value
        self.allowed = allowed
        shown = "<not set>" if value is None else repr(value)
        super().__init__(f"setting {setting}={shown} is not valid: {allowed}")


class InstantParseError(CollectorError, ValueError):
    """A text is not an ISO 8601 date or a date-time convertible to UTC (a setting, an
    argument, or a row's event time)."""


# --- Microsoft Graph ---------------------------------------------------------


class GraphError(CollectorError):
    """Graph answered with an error status the collector does not retry (or retried too often)."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        request_id: str | None,
        url: str,
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.code = code
        self.graph_message = message
        self.request_id = request_id
        self.url = url
        self.attempts = attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(
            f"Graph returned HTTP {status} {code or '(no error code)'}{tries}: {message} "
            f"[request-id {request_id or 'unknown'}] GET {url}"
        )


class GraphUnavailableError(CollectorError):
    """Graph could not be reached (connection errors or timeouts) within the retry budget."""


class GraphDataError(CollectorError):
    """Graph sent a page the collector cannot archive safely (not JSON, or a row it cannot place)."""


class RowError(GraphDataError):
    """A row lacks its key or event time, or the event time does not parse (raised by the
    pure row checks; the reader adds the window, page and request-id)."""


class PagingError(GraphDataError):
    """Graph's paging misbehaved: a nextLink repeated, which would loop forever."""


# --- storage -----------------------------------------------------------------


class StateConflictError(CollectorError):
    """Another run changed a source's state blob first (its ETag no longer matches)."""


class SourceBusyError(StateConflictError):
    """Another live run holds a source's lease; this run leaves the source alone."""
