"""Every row exactly once: through late rows and settling, kill -9 at any point, runs at
once, crashes between steps, and settling switched off or on later."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from collector.core.settings import load_settings
from collector.core.timefmt import parse_instant, parse_ticks
from collector.observe.reports import RunReport
from collector.run.runner import run_cycle
from devstack.graph_simulator import Fault
from devstack.proxy import ImmutableArchiveProxy

from .conftest import (
    ALL,
    FIRST,
    LATE_SOURCES,
    SECOND,
    SECOND_END,
    START,
    Stack,
    assert_archive_matches,
    data_rows,
    late_rows,
    spawn,
)


def settled_day_is_final(stack: Stack, day: str) -> None:
    """A settled day: its manifest lists exactly the day's data blobs, with their row counts."""
    blobs = stack.blobs()
    for source in LATE_SOURCES:
        folder = f"{source}/year=2026/month=10/day={day[-2:]}/"
        names = sorted(n for n in blobs if n.startswith(folder))
        manifest = json.loads(blobs[f"_manifests/{source}/{day}.json"])
        assert manifest["status"] == "settled"
        assert [b["name"] for b in manifest["blobs"]] == names
        for listed in manifest["blobs"]:
            assert listed["rows"] == blobs[listed["name"]].count(b"\n"), listed
        assert manifest["rows"] == sum(blobs[n].count(b"\n") for n in names)


def test_late_rows_are_captured_once_by_the_settle_pass(stack: Stack) -> None:
    env = {"COLLECTOR_SOURCES": ",".join(LATE_SOURCES)}
    assert stack.run(FIRST, **env) == 0
    late = late_rows(stack)
    assert stack.run("2026-10-22T12:00:00Z", **env) == 0  # Oct 20 is not 48 h old yet
    archived = {r["id"] for s in LATE_SOURCES for _, r in data_rows(stack.blobs(), s)}
    assert not archived & set(late)  # provisional data has not seen them
    assert stack.run(SECOND, **env) == 0  # Oct 20 settles; Oct 21 is still provisional
    nov21 = {i for i, stamp in late.items() if stamp.startswith("2026-10-21")}
    for source in LATE_SOURCES:
        assert_archive_matches(stack, source, START, SECOND_END, not_yet=nov21)
    settled_day_is_final(stack, "2026-10-20")
    assert stack.state("pstn")["settled"] == "2026-10-21T00:00:00Z"  # type: ignore[index]
    # The Oct 21 late row arrives with the next day's settle pass.
    assert stack.run("2026-10-24T12:30:00Z", **env) == 0
    for source in LATE_SOURCES:
        assert_archive_matches(stack, source, START, "2026-10-24T11:30:00Z")
    settled_day_is_final(stack, "2026-10-21")


def test_each_instant_is_requested_at_most_twice(stack: Stack) -> None:
    """Hourly runs over three days: every instant read once provisionally, once settled."""
    env = {"COLLECTOR_SOURCES": "sms"}
    for hour in range(1, 24 * 3 + 2):
        day, at = divmod(hour, 24)
        assert stack.run(f"2026-10-{20 + day:02d}T{at:02d}:00:00Z", **env) == 0
    end = parse_ticks("2026-10-23T00:00:00Z")
    edges = sorted(
        {parse_ticks(START), end}
        | {t for _, a, b in stack.graph.simulator.windows for t in (a, b) if t <= end}
    )
    requested = stack.graph.simulator.windows
    for a, b in itertools.pairwise(edges):
        times = sum(1 for _, lo, hi in requested if lo <= a and b <= hi)
        assert times == 2 if b <= parse_ticks("2026-10-21T00:00:00Z") else 1 <= times <= 2, (
            a,
            times,
        )
    assert len(requested) <= 24 * 3 + 2  # ~72 hourly windows + the settle of Oct 20
    assert_archive_matches(stack, "sms", START, "2026-10-23T00:00:00Z")


@dataclass
class Killer:
    """Kills the collector process at the n-th Graph request or storage write."""

    kind: str  # "graph" or "before"/"after" (a storage write)
    at: int
    pid: int | None = None
    fired: threading.Event = field(default_factory=threading.Event)
    requests: int = 0

    def graph(self, _total: int) -> None:
        self.requests += 1
        if self.kind == "graph" and self.requests == self.at:
            self._kill()

    def storage(self, n: int, phase: str, _path: str = "") -> bool:
        if self.kind == phase and n == self.at:
            self._kill()
            return True
        return False

    def _kill(self) -> None:
        if self.pid is not None and not self.fired.is_set():
            os.kill(self.pid, signal.SIGKILL)
            self.fired.set()


