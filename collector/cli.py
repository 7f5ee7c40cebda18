"""Command line: ``python -m collector run [--as-of ISO8601]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from azure.core.exceptions import AzureError

from .errors import CollectorError, ConfigError, InstantParseError
from .runner import run_cycle
from .settings import load_settings
from .timefmt import format_instant, parse_instant

EXIT_OK = 0
EXIT_SOURCE_FAILED = 1
EXIT_CONFIG = 2


def _as_of(text: str) -> datetime:
    try:
        return parse_instant(text)
    except InstantParseError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; e.g. 2026-11-23T12:00:00Z") from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the collector's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m collector",
        description="Archive Microsoft Graph Teams call logs into Azure Blob Storage.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="run one collection cycle (the same as one timer invocation)"
    )
    run.add_argument(
        "--as-of",
        type=_as_of,
        metavar="ISO8601",
        help="treat this instant as 'now' (replays, tests); default: the clock",
    )
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.as_of is not None and args.as_of > datetime.now(UTC):
        # Reading ahead of the clock would advance watermarks past rows that do not exist yet.
        parser.error(f"--as-of {format_instant(args.as_of)} is in the future")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        settings = load_settings(os.environ if environ is None else environ)
    except ConfigError as exc:
        print(f"collector: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        report = asyncio.run(run_cycle(settings, args.as_of))
    except ConfigError as exc:  # refused before any I/O
        print(f"collector: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (CollectorError, AzureError) as exc:
        print(f"collector: run failed: {exc}", file=sys.stderr)
        return EXIT_SOURCE_FAILED
    for source in report.sources:
        print(source.summary())
    return EXIT_OK if report.ok else EXIT_SOURCE_FAILED
