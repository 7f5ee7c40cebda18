"""What the collector costs in Azure, measured: a simulated week of hourly runs per tenant size,
and a day of 100 tenants in multi-tenant mode, against the local stack, counting what Azure
bills (figures, not a test; docs/cost.md turns them into a monthly bill).

    .venv/bin/python benchmarks/cost.py [--quick] [--only small,large,...] [--out FILE]

Every scenario runs on its own stack: the Graph simulator (Graph answering at once; Graph's
page latency is added to the run time afterwards, see ``modelled_seconds``), the managed-
identity endpoint, and Azurite behind ``devstack.meter.MeteringProxy``, which counts every
storage request by the operation Azure bills (and the host's queue, in multi-tenant mode).
The Function runs in a worker process of its own, as the Python worker of Azure Functions
does: each invocation is the app's own ``collect_call_logs`` (or ``collect_tenant``) from
``function_app.py``, with ``run_cycle``'s "now" set to the simulated hour (the one change:
``--as-of`` for the Function), its metrics exported by the real exporter to a loopback
Application Insights endpoint, its log records counted as the host would forward them.

Steady state: ``COLLECTOR_START`` is three days before the measured week and the collector
runs hourly through those days first (not counted), so counting starts caught up, with one
day settling per source each day (lateness 48 h), and every settled day written hour by hour,
as in a deployment that has been running for a while. A share of each hour's rows
(``LATE_SHARE``) reaches Graph an hour late, so settle passes write late rows as they do in
production. Runs are back to back: a simulated week takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gzip
import json
import logging
import math
import os
import platform
import random
import shlex
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector.observe.metrics import NAMES  # noqa: E402

# --- what is simulated ------------------------------------------------------------------

WEEK_START = datetime(2026, 11, 23, tzinfo=UTC)
"""Monday of the measured week (in the past: the collector refuses to read the future)."""
RUN_MINUTE = 5
"""The timer fires at minute 5 of every hour (``COLLECTOR_SCHEDULE`` ``0 5 * * * *``)."""
SETTLE_AFTER_DAYS = 3
"""A day settles 3 days after it began (the 48 h lateness, the 60 min lag, the day itself):
the run at 01:05 on day D settles day D-3. The warm-up starts that long before the week."""
LATE_SHARE = 0.01
"""Share of each hour's rows Graph returns only later (an assumption: Graph ingests late;
the settle pass writes them). They are stamped in the hour the run before read."""
GRAPH_PAGE_SECONDS = 1.5
"""Graph's time to answer one 1,000-row page (benchmarks/bench.py's figure, unscaled)."""
INSTANCE_MB = 2048
"""The Flex Consumption instance memory size (``instanceMemoryMB``, infra/modules/function.bicep)."""
MIN_BILLED_SECONDS, BILLING_STEP = 1.0, 0.1
"""Flex Consumption bills at least 1,000 ms per execution period, then in 100 ms steps."""
QUEUE_BATCH = 2
"""Messages the Functions host takes per queue read (``batchSize`` in host.json)."""

APP = "5b7c1c2e-8a4d-4c1e-9f3a-2d6e8b0a1c01"
IDENTITY = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


@dataclass(frozen=True)
class Scenario:
    """One tenant size (or many tenants) and how long it is simulated."""

    name: str
    rows_per_day: dict[str, int]
    """Rows a day per source, per tenant."""
    hours: int = 7 * 24
    """Hours simulated and measured (a week: 168)."""
    every: int = 1
    """Hours from one run to the next (``COLLECTOR_SCHEDULE``; 1: the default, hourly)."""
    tenants: int = 0
    """0: single-tenant mode (the timer collects); n: multi-tenant, n tenants via the queue."""
    azurite_mb: int = 1024
    warmup_on_schedule: bool = True
    """Warm up on schedule through the days that settle while measuring (False: one
    catch-up run instead, which is quicker for many tenants)."""

    @property
    def sources(self) -> str:
        return ",".join(self.rows_per_day)

    def describe(self) -> str:
        mix = ", ".join(f"{s} {n:,}" for s, n in self.rows_per_day.items())
        who = f"{self.tenants} tenants, each" if self.tenants else "1 tenant,"
        total = sum(self.rows_per_day.values())
        warm = (
            ""
            if self.warmup_on_schedule
            else "; warm-up: one catch-up run, so the day settled while measuring is one blob "
            "per source and its settle pass reads fewer blobs than in steady state"
        )
        runs = f"{self.hours // self.every} runs measured, every {self.every} h"
        return f"{who} {total:,} calls+SMS a day ({mix}); {runs}{warm}"


SMALL = {"sms": 20, "direct_routing": 180}
MEDIUM = {"sms": 200, "direct_routing": 1_800}
SCENARIOS = (
    Scenario("small", SMALL),
    Scenario("medium", MEDIUM),
    Scenario("large", {"sms": 2_000, "direct_routing": 18_000}, azurite_mb=4096),
    Scenario("medium+pstn", {"sms": 200, "direct_routing": 1_800, "pstn": 1_000}),
    Scenario("medium/2h", MEDIUM, every=2),
    Scenario(
        "100 tenants", SMALL, hours=24, tenants=100, azurite_mb=2048, warmup_on_schedule=False
    ),
)
"""Default sources (sms, direct_routing) at about 200, 2,000 and 20,000 a day; the medium
tenant again with pstn, and again run every 2 hours; and 100 small tenants in multi-tenant
mode for one day (2,400 invocations already take minutes here; hourly warm-up would take as
long again)."""


def run_instants(
    hours: int, every: int = 1, warmup_on_schedule: bool = True
) -> tuple[list[datetime], list[datetime]]:
    """The warm-up runs (on schedule through the days that settle while measuring, then one
    catch-up run for the rest) and the measured runs (every ``every`` hours for ``hours``
    hours from WEEK_START)."""
    start = WEEK_START - timedelta(days=SETTLE_AFTER_DAYS)
    warm_until = min(start + timedelta(hours=hours), WEEK_START) if warmup_on_schedule else start
    step = timedelta(hours=every)
    warm = [
        start + n * step + timedelta(minutes=RUN_MINUTE)
        for n in range(math.ceil((warm_until - start) / step))
    ]
    if warm_until < WEEK_START:
        warm.append(WEEK_START - step + timedelta(minutes=RUN_MINUTE))
    measured = [
        WEEK_START + n * step + timedelta(minutes=RUN_MINUTE) for n in range(hours // every)
    ]
    return warm, measured


def billed_seconds(seconds: float) -> float:
    """An execution's billable seconds: at least 1 s, then rounded up to 100 ms."""
    return max(MIN_BILLED_SECONDS, math.ceil(round(seconds / BILLING_STEP, 6)) * BILLING_STEP)


