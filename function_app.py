"""Azure Functions entry point: a timer that runs one collection cycle."""

from __future__ import annotations

import functools
import logging
import os
from typing import TYPE_CHECKING

import azure.functions as func

from collector.metrics import RunMetrics
from collector.reports import log_report
from collector.runner import run_cycle
from collector.settings import load_settings
from collector.telemetry import flush, run_metrics

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider

app = func.FunctionApp()
log = logging.getLogger("collector")


@functools.cache
def _metrics(client_id: str | None) -> tuple[RunMetrics, MeterProvider | None]:
    """One exporter per worker process, made at its first invocation (not at import: bad
    settings must fail an invocation with their message, not the indexing of the app)."""
    return run_metrics(os.environ, client_id)


@app.timer_trigger(
    schedule="%COLLECTOR_SCHEDULE%",
    arg_name="timer",
    run_on_startup=False,
    use_monitor=True,
)
async def collect_call_logs(timer: func.TimerRequest) -> None:
    """Collect every configured source; fail the invocation if any source failed."""
    if timer.past_due:
        log.warning("timer is past due: a previous cycle ran late or the host was down")
    settings = load_settings(os.environ)
    metrics, provider = _metrics(settings.identity_client_id)
    try:
        report = await run_cycle(settings, metrics=metrics)
    finally:
        await flush(provider)
    log_report(report, log)
    failed = [r.source for r in report.sources if r.status == "failed"]
    if failed:
        raise RuntimeError(f"collection failed for: {', '.join(failed)} (see the errors above)")
