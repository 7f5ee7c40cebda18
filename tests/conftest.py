"""Fixtures for end-to-end tests on the real local stack.

One Azurite process serves the whole session; every test gets its own Graph simulator,
identity endpoint and container, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from collector.cli import main
from collector.core.rows import event_ticks, row_key
from collector.core.sources import SOURCES
from collector.core.timefmt import parse_instant, utc_date_of_ticks
from devstack.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from devstack.proxy import ImmutableArchiveProxy
from devstack.stack import GraphStack
from devstack.synthetic import Tenant

_containers = itertools.count(1)


START = "2026-10-20T00:00:00Z"
"""The tests' COLLECTOR_START."""
FIRST = "2026-10-21T12:00:00Z"
"""A first run: reads Oct 20-21 provisionally (nothing is 48 h old yet)."""
SECOND = "2026-10-23T12:30:00Z"
"""A later run: settles Oct 20, reads the rest provisionally."""
SECOND_END = "2026-10-23T11:30:00Z"
"""Where ``SECOND`` reads to (the 60-minute lag)."""
ALL = ("sms", "direct_routing", "pstn")
LATE_SOURCES = ("direct_routing", "pstn")
"""The sources of the late-row and kill tests."""
ROOT = Path(__file__).resolve().parent.parent
LATE_STAMPS = (
    "2026-10-20T08:15:00.1234567Z",
    "2026-10-20T23:59:59.9999999Z",
    "2026-10-21T03:00:00Z",
)


def late_rows(stack: Stack) -> dict[str, str]:
    """Rows Graph 'ingests' after their window was read (Oct 20 and 21): id -> stamp."""
    return {
        stack.tenant.add_row(source, stamp)["id"]: stamp
        for source in LATE_SOURCES
        for stamp in LATE_STAMPS
    }