# --- the worker: the Function app in a process of its own ---------------------------------


class LogCounter(logging.Handler):
    """Counts the log records a run emits (what the Python worker forwards to the host, which
    sends them to Application Insights as traces): records and message bytes, by origin."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        origin = record.name.split(".", 1)[0]
        group = origin if origin in ("collector", "azure") else "other"
        self.records[group] += 1
        self.bytes[group] += len(record.getMessage().encode("utf-8"))


def _peak_rss_mb(reset: bool = False) -> float:
    """This process's peak resident memory since the last reset (Linux: VmHWM, reset through
    ``clear_refs``)."""
    status = Path("/proc/self/status")
    if reset:
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker() -> None:
    """Serve commands from stdin, one JSON line each (``{"run": iso}``: one timer invocation
    at that hour; ``{"cycle": iso}``: the timer queues every tenant, then the queued
    invocations run as the host would take them), answering one JSON line each."""
    began = time.perf_counter()
    from azure.functions.timer import TimerRequest
    from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

    import function_app
    from collector.tenants.fanout import QUEUE
    from devstack.queue_host import trigger_message

    imported = time.perf_counter() - began
    functions: dict[str, Any] = {
        str(f.get_function_name()): f.get_user_function() for f in function_app.app.get_functions()
    }
    moment: list[datetime] = [WEEK_START]
    reports: list[Any] = []
    original: Callable[..., Any] = getattr(function_app, "run_cycle")  # noqa: B009

    async def at_the_simulated_hour(settings: Any, now: Any = None, **kwargs: Any) -> Any:
        report = await original(settings, moment[0], **kwargs)
        reports.append(report)
        return report

    # The one change to the app: its "now" is the simulated hour (what --as-of does in the CLI).
    setattr(function_app, "run_cycle", at_the_simulated_hour)  # noqa: B010
    counter = LogCounter()
    root = logging.getLogger()
    root.setLevel(logging.INFO)  # as the Python worker does: INFO and above are forwarded
    root.addHandler(counter)

    def invoke(kind: str, argument: Any) -> dict[str, Any]:
        reports.clear()
        records, sizes = Counter(counter.records), Counter(counter.bytes)
        _peak_rss_mb(reset=True)
        start, cpu = time.perf_counter(), time.process_time()
        error = None
        try:
            asyncio.run(functions[kind](argument))
        except Exception as exc:  # a failed invocation is a figure too
            error = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - start
        return {
            "kind": kind,
            "wall": wall,
            "cpu": time.process_time() - cpu,
            "rss_mb": _peak_rss_mb(),
            "error": error,
            "logs": {
                group: [
                    counter.records[group] - records[group],
                    counter.bytes[group] - sizes[group],
                ]
                for group in ("collector", "azure", "other")
            },
            "sources": [
                {
                    "source": r.source,
                    "status": r.status,
                    "pages": r.pages,
                    "rows": r.rows,
                    "late_rows": r.late_rows,
                    "settled_days": r.settled_days,
                    "windows": r.windows,
                }
                for report in reports
                for r in report.sources
            ],
        }

    def reply(document: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(document) + "\n")
        sys.stdout.flush()

    def warm_up(instant: str) -> dict[str, Any]:
        """One cycle over every lane (every tenant at once, as ``python -m collector run``
        does), quietly: no metrics, no SDK logs. Not measured."""
        from collector.core.settings import load_settings

        azure = logging.getLogger("azure")
        level = azure.level
        azure.setLevel(logging.WARNING)
        try:
            report = asyncio.run(
                original(load_settings(os.environ), datetime.fromisoformat(instant))
            )
        finally:
            azure.setLevel(level)
        failed = [f"{r.name}: {r.error}" for r in report.sources if r.status == "failed"]
        return {"kind": "warm-up", "error": "; ".join(failed) or None}

    reply({"ready": True, "import_seconds": imported, "rss_mb": _peak_rss_mb()})
    for line in sys.stdin:
        command = json.loads(line)
        if "warm" in command:
            reply({"invocations": [warm_up(command["warm"])]})
        elif "run" in command:
            moment[0] = datetime.fromisoformat(command["run"])
            reply({"invocations": [invoke("collect_call_logs", TimerRequest())]})
        elif "cycle" in command:
            moment[0] = datetime.fromisoformat(command["cycle"])
            done = [invoke("collect_call_logs", TimerRequest())]
            queue = QueueClient.from_connection_string(
                os.environ["AzureWebJobsStorage"],  # noqa: SIM112 (the host's name for it)
                QUEUE,
                message_encode_policy=BinaryBase64EncodePolicy(),
                message_decode_policy=BinaryBase64DecodePolicy(),
            )
            with queue:
                while True:  # the host's loop: take a batch, run it, delete what succeeded
                    batch = list(
                        queue.receive_messages(
                            messages_per_page=QUEUE_BATCH,
                            max_messages=QUEUE_BATCH,
                            visibility_timeout=60,
                        )
                    )
                    if not batch:
                        break
                    for message in batch:
                        trigger = trigger_message(
                            message.content, message.id, message.dequeue_count
                        )
                        done.append(invoke("collect_tenant", trigger))
                        if done[-1]["error"] is None:  # a failed one shows again later
                            queue.delete_message(message)
            reply({"invocations": done})
        else:
            break


class Worker:
    """The worker process, driven from here."""

    def __init__(self, env: dict[str, str], log: IO[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.ready = self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker exited ({self.process.wait()}); see its log")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: dict[str, str]) -> list[dict[str, Any]]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        invocations: list[dict[str, Any]] = self._answer()["invocations"]
        return invocations

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- Application Insights' ingestion endpoint, on loopback ----------------------------------


class Ingestion:
    """A loopback HTTPS stand-in for Application Insights' ingestion endpoint (as in
    tests/test_metrics.py): it counts what the exporter posts."""

    def __init__(self, folder: Path) -> None:
        from devstack.tls import self_signed_certificate

        self.cert, key = self_signed_certificate(folder)
        self.counts: Counter[str] = Counter()
        lock, counts = threading.Lock(), self.counts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                envelopes = json.loads(body)
                with lock:
                    counts["posts"] += 1
                    counts["envelopes"] += len(envelopes)
                    counts["bytes"] += sum(len(json.dumps(e).encode()) for e in envelopes)
                    counts["points"] += sum(
                        len(e.get("data", {}).get("baseData", {}).get("metrics", []))
                        for e in envelopes
                    )
                answer = json.dumps(
                    {"itemsReceived": len(envelopes), "itemsAccepted": len(envelopes), "errors": []}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def connection_string(self) -> str:
        port = self.server.server_address[1]
        return (
            "InstrumentationKey=00000000-0000-0000-0000-0000000000c1;"
            f"IngestionEndpoint=https://127.0.0.1:{port}/"
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- one scenario --------------------------------------------------------------------------


@dataclass
class Measured:
    """What one scenario's measured runs did, summed (the raw counts)."""

    scenario: Scenario
    runs: int = 0
    invocations: int = 0
    failures: list[str] = field(default_factory=list)
    storage: Counter[str] = field(default_factory=Counter)
    """Archive requests by ``category:operation``."""
    queue: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    folders: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    """Archive requests billed as writes, by folder (``_state``, ``_manifests``, a source)."""
    sent_bytes: Counter[str] = field(default_factory=Counter)
    """Request body bytes by folder (archive), and ``queue``."""
    read_bytes: int = 0
    stored: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Blobs and bytes in the container at the end, by kind."""
    stored_before: dict[str, tuple[int, int]] = field(default_factory=dict)
    walls: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    modelled: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    telemetry: Counter[str] = field(default_factory=Counter)
    logs: Counter[str] = field(default_factory=Counter)
    log_bytes: Counter[str] = field(default_factory=Counter)
    graph: Counter[str] = field(default_factory=Counter)
    import_seconds: float = 0.0
    idle_rss_mb: float = 0.0
    elapsed: float = 0.0

    @property
    def categories(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for key, n in self.storage.items():
            out[key.split(":", 1)[0]] += n
        return out


def modelled_seconds(invocation: dict[str, Any]) -> float:
    """The invocation's run time with Graph's page latency: the measured time (Graph here
    answers at once) plus 1.5 s per page of its busiest source. A source's windows are read
    side by side and sources run side by side, so this bounds the wait from above."""
    pages = [s["pages"] for s in invocation["sources"]]
    return float(invocation["wall"]) + GRAPH_PAGE_SECONDS * max(pages, default=0)


def _connection_string(kind: str, port: int) -> str:
    from devstack.azurite import ACCOUNT, ACCOUNT_KEY

    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"{kind}Endpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


def _stored(connection_string: str, container: str) -> dict[str, tuple[int, int]]:
    """Blobs and bytes in the container by kind: data (per source), manifests, state."""
    from azure.storage.blob import BlobServiceClient

    kinds: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    with BlobServiceClient.from_connection_string(connection_string) as service:
        client = service.get_container_client(container)
        if not client.exists():
            return {}
        for blob in client.list_blobs():
            head = blob.name.split("/", 1)[0]
            kind = {"_state": "state", "_manifests": "manifests"}.get(head, f"data:{head}")
            kinds[kind] += 1
            sizes[kind] += int(blob.size or 0)
    return {kind: (kinds[kind], sizes[kind]) for kind in sorted(kinds)}


class LateRows:
    """Adds, after each run, the share of the hour's rows Graph ingests late."""

    def __init__(
        self, tenants: list[Any], rows_per_day: dict[str, int], seed: int, every: int
    ) -> None:
        self.tenants = tenants
        self.every = every
        self.rows_per_day = rows_per_day
        self.owed = [dict.fromkeys(rows_per_day, 0.0) for _ in tenants]
        self.rng = random.Random(seed)

    def after(self, run: datetime) -> None:
        """Rows stamped in the hours the run read (its window ends an hour before it)."""
        window_end = run - timedelta(hours=1)
        for tenant, owed in zip(self.tenants, self.owed, strict=True):
            for source, per_day in self.rows_per_day.items():
                owed[source] += per_day / 24 * self.every * LATE_SHARE
                while owed[source] >= 1:
                    owed[source] -= 1
                    second = self.rng.uniform(1, 3600 * self.every - 1)
                    stamp = window_end - timedelta(seconds=second)
                    tenant.add_row(source, f"{stamp:%Y-%m-%dT%H:%M:%S}.5Z")


