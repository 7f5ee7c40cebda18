"""Exactly-once under late rows, kill -9, concurrent runs, outages and bad data (end to end)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from collector.reports import SourceReport
from collector.runner import run_cycle
from collector.settings import load_settings
from collector.timefmt import parse_instant, parse_ticks
from devstack.graph_simulator import Fault
from devstack.proxy import ImmutableArchiveProxy

from .conftest import Stack, assert_archive_matches, data_rows

ROOT = Path(__file__).resolve().parent.parent
START = "2026-10-20T00:00:00Z"
FIRST = "2026-10-21T12:00:00Z"  # reads Oct 20-21 provisionally (nothing is 48 h old yet)
SECOND = "2026-10-23T12:30:00Z"  # settles Oct 20, reads the rest provisionally
SECOND_END = "2026-10-23T11:30:00Z"
SOURCES = ("direct_routing", "pstn")


LATE_STAMPS = (
    "2026-10-20T08:15:00.1234567Z",
    "2026-10-20T23:59:59.9999999Z",
    "2026-10-21T03:00:00Z",
)


def late_rows(stack: Stack) -> dict[str, str]:
    """Rows Graph 'ingests' after their window was read (Oct 20 and 21): id -> stamp."""
    return {
        stack.tenant.add_row(source, stamp)["id"]: stamp
        for source in SOURCES
        for stamp in LATE_STAMPS
    }


def settled_day_is_final(stack: Stack, day: str) -> None:
    """A settled day: its manifest lists exactly the day's data blobs, with their row counts."""
    blobs = stack.blobs()
    for source in SOURCES:
        folder = f"{source}/year=2026/month=10/day={day[-2:]}/"
        names = sorted(n for n in blobs if n.startswith(folder))
        manifest = json.loads(blobs[f"_manifests/{source}/{day}.json"])
        assert manifest["status"] == "settled"
        assert [b["name"] for b in manifest["blobs"]] == names
        for listed in manifest["blobs"]:
            assert listed["rows"] == blobs[listed["name"]].count(b"\n"), listed
        assert manifest["rows"] == sum(blobs[n].count(b"\n") for n in names)


def test_late_rows_are_captured_once_by_the_settle_pass(stack: Stack) -> None:
    env = {"COLLECTOR_SOURCES": ",".join(SOURCES)}
    assert stack.run(FIRST, **env) == 0
    late = late_rows(stack)
    assert stack.run("2026-10-22T12:00:00Z", **env) == 0  # Oct 20 is not 48 h old yet
    archived = {r["id"] for s in SOURCES for _, r in data_rows(stack.blobs(), s)}
    assert not archived & set(late)  # provisional data has not seen them
    assert stack.run(SECOND, **env) == 0  # Oct 20 settles; Oct 21 is still provisional
    nov21 = {i for i, stamp in late.items() if stamp.startswith("2026-10-21")}
    for source in SOURCES:
        assert_archive_matches(stack, source, START, SECOND_END, not_yet=nov21)
    settled_day_is_final(stack, "2026-10-20")
    assert stack.state("pstn")["settled"] == "2026-10-21T00:00:00Z"  # type: ignore[index]
    # The Oct 21 late row arrives with the next day's settle pass.
    assert stack.run("2026-10-24T12:30:00Z", **env) == 0
    for source in SOURCES:
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
    stack.env.update(COLLECTOR_SOURCES=",".join(SOURCES), COLLECTOR_LEASE_SECONDS="1")
    yield stack, stack.proxy


