"""Multi-tenant fan-out on the platform: the timer queues one message per tenant on the host's
storage queue (Azurite), and worker processes run ``collect_tenant`` as the Functions host
would (``devstack.queue_host``): duplicates, a dying instance and a poison tenant."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueServiceClient

from collector.cli import main
from collector.core.settings import load_settings
from collector.core.timefmt import format_instant
from collector.core.windows import floor_to_midnight
from collector.tenants.fanout import POISON, QUEUE, enqueue_tenants, tenant_message
from devstack.azurite import Azurite
from devstack.queue_host import trigger_message

from .conftest import ROOT, Stack, assert_archive_matches, registered_function
from .test_tenants import CONTOSO, FABRIKAM, customers


@pytest.fixture(scope="module")
def queue_service() -> Iterator[Azurite]:
    """Azurite's queue service: the Functions host's storage queue."""
    emulator = Azurite(service="queue")
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def fanout(stack: Stack, queue_service: Azurite, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """A stack with two customer tenants (Fabrikam has not consented), empty queues, and the
    settings in this process's environment too (the timer reads them there)."""
    service = QueueServiceClient.from_connection_string(queue_service.connection_string)
    for name in (QUEUE, POISON):
        if any(q.name == name for q in service.list_queues()):
            service.delete_queue(name)
    customers(stack)
    start = format_instant(floor_to_midnight(datetime.now(UTC) - timedelta(days=2)))
    stack.env.update(
        AzureWebJobsStorage=queue_service.connection_string,
        COLLECTOR_START=start,
        COLLECTOR_LEASE_SECONDS="2",
    )
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    return stack


def worker(stack: Stack, *args: str) -> subprocess.Popen[str]:
    """One Functions instance serving the queue."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack.queue_host",
            "--max-dequeue",
            "2",
            "--retry-seconds",
            "0",
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(*workers: subprocess.Popen[str]) -> int:
    """Wait for ``workers`` to drain the queue; return how many invocations they ran."""
    ran = 0
    for process in workers:
        out, err = process.communicate(timeout=240)
        assert process.returncode in (0, -signal.SIGKILL), err[-3000:]
        ran += sum(int(line.split("=")[1]) for line in out.splitlines() if "invocations=" in line)
    return ran


def archived(stack: Stack, tenant: str) -> None:
    """Every row of ``tenant`` up to its watermark is archived once, in its folder."""
    for source in ("direct_routing", "pstn"):
        state = json.loads(stack.blobs()[f"_state/tenant={tenant}/{source}.json"])
        assert state["claims"] == [] and state["owner"] is None
        start = stack.env["COLLECTOR_START"]
        assert assert_archive_matches(stack, source, start, state["watermark"], tenant=tenant)


def test_the_timer_queues_every_tenant_and_workers_collect_each_the_poison_tenant_shows(
    fanout: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = fanout
    asyncio.run(registered_function().get_user_function()(TimerRequest()))
    # A message delivered twice (the timer ran again before the first was read).
    asyncio.run(enqueue_tenants(load_settings(stack.env), (CONTOSO,)))
    ran = finish(worker(stack, "--idle-exit", "4"), worker(stack, "--idle-exit", "4"))
    archived(stack, CONTOSO)
    # Contoso: twice, each ok (or yielding to the other). Fabrikam: 2 deliveries, then poison.
    assert ran == 4
    assert stack.graph.directory is not None and stack.graph.directory.issued[CONTOSO] >= 1
    assert not [n for n in stack.blobs() if f"tenant={FABRIKAM}/" in n and n.endswith(".jsonl")]
    capsys.readouterr()
    assert main(["status", "--json"], stack.env) == 1
    report = json.loads(capsys.readouterr().out)["sources"]
    problems = {(h["source"], h.get("tenant")): h["problems"] for h in report}
    assert problems[("pstn", CONTOSO)] == []
    fabrikam = " | ".join(problems[("pstn", FABRIKAM)])
    assert f"1 message(s) for this tenant in {POISON}" in fabrikam
    assert "the tenant has not consented: send its admin" in fabrikam

    # Its administrator consents; the next tick's message succeeds, and the poisoned one is
    # history: status is clean again although the message stays in the poison queue.
    assert stack.graph.directory is not None
    stack.graph.directory.consented.add(FABRIKAM)
    asyncio.run(enqueue_tenants(load_settings(stack.env), (FABRIKAM,)))
    assert finish(worker(stack, "--idle-exit", "3")) == 1
    archived(stack, FABRIKAM)
    assert main(["status", "--json"], stack.env) == 0, capsys.readouterr().out


def test_a_worker_dying_mid_tenant_leaves_the_message_to_another(fanout: Stack) -> None:
    stack = fanout
    stack.env["COLLECTOR_TENANTS"] = CONTOSO
    asyncio.run(enqueue_tenants(load_settings(stack.env)))
    first = worker(stack, "--visibility-seconds", "3", "--idle-exit", "30")

    def kill(requests: int) -> None:
        if requests == 3:  # a few pages into the tenant: windows claimed, blobs staged
            os.kill(first.pid, signal.SIGKILL)

    stack.graph.simulator.on_request = kill
    first.communicate(timeout=120)
    stack.graph.simulator.on_request = None
    assert first.returncode == -signal.SIGKILL
    # The message comes back once its visibility lapses; the lease lapses after 2 s.
    assert finish(worker(stack, "--visibility-seconds", "3", "--idle-exit", "6")) == 1
    archived(stack, CONTOSO)


def test_the_queue_function_drops_a_removed_tenant_and_refuses_a_malformed_message(
    fanout: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    function = registered_function("collect_tenant").get_user_function()
    removed = "cccccccc-3333-4333-8333-000000000003"  # not in COLLECTOR_TENANTS
    asyncio.run(function(trigger_message(tenant_message(removed))))
    assert f"tenant {removed} is not in COLLECTOR_TENANTS any more: message dropped" in caplog.text
    # Not a tenant: it fails every delivery, so the host poisons it.
    for body in (b"hello", b'{"tenant": "contoso.onmicrosoft.com"}'):
        with pytest.raises(ValueError, match="not a tenant"):
            asyncio.run(function(trigger_message(body)))
    assert fanout.graph.simulator.stats["requests"] == 0 and fanout.blobs() == {}
