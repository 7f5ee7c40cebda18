"""``python -m devstack up`` starts the local stack, ``demo`` runs the demo, ``graph`` serves
the Graph simulator and identity endpoint alone (benchmarks)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta

from collector.core.timefmt import parse_instant

from .demo import run_demo
from .stack import GraphStack, LocalStack
from .synthetic import Tenant


def up() -> int:
    """Start the stack, print the settings that point at it, and wait for Ctrl-C."""
    with LocalStack() as stack:
        print("Local stack is up (Ctrl-C stops it). In another shell:\n")
        for name, value in stack.env().items():
            print(f"export {name}='{value}'")
        print("export COLLECTOR_SOURCES='sms,direct_routing,pstn'")
        print("\nthen: .venv/bin/python -m collector run", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopping")
    return 0


def graph(args: argparse.Namespace) -> int:
    """Serve only the Graph simulator and identity endpoint (for benchmarks, in a process of
    their own): print their settings as one JSON line, serve until stdin closes."""
    rows = {k: int(v) for k, v in (p.split("=") for p in args.rows_per_day.split(","))}
    stack = GraphStack(Tenant(seed=args.seed, rows_per_day=rows))
    stack.simulator.latency = args.latency
    if args.throttle:
        per_log, per_app, period = args.throttle.split(",")
        stack.simulator.throttle(int(per_log), int(per_app), float(period))
    start, end = (parse_instant(t) for t in args.warm.split("/")) if args.warm else (None, None)
    if start is not None and end is not None:
        for source in rows:  # generate the rows now, not while a benchmark is timing
            # (a day past the end too: PSTN's inclusive toDateTime reaches into it)
            stack.tenant.rows_between(source, start, end + timedelta(days=1))
    print(json.dumps(stack.env()), flush=True)
    sys.stdin.read()
    stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch the devstack commands."""
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument("command", choices=("up", "demo", "graph"))
    parser.add_argument("--days", type=int, default=3, help="demo: days of history to collect")
    parser.add_argument("--rows-per-day", default="sms=400,direct_routing=2500,pstn=1500")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0, help="graph: seconds per page")
    parser.add_argument("--throttle", default="", help="graph: PER_LOG,PER_APP,PERIOD_SECONDS")
    parser.add_argument("--warm", default="", help="graph: FROM/TO to generate up front")
    args = parser.parse_args(argv)
    if args.command == "graph":
        return graph(args)
    return up() if args.command == "up" else run_demo(args.days)


if __name__ == "__main__":
    sys.exit(main())
