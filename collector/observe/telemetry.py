"""Where the metrics go: Application Insights when ``APPLICATIONINSIGHTS_CONNECTION_STRING``
is set (in Azure: always), nowhere otherwise.

Only ``azure-monitor-opentelemetry-exporter`` and the OpenTelemetry SDK, imported only when
configured (about 165 ms of a cold start, measured): the Azure Monitor distro would add
instrumentations of web frameworks this app has none of, and tracing and logging pipelines
the Functions host already provides. The exporter signs in with Entra ID (the
managed identity in Azure); Application Insights accepts nothing else (``DisableLocalAuth``).

Each run gets its own provider, shut down at its end: a gauge (a watermark's lag) is then sent
once, by the run that measured it, never again later by a long-lived worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry.metrics import NoOpMeterProvider

from ..core.auth import in_azure
from ..core.errors import ConfigError
from .metrics import RunMetrics

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider

log = logging.getLogger("collector")

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
EXPORT_SECONDS = 60.0
"""How often metrics leave during a long run; each run also sends them at its end."""
SEND_TIMEOUT_MILLIS = 15_000
QUIET = (
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
)
"""The exporter's own background jobs, off unless set otherwise: statistics about itself sent
to Microsoft and to this resource, and an hourly poll of Microsoft for configuration. The app
sends its metrics and nothing else."""


def azure_monitor_provider(
    environ: Mapping[str, str], client_id: str | None
) -> MeterProvider | None:
    """A meter provider exporting to Application Insights with an Entra ID token, or None
    when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is not set.

    ``client_id``: the user-assigned managed identity to sign in with (``AZURE_CLIENT_ID``).
    Raises ``ConfigError`` for a connection string the exporter cannot use.
    """
    connection = environ.get(CONNECTION_STRING, "").strip()
    if not connection:
        return None
    # Imported here: a process that exports nothing does not pay for them.
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
    from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    for name in QUIET:  # the exporter reads them from the process environment
        os.environ.setdefault(name, "true")
    credential = (
        ManagedIdentityCredential(client_id=client_id)
        if in_azure(environ)
        else DefaultAzureCredential(
            managed_identity_client_id=client_id, exclude_interactive_browser_credential=True
        )
    )
    try:
        exporter = AzureMonitorMetricExporter(connection_string=connection, credential=credential)
    except ValueError as exc:
        raise ConfigError(
            CONNECTION_STRING,
            connection,
            f"{exc} (the Application Insights resource's connection string)",
        ) from None
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=EXPORT_SECONDS * 1000)
    return MeterProvider(metric_readers=[reader], shutdown_on_exit=False)


def run_metrics(
    environ: Mapping[str, str], client_id: str | None, *, strict: bool = True
) -> tuple[RunMetrics, MeterProvider | None]:
    """The instruments of one run and the provider behind them (None: the metrics go
    nowhere); see ``azure_monitor_provider``. Not ``strict`` (the Function): a connection
    string the exporter refuses is logged as an error and the run goes on without metrics,
    rather than stopping the archive for its telemetry."""
    try:
        provider = azure_monitor_provider(environ, client_id)
    except ConfigError as exc:
        if strict:
            raise
        log.error("metrics are off: %s", exc)
        provider = None
    return RunMetrics(provider or NoOpMeterProvider()), provider


async def send(provider: MeterProvider | None) -> None:
    """Send what the run recorded and shut ``provider`` down, off the event loop (a Function
    instance may be frozen right after). A failure is logged, never raised."""
    if provider is None:
        return
    try:
        await asyncio.to_thread(provider.shutdown, SEND_TIMEOUT_MILLIS)
    except Exception as exc:  # telemetry must never fail a collection
        log.warning("could not send metrics: %s", exc)


def quiet_sdk_logs() -> None:
    """Keep the Azure SDKs' request-by-request INFO logs out of the run's log: a run makes
    dozens of storage requests, and in Azure every INFO record is ingested and billed
    (docs/cost.md measured 54-83 of them an invocation). Warnings and errors stay."""
    logging.getLogger("azure").setLevel(logging.WARNING)
