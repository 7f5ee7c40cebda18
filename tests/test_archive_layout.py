"""What lands in the container: every row once in its date partition, state and manifests
under ``_``, and a run with nothing new writes nothing."""

from __future__ import annotations

import json

import pytest

from collector.cli import main

from .conftest import (
    ALL,
    FIRST,
    SECOND,
    SECOND_END,
    START,
    Stack,
    assert_archive_matches,
    data_rows,
)


def test_every_row_lands_once_in_its_partition(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.run(SECOND) == 0
    blobs = stack.blobs()
    counts = {s: assert_archive_matches(stack, s, START, SECOND_END, blobs) for s in ALL}
    # Several days and many 1,000-row pages per source.
    assert counts["direct_routing"] > 7_000 and counts["sms"] > 1_000
    days = {
        name.split("/day=")[0] + name.split("/day=")[1][:2]
        for name in blobs
        if name.startswith("pstn/")
    }
    assert len(days) == 4
    assert {s: stack.watermark(s) for s in ALL} == dict.fromkeys(ALL, SECOND_END)
    out = capsys.readouterr().out
    assert "direct_routing: ok windows=4" in out


def test_state_lives_under_underscore_and_data_is_hive_partitioned(stack: Stack) -> None:
    assert stack.run(SECOND) == 0
    names = list(stack.blobs())
    data = [n for n in names if not n.startswith("_")]
    # Oct 20 is older than the 48 h lateness horizon: settled at once, with a manifest.
    assert {n for n in names if n.startswith("_")} == {f"_state/{s}.json" for s in ALL} | {
        f"_state/{s}.run.json" for s in ALL
    } | {f"_manifests/{s}/2026-10-20.json" for s in ALL}
    for name in data:
        source, year, month, day, leaf = name.split("/")
        assert source in ALL and year.startswith("year=") and month.startswith("month=")
        assert day.startswith("day=") and leaf.endswith(".jsonl")
        settled = day == "day=20"
        assert leaf == "settle-2026-10-20.jsonl" if settled else leaf.startswith("part-")


def test_rows_on_window_boundaries_appear_once(stack: Stack) -> None:
    # The synthetic tenant already has a row exactly at every midnight; add rows exactly at
    # the run's end (the next run's start) and at the configured start.
    for source in ALL:
        stack.tenant.add_row(source, SECOND_END)
        stack.tenant.add_row(source, START)
    assert stack.run(SECOND) == 0
    assert stack.run("2026-10-23T13:00:00Z") == 0  # next window starts exactly at SECOND_END
    blobs = stack.blobs()
    for source in ALL:
        assert_archive_matches(stack, source, START, "2026-10-23T12:00:00Z", blobs)
        stamped = [
            r
            for _, r in data_rows(blobs, source)
            if r.get("startDateTime", r.get("sentDateTime"))
            in ("2026-10-23T11:30:00.0000000Z", "2026-10-21T00:00:00Z")
        ]
        assert len(stamped) == 2, source


def test_second_run_with_no_new_time_writes_nothing(stack: Stack) -> None:
    assert stack.run(SECOND) == 0
    before = stack.blobs()
    requests = stack.graph.simulator.stats["requests"]
    assert stack.run(SECOND) == 0
    assert stack.blobs().keys() == before.keys()
    assert {k: v for k, v in stack.blobs().items() if not k.startswith("_")} == {
        k: v for k, v in before.items() if not k.startswith("_")
    }
    assert stack.graph.simulator.stats["requests"] == requests


def test_rereading_the_same_range_leaves_the_same_blobs(stack: Stack) -> None:
    assert stack.run(SECOND) == 0
    first = {k: v for k, v in stack.blobs().items() if not k.startswith("_")}
    # Forget the watermarks: the next run reads the whole range again.
    container = stack.container()
    for source in ALL:
        container.delete_blob(f"_state/{source}.json")
    assert stack.run(SECOND) == 0
    second = {k: v for k, v in stack.blobs().items() if not k.startswith("_")}
    assert second == first


def test_pstn_blocked_users_is_archived_like_every_log_keyed_by_remediation_id(
    stack: Stack,
) -> None:
    stack.tenant.rows_per_day["pstn_blocked_users"] = 7  # a few block actions a day
    stack.env.update(COLLECTOR_SOURCES="pstn_blocked_users")
    assert stack.run(FIRST) == 0
    late = stack.tenant.add_row("pstn_blocked_users", "2026-10-20T08:15:00.1234567Z")
    assert stack.run(SECOND) == 0
    blobs = stack.blobs()
    assert assert_archive_matches(stack, "pstn_blocked_users", START, SECOND_END, blobs) > 20
    folder = "pstn_blocked_users/year=2026/month=10/day=20/"
    settle = blobs[f"{folder}settle-2026-10-20.jsonl"].decode()
    assert [json.loads(line)["remediationId"] for line in settle.splitlines()] == [
        late["remediationId"]
    ]
    manifest = json.loads(blobs["_manifests/pstn_blocked_users/2026-10-20.json"])
    assert manifest["lateRows"] == 1 and manifest["rows"] == 8
    assert main(["verify"], stack.env) == 0
    assert main(["status", "--as-of", SECOND], stack.env) == 0
