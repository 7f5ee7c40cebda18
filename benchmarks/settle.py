"""The settle figure: what settling one busy day costs in storage writes and memory.

One source (direct routing) with ``--rows`` rows on 2026-10-20. Run 1 reads the day
provisionally; ``--late`` rows are then added to the day (Graph ingesting late); run 2 does
nothing but settle the day. Printed: run 2's bytes sent to storage, its wall time and the
collector process's peak RSS (from the OS). ``--tree DIR`` runs the collector of another
checkout (e.g. ``git worktree add /tmp/old <commit>``) on the same stack, for a before/after
comparison; ``--mutable`` lets storage overwrite and delete data blobs (older code needs it).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from devstack.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from devstack.proxy import ImmutableArchiveProxy
from devstack.stack import GraphStack
from devstack.synthetic import Tenant

ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-10-20"


PEAK_RSS = (
    "import atexit, runpy, sys\n"
    "def peak():\n"
    "    status = open('/proc/self/status').read()\n"
    "    print('VmHWM', status.split('VmHWM:')[1].split()[0], file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "sys.argv[0] = 'collector'\n"
    "runpy.run_module('collector', run_name='__main__')\n"
)
"""Runs the collector and prints its peak RSS at exit. (The OS's ``ru_maxrss`` of a child
also counts the parent's pages at fork, and this parent holds the simulated tenant.)"""


def run(tree: Path, env: dict[str, str], as_of: str) -> tuple[float, float]:
    """Run the collector of ``tree`` once; return its wall seconds and peak RSS in MB."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "run", "--as-of", as_of],
        cwd=tree,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"the collector failed ({done.returncode}): {done.stdout}{done.stderr}")
    print("   ", done.stdout.strip())
    peak_kb = int(done.stderr.rsplit("VmHWM", 1)[1].split()[0])
    return wall, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--late", type=int, default=1_000)
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--mutable", action="store_true")
    args = parser.parse_args()
    azurite = Azurite(memory_mb=8192)
    azurite.start()
    stack = GraphStack(Tenant(seed=11, rows_per_day={"direct_routing": args.rows}))
    try:
        proxy = ImmutableArchiveProxy(
            f"http://127.0.0.1:{azurite.port}",
            azurite.connection_string,
            immutable=not args.mutable,
        )
        port = stack.serve(proxy.app())
        env = {
            **stack.env(),
            "COLLECTOR_STORAGE": (
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
            ),
            "COLLECTOR_CONTAINER": "settle",
            "COLLECTOR_SOURCES": "direct_routing",
            "COLLECTOR_START": f"{DAY}T00:00:00Z",
            "COLLECTOR_LAG_MINUTES": "0",
            "COLLECTOR_LATENESS_HOURS": "1",
            "COLLECTOR_TIME_BUDGET_SECONDS": "3600",
            # No request limits: the figure is storage and memory, not Graph's budget.
            "GRAPH_REQUESTS_PER_MINUTE_PER_LOG": "100000",
            "GRAPH_REQUESTS_PER_MINUTE": "100000",
        }
        print(f"settle benchmark: {args.rows:,} rows on {DAY}, {args.late:,} late; {args.tree}")
        wall, rss = run(args.tree, env, "2026-10-21T00:00:00Z")
        provisional = proxy.bytes_written
        print(
            f"run 1 (provisional): {provisional / 1e6:.1f} MB written, {wall:.1f} s, RSS {rss:.0f} MB"
        )
        rng = random.Random(5)
        for _ in range(args.late):
            second = rng.randrange(86_400)
            stack.tenant.add_row(
                "direct_routing",
                f"{DAY}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.5Z",
            )
        proxy.bytes_written = 0
        env["COLLECTOR_LAG_MINUTES"] = "60"
        wall, rss = run(args.tree, env, "2026-10-21T01:00:00Z")
        print(
            f"run 2 (settle only): {proxy.bytes_written / 1e6:.2f} MB written to storage, "
            f"{wall:.1f} s wall, peak RSS {rss:.0f} MB"
        )
    finally:
        stack.stop()
        azurite.stop()


if __name__ == "__main__":
    main()
