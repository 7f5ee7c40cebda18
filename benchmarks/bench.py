"""Benchmark: the collector against Graph's limits (scaled in time) and against the tools a
user would otherwise reach for, on the same simulator data.

    make bench            (or: .venv/bin/python benchmarks/bench.py [--quick] [--repeat N])

Prints figures, asserts nothing: targets are read off the output, never timed in tests.
Each tool runs in a process of its own (peak RSS and CPU time come from the OS); the Graph
simulator runs in another, so no tool shares its interpreter with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import day_windows, function_path, token  # noqa: E402

from collector.core.timefmt import format_instant, parse_instant  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402

SOURCES = ("sms", "direct_routing", "pstn")
FUNCTIONS = {
    "sms": ("beta", "getSmsLog"),
    "direct_routing": ("v1.0", "getDirectRoutingCalls"),
    "pstn": ("v1.0", "getPstnCalls"),
}
SCALE = 0.1  # one Graph "minute" lasts 6 s here; page latency scales the same way
PERIOD, LATENCY = 60 * SCALE, 1.5 * SCALE
"""Graph's minute and page latency, scaled: the simulator's limits and the floor use both."""
PER_LOG, PER_APP = 50, 200
NARROW = {"COLLECTOR_WINDOWS_IN_FLIGHT": "3"}
NARROW_LABEL = "collector, 3 windows in flight"


@dataclass
class Result:
    """What one tool did in one scenario, measured from outside its process."""

    tool: str
    rows: int
    requests: int
    throttled: int
    wall: float
    cpu: float
    rss_mb: float
    note: str = ""
    floor: float = 0.0
    """The least time Graph's limits allow for the requests made (limited scenarios)."""


# --- the simulator, in a process of its own --------------------------------------------


class Simulator:
    """``python -m devstack graph`` as a child process."""

    def __init__(
        self, rows_per_day: str, start: str, end: str, latency: float = 0.0, throttle: str = ""
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "devstack",
            "graph",
            "--rows-per-day",
            rows_per_day,
            "--latency",
            str(latency),
            "--warm",
            f"{start}/{end}",
            "--seed",
            "11",
        ]
        if throttle:
            command += ["--throttle", throttle]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.env: dict[str, str] = json.loads(self.process.stdout.readline())

    def stats(self, action: str = "stats") -> dict[str, int]:
        """The simulator's counters (requests, throttled, ...), after ``action``."""

        async def get() -> dict[str, int]:
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{self.env['GRAPH_ENDPOINT']}/_sim/{action}") as response,
            ):
                return dict(await response.json())

        return asyncio.run(get())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


# --- workers: one tool, one run, in this child process ----------------------------------


async def plain_loop(
    env: dict[str, str], sources: list[str], start: str, end: str, out: Path
) -> dict[str, int]:
    """What a user writes first: windows of a day, one page after another, nextLink
    followed, Retry-After slept, one JSON object per line to a local file."""
    bearer = await token(env)
    rows = requests = throttled = 0
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {bearer}"}) as session:
        for source in sources:
            version, function = FUNCTIONS[source]
            for a, b in day_windows(start, end):
                url: str | None = f"{env['GRAPH_ENDPOINT']}/{version}/" + function_path(
                    function, a, b
                )
                # Blocking file I/O in a coroutine, as a first script would have it.
                with open(out / f"{source}-{a[:10]}.jsonl", "w", encoding="utf-8") as file:  # noqa: ASYNC230
                    while url:
                        requests += 1
                        async with session.get(url) as response:
                            if response.status == 429:
                                throttled += 1
                                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                                continue
                            response.raise_for_status()
                            page = await response.json()
                        for row in page["value"]:
                            file.write(json.dumps(row, ensure_ascii=False) + "\n")
                        rows += len(page["value"])
                        url = page.get("@odata.nextLink")
    return {"rows": rows, "requests": requests, "throttled": throttled}


