"""Blob names: where data rows and the collector's own state live in the container.

Data is Hive-partitioned by the row's UTC event date so Spark, DuckDB, Synapse, Fabric and
ADX prune by path. Everything that is not data sits under a first segment starting with
``_``, which those readers skip.
"""

from __future__ import annotations

from datetime import date

from .sources import Source
from .windows import Window

STATE_PREFIX = "_state/"


def day_prefix(source: Source, day: date) -> str:
    """Return the folder of one source's rows for one UTC date."""
    return f"{source.name}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


def data_blob_name(source: Source, day: date, window: Window) -> str:
    """Return the blob holding the rows of ``window`` whose event date is ``day``."""
    return f"{day_prefix(source, day)}part-{window.name}.jsonl"


def state_blob_name(source: Source) -> str:
    """Return the blob holding a source's watermark."""
    return f"{STATE_PREFIX}{source.name}.json"
