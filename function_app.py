"""Azure Functions entry point: a timer that runs one collection cycle."""

from __future__ import annotations

import logging
import os

import azure.functions as func

from collector.reports import log_report
from collector.runner import run_cycle
from collector.settings import load_settings

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
    report = await run_cycle(settings)
    log_report(report, log)
    failed = [r.source for r in report.sources if r.status == "failed"]
    if failed:
        raise RuntimeError(f"collection failed for: {', '.join(failed)} (see the errors above)")
