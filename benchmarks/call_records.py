"""Benchmark: full call records at Graph's call-record limits (scaled in time).

    .venv/bin/python benchmarks/call_records.py [--records 1000,20000] [--scale 0.1]

One day of ``--records`` calls and meetings with 1-50 sessions each (and one huge meeting a
day) is collected by one collector run, in a process of its own, from the Graph simulator in
another. Graph's call-record limits (1,500 requests per 20 s per app; per record 10 per 20 s
for its first page, 50 per 5 minutes for later ones) and a request's latency are scaled by
``--scale`` (above 0, at most 1), and so is the collector's budget
(``GRAPH_CALL_RECORDS_PERIOD_SCALE``). Printed per size: records a second, requests by kind,
the floor those limits set for the requests made (the 1,500 per 20 s span, plus one
latency), wall / floor, 429s, and the collector's peak RSS. Figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import Simulator, collector_env, measure  # noqa: E402

from collector.graph.budget import CALL_RECORDS_PER_APP  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402

DAY, AS_OF = "2026-10-20T00:00:00Z", "2026-10-23T12:30:00Z"
"""The day read, and a run that finds it past the 48 h lateness (and only it)."""
LATENCY = 0.5
"""Seconds Graph takes to answer one call-record request (before scaling)."""


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


def floor_seconds(requests: int, scale: float, latency: float) -> float:
    """The least time the per-app limit allows for ``requests``: every full 1,500 waits a
    span of 20 s (scaled); the last one still takes a latency."""
    span = CALL_RECORDS_PER_APP.seconds * scale
    return ((requests - 1) // CALL_RECORDS_PER_APP.count) * span + latency


def scenario(azurite: Azurite, records: int, scale: float, number: int) -> dict[str, Any]:
    """Collect one day of ``records`` records; return what was measured."""
    sim = Simulator("sms=0", DAY, DAY, 0.0)
    try:
        endpoint = sim.env["GRAPH_ENDPOINT"]
        latency = LATENCY * scale
        control(endpoint, "config", {"records_per_day": records, "sessions": [1, 50],
                                     "huge_per_day": 1, "latency": latency})  # fmt: skip
        control(endpoint, "now", {"now": AS_OF})
        control(endpoint, "throttle", {"scale": scale})
        # The collector's call-record budget scaled as the simulator's limits are (its
        # margin too); the call logs' minute, unused here, stays Graph's.
        env = collector_env(
            sim, azurite, f"records{number:02d}", "call_records", DAY,
            {"COLLECTOR_LAG_MINUTES": "60", "COLLECTOR_LATENESS_HOURS": "48",
             "GRAPH_CALL_RECORDS_PERIOD_SCALE": repr(scale)},
        )  # fmt: skip
        result = measure(
            "collector", env, sources="call_records", start=DAY, end=AS_OF, as_of=AS_OF,
            period=60.0, margin=1.0,
        )  # fmt: skip
        stats = control(endpoint, "stats")
    finally:
        sim.process.stdin.close()  # type: ignore[union-attr]
        sim.process.wait(timeout=60)
    requests = int(stats.get("requests", 0))
    floor = floor_seconds(requests, scale, latency)
    return {
        "records": records,
        "archived": result.rows,
        "wall": result.wall,
        "records_per_s": result.rows / result.wall,
        "requests": requests,
        "by_kind": {k.split(":")[1]: v for k, v in stats.items() if k.startswith("requests:")},
        "bytes": int(stats.get("bytes_served", 0)),
        "throttled": int(stats.get("throttled", 0)),
        "floor": floor,
        "ratio": result.wall / floor,
        "rss_mb": result.rss_mb,
        "cpu": result.cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", default="1000,20000", help="records a day, comma-separated")
    parser.add_argument("--scale", type=float, default=0.1, help="Graph's time, scaled")
    args = parser.parse_args()
    started = datetime.now(UTC)
    print(
        f"# Call-records benchmark {started:%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; Graph's time x{args.scale}"
        f" (20 s -> {20 * args.scale:g} s, latency {LATENCY * args.scale:g} s)",
        flush=True,
    )
    azurite = Azurite(memory_mb=8192)
    azurite.start()
    try:
        for number, records in enumerate(int(n) for n in args.records.split(",")):
            m = scenario(azurite, records, args.scale, number)
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(m["by_kind"].items()))
            print(
                f"\n{m['records']:,} records a day (1-50 sessions each): archived "
                f"{m['archived']:,} in {m['wall']:.1f} s = {m['records_per_s']:,.0f} records/s"
                f"\n  requests {m['requests']:,} ({kinds}), {m['bytes'] / 1e6:,.0f} MB served,"
                f" 429s {m['throttled']}"
                f"\n  floor {m['floor']:.1f} s (the 1,500-per-20 s limit for those requests),"
                f" wall/floor {m['ratio']:.2f}"
                f"\n  collector: peak RSS {m['rss_mb']:.0f} MB, CPU {m['cpu']:.1f} s",
                flush=True,
            )
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
