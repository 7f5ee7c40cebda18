"""One collection cycle: for every source, read again what a dead run left, then settle old
days and read the new windows side by side.

Per source, under a lease (one live run per source):

1. provisional windows a run that died left claimed are read again, exactly (``watermarks``);
2. **settle**: days older than the lateness horizon are read again in windows of up to 89
   days (``plans.SettlePlan``); only rows no blob of the day holds yet are written, and a
   manifest marks each day final (``settling``);
3. **provisional**: ``[watermark, now - lag)`` is read in windows of at most one day
   (``plans.ProvisionalPlan``), each written as ``part-<window>.jsonl`` blobs.

Every window is claimed in the state first, read into blobs (``reading``), committed, and
only then passed by the watermark (``watermarks.advance``). ``scheduler`` keeps several
windows in flight within the run's time limits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from azure.core.exceptions import AzureError

from ..archive.blobstore import BlobStore, open_store
from ..archive.layout import last_run_name, part_blob_name, state_blob_name
from ..archive.lease import SourceLease
from ..archive.partitions import CommittedBlob
from ..archive.state import PROVISIONAL, SETTLE, Claim, SourceState, StateBlob, state_from_document
from ..core.auth import (
    CredentialFactory,
    TokenProvider,
    credential_factory,
    tenant_credential_factory,
)
from ..core.errors import CollectorError, ConfigError, StateConflictError
from ..core.lanes import Lane, lanes, tenant_lanes
from ..core.settings import MAX_HISTORY, Settings, check_start
from ..core.timefmt import format_instant
from ..core.windows import Window, floor_to_midnight, history_edge, run_bounds
from ..graph.budget import CALL_RECORDS_PER_APP, RequestBudget, records_span
from ..graph.client import GraphClient, RetryPolicy, send_tracing
from ..graph.pace import Pace
from ..observe.metrics import RunMetrics
from ..observe.progress import LogView, SourceProgress, View
from ..observe.reports import RunReport, SourceReport, failed_in_a_row
from . import watermarks
from .plans import ProvisionalPlan, SettlePlan
from .reading import WindowReader
from .records import RecordRun
from .scheduler import Deadlines, Scheduler, all_or_cancel
from .settling import Settlement

log = logging.getLogger("collector")


async def run_cycle(
    settings: Settings,
    now: datetime | None = None,
    *,
    tenants: tuple[str, ...] | None = None,
    retry: RetryPolicy | None = None,
    graph_credentials: CredentialFactory | None = None,
    storage_credentials: CredentialFactory | None = None,
    budget_period: float = 60.0,
    budget_margin: float = 1.0,
    metrics: RunMetrics | None = None,
    progress: View | None = None,
) -> RunReport:
    """Collect every lane up to ``now - lag`` (``now`` defaults to the clock): each configured
    source, of the identity's own tenant or, in multi-tenant mode, of each tenant of
    ``tenants`` (default: ``COLLECTOR_TENANTS``), every tenant with its own token and budget.

    Raises ``ConfigError``, before anything is requested or written, for a
    ``COLLECTOR_START`` Graph cannot serve where every lane would begin.
    ``budget_period`` is the period the request limits apply to: 60 s, except in benchmarks
    that scale Graph's minute down; ``budget_margin`` widens it for arrival jitter.
    ``metrics``: where each lane's run is recorded (default: the global meter provider,
    which records nothing unless one is set). ``progress``: how progress is shown while the
    run works (default: ``LogView``, a line per lane every 30 s).
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    chosen = settings.tenants if tenants is None else tenants
    every = tenant_lanes(settings.sources, chosen)
    shown: list[SourceProgress] = []
    async with open_store(settings.storage, settings.container, storage_credentials) as store:
        refused = await _refused_starts(settings, every, store, moment)
        await store.ensure_container()
        async with aiohttp.ClientSession(trace_configs=[send_tracing()]) as session:
            tenant_run = functools.partial(
                _collect_tenant,
                settings,
                moment,
                session,
                store,
                refused,
                shown,
                retry=retry,
                budget_period=budget_period,
                budget_margin=budget_margin,
            )
            async with _showing(progress or LogView(), shown):
                per_tenant = await asyncio.gather(
                    *(
                        tenant_run(t, graph_credentials or _graph_credentials(settings, t))
                        for t in chosen or (None,)
                    )
                )
        reports = [report for tenant_reports in per_tenant for report in tenant_reports]
        await _record_runs(store, every, reports, moment, metrics or RunMetrics())
    return RunReport(reports)


