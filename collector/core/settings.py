"""Settings: the environment (app settings) turned into one validated, immutable object.

Every value is checked before the run makes any request; a bad one raises ``ConfigError``
naming the setting, the value and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from urllib.parse import urlsplit

from .auth import authority_url
from .errors import ConfigError, InstantParseError
from .lanes import Lane, tenant_lanes
from .sources import SOURCES, Source
from .timefmt import format_instant, parse_instant

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

DEFAULTS: dict[str, str] = {
    "GRAPH_ENDPOINT": "https://graph.microsoft.com",
    "GRAPH_TIMEOUT_SECONDS": "100",
    "COLLECTOR_SOURCES": "sms,direct_routing",
    "COLLECTOR_CONTAINER": "callrecords",
    "COLLECTOR_LAG_MINUTES": "60",
    "COLLECTOR_SCHEDULE": "0 5 * * * *",
    "COLLECTOR_LATENESS_HOURS": "48",
    "COLLECTOR_TIME_BUDGET_SECONDS": "1200",
    "COLLECTOR_LEASE_SECONDS": "300",
    "GRAPH_REQUESTS_PER_MINUTE_PER_LOG": "50",
    "GRAPH_REQUESTS_PER_MINUTE": "200",
    "COLLECTOR_WINDOWS_IN_FLIGHT": "16",
    "GRAPH_CALL_RECORDS_PERIOD_SCALE": "1",
    "CALL_RECORDS_REVISIT_DAYS": "3,7,14,28",
    "CALL_RECORDS_ATTEMPTS": "3",
}
"""Settings with a default; the rest are optional (``COLLECTOR_START``, ``AZURE_CLIENT_ID``,
``COLLECTOR_STORAGE__clientId``) or one-of-two required (``COLLECTOR_STORAGE`` or
``COLLECTOR_STORAGE__blobServiceUri``)."""

OPTIONAL_SETTINGS: dict[str, str] = {
    "COLLECTOR_STORAGE": "a connection string: the alternative to COLLECTOR_STORAGE__blobServiceUri, "
    "for local runs; never set in Azure, where storage is keyless",
    "COLLECTOR_START": "unset: the day before the first run",
    "AZURE_CLIENT_ID": "unset: the system-assigned identity",
    "COLLECTOR_STORAGE__clientId": "unset: the system-assigned identity",
    "COLLECTOR_STORAGE__blobServiceUri": "the alternative to COLLECTOR_STORAGE",
    "COLLECTOR_TENANTS": "unset: single-tenant mode, the identity's own tenant",
    "COLLECTOR_APP_CLIENT_ID": "unset: single-tenant mode (required with COLLECTOR_TENANTS)",
    "AZURE_AUTHORITY_HOST": "unset: login.microsoftonline.com (azure-identity's own setting)",
    "AzureWebJobsStorage": "the host's storage (a connection string, locally): multi-tenant "
    "mode queues its tenants there",
    "AzureWebJobsStorage__queueServiceUri": "the host's queue endpoint, reached with "
    "AzureWebJobsStorage__clientId (in Azure)",
    "AzureWebJobsStorage__clientId": "unset: the system-assigned identity",
    "ARCHIVE_DELETE_AFTER_DAYS": "unset, empty or 0: the archive has no retention rule, "
    "blobs never expire",
}
"""Settings without a default that may stay unset, and what that means."""

SETTING_NAMES: tuple[str, ...] = (
    "GRAPH_ENDPOINT",
    "GRAPH_TIMEOUT_SECONDS",
    "AZURE_CLIENT_ID",
    "COLLECTOR_SOURCES",
    "COLLECTOR_STORAGE",
    "COLLECTOR_STORAGE__blobServiceUri",
    "COLLECTOR_STORAGE__clientId",
    "COLLECTOR_CONTAINER",
    "COLLECTOR_START",
    "COLLECTOR_LAG_MINUTES",
    "COLLECTOR_SCHEDULE",
    "COLLECTOR_LATENESS_HOURS",
    "COLLECTOR_TIME_BUDGET_SECONDS",
    "COLLECTOR_LEASE_SECONDS",
    "GRAPH_REQUESTS_PER_MINUTE_PER_LOG",
    "GRAPH_REQUESTS_PER_MINUTE",
    "COLLECTOR_WINDOWS_IN_FLIGHT",
    "GRAPH_CALL_RECORDS_PERIOD_SCALE",
    "CALL_RECORDS_REVISIT_DAYS",
    "CALL_RECORDS_ATTEMPTS",
    "COLLECTOR_TENANTS",
    "COLLECTOR_APP_CLIENT_ID",
    "AZURE_AUTHORITY_HOST",
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__clientId",
    "ARCHIVE_DELETE_AFTER_DAYS",
)
"""Every setting the collector reads."""

_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,\-?]+")


@dataclass(frozen=True)
class StorageTarget:
    """Where blobs go: a connection string, or a blob service URI reached with an identity."""

    connection_string: str | None = None
    blob_service_uri: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class QueueTarget:
    """The host's queue service, where multi-tenant mode queues one message per tenant: the
    Functions host's own storage (``AzureWebJobsStorage``), as the queue trigger uses it."""

    connection_string: str | None = None
    queue_service_uri: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class Settings:
    """Validated collector configuration."""

    graph_endpoint: str
    graph_timeout: float
    identity_client_id: str | None
    sources: tuple[Source, ...]
    storage: StorageTarget
    container: str
    start: datetime | None
    lag: timedelta
    schedule: str
    lateness: timedelta
    time_budget: float
    """Seconds after which a run starts no new window (catch-up continues next run)."""
    lease_seconds: float
    requests_per_minute_per_log: int
    requests_per_minute: int
    windows_in_flight: int
    records_period_scale: float
    """Graph's call-record limit spans (20 s, 5 min) times this, 0 < scale <= 1: 1 in
    production; tests and benchmarks shrink them to meet a simulator scaled alike."""
    revisit_days: tuple[int, ...]
    """Days after a call-records day ends at which it is listed again for records that
    changed or appeared since it was read (ascending; empty: never)."""
    record_attempts: int
    """Reads of a call record that keeps failing (each with the client's own retries)
    before it is set aside."""
    tenants: tuple[str, ...] = ()
    """Customer tenants (lowercase GUIDs) collected through the multi-tenant app; empty:
    single-tenant mode, the managed identity's own tenant."""
    app_client_id: str | None = None
    """The multi-tenant app registration whose federated credential trusts the identity."""
    authority: str = "https://login.microsoftonline.com"
    """Entra ID's authority (``AZURE_AUTHORITY_HOST``, which azure-identity reads itself)."""
    queue: QueueTarget | None = None
    """Where the timer queues the tenants in multi-tenant mode (None: not configured)."""
    delete_after: timedelta | None = None
    """Age at which the archive's lifecycle rule deletes data blobs and manifests (None: no
    rule). The collector itself never deletes: ``status`` and ``verify`` use it to tell a day
    the rule may have removed (expired) from one that is missing."""

    @property
    def lanes(self) -> tuple[Lane, ...]:
        """Every lane: each source of each tenant (of the identity's own, single-tenant)."""
        return tenant_lanes(self.sources, self.tenants)

    @property
    def graph_scope(self) -> str:
        """OAuth scope of the Graph endpoint's app permissions."""
        return f"{self.graph_endpoint}/.default"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, DEFAULTS.get(name))
    if value is None:
        return None
    value = value.strip()
    return value if value else DEFAULTS.get(name)