def run_scenario(scenario: Scenario, say: Callable[[str], None]) -> Measured:
    """Simulate ``scenario`` on a fresh stack and return its counts."""
    from devstack.azurite import Azurite
    from devstack.meter import MeteringProxy
    from devstack.stack import GraphStack
    from devstack.synthetic import Tenant

    began = time.monotonic()
    result = Measured(scenario)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cost-")))
        ingestion = Ingestion(folder)
        stack.callback(ingestion.stop)
        blobs = Azurite(memory_mb=scenario.azurite_mb)
        blobs.start()
        stack.callback(blobs.stop)
        seed = 300 + len(scenario.name)
        if scenario.tenants:
            ids = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(1, scenario.tenants + 1)]
            tenants = [
                Tenant(seed=seed + i, rows_per_day=scenario.rows_per_day) for i in range(len(ids))
            ]
            graph = GraphStack(Tenant(seed=seed, rows_per_day={}))
            graph.add_directory(APP, IDENTITY, dict(zip(ids, tenants, strict=True)), ids)
        else:
            tenants = [Tenant(seed=seed, rows_per_day=scenario.rows_per_day)]
            graph = GraphStack(tenants[0])
        stack.callback(graph.stop)
        archive = MeteringProxy(f"http://127.0.0.1:{blobs.port}")
        env = {
            **os.environ,
            **graph.env(),
            "COLLECTOR_STORAGE": _connection_string("Blob", graph.serve(archive.app())),
            "COLLECTOR_SOURCES": scenario.sources,
            "COLLECTOR_START": f"{WEEK_START - timedelta(days=SETTLE_AFTER_DAYS):%Y-%m-%dT%H:%M:%SZ}",
            "AZURE_CLIENT_ID": IDENTITY,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
            "REQUESTS_CA_BUNDLE": str(ingestion.cert),
        }
        queue_meter = None
        if scenario.tenants:
            queues = Azurite(service="queue")
            queues.start()
            stack.callback(queues.stop)
            queue_meter = MeteringProxy(f"http://127.0.0.1:{queues.port}", service="queue")
            env["AzureWebJobsStorage"] = _connection_string("Queue", graph.serve(queue_meter.app()))
            env["COLLECTOR_TENANTS"] = ",".join(ids)
            env["COLLECTOR_APP_CLIENT_ID"] = APP
        if scenario.every > 1:
            env["COLLECTOR_SCHEDULE"] = f"0 {RUN_MINUTE} */{scenario.every} * * *"
        late = LateRows(tenants, scenario.rows_per_day, seed, scenario.every)
        log = stack.enter_context(open(folder / "worker.log", "w+"))
        command = "cycle" if scenario.tenants else "run"
        warm, measured = run_instants(scenario.hours, scenario.every, scenario.warmup_on_schedule)
        say(f"{scenario.name}: warm-up, {len(warm)} runs")
        warming = Worker(env, log)
        stack.callback(warming.close)
        read_until = WEEK_START - timedelta(days=SETTLE_AFTER_DAYS)
        for instant in warm:
            done = warming.ask({"warm": instant.isoformat()})
            failed = [i["error"] for i in done if i["error"]]
            if failed:
                log.seek(0)
                raise RuntimeError(
                    f"warm-up run {instant} failed: {failed[:3]}\n{log.read()[-3000:]}"
                )
            while read_until < instant:  # a catch-up run read many hours: late rows for each
                read_until += timedelta(hours=scenario.every)
                late.after(min(read_until, instant))
        # A fresh worker for the measured runs: Python keeps what the warm-up allocated, and
        # a catch-up run of every tenant at once would set every later peak.
        warming.close()
        worker = Worker(env, log)
        stack.callback(worker.close)
        result.import_seconds = float(worker.ready["import_seconds"])
        result.idle_rss_mb = float(worker.ready["rss_mb"])
        result.stored_before = _stored(_connection_string("Blob", blobs.port), "callrecords")
        say(f"{scenario.name}: {len(measured)} measured runs ({time.monotonic() - began:.0f} s)")
        for number, instant in enumerate(measured, 1):
            before = archive.snapshot()
            queue_before = queue_meter.snapshot() if queue_meter else None
            telemetry_before = Counter(ingestion.counts)
            done = worker.ask({command: instant.isoformat()})
            after = archive.snapshot()
            result.runs += 1
            result.storage += after["operations"] - before["operations"]
            result.statuses += after["statuses"] - before["statuses"]
            result.folders += after["folders"] - before["folders"]
            result.writes += after["writes"] - before["writes"]
            result.sent_bytes += after["body_bytes"] - before["body_bytes"]
            result.read_bytes += (after["response_bytes"] - before["response_bytes"])["all"]
            if queue_meter is not None and queue_before is not None:
                queue_after = queue_meter.snapshot()
                result.queue += Counter(
                    {
                        key.split(":", 1)[1]: n
                        for key, n in (
                            queue_after["operations"] - queue_before["operations"]
                        ).items()
                    }
                )
                result.sent_bytes["queue"] += (
                    queue_after["body_bytes"] - queue_before["body_bytes"]
                ).total()
                result.read_bytes += (
                    queue_after["response_bytes"] - queue_before["response_bytes"]
                )["all"]
            result.telemetry += Counter(ingestion.counts) - telemetry_before
            for invocation in done:
                result.invocations += 1
                if invocation["error"]:
                    result.failures.append(f"{instant:%m-%d %H:%M} {invocation['error']}")
                result.walls.append(invocation["wall"])
                result.cpu.append(invocation["cpu"])
                result.modelled.append(modelled_seconds(invocation))
                result.rss.append(invocation["rss_mb"])
                for group, (records, size) in invocation["logs"].items():
                    result.logs[group] += records
                    result.log_bytes[group] += size
                for source in invocation["sources"]:
                    for key in ("pages", "rows", "late_rows", "settled_days", "windows"):
                        result.graph[key] += source[key]
            late.after(instant)
            if number * scenario.every % 24 == 0 and number < len(measured):
                day = number * scenario.every // 24
                say(f"{scenario.name}: day {day} done ({time.monotonic() - began:.0f} s)")
        result.stored = _stored(_connection_string("Blob", blobs.port), "callrecords")
    result.elapsed = time.monotonic() - began
    return result