def _graph_credentials(settings: Settings, tenant: str | None) -> CredentialFactory:
    """The identity's own credential, or in a customer tenant the multi-tenant app's."""
    if tenant is None:
        return credential_factory(settings.identity_client_id)
    if settings.app_client_id is None:
        raise ConfigError("COLLECTOR_APP_CLIENT_ID", None, "required to collect other tenants")
    return tenant_credential_factory(tenant, settings.app_client_id, settings.identity_client_id)


async def _collect_tenant(
    settings: Settings,
    now: datetime,
    session: aiohttp.ClientSession,
    store: BlobStore,
    refused: dict[Lane, str],
    shown: list[SourceProgress],
    tenant: str | None,
    credentials: CredentialFactory,
    *,
    retry: RetryPolicy | None,
    budget_period: float,
    budget_margin: float,
) -> list[SourceReport]:
    """Collect every source of one tenant: Graph's request limits apply per tenant, so each
    tenant has its own budget (and its own token)."""
    budget = RequestBudget(
        settings.requests_per_minute_per_log,
        settings.requests_per_minute,
        budget_period,
        margin=budget_margin,
        records_scale=settings.records_period_scale,
    )
    cycle = _Cycle(settings, now, budget.span, shown)
    tokens = TokenProvider(credentials, settings.graph_scope)
    graph = GraphClient(
        session,
        tokens,
        settings.graph_endpoint,
        timeout=settings.graph_timeout,
        retry=retry,
        budget=budget,
    )
    try:
        return list(
            await asyncio.gather(
                *(
                    cycle.collect(lane, graph, store, refused.get(lane))
                    for lane in lanes(settings.sources, tenant)
                )
            )
        )
    finally:
        await tokens.close()


async def _refused_starts(
    settings: Settings, every: tuple[Lane, ...], store: BlobStore, now: datetime
) -> dict[Lane, str]:
    """The lanes that would begin at a ``COLLECTOR_START`` Graph cannot serve, with why.

    Reads only. When every lane would (a new deployment), raises ``ConfigError``: the run
    is refused before anything is written. Otherwise those lanes fail and the others,
    which ignore the start once they have a watermark, are collected as usual.
    """
    try:
        check_start(settings.start, now)
    except ConfigError as exc:
        new = [
            lane
            for lane in every
            if state_from_document((await store.read_json(state_blob_name(lane)))[0]).watermark
            is None
        ]
        if len(new) == len(every):
            raise
        return dict.fromkeys(new, str(exc))
    return {}


async def _record_runs(
    store: BlobStore,
    every: tuple[Lane, ...],
    reports: list[SourceReport],
    now: datetime,
    metrics: RunMetrics,
) -> None:
    """Leave how each lane's run went: its last-run record, for ``status`` (a yielding run
    leaves the owner's), and its metrics, for the alerts. Nothing here fails the run."""
    for lane, report in zip(every, reports, strict=True):
        in_a_row = 0
        if report.status == "failed":
            previous: dict[str, Any] | None = None
            try:
                previous, _ = await store.read_json(last_run_name(lane))
            except Exception as exc:  # unreadable: count this failure alone
                log.warning("%s: could not read the last run's record: %s", lane.name, exc)
            in_a_row = failed_in_a_row(previous)
        try:
            if report.status != "yielded":
                await store.put_json(last_run_name(lane), report.record(now, in_a_row))
        except AzureError as exc:
            log.warning("%s: could not record the run for status: %s", lane.name, exc)
        try:
            metrics.record(report, now, in_a_row)
        except Exception as exc:  # telemetry must never fail a collection
            log.warning("%s: could not record the run's metrics: %s", lane.name, exc)


