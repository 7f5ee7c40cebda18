"""Pure bookkeeping of a source's progress: where a run begins, what it must read again, and
how far the watermarks move over the windows it finished.

Each function takes the current ``SourceState`` and returns the changes to make to it (a
dict for ``StateBlob.apply``), so the rules are tested without storage.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..archive.state import PROVISIONAL, SETTLE, Claim, SourceState
from ..core.windows import Window, floor_to_midnight


def begin(state: SourceState, start: datetime, horizon: datetime | None) -> dict[str, Any]:
    """Changes that set a run's starting points: a first run starts both watermarks at
    ``start``; settling switched on later starts at the watermark's midnight (earlier days
    stay provisional); claims the settled watermark has passed are dropped (their days are
    final)."""
    changes: dict[str, Any] = {}
    settled = state.settled
    if state.watermark is None:
        changes["watermark"] = start
        settled = changes["settled"] = start if horizon is not None else None
    elif horizon is not None and settled is None:
        settled = changes["settled"] = floor_to_midnight(state.watermark)
    kept = tuple(
        c
        for c in state.claims
        if c.kind == PROVISIONAL and (settled is None or c.window.end > settled)
    )
    if kept != state.claims:
        # An unfinished settle window is not redone as such: the settle phase starts again
        # at the settled watermark, with small windows, so a huge one cannot wedge a source.
        changes["claims"] = kept
    return changes


def to_redo(state: SourceState) -> list[Window]:
    """Provisional windows a run that died left claimed and not committed whole: read first,
    exactly, so a stalled run's blobs and the redo's have the same names."""
    return sorted(c.window for c in state.claims if c.kind == PROVISIONAL and not c.committed)


def provisional_start(state: SourceState, horizon: datetime | None) -> datetime:
    """Where this run's new provisional windows start: at the watermark (the horizon, if
    later: days before it are settled instead), after the windows already read this run."""
    assert state.watermark is not None
    start = state.watermark if horizon is None else max(state.watermark, horizon)
    for claim in sorted(state.claims, key=lambda c: c.window):
        if claim.kind == PROVISIONAL and claim.window.start == start:
            start = claim.window.end  # redone but not yet passed: never overlap its blobs
    return start


def claim(state: SourceState, kind: str, window: Window) -> dict[str, Any]:
    """Changes that claim ``window``: a run that dies from here on leaves it to be redone."""
    new = Claim(kind, window)
    return {} if new in state.claims else {"claims": (*state.claims, new)}


def advance(state: SourceState, finished: Set[Claim]) -> dict[str, Any]:
    """Changes that move the settled watermark over the ``finished`` settle windows that
    follow it without a gap, the watermark to at least there, then over finished
    provisional windows. Finished windows the watermark cannot pass yet (an earlier one is
    unfinished) stay claimed, marked committed: no run reads them again."""
    settled, watermark = state.settled, state.watermark
    assert watermark is not None
    claims = sorted(state.claims, key=lambda c: c.window)
    for c in list(claims):
        if c.kind == SETTLE and c in finished and c.window.start == settled:
            settled = c.window.end
            claims.remove(c)
    if settled is not None and settled > watermark:
        watermark = settled
    for c in list(claims):
        if c.kind != PROVISIONAL or not (c.committed or c in finished):
            continue
        if c.window.start == watermark:
            watermark = c.window.end
            claims.remove(c)
        elif c.window.end <= watermark:
            claims.remove(c)  # a settle window read it again meanwhile
    marked = tuple(
        replace(c, committed=True) if c.kind == PROVISIONAL and c in finished else c for c in claims
    )
    return {"settled": settled, "watermark": watermark, "claims": marked}
