"""Multi-tenant fan-out, measured (figures, not a test): one cycle over 1, 10 and 100
simulated tenants with 1, 2 and 4 worker processes.

Everything is the local stack: Azurite (blob and queue), the Graph simulator serving every
tenant with its own rows and its own throttling counters (Graph's per-log and per-app limits
per tenant), the local Entra token endpoint over HTTPS, and ``devstack.queue_host`` workers
doing what the Functions host does for ``collect_tenant``. The timer queues the tenants;
the workers drain the queue.

Printed per configuration: wall time of the cycle (queueing to the last invocation's end),
the slowest tenant's floor (its busiest log's pages one after another at the page latency:
no run can be faster), requests and 429s per tenant, and each worker's peak RSS.

    .venv/bin/python benchmarks/tenants.py [--tenants 1,10,100] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.storage.queue import QueueServiceClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector.core.settings import load_settings  # noqa: E402
from collector.tenants.fanout import POISON, QUEUE, enqueue_tenants  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402
from devstack.stack import GraphStack  # noqa: E402
from devstack.synthetic import Tenant  # noqa: E402

APP = "5b7c1c2e-8a4d-4c1e-9f3a-2d6e8b0a1c01"
IDENTITY = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
ROWS_PER_DAY = {"sms": 300, "direct_routing": 5_000, "pstn": 2_000}
"""A day of a mid-sized tenant: 1, 5 and 2 pages a day."""
LATENCY = 0.15
"""Seconds a page takes (Graph's 1.5 s, scaled by 0.1 as in benchmarks/bench.py)."""
PER_LOG, PER_APP = 50, 200
"""Graph's limits per minute, per tenant (the simulator counts them per tenant)."""


def tenant_id(index: int) -> str:
    return f"{index:08x}-0000-4000-8000-{index:012x}"


def floor_seconds(rows_per_day: dict[str, int], days: float) -> float:
    """The least time one tenant can take: its busiest window's pages, one after another
    (a log's day windows are read side by side, each page after the one before)."""
    day = min(days, 1.0)  # the largest window: a whole day, once there is one
    return max(math.ceil(rows * day / 1000) or 1 for rows in rows_per_day.values()) * LATENCY


def run_config(
    graph: GraphStack, queues: Azurite, tenants: list[str], workers: int, env: dict[str, str]
) -> dict[str, float]:
    """One cycle over ``tenants`` with ``workers`` processes, into a fresh Azurite (a
    hundred tenants' day is about 1 GB in its memory); return its figures."""
    blobs = Azurite(memory_mb=2048)
    blobs.start()
    try:
        return _run_config(graph, blobs, queues, tenants, workers, env)
    finally:
        blobs.stop()


def _run_config(
    graph: GraphStack,
    blobs: Azurite,
    queues: Azurite,
    tenants: list[str],
    workers: int,
    env: dict[str, str],
) -> dict[str, float]:
    env = {
        **env,
        "COLLECTOR_TENANTS": ",".join(tenants),
        "COLLECTOR_STORAGE": blobs.connection_string,
    }
    queue_service = QueueServiceClient.from_connection_string(queues.connection_string)
    for name in (QUEUE, POISON):
        if any(q.name == name for q in queue_service.list_queues()):
            queue_service.delete_queue(name)
    graph.simulator.throttle(PER_LOG, PER_APP)  # each configuration meets a fresh minute
    before = dict(graph.simulator.stats)
    began = time.time()
    asyncio.run(enqueue_tenants(load_settings(env)))
    # Their logs go to files: a pipe read only after another worker ends would fill up and
    # stall the worker writing to it.
    ends, peaks, invocations, failures = [], [], 0, 0
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(tempfile.TemporaryFile("w+")) for _ in range(workers)]
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "devstack.queue_host", "--idle-exit", "3"],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            for log in logs
        ]
        for process, log in zip(processes, logs, strict=True):
            out, _ = process.communicate(timeout=3600)
            fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            invocations += int(fields["invocations"])
            failures += int(fields["failures"])
            if int(fields["failures"]):
                log.seek(0)
                print(log.read()[-3000:], file=sys.stderr)
            ends.append(float(fields["last_end"]))
            peaks.append(float(fields["peak_rss_mb"]))
    after = graph.simulator.stats
    requests = [after[f"requests@{t}"] - before.get(f"requests@{t}", 0) for t in tenants]
    throttled = [after[f"throttled@{t}"] - before.get(f"throttled@{t}", 0) for t in tenants]
    return {
        "wall": max(ends) - began,
        "invocations": invocations,
        "failures": failures,
        "requests_min": min(requests),
        "requests_max": max(requests),
        "throttled": sum(throttled),
        "rss_max": max(peaks),
        "rss_min": min(peaks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", default="1,10,100")
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    counts = [int(n) for n in args.tenants.split(",")]
    worker_counts = [int(n) for n in args.workers.split(",")]
    now = datetime.now(UTC)
    start = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    days = (now - timedelta(hours=1) - start) / timedelta(days=1)
    every = [tenant_id(i + 1) for i in range(max(counts))]
    queues = Azurite(service="queue")
    queues.start()
    graph = GraphStack()
    try:
        graph.add_directory(
            APP,
            IDENTITY,
            {t: Tenant(seed=i + 100, rows_per_day=ROWS_PER_DAY) for i, t in enumerate(every)},
            every,
        )
        graph.simulator.latency = LATENCY
        graph.simulator.throttle(PER_LOG, PER_APP)
        env = {
            **graph.env(),
            "AzureWebJobsStorage": queues.connection_string,
            "COLLECTOR_APP_CLIENT_ID": APP,
            "AZURE_CLIENT_ID": IDENTITY,
            "COLLECTOR_SOURCES": ",".join(ROWS_PER_DAY),
            "COLLECTOR_START": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        floor = floor_seconds(ROWS_PER_DAY, days)
        print(
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}"
        )
        print(
            f"each tenant: {days:.2f} days of {ROWS_PER_DAY} rows a day, page latency "
            f"{LATENCY} s, Graph limits {PER_LOG}/min per log and {PER_APP}/min per app, per "
            f"tenant; slowest tenant's floor {floor:.2f} s"
        )
        print(
            f"{'tenants':>7} {'workers':>7} {'wall s':>8} {'wall/floor':>10} "
            f"{'tenants/s':>9} {'req/tenant':>10} {'429s':>5} {'peak RSS/worker MB':>19}"
        )
        for count in counts:
            for workers in worker_counts:
                figures = run_config(graph, queues, every[:count], workers, env)
                assert figures["invocations"] == count and not figures["failures"], figures
                print(
                    f"{count:>7} {workers:>7} {figures['wall']:>8.1f} "
                    f"{figures['wall'] / floor:>10.1f} {count / figures['wall']:>9.2f} "
                    f"{figures['requests_min']:>4}-{figures['requests_max']:<5} "
                    f"{figures['throttled']:>5} "
                    f"{figures['rss_min']:>8.0f}-{figures['rss_max']:<8.0f}",
                    flush=True,
                )
    finally:
        graph.stop()
        queues.stop()


if __name__ == "__main__":
    main()
