"""Benchmark: full call records at Graph's call-record limits (scaled in time).

    .venv/bin/python benchmarks/call_records.py [--records N] [--scale S] [--latencies 0.2,0.5,1.0]

One day of ``--records`` calls and meetings, one of them a town hall of ``--huge`` attendees
with a session each and the others of 1-50 sessions, is collected by one collector run, in a process
of its own, from the Graph simulator in another. The simulator's answers are rendered ahead
(``prerender``: every record's pages and the collector's hour-slice listings, keyed by the
exact ``$filter`` texts the collector sends), so serving costs a lookup, not CPU, and what is
measured is the collector. Graph's call-record limits (1,500 requests per 20 s per app; per
record 10 per 20 s for its first page, 50 per 5 minutes for later ones) are enforced by the
simulator, their periods times ``--scale``; the collector's budget is scaled alike
(``GRAPH_CALL_RECORDS_PERIOD_SCALE``, its production margin ``RECORDS_MARGIN_SECONDS`` with
it), so a 429 shows if it ever exceeds them. Each latency of ``--latencies`` (seconds per
request, before scaling; ``--latency-per-mb`` more per MB of answer) is one run.

Printed per latency: records, requests by kind, wall, floor, wall / floor, 429s, the
collector's peak RSS, CPU seconds and requests per record, and a timeline (when the
ordinary records were read, when the town hall's later pages began and ended). The floor is
the larger of (a) the app limit for the requests made: every full 1,500 waits a 20 s span,
and (b) the town hall's own: its later pages, 50 per 5 min span, wait a span per full 50;
plus one latency. Figures, not a test: nothing here is timed or asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import Simulator, collector_env, measure  # noqa: E402

from collector.core.sources import SOURCES  # noqa: E402
from collector.core.timefmt import parse_instant  # noqa: E402
from collector.core.windows import Window  # noqa: E402
from collector.graph.budget import (  # noqa: E402
    CALL_RECORDS_PER_APP,
    RECORD_LATER_PAGES,
    RECORDS_MARGIN_SECONDS,
)
from collector.graph.client import window_url  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402

DAY, AS_OF = "2026-10-20T00:00:00Z", "2026-10-23T00:30:00Z"
"""The day read, and a run that finds exactly it past the 48 h lateness (its 24 hour slices;
Oct 21 00:00 is the slice horizon)."""
LATENESS_HOURS, LAG_MINUTES = 48, 60
TIME_BUDGET = 20_000
"""The collector's soft time budget, seconds (it starts no hour slice after it): far beyond
any run here, so every slice of the day is read."""
SOURCE = SOURCES["call_records"]
SESSIONS_PAGE = dict(SOURCE.page_sizes)["sessions"]
PARTICIPANTS_PAGE = dict(SOURCE.page_sizes)["participants_v2"]
SESSIONS = (1, 50)
"""Sessions of an ordinary record: at most one page of sessions and one of participants
(at most 40) each, so an ordinary record costs exactly two requests."""


# --- the simulator's control endpoint --------------------------------------------------


def control(endpoint: str, action: str, body: dict[str, Any] | None = None) -> Any:
    """Ask the simulator's call-record control endpoint (GET without ``body``)."""
    request = urllib.request.Request(
        f"{endpoint}/_sim/call-records/{action}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=600) as answer:
        return json.loads(answer.read())


def slice_filters(day: str) -> list[str]:
    """The ``$filter`` texts of the collector's 24 hour-slice listings of ``day``, decoded
    as the simulator reads them: built by the collector's own ``window_url``."""
    start = parse_instant(day)
    texts = []
    for hour in range(24):
        window = Window(start + timedelta(hours=hour), start + timedelta(hours=hour + 1))
        query = urlsplit(window_url("http://graph", SOURCE, window)).query
        texts.append(dict(parse_qsl(query))["$filter"])
    return texts


def prerender(endpoint: str) -> int:
    """Render ahead every answer of the day the collector asks for. Its first pages carry
    ``Prefer: odata.maxpagesize``: 60 on a record's get (sessions), 130 on its participants,
    none on a listing; a prerendered first page is keyed by that header, so one pass per
    header: gets (and every page after), participants (and every page after), listings."""
    day_end = parse_instant(DAY) + timedelta(days=1)
    end = day_end.strftime("%Y-%m-%dT%H:%M:%SZ")
    answers = 0
    for prefer, lists in (
        (SESSIONS_PAGE, []),
        (PARTICIPANTS_PAGE, []),
        (None, slice_filters(DAY)),
    ):
        spec = {"start": DAY, "end": end, "prefer": prefer, "lists": lists}
        answers = int(control(endpoint, "prerender", spec)["answers"])
    return answers


# --- measuring ---------------------------------------------------------------------------


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants so far (from /proc; 0 elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    usage: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        usage[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [pid]
    while todo:
        at = todo.pop()
        total += usage.get(at, 0.0)
        todo += children.get(at, [])
    return total


@dataclass
class Timeline:
    """The simulator's request counters, sampled while the collector runs."""

    endpoint: str
    every: float = 0.25
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.began = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                stats = control(self.endpoint, "stats")
            except OSError:
                continue
            self.samples.append((time.monotonic() - self.began, stats))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def first(self, key: str, at_least: int = 1) -> float | None:
        """Seconds after the start when ``key`` first reached ``at_least`` (None: never)."""
        return next((t for t, s in self.samples if s.get(key, 0) >= at_least), None)

    def at(self, moment: float | None, key: str) -> int:
        """``key``'s count in the last sample up to ``moment`` (0: none)."""
        found = [s.get(key, 0) for t, s in self.samples if moment is not None and t <= moment]
        return found[-1] if found else 0

    def last_change(self, key: str) -> float | None:
        """Seconds after the start of the first sample showing ``key``'s final value."""
        if not self.samples:
            return None
        final = self.samples[-1][1].get(key, 0)
        return self.first(key, final) if final else None


def later_pages(attendees: int) -> int:
    """The town hall's later pages: every sessions page after the first (which comes with
    the record) and every participants page after the first."""
    return (math.ceil(attendees / SESSIONS_PAGE) - 1) + (
        math.ceil(attendees / PARTICIPANTS_PAGE) - 1
    )


def floors(requests: int, later: int, scale: float, latency: float) -> dict[str, float]:
    """The least time Graph's limits allow (see the module's docstring), and its parts."""
    app = ((requests - 1) // CALL_RECORDS_PER_APP.count) * CALL_RECORDS_PER_APP.seconds * scale
    meeting = ((later - 1) // RECORD_LATER_PAGES.count) * RECORD_LATER_PAGES.seconds * scale
    return {"app": app, "meeting": meeting, "floor": max(app, meeting) + latency}


def scenario(
    azurite: Azurite, args: argparse.Namespace, latency_unscaled: float, number: int
) -> dict[str, Any]:
    """Collect the day once at ``latency_unscaled`` (seconds, before scaling)."""
    scale = args.scale
    latency = latency_unscaled * scale
    sim = Simulator("sms=0", DAY, DAY, 0.0)
    try:
        endpoint = sim.env["GRAPH_ENDPOINT"]
        control(endpoint, "config", {
            "records_per_day": args.records, "sessions": list(SESSIONS), "huge_per_day": 1,
            "huge_participants": [args.huge, args.huge], "huge_session_per_attendee": True,
            "latency": latency, "latency_per_mb": args.latency_per_mb * scale,
        })  # fmt: skip
        control(endpoint, "now", {"now": AS_OF})
        began = time.monotonic()
        answers = prerender(endpoint)
        rendering = time.monotonic() - began
        # Counting starts afresh here: the limits scaled as the collector's budget is.
        control(endpoint, "throttle", {"scale": scale})
        env = collector_env(
            sim, azurite, f"records{number:02d}", "call_records", DAY,
            {"COLLECTOR_LAG_MINUTES": str(LAG_MINUTES),
             "COLLECTOR_LATENESS_HOURS": str(LATENESS_HOURS),
             "COLLECTOR_TIME_BUDGET_SECONDS": str(TIME_BUDGET),
             "GRAPH_CALL_RECORDS_PERIOD_SCALE": repr(scale)},
        )  # fmt: skip
        sim_cpu, store_cpu = tree_cpu(sim.process.pid), tree_cpu(azurite_pid(azurite))
        timeline = Timeline(endpoint)
        timeline.start()
        try:
            result = measure(
                "collector", env, sources="call_records", start=DAY, end=AS_OF, as_of=AS_OF,
                period=60.0, margin=1.0,
            )  # fmt: skip
        finally:
            timeline.stop()
        sim_cpu = tree_cpu(sim.process.pid) - sim_cpu
        store_cpu = tree_cpu(azurite_pid(azurite)) - store_cpu
        stats = control(endpoint, "stats")
    finally:
        sim.process.stdin.close()  # type: ignore[union-attr]
        sim.process.wait(timeout=60)
    requests = int(stats.get("requests", 0))
    later = later_pages(args.huge)
    floor = floors(requests, later, scale, latency)
    # Slices are read in order: the town hall is not asked for before the records listed
    # ahead of it. Their requests at the app limit, then its own floor: the least a
    # collector reading in listing order can take.
    meeting_first = timeline.first("requests:sessions")
    before = timeline.at(meeting_first, "requests")
    ahead = floors(max(before, 1), later, scale, latency)
    in_order = max(floor["app"], ahead["app"] + ahead["meeting"]) + latency
    return {
        "latency": latency_unscaled,
        "records": result.rows,
        "answers": answers,
        "rendering": rendering,
        "requests": requests,
        "by_kind": {k.split(":")[1]: v for k, v in stats.items() if k.startswith("requests:")},
        "prerendered": int(stats.get("answers_prerendered", 0)),
        "mb": int(stats.get("bytes_served", 0)) / 1e6,
        "throttled": int(stats.get("throttled", 0)),
        "throttled_by": {
            k.split(":")[1]: v for k, v in stats.items() if k.startswith("throttled:")
        },
        "wall": result.wall,
        **floor,
        "ratio": result.wall / floor["floor"],
        "rss_mb": result.rss_mb,
        "cpu": result.cpu,
        "sim_cpu": sim_cpu,
        "store_cpu": store_cpu,
        "in_order": in_order,
        "gets_before": timeline.at(meeting_first, "requests:get"),
        "gets_done": timeline.last_change("requests:get"),
        "meeting_first": meeting_first,
        "meeting_last": timeline.last_change("requests:sessions"),
        "last_request": timeline.last_change("requests"),
        "first_request": timeline.first("requests"),
        "requests_by_gets_done": timeline.at(timeline.last_change("requests:get"), "requests"),
        "spans": (later - 1) // RECORD_LATER_PAGES.count,
        "spans_time": (later - 1)
        // RECORD_LATER_PAGES.count
        * (RECORD_LATER_PAGES.seconds + RECORDS_MARGIN_SECONDS)
        * scale,
        "meeting_span": (timeline.last_change("requests:sessions") or 0.0) - (meeting_first or 0.0),
    }


def ordinary_rate(m: dict[str, Any]) -> float:
    """Requests a second from the first request to the last get."""
    span = (m["gets_done"] or 0.0) - (m["first_request"] or 0.0)
    return float(m["requests_by_gets_done"]) / span if span > 0 else 0.0


def azurite_pid(azurite: Azurite) -> int:
    process = azurite._process  # the benchmark's own Azurite
    return 0 if process is None else process.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=5_000, help="records a day")
    parser.add_argument("--scale", type=float, default=0.2, help="Graph's time, scaled")
    parser.add_argument(
        "--latencies", default="0.2,0.5,1.0", help="seconds a request takes, before scaling"
    )
    parser.add_argument(
        "--latency-per-mb", type=float, default=0.0, help="seconds more per MB, before scaling"
    )
    parser.add_argument("--huge", type=int, default=10_000, help="the town hall's attendees")
    args = parser.parse_args()
    latencies = [float(x) for x in args.latencies.split(",")]
    scale = args.scale
    started = datetime.now(UTC)
    later = later_pages(args.huge)
    print(
        f"# Call-records benchmark {started:%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), Python "
        f"{platform.python_version()}\n# Graph's time x{scale}: app span 20 s -> "
        f"{20 * scale:g} s, a record's later-page span 300 s -> {300 * scale:g} s; collector "
        f"margin {RECORDS_MARGIN_SECONDS} s -> {RECORDS_MARGIN_SECONDS * scale:g} s; latency "
        f"per request {', '.join(f'{x:g}' for x in latencies)} s -> "
        f"{', '.join(f'{x * scale:g}' for x in latencies)} s"
        + (f", +{args.latency_per_mb:g} s/MB" if args.latency_per_mb else "")
        + f"\n# Day {DAY[:10]}: {args.records:,} records, one a town hall of {args.huge:,} "
        f"attendees with a session each, the others 1-50 sessions ({later} later pages: "
        f"{math.ceil(later / RECORD_LATER_PAGES.count)} spans of 50); run as of {AS_OF}, "
        f"lateness {LATENESS_HOURS} h: 24 hour slices due; answers prerendered",
        flush=True,
    )
    azurite = Azurite(memory_mb=8192)
    azurite.start()
    pace = CALL_RECORDS_PER_APP.count / (CALL_RECORDS_PER_APP.seconds * scale)
    """Requests a second at the app limit: CPU per request times this is the share of a core
    the collector needs to keep up with Graph's limit."""
    rows = []
    try:
        for number, latency in enumerate(latencies):
            m = scenario(azurite, args, latency, number)
            rows.append(m)
            kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(m["by_kind"].items()))
            limits = ", ".join(f"{k} {v}" for k, v in sorted(m["throttled_by"].items()))

            def at(value: float | None) -> str:
                return "-" if value is None else f"{value:.1f} s"

            print(
                f"\nlatency {latency:g} s (scaled {latency * scale:g} s): archived "
                f"{m['records']:,} records in {m['wall']:.1f} s"
                f"\n  requests {m['requests']:,} ({kinds}), {m['requests'] / m['records']:.3f} a "
                f"record, {m['mb']:,.0f} MB served, {m['prerendered']:,} of them prerendered "
                f"({m['answers']:,} ready, rendered in {m['rendering']:.0f} s before the run)"
                f"\n  429s {m['throttled']}"
                + (f" ({limits})" if limits else "")
                + f"\n  floor {m['floor']:.1f} s = max(app limit {m['app']:.1f} s, town hall's "
                f"later pages {m['meeting']:.1f} s) + latency {latency * scale:g} s; "
                f"wall/floor {m['ratio']:.3f}"
                f"\n  timeline (from the collector's start): last get {at(m['gets_done'])}, "
                f"town hall's later pages {at(m['meeting_first'])} .. {at(m['meeting_last'])} "
                f"(after {m['gets_before']:,} gets; {m['meeting_span']:.1f} s = its "
                f"{m['spans']} spans with the collector's margin {m['spans_time']:.1f} s + "
                f"{m['meeting_span'] - m['spans_time']:.1f} s), last request "
                f"{at(m['last_request'])}"
                f"\n  start-up: first request {at(m['first_request'])}; ordinary phase: "
                f"{m['requests_by_gets_done']:,} requests by the last get = "
                f"{ordinary_rate(m):,.0f} a second after the first (the app limit: "
                f"{pace * CALL_RECORDS_PER_APP.seconds / (CALL_RECORDS_PER_APP.seconds + RECORDS_MARGIN_SECONDS):,.0f} with the margin)"
                f"\n  in-order floor {m['in_order']:.1f} s (the app limit for the "
                f"{m['gets_before']:,} records listed before the town hall, then its own floor): "
                f"wall/in-order floor {m['wall'] / m['in_order']:.3f}"
                f"\n  collector: peak RSS {m['rss_mb']:.0f} MB, CPU {m['cpu']:.1f} s "
                f"({m['cpu'] / m['wall']:.2f} of a core over the run; at the app limit's pace "
                f"{m['cpu'] / m['requests'] * pace:.2f} of a core); simulator CPU "
                f"{m['sim_cpu']:.1f} s, Azurite CPU {m['store_cpu']:.1f} s",
                flush=True,
            )
    finally:
        azurite.stop()
    print(
        "\n| latency (scaled) | records | requests (get / participants / sessions / list) "
        "| req/record | wall | floor | wall/floor | 429s | peak RSS | CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in rows:
        k = m["by_kind"]
        print(
            f"| {m['latency']:g} s ({m['latency'] * scale:g} s) | {m['records']:,} "
            f"| {m['requests']:,} ({k.get('get', 0):,} / {k.get('participants', 0):,} / "
            f"{k.get('sessions', 0):,} / {k.get('list', 0):,}) | {m['requests'] / m['records']:.3f} "
            f"| {m['wall']:.1f} s | {m['floor']:.1f} s | {m['ratio']:.3f} | {m['throttled']} "
            f"| {m['rss_mb']:.0f} MB | {m['cpu']:.1f} |"
        )


if __name__ == "__main__":
    main()