KILL_POINTS = (
    [("graph", n) for n in (1, 3, 5, 8, 11, 14)]
    # The second run makes 39-40 storage writes (state writes are grouped, so the count
    # varies a little with timing); the points spread over them.
    + [("before", n) for n in (2, 6, 10, 14, 18, 22, 26, 30, 35)]
    + [("after", n) for n in (4, 8, 12, 16, 20, 24, 28, 32, 37)]
)


@pytest.fixture
def proxied(stack: Stack) -> Iterator[tuple[Stack, ImmutableArchiveProxy]]:
    """The stack with a short lease, and its storage proxy at hand to stop writes."""
    stack.env.update(COLLECTOR_SOURCES=",".join(LATE_SOURCES), COLLECTOR_LEASE_SECONDS="1")
    yield stack, stack.proxy


@pytest.mark.parametrize(("kind", "at"), KILL_POINTS, ids=[f"{k}{n}" for k, n in KILL_POINTS])
def test_kill_9_at_any_point_then_a_normal_run_gives_the_exact_dataset(
    proxied: tuple[Stack, ImmutableArchiveProxy], kind: str, at: int
) -> None:
    stack, proxy = proxied
    assert stack.run(FIRST) == 0  # provisional parts for Oct 20-21
    late = late_rows(stack)
    killer = Killer(kind, at)
    stack.graph.simulator.on_request = killer.graph
    proxy.writes = 0
    proxy.on_write = killer.storage
    process = spawn(stack, SECOND)  # settles Oct 20, reads on: killed somewhere on the way
    killer.pid = process.pid
    process.communicate(timeout=120)
    assert killer.fired.is_set() and process.returncode == -signal.SIGKILL
    stack.graph.simulator.on_request = None
    proxy.on_write = None
    time.sleep(1.1)  # the killed run's lease lapses
    assert stack.run(SECOND) == 0
    nov21 = {i for i, stamp in late.items() if stamp.startswith("2026-10-21")}
    for source in LATE_SOURCES:
        assert_archive_matches(stack, source, START, SECOND_END, not_yet=nov21)
        state = stack.state(source)
        assert state is not None and state["claims"] == [] and state["owner"] is None
        assert state["watermark"] == SECOND_END and state["settled"] == "2026-10-21T00:00:00Z"
    settled_day_is_final(stack, "2026-10-20")


def test_two_collectors_started_together_never_duplicate(stack: Stack) -> None:
    stack.env.update(COLLECTOR_SOURCES=",".join(LATE_SOURCES))
    outcomes: list[str] = []
    for round_ in range(10):
        # Each round moves "now" on, so both runs always have new windows to fight over.
        as_of = f"2026-10-{21 + round_ // 4:02d}T{(round_ % 4) * 6:02d}:30:00Z"
        first, second = spawn(stack, as_of), spawn(stack, as_of)
        outputs = [p.communicate(timeout=120) for p in (first, second)]
        assert first.returncode == 0 and second.returncode == 0, outputs
        lines = [line for out, _ in outputs for line in out.splitlines()]
        assert not [line for line in lines if ": failed" in line], lines
        outcomes += [line.split()[1] for line in lines]
        end = run_end_text(as_of)
        for source in LATE_SOURCES:
            assert stack.watermark(source) == end, (round_, source)
            assert_archive_matches(stack, source, START, end)
    # Both outcomes were seen: real contention happened, and the loser stepped aside cleanly.
    assert outcomes.count("yielded") >= 1 and outcomes.count("ok") >= 20, outcomes


def run_end_text(as_of: str) -> str:
    """``as_of`` minus the default 60-minute lag, as the collector stamps it."""
    hour = int(as_of[11:13]) - 1
    day = int(as_of[8:10]) - (1 if hour < 0 else 0)
    return f"2026-10-{day:02d}T{hour % 24:02d}:30:00Z"


def test_two_runs_at_once_never_duplicate(stack: Stack) -> None:
    settings = load_settings(stack.env)
    now = parse_instant(SECOND)

    async def both() -> list[RunReport]:
        return list(await asyncio.gather(run_cycle(settings, now), run_cycle(settings, now)))

    reports = asyncio.run(both())
    statuses = [r.status for report in reports for r in report.sources]
    assert "failed" not in statuses
    blobs = stack.blobs()
    for source in ALL:
        assert_archive_matches(stack, source, START, SECOND_END, blobs)
        assert stack.watermark(source) == SECOND_END