def collector_once(env: dict[str, str], as_of: str, period: float, margin: float) -> dict[str, int]:
    """One collector cycle, as the timer would run it, with Graph's minute scaled."""
    os.environ.update(env)  # azure-identity reads the identity endpoint from here
    from collector.core.settings import load_settings
    from collector.run.runner import run_cycle

    report = asyncio.run(
        run_cycle(
            load_settings(env), parse_instant(as_of), budget_period=period, budget_margin=margin
        )
    )
    failed = [r.summary() for r in report.sources if r.status != "ok"]
    if failed:
        raise SystemExit("collector failed: " + "; ".join(failed))
    return {
        "rows": sum(r.rows for r in report.sources),
        "requests": sum(r.stats.requests for r in report.sources),
        "throttled": sum(r.stats.throttled for r in report.sources),
    }


def worker(args: argparse.Namespace) -> None:
    """Entry of a child process: run one tool, print its counters as JSON."""
    env = json.loads(args.env)
    sources = args.sources.split(",")
    if args.tool == "collector":
        counts = collector_once(env, args.as_of, args.period, args.margin)
    elif args.tool == "plain":
        with tempfile.TemporaryDirectory() as out:
            counts = asyncio.run(plain_loop(env, sources, args.start, args.end, Path(out)))
    else:
        raise SystemExit(f"unknown tool {args.tool}")
    print(json.dumps(counts), flush=True)


# --- orchestration -------------------------------------------------------------------------


PEERS_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
PEERS = ("msgraph-sdk", "dlt")


def measure(
    tool: str,
    env: dict[str, str],
    *,
    sources: str,
    start: str,
    end: str,
    as_of: str,
    period: float,
    margin: float,
) -> Result:
    """Run ``tool`` in a child process; wall time, CPU time and peak RSS from the OS."""
    if tool in PEERS:
        peer = [str(PEERS_PYTHON), str(ROOT / "benchmarks" / "peers.py"), tool, json.dumps(env)]
        return _measure(tool, [*peer, start, end])
    command = [
        sys.executable,
        __file__,
        "worker",
        tool,
        "--env",
        json.dumps(env),
        "--sources",
        sources,
        "--start",
        start,
        "--end",
        end,
        "--as-of",
        as_of,
        "--period",
        str(period),
        "--margin",
        str(margin),
    ]
    return _measure(tool, command)


def _measure(tool: str, command: list[str]) -> Result:
    began = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - began
    if status != 0:
        raise SystemExit(f"{tool} failed (status {status})")
    counts = json.loads(output.strip().splitlines()[-1])
    return Result(
        tool,
        counts["rows"],
        counts["requests"],
        counts["throttled"],
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
    )


