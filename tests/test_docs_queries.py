"""The docs' queries and recipes, run against an archive the local stack wrote.

Every ```sql block of README.md and docs/**/*.md runs in DuckDB and every ```python block
runs too (Spark ones with PySpark in ``local[1]`` mode, the ingestion recipes driven run after
run); each result is checked against the same figures computed here from the raw JSONL rows,
read back with ``json``. An SQL block names its check on its first line (``-- title``, a key
of ``SQL_CHECKS``): a new query needs a new check, so the docs cannot rot.

The archive: the six sources collected by four runs over six days (late rows, a row Graph
changed, settled days and their manifests included; call records with revisions found by
revisits, a town hall a day archived split, and a record set aside by the third run and
recovered by the fourth), copied after the third run (``before``) and after the fourth
(``after``), plus a two-tenant archive (``tenants``). The blobs are
copied to a local folder through the blob client against Azurite, and the docs' container
URLs (``az://callrecords/``, ``abfss://callrecords@<account>.dfs.core.windows.net``) are
replaced by that folder: DuckDB's ``azure`` extension cannot be downloaded here (extensions
come from the internet), and local Spark has no Azure driver.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from azure.storage.blob import BlobServiceClient

from collector.cli import main
from collector.core.rows import row_key, split_page
from collector.core.sources import SOURCES
from collector.core.timefmt import parse_instant
from collector.core.windows import Window
from collector.graph import client as graph_client
from collector.graph.client import RetryPolicy, _parse_json
from devstack.azurite import Azurite
from devstack.stack import GraphStack
from devstack.synthetic import Tenant

from .conftest import ROOT

AZ = "az://callrecords/"
ABFSS = "abfss://callrecords@<account>.dfs.core.windows.net"
ALL_SOURCES = tuple(SOURCES)
ROWS_PER_DAY = {"sms": 200, "direct_routing": 800, "pstn": 600, "pstn_blocked_users": 12}
START = "2026-10-20T00:00:00Z"
FIRST, SECOND, THIRD = "2026-10-21T12:00:00Z", "2026-10-23T12:30:00Z", "2026-10-24T12:30:00Z"
FOURTH = "2026-10-25T12:30:00Z"
"""Three runs settle Oct 20 and 21 (``before``); the fourth settles Oct 22 (``after``)."""
LATE = {
    "direct_routing": "2026-10-20T08:15:00.1234567Z",
    "pstn": "2026-10-20T23:59:59.9999999Z",
    "sms": "2026-10-21T03:00:00Z",
}
"""Rows Graph 'ingests' after the first run read their day: the settle passes write them."""
APP = "5b7c1c2e-8a4d-4c1e-9f3a-2d6e8b0a1c01"
IDENTITY = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
TENANTS = {
    "aaaaaaaa-1111-4111-8111-000000000001": Tenant(seed=31, rows_per_day={"pstn": 150}),
    "bbbbbbbb-2222-4222-8222-000000000002": Tenant(seed=32, rows_per_day={"pstn": 250}),
}
PLACEHOLDER = "0001-01-01T00:00:00Z"
TOWN_HALL = 600
"""Attendees (and sessions) of each day's huge meeting: its record is over 4 MB whole, so the
collector archives it split (``collectorSplit``): the simulator's sessions are about 10 KB
each."""
DAY_FOLDER = re.compile(r"/(?:tenant=(?P<tenant>[^/]+)/)?year=(\d{4})/month=(\d\d)/day=(\d\d)/")


# --- the archive -----------------------------------------------------------------------


@dataclass(frozen=True)
class Archive:
    """A local copy of a container: blob names are paths under ``root``."""

    root: Path

    def names(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*.json*"))

    def data_blobs(self, source: str) -> list[str]:
        """The blobs of ``source`` whose lines are its rows (for call records: record lines,
        not the rows of split records)."""
        return [
            n
            for n in self.names()
            if n.startswith(f"{source}/")
            and n.rsplit("/", 1)[1].startswith(("part-", "settle-", "records-"))
        ]

    def split_blobs(self, source: str, relation: str | None = None) -> list[str]:
        """The blobs of split call records' ``relation`` rows (None: every relation)."""
        found = []
        for name in self.names():
            folder, _, leaf = name.rpartition("/")
            kind = folder.rsplit("/", 1)[-1]
            ours = name.startswith(f"{source}/") and leaf.startswith(f"{kind}-")
            if ours and "=" not in kind and relation in (None, kind):
                found.append(name)
        return found

    def lines(self, name: str) -> list[dict[str, Any]]:
        text = (self.root / name).read_text(encoding="utf-8")
        assert text.endswith("\n"), name
        return [json.loads(line) for line in text.splitlines()]

    def rows(self, source: str) -> list[tuple[str, dict[str, Any]]]:
        """Every archived row of ``source`` with its blob's name."""
        return [(name, row) for name in self.data_blobs(source) for row in self.lines(name)]

    def manifests(self, source: str | None = None) -> dict[str, dict[str, Any]]:
        prefix = "_manifests/" if source is None else f"_manifests/{source}/"
        return {
            n: json.loads((self.root / n).read_text(encoding="utf-8"))
            for n in self.names()
            if n.startswith(prefix)
        }

    def final_rows(self, source: str) -> list[dict[str, Any]]:
        """The rows of the blobs the manifests of ``source`` list."""
        return [
            row
            for manifest in self.manifests(source).values()
            for blob in manifest["blobs"]
            for row in self.lines(blob["name"])
        ]


@dataclass(frozen=True)
class Archives:
    before: Archive
    after: Archive
    tenants: Archive


