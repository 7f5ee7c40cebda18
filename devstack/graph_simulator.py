"""An HTTP simulator of Graph's call-log functions, following the documented API.

Serves getSmsLog, getPstnBlockedUsersLog and getPstnOnlineMeetingDialoutReport (beta),
getDirectRoutingCalls and getPstnCalls (v1.0 and beta), in both the short and the
namespace-qualified form; checks bearer tokens with the local identity
authority; pages by 1,000 rows with absolute ``@odata.nextLink``s; refuses ranges over
90 days; and injects faults on demand (429 with Retry-After, 5xx, dropped connections,
slow pages, permanent 4xx).

Full call records (list, get, sessions and participants pages) are served by
``devstack/call_records.py`` as ``GraphSimulator.call_records``.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from collector.core.errors import InstantParseError
from collector.core.timefmt import parse_ticks

from .call_records import CallRecords
from .graph_errors import graph_error
from .identity import TENANT_ID, TokenAuthority
from .synthetic import Tenant

PAGE_SIZE = 1000
_PAGE_FAULTS = frozenset({"revoke", "empty", "loop", "shift", "foreign", "corrupt"})
"""Faults that change a normal answer rather than replace it."""
MAX_RANGE_TICKS = 90 * 86_400 * 10_000_000

# function name -> (source name, versions served, toDateTime inclusive as documented)
FUNCTIONS: dict[str, tuple[str, frozenset[str], bool]] = {
    "getSmsLog": ("sms", frozenset({"beta"}), False),
    "getDirectRoutingCalls": ("direct_routing", frozenset({"v1.0", "beta"}), False),
    "getPstnCalls": ("pstn", frozenset({"v1.0", "beta"}), True),
    "getPstnBlockedUsersLog": ("pstn_blocked_users", frozenset({"beta"}), False),
    "getPstnOnlineMeetingDialoutReport": ("pstn_dialout_report", frozenset({"beta"}), False),
}
_PATH = re.compile(
    r"/(?P<version>v1\.0|beta)/communications/callRecords/"
    r"(?:microsoft\.graph\.callRecords\.)?(?P<function>\w+)"
    r"\((?P<params>[^)]*)\)"
)


@dataclass
class Fault:
    """A misbehaviour applied to the next matching data requests.

    kind: ``429``, ``500``, ``502``, ``503``, ``504`` (transient), ``drop`` (close the
    connection without answering), ``slow`` (answer after ``delay`` seconds), ``status``
    (answer ``status``/``code``, e.g. a permanent 403), ``garbage`` (200 with a body that is
    not JSON), ``empty`` (an empty page whose nextLink repeats the same rows), ``loop`` (a
    page whose nextLink is its own URL), ``shift`` (the nextLink skips back ``shift`` rows, as
    offset paging does when rows arrive meanwhile), ``foreign`` (the nextLink points at another
    host), ``corrupt`` (the page's first row gets ``field`` set to ``value``, or removed when
    ``value`` is None), ``revoke`` (revoke every token issued so far, so the request meets a real
    401). ``count`` requests are hit (-1: all), after ``after`` matching ones passed; only
    requests of ``source`` and, if given, whose function parameters contain ``window`` (e.g.
    ``fromDateTime=2026-10-20``) match.
    """

    kind: str
    count: int = 1
    source: str | None = None
    after: int = 0
    retry_after: float | None = None
    delay: float = 0.0
    status: int = 403
    code: str = "Forbidden"
    field: str | None = None
    value: Any = None
    shift: int = 5
    window: str | None = None

    def matches(self, source: str, params: str = "") -> bool:
        """True when this fault applies to a request of ``source`` with these parameters."""
        return (
            self.count != 0
            and self.source in (None, source)
            and (self.window is None or self.window in params)
        )


class GraphSimulator:
    """State and request handling of the simulator (served by ``app()``)."""

    def __init__(
        self, tenant: Tenant, authority: TokenAuthority, page_size: int = PAGE_SIZE
    ) -> None:
        self.tenant = tenant
        """The identity's home tenant (single-tenant mode)."""
        self.tenants: dict[str, Tenant] = {TENANT_ID: tenant}
        """Every tenant served, by id: a token's tenant decides whose rows a request gets."""
        self.authority = authority
        self.page_size = page_size
        self.base_url = ""  # set once the server listens
        self.faults: list[Fault] = []
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._chaos: tuple[float, random.Random, tuple[Fault, ...]] | None = None
        self._born = time.monotonic()
        self.latency = 0.0
        """Seconds each data request takes to answer (Graph's page latency)."""
        self._limits: tuple[int, int, float] | None = None
        self._started: dict[tuple[str, str], list[float]] = {}
        """Request start times per (tenant, function): Graph's limits apply per tenant."""
        self.windows: list[tuple[str, int, int]] = []
        """(source, fromDateTime, toDateTime) in ticks of every first-page request served."""
        self.arrivals: list[tuple[str, str, int]] = []
        """(source, raw function parameters, ``$skip``) of every data request, in the order
        they arrived (before the page latency): tests read the order of pages from it."""
        self.on_request: Callable[[int], None] | None = None
        """Called with the running count of data requests before each is answered (tests
        use it to kill the collector at an exact point)."""
        self.call_records = CallRecords(self)
        """Full call records (``devstack/call_records.py``): their own clock, knobs, limits
        and stats; they do not count against the call-log functions' limits or stats."""

    def throttle(self, per_log: int, per_app: int, period: float = 60.0) -> None:
        """Answer 429 (with Retry-After) past ``per_log`` requests of one function or
        ``per_app`` in all, within any ``period`` seconds, as Graph does, per tenant. The
        count starts afresh (benchmarks call this between configurations)."""
        with self._lock:
            self._limits = (per_log, per_app, period)
            self._started.clear()

    def _throttled(self, tenant: str, source: str) -> float | None:
        """Seconds until a slot frees if this request exceeds a limit of its tenant, else None
        (counted)."""
        if self._limits is None:
            return None
        per_log, per_app, period = self._limits
        now = time.monotonic()
        with self._lock:
            mine = [t for t in self._started.get((tenant, source), []) if t > now - period]
            every = [
                t
                for (owner, _), ts in self._started.items()
                if owner == tenant
                for t in ts
                if t > now - period
            ]
            if len(mine) >= per_log or len(every) >= per_app:
                oldest = mine[0] if len(mine) >= per_log else min(every)
                return max(0.0, oldest + period - now)
            mine.append(now)
            self._started[(tenant, source)] = mine
        return None

    def chaos(self, rate: float, seed: int, menu: tuple[Fault, ...]) -> None:
        """Hit each data request with probability ``rate`` by a fault drawn from ``menu``."""
        with self._lock:
            self._chaos = (rate, random.Random(seed), menu)

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault (thread-safe: tests call this from outside the server's loop)."""
        with self._lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        """Remove every queued fault."""
        with self._lock:
            self.faults.clear()

    def _take_fault(self, source: str, params: str = "") -> Fault | None:
        with self._lock:
            if self._chaos is not None:
                rate, rng, menu = self._chaos
                if rng.random() < rate:
                    return rng.choice(menu)
            for fault in self.faults:
                if not fault.matches(source, params):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    return None
                if fault.count > 0:
                    fault.count -= 1
                return fault
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one call-log request."""
        request_id = str(uuid.uuid4())
        raw_path = request.rel_url.raw_path
        match = _PATH.fullmatch(raw_path)
        if match is None or match["function"] not in FUNCTIONS:
            return graph_error(
                400,
                "BadRequest",
                f"Resource not found for the segment in '{raw_path}'.",
                request_id,
            )
        source, versions, inclusive = FUNCTIONS[match["function"]]
        if match["version"] not in versions:
            return graph_error(
                400,
                "BadRequest",
                f"Resource not found for the segment '{match['function']}'.",
                request_id,
            )
        self.stats["requests"] += 1
        self.stats[f"requests:{source}"] += 1
        skip_text = request.query.get("$skip", "0")
        self.arrivals.append(
            (source, match["params"], int(skip_text) if skip_text.isdigit() else -1)
        )
        now_ms = int((time.monotonic() - self._born) * 1000)
        self.stats.setdefault("first_request_ms", now_ms)
        if self.on_request is not None:
            self.on_request(self.stats["requests"])

        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        issued = self.authority.lookup(token)
        tenant_id = TENANT_ID if issued is None else issued.tenant
        self.stats[f"requests@{tenant_id}"] += 1
        wait = self._throttled(tenant_id, source)
        if wait is not None:
            self.stats["throttled"] += 1
            self.stats[f"throttled@{tenant_id}"] += 1
            throttled = graph_error(429, "TooManyRequests", "Too many requests.", request_id)
            throttled.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return throttled
        if self.latency:
            await asyncio.sleep(self.latency)

        fault = self._take_fault(source, match["params"])
        if fault is not None:
            self.stats[f"fault:{fault.kind}"] += 1
            if fault.kind == "revoke":
                self.authority.revoke_all()  # this very request then meets a real 401

        problem = "no bearer token" if not token else self.authority.problem(token, self.base_url)
        if problem:
            self.stats["unauthorized"] += 1
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                f"Access token is invalid: {problem}.",
                request_id,
            )

        if fault is not None and fault.kind not in _PAGE_FAULTS:
            response = await self._apply(fault, request, request_id)
            if response is not None:
                return response

        params = self._params(match["params"])
        if isinstance(params, str):
            return graph_error(400, "BadRequest", params, request_id)
        start, end = params
        if end - start > MAX_RANGE_TICKS:
            return graph_error(
                406,
                "NotAcceptable",
                "The fromDateTime and toDateTime values can't be more than a date range of 90 days.",
                request_id,
            )
        try:
            skip = int(request.query.get("$skip", "0"))
        except ValueError:
            return graph_error(400, "BadRequest", "Invalid $skip.", request_id)
        if skip == 0:
            self.windows.append((source, start, end))
        rows = self.tenants[tenant_id].rows(source, start, end, inclusive_end=inclusive)
        page = rows[skip : skip + self.page_size]
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/{match['version']}/$metadata#Collection(microsoft.graph.callRecords.row)",
            "@odata.count": len(page),
            "value": page,
        }
        if skip + self.page_size < len(rows):
            body["@odata.nextLink"] = f"{self.base_url}{raw_path}?$skip={skip + self.page_size}"
        if fault is not None and fault.kind == "empty":
            # An empty page whose nextLink leads to the same rows: clients must follow it.
            body.update({"@odata.count": 0, "value": []})
            body["@odata.nextLink"] = (
                f"{self.base_url}{raw_path}?$skip={skip}&$skiptoken=e{uuid.uuid4().hex[:8]}"
            )
        elif fault is not None and fault.kind == "loop":
            body["@odata.nextLink"] = f"{self.base_url}{request.rel_url.raw_path_qs}"
        elif fault is not None and fault.kind == "shift" and "@odata.nextLink" in body:
            body["@odata.nextLink"] = (
                f"{self.base_url}{raw_path}?$skip={skip + self.page_size - fault.shift}"
            )
        elif fault is not None and fault.kind == "foreign" and "@odata.nextLink" in body:
            body["@odata.nextLink"] = body["@odata.nextLink"].replace("127.0.0.1", "127.0.0.2")
        elif fault is not None and fault.kind == "corrupt" and page:
            first = dict(page[0])
            if fault.value is None:
                first.pop(fault.field or "id", None)
            else:
                first[fault.field or "id"] = fault.value
            body["value"] = [first, *page[1:]]
        self.stats["rows_served"] += len(page)
        self.stats["last_answer_ms"] = int((time.monotonic() - self._born) * 1000)
        return web.Response(
            body=orjson.dumps(body),
            content_type="application/json",
            charset="utf-8",
            headers={
                "request-id": request_id,
                "client-request-id": request.headers.get("client-request-id", request_id),
            },
        )

    @staticmethod
    def _params(raw: str) -> tuple[int, int] | str:
        """Parse ``fromDateTime=…,toDateTime=…``; an error message when they are unusable."""
        values: dict[str, str] = {}
        for part in raw.split(","):
            name, _, value = part.partition("=")
            values[name.strip()] = unquote(value).strip().strip("'")
        found: list[int] = []
        for name in ("fromDateTime", "toDateTime"):
            text = values.get(name, "")
            if not text:
                return f"The parameter '{name}' is missing or empty."
            try:
                found.append(parse_ticks(text))
            except InstantParseError:
                return f"The parameter '{name}' is not a valid DateTimeOffset: '{text}'."
        if found[1] < found[0]:
            return "toDateTime must not be earlier than fromDateTime."
        return found[0], found[1]

    async def _apply(
        self, fault: Fault, request: web.Request, request_id: str
    ) -> web.StreamResponse | None:
        """Carry out ``fault``; None means: go on and answer normally (after a delay)."""
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return None
        if fault.kind == "drop":
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("simulated dropped connection")
        if fault.kind == "garbage":
            return web.Response(
                text="<html>Service temporarily unavailable</html>",
                content_type="application/json",
                headers={"request-id": request_id},
            )
        if fault.kind == "status":
            return graph_error(fault.status, fault.code, f"Simulated {fault.code}.", request_id)
        status = int(fault.kind)
        codes = {
            429: "TooManyRequests",
            500: "InternalServerError",
            502: "BadGateway",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
        }
        response = graph_error(
            status, codes.get(status, "Error"), "Simulated transient failure.", request_id
        )
        if fault.retry_after is not None:
            response.headers["Retry-After"] = (
                str(int(fault.retry_after))
                if fault.retry_after == int(fault.retry_after)
                else str(fault.retry_after)
            )
        return response

    async def control(self, request: web.Request) -> web.Response:
        """``/_sim/faults`` (POST adds, DELETE clears), ``/_sim/stats``, ``/_sim/revoke-tokens``,
        ``/_sim/reset-span`` (the next request starts a new first-request time)."""
        action = request.match_info["action"]
        if action == "faults" and request.method == "POST":
            for spec in await request.json():
                self.add_fault(Fault(**spec))
        elif action == "faults" and request.method == "DELETE":
            self.clear_faults()
        elif action == "revoke-tokens" and request.method == "POST":
            self.authority.revoke_all()
        elif action == "reset-span" and request.method == "POST":
            self.stats.pop("first_request_ms", None)
        elif action != "stats":
            raise web.HTTPNotFound()
        return web.json_response(dict(self.stats))

    def app(self) -> web.Application:
        """Return the aiohttp application serving this simulator."""
        app = web.Application()
        app.router.add_route("*", "/_sim/{action}", self.control)
        self.call_records.add_routes(app)  # before the catch-all below
        app.router.add_get("/{tail:.*}", self.handle)
        return app
