"""Command line: ``python -m collector run [--as-of ISO8601]`` and ``python -m collector
status [--json] [--days N] [--as-of ISO8601] [--max-lag-minutes M]``, ``python -m collector
verify [--from DATE] [--to DATE] [--as-of ISO8601]`` and ``python -m collector consent-url
TENANT``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from azure.core.exceptions import AzureError

from .core.auth import authority_url, consent_url
from .core.errors import CollectorError, ConfigError, InstantParseError
from .core.settings import Settings, is_tenant_id, load_app_client_id, load_settings
from .core.timefmt import format_instant, parse_instant
from .observe.health import LEGEND
from .observe.progress import LogView, TerminalView, View
from .observe.reports import RunReport
from .observe.status import collect_health
from .observe.telemetry import quiet_sdk_logs, run_metrics, send
from .observe.verify import verify
from .run.runner import run_cycle

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
    _add_as_of(run, "treat this instant as 'now' (replays, tests); default: the clock")
    status = commands.add_parser(
        "status",
        help="say how every source stands, from storage only (exit 1 when one is not fresh)",
    )
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument(
        "--days", type=_days, default=30, metavar="N", help="days of coverage to show (1-366; 30)"
    )
    _add_as_of(status, "judge freshness as of this instant; default: the clock")
    status.add_argument(
        "--max-lag-minutes",
        type=_minutes,
        metavar="M",
        help=(
            "a watermark further behind is stale (default: COLLECTOR_LAG_MINUTES + 180); "
            "a daily report's, max(lag, lateness) + 1 day more, less the lag"
        ),
    )
    check = commands.add_parser(
        "verify",
        help="check every settled day against its manifest, from storage only (exit 1 on a mismatch)",
    )
    check.add_argument(
        "--from", dest="first", type=_date, metavar="DATE", help="first day (YYYY-MM-DD)"
    )
    check.add_argument(
        "--to", dest="last", type=_date, metavar="DATE", help="last day (YYYY-MM-DD)"
    )
    _add_as_of(
        check,
        "judge which days the retention rule (ARCHIVE_DELETE_AFTER_DAYS) may have deleted "
        "as of this instant; default: the clock",
    )
    consent = commands.add_parser(
        "consent-url",
        help="print the admin-consent link a customer tenant's administrator opens (multi-tenant)",
    )
    consent.add_argument("tenant", type=_tenant, help="the customer's tenant id (a GUID)")
    return parser


def _tenant(text: str) -> str:
    if not is_tenant_id(text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a tenant id (a GUID)")
    return text.strip().lower()


def _add_as_of(command: argparse.ArgumentParser, help_text: str) -> None:
    command.add_argument("--as-of", type=_as_of, metavar="ISO8601", help=help_text)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-20") from None


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    now = args.as_of or datetime.now(UTC)
    try:
        summary = asyncio.run(
            verify(settings, args.first, args.last, lambda c: print(c.line(), flush=True), now)
        )
    except AzureError as exc:
        print(f"collector: verify could not read storage: {exc}", file=sys.stderr)
        return EXIT_SOURCE_FAILED
    print(summary.line())
    # Expired days are as the retention rule left them: only a mismatch fails.
    return EXIT_OK if summary.sound else EXIT_SOURCE_FAILED


def _days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 366:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days from 1 to 366")
    return int(text)


def _minutes(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of minutes")
    return int(text)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    now = args.as_of or datetime.now(UTC)
    max_lag = None if args.max_lag_minutes is None else timedelta(minutes=args.max_lag_minutes)
    try:
        health = asyncio.run(collect_health(settings, now, args.days, max_lag))
    except AzureError as exc:
        print(f"collector: status could not read storage: {exc}", file=sys.stderr)
        return EXIT_SOURCE_FAILED
    if args.json:
        print(
            json.dumps(
                {"asOf": format_instant(now), "sources": [h.to_json() for h in health]}, indent=1
            )
        )
    else:
        print(f"as of {format_instant(now)} ({LEGEND}):")
        for source in health:
            print("\n".join(source.lines()))
    return EXIT_OK if all(h.fresh for h in health) else EXIT_SOURCE_FAILED


async def _run(settings: Settings, as_of: datetime | None, environ: Mapping[str, str]) -> RunReport:
    """One cycle, its progress drawn live in a terminal (logged otherwise), its metrics sent
    where ``APPLICATIONINSIGHTS_CONNECTION_STRING`` says (nowhere when unset)."""
    metrics, provider = run_metrics(environ, settings.identity_client_id)
    view: View = LogView()
    root = logging.getLogger()
    handlers = root.handlers[:]
    if sys.stderr.isatty():
        terminal = TerminalView(sys.stderr)
        root.handlers[:] = [terminal.logging_handler()]
        view = terminal
    try:
        return await run_cycle(settings, as_of, metrics=metrics, progress=view)
    finally:
        root.handlers[:] = handlers
        await send(provider)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    as_of = getattr(args, "as_of", None)
    if as_of is not None and as_of > datetime.now(UTC):
        # Reading ahead of the clock would advance watermarks past rows that do not exist yet.
        parser.error(f"--as-of {format_instant(as_of)} is in the future")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet_sdk_logs()
    env = os.environ if environ is None else environ
    try:
        if args.command == "consent-url":
            print(consent_url(args.tenant, load_app_client_id(env), authority_url(env)))
            return EXIT_OK
        settings = load_settings(env)
    except ConfigError as exc:
        print(f"collector: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "status":
        return _status(args, settings)
    if args.command == "verify":
        return _verify(args, settings)
    try:
        report = asyncio.run(_run(settings, args.as_of, env))
    except ConfigError as exc:  # refused before any I/O
        print(f"collector: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (CollectorError, AzureError) as exc:
        print(f"collector: run failed: {exc}", file=sys.stderr)
        return EXIT_SOURCE_FAILED
    for source in report.sources:
        print(source.summary())
    return EXIT_OK if report.ok else EXIT_SOURCE_FAILED
