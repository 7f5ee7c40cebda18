"""A call record read whole (``GraphClient.row_pages``, ``run.whole_records.WholeRecord``) against a tiny Graph on 127.0.0.1 that notes when each request
starts and ends: the record and its participants' first page are asked for at once, and the
checks and errors of a record read whole hold."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

import aiohttp
import orjson
import pytest
from aiohttp import web
from azure.core.credentials import AccessToken

from collector.archive.records import RecordBlobs
from collector.core.auth import TokenProvider
from collector.core.errors import GraphDataError, GraphError
from collector.core.sources import SOURCES
from collector.graph.client import GraphClient, RequestStats, RetryPolicy
from collector.run.whole_records import Memory, WholeRecord

SOURCE = SOURCES["call_records"]
DAY = date(2026, 10, 20)
KEY = "0b5c1a2e-0000-4000-8000-000000000001"
LATENCY = 0.3
"""Seconds the tiny Graph takes to answer the record and its participants' first page."""
RECORD = f"/v1.0/communications/callRecords/{KEY}"
PARTICIPANTS = f"{RECORD}/participants_v2"

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StaticCredential:
    """A credential that hands out one token (the tiny Graph checks none)."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", int(time.time()) + 3_600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


@dataclass
class TinyGraph:
    """Answers by path; notes each request's (path, start, end) on the monotonic clock."""

    answers: dict[str, Answer]
    base: str = ""
    seen: list[tuple[str, float, float]] = field(default_factory=list)

    def span(self, path: str) -> tuple[float, float]:
        (found,) = [(start, end) for p, start, end in self.seen if p == path]
        return found

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        try:
            return await self.answers[request.path](request)
        finally:
            self.seen.append((request.path, started, time.monotonic()))


def page(value: list[Any], **extra: Any) -> Answer:
    async def answer(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(LATENCY)
        return web.json_response({"value": value, **extra})

    return answer


def document(body: dict[str, Any], delay: float = LATENCY) -> Answer:
    async def answer(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay)
        return web.json_response(body)

    return answer


def not_found(delay: float = 0.0) -> Answer:
    async def answer(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay)
        error = {"error": {"code": "NotFound", "message": "gone"}}
        return web.json_response(error, status=404, headers={"request-id": "r-404"})

    return answer


@contextmanager
def served(graph: TinyGraph) -> Iterator[str]:
    """``graph`` on 127.0.0.1, in a thread and an event loop of its own (so the client's loop
    holds the client's tasks only)."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/{tail:.*}", graph.handle)
    # A request the client gave up on stops at once, and so does the server at the end.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)

    async def start() -> str:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


class Lines:
    """Where ``WholeRecord`` puts a record's line (a record this small is never split)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    async def add(self, day: date, key: str, version: int | None, line: bytes) -> None:
        assert (day, key) == (DAY, KEY)
        self.lines.append(line)


def read(graph: TinyGraph) -> tuple[dict[str, Any], float]:
    """Read the record whole from ``graph``; the row and the seconds it took."""

    async def main(endpoint: str) -> tuple[dict[str, Any], float]:
        tokens = TokenProvider(StaticCredential, "https://graph.microsoft.com/.default")
        async with aiohttp.ClientSession() as session:
            client = GraphClient(session, tokens, endpoint, retry=RetryPolicy(max_attempts=1))
            began = time.monotonic()
            try:
                lines = Lines()
                blobs = cast(RecordBlobs, lines)  # a record this small only calls add
                record = WholeRecord(
                    client, blobs, SOURCE, RequestStats(), DAY, KEY, Memory(1 << 30)
                )
                await record.read(None, lambda _key, _version: False)
                [row] = [orjson.loads(line) for line in lines.lines]
            finally:
                took = time.monotonic() - began
                # Nothing of the record is left running, whatever happened.
                assert asyncio.all_tasks() == {asyncio.current_task()}
            return row, took

    with served(graph) as endpoint:
        graph.base = endpoint
        return asyncio.run(main(endpoint))


def record(**extra: Any) -> dict[str, Any]:
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#callRecords/$entity",
        "id": KEY,
        "type": "groupCall",
        "sessions@odata.context": "https://graph.microsoft.com/v1.0/$metadata#sessions",
        "sessions": [{"id": "s1", "segments": [{"id": "g1"}]}],
        **extra,
    }