def copy_container(azurite: Azurite, container: str, target: Path) -> Archive:
    """Copy every blob of ``container`` to ``target`` through the blob client."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(container)
    for blob in client.list_blobs():
        path = target / blob.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(client.download_blob(blob.name).readall())
    return Archive(target)


def drop_container(azurite: Azurite, container: str) -> None:
    """Delete ``container``: the session's one in-memory Azurite holds 1 GB in all."""
    client = BlobServiceClient.from_connection_string(azurite.connection_string)
    container_client = client.get_container_client(container)
    if container_client.exists():
        container_client.delete_container()


@pytest.fixture(scope="module")
def archives(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archives]:
    base = tmp_path_factory.mktemp("docs-archive")
    container = f"docs{uuid.uuid4().hex[:12]}"
    graph = GraphStack(Tenant(seed=5, rows_per_day=ROWS_PER_DAY))
    try:
        with pytest.MonkeyPatch.context() as patch:
            # azure-identity reads the managed-identity endpoint from the environment.
            patch.setenv("IDENTITY_ENDPOINT", graph.identity_endpoint)
            patch.setenv("IDENTITY_HEADER", graph.identity_header)
            # The record that fails is set aside after its reads' retries: quick ones here.
            fast = functools.partial(RetryPolicy, base_delay=0.01, max_delay=0.05)
            patch.setattr(graph_client, "RetryPolicy", fast)
            env = {
                **graph.env(),
                "COLLECTOR_STORAGE": azurite.connection_string,
                "COLLECTOR_CONTAINER": container,
                "COLLECTOR_SOURCES": ",".join(ALL_SOURCES),
                "COLLECTOR_START": START,
                "COLLECTOR_LAG_MINUTES": "60",
                # Graph's per-record limits (50 later pages per 5 min) in 3 s: the town hall
                # pages its sessions without waiting minutes.
                "GRAPH_CALL_RECORDS_PERIOD_SCALE": "0.01",
            }
            records = graph.simulator.call_records
            records.configure(
                records_per_day=30,
                sessions=(1, 6),
                huge_per_day=1,  # a town hall a day, whole over 4 MB
                huge_participants=(TOWN_HALL, TOWN_HALL),
                huge_session_per_attendee=True,
                late_change_rate=0.5,  # revisions, found by the revisits
                late_create_rate=0.1,
            )
            failing = next(
                r.id
                for r in records.timeline(None, "2026-10-21T00:00:00Z", "2026-10-22T00:00:00Z")
                if not r.huge
            )
            records.fail_always(failing)  # set aside until it heals before FOURTH

            def run(as_of: str) -> int:
                records.now = as_of  # what Graph keeps of its call records, and in which version
                return main(["run", "--as-of", as_of], env)

            assert run(FIRST) == 0
            for source, stamp in LATE.items():
                graph.tenant.add_row(source, stamp)
            assert run(SECOND) == 0
            graph.tenant.change_row("pstn", "2026-10-21", "charge", 9.99)
            assert run(THIRD) == 0
            before = copy_container(azurite, container, base / "before")
            records.heal(failing)  # Oct 21's revisit at 3 days reads it: recovered
            assert run(FOURTH) == 0
            after = copy_container(azurite, container, base / "after")
    finally:
        graph.stop()
        drop_container(azurite, container)
    yield Archives(before, after, tenants_archive(azurite, base / "tenants"))