def _endpoint(name: str, raw: str | None, *, allow_path: bool) -> str:
    allowed = "an https URL (http only for localhost/127.0.0.1)" + (
        "" if allow_path else " with no path, e.g. https://graph.microsoft.com"
    )
    if raw is None:
        raise ConfigError(name, raw, allowed)
    parts = urlsplit(raw)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS
    )
    if not secure or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(name, raw, allowed)
    if not allow_path and parts.path not in ("", "/"):
        raise ConfigError(name, raw, allowed)
    return raw.rstrip("/")


def _int(name: str, raw: str | None, low: int, high: int) -> int:
    allowed = f"a whole number from {low} to {high}"
    try:
        value = int(raw or "")
    except ValueError:
        raise ConfigError(name, raw, allowed) from None
    if not low <= value <= high:
        raise ConfigError(name, raw, allowed)
    return value


def _guid(name: str, raw: str | None) -> str | None:
    if raw is None or _GUID.fullmatch(raw):
        return raw
    raise ConfigError(name, raw, "a client id (GUID) of a user-assigned managed identity")


def _tenants(env: Mapping[str, str], identity: str | None) -> tuple[tuple[str, ...], str | None]:
    """``COLLECTOR_TENANTS`` and ``COLLECTOR_APP_CLIENT_ID``, checked together."""
    raw = _get(env, "COLLECTOR_TENANTS")
    app = _app_client_id(env)
    if raw is None:
        if app is not None:
            raise ConfigError(
                "COLLECTOR_TENANTS",
                None,
                "the customer tenants to collect: COLLECTOR_APP_CLIENT_ID is set, so this is "
                "multi-tenant mode (unset COLLECTOR_APP_CLIENT_ID for single-tenant mode)",
            )
        return (), app
    tenants = [t.strip().lower() for t in raw.split(",")]
    if not all(is_tenant_id(t) for t in tenants) or len(set(tenants)) != len(tenants):
        raise ConfigError(
            "COLLECTOR_TENANTS", raw, "a comma-separated list of distinct tenant ids (GUIDs)"
        )
    if app is None:
        raise ConfigError(
            "COLLECTOR_APP_CLIENT_ID",
            None,
            "the multi-tenant app's client id: COLLECTOR_TENANTS needs it to reach other tenants",
        )
    if identity is None:
        raise ConfigError(
            "AZURE_CLIENT_ID",
            None,
            "the client id of the user-assigned managed identity the app's federated "
            "credential trusts: COLLECTOR_TENANTS needs it",
        )
    return tuple(tenants), app