# --- list prices (USD, East US) and the monthly estimate ------------------------------------

PRICES = {
    "blob_hot_gb_month": 0.0208,
    "blob_cool_gb_month": 0.0152,
    "blob_cold_gb_month": 0.0036,
    "blob_write_10k": 0.05,
    "blob_read_10k": 0.004,
    "blob_list_10k": 0.05,
    "blob_other_10k": 0.004,
    "blob_cool_write_10k": 0.10,
    "queue_10k": 0.004,
    "flex_gb_second": 0.000026,
    "flex_free_gb_seconds": 100_000,
    "flex_per_million_executions": 0.40,
    "flex_free_executions": 250_000,
    "log_analytics_gb": 2.30,
    "log_analytics_free_gb": 5,
    "private_endpoint_hour": 0.01,
    "private_endpoint_gb": 0.01,
}
"""Pay-as-you-go list prices, USD, East US (docs/cost.md says where each comes from and of
what date). Block blob: Hot LRS, general-purpose v2."""
PRIVATE_ENDPOINTS = 4
"""Private endpoints in private mode (infra/modules/network.bicep): host blob, queue, table;
archive blob."""
SMALL_INSTANCE_MB = 512
"""The smallest Flex Consumption instance (the other sizes: 2,048 and 4,096 MB)."""
HOST_RECORDS_PER_INVOCATION = 3
"""Application Insights records the Functions host writes per invocation besides the app's
own (assumed, not measured: no Functions host runs here): the request, and its
"Executing"/"Executed" traces."""
ACCESS_LOG_RECORD_BYTES = 1_500
"""Billed bytes of one StorageBlobLogs record (assumed: not measurable here; check with
``StorageBlobLogs | summarize avg(_BilledSize)``). infra/modules/access-logs.bicep sends one
record per archive request to the workspace."""
HOURS_A_MONTH = 730