def tenants_archive(azurite: Azurite, target: Path) -> Archive:
    """Two customer tenants' PSTN calls, collected in multi-tenant mode in a child process
    (azure-identity reaches the local Entra ID endpoint over HTTPS, trusted through
    ``SSL_CERT_FILE``, which is read when a process starts)."""
    container = f"docs{uuid.uuid4().hex[:12]}"
    graph = GraphStack(Tenant(seed=30))
    try:
        graph.add_directory(APP, IDENTITY, TENANTS, TENANTS)
        env = {
            **os.environ,
            **graph.env(),
            "COLLECTOR_STORAGE": azurite.connection_string,
            "COLLECTOR_CONTAINER": container,
            "COLLECTOR_SOURCES": "pstn",
            "COLLECTOR_TENANTS": ",".join(TENANTS),
            "COLLECTOR_APP_CLIENT_ID": APP,
            "AZURE_CLIENT_ID": IDENTITY,
            "COLLECTOR_START": START,
            "COLLECTOR_LAG_MINUTES": "60",
        }
        done = subprocess.run(
            [sys.executable, "-m", "collector", "run", "--as-of", SECOND],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return copy_container(azurite, container, target)
    finally:
        graph.stop()
        drop_container(azurite, container)


def sync(source: Archive, target: Path) -> Archive:
    """Bring ``target`` up to ``source`` as a reader's view of the container changes: new
    blobs appear, and nothing but ``_state/`` ever changes (checked)."""
    for name in source.names():
        new, old = source.root / name, target / name
        if old.exists() and not name.startswith("_state/"):
            assert old.read_bytes() == new.read_bytes(), f"{name} changed"
            continue
        old.parent.mkdir(parents=True, exist_ok=True)
        old.write_bytes(new.read_bytes())  # a new modification time, as a new blob has
    return Archive(target)


# --- what the raw rows say --------------------------------------------------------------


def utc(text: str) -> datetime:
    """A Graph instant as naive UTC, its fraction cut to microseconds."""
    whole = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    fraction = text[20:-1]
    return whole + timedelta(microseconds=int(fraction[:6].ljust(6, "0") or "0"))


def folder_day(name: str) -> date:
    found = DAY_FOLDER.search(name)
    assert found is not None, name
    return date(int(found[2]), int(found[3]), int(found[4]))


def key(source: str, row: dict[str, Any]) -> str:
    """A row's identity: its key, with its version for call records (every version is
    archived), and for a split record's session or participant, the record's too."""
    if "callRecordId" in row:
        return f"{row['callRecordId']}@{row['callRecordVersion']}/{row['id']}"
    found = row_key(SOURCES[source], row, 0)
    return f"{found}@{row.get('version')}" if SOURCES[source].versioned else found


def half_up(value: float) -> float:
    return float(math.floor(value + 0.5))


# --- the docs' blocks -------------------------------------------------------------------

FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def title(self) -> str | None:
        first = self.code.lstrip().split("\n", 1)[0]
        return first[2:].strip() if first.startswith("--") else None


def doc_blocks(lang: str) -> list[Block]:
    """The fenced blocks of one language in README.md and docs/**/*.md (indented ones too)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    blocks = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for found in FENCE.finditer(text):
            if found["lang"] != lang:
                continue
            indent = len(found["indent"])
            code = "".join(line[indent:] for line in found["body"].splitlines(keepends=True))
            line = text.count("\n", 0, found.start()) + 1
            blocks.append(Block(page.relative_to(ROOT).as_posix(), line, lang, code))
    return blocks


def localized(code: str, root: Path) -> str:
    """A block's code pointed at a local copy of the container."""
    return code.replace(AZ, f"{root}/").replace(ABFSS, f"file://{root}")


def run_block(
    block: Block, root: Path, replace: dict[str, str] | None = None, **names: Any
) -> dict[str, Any]:
    """Execute a Python block (as a module other than ``__main__``) on the local copy of the
    container at ``root``, with the texts in ``replace`` replaced; return its names."""
    code = localized(block.code, root)
    for old, new in (replace or {}).items():
        assert old in code, f"{block}: {old!r} is gone"
        code = code.replace(old, new)
    namespace: dict[str, Any] = {"__name__": "docs_block", **names}
    exec(compile(code, str(block), "exec"), namespace)
    return namespace


def python_kind(block: Block) -> str | None:
    """Which test runs a Python block."""
    if "def load_final_days(" in block.code:
        return "final-days recipe"
    if "def load_new_blobs(" in block.code:
        return "new-blobs recipe"
    if "readStream" in block.code:
        return "spark stream recipe"
    if "spark." in block.code:
        return "spark"
    return None


def the_block(kind: str) -> Block:
    blocks = [b for b in doc_blocks("python") if python_kind(b) == kind]
    assert len(blocks) == 1, f"expected one {kind} in the docs, found {[str(b) for b in blocks]}"
    return blocks[0]


def test_every_python_block_of_the_docs_is_run_by_a_test() -> None:
    blocks = doc_blocks("python")
    assert blocks
    unclaimed = [str(b) for b in blocks if python_kind(b) is None]
    assert not unclaimed, f"no test runs the Python blocks at {unclaimed}"


# --- SQL ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


@dataclass(frozen=True)
class SqlCheck:
    archive: str
    """Which archive the query runs on: ``after`` or ``tenants``."""
    check: Callable[[Archive, Result], None]
    columns: tuple[str, ...] | None = None
    """The result's columns, by which a block without a title line finds this check."""


SQL_CHECKS: dict[str, SqlCheck] = {}


def sql_check(
    title: str, archive: str = "after", columns: tuple[str, ...] | None = None
) -> Callable[[Callable[[Archive, Result], None]], Callable[[Archive, Result], None]]:
    def register(check: Callable[[Archive, Result], None]) -> Callable[[Archive, Result], None]:
        SQL_CHECKS[title] = SqlCheck(archive, check, columns)
        return check

    return register


def run_sql(code: str, archive: Archive) -> list[Result]:
    """Run every statement of a block on a fresh connection whose time zone is not UTC (a
    query that leans on the session's zone shows it); return the SELECTs' results, with
    ``TIMESTAMP WITH TIME ZONE`` values as text (Python cannot hold year 1, the placeholder,
    east of UTC)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Pacific/Kiritimati'")  # UTC+14
    results = []
    for statement in duckdb.extract_statements(localized(code, archive.root)):
        if statement.type != duckdb.StatementType.SELECT:
            con.execute(statement)
            continue
        con.execute(f"CREATE OR REPLACE TEMP TABLE docs_result AS {statement.query}")
        columns = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'docs_result' ORDER BY ordinal_position"
        ).fetchall()
        select = ", ".join(
            f'CAST("{name}" AS VARCHAR) AS "{name}"'
            if kind == "TIMESTAMP WITH TIME ZONE"
            else f'"{name}"'
            for name, kind in columns
        )
        rows = con.execute(f"SELECT {select} FROM docs_result").fetchall()
        results.append(Result([name for name, _ in columns], rows))
    return results


SQL_BLOCKS = doc_blocks("sql")


def test_the_docs_have_sql_blocks() -> None:
    pages = {b.page for b in SQL_BLOCKS}
    assert {"docs/data/consuming.md", "docs/data/layout.md", "docs/data/schema.md"} <= pages


@pytest.mark.parametrize("block", SQL_BLOCKS, ids=str)
def test_sql_block_gives_what_the_raw_rows_say(block: Block, archives: Archives) -> None:
    if block.title is None:  # README's quick start: known by its result's columns
        results = run_sql(block.code, archives.after)
        assert len(results) == 1, f"{block}: one query a block, found {len(results)}"
        found = [c for c in SQL_CHECKS.values() if c.columns == tuple(results[0].columns)]
        assert len(found) == 1, (
            f"{block}: no check for a query without a `-- title` line giving the columns "
            f"{results[0].columns}: start it with the title of a check in {Path(__file__).name}"
        )
        found[0].check(archives.after, results[0])
        return
    assert block.title in SQL_CHECKS, (
        f"{block}: no check for {block.title!r}: add one to SQL_CHECKS in {Path(__file__).name}"
    )
    check = SQL_CHECKS[block.title]
    archive: Archive = getattr(archives, check.archive)
    results = run_sql(block.code, archive)
    assert len(results) == 1, f"{block}: one query a block, found {len(results)}"
    check.check(archive, results[0])


@sql_check("everything archived so far")
def _everything(archive: Archive, result: Result) -> None:
    raw = archive.rows("direct_routing")
    assert sorted(map(str, result.column("id"))) == sorted(row["id"] for _, row in raw)
    assert {"year", "month", "day"} <= set(result.columns)


@sql_check("final days only: the rows of the blobs the manifests list")
def _final_days(archive: Archive, result: Result) -> None:
    final = sorted(row["id"] for row in archive.final_rows("direct_routing"))
    assert sorted(map(str, result.column("id"))) == final
    assert 0 < len(final) < len(archive.rows("direct_routing"))  # provisional days left out


@sql_check(
    "direct routing calls per day and result", columns=("call_day", "succeeded", "calls", "minutes")
)
def _direct_routing_per_day(archive: Archive, result: Result) -> None:
    groups: dict[tuple[date, bool], list[int]] = defaultdict(list)
    for _, row in archive.rows("direct_routing"):
        groups[utc(row["startDateTime"]).date(), row["successfulCall"]].append(row["duration"])
    expected = [(d, ok, len(v), half_up(sum(v) / 60)) for (d, ok), v in sorted(groups.items())]
    assert result.rows == expected


@sql_check("pstn calls per day and call type")
def _pstn_per_day(archive: Archive, result: Result) -> None:
    groups: dict[tuple[date, str], list[int]] = defaultdict(list)
    for _, row in archive.rows("pstn"):
        groups[utc(row["startDateTime"]).date(), row["callType"]].append(row["duration"])
    expected = [(d, t, len(v), sum(v)) for (d, t), v in sorted(groups.items())]
    assert result.rows == expected


@sql_check("failed direct routing calls by final SIP code")
def _failed_sip(archive: Archive, result: Result) -> None:
    failed = Counter(
        (row["finalSipCode"], row["finalSipCodePhrase"])
        for _, row in archive.rows("direct_routing")
        if not row["successfulCall"]
    )
    expected = sorted(((c, p, n) for (c, p), n in failed.items()), key=lambda r: (-r[2], r[0]))
    assert failed and result.rows == expected


@sql_check("sms per day and type, with units and charges")
def _sms_per_day(archive: Archive, result: Result) -> None:
    groups: dict[tuple[date, str, str], list[dict[str, Any]]] = defaultdict(list)
    for _, row in archive.rows("sms"):
        groups[utc(row["sentDateTime"]).date(), row["smsType"], row["currency"]].append(row)
    expected = [
        (*k, len(v), sum(r["smsUnits"] for r in v), sum(Decimal(repr(r["callCharge"])) for r in v))
        for k, v in sorted(groups.items())
    ]
    assert result.rows == expected


@sql_check("toll-fraud blocks per reason per week")
def _blocks_per_week(archive: Archive, result: Result) -> None:
    weeks: Counter[tuple[datetime, str]] = Counter()
    for _, row in archive.rows("pstn_blocked_users"):
        if row["userBlockMode"] == "blocked":
            day = utc(row["blockDateTime"]).date()
            monday = datetime.combine(day - timedelta(days=day.weekday()), datetime.min.time())
            weeks[monday, row["blockReason"]] += 1
    expected = sorted(((w, r, n) for (w, r), n in weeks.items()), key=lambda x: (x[0], -x[2], x[1]))
    assert weeks and result.rows == expected


@sql_check("dial-out spend per organizer per month")
def _dialout_spend(archive: Archive, result: Result) -> None:
    groups: dict[tuple[int, int, str, str], list[dict[str, Any]]] = defaultdict(list)
    for name, row in archive.rows("pstn_dialout_report"):
        day = folder_day(name)  # the report's rows carry no date
        groups[day.year, day.month, row["userPrincipalName"], row["currency"]].append(row)
    got = {tuple(r[:4]): r[4:] for r in result.rows}
    assert len(got) == len(result.rows) == len(groups)
    for group, rows in groups.items():
        calls, minutes, charge = got[group]
        assert calls == sum(r["totalCalls"] for r in rows)
        assert minutes == half_up(sum(r["totalCallSeconds"] for r in rows) / 60)
        total = sum((Decimal(repr(r["totalCallCharge"])) for r in rows), Decimal(0))
        assert charge == total.quantize(Decimal("0.01"), ROUND_HALF_UP)
    order = [(r[0], r[1], -r[6], r[2]) for r in result.rows]
    assert order == sorted(order)


@sql_check("many tenants: calls per tenant and day", archive="tenants")
def _per_tenant(archive: Archive, result: Result) -> None:
    counts: Counter[tuple[str, date]] = Counter()
    for name, row in archive.rows("pstn"):
        found = DAY_FOLDER.search(name)
        assert found is not None and found["tenant"] in TENANTS
        counts[found["tenant"], utc(row["startDateTime"]).date()] += 1
    assert {t for t, _ in counts} == set(TENANTS)
    assert [(str(t), d, n) for t, d, n in result.rows] == sorted(
        (t, d, n) for (t, d), n in counts.items()
    )


@sql_check("final days of every source, from the manifests")
def _manifest_days(archive: Archive, result: Result) -> None:
    expected = sorted(
        (
            m["source"],
            date.fromisoformat(m["date"]),
            m["rows"],
            m["lateRows"],
            m["changedRows"],
            m["goneRows"],
            len(m["blobs"]),
        )
        for n, m in archive.manifests().items()
        if ".revisit-" not in n
    )
    assert result.rows == expected
    assert {r[0] for r in expected} == set(ALL_SOURCES)


@sql_check("direct routing: UTC times, placeholders as NULL, masked callee numbers flagged")
def _direct_routing_quirks(archive: Archive, result: Result) -> None:
    expected = sorted(
        (
            utc(row["startDateTime"]),
            row["id"],
            None if row["failureDateTime"] == PLACEHOLDER else utc(row["failureDateTime"]),
            "*" in row["calleeNumber"],
        )
        for _, row in archive.rows("direct_routing")
    )
    got = sorted(
        (r["started_utc"], str(r["id"]), r["failed_utc"], r["callee_masked"])
        for r in result.dicts()
    )
    assert got == expected
    assert result.column("started_utc") == sorted(result.column("started_utc"))
    assert any(r[2] is None for r in expected) and any(r[2] is not None for r in expected)
    assert any(r[3] for r in expected)


@sql_check("every property the pstn rows carry, and in how many rows: spot what Graph added")
def _pstn_properties(archive: Archive, result: Result) -> None:
    counts = Counter(p for _, row in archive.rows("pstn") for p in row)
    assert result.rows == sorted(counts.items())
    assert counts["futureProperty"] < counts["id"]  # the simulator's "later" property


@sql_check("one row per key across days (the earliest day's copy)")
def _one_row_per_key(archive: Archive, result: Result) -> None:
    ids = [str(i) for i in result.column("id")]
    assert len(ids) == len(set(ids))
    assert set(ids) == {row["id"] for _, row in archive.rows("pstn")}


def test_layout_md_shows_and_explains_every_field_of_a_real_manifest(archives: Archives) -> None:
    real = archives.after.manifests("pstn")["_manifests/pstn/2026-10-21.json"]
    assert real["changedRows"] == 1 and real["lateRows"] == 0  # the row changed before THIRD
    late = archives.after.manifests("pstn")["_manifests/pstn/2026-10-20.json"]
    assert late["lateRows"] == 1 and any("settle-" in b["name"] for b in late["blobs"])
    tenant = next(iter(archives.tenants.manifests().values()))
    assert set(tenant) == set(real) | {"tenant"}

    examples = [b for b in doc_blocks("json") if b.page == "docs/data/layout.md"]
    assert len(examples) == 1
    example = json.loads(examples[0].code)
    assert set(example) == set(real)
    assert examples[0].code == json.dumps(example, indent=1, sort_keys=True) + "\n"
    assert example["rows"] == sum(b["rows"] for b in example["blobs"])
    settled = parse_instant(example["settledAt"])
    assert settled >= parse_instant(example["coveredTo"]) + timedelta(hours=48)

    page = (ROOT / "docs/data/layout.md").read_text(encoding="utf-8")
    table = page.split("| field | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`(\w+)`", "".join(re.findall(r"^\| ([^|]+) \|", table, re.M))))
    assert documented == set(real) | {"tenant"}


def test_layout_md_explains_every_field_of_call_records_manifests(archives: Archives) -> None:
    manifests = archives.after.manifests("call_records")
    day = manifests["_manifests/call_records/2026-10-21.json"]
    revisit = manifests["_manifests/call_records/2026-10-21.revisit-03d.json"]
    pstn = archives.after.manifests("pstn")["_manifests/pstn/2026-10-21.json"]
    assert set(pstn) <= set(day)
    page = (ROOT / "docs/data/layout.md").read_text(encoding="utf-8")
    table = page.split("| call-records field | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`(\w+)`", "".join(re.findall(r"^\| ([^|]+) \|", table, re.M))))
    shared = {"source", "date", "blobs"}  # the table above explains them
    assert documented == (set(day) - set(pstn)) | (set(revisit) - shared) | {"status", "rows"}

    # call-records.md's excerpt of a manifest with a record set aside: the real one's shape.
    (example,) = [
        json.loads(b.code) for b in doc_blocks("json") if b.page == "docs/data/call-records.md"
    ]
    real = archives.before.manifests("call_records")["_manifests/call_records/2026-10-21.json"]
    assert set(example) <= set(real) and example["status"] == real["status"]
    assert set(example["setAside"][0]) == set(real["setAside"][0])
    assert real["status"] == "settled-with-failures"


# --- recipes --------------------------------------------------------------------------------


def test_final_days_recipe_loads_each_final_day_once_then_only_the_new_one(
    archives: Archives, tmp_path: Path
) -> None:
    live = sync(archives.before, tmp_path / "container")
    load = run_block(the_block("final-days recipe"), live.root)["load_final_days"]
    con = duckdb.connect(str(tmp_path / "call-logs.duckdb"))

    def loaded() -> Counter[tuple[str, date, str]]:
        got = con.execute("SELECT source, day, row FROM final_call_logs").fetchall()
        return Counter((s, day, key(s, json.loads(row))) for s, day, row in got)

    def final(archive: Archive) -> Counter[tuple[str, date, str]]:
        return Counter(
            (m["source"], date.fromisoformat(m["date"]), key(m["source"], row))
            for m in archive.manifests().values()
            for blob in (m["added"] if m.get("pass") == "revisit" else m["blobs"])
            for row in archive.lines(blob["name"])
        )

    first = load(con)
    revisit = "_manifests/call_records/2026-10-20.revisit-03d.json"
    assert first == sorted(live.manifests()) and len(first) == 2 * len(ALL_SOURCES) + 1
    assert revisit in first
    assert loaded() == final(live)
    assert load(con) == []

    live = sync(archives.after, live.root)  # one more day settled, of every source
    assert load(con) == sorted(
        [
            *(f"_manifests/{s}/2026-10-22.json" for s in ALL_SOURCES),
            "_manifests/call_records/2026-10-21.revisit-03d.json",
        ]
    )
    assert loaded() == final(live) and set(final(live).values()) == {1}
    revised = live.manifests("call_records")["_manifests/call_records/2026-10-21.revisit-03d.json"]
    assert revised["added"] and revised["revised"]  # later versions, loaded as new rows

    # A day whose rows do not add up to its manifest is not loaded, nor checkpointed.
    forged = live.manifests("pstn")["_manifests/pstn/2026-10-22.json"]
    forged.update(date="2026-10-26", rows=forged["rows"] + 1)
    (live.root / "_manifests/pstn/2026-10-26.json").write_text(json.dumps(forged))
    with pytest.raises(RuntimeError, match="the manifest says"):
        load(con)
    assert loaded() == final(archives.after)
    assert con.execute("SELECT count(*) FROM loaded_manifests").fetchone() == (
        len(archives.after.manifests()),
    )


def test_new_blobs_recipe_loads_every_data_blob_once(archives: Archives, tmp_path: Path) -> None:
    live = sync(archives.before, tmp_path / "container")
    load = run_block(the_block("new-blobs recipe"), live.root)["load_new_blobs"]
    con = duckdb.connect(str(tmp_path / "call-logs.duckdb"))

    def blobs(archive: Archive) -> list[str]:
        return sorted(
            n for s in ALL_SOURCES for n in (*archive.data_blobs(s), *archive.split_blobs(s))
        )

    first = load(con)
    assert first == blobs(live)
    assert load(con) == []
    live = sync(archives.after, live.root)
    assert load(con) == sorted(set(blobs(live)) - set(first))

    got = con.execute("SELECT source, day, row FROM call_logs").fetchall()
    loaded = Counter((s, day, key(s, json.loads(row))) for s, day, row in got)
    archived = Counter(
        (s, folder_day(name), key(s, row))
        for s in ALL_SOURCES
        for name in blobs(live)
        if name.startswith(f"{s}/")
        for row in live.lines(name)
    )
    assert loaded == archived
    assert set(loaded.values()) == {1}  # provisional and late rows, each version, each once
    assert any("/sessions/" in n for n in blobs(live))  # split records' rows too


# --- Spark ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local PySpark session (the JVM with its quick-start JIT: small jobs, fast start)."""
    if shutil.which("java") is None:
        pytest.skip("PySpark needs Java 17 or later on PATH")
    from pyspark.sql import SparkSession

    scratch = tmp_path_factory.mktemp("spark")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        patch.setenv("PYSPARK_PYTHON", sys.executable)
        session = (
            SparkSession.builder.master("local[1]")
            .appName("docs")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "1")
            .config("spark.sql.adaptive.enabled", "false")
            .config("spark.sql.session.timeZone", "Pacific/Kiritimati")
            .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config(
                "spark.driver.extraJavaOptions",
                f"-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.io.tmpdir={scratch}",
            )
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        yield session
        session.stop()


SPARK_CHECKS: dict[str, Callable[[Archive, Any], None]] = {}


def spark_check(
    name: str,
) -> Callable[[Callable[[Archive, Any], None]], Callable[[Archive, Any], None]]:
    def register(check: Callable[[Archive, Any], None]) -> Callable[[Archive, Any], None]:
        SPARK_CHECKS[name] = check
        return check

    return register


def _seconds(duration: str | None) -> float | None:
    """An ISO 8601 duration of seconds (``PT0.012S``) as a number."""
    match = re.fullmatch(r"PT([0-9.]+)S", duration or "")
    return float(match[1]) if match else None


def _poor(stream: dict[str, Any]) -> bool:
    jitter, trip = (
        _seconds(stream.get("averageJitter")),
        _seconds(stream.get("averageRoundTripTime")),
    )
    loss = stream.get("averagePacketLossRate")
    return bool(
        (loss is not None and loss > 0.1)
        or (jitter is not None and jitter > 0.030)
        or (trip is not None and trip > 0.5)
    )


def _latest_records(archive: Archive) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each call record's latest version (the highest ``version`` of its ``id``), with its
    blob's name."""
    latest: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, record in archive.rows("call_records"):
        held = latest.get(record["id"])
        if held is None or record["version"] > held[1]["version"]:
            latest[record["id"]] = (name, record)
    return latest


def _latest_sessions(archive: Archive) -> list[tuple[str, int, dict[str, Any]]]:
    """(record id, version, session) of every session of every record's latest version:
    from its line, or for a split record from the ``sessions/`` rows of that version."""
    split: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for name in archive.split_blobs("call_records", "sessions"):
        for row in archive.lines(name):
            split[row["callRecordId"], row["callRecordVersion"]].append(row)
    found: list[tuple[str, int, dict[str, Any]]] = []
    for _, record in _latest_records(archive).values():
        if "collectorSplit" in record:
            rows = split[record["id"], record["version"]]
            assert len(rows) == record["collectorSplit"]["sessions"], record["id"]
            assert "sessions" not in record and "participants_v2" not in record
        else:
            rows = record["sessions"]
        found.extend((record["id"], record["version"], session) for session in rows)
    return found


def _streams_by_subnet(archive: Archive) -> list[tuple[str | None, int, int]]:
    """(caller subnet, streams, poor streams) of the latest versions, poorest first."""
    counts: dict[str | None, list[int]] = defaultdict(lambda: [0, 0])
    for _, _, session in _latest_sessions(archive):
        for segment in session["segments"]:
            for media in segment.get("media") or []:
                subnet = (media.get("callerNetwork") or {}).get("subnet")
                for stream in media.get("streams") or []:
                    counts[subnet][0] += 1
                    counts[subnet][1] += _poor(stream)
    rows = [(s, n, poor) for s, (n, poor) in counts.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0] is None, r[0] or ""))