def test_failed_window_is_reread_exactly_on_the_next_run(stack: Stack) -> None:
    # Page 3 of direct routing fails for good: the first day's (settle) window stays claimed.
    sim = stack.graph.simulator
    sim.add_fault(
        Fault("status", count=-1, source="direct_routing", after=2, status=400, code="BadRequest")
    )
    assert stack.run(SECOND, COLLECTOR_SOURCES="direct_routing") == 1
    state = stack.state("direct_routing")
    assert state is not None and state["watermark"] == START
    # Claimed: the failed settle window, and provisional windows read meanwhile (at once,
    # beyond the gap the failure left, so the watermark could not pass them).
    assert {"kind": "settle", "start": START, "end": "2026-10-21T00:00:00Z"} in state["claims"]
    assert sorted(p["kind"] for p in state["claims"])[-1:] == ["settle"]
    assert not [n for n in stack.blobs() if n.startswith("direct_routing/")]
    sim.clear_faults()
    # A later run still reads exactly the claimed window first, then the rest.
    assert stack.run("2026-10-23T18:00:00Z", COLLECTOR_SOURCES="direct_routing") == 0
    assert_archive_matches(stack, "direct_routing", START, "2026-10-23T17:00:00Z")
    assert stack.state("direct_routing")["claims"] == []  # type: ignore[index]


def test_crash_between_commit_and_watermark_write_duplicates_nothing(stack: Stack) -> None:
    assert stack.run(SECOND, COLLECTOR_SOURCES="pstn") == 0
    # Rewind the state as a run would leave it if it died after committing the last
    # window's blob but before advancing the watermark past it.
    container = stack.container()
    state = stack.state("pstn")
    assert state is not None
    state.update(
        watermark="2026-10-23T00:00:00Z",
        claims=[{"kind": "provisional", "start": "2026-10-23T00:00:00Z", "end": SECOND_END}],
    )
    container.upload_blob("_state/pstn.json", json.dumps(state), overwrite=True)
    assert stack.run("2026-10-23T20:00:00Z", COLLECTOR_SOURCES="pstn") == 0
    assert_archive_matches(stack, "pstn", START, "2026-10-23T19:00:00Z")
    names = sorted(n for n in stack.blobs() if n.startswith("pstn/year=2026/month=10/day=23/"))
    assert names == [
        "pstn/year=2026/month=10/day=23/part-20261023T000000Z-20261023T113000Z.jsonl",
        "pstn/year=2026/month=10/day=23/part-20261023T113000Z-20261023T190000Z.jsonl",
    ]


def test_a_state_write_whose_answer_is_lost_does_not_strand_the_lease(
    proxied: tuple[Stack, ImmutableArchiveProxy],
) -> None:
    """A state write lands but its answer never comes back; the storage client retries it and
    the retry conflicts with the write itself. That is recognised as our own write (not a
    lost lease): the run finishes and releases the lease, so no later run is locked out."""
    stack, proxy = proxied
    stack.env["COLLECTOR_LEASE_SECONDS"] = "300"
    cut: list[str] = []

    def lose_one_state_answer(_n: int, phase: str, path: str) -> bool:
        if phase == "after" and path.endswith("/_state/pstn.json") and len(cut) < 3:
            cut.append(path)
            return len(cut) == 3  # the third state write: a window's claim or advance
        return False

    proxy.on_write = lose_one_state_answer
    assert stack.run(FIRST, COLLECTOR_SOURCES="pstn") == 0
    proxy.on_write = None
    assert len(cut) == 3
    state = stack.state("pstn")
    assert state is not None and state["owner"] is None and state["claims"] == []
    assert_archive_matches(stack, "pstn", START, "2026-10-21T11:00:00Z")
    assert stack.run("2026-10-21T13:00:00Z", COLLECTOR_SOURCES="pstn") == 0  # not "yielded"
    assert_archive_matches(stack, "pstn", START, "2026-10-21T12:00:00Z")