def _queue(env: Mapping[str, str]) -> QueueTarget | None:
    conn = _get(env, "AzureWebJobsStorage")
    uri = _get(env, "AzureWebJobsStorage__queueServiceUri")
    client_id = _guid("AzureWebJobsStorage__clientId", _get(env, "AzureWebJobsStorage__clientId"))
    if uri:
        uri = _endpoint("AzureWebJobsStorage__queueServiceUri", uri, allow_path=True)
        return QueueTarget(queue_service_uri=uri, client_id=client_id)
    return QueueTarget(connection_string=conn) if conn else None


def _app_client_id(env: Mapping[str, str]) -> str | None:
    raw = _get(env, "COLLECTOR_APP_CLIENT_ID")
    if raw is not None and not _GUID.fullmatch(raw):
        raise ConfigError(
            "COLLECTOR_APP_CLIENT_ID",
            raw,
            "the application (client) id, a GUID, of the multi-tenant app",
        )
    return None if raw is None else raw.lower()


def load_app_client_id(env: Mapping[str, str]) -> str:
    """``COLLECTOR_APP_CLIENT_ID`` alone (for ``consent-url``, which needs nothing else)."""
    app = _app_client_id(env)
    if app is None:
        raise ConfigError(
            "COLLECTOR_APP_CLIENT_ID", None, "the multi-tenant app's client id (a GUID)"
        )
    return app


def is_tenant_id(text: str) -> bool:
    """True for a tenant id as Entra ID writes it (a GUID)."""
    return _GUID.fullmatch(text) is not None


def _sources(raw: str | None) -> tuple[Source, ...]:
    allowed = f"a comma-separated, non-empty list of distinct names from {', '.join(SOURCES)}"
    names = [n.strip() for n in (raw or "").split(",")]
    if not names or any(n not in SOURCES for n in names) or len(set(names)) != len(names):
        raise ConfigError("COLLECTOR_SOURCES", raw, allowed)
    return tuple(SOURCES[n] for n in names)


