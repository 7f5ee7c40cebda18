"""Call records at enterprise scale, end to end on the local stack: a day that needs several
runs (with runs killed at random instants), versions that change days after the call and
records that first appear after the day was read (revisions, read at the revisits), and a
record that fails every read (set aside, its day and the days after it go on). Each is
judged by what lands in the archive, the manifests and ``status --json``."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from collector.cli import main
from collector.core.settings import load_settings
from collector.core.timefmt import parse_instant
from collector.graph.client import RetryPolicy
from collector.run.runner import run_cycle
from devstack.call_records import CallRecords

from .conftest import Stack, run_async, spawn

SOURCE = "call_records"
DAY = date(2026, 10, 20)
DAY_DONE = "2026-10-23T00:30:00Z"
"""A run as of this reads Oct 20 whole (past the 48 h lateness) and nothing of Oct 21."""
FAST_RETRY = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)


def records(stack: Stack) -> CallRecords:
    sim: CallRecords = stack.graph.simulator.call_records
    return sim


@pytest.fixture
def tenant(stack: Stack) -> Stack:
    """A tenant of 300 calls and meetings a day, collecting call records only."""
    records(stack).configure(records_per_day=300, sessions=(1, 4), huge_per_day=0)
    stack.env.update(COLLECTOR_SOURCES=SOURCE)
    return stack


def lines(stack: Stack, day: date = DAY) -> list[dict[str, Any]]:
    """Every record line archived under ``day``."""
    folder = f"{SOURCE}/year={day.year}/month={day.month:02d}/day={day.day:02d}/"
    blobs = stack.blobs()
    return [
        json.loads(line)
        for name, data in sorted(blobs.items())
        if name.startswith(folder) and "/" not in name[len(folder) :]
        for line in data.splitlines()
    ]


def expected(stack: Stack, as_of: str, day: date = DAY) -> dict[str, dict[str, Any]]:
    start = f"{day.isoformat()}T00:00:00Z"
    end = f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z"
    return {r["id"]: r for r in records(stack).expected(None, start, end, as_of=as_of)}


def manifest(stack: Stack, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stack.blobs()[f"_manifests/{SOURCE}/{name}"])
    return document


def status(stack: Stack, as_of: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    main(["status", "--json", "--as-of", as_of], stack.env)
    found: dict[str, Any] = json.loads(capsys.readouterr().out)["sources"][0]
    return found


def test_a_day_too_large_for_one_run_fills_over_several_each_adding_to_it(
    tenant: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tenant
    sim = records(stack)
    sim.now = DAY_DONE
    sim.latency = 0.15  # each run's 1 s budget reads a few hours, not the day
    watermarks = []
    for _ in range(40):
        assert stack.run(DAY_DONE, COLLECTOR_TIME_BUDGET_SECONDS="1") == 0
        state = json.loads(stack.blobs()[f"_state/{SOURCE}.json"])
        watermarks.append(state["watermark"])
        if f"_manifests/{SOURCE}/{DAY.isoformat()}.json" in stack.blobs():
            break
    assert len(watermarks) >= 3, watermarks  # several runs, each adding hours
    assert watermarks == sorted(watermarks) and len(set(watermarks)) >= 3
    archived = Counter(line["id"] for line in lines(stack))
    assert archived.keys() == expected(stack, DAY_DONE).keys() and set(archived.values()) == {1}
    document = manifest(stack, "2026-10-20.json")
    assert document["records"] == 300 and document["status"] == "settled"
    assert status(stack, DAY_DONE, capsys)["settled"] == "2026-10-21T00:00:00Z"
    assert main(["verify", "--as-of", DAY_DONE], stack.env) == 0


def test_runs_killed_at_random_instants_still_archive_every_record_once(tenant: Stack) -> None:
    stack = tenant
    stack.env.update(COLLECTOR_LEASE_SECONDS="1")
    sim = records(stack)
    sim.now = DAY_DONE  # the runs are other processes: they read Graph's clock from here
    sim.latency = 0.1  # a run takes a few seconds
    chance = random.Random(24)
    killed = 0
    for attempt in range(30):
        if f"_manifests/{SOURCE}/{DAY.isoformat()}.json" in stack.blobs():
            break
        process = spawn(stack, DAY_DONE)
        if attempt < 5:  # killed anywhere: starting, listing, reading, committing
            time.sleep(chance.uniform(0.6, 2.5))
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                killed += 1
        process.communicate(timeout=120)
        time.sleep(1.1)  # a killed run's lease lapses
    assert killed >= 3
    assert f"_manifests/{SOURCE}/{DAY.isoformat()}.json" in stack.blobs()
    archived = Counter(line["id"] for line in lines(stack))
    assert archived.keys() == expected(stack, DAY_DONE).keys() and set(archived.values()) == {1}
    assert main(["verify", "--as-of", DAY_DONE], stack.env) == 0


def test_versions_that_change_days_later_are_archived_as_revisions_at_the_revisits(
    tenant: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stack = tenant
    sim = records(stack)
    sim.configure(  # fewer: every run also reads the days since the last
        records_per_day=100, sessions=(1, 3), huge_per_day=0,
        late_change_rate=0.3, late_create_rate=0.1,
    )  # fmt: skip
    sim.now = DAY_DONE
    assert stack.run(DAY_DONE) == 0
    first = {line["id"]: line for line in lines(stack)}
    assert first == expected(stack, DAY_DONE)
    # A run every few days, past each revisit age (3, 7, 14 and 28 days after Oct 20 ended).
    for as_of in ("2026-10-24T12:30:00Z", "2026-10-28T12:30:00Z", "2026-11-04T12:30:00Z",
                  "2026-11-18T12:30:00Z"):  # fmt: skip
        sim.now = as_of
        assert stack.run(as_of) == 0
    final = expected(stack, "2026-11-18T12:30:00Z")
    archived = lines(stack)
    latest: dict[str, dict[str, Any]] = {}
    for line in archived:
        if line["id"] not in latest or line["version"] > latest[line["id"]]["version"]:
            latest[line["id"]] = line
    assert latest == final  # the latest version of every record, those first seen late too
    revised = {i for i in final if i in first and final[i]["version"] > first[i]["version"]}
    appeared = final.keys() - first.keys()
    assert revised and appeared  # the tenant changed and added records after the first read
    versions = Counter((line["id"], line["version"]) for line in archived)
    assert set(versions.values()) == {1}  # each version once
    last = "2026-11-18T12:30:00Z"
    assert all(v in dict(sim.versions(None, i, last)) for i, v in versions)  # Graph's own
    visits = [manifest(stack, f"2026-10-20.revisit-{age:02d}d.json") for age in (3, 7, 14, 28)]
    assert sum(v["appeared"] for v in visits) == len(appeared)
    assert sum(v["revised"] for v in visits) >= len(revised)
    assert visits[-1]["revisions"] == len(archived) - len(final)
    # The latest version by (id, highest version), as the docs query it.
    (tmp_path / "records.jsonl").write_bytes(
        b"".join(json.dumps(line).encode() + b"\n" for line in archived)
    )
    relation = duckdb.sql(
        f"SELECT id, version FROM read_json_auto('{tmp_path}/records.jsonl') "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY version DESC) = 1"
    )
    assert relation is not None
    rows = relation.fetchall()
    assert {str(i): v for i, v in rows} == {i: r["version"] for i, r in final.items()}
    health = status(stack, "2026-11-18T12:30:00Z", capsys)  # the last 30 days: all of them
    every = [json.loads(d) for n, d in stack.blobs().items() if ".revisit-" in n]
    assert health["revisions"] == sum(v["revised"] for v in every) >= len(revised)
    assert main(["verify", "--as-of", "2026-11-18T12:30:00Z"], stack.env) == 0


def test_a_record_that_fails_every_read_is_set_aside_and_later_days_go_on(
    tenant: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tenant
    sim = records(stack)
    sim.now = "2026-10-24T00:30:00Z"  # Oct 20 and Oct 21 are past the lateness
    broken = next(iter(expected(stack, sim.now)))
    sim.fail_always(broken)
    settings = load_settings(stack.env)
    report = run_async(run_cycle(settings, parse_instant(sim.now), retry=FAST_RETRY))
    assert [r.status for r in report.sources] == ["ok"]
    served = sim.stats["record_failed"]
    assert served >= settings.record_attempts  # each read, and each of its retries, failed
    first = manifest(stack, "2026-10-20.json")
    assert first["status"] == "settled-with-failures"
    [aside] = first["setAside"]
    assert aside["id"] == broken and aside["attempts"] == settings.record_attempts
    assert "500" in aside["error"]
    assert manifest(stack, "2026-10-21.json")["status"] == "settled"  # the next day went on
    assert {line["id"] for line in lines(stack)} == expected(stack, sim.now).keys() - {broken}
    health = status(stack, sim.now, capsys)
    assert [r["id"] for r in health["setAside"]] == [broken] and not health["fresh"]
    # Still failing at the next revisit (Oct 20 was first read 3 days old: the 3-day revisit
    # is that read; the 7-day one is next): tried again, still set aside, attempts counted.
    sim.now = "2026-10-28T12:30:00Z"
    run_async(run_cycle(settings, parse_instant(sim.now), retry=FAST_RETRY))
    visit = manifest(stack, "2026-10-20.revisit-07d.json")
    assert "2026-10-20.revisit-03d.json" not in str(list(stack.blobs()))
    assert [r["id"] for r in visit["setAside"]] == [broken]
    [kept] = status(stack, sim.now, capsys)["setAside"]
    assert kept["attempts"] == 2 * settings.record_attempts
    capsys.readouterr()
    assert main(["verify", "--as-of", sim.now], stack.env) == 0
    assert "1 record(s) set aside" in capsys.readouterr().out
