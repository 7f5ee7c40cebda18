"""Azure Functions entry point: a timer that runs one collection cycle."""

from __future__ import annotations

import logging
import os

import azure.functions as func

from collector.reports import log_report
from collector.runner import run_cycle
from collector.settings import load_settings
from collector.telemetry import run_metrics, send

app = func.FunctionApp()
log = logging.getLogger("collector")


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
    metrics, provider = run_metrics(os.environ, settings.identity_client_id, strict=False)
    try:
        report = await run_cycle(settings, metrics=metrics)
    finally:
        await send(provider)
    log_report(report, log)
    failed = [r.name for r in report.sources if r.status == "failed"]
    if failed:
        raise RuntimeError(f"collection failed for: {', '.join(failed)} (see the errors above)")