def spawn(stack: Stack, as_of: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--as-of", as_of],
        cwd=ROOT,
        env={**os.environ, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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
    for source in SOURCES:
        assert_archive_matches(stack, source, START, SECOND_END, not_yet=nov21)
        state = stack.state(source)
        assert state is not None and state["claims"] == [] and state["owner"] is None
        assert state["watermark"] == SECOND_END and state["settled"] == "2026-10-21T00:00:00Z"
    settled_day_is_final(stack, "2026-10-20")


def test_two_collectors_started_together_never_duplicate(stack: Stack) -> None:
    stack.env.update(COLLECTOR_SOURCES=",".join(SOURCES))
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
        for source in SOURCES:
            assert stack.watermark(source) == end, (round_, source)
            assert_archive_matches(stack, source, START, end)
    # Both outcomes were seen: real contention happened, and the loser stepped aside cleanly.
    assert outcomes.count("yielded") >= 1 and outcomes.count("ok") >= 20, outcomes


def run_end_text(as_of: str) -> str:
    """``as_of`` minus the default 60-minute lag, as the collector stamps it."""
    hour = int(as_of[11:13]) - 1
    day = int(as_of[8:10]) - (1 if hour < 0 else 0)
    return f"2026-10-{day:02d}T{hour % 24:02d}:30:00Z"


def test_long_outage_of_one_source_then_recovery(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = stack.graph.simulator
    sim.add_fault(Fault("503", count=-1, retry_after=0, source="sms"))
    for hour in ("06", "12", "18"):
        assert stack.run(f"2026-10-22T{hour}:00:00Z") == 1
        out = capsys.readouterr().out
        sms = next(line for line in out.splitlines() if line.startswith("sms:"))
        assert "failed" in sms and "HTTP 503 ServiceUnavailable" in sms and "request-id" in sms
        assert stack.watermark("sms") == START
        assert "direct_routing: ok" in out and "pstn: ok" in out
        end = f"2026-10-22T{int(hour) - 1:02d}:00:00Z"
        for source in ("direct_routing", "pstn"):
            assert_archive_matches(stack, source, START, end)
    sim.clear_faults()
    assert stack.run("2026-10-23T00:00:00Z") == 0
    for source in ("sms", "direct_routing", "pstn"):
        assert_archive_matches(stack, source, START, "2026-10-22T23:00:00Z")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", None, "has no 'id'"),
        ("startDateTime", None, "has no 'startDateTime'"),
        ("startDateTime", "21/11/2026 10:00", "unreadable startDateTime"),
        ("startDateTime", "2026-10-21T10:00:00", "without a time zone"),
    ],
)
def test_bad_rows_fail_the_window_and_commit_nothing(
    stack: Stack, capsys: pytest.CaptureFixture[str], field: str, value: str | None, message: str
) -> None:
    stack.graph.simulator.add_fault(
        Fault("corrupt", source="pstn", after=1, field=field, value=value)
    )
    assert stack.run(FIRST, COLLECTOR_SOURCES="pstn", COLLECTOR_WINDOWS_IN_FLIGHT="1") == 1
    line = capsys.readouterr().out
    assert (
        message in line
        and "pstn window [2026-10-20T00:00:00Z, 2026-10-21T00:00:00Z) page 2" in line
    )
    assert "request-id" in line and "nothing of this window was committed" in line
    assert not [n for n in stack.blobs() if n.startswith("pstn/")]
    assert stack.watermark("pstn") == START


def test_randomized_fault_soak_is_complete_and_duplicate_free(stack: Stack) -> None:
    """Every data request has a 25 % chance of a 429, 503, 504, reset, slow page or empty
    page, over four simulated days of hourly runs (provisional and settle passes)."""
    sim = stack.graph.simulator
    sim.chaos(
        0.25,
        seed=2026,
        menu=(
            Fault("429", retry_after=0),
            Fault("503"),
            Fault("504", retry_after=0),
            Fault("drop"),
            Fault("slow", delay=0.05),
            Fault("empty"),
        ),
    )
    failures = 0
    runs = 0
    for hour in range(1, 24 * 4):
        day, at = divmod(hour, 24)
        code = stack.run(f"2026-10-{20 + day:02d}T{at:02d}:00:00Z")
        runs += 1
        failures += code != 0
    sim.chaos(0.0, seed=0, menu=(Fault("503"),))
    assert stack.run("2026-10-24T00:00:00Z") == 0
    for source in ("sms", "direct_routing", "pstn"):
        assert_archive_matches(stack, source, START, "2026-10-23T23:00:00Z")
    faults = {k: v for k, v in sim.stats.items() if k.startswith("fault:")}
    print(
        f"\nsoak: {runs} runs, {sim.stats['requests']} requests, {sum(faults.values())} faults "
        f"survived {dict(sorted(faults.items()))}, {failures} runs with a failed source"
    )
    assert sum(faults.values()) >= 50


def test_time_budget_stops_at_a_window_boundary_and_the_next_run_continues(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.graph.simulator.add_fault(Fault("slow", count=-1, delay=0.4, source="direct_routing"))
    env = {
        "COLLECTOR_SOURCES": "direct_routing",
        "COLLECTOR_TIME_BUDGET_SECONDS": "1",
        "COLLECTOR_WINDOWS_IN_FLIGHT": "1",
    }
    watermarks: list[str] = []
    for _ in range(12):
        assert stack.run(SECOND, **env) == 0
        watermarks.append(stack.watermark("direct_routing") or "")
        if watermarks[-1] == SECOND_END:
            break
    out = capsys.readouterr().out
    assert "time budget reached: the next run continues" in out
    assert len(watermarks) >= 3 and watermarks[-1] == SECOND_END
    assert watermarks == sorted(watermarks)  # steady progress, never backwards
    assert_archive_matches(stack, "direct_routing", START, SECOND_END)


def test_start_older_than_graph_keeps_is_refused(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.run(SECOND, COLLECTOR_START="2025-09-01") == 2
    err = capsys.readouterr().err
    assert "COLLECTOR_START='2025-09-01T00:00:00Z'" in err and "365 days" in err
    assert stack.graph.simulator.stats["requests"] == 0
    assert not stack.container().exists()  # nothing written
    # Sources with a watermark ignore the start: a year after its backfill began, an app
    # that still has the setting keeps running...
    assert stack.run(SECOND, COLLECTOR_SOURCES="sms,pstn") == 0
    old_start = {"COLLECTOR_START": "2025-09-01"}
    assert stack.run("2026-10-23T13:30:00Z", COLLECTOR_SOURCES="sms,pstn", **old_start) == 0
    # ...and a source added then fails alone, untouched, while the others go on.
    assert stack.run("2026-10-23T14:30:00Z", **old_start) == 1
    out = capsys.readouterr().out
    assert "direct_routing: failed" in out and "COLLECTOR_START" in out, out
    assert "sms: ok" in out and "pstn: ok" in out
    assert stack.state("direct_routing") is None
    assert stack.watermark("pstn") == "2026-10-23T13:30:00Z"


def test_a_live_lease_makes_the_other_run_yield(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    held_until = "2099-01-01T00:00:00Z"
    stack.container().create_container()
    stack.container().upload_blob(
        "_state/pstn.json",
        json.dumps(
            {
                "source": "pstn",
                "watermark": START,
                "settled": START,
                "claims": None,
                "owner": "other-host",
                "leaseUntil": held_until,
            }
        ),
    )
    assert stack.run(SECOND, COLLECTOR_SOURCES="pstn") == 0
    line = capsys.readouterr().out
    assert "pstn: yielded" in line and "other-host" in line
    assert stack.graph.simulator.stats["requests"] == 0
    # Once that lease has lapsed, the source is collected as usual.
    state = stack.state("pstn")
    assert state is not None
    state["leaseUntil"] = "2026-01-01T00:00:00Z"
    stack.container().upload_blob("_state/pstn.json", json.dumps(state), overwrite=True)
    assert stack.run(SECOND, COLLECTOR_SOURCES="pstn") == 0
    assert_archive_matches(stack, "pstn", START, SECOND_END)


def test_lateness_zero_reads_each_window_once_and_never_settles(stack: Stack) -> None:
    assert stack.run(SECOND, COLLECTOR_LATENESS_HOURS="0", COLLECTOR_SOURCES="sms") == 0
    names = list(stack.blobs())
    assert not [n for n in names if "/settle-" in n or n.startswith("_manifests/")]
    assert stack.state("sms")["settled"] is None  # type: ignore[index]
    assert len(stack.graph.simulator.windows) == 4  # Oct 20, 21, 22, 23 (partial): once each
    assert_archive_matches(stack, "sms", START, SECOND_END)


def test_sparse_backfill_uses_few_large_windows(stack: Stack) -> None:
    stack.tenant.rows_per_day.update(sms=3)
    as_of = "2026-10-23T12:30:00Z"
    assert stack.run(as_of, COLLECTOR_SOURCES="sms", COLLECTOR_START="2026-08-01") == 0
    windows = stack.graph.simulator.windows
    settle = [(a, b) for _, a, b in windows if b <= parse_ticks("2026-10-21T00:00:00Z")]
    # 81 settled days in settle windows of 1, 2, 4, 8, 16, 32, 18 days; then 3 provisional.
    assert len(settle) == 7 and len(windows) == 10
    assert max(b - a for a, b in settle) <= 90 * 86_400 * 10_000_000
    assert_archive_matches(stack, "sms", "2026-08-01T00:00:00Z", SECOND_END)
    manifests = [n for n in stack.blobs() if n.startswith("_manifests/sms/")]
    assert len(manifests) == 81  # Aug 1 .. Oct 20, each marked settled


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


def test_an_unfinished_settle_window_is_redone_shorter(stack: Stack) -> None:
    stack.container().create_container()
    stack.container().upload_blob(
        "_state/sms.json",
        json.dumps(
            {
                "source": "sms",
                "watermark": "2026-10-01T00:00:00Z",
                "settled": "2026-10-01T00:00:00Z",
                "owner": None,
                "leaseUntil": None,
                "claims": [
                    {
                        "kind": "settle",
                        "start": "2026-10-01T00:00:00Z",
                        "end": "2026-10-11T00:00:00Z",
                    }
                ],
            }
        ),
    )
    assert stack.run(SECOND, COLLECTOR_SOURCES="sms") == 0
    settle = [
        w for w in stack.graph.simulator.windows if w[2] <= parse_ticks("2026-10-21T00:00:00Z")
    ]
    first = min(settle, key=lambda w: w[1])
    assert (first[1], first[2]) == (
        parse_ticks("2026-10-01T00:00:00Z"),
        parse_ticks("2026-10-02T00:00:00Z"),  # restarted small, then grows again
    )
    assert_archive_matches(stack, "sms", "2026-10-01T00:00:00Z", SECOND_END)


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


def test_too_much_in_flight_for_one_run_is_cut_off_and_later_runs_take_less(
    stack: Stack,
) -> None:
    """A dense tenant in miniature: Graph's budget (4 requests a second here) cannot finish
    the windows a first run starts before its hard time limit. The run stops them (nothing
    half-written stays), later runs size what they take on by the measured density, and the
    archive completes exactly."""
    as_of = parse_instant("2026-10-21T12:00:00Z")
    settings = load_settings(
        {
            **stack.env,
            "COLLECTOR_SOURCES": "direct_routing",
            "COLLECTOR_START": "2026-10-12T00:00:00Z",  # 7 days to settle, 2.5 to read
            "COLLECTOR_TIME_BUDGET_SECONDS": "2",
            "COLLECTOR_WINDOWS_IN_FLIGHT": "8",
            "GRAPH_REQUESTS_PER_MINUTE_PER_LOG": "4",  # per 1 s "minute" below
        }
    )
    reports: list[SourceReport] = []
    state: dict[str, Any] | None = None
    while len(reports) < 60:
        report = asyncio.run(
            run_cycle(settings, as_of, budget_period=1.0, budget_margin=0.0)
        ).sources[0]
        assert report.status == "ok", report.summary()
        # The hard limit is 1.25 x the budget; stopping and releasing take a little more.
        assert report.seconds < 2.5 + 1.5, report.summary()
        reports.append(report)
        state = stack.state("direct_routing")
        assert state is not None
        if state["watermark"] == "2026-10-21T11:00:00Z" and state["settled"] == (
            "2026-10-19T00:00:00Z"
        ):
            break
    first = reports[0]
    # The first run cannot know the density: it starts all 10 windows, too many to finish;
    # at the hard limit it stops the ones still reading but one, which it finishes...
    assert first.cut_off >= 3 and first.windows >= 1, first.summary()
    # ...and later runs, knowing it (2,300 rows a day), take on what they can finish.
    assert sum(r.cut_off > 0 for r in reports) <= 2, [r.summary() for r in reports]
    assert all(r.windows > 0 for r in reports[2:]), [r.summary() for r in reports]
    assert state is not None and state["claims"] == [] and state["owner"] is None
    assert state["rowsPerDay"] == 2300
    assert_archive_matches(stack, "direct_routing", "2026-10-12T00:00:00Z", "2026-10-21T11:00:00Z")
    settled = [n for n in stack.blobs() if "/settle-" in n and "direct_routing" in n]
    assert len(settled) == 7  # one blob per settled day, nothing left half-done


def test_a_first_backfill_goes_wide_once_a_first_page_has_a_next_link(stack: Stack) -> None:
    # 2,500 rows a day: three pages. The first settle window reads alone until a page shows
    # that windows need more than one; its first page already does (rows and a nextLink), so
    # the other settle days start before that window's third page is even asked for.
    stack.tenant.rows_per_day.update(sms=2_500)
    stack.graph.simulator.latency = 0.1
    assert stack.run(SECOND, COLLECTOR_SOURCES="sms", COLLECTOR_START="2026-10-15") == 0
    arrivals = [(params[13:23], skip) for source, params, skip in stack.graph.simulator.arrivals]
    first_page = arrivals.index(("2026-10-15", 0))
    third_page = arrivals.index(("2026-10-15", 2000))
    settle_days = ("2026-10-16", "2026-10-17", "2026-10-18", "2026-10-19", "2026-10-20")
    for day in settle_days:
        # Not before the probe window's first page (one window first), not after its third.
        assert first_page < arrivals.index((day, 0)) < third_page, (day, arrivals)
    assert_archive_matches(stack, "sms", "2026-10-15T00:00:00Z", SECOND_END)


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
