"""The demo: collect a simulated tenant's last days of every log on the local stack, with
the real command line, show what landed in Azurite, and end with ``status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from azure.storage.blob import BlobServiceClient

from collector.archive.layout import is_part_rows_blob
from collector.core.settings import Settings, load_settings
from collector.core.slices import slice_horizon
from collector.core.sources import SOURCES, Source
from collector.core.timefmt import format_instant
from collector.core.windows import plan_windows, run_bounds

from .stack import LocalStack

CONTAINER = "callrecords"


def run_demo(days: int = 3) -> int:
    """Run the demo; return the collector's exit code."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = (now - timedelta(days=days)).replace(hour=0, minute=0)
    with LocalStack() as stack:
        env = stack.env(
            {
                "COLLECTOR_SOURCES": ",".join(SOURCES),
                "COLLECTOR_CONTAINER": CONTAINER,
                "COLLECTOR_START": format_instant(start),
            }
        )
        print(
            f"Local stack: Graph simulator {env['GRAPH_ENDPOINT']}, "
            f"identity endpoint {env['IDENTITY_ENDPOINT']}, Azurite {stack.azurite.port}"
        )
        print(
            f"Collecting {format_instant(start)} .. now - 60 min with: python -m collector run"
            "\n(the dial-out report: only whole days past the 48 h lateness; call records: "
            "hours past it)\n",
            flush=True,
        )
        command = [sys.executable, "-m", "collector", "run", "--as-of", format_instant(now)]
        code = subprocess.call(command, env={**os.environ, **env})
        print("\nA second run right after finds nothing new:", flush=True)
        subprocess.call(command, env={**os.environ, **env})
        archived = _show(stack.azurite.connection_string)
        assert stack.graph is not None
        settings = load_settings(env)
        expected = {
            s.name: sum(
                _rows_served(stack, s, span, now) for span in _read(settings, s, start, now)
            )
            for s in settings.sources
        }
        expected = {name: rows for name, rows in expected.items() if rows}  # folders
        verdict = (
            "every row exactly once" if expected == archived else f"MISMATCH, expected {expected}"
        )
        print(f"Checked against the simulator's rows for the range: {verdict}")
        print("\nWhat an operator sees: python -m collector status --days 7\n", flush=True)
        healthy = subprocess.call(
            [
                sys.executable,
                "-m",
                "collector",
                "status",
                "--days",
                "7",
                "--as-of",
                format_instant(now),
            ],
            env={**os.environ, **env},
        )
    if expected != archived:
        return 1
    return code or healthy


def _read(
    settings: Settings, source: Source, start: datetime, now: datetime
) -> list[tuple[datetime, datetime]]:
    """The ranges of ``source`` a first run as of ``now`` reads: to ``now - lag``, or, for a
    source read once, its whole days past the lateness (call records: hours)."""
    bounds = run_bounds(now, settings.lag, settings.lateness, start, source.read_once)
    if source.expand is not None:  # call records: every hour past the lateness
        return [(bounds.start, slice_horizon(now, settings.lag, settings.lateness))]
    if not source.read_once:
        return [(start, bounds.end)]
    return [(w.start, w.end) for w in plan_windows(bounds.start, bounds.end)]


def _rows_served(
    stack: LocalStack, source: Source, span: tuple[datetime, datetime], now: datetime
) -> int:
    """How many rows the simulator serves of ``source`` for ``span`` as of ``now``."""
    assert stack.graph is not None
    if source.expand is not None:  # call records: the records Graph keeps of those days
        return len(stack.graph.simulator.call_records.expected(None, *span, as_of=now))
    return len(stack.graph.tenant.rows_between(source.name, *span))


def _show(connection_string: str) -> dict[str, int]:
    """Print every blob with its row count; return the rows per source."""
    container = BlobServiceClient.from_connection_string(connection_string).get_container_client(
        CONTAINER
    )
    per_source: dict[str, int] = defaultdict(int)
    print(f"\nBlobs in container '{CONTAINER}':")
    for blob in container.list_blobs(include=["metadata"]):
        data = container.download_blob(blob.name).readall()
        if blob.name.endswith(".run.json"):
            run = json.loads(data)
            print(f"  {blob.name:<88} last run {run['outcome']}: {run['rows']} rows")
            continue
        if blob.name.startswith("_state/"):
            state = json.loads(data)
            print(f"  {blob.name:<88} watermark {state['watermark']}, settled {state['settled']}")
            continue
        if blob.name.startswith("_manifests/"):
            manifest = json.loads(data)
            print(f"  {blob.name:<88} {manifest['status']}: {manifest['rows']:>6} rows")
            continue
        rows = data.count(b"\n")
        if not is_part_rows_blob(blob.name):  # a large record's sessions, participants: its own
            per_source[blob.name.split("/")[0]] += rows
        print(f"  {blob.name:<88} {rows:>6} rows {len(data) / 1e6:6.2f} MB")
    print("\nRows archived: " + ", ".join(f"{s} {n}" for s, n in sorted(per_source.items())))
    return dict(per_source)
