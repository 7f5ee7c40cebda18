"""``python -m collector verify``: every settled day checked against its manifest, from
storage only, with the damage a test does to the archive found and named."""

from __future__ import annotations

import pytest

from collector.cli import main

from .conftest import SECOND, Stack

LATER = "2026-10-24T12:30:00Z"  # settles Oct 21 too
DAY20 = "pstn/year=2026/month=10/day=20/"
DAY21 = "pstn/year=2026/month=10/day=21/"


@pytest.fixture
def settled(stack: Stack) -> Stack:
    stack.env.update(COLLECTOR_SOURCES="pstn")
    assert stack.run(SECOND) == 0
    assert stack.run(LATER) == 0
    return stack


def verify(stack: Stack, *args: str) -> int:
    return main(["verify", *args], stack.env)


def blob_in(stack: Stack, folder: str) -> str:
    return next(n for n in sorted(stack.blobs()) if n.startswith(folder))


def test_a_healthy_archive_verifies_day_by_day(
    settled: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert verify(settled) == 0
    *lines, summary = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["pstn 2026-10-20", "pstn 2026-10-21"]
    assert all(line.endswith(": ok") for line in lines)
    assert summary == "verified 2 day(s): 2 ok, 0 expired, 0 with a mismatch"
    assert settled.graph.simulator.stats["requests"] > 0  # (the runs); verify asks Graph nothing
    requests = settled.graph.simulator.stats["requests"]
    assert verify(settled, "--from", "2026-10-21", "--to", "2026-10-21") == 0
    assert capsys.readouterr().out.startswith("pstn 2026-10-21")
    assert settled.graph.simulator.stats["requests"] == requests


def test_a_deleted_blob_is_found(settled: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    name = blob_in(settled, DAY20)
    settled.container().delete_blob(name)
    capsys.readouterr()
    assert verify(settled) == 1
    out = capsys.readouterr().out
    assert f"pstn 2026-10-20: 0 blobs, 0 rows: MISMATCH: {name} is listed but missing" in out
    assert "pstn 2026-10-21" in out and out.splitlines()[-2].endswith(": ok")
    assert out.splitlines()[-1] == "verified 2 day(s): 1 ok, 0 expired, 1 with a mismatch"


def test_a_removed_line_is_found(settled: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    name = blob_in(settled, DAY20)
    lines = settled.blobs()[name].splitlines(keepends=True)
    settled.container().upload_blob(name, b"".join(lines[1:]), overwrite=True)
    capsys.readouterr()
    assert verify(settled) == 1
    out = capsys.readouterr().out
    assert f"{name} holds {len(lines) - 1} rows, the manifest says {len(lines)}" in out


def test_a_row_copied_into_another_day_or_the_same_day_is_found(
    settled: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    source_blob = blob_in(settled, DAY20)
    row = settled.blobs()[source_blob].splitlines(keepends=True)[0]
    other = blob_in(settled, DAY21)
    settled.container().upload_blob(other, settled.blobs()[other] + row, overwrite=True)
    settled.container().upload_blob(f"{DAY20}part-copy.jsonl", row)
    capsys.readouterr()
    assert verify(settled) == 1
    out = capsys.readouterr().out
    assert "1 row(s) belong to another day's folder" in out
    assert f"{DAY20}part-copy.jsonl is not in the manifest" in out
    assert "1 row(s) repeat a key" in out


def test_bad_dates_are_refused(settled: Stack) -> None:
    with pytest.raises(SystemExit) as refused:
        verify(settled, "--from", "20/10/2026")
    assert refused.value.code == 2
