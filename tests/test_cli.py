"""The command line as a user runs it: a separate process, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devstack.graph_simulator import Fault

from .conftest import Stack, assert_archive_matches

ROOT = Path(__file__).resolve().parent.parent


def collector(stack: Stack, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env, **overrides}
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_run_exits_0_and_prints_one_line_per_source(stack: Stack) -> None:
    done = collector(stack, "run", "--as-of", "2026-11-21T06:00:00Z")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["sms", "direct_routing", "pstn"]
    assert all(" ok " in line for line in lines)
    assert "window 2/2" in done.stderr  # progress is logged per window
    for source in ("sms", "direct_routing", "pstn"):
        assert_archive_matches(stack, source, "2026-11-20T00:00:00Z", "2026-11-21T05:00:00Z")


def test_failed_source_exits_1_others_complete(stack: Stack) -> None:
    stack.graph.simulator.add_fault(
        Fault("status", count=-1, source="pstn", status=404, code="NotFound")
    )
    done = collector(stack, "run", "--as-of", "2026-11-21T06:00:00Z")
    assert done.returncode == 1
    assert "pstn: failed" in done.stdout and "HTTP 404 NotFound" in done.stdout
    assert "sms: ok" in done.stdout and "direct_routing: ok" in done.stdout


def test_config_error_exits_2_naming_the_setting(stack: Stack) -> None:
    done = collector(stack, "run", COLLECTOR_SOURCES="sms,voicemail")
    assert done.returncode == 2
    assert "COLLECTOR_SOURCES='sms,voicemail'" in done.stderr and "direct_routing" in done.stderr
    assert stack.graph.simulator.stats["requests"] == 0


def test_bad_as_of_is_a_usage_error(stack: Stack) -> None:
    done = collector(stack, "run", "--as-of", "tomorrow")
    assert done.returncode == 2 and "--as-of" in done.stderr
