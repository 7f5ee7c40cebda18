"""The Azure Functions entry point, imported and invoked as the host would."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.functions.timer import TimerRequest

from collector.core.timefmt import format_instant
from collector.core.windows import floor_to_midnight
from collector.tenants.fanout import QUEUE
from devstack.graph_simulator import Fault

from .conftest import (
    Stack,
    assert_archive_matches,
    registered_function,
    registered_function_names,
)

ROOT = Path(__file__).resolve().parent.parent


def test_the_bindings_are_declared_as_documented() -> None:
    assert registered_function_names() == {"collect_call_logs", "collect_tenant"}
    bindings = json.loads(registered_function().get_function_json())["bindings"]
    assert bindings == [
        {
            "name": "timer",
            "type": "timerTrigger",
            "direction": "IN",
            "schedule": "%COLLECTOR_SCHEDULE%",
            "runOnStartup": False,
            "useMonitor": True,
        }
    ]
    # The host's own storage, reached as its AzureWebJobsStorage__* settings say (no key).
    queue = json.loads(registered_function("collect_tenant").get_function_json())["bindings"]
    assert queue == [
        {
            "name": "message",
            "type": "queueTrigger",
            "direction": "IN",
            "queueName": QUEUE,
            "connection": "AzureWebJobsStorage",
        }
    ]


def test_timer_invocation_runs_a_cycle(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    # The timer reads "now" from the clock: start two days back.
    start = format_instant(floor_to_midnight(datetime.now(UTC) - timedelta(days=2)))
    monkeypatch.setenv("COLLECTOR_START", start)
    user_function = registered_function().get_user_function()
    asyncio.run(user_function(TimerRequest(past_due=True)))
    for source in ("sms", "direct_routing", "pstn"):
        state = stack.state(source)
        assert state is not None and state["claims"] == [] and state["owner"] is None
        assert_archive_matches(stack, source, start, state["watermark"])


def test_timer_invocation_fails_when_a_source_fails(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLLECTOR_SOURCES", "pstn")
    monkeypatch.setenv("COLLECTOR_START", format_instant(datetime.now(UTC) - timedelta(hours=6)))
    stack.graph.simulator.add_fault(Fault("status", count=-1, status=403, code="Forbidden"))
    user_function = registered_function().get_user_function()
    with pytest.raises(RuntimeError, match="collection failed for: pstn"):
        asyncio.run(user_function(TimerRequest()))


def test_host_json_is_sensible() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    hours, minutes, _ = (int(p) for p in host["functionTimeout"].split(":"))
    assert 0 < hours * 60 + minutes <= 60
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert "collector" in host["logging"]["logLevel"] or "Function" in host["logging"]["logLevel"]
    # Multi-tenant fan-out: a failing tenant is retried a few times, a minute apart, then
    # poisoned; an instance takes two tenants at a time, so the platform scales out instead.
    queues = host["extensions"]["queues"]
    assert 2 <= queues["maxDequeueCount"] <= 5 and queues["visibilityTimeout"] == "00:01:00"
    assert queues["batchSize"] + queues["newBatchThreshold"] == 2


def test_the_function_keeps_the_azure_sdks_request_logs_out_of_application_insights() -> None:
    import function_app

    logging.getLogger("azure").setLevel(logging.NOTSET)  # as a fresh worker has it
    importlib.reload(function_app)  # the host imports the module once per worker
    # host.json forwards a function's INFO records; the SDKs log every request at INFO.
    assert json.loads((ROOT / "host.json").read_text())["logging"]["logLevel"]["Function"] == (
        "Information"
    )
    assert logging.getLogger("azure").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("azure.core.pipeline.policies.http_logging_policy").isEnabledFor(
        logging.WARNING
    )
    assert not logging.getLogger("azure.storage.blob").isEnabledFor(logging.INFO)
