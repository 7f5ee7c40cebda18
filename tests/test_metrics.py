"""The OpenTelemetry metrics a run emits, read back through the SDK's in-memory reader and
checked against the run's own report; and the exporter's configuration."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.functions.timer import TimerRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)

from collector.cli import main
from collector.core.errors import ConfigError
from collector.core.settings import load_settings
from collector.core.timefmt import format_instant, parse_instant
from collector.core.windows import floor_to_midnight
from collector.graph.client import RetryPolicy
from collector.observe import metrics as names
from collector.observe.metrics import RunMetrics
from collector.observe.reports import RunReport, SourceReport, failed_in_a_row
from collector.observe.telemetry import azure_monitor_provider, run_metrics
from collector.run.runner import run_cycle
from devstack.graph_simulator import Fault
from devstack.identity import TokenAuthority
from devstack.tls import self_signed_certificate

from .conftest import FIRST, SECOND, START, Stack, registered_function, run_async

FAST_RETRY = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05)

Points = dict[str, dict[tuple[tuple[str, Any], ...], Any]]


def recording(reader: InMemoryMetricReader) -> RunMetrics:
    return RunMetrics(MeterProvider(metric_readers=[reader]))


def collect(stack: Stack, as_of: str, metrics: RunMetrics) -> RunReport:
    settings = load_settings(stack.env)
    report: RunReport = run_async(
        run_cycle(settings, parse_instant(as_of), retry=FAST_RETRY, metrics=metrics)
    )
    return report


def points(reader: InMemoryMetricReader) -> Points:
    """metric name -> {sorted attributes: value (sum / gauge value / histogram data point)}"""
    found: Points = defaultdict(dict)
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == names.METER
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = tuple(sorted((point.attributes or {}).items()))
                    assert isinstance(point, HistogramDataPoint | NumberDataPoint)
                    found[metric.name][key] = (
                        point if isinstance(point, HistogramDataPoint) else point.value
                    )
    return found


def of(source: str, **more: str) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted({"source": source, **more}.items()))


def test_a_run_emits_each_source_s_report_as_metrics(stack: Stack) -> None:
    stack.graph.simulator.add_fault(Fault("429", count=2, retry_after=0, source="pstn"))
    stack.graph.simulator.add_fault(Fault("503", count=1, source="sms"))
    reader = InMemoryMetricReader()
    report = collect(stack, SECOND, recording(reader))
    now = parse_instant(SECOND)
    found = points(reader)
    assert report.ok
    assert set(found) == names.NAMES  # what the alerts may query is what a run records
    for source in report.sources:
        name = source.source
        assert source.rows > 0
        assert found[names.ROWS][of(name)] == source.rows
        assert found[names.LATE_ROWS][of(name)] == source.late_rows
        assert found[names.PAGES][of(name)] == source.pages
        by_status = {
            dict(key)["status"]: value
            for key, value in found[names.REQUESTS].items()
            if dict(key)["source"] == name
        }
        assert sum(by_status.values()) == source.stats.requests
        assert by_status["200"] == source.pages
        assert found[names.THROTTLED][of(name)] == source.stats.throttled
        assert found[names.RETRIES][of(name)] == source.stats.retries
        assert found[names.RUNS][of(name, outcome="ok")] == 1
        duration = found[names.RUN_DURATION][of(name, outcome="ok")]
        assert duration.count == 1 and duration.sum == pytest.approx(source.seconds)
        assert source.watermark_after is not None and source.settled_after is not None
        assert (
            found[names.WATERMARK_LAG][of(name)] == (now - source.watermark_after).total_seconds()
        )
        assert found[names.SETTLED_LAG][of(name)] == (now - source.settled_after).total_seconds()
        assert found[names.FAILED_RUNS_IN_A_ROW][of(name)] == 0
    pstn = {r.source: r for r in report.sources}["pstn"]
    assert pstn.stats.throttled == 2 and found[names.REQUESTS][of("pstn", status="429")] == 2
    assert found[names.REQUESTS][of("sms", status="503")] == 1
    assert found[names.WATERMARK_LAG][of("pstn")] == 3600  # the 60-minute lag
    assert found[names.SETTLED_LAG][of("pstn")] == 2 * 86_400 + 12.5 * 3600  # Oct 21 00:00


def test_failed_runs_in_a_row_count_up_and_reset(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.env.update(COLLECTOR_SOURCES="sms,pstn")
    forbidden = Fault("status", count=-1, source="sms", status=403)
    stack.graph.simulator.add_fault(forbidden)
    reader = InMemoryMetricReader()
    metrics = recording(reader)
    for as_of, expected in ((FIRST, 1), ("2026-10-21T13:00:00Z", 2), (SECOND, 3)):
        report = collect(stack, as_of, metrics)
        found = points(reader)
        assert found[names.FAILED_RUNS_IN_A_ROW][of("sms")] == expected
        assert found[names.FAILED_RUNS_IN_A_ROW][of("pstn")] == 0
        assert {r.source: r.status for r in report.sources} == {"sms": "failed", "pstn": "ok"}
    assert found[names.RUNS][of("sms", outcome="failed")] == 3
    # Its watermark stays at COLLECTOR_START: the lag grows, and the lag alert sees it too.
    assert (
        found[names.WATERMARK_LAG][of("sms")]
        == (parse_instant(SECOND) - parse_instant(START)).total_seconds()
    )
    capsys.readouterr()
    assert main(["status", "--as-of", SECOND], stack.env) == 1
    assert "sms: NOT FRESH" in (out := capsys.readouterr().out)
    assert "last run failed (3 runs in a row): Graph returned HTTP 403" in out
    forbidden.count = 0
    collect(stack, SECOND, metrics)
    assert points(reader)[names.FAILED_RUNS_IN_A_ROW][of("sms")] == 0


def test_metrics_go_nowhere_unless_a_connection_string_is_set() -> None:
    assert azure_monitor_provider({}, None) is None
    metrics, provider = run_metrics({"APPLICATIONINSIGHTS_CONNECTION_STRING": " "}, None)
    assert provider is None and isinstance(metrics, RunMetrics)


def test_a_connection_string_the_exporter_cannot_use_is_a_setting_error() -> None:
    with pytest.raises(ConfigError, match="APPLICATIONINSIGHTS_CONNECTION_STRING"):
        azure_monitor_provider({"APPLICATIONINSIGHTS_CONNECTION_STRING": "nonsense"}, None)


class Ingestion:
    """A loopback HTTPS stand-in for Application Insights' ingestion endpoint: it keeps what
    the exporter posts and with which Authorization header."""

    def __init__(self, folder: Path) -> None:
        self.cert, key = self_signed_certificate(folder)
        self.posts: list[tuple[str, str | None, bytes]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                posts.append((self.path, self.headers.get("Authorization"), body))
                answer = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sent(self, authority: TokenAuthority) -> list[tuple[str, float, dict[str, str]]]:
        """Every metric posted (name, value, customDimensions), each post checked to carry a
        token the local identity endpoint issued for Azure Monitor."""
        metrics = []
        for path, authorization, body in self.posts:
            assert path.startswith("/v2.1/track")
            assert authorization is not None and authorization.startswith("Bearer ")
            assert authority.problem(authorization[7:], "https://monitor.azure.com") is None
            for envelope in json.loads(body):
                data = envelope["data"]["baseData"]
                for metric in data["metrics"]:
                    metrics.append((metric["name"], metric["value"], data["properties"]))
        return metrics


@pytest.fixture
def ingestion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ingestion]:
    """A loopback ingestion endpoint, trusted, and its connection string in the stack's env."""
    endpoint = Ingestion(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(endpoint.cert))
    yield endpoint
    endpoint.stop()