def _storage(env: Mapping[str, str]) -> StorageTarget:
    conn = _get(env, "COLLECTOR_STORAGE")
    uri = _get(env, "COLLECTOR_STORAGE__blobServiceUri")
    client_id = _guid("COLLECTOR_STORAGE__clientId", _get(env, "COLLECTOR_STORAGE__clientId"))
    if conn and uri:
        raise ConfigError(
            "COLLECTOR_STORAGE__blobServiceUri",
            uri,
            "unset when COLLECTOR_STORAGE (a connection string) is set: use one of the two",
        )
    if conn:
        fields = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
        if not (
            fields.get("UseDevelopmentStorage") == "true"
            or "AccountName" in fields
            or "BlobEndpoint" in fields
        ):
            raise ConfigError(
                "COLLECTOR_STORAGE",
                "<connection string without AccountName or BlobEndpoint>",
                "a storage connection string (AccountName=…;AccountKey=… or BlobEndpoint=…)",
            )
        return StorageTarget(connection_string=conn)
    if uri:
        # A path is allowed: emulators (Azurite) put the account name there.
        uri = _endpoint("COLLECTOR_STORAGE__blobServiceUri", uri, allow_path=True)
        return StorageTarget(blob_service_uri=uri, client_id=client_id)
    raise ConfigError(
        "COLLECTOR_STORAGE",
        None,
        "a storage connection string, or set COLLECTOR_STORAGE__blobServiceUri "
        "(e.g. https://<account>.blob.core.windows.net) to use a managed identity",
    )