def _records_by_modality(archive: Archive) -> list[tuple[date, str, str, int]]:
    counts: Counter[tuple[date, str, str]] = Counter()
    for name, record in _latest_records(archive).values():
        for modality in record["modalities"]:
            counts[folder_day(name), record["type"], modality] += 1
    return sorted((d, t, m, n) for (d, t, m), n in counts.items())


def test_the_archive_holds_revisions_split_records_and_a_recovered_record(
    archives: Archives,
) -> None:
    """What the call-records queries are checked on: without these, they prove nothing."""
    archive = archives.after
    rows = archive.rows("call_records")
    latest = _latest_records(archive)
    assert len(rows) > len(latest), "no record has two versions: no revision to skip"
    split = [r for _, r in latest.values() if "collectorSplit" in r]
    assert split, "no split record: the split path of the queries is not checked"
    revisits = {n: m for n, m in archive.manifests("call_records").items() if ".revisit-" in n}
    assert any(m["revised"] for m in revisits.values())
    assert any(m["recovered"] for m in revisits.values())
    before = archives.before.manifests("call_records")["_manifests/call_records/2026-10-21.json"]
    assert before["status"] == "settled-with-failures" and len(before["setAside"]) == 1


@sql_check("the latest version of each call record")
def _latest_call_records(archive: Archive, result: Result) -> None:
    expected = sorted((i, r["version"]) for i, (_, r) in _latest_records(archive).items())
    got = sorted(
        (str(i), v) for i, v in zip(result.column("id"), result.column("version"), strict=True)
    )
    assert got == expected
    assert "collectorSplit" in result.columns and {"year", "month", "day"} <= set(result.columns)