def monthly(result: Measured) -> dict[str, float]:
    """The measured counts scaled to a 30-day month, and priced."""
    p = PRICES
    per_day = 24 / result.scenario.hours
    scale = 30 * per_day
    c = result.categories
    ops = {k: c[k] * scale for k in ("write", "read", "list", "other", "free")}
    queue_ops = result.queue.total() * scale
    transactions = (
        ops["write"] / 1e4 * p["blob_write_10k"]
        + ops["read"] / 1e4 * p["blob_read_10k"]
        + ops["list"] / 1e4 * p["blob_list_10k"]
        + ops["other"] / 1e4 * p["blob_other_10k"]
        + queue_ops / 1e4 * p["queue_10k"]
    )
    data_now = sum(b for k, (_, b) in result.stored.items() if k.startswith("data:"))
    data_before = sum(b for k, (_, b) in result.stored_before.items() if k.startswith("data:"))
    data_gb_per_month = (data_now - data_before) * per_day * 30 / 1e9
    manifests_gb = result.stored.get("manifests", (0, 0))[1] / 1e9
    blobs_now = sum(n for k, (n, _) in result.stored.items() if k.startswith("data:"))
    blobs_before = sum(n for k, (n, _) in result.stored_before.items() if k.startswith("data:"))
    new_blobs_per_month = (blobs_now - blobs_before) * per_day * 30
    state_gb = result.stored.get("state", (0, 0))[1] / 1e9
    # Versioning keeps each overwritten state document for 30 days (expire-old-versions).
    versions_gb = result.sent_bytes["_state"] * per_day * 30 / 1e9
    invocations = result.invocations * scale
    seconds = sum(billed_seconds(s) for s in result.modelled) * scale
    gb_seconds = seconds * INSTANCE_MB / 1024
    small_gb_seconds = seconds * SMALL_INSTANCE_MB / 1024
    functions = (
        max(0.0, gb_seconds - p["flex_free_gb_seconds"]) * p["flex_gb_second"]
        + max(0.0, invocations - p["flex_free_executions"]) / 1e6 * p["flex_per_million_executions"]
    )
    small_functions = (
        max(0.0, small_gb_seconds - p["flex_free_gb_seconds"]) * p["flex_gb_second"]
        + max(0.0, invocations - p["flex_free_executions"]) / 1e6 * p["flex_per_million_executions"]
    )
    functions_gross = (
        gb_seconds * p["flex_gb_second"] + invocations / 1e6 * p["flex_per_million_executions"]
    )
    record_bytes = result.telemetry["bytes"] / max(1, result.telemetry["envelopes"])
    app_records = (result.logs["collector"] + result.logs["other"]) * scale
    sdk_records = result.logs["azure"] * scale
    host_records = invocations * HOST_RECORDS_PER_INVOCATION
    metrics_gb = result.telemetry["bytes"] * scale / 1e9
    traces_gb = (
        (result.log_bytes["collector"] + result.log_bytes["other"]) * scale
        + (app_records + host_records) * record_bytes
    ) / 1e9
    sdk_gb = (result.log_bytes["azure"] * scale + sdk_records * record_bytes) / 1e9
    requests = result.storage.total() * scale
    access_gb = requests * ACCESS_LOG_RECORD_BYTES / 1e9
    ingest_gb = metrics_gb + traces_gb + access_gb
    monitoring = max(0.0, ingest_gb - p["log_analytics_free_gb"]) * p["log_analytics_gb"]
    with_sdk = max(0.0, ingest_gb + sdk_gb - p["log_analytics_free_gb"]) * p["log_analytics_gb"]
    processed_gb = (result.sent_bytes.total() + result.read_bytes) * scale / 1e9
    private = (
        PRIVATE_ENDPOINTS * HOURS_A_MONTH * p["private_endpoint_hour"]
        + processed_gb * p["private_endpoint_gb"]
    )
    return {
        "requests": requests,
        "write": ops["write"],
        "read": ops["read"],
        "list": ops["list"],
        "other": ops["other"],
        "free": ops["free"],
        "queue": queue_ops,
        "transactions_usd": transactions,
        "data_gb_per_month": data_gb_per_month,
        "new_blobs_per_month": new_blobs_per_month,
        "capacity_month1_usd": (data_gb_per_month / 2 + manifests_gb + state_gb + versions_gb)
        * p["blob_hot_gb_month"],
        "capacity_added_usd": data_gb_per_month * p["blob_hot_gb_month"],
        "capacity_year_usd": (data_gb_per_month * 12 + versions_gb + state_gb)
        * p["blob_hot_gb_month"],
        # ARCHIVE_COOL_AFTER_DAYS=30: in month 12, the newest month of data is Hot, the 3
        # before it Cool, the 8 oldest Cold (Cold comes 90 days after Cool).
        "capacity_year_cool_usd": (data_gb_per_month + versions_gb + state_gb)
        * p["blob_hot_gb_month"]
        + data_gb_per_month * 3 * p["blob_cool_gb_month"]
        + data_gb_per_month * 8 * p["blob_cold_gb_month"],
        "cool_tiering_usd": new_blobs_per_month / 1e4 * p["blob_cool_write_10k"],
        "state_gb": state_gb,
        "versions_gb": versions_gb,
        "manifests_gb": manifests_gb,
        "invocations": invocations,
        "gb_seconds": gb_seconds,
        "functions_usd": functions,
        "functions_gross_usd": functions_gross,
        "small_gb_seconds": small_gb_seconds,
        "small_functions_usd": small_functions,
        "metrics_gb": metrics_gb,
        "traces_gb": traces_gb,
        "sdk_traces_gb": sdk_gb,
        "access_logs_gb": access_gb,
        "ingest_gb": ingest_gb,
        "monitoring_usd": monitoring,
        "monitoring_gross_usd": ingest_gb * p["log_analytics_gb"],
        "monitoring_with_sdk_usd": with_sdk,
        "processed_gb": processed_gb,
        "private_usd": private,
        "total_usd": transactions
        + (data_gb_per_month / 2 + manifests_gb + state_gb + versions_gb) * p["blob_hot_gb_month"]
        + functions
        + monitoring,
    }