def connection_string(ingestion: Ingestion) -> str:
    return (
        f"InstrumentationKey=00000000-0000-0000-0000-0000000000c1;IngestionEndpoint={ingestion.url}"
    )


def test_a_run_exports_its_metrics_to_application_insights_with_the_managed_identity(
    stack: Stack, ingestion: Ingestion
) -> None:
    # The exporter's own statistics and configuration polls are off by default: only the
    # metrics reach the (here loopback) endpoint, and nothing else leaves.
    stack.env.update(
        COLLECTOR_SOURCES="pstn", APPLICATIONINSIGHTS_CONNECTION_STRING=connection_string(ingestion)
    )
    assert stack.run(SECOND) == 0
    sent = ingestion.sent(stack.graph.authority)
    assert {name for name, _, _ in sent} == names.NAMES
    metrics = {name: {"value": value, **dimensions} for name, value, dimensions in sent}
    # Application Insights keeps each as customMetrics: name, value, customDimensions.
    assert metrics[names.WATERMARK_LAG] == {"value": 3600, "source": "pstn"}
    assert metrics[names.FAILED_RUNS_IN_A_ROW] == {"value": 0, "source": "pstn"}
    assert metrics[names.SETTLED_LAG]["source"] == "pstn"
    last_run = json.loads(stack.blobs()["_state/pstn.run.json"])
    assert metrics[names.ROWS] == {"value": last_run["rows"], "source": "pstn"}
    assert last_run["rows"] > 0


