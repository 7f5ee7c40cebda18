"""``python -m devstack up`` starts the local stack; ``python -m devstack demo`` runs the demo."""

from __future__ import annotations

import argparse
import sys
import time

from .demo import run_demo
from .stack import LocalStack


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


def main(argv: list[str] | None = None) -> int:
    """Dispatch the devstack commands."""
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument("command", choices=("up", "demo"))
    parser.add_argument("--days", type=int, default=3, help="demo: days of history to collect")
    args = parser.parse_args(argv)
    return up() if args.command == "up" else run_demo(args.days)


if __name__ == "__main__":
    sys.exit(main())