# --- the report -----------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _gb(value: float) -> str:
    return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:,.4f}"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def raw_table(r: Measured) -> Iterator[str]:
    """The raw counts of one scenario."""
    s = r.scenario
    yield f"== {s.name}: {s.describe()} =="
    yield (
        f"runs {r.runs}, invocations {r.invocations}, failed {len(r.failures)}; Graph: "
        f"{_n(r.graph['rows'])} rows in {_n(r.graph['pages'])} pages, "
        f"{_n(r.graph['late_rows'])} late rows written, {r.graph['settled_days']} days settled"
    )
    c = r.categories
    yield (
        f"archive requests: {_n(r.storage.total())} = write {_n(c['write'])}, read "
        f"{_n(c['read'])}, list/create {_n(c['list'])}, other {_n(c['other'])}, free {_n(c['free'])}"
    )
    for key, n in sorted(r.storage.items(), key=lambda kv: -kv[1]):
        category, operation = key.split(":", 1)
        yield f"    {operation:<24} {category:<6} {_n(n):>9}  ({n / r.runs:.1f} a run)"
    status = ", ".join(f"{k} {_n(v)}" for k, v in sorted(r.statuses.items()))
    folders = ", ".join(f"{k} {_n(v)}" for k, v in sorted(r.folders.items()))
    writes = ", ".join(f"{k} {_n(v)}" for k, v in sorted(r.writes.items()))
    yield f"    by answer: {status}; by folder: {folders}; writes by folder: {writes}"
    if r.queue:
        queue = ", ".join(f"{k} {_n(v)}" for k, v in sorted(r.queue.items()))
        yield f"host queue requests: {_n(r.queue.total())} = {queue}"
    sent = ", ".join(f"{k} {v / 1e6:,.2f}" for k, v in sorted(r.sent_bytes.items()))
    yield f"MB sent to storage: {sent}; MB read back: {r.read_bytes / 1e6:,.2f}"
    for label, stored in (("at the start", r.stored_before), ("at the end", r.stored)):
        kinds = ", ".join(f"{k} {n:,} blobs {b / 1e6:,.2f} MB" for k, (n, b) in stored.items())
        yield f"stored {label}: {kinds}"
    walls, modelled = r.walls, r.modelled
    billed = [billed_seconds(m) for m in modelled]
    yield (
        f"execution s per invocation (measured, Graph instant): mean {statistics.fmean(walls):.2f} "
        f"p95 {_pct(walls, 0.95):.2f} max {max(walls):.2f} (CPU {statistics.fmean(r.cpu):.2f}); "
        f"with Graph's 1.5 s pages: mean "
        f"{statistics.fmean(modelled):.2f} max {max(modelled):.2f}; billed (>= 1 s, 0.1 s steps) "
        f"sum {sum(billed):,.1f} s = {sum(billed) * INSTANCE_MB / 1024:,.0f} GB-s at {INSTANCE_MB} MB"
    )
    yield (
        f"peak RSS per invocation MB: max {max(r.rss):.0f} mean {statistics.fmean(r.rss):.0f}; "
        f"worker idle {r.idle_rss_mb:.0f} MB after {r.import_seconds:.2f} s of imports"
    )
    t = r.telemetry
    yield (
        f"metrics exported: {_n(t['points'])} data points ({t['points'] / r.invocations:.1f} an "
        f"invocation, {len(NAMES)} metric names) in {_n(t['envelopes'])} envelopes, "
        f"{t['bytes'] / 1e6:,.2f} MB JSON ({t['bytes'] / max(1, t['envelopes']):.0f} B each), "
        f"{_n(t['posts'])} posts"
    )
    logs = ", ".join(
        f"{g} {_n(r.logs[g])} ({r.log_bytes[g] / 1e3:,.1f} kB, {r.logs[g] / r.invocations:.1f} an "
        "invocation)"
        for g in ("collector", "azure", "other")
    )
    yield f"log records (INFO+): {logs}"
    for failure in r.failures[:5]:
        yield f"    FAILED {failure}"
    yield f"(simulated in {r.elapsed:.0f} s)"