def _latest_session_counts(archive: Archive) -> Counter[tuple[str, int, str, int]]:
    """Each session of each record's latest version (record, version, session, segments)."""
    return Counter(
        (record, version, session["id"], len(session["segments"]))
        for record, version, session in _latest_sessions(archive)
    )


@sql_check("every session of the latest version of every call record, split or not")
def _latest_call_sessions(archive: Archive, result: Result) -> None:
    expected = _latest_session_counts(archive)
    got = Counter(
        (str(record), version, str(session["id"]), len(session["segments"]))
        for record, version, session in result.rows
    )
    assert got == expected
    assert result.columns == ["callRecordId", "callRecordVersion", "session"]


@sql_check("call records per day by type and modality")
def _call_records_per_day(archive: Archive, result: Result) -> None:
    expected = _records_by_modality(archive)
    assert expected and result.rows == expected


@sql_check("poor streams by caller subnet")
def _poor_streams(archive: Archive, result: Result) -> None:
    expected = _streams_by_subnet(archive)
    assert any(poor for _, _, poor in expected), "the test tenant should have poor streams"
    assert result.rows == expected


@spark_check("latest_records")
def _spark_latest_records(archive: Archive, frame: Any) -> None:
    expected = sorted((i, r["version"]) for i, (_, r) in _latest_records(archive).items())
    assert sorted((r.id, r.version) for r in frame.select("id", "version").collect()) == expected
    assert {"year", "month", "day", "collectorSplit"} <= set(frame.columns)


