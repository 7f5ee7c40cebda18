"""``python -m collector status``: every source's health, read from storage only."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

from ..archive.blobstore import BlobStore, open_store
from ..archive.layout import (
    day_prefix,
    is_day_manifest,
    last_run_name,
    manifest_day,
    manifest_prefix,
    revisit_of,
    state_blob_name,
)
from ..archive.state import state_from_document
from ..core.auth import consent_url
from ..core.lanes import Lane
from ..core.settings import Settings
from ..core.windows import expiry_horizon, usual_lag
from ..tenants.fanout import POISON, poisoned
from .health import SourceHealth, day_marks, judge

SLACK = timedelta(seconds=2)
STALE_AFTER = timedelta(hours=3)
"""How far beyond ``COLLECTOR_LAG_MINUTES`` a watermark may lag before the source is stale:
hourly runs leave it up to an hour behind, and a throttled or slow run may take another. (A
daily report's watermark may lag that much beyond its own usual lag, ``windows.usual_lag``.)"""


async def collect_health(
    settings: Settings, now: datetime, days: int, max_lag: timedelta | None = None
) -> list[SourceHealth]:
    """Judge every lane (each source, of each tenant) as of ``now`` over the last ``days``
    days."""
    limit = max_lag if max_lag is not None else settings.lag + STALE_AFTER

    def lane_limit(lane: Lane) -> timedelta:
        # A daily report's watermark waits for whole days past the lateness: that much more.
        usual = usual_lag(settings.lag, settings.lateness, lane.source.read_once)
        return limit + usual - settings.lag

    def consent(lane: Lane) -> str | None:
        if lane.tenant is None or settings.app_client_id is None:
            return None
        return consent_url(lane.tenant, settings.app_client_id, settings.authority)

    # Days before this may have been deleted by the archive's retention rule: expired, not
    # missing (they never make a lane stale: freshness is judged from the watermark).
    expired_before = expiry_horizon(now, settings.delete_after)
    gave_up = await poisoned(settings) if settings.tenants else {}
    async with open_store(settings.storage, settings.container) as store:
        health = list(
            await asyncio.gather(
                *(
                    _lane_health(
                        store, lane, now, days, lane_limit(lane), consent(lane), expired_before
                    )
                    for lane in settings.lanes
                )
            )
        )
    for lane_health in health:
        tenant = lane_health.lane.tenant
        if tenant is None or not gave_up:
            continue
        # Messages older than the lane's last successful run are history: it recovered.
        since = lane_health.last_ok()
        # (Storage stamps whole seconds, by its own clock: a little slack.)
        recent = [t for t in gave_up.get(tenant, []) if since is None or t > since - SLACK]
        if recent:
            lane_health.problems.append(
                f"{len(recent)} message(s) for this tenant in {POISON}: the host gave up "
                "on them after repeated failures (the last run's error says why)"
            )
    return health


async def _lane_health(
    store: BlobStore,
    lane: Lane,
    now: datetime,
    days: int,
    max_lag: timedelta,
    consent: str | None,
    expired_before: date | None,
) -> SourceHealth:
    document, _ = await store.read_json(state_blob_name(lane))
    state = state_from_document(document)
    last_run, _ = await store.read_json(last_run_name(lane))
    first = now.date() - timedelta(days=days - 1)
    manifests = await store.list_with_metadata(manifest_prefix(lane))
    settled = {manifest_day(name) for name in manifests if is_day_manifest(name)}
    window = [first + timedelta(days=i) for i in range(days)]
    archived = {
        day
        for day, has in zip(
            window,
            await asyncio.gather(*(store.has_blobs(day_prefix(lane, d)) for d in window)),
            strict=True,
        )
        if has
    }
    marks = day_marks(first, now.date(), settled, archived, state.watermark, expired_before)
    health = judge(lane, state, last_run, marks, now, max_lag, consent)
    if lane.source.versioned:
        revisits = [n for n in manifests if (r := revisit_of(n)) is not None and r[0] >= first]
        documents = await asyncio.gather(*(store.read_json(n) for n in revisits))
        health.revisions = sum(int(d.get("revised", 0)) for d, _ in documents if d)
    return health
