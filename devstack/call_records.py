"""Full Teams call records in the Graph simulator: synthetic records, their life in time,
the documented HTTP API and its throttling limits.

What Microsoft documents, and what is served here (Graph v1.0 and beta, ``CallRecords.Read.All``):

- List callRecords, ``GET /communications/callRecords``: ``$filter`` only on ``startDateTime``
  (``lt``, ``le``, ``gt``, ``ge``; the examples write the DateTimeOffset unquoted,
  ``startDateTime ge 2023-09-25T09:25:00Z``) and on ``participants_v2/any(p:p/id eq '…')``;
  listed records carry no ``sessions`` and no ``participants_v2``; default page size 60;
  ``Prefer: odata.maxpagesize``; nothing older than 30 days.
  https://learn.microsoft.com/en-us/graph/api/callrecords-cloudcommunications-list-callrecords?view=graph-rest-1.0
- Get callRecord, ``GET /communications/callRecords/{id}``: ``$expand`` of a *single*
  relationship (``participants_v2``, or ``sessions`` and ``segments``); ``organizer_v2`` is
  expanded by default; ``participants_v2`` only comes when expanded (else just its
  ``participants_v2@odata.context``); more sessions follow ``sessions@odata.nextLink``; maximum
  page sizes 60 sessions and 130 participants; a record older than 30 days is a 404.
  https://learn.microsoft.com/en-us/graph/api/callrecords-callrecord-get?view=graph-rest-1.0
- List sessions, ``GET /communications/callRecords/{id}/sessions[?$expand=segments]`` (at most
  60 a page) and List participants_v2, ``GET /communications/callRecords/{id}/participants_v2``
  (at most 130 a page), paged with ``@odata.nextLink``.
  https://learn.microsoft.com/en-us/graph/api/callrecords-callrecord-list-sessions?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/callrecords-callrecord-list-participants_v2?view=graph-rest-1.0
- Resources: callRecord (``organizer``/``participants`` are deprecated and stop returning data
  on 2026-06-30, so they are not served), session, segment, media, mediaStream, networkInfo,
  participantEndpoint, clientUserAgent, deviceInfo, participant, failureInfo.
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-callrecord?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-session?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-segment?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-media?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-mediastream?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-networkinfo?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-participantendpoint?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-clientuseragent?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-deviceinfo?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-participant?view=graph-rest-1.0
  https://learn.microsoft.com/en-us/graph/api/resources/callrecords-failureinfo?view=graph-rest-1.0
- Throttling, "Call records limits": 10,000 requests per 20 s per tenant, 1,500 per 20 s per
  application per tenant, and per call record 10 requests per 20 s (first page) and 50 per
  5 minutes (subsequent pages).
  https://learn.microsoft.com/en-us/graph/throttling-limits#call-records-limits

Where the docs are silent, this module chooses (and says so where it does): the default page
size of sessions (20, at most 60) and of participants (130), the list order (start, then id),
keyset ``$skiptoken``s, a first page being any request without ``$skiptoken``, expanding both
relationships at once being refused (``multi_expand`` allows it), a quoted or date-only
DateTimeOffset being refused as OData refuses it, and how late records appear and change.

Time: each record appears some time after its call ended (15 min to 6 h, some up to 30 h),
may change until it settles (``version`` up, ``lastModifiedDateTime`` later: a session added
or a stream's metrics updated; never later than 40 h after the call ended), and is gone
``retention_days`` (30) after the call ended. Off by default: records changed again 2-25 days
later (``late_change_rate``), created 3-20 days late (``late_create_rate``), answering 500
every time (``failing_rate``, ``fail_always``), town halls of up to 20,000 attendees with a
session each (``huge_participants``, ``huge_session_per_attendee``), latency per megabyte
(``latency_per_mb``) and answers rendered ahead (``prerender``). The synthetic records live in
``call_records_data.py``, the limits in ``call_records_limits.py``. The clock is
``CallRecords.now`` (None: real time).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import math
import re
import threading
import uuid
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlsplit

import orjson
from aiohttp import web

from collector.core.errors import InstantParseError
from collector.core.timefmt import parse_ticks, to_ticks
from collector.graph.budget import CALL_RECORDS_PER_APP, RECORD_FIRST_PAGE, RECORD_LATER_PAGES

from .call_records_data import (
    HOUR,
    METRIC_UPDATED,
    MINUTE,
    RETENTION_DAYS,
    SESSION_ADDED,
    CallRecordsConfig,
    CallRecordSet,
    Change,
    RecordInfo,
    stamp,
)
from .call_records_limits import PER_TENANT, CallRecordLimits, Limiter
from .graph_errors import graph_error
from .identity import TENANT_ID
from .synthetic import format_ticks

__all__ = [
    "HOUR",
    "LIST_PAGE_SIZE",
    "METRIC_UPDATED",
    "MINUTE",
    "PARTICIPANTS_MAX_PAGE_SIZE",
    "PARTICIPANTS_PAGE_SIZE",
    "PER_TENANT",
    "RETENTION_DAYS",
    "SESSIONS_MAX_PAGE_SIZE",
    "SESSIONS_PAGE_SIZE",
    "SESSION_ADDED",
    "SOURCE",
    "CallRecordLimits",
    "CallRecordSet",
    "CallRecords",
    "CallRecordsConfig",
    "Change",
    "Filter",
    "RecordInfo",
    "parse_filter",
]

if TYPE_CHECKING:
    from .graph_simulator import Fault, GraphSimulator

SOURCE = "call_records"
"""The ``source`` of the simulator's faults that hit call-record requests."""
LIST_PAGE_SIZE = 60
"""Records a list page holds (documented default; also its maximum here)."""
SESSIONS_PAGE_SIZE = 20
"""Sessions a page holds by default (undocumented; the documented maximum is 60)."""
SESSIONS_MAX_PAGE_SIZE = 60
PARTICIPANTS_PAGE_SIZE = 130
"""Participants a page holds (the documented maximum; the default is undocumented)."""
PARTICIPANTS_MAX_PAGE_SIZE = 130

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_OPERATORS = {
    "ge": "GreaterThanOrEqual",
    "gt": "GreaterThan",
    "le": "LessThanOrEqual",
    "lt": "LessThan",
}
_RECORD_PROPERTIES = frozenset(
    {
        "id",
        "version",
        "type",
        "modalities",
        "lastModifiedDateTime",
        "startDateTime",
        "endDateTime",
        "joinWebUrl",
        "organizer",
        "participants",
        "organizer_v2",
    }
)
_SESSION_PROPERTIES = frozenset(
    {
        "id",
        "caller",
        "callee",
        "failureInfo",
        "modalities",
        "startDateTime",
        "endDateTime",
        "isTest",
    }
)
_PARTICIPANT_PROPERTIES = frozenset({"id", "identity", "administrativeUnitInfos"})