def spawn(stack: Stack, as_of: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--as-of", as_of],
        cwd=ROOT,
        env={**os.environ, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_after_write(stack: Stack, as_of: str, path_part: str, nth: int) -> None:
    """Run the collector in a process and kill it once storage did the ``nth`` write to a
    path containing ``path_part`` (before the collector hears back)."""
    seen = 0

    def kill(_n: int, phase: str, path: str) -> bool:
        nonlocal seen
        if phase == "after" and path_part in path:
            seen += 1
            if seen == nth:
                os.kill(process.pid, signal.SIGKILL)
                return True
        return False

    stack.proxy.on_write = kill
    process = spawn(stack, as_of)
    process.communicate(timeout=120)
    stack.proxy.on_write = None
    assert process.returncode == -signal.SIGKILL


SMALL_TENANT = {"sms": 300, "direct_routing": 2_300, "pstn": 1_100}


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite for the whole test session (4 GB of memory: deleted containers' extents are
    freed only by its periodic clean-up)."""
    emulator = Azurite(memory_mb=4096)
    emulator.start()
    yield emulator
    emulator.stop()


@dataclass
class Stack:
    """What an end-to-end test works with. The collector reaches storage through ``proxy``,
    which makes the container immutable (WORM) for data blobs and records what an
    event-driven reader would receive; tests read and prepare storage directly."""

    graph: GraphStack
    azurite: Azurite
    env: dict[str, str]
    proxy: ImmutableArchiveProxy

    @property
    def tenant(self) -> Tenant:
        """The simulated tenant."""
        return self.graph.tenant

    def run(self, as_of: str, **overrides: str) -> int:
        """Run ``python -m collector run --as-of`` in this process; return its exit code."""
        return main(["run", "--as-of", as_of], {**self.env, **overrides})

    def container(self) -> Any:
        """A synchronous client of this test's container."""
        service = BlobServiceClient.from_connection_string(self.azurite.connection_string)
        return service.get_container_client(self.env["COLLECTOR_CONTAINER"])

    def blobs(self) -> dict[str, bytes]:
        """Every blob of the container with its content."""
        container = self.container()
        if not container.exists():
            return {}
        return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}

    def state(self, source: str) -> dict[str, Any] | None:
        """The stored state document of ``source``."""
        data = self.blobs().get(f"_state/{source}.json")
        return None if data is None else json.loads(data)

    def watermark(self, source: str) -> str | None:
        """The stored watermark of ``source`` (ISO 8601 text)."""
        state = self.state(source)
        return None if state is None else str(state["watermark"])


def data_rows(
    blobs: Mapping[str, bytes], source: str, tenant: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every archived row of ``source`` (of ``tenant``, in multi-tenant mode) with its blob."""
    found: list[tuple[str, dict[str, Any]]] = []
    folder = f"{source}/" if tenant is None else f"{source}/tenant={tenant}/"
    for name, content in blobs.items():
        if name.startswith(folder):
            assert content.endswith(b"\n"), f"{name} does not end with a newline"
            found.extend((name, json.loads(line)) for line in content.decode("utf-8").splitlines())
    return found


def partition_of(source: str, row: Mapping[str, Any], tenant: str | None = None) -> str:
    """The folder a row belongs in, by the UTC date of its event time."""
    day: date = utc_date_of_ticks(event_ticks(SOURCES[source], row, 0))
    folder = source if tenant is None else f"{source}/tenant={tenant}"
    return f"{folder}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


def assert_archive_matches(
    stack: Stack,
    source: str,
    start: str,
    end: str,
    blobs: Mapping[str, bytes] | None = None,
    not_yet: Set[str] = frozenset(),
    tenant: str | None = None,
) -> int:
    """Assert the archive of ``source`` (of ``tenant``: a customer tenant the simulator
    serves) holds exactly the simulator's rows of ``[start, end)`` (less the ids in
    ``not_yet``), each once, equal as JSON and in its date partition; return the row count."""
    blobs = stack.blobs() if blobs is None else blobs
    data = stack.tenant if tenant is None else stack.graph.simulator.tenants[tenant]

    def key(row: Mapping[str, Any]) -> str:
        return row_key(SOURCES[source], row, 0)

    expected = [
        row
        for row in data.rows_between(source, parse_instant(start), parse_instant(end))
        if key(row) not in not_yet
    ]
    archived = data_rows(blobs, source, tenant)
    ids = [key(row) for _, row in archived]
    assert len(ids) == len(set(ids)), f"{source}: {len(ids) - len(set(ids))} duplicate rows"
    by_id = {key(row): (name, row) for name, row in archived}
    missing = [key(r) for r in expected if key(r) not in by_id]
    assert not missing, f"{source}: {len(missing)} rows missing, e.g. {missing[:3]}"
    assert len(archived) == len(expected), f"{source}: extra rows archived"
    for row in expected:
        name, stored = by_id[key(row)]
        assert stored == row, f"{source}: row {key(row)} differs"
        assert name.startswith(partition_of(source, row, tenant)), f"{name} is the wrong partition"
    return len(expected)


@pytest.fixture
def stack(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A fresh Graph simulator + identity endpoint, a new container, and the env to use them."""
    graph = GraphStack(Tenant(seed=7, rows_per_day=SMALL_TENANT))
    # azure-identity reads the managed-identity endpoint from the process environment.
    monkeypatch.setenv("IDENTITY_ENDPOINT", graph.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", graph.identity_header)
    proxy = ImmutableArchiveProxy(f"http://127.0.0.1:{azurite.port}", azurite.connection_string)
    port = graph.serve(proxy.app())
    env = {
        **graph.env(),
        "COLLECTOR_STORAGE": (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
        ),
        "COLLECTOR_CONTAINER": f"test{next(_containers):04d}",
        "COLLECTOR_SOURCES": "sms,direct_routing,pstn",
        "COLLECTOR_START": "2026-10-20T00:00:00Z",
        "COLLECTOR_LAG_MINUTES": "60",
    }
    stack = Stack(graph, azurite, env, proxy)
    yield stack
    graph.stop()
    # The archive contract, checked in every end-to-end test: no data blob was ever
    # overwritten or deleted, and every data blob was created once.
    assert proxy.refused == [], proxy.refused
    created = [(c.container, c.name) for c in proxy.created]
    assert len(created) == len(set(created)), "a data blob was created twice"
    # The session's one in-memory Azurite holds 1 GB: a test's archive goes with the test.
    container = stack.container()
    if container.exists():
        container.delete_container()


@functools.cache
def _registered_functions() -> dict[str, Any]:
    import function_app

    # The SDK validates, and so allows, get_functions() only once.
    return {str(f.get_function_name()): f for f in function_app.app.get_functions()}


def registered_function(name: str = "collect_call_logs") -> Any:
    """One of the app's functions, as the host finds it."""
    return _registered_functions()[name]


def registered_function_names() -> set[str]:
    """Every function the app registers."""
    return set(_registered_functions())


def run_async(coroutine: Any) -> Any:
    """Run a coroutine to completion (for tests that drive async code directly)."""
    return asyncio.run(coroutine)
