"""The Graph simulator and identity endpoint follow the documented protocols."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from devstack.stack import GraphStack
from devstack.synthetic import Tenant


@pytest.fixture
def graph() -> Iterator[GraphStack]:
    stack = GraphStack(
        Tenant(seed=3, rows_per_day={"sms": 50, "direct_routing": 2_100, "pstn": 30})
    )
    yield stack
    stack.stop()


async def _token(
    graph: GraphStack, resource: str | None = None, header: str | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            graph.identity_endpoint,
            params={"api-version": "2019-08-01", "resource": resource or graph.graph_url},
            headers={"X-IDENTITY-HEADER": header or graph.identity_header},
        ) as response,
    ):
        return response.status, await response.json()


async def _get(graph: GraphStack, path: str, token: str | None) -> tuple[int, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    url = path if path.startswith("http") else graph.graph_url + path
    async with (
        aiohttp.ClientSession() as session,
        session.get(URL(url, encoded=True), headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def call(graph: GraphStack, path: str, token: str | None = "auto") -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        value = token
        if token == "auto":
            value = (await _token(graph))[1]["access_token"]
        return await _get(graph, path, value)

    return asyncio.run(go())


DR = "/v1.0/communications/callRecords/getDirectRoutingCalls(fromDateTime=2026-11-20,toDateTime=2026-11-21)"


def test_identity_endpoint_speaks_app_service_protocol(graph: GraphStack) -> None:
    status, body = asyncio.run(_token(graph))
    assert status == 200 and body["token_type"] == "Bearer" and int(body["expires_on"]) > 0
    status, body = asyncio.run(_token(graph, header="wrong"))
    assert status == 400


def test_paging_with_absolute_next_links(graph: GraphStack) -> None:
    status, first = call(graph, DR)
    assert status == 200 and first["@odata.count"] == 1000 and len(first["value"]) == 1000
    assert (
        first["@odata.nextLink"].startswith(graph.graph_url + "/v1.0/")
        and "$skip=1000" in first["@odata.nextLink"]
    )
    _, second = call(graph, first["@odata.nextLink"])
    _, third = call(graph, second["@odata.nextLink"])
    assert "@odata.nextLink" not in third and third["@odata.count"] == 100
    ids = [r["id"] for page in (first, second, third) for r in page["value"]]
    assert len(set(ids)) == 2_100


def test_both_function_name_forms_and_encoded_timestamps(graph: GraphStack) -> None:
    qualified = DR.replace(
        "getDirectRoutingCalls", "microsoft.graph.callRecords.getDirectRoutingCalls"
    )
    encoded = DR.replace("2026-11-20", "2026-11-20T00%3A00%3A00.0000000Z").replace(
        "2026-11-21", "2026-11-21T00%3A00%3A00Z"
    )
    pages = [call(graph, p)[1]["value"] for p in (DR, qualified, encoded)]
    assert pages[0] == pages[1] == pages[2]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (
            "/v1.0/communications/callRecords/getSmsLog(fromDateTime=2026-11-20,toDateTime=2026-11-21)",
            400,
            "BadRequest",
        ),
        (
            "/v1.0/communications/callRecords/getPstnCalls(fromDateTime=,toDateTime=2026-11-21)",
            400,
            "BadRequest",
        ),
        (
            "/v1.0/communications/callRecords/getPstnCalls(fromDateTime=2026-01-01,toDateTime=2026-04-02)",
            406,
            "NotAcceptable",
        ),
    ],
)
def test_documented_errors(graph: GraphStack, path: str, status: int, code: str) -> None:
    got, body = call(graph, path)
    assert got == status and body["error"]["code"] == code
    assert body["error"]["innerError"]["request-id"]


def test_bearer_token_is_checked(graph: GraphStack) -> None:
    assert call(graph, DR, token=None)[0] == 401
    assert call(graph, DR, token="forged")[0] == 401

    async def wrong_audience() -> int:
        token = (await _token(graph, resource="https://graph.microsoft.com"))[1]["access_token"]
        return (await _get(graph, DR, token))[0]

    assert asyncio.run(wrong_audience()) == 401


def test_sms_on_beta_and_pstn_end_is_inclusive_as_documented(graph: GraphStack) -> None:
    sms = (
        "/beta/communications/callRecords/getSmsLog(fromDateTime=2026-11-20,toDateTime=2026-11-21)"
    )
    status, body = call(graph, sms)
    assert status == 200 and len(body["value"]) == 50
    pstn = "/v1.0/communications/callRecords/getPstnCalls(fromDateTime=2026-11-20,toDateTime=2026-11-21)"
    stamps = [r["startDateTime"] for r in call(graph, pstn)[1]["value"]]
    assert (
        stamps[-1] == "2026-11-21T00:00:00Z" and len(stamps) == 31
    )  # includes next midnight's row


def test_the_dial_out_report_aggregates_the_range_s_conference_dial_outs(graph: GraphStack) -> None:
    base = "/communications/callRecords/getPstnOnlineMeetingDialoutReport"
    days = ("2026-11-20", "2026-11-21", "2026-11-22")

    def report(start: str, end: str) -> list[dict[str, Any]]:
        status, body = call(graph, f"/beta{base}(fromDateTime={start},toDateTime={end})")
        assert status == 200
        return list(body["value"])

    assert call(graph, f"/v1.0{base}(fromDateTime={days[0]},toDateTime={days[1]})")[0] == 400
    pstn = "/v1.0/communications/callRecords/getPstnCalls"
    calls = [
        c
        for c in call(graph, f"{pstn}(fromDateTime={days[0]},toDateTime={days[1]})")[1]["value"]
        if c["callType"] == "conf_out" and c["startDateTime"] < days[1]
    ]
    first = report(days[0], days[1])
    assert sum(r["totalCalls"] for r in first) == len(calls) > 0
    assert sum(r["totalCallSeconds"] for r in first) == sum(c["duration"] for c in calls)

    # Rows are aggregates of the range asked for: two days are the sum of each day's.
    def per_group(rows: list[dict[str, Any]]) -> Counter[str]:
        totals: Counter[str] = Counter()
        for r in rows:
            group = (r["userId"], r["usageLocation"], r["destinationContext"], r["currency"])
            totals[repr(group)] += r["totalCallSeconds"]
        return totals

    both = report(days[0], days[2])
    assert per_group(both) == per_group(first) + per_group(report(days[1], days[2]))