@spark_check("latest_sessions")
def _spark_latest_sessions(archive: Archive, frame: Any) -> None:
    expected = _latest_session_counts(archive)
    got = Counter(
        (r.callRecordId, r.callRecordVersion, r.session.id, len(r.session.segments))
        for r in frame.collect()
    )
    assert got == expected


@spark_check("records_by_modality")
def _spark_records_by_modality(archive: Archive, frame: Any) -> None:
    expected = [(d.year, d.month, d.day, t, m, n) for d, t, m, n in _records_by_modality(archive)]
    assert [tuple(r) for r in frame.collect()] == expected


@spark_check("poor_streams_by_subnet")
def _spark_poor_streams(archive: Archive, frame: Any) -> None:
    assert [tuple(r) for r in frame.collect()] == _streams_by_subnet(archive)


@spark_check("calls_per_day")
def _spark_calls_per_day(archive: Archive, frame: Any) -> None:
    groups: dict[tuple[date, str], list[int]] = defaultdict(list)
    for _, row in archive.rows("pstn"):
        groups[utc(row["startDateTime"]).date(), row["callType"]].append(row["duration"])
    expected = [(d.year, d.month, d.day, t, len(v), sum(v)) for (d, t), v in sorted(groups.items())]
    assert [tuple(r) for r in frame.collect()] == expected