def monthly_table(results: list[Measured]) -> Iterator[str]:
    """The month (x30/days), priced at PRICES."""
    months = [(r.scenario.name, monthly(r)) for r in results]
    width = max(14, *(len(name) for name, _ in months))
    yield "".join([f"{'per 30-day month':<34}", *(f"{n:>{width}}" for n, _ in months)])
    rows: list[tuple[str, str, Callable[[float], str]]] = [
        ("archive requests", "requests", _n),
        ("  write", "write", _n),
        ("  read", "read", _n),
        ("  list/create", "list", _n),
        ("  other", "other", _n),
        ("host queue requests", "queue", _n),
        ("storage transactions", "transactions_usd", _usd),
        ("data GB added", "data_gb_per_month", _gb),
        ("data blobs added", "new_blobs_per_month", _n),
        ("state versions kept 30 d, GB", "versions_gb", _gb),
        ("capacity, month 1 (Hot)", "capacity_month1_usd", _usd),
        ("capacity, month 12 (Hot)", "capacity_year_usd", _usd),
        ("  month 12, Cool after 30 d", "capacity_year_cool_usd", _usd),
        ("  tiering writes a month", "cool_tiering_usd", _usd),
        ("invocations", "invocations", _n),
        ("GB-s billed (2 GB instance)", "gb_seconds", _n),
        ("functions, no free grant", "functions_gross_usd", _usd),
        ("functions (after free grant)", "functions_usd", _usd),
        (f"  GB-s at {SMALL_INSTANCE_MB} MB instances", "small_gb_seconds", _n),
        (f"  functions at {SMALL_INSTANCE_MB} MB", "small_functions_usd", _usd),
        ("metrics GB", "metrics_gb", _gb),
        ("traces GB (app + host)", "traces_gb", _gb),
        ("storage access logs GB", "access_logs_gb", _gb),
        ("ingested GB", "ingest_gb", _gb),
        ("monitoring, no free 5 GB", "monitoring_gross_usd", _usd),
        ("monitoring (after 5 GB free)", "monitoring_usd", _usd),
        ("  azure SDK INFO traces GB", "sdk_traces_gb", _gb),
        ("  monitoring with them", "monitoring_with_sdk_usd", _usd),
        ("total, month 1", "total_usd", _usd),
        ("data through private endpoints GB", "processed_gb", _gb),
        ("private endpoints (VNET_ENABLED)", "private_usd", _usd),
    ]
    for label, key, fmt in rows:
        yield "".join([f"{label:<34}", *(f"{fmt(m[key]):>{width}}" for _, m in months)])


