"""Blob names: where data rows and the collector's own state live in the container.

Data is Hive-partitioned by the row's UTC event date so Spark, DuckDB, Synapse, Fabric and
ADX prune by path; in multi-tenant mode a ``tenant=<id>`` segment comes first, so readers get
``tenant`` as a column too. Everything that is not data sits under a first segment starting
with ``_``, which those readers skip.
"""

from __future__ import annotations

import re
from datetime import date

from ..core.lanes import Lane
from ..core.windows import Window

STATE_PREFIX = "_state/"
MANIFEST_PREFIX = "_manifests/"
PART_PREFIX = "part-"
SETTLE_PREFIX = "settle-"
RECORDS_PREFIX = "records-"
_DAY_MANIFEST = re.compile(r"\d{4}-\d{2}-\d{2}\.json")
_REVISIT_MANIFEST = re.compile(r"(\d{4}-\d{2}-\d{2})\.revisit-(\d+)d\.json")


def _tenant(lane: Lane) -> str:
    """The lane's tenant folder segment (none in single-tenant mode)."""
    return "" if lane.tenant is None else f"tenant={lane.tenant}/"


def day_prefix(lane: Lane, day: date) -> str:
    """Return the folder of one lane's rows for one UTC date."""
    return (
        f"{lane.source.name}/{_tenant(lane)}"
        f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"
    )


def is_collector_blob(name: str) -> bool:
    """True for a data blob the collector writes (a day folder may hold others: a reader's
    marker files, say, which the settle pass must not read as rows)."""
    leaf = name.rsplit("/", 1)[-1]
    prefixes = (PART_PREFIX, SETTLE_PREFIX, RECORDS_PREFIX)
    return (leaf.startswith(prefixes) and leaf.endswith(".jsonl")) or is_part_rows_blob(name)


def part_blob_name(lane: Lane, day: date, window: Window) -> str:
    """Return the provisional blob holding the rows of ``window`` whose event date is ``day``."""
    return f"{day_prefix(lane, day)}{PART_PREFIX}{window.name}.jsonl"


def settle_blob_name(lane: Lane, day: date) -> str:
    """Return the blob the settle pass writes for a day: the rows no earlier blob of the day
    holds (late rows; on a first backfill, the whole day)."""
    return f"{day_prefix(lane, day)}{SETTLE_PREFIX}{day.isoformat()}.jsonl"


def records_blob_name(lane: Lane, day: date, run_id: str, number: int) -> str:
    """Return the ``number``-th blob of call records one run commits for ``day``: unique to
    the run, so a run never meets another's blob of its name, and never named like a settle
    blob (whose presence means "only the day's manifest is missing")."""
    return f"{day_prefix(lane, day)}{RECORDS_PREFIX}{run_id}-{number:05d}.jsonl"


def part_rows_name(lane: Lane, day: date, relation: str, run_id: str, number: int) -> str:
    """Return the ``number``-th blob of one relation's rows (sessions, participants) of large
    call records one run commits for ``day``: in a subfolder of the day named after the
    relation, so a reader's glob of the day's records (``*/*/*/*.jsonl``) never takes them
    for records."""
    return f"{day_prefix(lane, day)}{relation}/{relation}-{run_id}-{number:05d}.jsonl"


def is_part_rows_blob(name: str) -> bool:
    """True for a blob of a large record's relation rows (``part_rows_name``)."""
    folder, _, leaf = name.rpartition("/")
    relation = folder.rsplit("/", 1)[-1]
    return leaf.startswith(f"{relation}-") and leaf.endswith(".jsonl")


def revisit_manifest_name(lane: Lane, day: date, age: int) -> str:
    """Return the marker of a day's revisit ``age`` days after it ended: the blobs that
    revisit added (later versions, records that appeared late)."""
    return f"{manifest_prefix(lane)}{day.isoformat()}.revisit-{age:02d}d.json"


def is_day_manifest(name: str) -> bool:
    """True for a day's manifest (not a revisit's)."""
    return _DAY_MANIFEST.fullmatch(name.rsplit("/", 1)[-1]) is not None


def revisit_of(name: str) -> tuple[date, int] | None:
    """The day and age of a revisit manifest's name; None for any other name."""
    match = _REVISIT_MANIFEST.fullmatch(name.rsplit("/", 1)[-1])
    return None if match is None else (date.fromisoformat(match[1]), int(match[2]))


def manifest_name(lane: Lane, day: date) -> str:
    """Return the marker that says a day is settled (final), listing its data blobs."""
    return f"{manifest_prefix(lane)}{day.isoformat()}.json"


def state_blob_name(lane: Lane) -> str:
    """Return the blob holding a lane's watermark and lease."""
    return f"{STATE_PREFIX}{_tenant(lane)}{lane.source.name}.json"


def last_run_name(lane: Lane) -> str:
    """Return the blob that says how a lane's last run went (for ``status``)."""
    return f"{STATE_PREFIX}{_tenant(lane)}{lane.source.name}.run.json"


def manifest_day(name: str) -> date:
    """Return the day a manifest's blob name is for."""
    return date.fromisoformat(name.rsplit("/", 1)[-1].removesuffix(".json"))


def manifest_prefix(lane: Lane) -> str:
    """Return the folder of a lane's manifests."""
    return f"{MANIFEST_PREFIX}{lane.source.name}/{_tenant(lane)}"