def test_the_record_and_its_participants_first_page_are_asked_for_at_once() -> None:
    graph = TinyGraph({})
    graph.answers = {
        RECORD: document(record()),
        PARTICIPANTS: page([{"id": "p1"}]),
    }
    row, took = read(graph)
    record_start, record_end = graph.span(RECORD)
    participants_start, participants_end = graph.span(PARTICIPANTS)
    # Each started before the other ended: the two latencies overlap, not one after another.
    assert participants_start < record_end and record_start < participants_end
    assert abs(participants_start - record_start) < LATENCY / 2
    assert took < 2 * LATENCY
    assert row == {
        "id": KEY,
        "type": "groupCall",
        "sessions": [{"id": "s1", "segments": [{"id": "g1"}]}],
        "participants_v2": [{"id": "p1"}],
    }  # the answer's own @odata.context annotations dropped


def test_every_further_page_of_either_is_followed() -> None:
    graph = TinyGraph({})

    def link(path: str) -> str:
        return graph.base + path

    async def sessions_2(request: web.Request) -> web.StreamResponse:
        return await page([{"id": "s2"}])(request)

    async def participants_1(request: web.Request) -> web.StreamResponse:
        body = {"value": [{"id": "p1"}], "@odata.nextLink": link("/more/participants")}
        await asyncio.sleep(LATENCY)
        return web.json_response(body)

    async def record_answer(request: web.Request) -> web.StreamResponse:
        body = record(**{"sessions@odata.nextLink": link("/more/sessions")})
        return await document(body)(request)

    graph.answers = {
        RECORD: record_answer,
        PARTICIPANTS: participants_1,
        "/more/sessions": sessions_2,
        "/more/participants": page([{"id": "p2"}]),
    }
    row, _ = read(graph)
    assert [s["id"] for s in row["sessions"]] == ["s1", "s2"]
    assert [p["id"] for p in row["participants_v2"]] == ["p1", "p2"]
    assert not any(k.endswith("@odata.nextLink") for k in row)
    # The record's sessions page was asked for only once the record named it.
    assert graph.span("/more/sessions")[0] >= graph.span(RECORD)[1]


def test_a_failing_participants_page_cancels_the_record_and_raises_its_own_error() -> None:
    graph = TinyGraph({})
    graph.answers = {RECORD: document(record(), delay=5.0), PARTICIPANTS: not_found()}
    began = time.monotonic()
    with pytest.raises(GraphError) as caught:
        read(graph)
    assert caught.value.status == 404 and caught.value.request_id == "r-404"
    assert caught.value.url.endswith("/participants_v2")
    assert time.monotonic() - began < 3.0  # the record's 5 s answer was not waited for


def test_a_missing_record_raises_its_404_not_a_group() -> None:
    graph = TinyGraph({})
    graph.answers = {RECORD: not_found(), PARTICIPANTS: page([{"id": "p1"}])}
    with pytest.raises(GraphError) as caught:
        read(graph)
    assert caught.value.status == 404 and caught.value.url.endswith(
        f"{KEY}?$expand=" + ("sessions($expand=segments)")
    )


def test_a_record_that_is_not_json_fails_and_stops_its_participants() -> None:
    async def garbage(_request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>oops</html>", content_type="application/json")

    graph = TinyGraph({})
    graph.answers = {RECORD: garbage, PARTICIPANTS: document({"value": []}, delay=5.0)}
    began = time.monotonic()
    with pytest.raises(GraphDataError, match="not JSON"):
        read(graph)
    assert time.monotonic() - began < 3.0  # the participants' 5 s answer was not waited for


def test_an_unfollowed_next_link_fails_the_record() -> None:
    graph = TinyGraph({})
    nested = {"id": "s1", "segments": [], "segments@odata.nextLink": "http://127.0.0.1:1/x"}
    graph.answers = {
        RECORD: document(record(sessions=[nested])),
        PARTICIPANTS: page([{"id": "p1"}]),
    }
    with pytest.raises(GraphDataError, match="nextLink was left unfollowed"):
        read(graph)
