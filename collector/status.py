"""``python -m collector status``: every source's health, read from storage only."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from .blobstore import BlobStore, open_store
from .health import SourceHealth, day_marks, judge
from .layout import day_prefix, last_run_name, manifest_day, manifest_prefix, state_blob_name
from .settings import Settings
from .sources import Source
from .state import state_from_document

STALE_AFTER = timedelta(hours=3)
"""How far beyond ``COLLECTOR_LAG_MINUTES`` a watermark may lag before the source is stale:
hourly runs leave it up to an hour behind, and a throttled or slow run may take another."""


async def collect_health(
    settings: Settings, now: datetime, days: int, max_lag: timedelta | None = None
) -> list[SourceHealth]:
    """Judge every configured source as of ``now`` over the last ``days`` days."""
    limit = max_lag if max_lag is not None else settings.lag + STALE_AFTER
    async with open_store(settings.storage, settings.container) as store:
        return list(
            await asyncio.gather(
                *(_source_health(store, s, now, days, limit) for s in settings.sources)
            )
        )


async def _source_health(
    store: BlobStore, source: Source, now: datetime, days: int, max_lag: timedelta
) -> SourceHealth:
    document, _ = await store.read_json(state_blob_name(source))
    state = state_from_document(document)
    last_run, _ = await store.read_json(last_run_name(source))
    first = now.date() - timedelta(days=days - 1)
    manifests = await store.list_with_metadata(manifest_prefix(source))
    settled = {manifest_day(name) for name in manifests}
    window = [first + timedelta(days=i) for i in range(days)]
    archived = {
        day
        for day, has in zip(
            window,
            await asyncio.gather(*(store.has_blobs(day_prefix(source, d)) for d in window)),
            strict=True,
        )
        if has
    }
    marks = day_marks(first, now.date(), settled, archived, state.watermark)
    return judge(source.name, state, last_run, marks, now, max_lag)