# --------------------------------------------------------------------------- HTTP


class _Problem(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _not_allowed(option: str) -> _Problem:
    return _Problem(
        400,
        "BadRequest",
        f"Query option '{option.lstrip('$').capitalize()}' is not allowed. To allow it, set "
        "the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings.",
    )


def _check_options(query: Mapping[str, str], allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    for name in query:
        if name.startswith("$") and name.lower() not in allowed:
            raise _not_allowed(name)


_TIME_CLAUSE = re.compile(r"startDateTime\s+(\w+)\s+(\S+)", re.IGNORECASE)
_PARTICIPANT_CLAUSE = re.compile(
    r"participants_v2/any\(\s*(\w+)\s*:\s*(\w+)/id\s+eq\s+'([^']*)'\s*\)", re.IGNORECASE
)
_DATE_TIME_OFFSET = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})", re.IGNORECASE
)


@dataclass
class Filter:
    """A parsed list ``$filter``: start bounds ``[start, end)`` in ticks, a participant."""

    start: int | None = None
    end: int | None = None
    participant: str | None = None


def parse_filter(text: str) -> Filter:
    """Parse the ``$filter`` Graph supports on call records (raise ``_Problem`` otherwise)."""
    found = Filter()
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        clause = clause.strip()
        participant = _PARTICIPANT_CLAUSE.fullmatch(clause)
        if participant is not None and participant[1] == participant[2]:
            found.participant = participant[3].lower()
            continue
        match = _TIME_CLAUSE.fullmatch(clause)
        if match is None or match[1].lower() not in _OPERATORS:
            raise _Problem(
                400,
                "BadRequest",
                f"Invalid filter clause: '{clause}'. Only startDateTime (lt, le, gt, ge) and "
                "participants_v2/any(p:p/id eq '…') are supported.",
            )
        operator, literal = match[1].lower(), match[2]
        kind = (
            "Edm.String"
            if literal.startswith("'")
            else "Edm.Date"
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", literal)
            else None
        )
        if kind is not None:
            raise _Problem(
                400,
                "BadRequest",
                "A binary operator with incompatible types was detected. Found operand types "
                f"'Edm.DateTimeOffset' and '{kind}' for operator kind '{_OPERATORS[operator]}'.",
            )
        try:
            if _DATE_TIME_OFFSET.fullmatch(literal) is None:
                raise InstantParseError(literal)
            ticks = parse_ticks(literal)
        except InstantParseError:
            raise _Problem(
                400, "BadRequest", f"Syntax error: '{literal}' is not a valid DateTimeOffset."
            ) from None
        if operator in ("ge", "gt"):
            low = ticks + (operator == "gt")
            found.start = low if found.start is None else max(found.start, low)
        else:
            high = ticks + (operator == "le")
            found.end = high if found.end is None else min(found.end, high)
    return found


