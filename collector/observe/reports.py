"""What a run did, per source and in all: the summary lines of the CLI and the Function."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..core.sources import SOURCES
from ..core.timefmt import format_instant
from ..graph.client import RequestStats


@dataclass
class SourceReport:
    """What one cycle did for one source (of one tenant, in multi-tenant mode)."""

    source: str
    tenant: str | None = None
    status: Literal["ok", "failed", "yielded"] = "ok"
    """``ok``; ``failed`` (error set, watermark kept); ``yielded`` (another run owns the source)."""
    windows: int = 0
    settled_days: int = 0
    rows: int = 0
    """Rows read from Graph (provisional and settle reads alike)."""
    late_rows: int = 0
    """Rows a settle read found that no blob of their day held yet: written."""
    changed_rows: int = 0
    """Rows a settle read found with an archived key but other content: not written."""
    pages: int = 0
    blobs: int = 0
    out_of_time: bool = False
    """True when the time budget stopped the run at a window boundary; the next run goes on."""
    cut_off: int = 0
    """Windows still unfinished at the hard time limit, stopped (read again next run)."""
    stats: RequestStats = field(default_factory=RequestStats)
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    settled_after: datetime | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """The lane's name in logs: ``pstn``, or ``pstn@<tenant>``."""
        return self.source if self.tenant is None else f"{self.source}@{self.tenant}"

    def summary(self) -> str:
        """One line for logs and the CLI."""

        def stamp(moment: datetime | None) -> str:
            return "none" if moment is None else format_instant(moment)

        line = (
            f"{self.name}: {self.status} windows={self.windows} settled_days={self.settled_days} "
            f"rows={self.rows} late_rows={self.late_rows} pages={self.pages} "
            f"requests={self.stats.requests} retries={self.stats.retries} "
            f"throttled={self.stats.throttled} blobs={self.blobs} "
            f"watermark {stamp(self.watermark_before)} -> {stamp(self.watermark_after)} "
            f"settled {stamp(self.settled_after)} ({self.seconds:.1f}s)"
        )
        if self.changed_rows and SOURCES[self.source].versioned:
            line += f" {self.changed_rows} record(s) came back changed: archived as revisions"
        elif self.changed_rows:
            line += f" {self.changed_rows} row(s) came back changed: the archived ones are kept"
        if self.cut_off:
            line += f" {self.cut_off} window(s) stopped at the hard time limit: read again next run"
        elif self.out_of_time:
            line += " time budget reached: the next run continues"
        return f"{line} error: {self.error}" if self.error else line

    def record(self, at: datetime, failed_in_a_row: int = 0) -> dict[str, object]:
        """The source's last-run record (``_state/<source>.run.json``), read by ``status``;
        ``failed_in_a_row``: failed runs one after another, this one included."""
        return {
            "at": format_instant(at),
            "outcome": self.status,
            "failedInARow": failed_in_a_row,
            "rows": self.rows,
            "lateRows": self.late_rows,
            "windows": self.windows,
            "requests": self.stats.requests,
            "retries": self.stats.retries,
            "throttled": self.stats.throttled,
            "seconds": round(self.seconds, 1),
            "error": self.error,
        }


def failed_in_a_row(previous: Mapping[str, Any] | None) -> int:
    """How many runs of a source have failed one after another, counting a failure now,
    from the source's previous last-run record (None: none, or unreadable)."""
    if not previous or previous.get("outcome") != "failed":
        return 1
    before = previous.get("failedInARow")
    # A record without the count (or with a bad one) still says one failure came before.
    return 1 + (before if isinstance(before, int) and before > 0 else 1)


@dataclass
class RunReport:
    """What one cycle did for every source."""

    sources: list[SourceReport]

    @property
    def ok(self) -> bool:
        """True when no source failed."""
        return all(r.status != "failed" for r in self.sources)


def log_report(report: RunReport, logger: logging.Logger) -> None:
    """Log one summary line per source: INFO when it succeeded, ERROR when it failed."""
    for source in report.sources:
        logger.log(logging.ERROR if source.status == "failed" else logging.INFO, source.summary())
