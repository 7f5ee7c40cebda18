"""Blob names: where data rows and the collector's own state live in the container.

Data is Hive-partitioned by the row's UTC event date so Spark, DuckDB, Synapse, Fabric and
ADX prune by path. Everything that is not data sits under a first segment starting with
``_``, which those readers skip.
"""

from __future__ import annotations

import re
from datetime import date

from .sources import Source
from .timefmt import InstantParseError, parse_instant
from .windows import Window

_PART = re.compile(r"part-(\d{8}T\d{6}Z)-(\d{8}T\d{6}Z)\.jsonl")

STATE_PREFIX = "_state/"
MANIFEST_PREFIX = "_manifests/"
PART_PREFIX = "part-"
SETTLED_PREFIX = "settled-"


def day_prefix(source: Source, day: date) -> str:
    """Return the folder of one source's rows for one UTC date."""
    return f"{source.name}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


def part_blob_name(source: Source, day: date, window: Window) -> str:
    """Return the provisional blob holding the rows of ``window`` whose event date is ``day``."""
    return f"{day_prefix(source, day)}{PART_PREFIX}{window.name}.jsonl"


def settled_blob_name(source: Source, day: date) -> str:
    """Return the one blob that holds a settled day's rows."""
    return f"{day_prefix(source, day)}{SETTLED_PREFIX}{day.isoformat()}.jsonl"


def manifest_name(source: Source, day: date) -> str:
    """Return the marker that says a day is settled (with its row count and blob)."""
    return f"{MANIFEST_PREFIX}{source.name}/{day.isoformat()}.json"


def state_blob_name(source: Source) -> str:
    """Return the blob holding a source's watermark."""
    return f"{STATE_PREFIX}{source.name}.json"


def part_window(name: str) -> Window | None:
    """Return the window a provisional blob was written by, or None if ``name`` is not one."""
    match = _PART.fullmatch(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    try:
        start, end = (parse_instant(_expand(stamp)) for stamp in match.groups())
        return Window(start, end)
    except (InstantParseError, ValueError):
        return None


def _expand(stamp: str) -> str:
    """``20261120T000000Z`` -> ``2026-11-20T00:00:00Z``."""
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"