def _encode_token(state: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def _decode_token(token: str, kind: str, record: str | None = None) -> dict[str, Any]:
    try:
        state = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        state = None
    if (
        not isinstance(state, dict)
        or state.get("k") != kind
        or (record is not None and state.get("r") != record)
        or not isinstance(state.get("n"), int)
    ):
        raise _Problem(400, "BadRequest", "The $skiptoken is not valid.")
    return state


def _select(
    item: dict[str, Any], names: list[str] | None, valid: frozenset[str], type_name: str
) -> dict[str, Any]:
    if names is None:
        return item
    for name in names:
        if name not in valid:
            raise _Problem(
                400,
                "BadRequest",
                f"Could not find a property named '{name}' on type '{type_name}'.",
            )
    keep = set(names)
    return {k: v for k, v in item.items() if k in keep or k.split("@", 1)[0] in keep}


def _names(query: Mapping[str, str]) -> list[str] | None:
    text = query.get("$select")
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _link(base: str, path: str, params: list[tuple[str, str]]) -> str:
    text = "&".join(f"{k}={quote(v, safe=':/,()=')}" for k, v in params)
    return f"{base}{path}?{text}"


class CallRecords:
    """The call-records side of a ``GraphSimulator`` (``simulator.call_records``).

    Routes (v1.0 and beta): ``GET /{v}/communications/callRecords`` (list),
    ``…/callRecords/{id}`` (get), ``…/{id}/sessions`` and ``…/{id}/participants_v2`` (pages),
    and the control endpoint ``/_sim/call-records/{now|config|throttle|fail|prerender|stats|
    expected}``.

    Tests set ``now`` (an ISO 8601 string, an aware ``datetime``, ticks, or None for real
    time), knobs (``configure(...)``, the page sizes, ``latency``, ``multi_expand``) and
    limits (``throttle(...)``), and read ``stats``, ``arrivals``, ``expected(...)``,
    ``timeline(...)``. Faults queued on the simulator with ``source="call_records"`` (or
    none) hit these requests too; a fault's ``window`` matches ``"<kind> <path and query>"``,
    kind being ``list``, ``get``, ``sessions`` or ``participants``. Page faults (``empty``,
    ``loop``, ``foreign``, ``corrupt``) change list, sessions and participants pages; on a
    get only ``corrupt`` applies (to the record); ``shift`` does nothing (tokens are keys,
    not offsets).
    """

    def __init__(self, simulator: GraphSimulator) -> None:
        self._sim = simulator
        self.config = CallRecordsConfig()
        self.now: datetime | str | int | None = None
        """The simulated present (None: real time): what is available, changed or deleted."""
        self.list_page_size = LIST_PAGE_SIZE
        self.sessions_page_size = SESSIONS_PAGE_SIZE
        self.participants_page_size = PARTICIPANTS_PAGE_SIZE
        # The most a ``Prefer: odata.maxpagesize`` gets (the documented maxima); tests lower
        # them with the page sizes, so that small pages stay small whatever a client asks.
        self.list_max_page_size = LIST_PAGE_SIZE
        self.sessions_max_page_size = SESSIONS_MAX_PAGE_SIZE
        self.participants_max_page_size = PARTICIPANTS_MAX_PAGE_SIZE
        self.multi_expand = False
        """Allow ``$expand=sessions($expand=segments),participants_v2`` (the docs say a get
        expands a single relationship, so it is refused by default)."""
        self.latency = 0.0
        """Seconds each call-record request takes before it is answered (a caller running
        Graph's time faster scales it as it scales ``throttle``)."""
        self.latency_per_mb = 0.0
        """Seconds more per megabyte (``BYTES_PER_MB``) of the answer's body, slept before the
        answer is sent: a town hall's pages take longer than a peer-to-peer call's."""
        self.forgotten: set[str] = set()
        """Records listed but no longer readable (``forget``)."""
        self._failing: set[str] = set()
        self._healed: set[str] = set()
        self._prerendered: _Prerendered | None = None
        self.stats: Counter[str] = Counter()
        self.arrivals: list[tuple[str, str]] = []
        """(kind, path and query) of every call-record request, in arrival order."""
        self.on_request: Callable[[str, int], None] | None = None
        """Called with the kind and running count of call-record requests before each is
        answered."""
        self._sets: dict[tuple[str, int], CallRecordSet] = {}
        self._limiter: Limiter | None = None
        self._lock = threading.Lock()

    # ---- knobs

    def configure(self, config: CallRecordsConfig | None = None, **changes: Any) -> None:
        """Replace the records' knobs (``records_per_day=…``, ``sessions=(1, 50)``, …); the
        records are generated afresh."""
        with self._lock:
            self.config = replace(config or self.config, **changes)
            self._sets.clear()
            self._prerendered = None

    def throttle(
        self,
        scale: float = 1.0,
        *,
        per_app: int = CALL_RECORDS_PER_APP.count,
        per_tenant: int = PER_TENANT,
        record_first: int = RECORD_FIRST_PAGE.count,
        record_later: int = RECORD_LATER_PAGES.count,
    ) -> None:
        """Enforce Graph's call-records limits (their periods, 20 s and 5 min, times
        ``scale``); counting starts afresh."""
        self._limiter = Limiter(
            CallRecordLimits(
                per_app=per_app,
                per_tenant=per_tenant,
                record_first=record_first,
                record_later=record_later,
            ).scaled(scale)
        )

    def unthrottle(self) -> None:
        """Stop enforcing limits."""
        self._limiter = None

    @property
    def limits(self) -> CallRecordLimits | None:
        """The limits in force (None: none)."""
        return None if self._limiter is None else self._limiter.limits

    def now_ticks(self) -> int:
        """The simulated present in ticks since the epoch."""
        return _ticks(datetime.now(UTC) if self.now is None else self.now)

    def data(self, tenant: str | None = None) -> CallRecordSet:
        """The call records of ``tenant`` (an id the simulator serves; None: the home one)."""
        tenant_id = tenant or TENANT_ID
        seed = self._sim.tenants[tenant_id].seed
        with self._lock:
            found = self._sets.get((tenant_id, seed))
            if found is None:
                found = self._sets[(tenant_id, seed)] = CallRecordSet(seed, tenant_id, self.config)
            return found

    # ---- ground truth for tests

    def versions(
        self, tenant: str | None, record_id: str, as_of: str | datetime | int | None = None
    ) -> list[tuple[int, str]]:
        """Every (``version``, ``lastModifiedDateTime`` as Graph writes it) the record had by
        ``as_of`` (default ``now``), oldest first; empty before it appeared, or for an id
        Graph no longer keeps then."""
        now = self.now_ticks() if as_of is None else _ticks(as_of)
        info = self.data(tenant).find(record_id, now)
        return [] if info is None else [(v, stamp(at)) for v, at in info.versions(now)]

    def timeline(
        self, tenant: str | None, start: str | datetime | int, end: str | datetime | int
    ) -> list[RecordInfo]:
        """Every record starting in ``[start, end)``, whether visible now or not."""
        return self.data(tenant).between(_ticks(start), _ticks(end))

    def expected(
        self,
        tenant: str | None,
        start: str | datetime | int,
        end: str | datetime | int,
        *,
        as_of: str | datetime | int | None = None,
        settled_only: bool = False,
    ) -> list[dict[str, Any]]:
        """What the archive should hold for records starting in ``[start, end)``: each record
        Graph keeps at ``as_of`` (default ``now``), as it reads then, with all its
        ``sessions`` (with ``segments``) and ``participants_v2`` as arrays on it, without
        any ``@odata.context``/``@odata.nextLink`` annotation (``@odata.type``s stay); in
        list order. ``settled_only``: only records that can no longer change."""
        now = self.now_ticks() if as_of is None else _ticks(as_of)
        data = self.data(tenant)
        return [
            data.merged(info, now)
            for info in data.between(_ticks(start), _ticks(end))
            if info.visible_at(now) and (not settled_only or info.settled <= now)
        ]

    # ---- routes

    def add_routes(self, app: web.Application) -> None:
        """Add the call-records routes (before the simulator's catch-all route)."""
        root = r"/{version:v1\.0|beta}/communications/callRecords"
        record = root + "/{id:[^/()]+}"
        app.router.add_get(root, self._list)
        app.router.add_get(record, self._get)
        app.router.add_get(record + "/sessions", self._sessions)
        app.router.add_get(record + "/participants_v2", self._participants)
        app.router.add_route("*", "/_sim/call-records/{action}", self._control)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "list")

    async def _get(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "get")

    async def _sessions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "sessions")

    async def _participants(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "participants")

    async def _serve(self, request: web.Request, kind: str) -> web.StreamResponse:
        record_id = request.match_info.get("id")
        if record_id is not None and _GUID.fullmatch(record_id) is None:
            return await self._sim.handle(request)  # not a record: the call-log functions' path
        request_id = str(uuid.uuid4())
        path_qs = request.rel_url.raw_path_qs
        with self._lock:
            self.stats["requests"] += 1
            self.stats[f"requests:{kind}"] += 1
            running = self.stats["requests"]
            self.arrivals.append((kind, path_qs))
        if self.on_request is not None:
            self.on_request(kind, running)

        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        issued = self._sim.authority.lookup(token)
        tenant_id = TENANT_ID if issued is None else issued.tenant
        app_id = "" if issued is None else issued.client_id or ""
        self._count(f"requests@{tenant_id}")
        limiter = self._limiter
        later = kind in ("sessions", "participants") and "$skiptoken" in request.query
        verdict = None if limiter is None else limiter.admit(tenant_id, app_id, record_id, later)
        if verdict is not None:
            limit, wait = verdict
            self._count("throttled", f"throttled:{limit}", f"throttled@{tenant_id}")
            throttled = graph_error(429, "TooManyRequests", "Too many requests.", request_id)
            throttled.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return throttled
        if self.latency:
            await asyncio.sleep(self.latency)

        fault = self._sim._take_fault(SOURCE, f"{kind} {path_qs}")
        if fault is not None:
            self._count(f"fault:{fault.kind}")
            if fault.kind == "revoke":
                self._sim.authority.revoke_all()
        problem = (
            "no bearer token"
            if not token
            else self._sim.authority.problem(token, self._sim.base_url)
        )
        if problem:
            self._count("unauthorized")
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                f"Access token is invalid: {problem}.",
                request_id,
            )
        if fault is not None and fault.kind not in (
            "empty",
            "loop",
            "foreign",
            "corrupt",
            "shift",
            "revoke",
        ):
            applied = await self._sim._apply(fault, request, request_id)
            if applied is not None:
                return applied

        headers = {
            "request-id": request_id,
            "client-request-id": request.headers.get("client-request-id", request_id),
        }
        ask = _Ask(
            kind,
            request.match_info["version"],
            record_id,
            request.rel_url.raw_path,
            request.query,
            request.headers.get("Prefer", ""),
        )
        try:
            # A page fault changes the answer: only a clean request may be served ready-made.
            ready = None if fault is not None else self._ready(ask, tenant_id)
            if ready is not None:
                data, tally = ready.body, Counter(ready.tally)
                headers.update(ready.headers)
                tally["answers_prerendered"] += 1
            else:
                tally = Counter()
                body = self._render(ask, tenant_id, headers, tally)
                if fault is not None:
                    _spoil(body, fault, f"{self._sim.base_url}{path_qs}")
                data = orjson.dumps(body)
        except _Problem as refused:
            self._count(_PROBLEM_STATS.get(refused.status, "bad_request"))
            return graph_error(refused.status, refused.code, refused.message, request_id)
        self._count(bytes_served=len(data), **tally)
        if self.latency_per_mb:
            await asyncio.sleep(len(data) / BYTES_PER_MB * self.latency_per_mb)
        return web.Response(
            body=data, content_type="application/json", charset="utf-8", headers=headers
        )

    def _render(
        self, ask: _Ask, tenant_id: str, headers: dict[str, str], tally: Counter[str]
    ) -> dict[str, Any]:
        """The body of the answer to ``ask`` (raise ``_Problem`` for an error answer)."""
        if ask.kind == "list":
            return self._list_page(ask, tenant_id, headers, tally)
        if ask.kind == "get":
            return self._record(ask, tenant_id, headers, tally)
        if ask.kind == "sessions":
            return self._sessions_page(ask, tenant_id, headers, tally)
        return self._participants_page(ask, tenant_id, headers, tally)

    # ---- answers rendered ahead

    def _ready_key(self, ask: _Ask, tenant_id: str) -> tuple[Any, ...]:
        """What a ready-made answer depends on besides the clock and the records: the path as
        sent (its next links repeat it), the decoded query, the page size asked for (only a
        first page reads ``Prefer``; later ones carry theirs in the token) and the knobs."""
        prefer = None if "$skiptoken" in ask.query else _preferred(ask.prefer)
        return (
            tenant_id,
            ask.kind,
            ask.raw_path,
            tuple(ask.query.items()),
            prefer,
            self.list_page_size,
            self.sessions_page_size,
            self.participants_page_size,
            self.multi_expand,
        )

    def _ready(self, ask: _Ask, tenant_id: str) -> _Ready | None:
        """The prerendered answer to ``ask``, if there is one for the present."""
        store = self._prerendered
        if store is None or store.at != self.now_ticks():
            return None
        if ask.record_id is not None:  # forgotten or failing since: answer as Graph would
            self._visible(tenant_id, ask.record_id, store.at)
        return store.answers.get(self._ready_key(ask, tenant_id))

    def prerender(
        self,
        tenant: str | None,
        start: str | datetime | int,
        end: str | datetime | int,
        *,
        prefer: int | None = None,
        version: str = "v1.0",
        lists: Iterable[str] | None = None,
    ) -> int:
        """Render ahead every answer a collector asks for about the records starting in
        ``[start, end)`` at the present ``now`` (which must be fixed): each record's first
        page with its sessions expanded (``$expand=sessions($expand=segments)``) and every
        sessions page after it, every participants page, and every page of the listings whose
        ``$filter`` texts are ``lists`` (default: ``startDateTime ge <start> and
        startDateTime lt <end>``). ``prefer`` is the ``Prefer: odata.maxpagesize`` the client
        sends. Serving one is then a dictionary lookup, byte for byte the answer rendering
        would give; anything else is rendered as usual. Calls add to what is ready while the
        clock stays; moving ``now`` or ``configure`` drops it all (``unprerender``). Returns
        how many answers are ready; ``stats["answers_prerendered"]`` counts those served."""
        if self.now is None:
            raise ValueError("prerender needs a fixed clock: set CallRecords.now first")
        at = self.now_ticks()
        tenant_id = tenant or TENANT_ID
        low, high = _ticks(start), _ticks(end)
        store = self._prerendered
        if store is None or store.at != at:
            store = self._prerendered = _Prerendered(at, {})
        data = self.data(tenant_id)
        prefer_header = "" if prefer is None else f"odata.maxpagesize={prefer}"
        root = f"/{version}/communications/callRecords"
        firsts: list[_Ask] = []
        texts = (
            [f"startDateTime ge {format_ticks(low)} and startDateTime lt {format_ticks(high)}"]
            if lists is None
            else list(lists)
        )
        firsts += [_Ask("list", version, None, root, {"$filter": t}, prefer_header) for t in texts]
        for info in data.between(low, high):
            if not info.visible_at(at):
                continue
            path = f"{root}/{info.id}"
            firsts.append(
                _Ask(
                    "get",
                    version,
                    info.id,
                    path,
                    {"$expand": "sessions($expand=segments)"},
                    prefer_header,
                )
            )
            participants = path + "/participants_v2"
            firsts.append(_Ask("participants", version, info.id, participants, {}, prefer_header))
        with contextlib.suppress(_Problem):  # failing or forgotten: answered afresh each time
            for first in firsts:
                for ask, ready in self._walk(first, tenant_id):
                    store.answers[self._ready_key(ask, tenant_id)] = ready
        return len(store.answers)

    def _walk(self, first: _Ask, tenant_id: str) -> Iterator[tuple[_Ask, _Ready]]:
        """``first`` and the requests its answers' next links lead to, each with its answer,
        in order."""
        ask: _Ask | None = first
        while ask is not None:
            headers: dict[str, str] = {}
            tally: Counter[str] = Counter()
            body = self._render(ask, tenant_id, headers, tally)
            yield ask, _Ready(orjson.dumps(body), headers, dict(tally))
            link = body.get("@odata.nextLink", body.get("sessions@odata.nextLink"))
            ask = None if link is None else _follow(ask, link)

    def unprerender(self) -> None:
        """Drop every prerendered answer."""
        self._prerendered = None

    def _count(self, *keys: str, **amounts: int) -> None:
        with self._lock:
            for key in keys:
                self.stats[key] += 1
            for key, amount in amounts.items():
                self.stats[key] += amount

    def _page_size(self, ask: _Ask, default: int, most: int, headers: dict[str, str]) -> int:
        """The page size: ``Prefer: odata.maxpagesize`` (up to ``most``) or ``default``."""
        asked = _preferred(ask.prefer)
        if asked is None:
            return default
        size = min(asked, max(most, default))
        headers["Preference-Applied"] = f"odata.maxpagesize={size}"
        return size

    def forget(self, record_id: str) -> None:
        """Answer 404 for this record from now on while still listing it: Graph deleting a
        record between a client's listing and its read (at the 30-day edge)."""
        self.forgotten.add(record_id)

    def fail_always(self, record_id: str) -> None:
        """Answer 500 to every read of this record (its first page, its sessions and its
        participants pages) from now on, while still listing it: a record Graph cannot
        serve, which a collector must give up on without losing the rest of its day."""
        self._failing.add(record_id.lower())
        self._healed.discard(record_id.lower())

    def heal(self, record_id: str) -> None:
        """Answer for this record again (``fail_always``, or chosen by ``failing_rate``)."""
        self._failing.discard(record_id.lower())
        self._healed.add(record_id.lower())

    @property
    def failing(self) -> frozenset[str]:
        """The ids of the records answering 500: those ``fail_always`` named and those
        ``failing_rate`` chose among the records generated so far (``timeline`` generates
        a span's), less those healed."""
        with self._lock:
            sets = list(self._sets.values())
        chosen = {info.id for data in sets for info in data.known() if info.failing}
        return frozenset((chosen | self._failing) - self._healed)

    def _fails(self, info: RecordInfo) -> bool:
        return info.id in self._failing or (info.failing and info.id not in self._healed)

    def _visible(self, tenant_id: str, record_id: str, now: int) -> RecordInfo:
        info = self.data(tenant_id).find(record_id, now)
        if info is None or not info.visible_at(now) or record_id in self.forgotten:
            raise _Problem(404, "NotFound", f"The call record '{record_id}' was not found.")
        if self._fails(info):
            raise _Problem(
                500,
                "InternalServerError",
                f"An internal server error occurred while reading the call record '{info.id}'.",
            )
        return info

    def _context(self, version: str, tail: str) -> str:
        return f"{self._sim.base_url}/{version}/$metadata#communications/{tail}"

    def _annotated(self, record: dict[str, Any], version: str) -> dict[str, Any]:
        """``record`` with ``organizer_v2@odata.context`` before ``organizer_v2``."""
        result: dict[str, Any] = {}
        for key, value in record.items():
            if key == "organizer_v2":
                result["organizer_v2@odata.context"] = self._context(
                    version, f"callRecords('{record['id']}')/organizer_v2/$entity"
                )
            result[key] = value
        return result

    def _list_page(
        self, ask: _Ask, tenant_id: str, headers: dict[str, str], tally: Counter[str]
    ) -> dict[str, Any]:
        query = ask.query
        _check_options(query, ("$filter", "$skiptoken", "$select"))
        version = ask.version
        wanted = parse_filter(query["$filter"]) if "$filter" in query else Filter()
        names = _names(query)
        now = self.now_ticks()
        data = self.data(tenant_id)
        records = data.listing(wanted.start, wanted.end, now)
        if wanted.participant is not None:
            records = [
                r
                for r in records
                if any(p["id"].lower() == wanted.participant for p in data.participants(r))
            ]
        first = 0
        size = self._page_size(ask, self.list_page_size, self.list_max_page_size, headers)
        if "$skiptoken" in query:
            state = _decode_token(query["$skiptoken"], "l")
            size = state["n"]
            after = (state.get("s"), state.get("i"))
            if not isinstance(after[0], int) or not isinstance(after[1], str):
                raise _Problem(400, "BadRequest", "The $skiptoken is not valid.")
            first = bisect_right(records, after, key=lambda r: (r.start, r.id))
        page = records[first : first + size]
        body: dict[str, Any] = {
            "@odata.context": self._context(version, "callRecords"),
            "value": [
                _select(
                    self._annotated(data.record_at(r, now), version),
                    names,
                    _RECORD_PROPERTIES,
                    "microsoft.graph.callRecords.callRecord",
                )
                for r in page
            ],
        }
        if first + size < len(records):
            params = [(k, query[k]) for k in ("$filter", "$select") if k in query]
            token = _encode_token({"k": "l", "s": page[-1].start, "i": page[-1].id, "n": size})
            body["@odata.nextLink"] = _link(
                self._sim.base_url, ask.raw_path, [*params, ("$skiptoken", token)]
            )
        _tally(tally, records_listed=len(page))
        return body

    def _record(
        self, ask: _Ask, tenant_id: str, headers: dict[str, str], tally: Counter[str]
    ) -> dict[str, Any]:
        query = ask.query
        _check_options(query, ("$expand", "$select"))
        version = ask.version
        record_id = ask.record_id or ""
        now = self.now_ticks()
        info = self._visible(tenant_id, record_id, now)
        data = self.data(tenant_id)
        expand = _parse_expand(query.get("$expand", ""), self.multi_expand)
        body: dict[str, Any] = {
            "@odata.context": self._context(
                version,
                "callRecords(sessions(segments()))/$entity"
                if "segments" in expand
                else "callRecords(participants_v2())/$entity"
                if "participants_v2" in expand
                else "callRecords/$entity",
            )
        }
        body.update(
            _select(
                self._annotated(data.record_at(info, now), version),
                _names(query),
                _RECORD_PROPERTIES,
                "microsoft.graph.callRecords.callRecord",
            )
        )
        record_path = f"/{version}/communications/callRecords/{info.id}"
        body["participants_v2@odata.context"] = self._context(
            version, f"callRecords('{info.id}')/participants_v2/$entity"
        )
        if "participants_v2" in expand:
            size = self._page_size(
                ask, self.participants_page_size, self.participants_max_page_size, headers
            )
            everyone = data.participants(info)
            if size < len(everyone):
                token = _encode_token({"k": "p", "r": info.id, "o": size, "n": size})
                body["participants_v2@odata.nextLink"] = _link(
                    self._sim.base_url, record_path + "/participants_v2", [("$skiptoken", token)]
                )
            body["participants_v2"] = everyone[:size]
            _tally(tally, participants_served=len(body["participants_v2"]))
        if "sessions" in expand:
            segments = "segments" in expand
            size = self._page_size(
                ask, self.sessions_page_size, self.sessions_max_page_size, headers
            )
            sessions = data.sessions_at(info, now, 0, size, segments=segments)
            body["sessions"] = sessions
            if size < info.sessions_at(now):
                token = _encode_token({"k": "s", "r": info.id, "o": size, "n": size})
                params = [("$expand", "segments")] if segments else []
                body["sessions@odata.nextLink"] = _link(
                    self._sim.base_url, record_path + "/sessions", [*params, ("$skiptoken", token)]
                )
            _tally(tally, sessions_served=len(sessions))
        _tally(tally, records_served=1)
        return body

    def _sessions_page(
        self, ask: _Ask, tenant_id: str, headers: dict[str, str], tally: Counter[str]
    ) -> dict[str, Any]:
        query = ask.query
        _check_options(query, ("$expand", "$skiptoken", "$select"))
        expand = query.get("$expand", "").strip()
        if expand not in ("", "segments"):
            raise _Problem(
                400,
                "BadRequest",
                f"Could not find a property named '{expand}' on type "
                "'microsoft.graph.callRecords.session'.",
            )
        version = ask.version
        now = self.now_ticks()
        info = self._visible(tenant_id, ask.record_id or "", now)
        offset, size = self._offset(
            ask, "s", info.id, self.sessions_page_size, self.sessions_max_page_size, headers
        )
        names = _names(query)
        if names is not None and expand:
            names.append("segments")  # an expanded relationship comes whatever is selected
        sessions = [
            _select(
                s, names, _SESSION_PROPERTIES | {"segments"}, "microsoft.graph.callRecords.session"
            )
            for s in self.data(tenant_id).sessions_at(
                info, now, offset, size, segments=bool(expand)
            )
        ]
        body: dict[str, Any] = {
            "@odata.context": self._context(version, f"callRecords('{info.id}')/sessions"),
            "value": sessions,
        }
        if offset + size < info.sessions_at(now):
            token = _encode_token({"k": "s", "r": info.id, "o": offset + size, "n": size})
            params = [(k, query[k]) for k in ("$expand", "$select") if k in query]
            body["@odata.nextLink"] = _link(
                self._sim.base_url, ask.raw_path, [*params, ("$skiptoken", token)]
            )
        _tally(tally, sessions_served=len(sessions))
        return body

    def _participants_page(
        self, ask: _Ask, tenant_id: str, headers: dict[str, str], tally: Counter[str]
    ) -> dict[str, Any]:
        query = ask.query
        _check_options(query, ("$skiptoken", "$select"))
        version = ask.version
        now = self.now_ticks()
        info = self._visible(tenant_id, ask.record_id or "", now)
        offset, size = self._offset(
            ask, "p", info.id, self.participants_page_size, self.participants_max_page_size, headers
        )
        everyone = self.data(tenant_id).participants(info)
        names = _names(query)
        page = [
            _select(p, names, _PARTICIPANT_PROPERTIES, "microsoft.graph.callRecords.participant")
            for p in everyone[offset : offset + size]
        ]
        body: dict[str, Any] = {
            "@odata.context": self._context(version, f"callRecords('{info.id}')/participants_v2"),
            "value": page,
        }
        if offset + size < len(everyone):
            token = _encode_token({"k": "p", "r": info.id, "o": offset + size, "n": size})
            params = [("$select", query["$select"])] if "$select" in query else []
            body["@odata.nextLink"] = _link(
                self._sim.base_url, ask.raw_path, [*params, ("$skiptoken", token)]
            )
        _tally(tally, participants_served=len(page))
        return body

    def _offset(
        self,
        ask: _Ask,
        kind: str,
        record_id: str,
        default: int,
        most: int,
        headers: dict[str, str],
    ) -> tuple[int, int]:
        if "$skiptoken" in ask.query:
            state = _decode_token(ask.query["$skiptoken"], kind, record_id)
            offset = state.get("o")
            if not isinstance(offset, int) or offset < 0:
                raise _Problem(400, "BadRequest", "The $skiptoken is not valid.")
            return offset, int(state["n"])
        return 0, self._page_size(ask, default, most, headers)

    # ---- control endpoint

    async def _control(self, request: web.Request) -> web.Response:
        """``/_sim/call-records/now`` (GET; POST ``{"now": iso | null}``), ``config`` (POST
        knobs: ``CallRecordsConfig`` fields, ``list_page_size``, ``sessions_page_size``,
        ``participants_page_size``, ``latency``, ``latency_per_mb``, ``multi_expand``),
        ``throttle`` (POST ``{"scale": 1.0, …}`` or ``{"off": true}``), ``fail`` (POST
        ``{"id": …[, "heal": true]}``), ``prerender`` (POST ``{"start": …, "end": …[,
        "tenant", "prefer", "version", "lists"]}`` or ``{"off": true}``), ``stats`` (GET),
        ``expected`` (GET ``?start=…&end=…[&tenant=…]``)."""
        action = request.match_info["action"]
        if action == "now":
            if request.method == "POST":
                self.now = (await request.json()).get("now")
            now = self.now_ticks()
            return web.json_response({"now": None if self.now is None else format_ticks(now)})
        if action == "config" and request.method == "POST":
            spec = dict(await request.json())
            for name in ("list_page_size", "sessions_page_size", "participants_page_size"):
                if name in spec:
                    setattr(self, name, int(spec.pop(name)))
            for name in ("latency", "latency_per_mb"):
                if name in spec:
                    setattr(self, name, float(spec.pop(name)))
            if "multi_expand" in spec:
                self.multi_expand = bool(spec.pop("multi_expand"))
            known = {f.name for f in fields(CallRecordsConfig)}
            knobs = {
                k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k in known
            }
            if knobs:
                self.configure(self.config, **knobs)
            return web.json_response({"ok": True})
        if action == "throttle" and request.method == "POST":
            spec = dict(await request.json())
            if spec.pop("off", False):
                self.unthrottle()
            else:
                self.throttle(**spec)
            return web.json_response({"ok": True})
        if action == "fail" and request.method == "POST":
            spec = dict(await request.json())
            (self.heal if spec.get("heal") else self.fail_always)(str(spec["id"]))
            return web.json_response({"failing": sorted(self.failing)})
        if action == "prerender" and request.method == "POST":
            spec = dict(await request.json())
            if spec.get("off"):
                self.unprerender()
                return web.json_response({"answers": 0})
            ready = self.prerender(
                spec.get("tenant"),
                spec["start"],
                spec["end"],
                prefer=spec.get("prefer"),
                version=spec.get("version", "v1.0"),
                lists=spec.get("lists"),
            )
            return web.json_response({"answers": ready})
        if action == "stats":
            with self._lock:
                return web.json_response(dict(self.stats))
        if action == "expected":
            query = request.query
            records = self.expected(query.get("tenant"), query["start"], query["end"])
            return web.Response(body=orjson.dumps(records), content_type="application/json")
        raise web.HTTPNotFound()


