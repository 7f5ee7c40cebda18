"""The Graph simulator's full call records follow Graph's documented API, over real HTTP:
list with ``$filter`` and paging, get with ``$expand``, sessions and participants paging,
records appearing late, changing, then settling, deleted at 30 days, the call-records
limits, and the ground truth (``expected``) the collector's archive is checked against."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Iterator, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from yarl import URL

from collector.core.timefmt import TICKS_PER_SECOND, parse_ticks
from collector.graph.budget import CALL_RECORDS_PER_APP, RECORD_FIRST_PAGE, RECORD_LATER_PAGES
from devstack.call_records import METRIC_UPDATED, SESSION_ADDED, CallRecordLimits, RecordInfo
from devstack.graph_simulator import Fault
from devstack.stack import GraphStack
from devstack.synthetic import TICKS_PER_DAY, Tenant, format_ticks

DAY = "2026-10-20T00:00:00Z"
NEXT_DAY = "2026-10-21T00:00:00Z"
NOW = "2026-10-27T00:00:00Z"
"""Every record of DAY is available, settled and kept."""
ROOT = "/v1.0/communications/callRecords"
OTHER_TENANT = "0b5f8a7e-4c1d-4a4e-9f1e-5d2b7c9a1e33"


@pytest.fixture
def graph() -> Iterator[GraphStack]:
    stack = GraphStack(Tenant(seed=5, rows_per_day={}))
    stack.simulator.call_records.configure(records_per_day=30)
    stack.simulator.call_records.now = NOW
    yield stack
    stack.stop()


class Reply(NamedTuple):
    status: int
    body: Any
    headers: Mapping[str, str]


class Client:
    """An HTTP client of the simulator with a Graph token of the home tenant."""

    def __init__(self, graph: GraphStack, tenant: str | None = None) -> None:
        self.graph = graph
        self.tenant = tenant
        self.token = ""

    async def __aenter__(self) -> Client:
        self.session = aiohttp.ClientSession()
        if self.tenant is None:
            async with self.session.get(
                self.graph.identity_endpoint,
                params={"api-version": "2019-08-01", "resource": self.graph.graph_url},
                headers={"X-IDENTITY-HEADER": self.graph.identity_header},
            ) as response:
                self.token = (await response.json())["access_token"]
        else:
            self.token, _ = self.graph.authority.issue(self.graph.graph_url, "app", self.tenant)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.session.close()

    async def get(self, path: str, *, prefer: int | None = None, auth: bool = True) -> Reply:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        if prefer is not None:
            headers["Prefer"] = f"odata.maxpagesize={prefer}"
        url = path if path.startswith("http") else self.graph.graph_url + path
        async with self.session.get(URL(url, encoded=True), headers=headers) as response:
            return Reply(response.status, orjson.loads(await response.read()), response.headers)

    async def ok(self, path: str, *, prefer: int | None = None) -> Any:
        reply = await self.get(path, prefer=prefer)
        assert reply.status == 200, reply.body
        return reply.body

    async def pages(self, path: str, *, prefer: int | None = None) -> list[Any]:
        """Every page of a collection, following ``@odata.nextLink`` whole."""
        found = [await self.ok(path, prefer=prefer)]
        while "@odata.nextLink" in found[-1]:
            link = found[-1]["@odata.nextLink"]
            assert link.startswith(self.graph.graph_url + "/v1.0/communications/callRecords")
            found.append(await self.ok(link))
        return found

    async def listed(self, start: str, end: str, *, prefer: int | None = None) -> list[Any]:
        return [
            record
            for page in await self.pages(window(start, end), prefer=prefer)
            for record in page["value"]
        ]

    async def archived(self, record_id: str) -> dict[str, Any]:
        """What the collector archives of a record: the get with every session page and
        every participants page merged in, without paging annotations."""
        body = await self.ok(f"{ROOT}/{record_id}?$expand=sessions($expand=segments)")
        sessions = list(body["sessions"])
        link = body.get("sessions@odata.nextLink")
        while link is not None:
            page = await self.ok(link)
            sessions.extend(page["value"])
            link = page.get("@odata.nextLink")
        participants = [
            p
            for page in await self.pages(f"{ROOT}/{record_id}/participants_v2")
            for p in page["value"]
        ]
        record = {
            k: v for k, v in body.items() if not k.endswith(("@odata.context", "@odata.nextLink"))
        }
        return {**record, "sessions": sessions, "participants_v2": participants}


def window(start: str, end: str, low: str = "ge", high: str = "lt") -> str:
    text = f"startDateTime {low} {start} and startDateTime {high} {end}"
    return f"{ROOT}?$filter={quote(text, safe=':')}"


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def day_records(graph: GraphStack) -> list[RecordInfo]:
    return graph.simulator.call_records.timeline(None, DAY, NEXT_DAY)


def test_list_filters_by_start_and_pages_with_absolute_next_links(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    truth = day_records(graph)
    assert len(truth) == 30 and truth[0].start == parse_ticks(DAY)  # one on midnight

    async def go() -> None:
        async with Client(graph) as client:
            first = await client.get(window(DAY, NEXT_DAY), prefer=7)
            assert first.status == 200 and len(first.body["value"]) == 7
            assert first.headers["Preference-Applied"] == "odata.maxpagesize=7"
            link = first.body["@odata.nextLink"]
            assert link.startswith(f"{graph.graph_url}{ROOT}?") and "$skiptoken=" in link
            listed = await client.listed(DAY, NEXT_DAY, prefer=7)
            assert [r["id"] for r in listed] == [r.id for r in truth]
            assert all("sessions" not in r and "participants_v2" not in r for r in listed)
            assert all(r["organizer_v2"]["identity"]["user"]["id"] for r in listed)
            assert {r["type"] for r in listed} == {"groupCall", "peerToPeer"}
            assert listed[0]["startDateTime"] == DAY
            # gt leaves out the record exactly on midnight; le takes in the next midnight's.
            strictly = [
                r
                for page in await client.pages(window(DAY, NEXT_DAY, low="gt", high="le"))
                for r in page["value"]
            ]
            assert [r["id"] for r in strictly] == [r.id for r in truth[1:]] + [
                day_records_next(graph)[0].id
            ]
            # Without Prefer: the documented default page of 60.
            records.configure(records_per_day=130)
            default = await client.get(window(DAY, NEXT_DAY))
            assert len(default.body["value"]) == 60 and "Preference-Applied" not in default.headers

    run(go())
    assert records.stats["requests:list"] >= 6 and records.stats["records_listed"] > 60


def day_records_next(graph: GraphStack) -> list[RecordInfo]:
    return graph.simulator.call_records.timeline(None, NEXT_DAY, "2026-10-22T00:00:00Z")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("$filter=startDateTime ge '2026-10-20T00:00:00Z'", "'Edm.String'"),
        ("$filter=startDateTime ge 2026-10-20", "'Edm.Date'"),
        ("$filter=endDateTime ge 2026-10-20T00:00:00Z", "Invalid filter clause"),
        ("$filter=startDateTime eq 2026-10-20T00:00:00Z", "Invalid filter clause"),
        (
            "$filter=startDateTime ge 2026-10-20T00:00:00Z or startDateTime lt 2026-10-21T00:00:00Z",
            "Invalid filter clause",
        ),
        ("$top=5", "Query option 'Top' is not allowed"),
        ("$skiptoken=garbage", "$skiptoken is not valid"),
    ],
)
def test_unsupported_queries_are_refused_like_graph(
    graph: GraphStack, query: str, message: str
) -> None:
    async def go() -> Reply:
        async with Client(graph) as client:
            return await client.get(f"{ROOT}?{quote(query, safe='=$:')}")

    reply = run(go())
    assert reply.status == 400 and reply.body["error"]["code"] == "BadRequest"
    assert message in reply.body["error"]["message"]
    assert reply.body["error"]["innerError"]["request-id"]


def test_get_expands_sessions_with_segments_and_pages_them(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    records.sessions_page_size = 3
    info = next(r for r in day_records(graph) if r.sessions > 7)

    async def go() -> None:
        async with Client(graph) as client:
            plain = await client.ok(f"{ROOT}/{info.id}")
            assert "sessions" not in plain and "participants_v2" not in plain
            assert plain["participants_v2@odata.context"].endswith("/participants_v2/$entity")
            assert plain["organizer_v2"]["id"] and plain["version"] == info.final_version
            body = await client.ok(f"{ROOT}/{info.id}?$expand=sessions($expand=segments)")
            assert body["@odata.context"].endswith("callRecords(sessions(segments()))/$entity")
            assert len(body["sessions"]) == 3
            link = body["sessions@odata.nextLink"]
            assert link.startswith(f"{graph.graph_url}{ROOT}/{info.id}/sessions?$expand=segments&")
            sessions = list(body["sessions"])
            while link:
                page = await client.ok(link)
                assert len(page["value"]) <= 3
                sessions.extend(page["value"])
                link = page.get("@odata.nextLink")
            assert len(sessions) == info.sessions == len({s["id"] for s in sessions})
            media = sessions[0]["segments"][0]["media"][0]
            assert media["label"] == "main-audio" and media["callerNetwork"]["subnet"].endswith(
                ".0"
            )
            stream = media["streams"][0]
            assert stream["streamDirection"] == "callerToCallee"
            assert stream["averageJitter"].startswith("PT") and stream["averageJitter"].endswith(
                "S"
            )
            assert isinstance(stream["packetUtilization"], int)
            assert sessions[0]["caller"]["@odata.type"] == (
                "#microsoft.graph.callRecords.participantEndpoint"
            )
            # Sessions without segments, and a page size asked for.
            bare = await client.get(f"{ROOT}/{info.id}?$expand=sessions", prefer=5)
            assert [s["id"] for s in bare.body["sessions"]] == [s["id"] for s in sessions[:5]]
            assert all("segments" not in s for s in bare.body["sessions"])
            assert "$expand" not in bare.body["sessions@odata.nextLink"]
            # The docs allow a single relationship per get.
            both = await client.get(f"{ROOT}/{info.id}?$expand=sessions,participants_v2")
            assert both.status == 400
            records.multi_expand = True
            both = await client.get(f"{ROOT}/{info.id}?$expand=sessions,participants_v2")
            assert both.status == 200 and both.body["sessions"] and both.body["participants_v2"]

    run(go())
    assert records.stats["requests:get"] == 5 and records.stats["requests:sessions"] >= 2


def test_participants_are_paged(graph: GraphStack) -> None:
    huge = next(r for r in day_records(graph) if r.huge)
    assert huge.participants >= 200

    async def go() -> None:
        async with Client(graph) as client:
            pages = await client.pages(f"{ROOT}/{huge.id}/participants_v2")
            assert [len(p["value"]) for p in pages[:-1]] == [130] * (len(pages) - 1)
            ids = [p["id"] for page in pages for p in page["value"]]
            assert len(ids) == huge.participants == len(set(ids))
            expanded = await client.ok(f"{ROOT}/{huge.id}?$expand=participants_v2")
            assert [p["id"] for p in expanded["participants_v2"]] == ids[:130]
            assert expanded["participants_v2@odata.nextLink"].startswith(
                f"{graph.graph_url}{ROOT}/{huge.id}/participants_v2?$skiptoken="
            )
            small = await client.pages(f"{ROOT}/{huge.id}/participants_v2", prefer=50)
            assert [p["id"] for page in small for p in page["value"]] == ids
            user = next(p for p in pages[0]["value"] if p["identity"]["user"])
            assert set(user["identity"]["user"]) >= {"id", "displayName", "tenantId"}
            # The list filters by a participant too.
            someone = ids[-1]
            query = f"participants_v2/any(p:p/id eq '{someone}') and startDateTime ge {DAY}"
            found = await client.ok(f"{ROOT}?$filter={quote(query, safe=':')}")
            assert huge.id in [r["id"] for r in found["value"]]

    run(go())


def test_a_record_is_listed_and_readable_only_once_available(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    info = day_records(graph)[3]
    assert 15 * 60 * TICKS_PER_SECOND <= info.available - info.end <= 30 * 3600 * TICKS_PER_SECOND

    async def go() -> None:
        async with Client(graph) as client:
            records.now = info.available - 1
            assert info.id not in [r["id"] for r in await client.listed(DAY, NEXT_DAY)]
            missing = await client.get(f"{ROOT}/{info.id}")
            assert missing.status == 404 and missing.body["error"]["code"] == "NotFound"
            records.now = info.available
            assert info.id in [r["id"] for r in await client.listed(DAY, NEXT_DAY)]
            assert (await client.get(f"{ROOT}/{info.id}")).status == 200

    run(go())
    assert records.stats["not_found"] == 1


def test_a_record_changes_until_it_settles_then_stays(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    records.configure(records_per_day=200)
    infos = day_records(graph)
    added = next(r for r in infos if r.changes and r.changes[0].kind == SESSION_ADDED)
    updated = next(r for r in infos if r.changes and r.changes[0].kind == METRIC_UPDATED)
    assert all(r.settled - r.end <= 40 * 3600 * TICKS_PER_SECOND for r in infos)
    assert all(r.changes == () or r.settled > r.available for r in infos)

    async def go() -> None:
        async with Client(graph) as client:
            for info in (added, updated):
                change = info.changes[0]
                records.now = change.at - 1
                before = await client.archived(info.id)
                assert before["version"] == 1
                assert before["lastModifiedDateTime"] == _stamp(info.created)
                records.now = change.at
                after = await client.archived(info.id)
                assert after["version"] == 2
                assert after["lastModifiedDateTime"] == _stamp(change.at)
                if change.kind == SESSION_ADDED:
                    assert len(after["sessions"]) == len(before["sessions"]) + change.count
                else:
                    assert after["sessions"] != before["sessions"]
                    assert len(after["sessions"]) == len(before["sessions"])
                listed = {r["id"]: r for r in await client.listed(DAY, NEXT_DAY)}
                assert listed[info.id]["version"] == 2
                records.now = info.settled
                final = await client.archived(info.id)
                assert final["version"] == info.final_version
                records.now = info.settled + 5 * TICKS_PER_DAY
                assert await client.archived(info.id) == final
                expected = records.expected(None, DAY, NEXT_DAY, as_of=info.settled)
                assert next(r for r in expected if r["id"] == info.id) == final

    run(go())


def _stamp(ticks: int) -> str:
    return format_ticks(ticks)[:-1].rstrip("0").rstrip(".") + "Z"


def test_records_are_deleted_thirty_days_after_their_call_ended(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    info = day_records(graph)[0]
    # "A call record is created after a call or meeting ends and remains available for 30
    # days": the end, not the start, starts the 30 days.
    assert info.deleted == info.end + 30 * TICKS_PER_DAY > info.start + 30 * TICKS_PER_DAY

    async def go() -> None:
        async with Client(graph) as client:
            records.now = info.deleted - 1
            assert info.id in [r["id"] for r in await client.listed(DAY, NEXT_DAY)]
            assert (await client.get(f"{ROOT}/{info.id}/sessions")).status == 200
            records.now = info.deleted
            assert info.id not in [r["id"] for r in await client.listed(DAY, NEXT_DAY)]
            for path in ("", "/sessions", "/participants_v2"):
                gone = await client.get(f"{ROOT}/{info.id}{path}")
                assert gone.status == 404 and gone.body["error"]["code"] == "NotFound"
            # Without a filter: what Graph keeps, the calls that ended in the last 30 days.
            everything = [r for page in await client.pages(ROOT) for r in page["value"]]
            ends = [parse_ticks(r["endDateTime"]) for r in everything]
            assert min(ends) > info.end and info.id not in [r["id"] for r in everything]

    run(go())


def _retry_after(reply: Reply) -> int:
    assert reply.status == 429 and reply.body["error"]["code"] == "TooManyRequests", reply.body
    return int(reply.headers["Retry-After"])


def test_per_record_first_page_limit(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    records.throttle(scale=0.1)  # 10 first pages per 2 s
    one, other = day_records(graph)[:2]

    async def go() -> None:
        async with Client(graph) as client:
            for _ in range(10):
                assert (await client.get(f"{ROOT}/{one.id}")).status == 200
            assert _retry_after(await client.get(f"{ROOT}/{one.id}")) == 2
            # A first page of sessions is a first page of the same record.
            assert _retry_after(await client.get(f"{ROOT}/{one.id}/sessions")) == 2
            assert (await client.get(f"{ROOT}/{other.id}")).status == 200
            await asyncio.sleep(2.1)
            assert (await client.get(f"{ROOT}/{one.id}")).status == 200

    run(go())
    assert records.stats["throttled:record_first"] == 2 and records.stats["throttled"] == 2


def test_per_record_later_pages_limit(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    records.throttle(scale=0.1, record_later=3)  # 3 later pages per 30 s
    records.sessions_page_size = 1
    info = next(r for r in day_records(graph) if r.sessions >= 6)

    async def go() -> None:
        async with Client(graph) as client:
            link = (await client.ok(f"{ROOT}/{info.id}?$expand=sessions"))[
                "sessions@odata.nextLink"
            ]
            for _ in range(3):
                link = (await client.ok(link))["@odata.nextLink"]
            assert _retry_after(await client.get(link)) == 30
            # First pages of the record have their own limit.
            assert (await client.get(f"{ROOT}/{info.id}")).status == 200

    run(go())
    assert records.stats["throttled:record_later"] == 1


def test_per_app_and_per_tenant_limits(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    records.throttle(scale=0.25, per_app=4)  # 4 requests per 5 s
    path = window(DAY, NEXT_DAY)

    async def go() -> None:
        async with Client(graph) as client:
            for _ in range(4):
                assert (await client.get(path)).status == 200
            assert 1 <= _retry_after(await client.get(path)) <= 5
            records.throttle(scale=0.25, per_app=100, per_tenant=2)
            for _ in range(2):
                assert (await client.get(path)).status == 200
            assert 1 <= _retry_after(await client.get(path)) <= 5

    run(go())
    assert records.stats["throttled:app"] == 1 and records.stats["throttled:tenant"] == 1


def test_call_record_limits_and_call_log_limits_are_separate(graph: GraphStack) -> None:
    graph.simulator.throttle(per_log=1, per_app=1, period=60)
    records = graph.simulator.call_records
    pstn = f"{ROOT}/getPstnCalls(fromDateTime=2026-10-20,toDateTime=2026-10-21)"

    async def go() -> None:
        async with Client(graph) as client:
            assert (await client.get(pstn)).status == 200
            for _ in range(5):  # the call logs' limit is spent: call records don't mind
                assert (await client.get(window(DAY, NEXT_DAY))).status == 200
            assert (await client.get(pstn)).status == 429
            graph.simulator.throttle(per_log=10, per_app=10, period=60)
            records.throttle(per_app=1)
            assert (await client.get(window(DAY, NEXT_DAY))).status == 200
            assert (await client.get(window(DAY, NEXT_DAY))).status == 429
            assert (await client.get(pstn)).status == 200

    run(go())
    assert graph.simulator.stats["throttled"] == 1 and records.stats["throttled"] == 1
    assert graph.simulator.stats["requests"] == 3 and records.stats["requests"] == 7


def test_expected_is_what_paging_everything_returns(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    records.sessions_page_size = 4
    records.participants_page_size = 5
    records.now = "2026-10-21T06:00:00Z"  # some records not yet there, some still changing
    expected = records.expected(None, DAY, NEXT_DAY)
    infos = day_records(graph)
    now = records.now_ticks()
    assert 0 < len(expected) < len(infos)
    assert any(r.available <= now < r.settled for r in infos)

    async def go() -> list[dict[str, Any]]:
        async with Client(graph) as client:
            return [await client.archived(r["id"]) for r in await client.listed(DAY, NEXT_DAY)]

    archived = run(go())
    assert archived == expected
    settled = records.expected(None, DAY, NEXT_DAY, settled_only=True)
    assert 0 < len(settled) < len(expected)
    assert records.stats["requests:sessions"] > 0 and records.stats["requests:participants"] > 0


def test_same_seed_same_records_and_other_seeds_differ() -> None:
    stacks = [GraphStack(Tenant(seed=s, rows_per_day={})) for s in (11, 11, 12)]
    try:
        found = []
        for stack in stacks:
            stack.simulator.call_records.configure(records_per_day=12)
            found.append(stack.simulator.call_records.expected(None, DAY, NEXT_DAY, as_of=NOW))
        assert orjson.dumps(found[0]) == orjson.dumps(found[1])
        assert {r["id"] for r in found[0]}.isdisjoint({r["id"] for r in found[2]})

        async def listed(stack: GraphStack) -> list[Any]:
            stack.simulator.call_records.now = NOW
            async with Client(stack) as client:  # the same but for the simulator's address
                return [
                    {k: v for k, v in r.items() if not k.endswith("@odata.context")}
                    for r in await client.listed(DAY, NEXT_DAY)
                ]

        assert run(listed(stacks[0])) == run(listed(stacks[1]))
    finally:
        for stack in stacks:
            stack.stop()


def test_a_huge_meeting_is_megabytes_of_sessions_and_participants(graph: GraphStack) -> None:
    huge = next(r for r in day_records(graph) if r.huge)

    async def go() -> dict[str, Any]:
        async with Client(graph) as client:
            return await client.archived(huge.id)

    record = run(go())
    assert len(record["sessions"]) == 50 and len(record["participants_v2"]) == huge.participants
    assert len(orjson.dumps(record)) > 1_000_000
    expected = graph.simulator.call_records.expected(None, DAY, NEXT_DAY)
    assert record == next(r for r in expected if r["id"] == huge.id)


def test_streams_carry_quality_worth_querying_by_subnet(graph: GraphStack) -> None:
    records = graph.simulator.call_records.expected(None, DAY, NEXT_DAY)
    poor: dict[str, int] = {}
    total: dict[str, int] = {}
    for record in records:
        for session in record["sessions"]:
            for segment in session["segments"]:
                for media in segment["media"]:
                    subnet = media["callerNetwork"]["subnet"]
                    assert media["callerNetwork"]["connectionType"] in ("wired", "wifi", "mobile")
                    for stream in media["streams"]:
                        total[subnet] = total.get(subnet, 0) + 1
                        seconds = float(stream["averageRoundTripTime"][2:-1])
                        jitter = float(stream["averageJitter"][2:-1])
                        if stream["averagePacketLossRate"] > 0.1 or jitter > 0.030 or seconds > 0.5:
                            poor[subnet] = poor.get(subnet, 0) + 1
    assert len(total) >= 5 and sum(poor.values()) > 0
    worst = max(poor, key=lambda s: poor[s] / total[s])
    assert poor[worst] / total[worst] > 0.2 > sum(poor.values()) / sum(total.values())


def test_tokens_are_checked_and_each_tenant_has_its_own_records(graph: GraphStack) -> None:
    graph.simulator.tenants[OTHER_TENANT] = Tenant(seed=99, rows_per_day={})

    async def go() -> None:
        async with Client(graph) as home, Client(graph, tenant=OTHER_TENANT) as other:
            assert (await home.get(window(DAY, NEXT_DAY), auth=False)).status == 401
            home.token = "forged"
            assert (await home.get(window(DAY, NEXT_DAY))).status == 401
            theirs = await other.listed(DAY, NEXT_DAY)
            assert [r["id"] for r in theirs] == [
                r.id for r in graph.simulator.call_records.timeline(OTHER_TENANT, DAY, NEXT_DAY)
            ]
            assert {r["organizer_v2"]["identity"]["user"]["tenantId"] for r in theirs} == {
                OTHER_TENANT
            }
            mine = day_records(graph)[0].id
            assert (await other.get(f"{ROOT}/{mine}")).status == 404

    run(go())
    assert graph.simulator.call_records.stats["unauthorized"] == 2
    assert graph.simulator.call_records.stats[f"requests@{OTHER_TENANT}"] == 2


def test_faults_control_endpoint_and_beta(graph: GraphStack) -> None:
    simulator = graph.simulator
    records = simulator.call_records
    simulator.add_fault(Fault("503", retry_after=2, source="call_records", window="sessions"))
    simulator.add_fault(Fault("loop", source="call_records", window="list"))
    info = day_records(graph)[0]

    async def go() -> None:
        async with Client(graph) as client:
            failed = await client.get(f"{ROOT}/{info.id}/sessions")
            assert failed.status == 503 and failed.headers["Retry-After"] == "2"
            assert (await client.get(f"{ROOT}/{info.id}/sessions")).status == 200
            looped = await client.ok(window(DAY, NEXT_DAY))
            assert looped["@odata.nextLink"] == graph.graph_url + window(DAY, NEXT_DAY)
            beta = await client.ok(window(DAY, NEXT_DAY).replace("/v1.0/", "/beta/"))
            assert beta["value"][0]["id"] == info.id
            # Not a record id: still the call-log functions' answer.
            assert (await client.get(f"{ROOT}/getPstnCalls")).status == 400
            async with client.session.post(
                f"{graph.graph_url}/_sim/call-records/now", json={"now": "2026-10-20T00:10:00Z"}
            ) as response:
                assert (await response.json())["now"] == "2026-10-20T00:10:00.0000000Z"
            assert (await client.ok(window(DAY, NEXT_DAY)))["value"] == []
            async with client.session.get(f"{graph.graph_url}/_sim/call-records/stats") as response:
                stats = await response.json()
            assert stats["fault:503"] == 1 and stats["fault:loop"] == 1
            assert stats["requests:list"] == 3

    run(go())
    # No record can be there 10 minutes after midnight (15 minutes at least after a call).
    assert records.now == "2026-10-20T00:10:00Z" and simulator.stats["requests"] == 0


def test_a_get_finds_a_record_never_listed_and_unknown_ids_are_not_found(
    graph: GraphStack,
) -> None:
    fresh = GraphStack(Tenant(seed=5, rows_per_day={}))  # the fixture's seed, nothing generated
    try:
        fresh.simulator.call_records.configure(records_per_day=30)
        fresh.simulator.call_records.now = NOW
        info = day_records(graph)[17]

        async def go() -> None:
            async with Client(fresh) as client:
                found = await client.get(f"{ROOT}/{info.id}")
                assert found.status == 200 and found.body["id"] == info.id
                unknown = await client.get(f"{ROOT}/3cf3bbc8-b21d-4f2e-bfd0-b13603ae6c65")
                assert unknown.status == 404 and unknown.body["error"]["code"] == "NotFound"

        run(go())
    finally:
        fresh.stop()


# --------------------------------------------------------------------------- enterprise scale


def test_late_changes_come_days_after_the_call_and_every_version_is_known(
    graph: GraphStack,
) -> None:
    records = graph.simulator.call_records
    plain = day_records(graph)
    records.configure(records_per_day=30, late_change_rate=1.0)
    late = day_records(graph)
    # The knob adds one change to each record and moves nothing else.
    assert [replace(r, changes=r.changes[:-1]) for r in late] == plain
    for info in late:
        change = info.changes[-1]
        assert change.kind == METRIC_UPDATED
        assert 2 * TICKS_PER_DAY <= change.at - info.end <= 25 * TICKS_PER_DAY
        assert change.at > max([c.at for c in info.changes[:-1]], default=info.available)
    info = next(r for r in late if len(r.changes) == 1)  # only the late change
    change = info.changes[0]

    async def go() -> None:
        async with Client(graph) as client:
            records.now = change.at - 1
            before = await client.archived(info.id)
            records.now = change.at
            after = await client.archived(info.id)
            assert (before["version"], after["version"]) == (1, 2)
            assert after["lastModifiedDateTime"] == _stamp(change.at)
            assert before["sessions"] != after["sessions"]
            assert after == next(
                r for r in records.expected(None, DAY, NEXT_DAY) if r["id"] == info.id
            )

    run(go())
    assert records.versions(None, info.id, as_of=change.at - 1) == [(1, _stamp(info.created))]
    assert records.versions(None, info.id, as_of=change.at) == [
        (1, _stamp(info.created)),
        (2, _stamp(change.at)),
    ]
    several = next(r for r in late if len(r.changes) >= 3)
    assert [v for v, _ in records.versions(None, several.id, as_of=several.settled)] == list(
        range(1, several.final_version + 1)
    )
    assert records.versions(None, several.id, as_of=several.available - 1) == []
    settled = records.expected(None, DAY, NEXT_DAY, as_of=info.end + TICKS_PER_DAY + 1)
    assert {r["id"]: r["version"] for r in settled}[info.id] == 1


def test_records_created_days_late_appear_only_then(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    plain = {r.id: r for r in day_records(graph)}
    records.configure(records_per_day=30, late_create_rate=1.0)
    late = day_records(graph)
    for info in late:
        assert 3 * TICKS_PER_DAY <= info.available - info.end <= 20 * TICKS_PER_DAY
        shift = info.available - plain[info.id].available
        # Its changes follow its creation as they followed it before.
        assert [c.at - shift for c in info.changes] == [c.at for c in plain[info.id].changes]
    info = late[0]

    async def go() -> None:
        async with Client(graph) as client:
            records.now = info.available - 1
            assert info.id not in [r["id"] for r in await client.listed(DAY, NEXT_DAY)]
            assert (await client.get(f"{ROOT}/{info.id}")).status == 404
            records.now = info.available
            assert info.id in [r["id"] for r in await client.listed(DAY, NEXT_DAY)]
            assert (await client.ok(f"{ROOT}/{info.id}"))["version"] == 1

    run(go())
    assert records.expected(None, DAY, NEXT_DAY, as_of=info.available - 1) == [
        r
        for r in records.expected(None, DAY, NEXT_DAY, as_of=info.available - 1)
        if r["id"] != info.id
    ]


def test_a_failing_record_answers_500_every_time_but_is_listed(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    info = day_records(graph)[4]
    records.fail_always(info.id)
    assert records.failing == {info.id}

    async def go() -> None:
        async with Client(graph) as client:
            for _ in range(2):
                for path in (
                    "",
                    "?$expand=sessions($expand=segments)",
                    "/sessions",
                    "/participants_v2",
                ):
                    failed = await client.get(f"{ROOT}/{info.id}{path}")
                    assert failed.status == 500, path
                    assert failed.body["error"]["code"] == "InternalServerError"
                    assert failed.body["error"]["innerError"]["request-id"]
            assert info.id in [r["id"] for r in await client.listed(DAY, NEXT_DAY)]
            records.heal(info.id)
            assert (await client.get(f"{ROOT}/{info.id}/sessions")).status == 200

    run(go())
    assert records.stats["record_failed"] == 8 and records.failing == set()
    records.configure(records_per_day=30, failing_rate=0.5)
    chosen = {r.id for r in day_records(graph) if r.failing}
    assert 0 < len(chosen) < 30 and records.failing == chosen
    records.heal(min(chosen))
    assert records.failing == chosen - {min(chosen)}


def test_a_town_hall_has_a_session_per_attendee_served_a_page_at_a_time(
    graph: GraphStack,
) -> None:
    records = graph.simulator.call_records
    with pytest.raises(ValueError, match="huge_participants"):
        records.configure(huge_participants=(20_001, 20_001))
    records.configure(
        records_per_day=3, huge_participants=(10_000, 10_000), huge_session_per_attendee=True
    )
    huge = next(r for r in day_records(graph) if r.huge)
    assert huge.participants == 10_000 and huge.sessions >= 10_000 and huge.town_hall
    data = records.data()
    tracemalloc.start()
    try:
        last = data.sessions_at(huge, parse_ticks(NOW), huge.sessions - 3, 60, segments=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(last) == 3 and peak < 100_000_000  # a page's worth, not the meeting's
    everyone = data.participants(huge)
    assert len({p["id"] for p in everyone}) == 10_000
    callers = {
        s["caller"]["identity"].get("user", {}).get("id")
        for s in data.sessions_at(huge, parse_ticks(NOW), 9_000, 60, segments=False)
    }
    assert len(callers) > 50  # later sessions are the crowd's own, not the directory's

    async def go() -> None:
        async with Client(graph) as client:
            first = await client.ok(f"{ROOT}/{huge.id}?$expand=sessions($expand=segments)")
            assert len(first["sessions"]) == 20 and "sessions@odata.nextLink" in first
            page = await client.ok(f"{ROOT}/{huge.id}/participants_v2")
            assert [p["id"] for p in page["value"]] == [p["id"] for p in everyone[:130]]

    run(go())
    # A smaller town hall, read whole, is exactly the ground truth.
    records.configure(
        records_per_day=3, huge_participants=(150, 150), huge_session_per_attendee=True
    )
    small = next(r for r in day_records(graph) if r.huge)

    async def whole() -> dict[str, Any]:
        async with Client(graph) as client:
            return await client.archived(small.id)

    record = run(whole())
    assert len(record["sessions"]) == 150 == len(record["participants_v2"])
    assert record == next(r for r in records.expected(None, DAY, NEXT_DAY) if r["id"] == small.id)


def test_latency_grows_with_the_answers_size(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    huge = next(r for r in day_records(graph) if r.huge)
    small = next(r for r in day_records(graph) if r.sessions == 1)
    records.latency, records.latency_per_mb = 0.05, 2.0

    async def timed(client: Client, path: str) -> tuple[float, int]:
        started = time.monotonic()
        reply = await client.get(path)
        assert reply.status == 200
        return time.monotonic() - started, len(orjson.dumps(reply.body))

    async def go() -> None:
        async with Client(graph) as client:
            big_time, big_size = await timed(
                client, f"{ROOT}/{huge.id}?$expand=sessions($expand=segments)"
            )
            small_time, small_size = await timed(client, f"{ROOT}/{small.id}")
            assert big_size > 100_000 > small_size
            assert big_time >= 0.05 + big_size / 1_000_000 * 2.0 * 0.95
            assert 0.05 <= small_time < big_time

    run(go())


def test_a_record_is_kept_thirty_days_after_its_call_ended_not_started(
    graph: GraphStack,
) -> None:
    records = graph.simulator.call_records
    huge = next(r for r in day_records(graph) if r.huge)  # 45 minutes to 3 hours long
    assert huge.end - huge.start >= 45 * 60 * TICKS_PER_SECOND

    async def go() -> None:
        async with Client(graph) as client:
            records.now = huge.start + 30 * TICKS_PER_DAY + (huge.end - huge.start) // 2
            assert huge.id in [r["id"] for r in await client.listed(DAY, NEXT_DAY)]
            assert (await client.get(f"{ROOT}/{huge.id}/participants_v2")).status == 200
            records.now = huge.end + 30 * TICKS_PER_DAY
            assert huge.id not in [r["id"] for r in await client.listed(DAY, NEXT_DAY)]
            assert (await client.get(f"{ROOT}/{huge.id}")).status == 404

    run(go())


def test_prerendered_answers_are_byte_identical_and_cost_no_rendering(
    graph: GraphStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = graph.simulator.call_records
    records.configure(records_per_day=10, huge_per_day=1)
    records.sessions_page_size, records.participants_page_size = 4, 30
    text = f"startDateTime ge {DAY} and startDateTime lt {NEXT_DAY}"

    async def fetch_all(client: Client) -> dict[str, tuple[bytes, str | None]]:
        """Every page a collector reads of the day: URL -> (body, Preference-Applied)."""
        found: dict[str, tuple[bytes, str | None]] = {}

        async def follow(url: str, link_key: str = "@odata.nextLink") -> list[Any]:
            bodies: list[Any] = []
            while url:
                prefer = {"Prefer": "odata.maxpagesize=7"}
                headers = {"Authorization": f"Bearer {client.token}", **prefer}
                async with client.session.get(URL(url, encoded=True), headers=headers) as answer:
                    assert answer.status == 200
                    raw = await answer.read()
                    found[url] = (raw, answer.headers.get("Preference-Applied"))
                bodies.append(orjson.loads(raw))
                url = bodies[-1].get(link_key) or bodies[-1].get("@odata.nextLink") or ""
                link_key = "@odata.nextLink"
            return bodies

        listed = [
            r
            for page in await follow(graph.graph_url + window(DAY, NEXT_DAY))
            for r in page["value"]
        ]
        assert len(listed) > 7
        for record in listed:
            base = f"{graph.graph_url}{ROOT}/{record['id']}"
            await follow(f"{base}?$expand=sessions($expand=segments)", "sessions@odata.nextLink")
            await follow(f"{base}/participants_v2")
        return found

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        async with Client(graph) as client:
            rendered = await fetch_all(client)
            ready = records.prerender(None, DAY, NEXT_DAY, prefer=7, lists=[text])
            assert ready == len(rendered)

            def no_rendering(*_: Any) -> Any:
                raise AssertionError("a prerendered answer was rendered again")

            monkeypatch.setattr(records, "_render", no_rendering)
            served = await fetch_all(client)
            monkeypatch.undo()
            return rendered, served

    rendered, served = run(go())
    assert served == rendered and len(served) > 20
    assert records.stats["answers_prerendered"] == len(served)

    async def later() -> None:
        records.now = "2026-10-28T00:00:00Z"  # another present: the answers would differ
        async with Client(graph) as client:
            await client.ok(window(DAY, NEXT_DAY))

    run(later())
    assert records.stats["answers_prerendered"] == len(served)


def test_limits_are_the_collectors_budget() -> None:
    limits = CallRecordLimits()
    assert (limits.per_app, limits.period) == (
        CALL_RECORDS_PER_APP.count,
        CALL_RECORDS_PER_APP.seconds,
    )
    assert (limits.record_first, limits.record_first_period) == (
        RECORD_FIRST_PAGE.count,
        RECORD_FIRST_PAGE.seconds,
    )
    assert (limits.record_later, limits.record_later_period) == (
        RECORD_LATER_PAGES.count,
        RECORD_LATER_PAGES.seconds,
    )
    stack = GraphStack(Tenant(seed=5, rows_per_day={}))
    try:
        stack.simulator.call_records.throttle(scale=0.5)
        assert stack.simulator.call_records.limits == limits.scaled(0.5)
        assert (
            stack.simulator.call_records.limits.record_later_period
            == RECORD_LATER_PAGES.seconds / 2
        )
    finally:
        stack.stop()


def test_page_sizes_asked_beyond_the_documented_maxima_are_capped(graph: GraphStack) -> None:
    records = graph.simulator.call_records
    records.configure(
        records_per_day=70, huge_participants=(200, 200), huge_session_per_attendee=True
    )
    huge = next(r for r in day_records(graph) if r.huge)

    async def go() -> None:
        async with Client(graph) as client:
            for path, key, most in (
                (window(DAY, NEXT_DAY), "value", 60),
                (f"{ROOT}/{huge.id}?$expand=sessions", "sessions", 60),
                (f"{ROOT}/{huge.id}/sessions", "value", 60),
                (f"{ROOT}/{huge.id}/participants_v2", "value", 130),
                (f"{ROOT}/{huge.id}?$expand=participants_v2", "participants_v2", 130),
            ):
                reply = await client.get(path, prefer=1000)
                assert reply.status == 200 and len(reply.body[key]) == most, path
                assert reply.headers["Preference-Applied"] == f"odata.maxpagesize={most}"

    run(go())
