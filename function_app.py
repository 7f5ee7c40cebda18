"""Azure Functions entry points: a timer that runs one collection cycle (single-tenant), or
queues one message per tenant that a queue trigger collects (multi-tenant)."""

from __future__ import annotations

import logging
import os

import azure.functions as func

from collector.core.settings import Settings, load_settings
from collector.observe.reports import log_report
from collector.observe.telemetry import quiet_sdk_logs, run_metrics, send
from collector.run.runner import run_cycle
from collector.tenants.fanout import QUEUE, enqueue_tenants, tenant_of

app = func.FunctionApp()
log = logging.getLogger("collector")
quiet_sdk_logs()


@app.timer_trigger(
    schedule="%COLLECTOR_SCHEDULE%",
    arg_name="timer",
    run_on_startup=False,
    use_monitor=True,
)
async def collect_call_logs(timer: func.TimerRequest) -> None:
    """Collect every configured source, or in multi-tenant mode queue every tenant; fail the
    invocation if any source failed."""
    if timer.past_due:
        log.warning("timer is past due: a previous cycle ran late or the host was down")
    settings = load_settings(os.environ)
    if settings.tenants:
        queued = await enqueue_tenants(settings)
        log.info("queued %d tenant(s) on %s for collect_tenant", queued, QUEUE)
        return
    await _collect(settings)


@app.queue_trigger(arg_name="message", queue_name=QUEUE, connection="AzureWebJobsStorage")
async def collect_tenant(message: func.QueueMessage) -> None:
    """Collect one tenant's sources (multi-tenant mode); a failure leaves the message to the
    host's retries and, in the end, its poison queue."""
    settings = load_settings(os.environ)
    tenant = tenant_of(message.get_body())
    if tenant not in settings.tenants:
        log.warning("tenant %s is not in COLLECTOR_TENANTS any more: message dropped", tenant)
        return
    log.info("collecting tenant %s (delivery %s)", tenant, message.dequeue_count)
    await _collect(settings, (tenant,))


async def _collect(settings: Settings, tenants: tuple[str, ...] | None = None) -> None:
    metrics, provider = run_metrics(os.environ, settings.identity_client_id, strict=False)
    try:
        report = await run_cycle(settings, tenants=tenants, metrics=metrics)
    finally:
        await send(provider)
    log_report(report, log)
    failed = [r.name for r in report.sources if r.status == "failed"]
    if failed:
        raise RuntimeError(f"collection failed for: {', '.join(failed)} (see the errors above)")