class _Ask(NamedTuple):
    """One call-record request, as its answer depends on it."""

    kind: str
    """``list``, ``get``, ``sessions`` or ``participants``."""
    version: str
    record_id: str | None
    raw_path: str
    query: Mapping[str, str]
    """Decoded query options, in the order sent."""
    prefer: str
    """The ``Prefer`` header."""


class _Ready(NamedTuple):
    """A prerendered answer: its body, the headers it adds, and what it counts in ``stats``."""

    body: bytes
    headers: dict[str, str]
    tally: dict[str, int]


@dataclass
class _Prerendered:
    at: int
    """The present the answers hold for."""
    answers: dict[tuple[Any, ...], _Ready]


_PROBLEM_STATS = {404: "not_found", 500: "record_failed"}
"""The ``stats`` key an error answer counts under (else ``bad_request``)."""
BYTES_PER_MB = 1_000_000
"""What ``latency_per_mb`` counts as a megabyte of answer body."""


def _preferred(prefer: str) -> int | None:
    """The page size a ``Prefer`` header asks for (``odata.maxpagesize=N``, N >= 1)."""
    found = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", prefer)
    return None if found is None or int(found[1]) < 1 else int(found[1])


def _follow(ask: _Ask, link: str) -> _Ask:
    """The request a next link makes (same kind of answer, except a record's sessions link,
    which leads to sessions pages)."""
    parts = urlsplit(link)
    kind = "sessions" if ask.kind == "get" else ask.kind
    return ask._replace(kind=kind, raw_path=parts.path, query=dict(parse_qsl(parts.query)))


