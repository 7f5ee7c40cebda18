"""OpenTelemetry metrics of each source's run: what the alerts in ``infra/modules/alerts.bicep``
query. Recorded through the OpenTelemetry API only; where they go is ``telemetry``'s choice
(nowhere unless configured).

Every instrument carries the attribute ``source`` (and ``tenant`` in multi-tenant mode);
Application Insights stores attributes as
``customDimensions`` and each name below as ``customMetrics.name``.
"""

from __future__ import annotations

from datetime import datetime

from opentelemetry.metrics import Meter, MeterProvider, get_meter_provider

from ..core.sources import SOURCES
from .reports import SourceReport

METER = "collector"

ROWS = "collector.rows"
LATE_ROWS = "collector.late_rows"
PAGES = "collector.pages"
REQUESTS = "collector.requests"
"""Graph requests, with the attribute ``status`` (``"200"``, ``"429"``…, ``"error"``)."""
THROTTLED = "collector.throttled"
"""Graph answers 429 Too Many Requests (also in ``REQUESTS`` as ``status="429"``)."""
RETRIES = "collector.retries"
RUNS = "collector.runs"
"""One per source and run, with the attribute ``outcome`` (``ok``, ``failed``, ``yielded``)."""
RUN_DURATION = "collector.run.duration"
WATERMARK_LAG = "collector.watermark.lag"
"""Seconds from the run's 'now' back to the source's watermark after the run (event logs
only: a daily report has only the settled lag)."""
SETTLED_LAG = "collector.settled.lag"
"""Seconds from the run's 'now' back to the source's settled watermark after the run."""
FAILED_RUNS_IN_A_ROW = "collector.failed_runs_in_a_row"
"""Runs of the source that failed one after another, this one included (0: it succeeded)."""
NAMES = frozenset(
    {
        ROWS,
        LATE_ROWS,
        PAGES,
        REQUESTS,
        THROTTLED,
        RETRIES,
        RUNS,
        RUN_DURATION,
        WATERMARK_LAG,
        SETTLED_LAG,
        FAILED_RUNS_IN_A_ROW,
    }
)
"""Every metric a run records (``tests/test_metrics.py`` holds a run to it)."""


class RunMetrics:
    """The instruments one process records every source's runs into."""

    def __init__(self, provider: MeterProvider | None = None) -> None:
        meter: Meter = (provider or get_meter_provider()).get_meter(METER)
        self._rows = meter.create_counter(ROWS, "{row}", "Rows read from Graph")
        self._late_rows = meter.create_counter(
            LATE_ROWS, "{row}", "Rows a settle read found that no blob of their day held"
        )
        self._pages = meter.create_counter(PAGES, "{page}", "Pages read from Graph")
        self._requests = meter.create_counter(REQUESTS, "{request}", "Graph requests by status")
        self._throttled = meter.create_counter(THROTTLED, "{request}", "Graph 429 answers")
        self._retries = meter.create_counter(RETRIES, "{request}", "Graph requests retried")
        self._runs = meter.create_counter(RUNS, "{run}", "Runs by outcome")
        self._duration = meter.create_histogram(RUN_DURATION, "s", "Seconds a source's run took")
        self._lag = meter.create_gauge(WATERMARK_LAG, "s", "How far the watermark is behind")
        self._settled_lag = meter.create_gauge(
            SETTLED_LAG, "s", "How far the settled watermark is behind"
        )
        self._failed_in_a_row = meter.create_gauge(
            FAILED_RUNS_IN_A_ROW, "{run}", "Failed runs one after another"
        )

    def record(self, report: SourceReport, now: datetime, failed_in_a_row: int) -> None:
        """Record one source's run, as ``report`` says, with lags as of ``now``.

        A run that yielded to another leaves the lags and the failure count to that one.
        """
        source = {"source": report.source, **({"tenant": report.tenant} if report.tenant else {})}
        self._runs.add(1, {**source, "outcome": report.status})
        if report.status == "yielded":
            return
        self._rows.add(report.rows, source)
        self._late_rows.add(report.late_rows, source)
        self._pages.add(report.pages, source)
        for status, count in report.stats.statuses.items():
            self._requests.add(count, {**source, "status": status})
        self._throttled.add(report.stats.throttled, source)
        self._retries.add(report.stats.retries, source)
        self._duration.record(report.seconds, {**source, "outcome": report.status})
        self._failed_in_a_row.set(failed_in_a_row, source)
        # A daily report's watermark is its settled one, a day and the lateness behind by
        # design: the settled-lag alert watches it, the watermark-lag alert would misfire.
        if report.watermark_after is not None and not SOURCES[report.source].read_once:
            self._lag.set((now - report.watermark_after).total_seconds(), source)
        if report.settled_after is not None:
            self._settled_lag.set((now - report.settled_after).total_seconds(), source)