def header(command: str) -> Iterator[str]:
    yield f"benchmarks/cost.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    yield f"command: {command}"
    yield (
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )
    yield (
        f"week measured from {WEEK_START:%Y-%m-%d}, runs at minute {RUN_MINUTE} of every hour, "
        f"COLLECTOR_START {SETTLE_AFTER_DAYS} days earlier with hourly warm-up runs (not "
        "counted): steady state, one day settled per source each day; lag 60 min, lateness "
        f"48 h (defaults); {LATE_SHARE:.0%} of rows arrive an hour late"
    )
    yield (
        "execution time: measured with Graph answering at once, plus 1.5 s per page of the "
        f"invocation's busiest source; billed >= 1 s in 0.1 s steps x {INSTANCE_MB} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--quick", action="store_true", help="a day each, 10 tenants")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / f"RESULTS-{datetime.now(UTC):%Y-%m-%d}-cost.txt",
    )
    args = parser.parse_args()
    # Stopped from outside: still stop the stack (Azurite, the worker) on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.worker:
        worker()
        return
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    if args.quick:
        chosen = [dataclasses.replace(s, hours=24, tenants=min(s.tenants, 10)) for s in chosen]
    command = shlex.join([".venv/bin/python", "benchmarks/cost.py", *sys.argv[1:]])
    lines = list(header(command))
    print("\n".join(lines), flush=True)
    results = []
    for scenario in chosen:
        result = run_scenario(
            scenario, lambda text: print(f"  .. {text}", file=sys.stderr, flush=True)
        )
        results.append(result)
        table = list(raw_table(result))
        print("\n".join(["", *table]), flush=True)
        lines += ["", *table]
    month = ["", "== a 30-day month (counts x 30/days), at the list prices of docs/cost.md =="]
    month += list(monthly_table(results))
    print("\n".join(month))
    lines += month
    args.out.write_text("\n".join(lines) + "\n")
    print(
        f"\nwritten to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}"
    )


if __name__ == "__main__":
    main()