@spark_check("failed_by_sip_code")
def _spark_failed(archive: Archive, frame: Any) -> None:
    failed = Counter(
        (row["finalSipCode"], row["finalSipCodePhrase"])
        for _, row in archive.rows("direct_routing")
        if not row["successfulCall"]
    )
    expected = sorted(((c, p, n) for (c, p), n in failed.items()), key=lambda r: (-r[2], r[0]))
    assert [tuple(r) for r in frame.collect()] == expected


@spark_check("final_pstn")
def _spark_final(archive: Archive, frame: Any) -> None:
    assert {"year", "month", "day"} <= set(frame.columns)
    ids = [r.id for r in frame.select("id").collect()]
    assert sorted(ids) == sorted(row["id"] for row in archive.final_rows("pstn"))


@spark_check("dr_calls")
def _spark_quirks(archive: Archive, frame: Any) -> None:
    def epoch(moment: datetime | None) -> int | None:  # collect() gives local naive times
        return None if moment is None else round(moment.timestamp() * 1_000_000)

    def raw_epoch(text: str) -> int | None:
        if text == PLACEHOLDER:
            return None
        return round((utc(text) - datetime(1970, 1, 1)).total_seconds() * 1_000_000)

    got = sorted(
        (r.id, epoch(r.started_utc), epoch(r.failed_utc), r.callee_masked) for r in frame.collect()
    )
    expected = sorted(
        (
            row["id"],
            raw_epoch(row["startDateTime"]),
            raw_epoch(row["failureDateTime"]),
            "*" in row["calleeNumber"],
        )
        for _, row in archive.rows("direct_routing")
    )
    assert got == expected