def _tally(tally: Counter[str], **amounts: int) -> None:
    tally.update(amounts)


def _parse_expand(text: str, multiple: bool) -> set[str]:
    """``$expand`` of a get: ``sessions``, ``sessions($expand=segments)``, ``participants_v2``
    (``organizer_v2`` is expanded anyway)."""
    found: set[str] = set()
    for part in re.split(r",(?![^(]*\))", text.strip()) if text.strip() else []:
        name = part.strip()
        if name == "sessions":
            found.add("sessions")
        elif re.fullmatch(r"sessions\(\s*\$expand\s*=\s*segments\s*\)", name):
            found.update(("sessions", "segments"))
        elif name in ("participants_v2", "organizer_v2"):
            found.add(name)
        else:
            raise _Problem(
                400,
                "BadRequest",
                f"Could not find a navigation property named '{name}' on type "
                "'microsoft.graph.callRecords.callRecord'.",
            )
    if not multiple and "sessions" in found and "participants_v2" in found:
        raise _Problem(
            400,
            "BadRequest",
            "Only one relationship can be expanded on a call record: sessions (with segments) "
            "or participants_v2.",
        )
    return found


def _spoil(body: dict[str, Any], fault: Fault, own_url: str) -> None:
    """Apply a page fault to an answer."""
    if fault.kind == "corrupt":
        target = body
        if isinstance(body.get("value"), list):
            if not body["value"]:
                return
            target = body["value"][0] = dict(body["value"][0])
        if fault.value is None:
            target.pop(fault.field or "id", None)
        else:
            target[fault.field or "id"] = fault.value
        return
    if "value" not in body:
        return  # a get: only corrupt applies
    if fault.kind == "empty":
        body["value"] = []
        body["@odata.nextLink"] = (
            f"{own_url}{'&' if '?' in own_url else '?'}e={uuid.uuid4().hex[:8]}"
        )
    elif fault.kind == "loop":
        body["@odata.nextLink"] = own_url
    elif fault.kind == "foreign" and "@odata.nextLink" in body:
        body["@odata.nextLink"] = body["@odata.nextLink"].replace("127.0.0.1", "127.0.0.2")


def _ticks(moment: str | datetime | int) -> int:
    if isinstance(moment, int):
        return moment
    if isinstance(moment, datetime):
        return to_ticks(moment)
    return parse_ticks(moment)