@asynccontextmanager
async def _showing(view: View, sources: list[SourceProgress]) -> AsyncIterator[None]:
    """Show ``sources``' progress with ``view`` every ``view.interval`` seconds meanwhile."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(view.interval)
            view.show(sources)

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        failure = (await asyncio.gather(ticker, return_exceptions=True))[0]
        try:
            view.close(sources)
        except Exception as exc:
            failure = exc
        if not isinstance(failure, asyncio.CancelledError | None):  # progress never fails a run
            log.warning("progress display failed: %s", failure)


class _Cycle:
    """What every source of one cycle shares: settings, 'now', run id and time limits."""

    def __init__(
        self,
        settings: Settings,
        now: datetime,
        budget_span: float,
        progress: list[SourceProgress],
    ) -> None:
        self.settings = settings
        self.now = now
        self.run_id = uuid.uuid4().hex[:12]
        self.deadlines = Deadlines.after(settings.time_budget)
        self.budget_span = budget_span
        """Seconds each span of the request budget lasts (``RequestBudget.span``)."""
        self.progress = progress
        """Every lane's progress, as the lanes begin (shared by the run's tenants)."""

    async def collect(
        self, lane: Lane, graph: GraphClient, store: BlobStore, refused: str | None = None
    ) -> SourceReport:
        """Collect one lane; errors end this lane only and are reported, not raised.
        ``refused``: why the settings do not let this lane start (it is left alone)."""
        report = SourceReport(lane.source.name, lane.tenant)
        if refused is not None:
            report.status, report.error = "failed", refused
            log.error("%s: failed: %s", lane.name, refused)
            return report
        began = time.monotonic()
        lease = SourceLease(store, lane, self.run_id, self.settings.lease_seconds)
        try:
            async with lease.held() as state_blob:
                await _SourceRun(self, lane, graph, store, lease, state_blob, report).run()
        except StateConflictError as exc:
            report.status = "yielded"
            report.error = f"{exc}; this run leaves {lane.name} alone"
            log.warning("%s: %s", lane.name, report.error)
        except (CollectorError, AzureError) as exc:
            report.status = "failed"
            report.error = " ".join(str(exc).split())  # one line: Entra ID's span several
            log.error("%s: failed: %s", lane.name, report.error)
        except Exception as exc:  # a bug must not hide the other lanes' results
            report.status = "failed"
            report.error = f"unexpected {type(exc).__name__}: {exc}"
            log.exception("%s: unexpected failure", lane.name)
        report.seconds = time.monotonic() - began
        return report


class _SourceRun:
    """One cycle's work on one source: the order of the steps, and each window's claim,
    read or settle, and advance."""

    def __init__(
        self,
        cycle: _Cycle,
        lane: Lane,
        graph: GraphClient,
        store: BlobStore,
        lease: SourceLease,
        state_blob: StateBlob,
        report: SourceReport,
    ) -> None:
        settings = cycle.settings
        self._cycle = cycle
        self._settings = settings
        self._lane = lane
        self._store = store
        self._state_blob = state_blob
        self._confirm_lease = lease.confirm
        self._report = report
        self._graph = graph
        self._finished: set[Claim] = set()
        self._labels: dict[Window, str] = {}
        per_log = min(
            settings.requests_per_minute_per_log,
            # The app budget is shared by the call logs only (call records have their own).
            settings.requests_per_minute
            / max(1, sum(not s.records_budget for s in settings.sources)),
        )
        self._pace = Pace(
            state_blob.current.rows_per_day, per_log / cycle.budget_span, cycle.deadlines.hard
        )
        self._scheduler = Scheduler(
            cycle.deadlines, self._pace, settings.windows_in_flight, report, settings.time_budget
        )
        rate = per_log / cycle.budget_span
        if lane.source.records_budget:  # call records have limits of their own
            span = records_span(CALL_RECORDS_PER_APP, settings.records_period_scale)
            rate = CALL_RECORDS_PER_APP.count / span
        self._progress = SourceProgress(report, self._pace, rate)
        cycle.progress.append(self._progress)
        self._reader = WindowReader(
            graph,
            store,
            lane,
            self._pace,
            report,
            lease.confirm,
            self._scheduler.widen,
        )

    async def run(self) -> None:
        settings = self._settings
        bounds = run_bounds(
            self._cycle.now,
            settings.lag,
            settings.lateness,
            self._start(),
            self._lane.source.read_once,
        )
        if self._lane.source.expand is not None:  # records read whole: in hour slices
            cycle = self._cycle
            await RecordRun(
                settings,
                cycle.now,
                cycle.run_id,
                cycle.deadlines,
                self._lane,
                self._graph,
                self._store,
                self._state_blob,
                self._report,
                self._progress,
                self._confirm_lease,
            ).run(bounds.start)
            return
        start, end, horizon = bounds.start, bounds.end, bounds.horizon
        self._report.watermark_before = self._state_blob.current.watermark
        state = await self._state_blob.apply(lambda st: watermarks.begin(st, start, horizon))
        self._passed(state)
        redo = watermarks.to_redo(state)
        if redo:
            log.info("%s: re-reading %d unfinished window(s)", self._lane.name, len(redo))
            self._progress.plan_windows(redo)
            await self._scheduler.run(iter([*redo, None]).__next__, self._provisional)
        # Both phases at once: settling [S, horizon) and reading [max(W, horizon), now - lag)
        # never touch the same days, and the tail of one fills the budget the other leaves.
        phases = [self._provisional_phase(end, horizon)]
        if horizon is not None:
            phases.append(self._settle_phase(horizon))
        await all_or_cancel(phases)
        if self._pace.rows_per_day != self._state_blob.current.rows_per_day:
            await self._state_blob.apply(lambda _: {"rows_per_day": self._pace.rows_per_day})

    def _start(self) -> datetime | None:
        """Where this lane begins if it has no watermark: ``COLLECTOR_START``, or the oldest
        whole day Graph still has of a source it keeps a short while (call records: 30
        days), saying so. A lane whose watermark fell behind that edge is told what is lost."""
        source, now = self._lane.source, self._cycle.now
        start = self._settings.start
        if source.history >= MAX_HISTORY:  # the call logs: check_start refuses older starts
            return start
        edge = history_edge(now, source.history)
        current = self._state_blob.current
        if current.watermark is None and start is not None and start < edge:
            log.warning(
                "%s: COLLECTOR_START %s is more than %d days back, and Graph keeps no older "
                "%s: starting at %s",
                self._lane.name,
                format_instant(start),
                source.history.days,
                source.name,
                format_instant(edge),
            )
            return edge
        behind = current.settled if current.settled is not None else current.watermark
        if behind is not None and behind < floor_to_midnight(edge):
            log.error(
                "%s: days from %s to %s are older than Graph keeps %s (%d days): only what "
                "Graph still has of them is archived",
                self._lane.name,
                behind.date().isoformat(),
                (edge - timedelta(days=1)).date().isoformat(),
                source.name,
                source.history.days,
            )
        return start

    async def _settle_phase(self, horizon: datetime) -> None:
        if not self._to_settle(horizon):
            return
        settled = self._state_blob.current.settled
        assert settled is not None
        plan = SettlePlan(
            settled,
            horizon,
            self._settings.windows_in_flight,
            one_day=self._lane.source.read_once,
        )
        self._progress.plan_settle(settled, horizon)

        async def settle(window: Window) -> None:
            plan.finished(await self._settle(window))

        await self._scheduler.run(
            lambda: plan.next_window(self._pace.dense), settle, lambda: plan.width(self._pace.dense)
        )

    async def _provisional_phase(self, end: datetime, horizon: datetime | None) -> None:
        start = watermarks.provisional_start(self._state_blob.current, horizon)
        plan = ProvisionalPlan(start, end)
        self._progress.plan_windows(plan.windows)
        if not plan.windows and not self._to_settle(horizon):
            log.info("%s: up to date (watermark %s)", self._lane.name, format_instant(start))
        for window in plan.windows:
            self._labels[window] = plan.label(window)
        await self._scheduler.run(plan.next_window, self._provisional)

    def _to_settle(self, horizon: datetime | None) -> bool:
        """True when days before ``horizon`` are still to be settled."""
        settled = self._state_blob.current.settled
        return horizon is not None and settled is not None and settled < horizon

    async def _provisional(self, window: Window) -> None:
        """Claim, read and commit one provisional window, then advance the watermark."""
        await self._state_blob.apply(lambda st: watermarks.claim(st, PROVISIONAL, window))
        blobs, pages = await self._reader.read(
            window, lambda day: part_blob_name(self._lane, day, window)
        )
        await self._advance(Claim(PROVISIONAL, window))
        self._progress.read(window, provisional=True)
        self._done(window, self._labels.get(window, ""), blobs, pages)

    async def _settle(self, window: Window) -> int:
        """Claim and settle one window's days (see ``settling``); return the pages read."""
        await self._state_blob.apply(lambda st: watermarks.claim(st, SETTLE, window))
        settlement = Settlement(self._store, self._lane, window)
        blobs, pages = await self._reader.read(
            window,
            settlement.name_for,
            settlement.keep,
            settlement.blob_metadata,
            meanwhile=settlement.prepare,
        )
        await self._confirm_lease()  # a stalled run learns here that its source moved on
        days = await settlement.finish(blobs, self._settings.lateness)
        self._report.settled_days += days
        self._report.late_rows += settlement.late_rows(blobs)
        self._report.changed_rows += sum(d.changed for d in settlement.days.values())
        await self._advance(Claim(SETTLE, window))
        self._progress.read(window, provisional=False)
        self._done(window, " (settle)", blobs, pages)
        return pages

    async def _advance(self, finished: Claim) -> None:
        self._finished.add(finished)
        state = await self._state_blob.apply(lambda st: watermarks.advance(st, self._finished))
        self._passed(state)

    def _passed(self, state: SourceState) -> None:
        """Report where the watermarks stand; with settling off, a settled watermark left
        from before stays behind for good and is not reported (its lag would only grow)."""
        self._report.watermark_after = state.watermark
        settling = self._settings.lateness > timedelta(0)  # as ``windows.settle_horizon``
        self._report.settled_after = state.settled if settling else None

    def _done(self, window: Window, label: str, blobs: list[CommittedBlob], pages: int) -> None:
        self._report.windows += 1
        self._report.blobs += sum(b.created for b in blobs)
        log.info(
            "%s: window%s %s committed: %d rows, %d pages (run so far: %d rows, %d requests)",
            self._lane.name,
            label,
            window,
            sum(b.rows for b in blobs),
            pages,
            self._report.rows,
            self._report.stats.requests,
        )