def test_spark_blocks_of_the_docs_give_what_the_raw_rows_say(
    spark: Any, archives: Archives
) -> None:
    blocks = [b for b in doc_blocks("python") if python_kind(b) == "spark"]
    setup = [b for b in blocks if "spark.read" not in b.code]
    assert setup, "the docs show how Spark signs in"
    for block in setup:  # only configuration: it takes effect when Spark reaches Azure
        run_block(block, archives.after.root, spark=spark)
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    checked = set()
    for block in blocks:
        if block in setup:
            continue
        names = run_block(block, archives.after.root, spark=spark)
        frames = [n for n in SPARK_CHECKS if n in names]
        assert frames, f"{block}: no check knows its DataFrames: add one to SPARK_CHECKS"
        for name in frames:
            SPARK_CHECKS[name](archives.after, names[name])
            checked.add(name)
    assert checked == set(SPARK_CHECKS)


def test_spark_stream_recipe_reads_each_new_blob_once(
    spark: Any, archives: Archives, tmp_path: Path
) -> None:
    block = the_block("spark stream recipe")
    live = sync(archives.before, tmp_path / "container")
    # The recipe's paths are relative to the JVM's working directory, not the test's.
    paths = {
        '"checkpoints/pstn"': f'"{tmp_path}/checkpoints/pstn"',
        '"tables/pstn"': f'"{tmp_path}/tables/pstn"',
    }

    def table() -> Counter[str]:
        got = duckdb.connect().execute(
            f"SELECT id FROM read_parquet('{tmp_path}/tables/pstn/*.parquet', union_by_name = true)"
        )
        return Counter(str(i) for (i,) in got.fetchall())

    run_block(block, live.root, paths, spark=spark)
    assert table() == Counter(row["id"] for _, row in live.rows("pstn"))
    run_block(block, live.root, paths, spark=spark)  # nothing new: nothing read
    assert table() == Counter(row["id"] for _, row in live.rows("pstn"))
    live = sync(archives.after, live.root)
    run_block(block, live.root, paths, spark=spark)
    loaded = table()
    assert loaded == Counter(row["id"] for _, row in live.rows("pstn"))
    assert set(loaded.values()) == {1}


# --- schema.md's table of integers beyond 64 bits -------------------------------------------

BIG_ROW = (
    b'{"value":[{"id":"a","startDateTime":"2026-10-20T01:00:00Z",'
    b'"small":9223372036854775807,"big":18446744073709551615,'
    b'"huge":123456789012345678901234567890}]}'
)


def archived_line(tmp_path: Path) -> Path:
    """The row as the collector archives it: parsed like a Graph page, written like a row."""
    rows = _parse_json(BIG_ROW)["value"]
    window = Window(parse_instant("2026-10-20T00:00:00Z"), parse_instant("2026-10-21T00:00:00Z"))
    (line,) = split_page(SOURCES["pstn"], window, rows).lines[date(2026, 10, 20)]
    assert b'"big":18446744073709551615' in line
    assert b'"huge":1.2345678901234568e+29' in line  # rounded, in float notation
    path = tmp_path / "big.jsonl"
    path.write_bytes(line + b"\n")
    return path


def test_integers_beyond_64_bits_read_in_duckdb_as_schema_md_says(tmp_path: Path) -> None:
    path = archived_line(tmp_path)
    con = duckdb.connect()
    types = dict(
        con.execute(
            f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_json_auto('{path}'))"
        ).fetchall()
    )
    assert (types["small"], types["big"], types["huge"]) == ("BIGINT", "HUGEINT", "DOUBLE")
    big = con.execute(f"SELECT big FROM read_json_auto('{path}')").fetchone()
    assert big == (2**64 - 1,)
    page = (ROOT / "docs/data/schema.md").read_text(encoding="utf-8")
    assert "| integer from 2^63 to 2^64 − 1 | `HUGEINT` (exact) | `decimal(20,0)` (exact) |" in page


def test_integers_beyond_64_bits_read_in_spark_as_schema_md_says(
    spark: Any, tmp_path: Path
) -> None:
    path = archived_line(tmp_path)
    frame = spark.read.json(str(path))
    types = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    assert (types["small"], types["big"], types["huge"]) == ("bigint", "decimal(20,0)", "double")
    assert frame.first().big == Decimal(2**64 - 1)
    with pytest.raises(Exception, match="NEGATIVE_SCALE"):
        spark.read.option("prefersDecimal", "true").json(str(path)).collect()


# --- links between the data pages -----------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_of_the_data_pages_reach_their_pages_and_headings() -> None:
    for page in sorted((ROOT / "docs/data").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = page if not path else (page.parent / path).resolve()
            if not linked.exists():
                assert linked.parent != page.parent, f"{page.name}: {target} does not exist"
                continue  # a page of the docs another change adds
            if anchor:
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
                assert anchor in {slug(h) for h in headings}, f"{page.name}: {target}"