def _start(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    allowed = "an ISO 8601 UTC date or date-time, e.g. 2026-01-01 or 2026-01-01T00:00:00Z"
    try:
        start = parse_instant(raw)
    except InstantParseError:
        raise ConfigError("COLLECTOR_START", raw, allowed) from None
    if start.year < 2015:
        raise ConfigError("COLLECTOR_START", raw, allowed + " (not before 2015)")
    return start.replace(microsecond=0).astimezone(UTC)


def _schedule(raw: str | None) -> str:
    allowed = (
        "an NCRONTAB expression with six fields "
        "(second minute hour day month day-of-week), e.g. '0 5 * * * *'"
    )
    fields = (raw or "").split()
    if len(fields) != 6 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
        raise ConfigError("COLLECTOR_SCHEDULE", raw, allowed)
    return " ".join(fields)


MAX_HISTORY = timedelta(days=365)
"""Oldest start accepted: Graph keeps PSTN and direct-routing logs 150-365 days by country."""


def check_start(start: datetime | None, now: datetime) -> None:
    """Refuse a ``COLLECTOR_START`` more than a year before ``now`` (for a source that has
    no watermark yet: the others ignore the setting, so an app whose backfill began a year
    ago keeps running)."""
    if start is not None and start < now - MAX_HISTORY:
        raise ConfigError(
            "COLLECTOR_START",
            format_instant(start),
            f"at most {MAX_HISTORY.days} days before now: Graph keeps call logs "
            "150-365 days depending on the country, so older windows would read nothing",
        )


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validate ``env`` (os.environ or app settings) and return the collector's settings."""
    identity = _guid("AZURE_CLIENT_ID", _get(env, "AZURE_CLIENT_ID"))
    tenants, app = _tenants(env, identity)
    sources = _sources(_get(env, "COLLECTOR_SOURCES"))
    lag = timedelta(
        minutes=_int("COLLECTOR_LAG_MINUTES", _get(env, "COLLECTOR_LAG_MINUTES"), 0, 10_080)
    )
    lateness = _lateness(_get(env, "COLLECTOR_LATENESS_HOURS"), sources)
    for source in sources:
        # A day is read once, lateness + lag after it ended: Graph must still have it then.
        if source.history < MAX_HISTORY and lateness + lag + timedelta(days=2) > source.history:
            raise ConfigError(
                "COLLECTOR_LATENESS_HOURS",
                _get(env, "COLLECTOR_LATENESS_HOURS"),
                f"with COLLECTOR_LAG_MINUTES and 2 days, under the {source.history.days} days "
                f"Graph keeps {source.name} (48, the default, is safe)",
            )
    return Settings(
        graph_endpoint=_endpoint("GRAPH_ENDPOINT", _get(env, "GRAPH_ENDPOINT"), allow_path=False),
        graph_timeout=float(
            _int("GRAPH_TIMEOUT_SECONDS", _get(env, "GRAPH_TIMEOUT_SECONDS"), 1, 600)
        ),
        identity_client_id=identity,
        sources=sources,
        storage=_storage(env),
        container=_container(_get(env, "COLLECTOR_CONTAINER")),
        start=_start(_get(env, "COLLECTOR_START")),
        lag=lag,
        schedule=_schedule(_get(env, "COLLECTOR_SCHEDULE")),
        lateness=lateness,
        time_budget=float(
            _int(
                "COLLECTOR_TIME_BUDGET_SECONDS",
                _get(env, "COLLECTOR_TIME_BUDGET_SECONDS"),
                1,
                86_400,
            )
        ),
        lease_seconds=float(
            _int("COLLECTOR_LEASE_SECONDS", _get(env, "COLLECTOR_LEASE_SECONDS"), 1, 3_600)
        ),
        requests_per_minute_per_log=_int(
            "GRAPH_REQUESTS_PER_MINUTE_PER_LOG",
            _get(env, "GRAPH_REQUESTS_PER_MINUTE_PER_LOG"),
            1,
            100_000,
        ),
        requests_per_minute=_int(
            "GRAPH_REQUESTS_PER_MINUTE", _get(env, "GRAPH_REQUESTS_PER_MINUTE"), 1, 100_000
        ),
        windows_in_flight=_int(
            "COLLECTOR_WINDOWS_IN_FLIGHT", _get(env, "COLLECTOR_WINDOWS_IN_FLIGHT"), 1, 16
        ),
        records_period_scale=_period_scale(_get(env, "GRAPH_CALL_RECORDS_PERIOD_SCALE")),
        revisit_days=_revisit_days(env, lateness + lag, any(s.versioned for s in sources)),
        record_attempts=_int(
            "CALL_RECORDS_ATTEMPTS", _get(env, "CALL_RECORDS_ATTEMPTS"), 1, MAX_RECORD_ATTEMPTS
        ),
        tenants=tenants,
        app_client_id=app,
        authority=authority_url(env),
        queue=_queue(env),
        delete_after=_delete_after(_get(env, "ARCHIVE_DELETE_AFTER_DAYS"), lateness + lag),
    )


MAX_RECORD_ATTEMPTS = 20
"""Most reads of one failing call record (``CALL_RECORDS_ATTEMPTS``)."""
LAST_REVISIT_DAYS = 28
"""Latest revisit of a call-records day, in days after it ends: Graph keeps a record 30 days
after its call, so one that started late in the day is gone 29 days after the day ends; one
day of margin."""
NO_REVISITS = "none"
"""``CALL_RECORDS_REVISIT_DAYS`` spelled for no revisits where an empty value cannot be set
(the portal and some tools drop an empty app setting, which then means the default)."""


def _period_scale(raw: str | None) -> float:
    allowed = (
        "a number above 0 and at most 1 that scales Graph's call-record limit spans "
        "(1, the default, is Graph's own: 0.05 turns 20 s into 1 s and 5 min into 15 s)"
    )
    try:
        scale = float(raw or "")
    except ValueError:
        raise ConfigError("GRAPH_CALL_RECORDS_PERIOD_SCALE", raw, allowed) from None
    if not 0 < scale <= 1:  # NaN fails this too
        raise ConfigError("GRAPH_CALL_RECORDS_PERIOD_SCALE", raw, allowed)
    return scale


def first_revisit_day(first_read: timedelta) -> int:
    """The earliest ``CALL_RECORDS_REVISIT_DAYS`` value: the first whole number of days after
    a day ends that is later than its first read (``first_read``, the lateness and lag after
    it ends): 3 with the defaults (48 h + 60 min)."""
    return first_read // timedelta(days=1) + 1


def _revisit_days(
    env: Mapping[str, str], first_read: timedelta, reads_records: bool
) -> tuple[int, ...]:
    """``CALL_RECORDS_REVISIT_DAYS``, its form and range checked whatever the sources (a bad
    value must not wait unnoticed for the day call_records is added); that each comes after
    a day's first read only when call records are collected (``reads_records``): a lateness
    of the call logs alone must not refuse the default. Unlike other settings, empty is a
    value (no revisits), not the default."""
    name = "CALL_RECORDS_REVISIT_DAYS"
    raw = env.get(name)
    if raw is None:
        raw = DEFAULTS[name]
    text = raw.strip()
    if not text or text.lower() == NO_REVISITS:
        return ()
    low = first_revisit_day(first_read) if reads_records else 1
    allowed = (
        f"comma-separated whole numbers of days, ascending and distinct, each from {low} "
        f"(after the first read: COLLECTOR_LATENESS_HOURS + COLLECTOR_LAG_MINUTES after the "
        f"day ends) to {LAST_REVISIT_DAYS} (Graph keeps call records 30 days), e.g. "
        f"{DEFAULTS[name]}; empty or {NO_REVISITS!r}: no revisits"
    )
    if low > LAST_REVISIT_DAYS:
        allowed = (
            f"empty or {NO_REVISITS!r}: a day is first read COLLECTOR_LATENESS_HOURS + "
            f"COLLECTOR_LAG_MINUTES after it ends, too late for a revisit by day "
            f"{LAST_REVISIT_DAYS} (Graph keeps call records 30 days)"
        )
    try:
        days = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(name, raw, allowed) from None
    if any(not low <= d <= LAST_REVISIT_DAYS for d in days) or any(
        a >= b for a, b in pairwise(days)
    ):
        raise ConfigError(name, raw, allowed)
    return days


MAX_DELETE_AFTER_DAYS = 36_500
"""Longest retention the setting accepts (100 years; Storage lifecycle allows far more)."""


def shortest_retention_days(settle_delay: timedelta) -> int:
    """The fewest ``ARCHIVE_DELETE_AFTER_DAYS`` that let a day settle before its first blobs
    expire: its lateness and lag after it ends, and two days' slack (the day itself, and the
    lifecycle rule's daily pass). A shorter one would have the settle pass miss the deleted
    blobs and fetch their rows from Graph again: expired data back for another term."""
    return -(-settle_delay // timedelta(days=1)) + 2


def _delete_after(raw: str | None, settle_delay: timedelta) -> timedelta | None:
    """``ARCHIVE_DELETE_AFTER_DAYS``: the same name and value as the azd variable that sets up
    the lifecycle rule, so one number drives both the deletion and what reports expect."""
    if raw is None:
        return None
    shortest = shortest_retention_days(settle_delay)
    allowed = (
        f"a whole number of days from {shortest} (COLLECTOR_LATENESS_HOURS + "
        f"COLLECTOR_LAG_MINUTES + 2 days, so every day settles before it expires) to "
        f"{MAX_DELETE_AFTER_DAYS}, or 0 or empty when blobs never expire"
    )
    try:
        days = int(raw)
    except ValueError:
        raise ConfigError("ARCHIVE_DELETE_AFTER_DAYS", raw, allowed) from None
    if days == 0:
        return None
    if not shortest <= days <= MAX_DELETE_AFTER_DAYS:
        raise ConfigError("ARCHIVE_DELETE_AFTER_DAYS", raw, allowed)
    return timedelta(days=days)


def _lateness(raw: str | None, sources: tuple[Source, ...]) -> timedelta:
    hours = _int("COLLECTOR_LATENESS_HOURS", raw, 0, 720)
    once = [s.name for s in sources if s.read_once]
    if hours == 0 and once:
        raise ConfigError(
            "COLLECTOR_LATENESS_HOURS",
            raw,
            f"above 0 while COLLECTOR_SOURCES has {', '.join(once)}: a daily report or a call "
            "record is read once, when its day is past the lateness, and Graph adds and "
            "changes rows up to 24-48 h late (48, the default, is safe)",
        )
    return timedelta(hours=hours)


def _container(raw: str | None) -> str:
    if raw is None or not _CONTAINER.fullmatch(raw):
        raise ConfigError(
            "COLLECTOR_CONTAINER",
            raw,
            "3-63 characters: lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit",
        )
    return raw