def test_each_function_invocation_sends_the_gauges_it_measured_once(
    stack: Stack, ingestion: Ingestion, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", connection_string(ingestion))
    start = format_instant(floor_to_midnight(datetime.now(UTC) - timedelta(days=2)))
    monkeypatch.setenv("COLLECTOR_START", start)
    function = registered_function().get_user_function()
    asyncio.run(function(TimerRequest()))
    monkeypatch.setenv("COLLECTOR_SOURCES", "pstn")
    asyncio.run(function(TimerRequest()))
    lags = sorted(
        d["source"] for n, _, d in ingestion.sent(stack.graph.authority) if n == names.WATERMARK_LAG
    )
    # A worker that kept its exporter would send the first run's sms and direct_routing lags
    # again with the second: stale values with fresh timestamps, which the alerts would read.
    assert lags == ["direct_routing", "pstn", "pstn", "sms"]


def test_a_connection_string_the_exporter_refuses_does_not_stop_the_function(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLLECTOR_SOURCES", "pstn")
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "nonsense")
    monkeypatch.setenv("COLLECTOR_START", format_instant(floor_to_midnight(datetime.now(UTC))))
    asyncio.run(registered_function().get_user_function()(TimerRequest()))
    assert stack.state("pstn") is not None  # collected
    assert "metrics are off: setting APPLICATIONINSIGHTS_CONNECTION_STRING" in caplog.text
    assert main(["run"], {**stack.env, "APPLICATIONINSIGHTS_CONNECTION_STRING": "nonsense"}) == 2


def test_a_failure_counts_from_the_previous_record_whatever_it_holds() -> None:
    assert failed_in_a_row(None) == 1  # no record, or one that could not be read
    assert failed_in_a_row({"outcome": "ok", "failedInARow": 0}) == 1
    assert failed_in_a_row({"outcome": "failed", "failedInARow": 4}) == 5
    assert failed_in_a_row({"outcome": "failed"}) == 2  # a record from before the count
    assert failed_in_a_row({"outcome": "failed", "failedInARow": "x"}) == 2
    assert failed_in_a_row({"outcome": "yielded"}) == 1


def test_an_unreadable_last_run_record_neither_fails_the_run_nor_hides_the_failure(
    stack: Stack,
) -> None:
    stack.env.update(COLLECTOR_SOURCES="sms,pstn")
    stack.graph.simulator.add_fault(Fault("status", count=-1, source="sms", status=403))
    stack.container().create_container()
    stack.container().upload_blob("_state/sms.run.json", b"{not json")
    reader = InMemoryMetricReader()
    report = collect(stack, FIRST, recording(reader))
    assert {r.source: r.status for r in report.sources} == {"sms": "failed", "pstn": "ok"}
    assert points(reader)[names.FAILED_RUNS_IN_A_ROW][of("sms")] == 1
    record = json.loads(stack.blobs()["_state/sms.run.json"])
    assert record["outcome"] == "failed" and record["failedInARow"] == 1


def test_a_run_that_yields_records_only_that_it_yielded(stack: Stack) -> None:
    stack.env.update(COLLECTOR_SOURCES="pstn")
    stack.container().create_container()
    held = {"source": "pstn", "watermark": START, "settled": START, "claims": None}
    held |= {"owner": "other-host", "leaseUntil": "2099-01-01T00:00:00Z"}
    stack.container().upload_blob("_state/pstn.json", json.dumps(held))
    reader = InMemoryMetricReader()
    report = collect(stack, SECOND, recording(reader))
    assert [r.status for r in report.sources] == ["yielded"]
    assert points(reader) == {names.RUNS: {of("pstn", outcome="yielded"): 1}}
    assert "_state/pstn.run.json" not in stack.blobs()  # the owner's record is its own


def test_a_tenant_s_lane_carries_its_tenant_as_an_attribute() -> None:
    reader = InMemoryMetricReader()
    report = SourceReport("pstn", "aaaaaaaa-1111-4111-8111-000000000001", rows=5)
    recording(reader).record(report, parse_instant(SECOND), 0)
    lane = {"source": "pstn", "tenant": "aaaaaaaa-1111-4111-8111-000000000001"}
    assert points(reader)[names.ROWS] == {tuple(sorted(lane.items())): 5}


def test_a_daily_report_records_its_settled_lag_only(stack: Stack) -> None:
    # Its watermark is its settled one, a day and the lateness behind by design: the
    # watermark-lag alert would fire on it every hour.
    stack.env.update(COLLECTOR_SOURCES="pstn,pstn_dialout_report")
    reader = InMemoryMetricReader()
    assert collect(stack, SECOND, recording(reader)).ok
    found = points(reader)
    assert set(found[names.WATERMARK_LAG]) == {of("pstn")}
    assert set(found[names.SETTLED_LAG]) == {of("pstn"), of("pstn_dialout_report")}
    now = parse_instant(SECOND)
    reported_to = datetime(2026, 10, 21, tzinfo=UTC)  # Oct 20 is the only day 48 h past
    assert (
        found[names.SETTLED_LAG][of("pstn_dialout_report")] == (now - reported_to).total_seconds()
    )
    assert found[names.LATE_ROWS][of("pstn_dialout_report")] == 0
    assert found[names.ROWS][of("pstn_dialout_report")] > 0


def test_with_settling_switched_off_no_settled_lag_is_recorded(stack: Stack) -> None:
    # The settled watermark of the days settled before stays where it was: its lag would
    # only grow, and the day-not-settled alert would fire on a choice, not a fault.
    assert collect(stack, SECOND, recording(InMemoryMetricReader())).ok
    stack.env.update(COLLECTOR_LATENESS_HOURS="0")
    reader = InMemoryMetricReader()
    assert collect(stack, "2026-10-30T12:30:00Z", recording(reader)).ok
    found = points(reader)
    assert names.SETTLED_LAG not in found
    assert found[names.WATERMARK_LAG][of("pstn")] == 3600