def collector_env(
    sim: Simulator,
    azurite: Azurite,
    container: str,
    sources: str,
    start: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    return {
        **sim.env,
        "COLLECTOR_STORAGE": azurite.connection_string,
        "COLLECTOR_CONTAINER": container,
        "COLLECTOR_SOURCES": sources,
        "COLLECTOR_START": start,
        "COLLECTOR_LAG_MINUTES": "0",
        **(extra or {}),
    }


def floor_seconds(requests_per_log: dict[str, int], period: float, latency: float) -> float:
    """The least time Graph's limits allow for these requests: no more than PER_LOG of a log
    and PER_APP in all start within any ``period``; the last one still takes ``latency``."""
    per_log = max(((n - 1) // PER_LOG) * period for n in requests_per_log.values())
    total = sum(requests_per_log.values())
    return max(per_log, ((total - 1) // PER_APP) * period) + latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command")
    w = sub.add_parser("worker")
    w.add_argument("tool")
    for name in ("--env", "--sources", "--start", "--end", "--as-of"):
        w.add_argument(name, required=True)
    w.add_argument("--period", type=float, default=60.0)
    w.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="collector runs per limited scenario; the table takes the median (default 3)",
    )
    args = parser.parse_args()
    if args.command == "worker":
        worker(args)
        return
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    run_all(quick=args.quick, repeat=args.repeat)


def run_all(quick: bool, repeat: int = 3) -> None:
    started = datetime.now(UTC)
    print(
        f"# Benchmark {started:%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        flush=True,
    )
    tools = ["collector", "plain", *(PEERS if PEERS_PYTHON.exists() else ())]
    if not PEERS_PYTHON.exists():
        print("(peers skipped: run `make bench`, which installs benchmarks/requirements-peers.txt)")
    start = "2026-09-01T00:00:00Z"
    period, latency = PERIOD, LATENCY
    throttle = f"{PER_LOG},{PER_APP},{period}"
    azurite = Azurite(memory_mb=8192)  # every scenario's blobs stay until the end
    azurite.start()
    results: dict[str, dict[str, Result]] = {}
    try:
        # A1: all three logs against Graph's limits (minute = 6 s) and page latency 0.15 s.
        days = 2 if quick else 5
        end = format_instant(parse_instant(start) + timedelta(days=days))
        per_day = 2_000 if quick else 20_000
        sim = Simulator(",".join(f"{s}={per_day}" for s in SOURCES), start, end, latency, throttle)
        try:
            print(
                f"\nA1. three logs, limits {PER_LOG}/log and {PER_APP}/app per {period:.0f} s "
                f"(Graph's minute x{SCALE}), page latency {latency:.2f} s"
            )
            for tool in ("collector", "plain"):
                result = limited_runs(
                    sim, azurite, "bench-a1", tool, {}, ",".join(SOURCES), start, end, repeat
                )
                results.setdefault("A1", {})[tool] = result
        finally:
            sim.close()
        # A2: one log (every tool can read direct routing), many pages, same limits.
        days = 3 if quick else 15
        end = format_instant(parse_instant(start) + timedelta(days=days))
        sim = Simulator(f"direct_routing={per_day}", start, end, latency, throttle)
        try:
            print(f"\nA2. direct routing only, {days} days, same limits and latency")
            for tool in tools:
                result = limited_runs(
                    sim, azurite, "bench-a2", tool, {}, "direct_routing", start, end, repeat
                )
                results.setdefault("A2", {})[tool] = result
            # The same with 3 windows in flight per phase (the default is 16): what reading
            # many windows at once buys when page latency, not the budget, limits a chain.
            print(f"   ({NARROW_LABEL}:)")
            results["A2"][NARROW_LABEL] = limited_runs(
                sim,
                azurite,
                "bench-a2-narrow",
                "collector",
                NARROW,
                "direct_routing",
                start,
                end,
                repeat,
            )
        finally:
            sim.close()
        # B: no limits, no latency: throughput, CPU and memory, at two sizes.
        for label, rows in (("100k", 100_000), ("1M", 20_000 if quick else 1_000_000)):
            day_end = format_instant(parse_instant(start) + timedelta(days=1))
            sim = Simulator(f"direct_routing={rows}", start, day_end)
            try:
                env = collector_env(
                    sim,
                    azurite,
                    f"bench-b-{label.lower()}",
                    "direct_routing",
                    start,
                    {
                        "GRAPH_REQUESTS_PER_MINUTE_PER_LOG": "100000",
                        "GRAPH_REQUESTS_PER_MINUTE": "100000",
                    },
                )
                for tool in tools if label == "100k" else ("collector", "plain"):
                    r = measure(
                        tool,
                        env,
                        sources="direct_routing",
                        start=start,
                        end=day_end,
                        as_of=day_end,
                        period=60.0,
                        margin=1.0,
                    )
                    results.setdefault(f"B{label}", {})[tool] = r
                    print(
                        f"B. {label:>4} rows, {tool:<11}: {r.rows} rows in {r.wall:.1f} s = "
                        f"{r.rows / r.wall:,.0f} rows/s, CPU {r.cpu:.1f} s "
                        f"({r.cpu / r.rows * 1e6:.1f} s per 1M rows), peak RSS {r.rss_mb:.0f} MB",
                        flush=True,
                    )
            finally:
                sim.close()
    finally:
        azurite.stop()
    print_table(results, tools)


def limited_runs(
    sim: Simulator,
    azurite: Azurite,
    container: str,
    tool: str,
    extra: dict[str, str],
    sources: str,
    start: str,
    end: str,
    repeat: int,
) -> Result:
    """Run ``tool`` against the throttling simulator (the collector ``repeat`` times, each
    into a new container: a first run every time); return the run of median wall time
    (the lower of the middle two for an even ``repeat``)."""
    runs = []
    for number in range(1, (repeat if tool == "collector" else 1) + 1):
        env = collector_env(sim, azurite, f"{container}-{number}", sources, start, extra)
        runs.append(limited_run(sim, tool, env, sources, start, end))
    runs.sort(key=lambda r: r.wall)
    median = runs[(len(runs) - 1) // 2]
    if len(runs) > 1:
        print(
            f"   {tool:<11}: median of {len(runs)} runs: wall {median.wall:.1f} s, "
            f"wall/floor {median.wall / median.floor:.2f}, 429s {median.throttled}",
            flush=True,
        )
    return median


def limited_run(
    sim: Simulator,
    tool: str,
    env: dict[str, str],
    sources: str,
    start: str,
    end: str,
) -> Result:
    """Run ``tool`` against the throttling simulator; print its figures and the floor."""
    # Graph counts requests over the last minute: a run starting right after another would
    # inherit that one's last minute of requests (and its 429s). Start on a quiet minute.
    time.sleep(PERIOD)
    before = sim.stats("reset-span")
    result = measure(
        tool,
        env,
        sources=sources,
        start=start,
        end=end,
        as_of=end,
        period=PERIOD,
        margin=1.0 * SCALE,  # the collector's default margin (1 s a minute), scaled
    )
    after = sim.stats()
    per_log = {
        s: after.get(f"requests:{s}", 0) - before.get(f"requests:{s}", 0)
        for s in sources.split(",")
    }
    throttled = after.get("throttled", 0) - before.get("throttled", 0)
    result.requests, result.throttled = sum(per_log.values()), throttled
    floor = result.floor = floor_seconds(per_log, PERIOD, LATENCY)
    # From the first request's arrival to the last answer: the part the limits govern
    # (process start-up and the final blob commits are outside it).
    span = (after["last_answer_ms"] - after["first_request_ms"]) / 1000
    result.note = f"{span:.1f}"
    print(
        f"   {tool:<11}: {result.rows} rows, {result.requests} requests, {throttled} 429s, "
        f"wall {result.wall:.1f} s, requests span {span:.1f} s, floor {floor:.1f} s, "
        f"wall/floor {result.wall / floor:.2f}, span/floor {span / floor:.2f}",
        flush=True,
    )
    return result


def print_table(results: dict[str, dict[str, Result]], tools: list[str]) -> None:
    """One table, each tool as a ratio to the collector (time, CPU, memory: lower is better)."""

    def ratio(value: float, base: float) -> str:
        return f"x{value / base:.2f}"

    print(
        "\n| tool | A2: wall, Graph's limits + latency | A2: 429s | B: rows/s (100k) "
        "| B: CPU s per 1M rows (100k) | B: peak RSS 100k | B: peak RSS 1M |"
    )
    print("|---|---|---|---|---|---|---|")
    a0, b0, m0 = (results[k]["collector"] for k in ("A2", "B100k", "B1M"))
    for tool in [*tools, NARROW_LABEL]:
        a, b, m = results["A2"][tool], results["B100k"].get(tool), results["B1M"].get(tool)
        cells = [f"{a.wall:.1f} s ({ratio(a.wall, a0.wall)})", str(a.throttled)]
        cells += (
            ["–"] * 3
            if b is None
            else [
                f"{b.rows / b.wall:,.0f} ({ratio(b.rows / b.wall, b0.rows / b0.wall)})",
                f"{b.cpu / b.rows * 1e6:.1f} ({ratio(b.cpu / b.rows, b0.cpu / b0.rows)})",
                f"{b.rss_mb:.0f} MB ({ratio(b.rss_mb, b0.rss_mb)})",
            ]
        )
        cells.append("–" if m is None else f"{m.rss_mb:.0f} MB ({ratio(m.rss_mb, m0.rss_mb)})")
        print(f"| {tool} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    main()
