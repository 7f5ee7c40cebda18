"""Microsoft Graph client for the call-log functions and call records: paging, reading a
listed row whole, retries, token refresh."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from yarl import URL

from ..core.auth import TokenProvider
from ..core.errors import GraphDataError, GraphError, GraphUnavailableError, PagingError
from ..core.sources import Source
from ..core.timefmt import format_instant
from ..core.windows import Window
from .budget import RequestBudget, Scope

log = logging.getLogger("collector.graph")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
"""Throttling and transient server errors; every other error status fails at once."""
MAX_EMPTY_PAGES = 100
"""Empty pages with a nextLink followed in a row before paging is declared broken."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before giving up on one request."""

    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_total_wait: float = 600.0
    """Seconds one request may spend waiting between attempts; ``Retry-After`` is honoured in
    full, but a request that would wait longer in total fails instead (the window stays for
    the next run), so a run never outlives the Functions timeout on one request."""

    def backoff(self, attempt: int, jitter: float) -> float:
        """Exponential backoff for retry ``attempt`` (1-based), jittered to 50-100 %."""
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * (0.5 + jitter / 2))


@dataclass
class RequestStats:
    """What a sequence of requests cost, for progress logs and run summaries."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    token_refreshes: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    """Requests by outcome: the HTTP status (``"200"``, ``"429"``…), ``"error"`` (no answer,
    or not all of it), ``"cancelled"`` (stopped at the run's hard time limit)."""


ROW_PAGES_AHEAD = 4
"""Pages of one row read ahead of the caller: memory stays bounded when writing them out
is slower than Graph."""


@dataclass(frozen=True)
class RowPage:
    """A page of one row read whole (``GraphClient.row_pages``)."""

    relation: str | None
    """The relation the page is of; None: the row itself (``document``)."""
    items: list[Any]
    next: str | None
    """The nextLink after this page (None: the relation's last page)."""
    size: int
    """Bytes of Graph's answer (0 for a first page that came inside the row)."""
    document: dict[str, Any] = field(default_factory=dict)
    """The row without its relations' arrays (``relation`` None only)."""


async def _reporting(work: Awaitable[None], queue: asyncio.Queue[Any]) -> None:
    """Run ``work``, then put None (done) or its error on ``queue``."""
    try:
        await work
    except Exception as exc:
        await queue.put(exc)
    else:
        await queue.put(None)


@dataclass(frozen=True)
class Page:
    """One parsed page of a window."""

    number: int
    rows: list[Any]
    request_id: str | None
    url: str
    more: bool = False
    """True when a nextLink follows: the window needs another page."""


def window_url(endpoint: str, source: Source, window: Window) -> str:
    """Return the first-page URL of ``window`` with URL-encoded ISO 8601 UTC parameters."""

    def param(moment: datetime) -> str:
        return quote(format_instant(moment), safe="")

    return endpoint + source.path(param(window.start), param(window.end))


def send_tracing() -> aiohttp.TraceConfig:
    """Tracing for the Graph session: tells the request budget when a request really left."""

    async def headers_sent(
        _session: aiohttp.ClientSession,
        context: Any,
        _params: aiohttp.TraceRequestHeadersSentParams,
    ) -> None:
        sent = (context.trace_request_ctx or {}).get("sent")
        if sent is not None:
            sent()

    tracing = aiohttp.TraceConfig()
    tracing.on_request_headers_sent.append(headers_sent)
    return tracing


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC too
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _parse_json(body: bytes) -> Any:
    """Parse a page once, fast (orjson), and again with the standard library only if orjson
    refuses it. orjson reads an integer beyond 64 bits as a float: no documented field of
    these logs holds one, and a check of every page would cost six times the parse."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _graph_error(body: bytes) -> tuple[str | None, str]:
    try:
        error = json.loads(body)["error"]
        return error.get("code"), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, body[:300].decode("utf-8", "replace")


class GraphClient:
    """Reads Graph call-log windows on one shared ``aiohttp.ClientSession``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: TokenProvider,
        endpoint: str,
        *,
        timeout: float = 100.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        budget: RequestBudget | None = None,
    ) -> None:
        self._session = session
        self._tokens = tokens
        self._endpoint = endpoint
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._budget = budget

    async def pages(
        self, source: Source, window: Window, stats: RequestStats
    ) -> AsyncGenerator[Page, None]:
        """Yield every page of ``window``, following ``@odata.nextLink`` until it is absent.

        The next page is requested as soon as its link is known, while the caller processes
        this one, so a window's pages cost one page latency each, not latency plus
        processing. Close the iterator (``contextlib.aclosing``) if you stop early: that
        cancels the request in flight. Empty pages with a nextLink are followed; a nextLink
        seen before raises ``PagingError``.
        """
        url = window_url(self._endpoint, source, window)
        scope = Scope(source.name, source.records_budget)
        seen = {url}
        number = empty_run = 0
        fetch: asyncio.Task[tuple[bytes, str | None]] | None = asyncio.create_task(
            self._get(url, stats, scope)
        )
        try:
            while fetch is not None:
                number += 1
                body, request_id = await fetch
                fetch = None
                where = f"{source.name} window {window} page {number} [request-id {request_id}]"
                try:
                    document = _parse_json(body)
                except ValueError as exc:
                    raise GraphDataError(f"{where}: response is not JSON ({exc})") from None
                rows = document.get("value") if isinstance(document, dict) else None
                if not isinstance(rows, list):
                    raise GraphDataError(f"{where}: response has no 'value' array")
                link = document.get("@odata.nextLink")
                if link is not None:
                    empty_run = 0 if rows else empty_run + 1
                    self._check_link(link, where)
                    if link in seen:
                        raise PagingError(
                            f"{where}: @odata.nextLink repeats an earlier page: {link}"
                        )
                    if empty_run >= MAX_EMPTY_PAGES:
                        raise PagingError(
                            f"{where}: {empty_run} empty pages in a row, each with a nextLink"
                        )
                    seen.add(link)
                    fetch = asyncio.create_task(self._get(link, stats, scope))
                yield Page(number, rows, request_id, url, link is not None)
                url = link
        finally:
            if fetch is not None:
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)

    async def row_pages(
        self,
        source: Source,
        key: str,
        stats: RequestStats,
        resume: Mapping[str, str | None] | None = None,
    ) -> AsyncGenerator[RowPage, None]:
        """Yield one listed row's pages as they arrive: the row itself first (``relation``
        None), then each page of its expanded relations (the first came inside the row) and
        of each of ``source.relations`` (from its own endpoint), each relation's in order
        (a relation's first page asked for with the row waits for it).

        The row and the first page of its other relations are asked for at once, and every
        relation is paged side by side: a record's pages are otherwise one latency after
        another. ``resume`` continues a row read in part before: per relation, the nextLink
        to go on from (None: the relation was read whole); the row is then asked for first,
        and its relations only once it is yielded (the caller may find its version changed
        and stop). A failing request stops the others and its own error is raised.
        """
        scope = Scope(source.name, source.records_budget, key)
        later = Scope(source.name, source.records_budget, key, later=True)
        where = f"{source.name} row {key}"
        queue: asyncio.Queue[RowPage | BaseException | None] = asyncio.Queue(ROW_PAGES_AHEAD)
        tasks: list[asyncio.Task[None]] = []
        row_in = asyncio.Event()  # the row is yielded first: its version says what pages are

        async def relay(relation: str, url: str, first: Scope) -> None:
            size_asked = source.page_size(relation)
            paging = self._collection(url, stats, first, later, where, size_asked)
            async for items, link, size in paging:
                await row_in.wait()
                await queue.put(RowPage(relation, items, link, size))

        def start(relation: str, url: str | None, first: Scope) -> None:
            if url is not None:
                tasks.append(asyncio.create_task(_reporting(relay(relation, url, first), queue)))

        async def the_row() -> None:
            url = self._endpoint + source.row_path(key)
            expanded_size = next(map(source.page_size, source.expanded), None)
            body, request_id = await self._get(url, stats, scope, expanded_size)
            row = self._document(body, f"{where} [request-id {request_id}]")
            # The response's own annotations describe this answer, not the record: off.
            for name in [k for k in row if k.endswith("@odata.context")]:
                del row[name]
            expanded = []
            for name in [k for k in row if k.endswith("@odata.nextLink")]:
                relation = name.removesuffix("@odata.nextLink")
                if not isinstance(row.setdefault(relation, []), list):
                    raise GraphDataError(f"{where}: {relation!r} is not an array")
                expanded.append((relation, row.pop(name)))
            firsts = {r: row.pop(r) for r in source.expanded if isinstance(row.get(r), list)}
            for relation, _ in expanded:
                firsts.setdefault(relation, row.pop(relation, []))
            await queue.put(RowPage(None, [], None, len(body), row))
            row_in.set()
            links = dict(expanded)
            for relation, items in firsts.items():
                if resume is not None and relation in resume:
                    start(relation, resume[relation], later)
                    continue
                await queue.put(RowPage(relation, items, links.get(relation), 0))
                if (link := links.get(relation)) is not None:
                    self._check_link(link, where)
                    start(relation, link, later)
            if resume is not None:
                for relation in source.relations:
                    if relation in resume:  # a later page
                        start(relation, resume[relation], later)
                    else:
                        start(relation, self._endpoint + source.relation_path(key, relation), scope)

        tasks.append(asyncio.create_task(_reporting(the_row(), queue)))
        if resume is None:
            for relation in source.relations:
                start(relation, self._endpoint + source.relation_path(key, relation), scope)
        try:
            finished = 0
            while finished < len(tasks):
                page = await queue.get()
                if page is None:
                    finished += 1
                elif isinstance(page, BaseException):
                    raise page
                else:
                    yield page
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _collection(
        self,
        url: str,
        stats: RequestStats,
        scope: Scope,
        later: Scope,
        where: str,
        page_size: int | None = None,
    ) -> AsyncGenerator[tuple[list[Any], str | None, int], None]:
        """Yield each page of a paged collection from ``url`` on: its items, the nextLink to
        the next page (None: the last) and the answer's size (the first request counts as
        ``scope``, the pages it links to as ``later``)."""
        seen: set[str] = set()
        link: str | None = url
        while link is not None:
            self._check_link(link, where)
            if link in seen:
                raise PagingError(f"{where}: @odata.nextLink repeats an earlier page: {link}")
            seen.add(link)
            body, request_id = await self._get(link, stats, scope, page_size)
            page = self._document(body, f"{where} [request-id {request_id}]")
            value = page.get("value")
            if not isinstance(value, list):
                raise GraphDataError(f"{where} [request-id {request_id}]: no 'value' array")
            # A collection's next page, whatever it is prefixed with (sessions@…).
            link = next((v for k, v in page.items() if k.endswith("@odata.nextLink")), None)
            if link is not None:
                self._check_link(link, where)
            yield value, link, len(body)
            scope = later

    @staticmethod
    def _document(body: bytes, where: str) -> dict[str, Any]:
        """A response body that must be a JSON object."""
        try:
            document = _parse_json(body)
        except ValueError as exc:
            raise GraphDataError(f"{where}: response is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise GraphDataError(f"{where}: response is not a JSON object")
        return document

    def _check_link(self, link: object, where: str) -> None:
        """Refuse a nextLink that is not an absolute URL on the configured Graph endpoint:
        following it would send the bearer token elsewhere."""
        if not isinstance(link, str):
            raise GraphDataError(f"{where}: @odata.nextLink is not a string: {link!r}")
        parts, home = urlsplit(link), urlsplit(self._endpoint)
        if (parts.scheme, parts.netloc.lower()) != (home.scheme, home.netloc.lower()):
            raise GraphDataError(
                f"{where}: @odata.nextLink leaves {home.scheme}://{home.netloc}: {link!r}"
            )

    async def _get(
        self, url: str, stats: RequestStats, scope: Scope, page_size: int | None = None
    ) -> tuple[bytes, str | None]:
        """GET ``url`` with retries, each attempt within ``scope``'s request budget (asking
        for pages of ``page_size``, if given); return the 200 body and Graph's request-id."""
        token = await self._tokens.token()
        refreshed = False
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            sent = await self._budget.acquire(scope) if self._budget is not None else None
            stats.requests += 1
            headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "client-request-id": str(uuid.uuid4()),
                **({"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}),
            }
            delay: float | None
            try:
                async with self._session.get(
                    URL(url, encoded=True),
                    headers=headers,
                    timeout=self._timeout,
                    trace_request_ctx={"sent": sent},
                ) as response:
                    request_id = response.headers.get("request-id")
                    body = await response.read()
                    stats.statuses[str(response.status)] += 1
                    if response.status == 200:
                        return body, request_id
                    status = response.status
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            except asyncio.CancelledError:  # stopped at the run's hard time limit
                stats.statuses["cancelled"] += 1
                raise
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                stats.statuses["error"] += 1  # no answer, or not all of it
                failure = f"{type(exc).__name__}: {exc}".rstrip(": ")
                if attempt >= self._retry.max_attempts:
                    raise GraphUnavailableError(
                        f"Graph unreachable after {attempt} attempts ({failure}) GET {url}"
                    ) from exc
                delay = self._retry.backoff(attempt, random.random())
                log.warning("retrying GET %s in %.1fs after %s", url, delay, failure)
            else:
                code, message = _graph_error(body)
                if status == 401 and not refreshed:
                    refreshed = True
                    stats.token_refreshes += 1
                    log.warning("Graph rejected the token (%s); refreshing it once", code)
                    token = await self._tokens.refresh(token)
                    continue
                if status == 429:
                    stats.throttled += 1
                if status not in RETRYABLE_STATUS or attempt >= self._retry.max_attempts:
                    raise GraphError(status, code, message, request_id, url, attempt)
                if status == 429 and retry_after is not None and self._budget is not None:
                    self._budget.pause(scope, retry_after)  # for every worker
                delay = (
                    retry_after
                    if retry_after is not None
                    else self._retry.backoff(attempt, random.random())
                )
                if waited + delay > self._retry.max_total_wait:
                    raise GraphError(status, code, message, request_id, url, attempt)
                log.warning(
                    "Graph HTTP %s %s [request-id %s]; retrying in %.1fs (attempt %d of %d)",
                    status,
                    code,
                    request_id,
                    delay,
                    attempt,
                    self._retry.max_attempts,
                )
            stats.retries += 1
            waited += delay
            await self._sleep(delay)