def test_windows_committed_behind_an_unfinished_one_are_not_read_again(stack: Stack) -> None:
    # Run 1: the settle window of Oct 20 fails late (a slow first page, then a 403) while the
    # provisional windows of Oct 21-23 commit. The watermark cannot pass Oct 20, so they stay
    # pending, marked committed. Reading them again first in every run could take the whole
    # time budget from the window they wait for, run after run (seen with a 1 s budget).
    sim = stack.graph.simulator
    oct20 = "fromDateTime=2026-10-20"
    sim.add_fault(Fault("slow", delay=1.0, source="direct_routing", window=oct20))
    sim.add_fault(Fault("status", count=-1, source="direct_routing", window=oct20))
    env = {"COLLECTOR_SOURCES": "direct_routing"}
    assert stack.run(SECOND, **env) != 0
    state = stack.state("direct_routing")
    assert state is not None and state["watermark"] == START
    assert [p.get("committed") for p in state["claims"]] == [None, True, True, True]
    sim.clear_faults()
    before = len(sim.windows)
    assert stack.run(SECOND, **env) == 0
    read_again = sim.windows[before:]
    assert len(read_again) == 1  # only the settle window of Oct 20
    assert read_again[0][1] == parse_ticks(START)
    state = stack.state("direct_routing")
    assert state is not None and state["watermark"] == SECOND_END and state["claims"] == []
    assert_archive_matches(stack, "direct_routing", START, SECOND_END)


def test_lateness_zero_reads_each_window_once_and_never_settles(stack: Stack) -> None:
    assert stack.run(SECOND, COLLECTOR_LATENESS_HOURS="0", COLLECTOR_SOURCES="sms") == 0
    names = list(stack.blobs())
    assert not [n for n in names if "/settle-" in n or n.startswith("_manifests/")]
    assert stack.state("sms")["settled"] is None  # type: ignore[index]
    assert len(stack.graph.simulator.windows) == 4  # Oct 20, 21, 22, 23 (partial): once each
    assert_archive_matches(stack, "sms", START, SECOND_END)


def test_settle_never_deletes_rows_graph_no_longer_returns(stack: Stack) -> None:
    env = {"COLLECTOR_SOURCES": "pstn"}
    assert stack.run(FIRST, **env) == 0  # Oct 20-21 archived provisionally
    archived = stack.blobs()
    # A long outage later, Graph's retention has dropped Oct 20 before it could be settled.
    stack.tenant.retained_from = parse_ticks("2026-10-20T12:00:00Z")
    assert stack.run(SECOND, **env) == 0
    blobs = stack.blobs()
    manifest = json.loads(blobs["_manifests/pstn/2026-10-20.json"])
    day20 = "pstn/year=2026/month=10/day=20/"
    gone = [
        r
        for n, r in data_rows(archived, "pstn")
        if n.startswith(day20) and r["startDateTime"] < "2026-10-20T12"
    ]
    assert manifest["status"] == "settled" and manifest["lateRows"] == 0
    assert manifest["goneRows"] == len(gone) > 0  # counted, and kept
    assert manifest["rows"] == archived_rows(archived, day20)
    folder = {n: v for n, v in blobs.items() if n.startswith(day20)}
    assert folder == {n: v for n, v in archived.items() if n.startswith(day20)}  # untouched
    stack.tenant.retained_from = 0
    assert_archive_matches(stack, "pstn", START, SECOND_END)


def archived_rows(blobs: dict[str, bytes], prefix: str) -> int:
    return sum(v.count(b"\n") for k, v in blobs.items() if k.startswith(prefix))


def test_switching_settling_on_later_settles_from_that_day_whole(stack: Stack) -> None:
    env = {"COLLECTOR_SOURCES": "direct_routing"}
    assert stack.run(FIRST, COLLECTOR_LATENESS_HOURS="0", **env) == 0  # watermark Oct 21 11:00
    assert stack.state("direct_routing")["settled"] is None  # type: ignore[index]
    assert stack.run(SECOND, **env) == 0
    assert stack.state("direct_routing")["settled"] == "2026-10-21T00:00:00Z"  # type: ignore[index]
    assert stack.run("2026-10-24T01:00:00Z", **env) == 0  # Oct 21 is 48 h old: settled whole
    blobs = stack.blobs()
    day21 = [n for n in blobs if n.startswith("direct_routing/year=2026/month=10/day=21/")]
    manifest = json.loads(blobs["_manifests/direct_routing/2026-10-21.json"])
    assert [b["name"] for b in manifest["blobs"]] == sorted(day21)
    assert all("/part-" in n for n in day21)  # no late rows: the provisional blobs are final
    assert manifest["coveredFrom"] == "2026-10-21T00:00:00Z"
    assert_archive_matches(stack, "direct_routing", START, "2026-10-24T00:00:00Z")
