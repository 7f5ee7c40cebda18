"""Multi-tenant fan-out: one queue message per tenant on the Functions host's storage queue,
collected by the queue-triggered function, so Flex Consumption scales instances out with
the queue (each tenant is an independent lane set with its own Graph budget).

The Functions host does the rest, as it does for every queue trigger: it keeps a message
invisible while its invocation runs, makes a failed one visible again after the
``visibilityTimeout`` of ``host.json``, and after ``maxDequeueCount`` failed deliveries moves
it to ``collector-tenants-poison``, which ``status`` reads. A message delivered twice is
harmless: the lanes' leases let one run collect a lane at a time, and the archive takes each
row once.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from .auth import credential_factory
from .errors import ConfigError
from .settings import QueueTarget, Settings, is_tenant_id

QUEUE = "collector-tenants"
"""The queue the timer fills and ``collect_tenant`` reads (``function_app.py``)."""
POISON = f"{QUEUE}-poison"
"""Where the Functions host moves a message that failed ``maxDequeueCount`` times."""


def tenant_message(tenant: str) -> bytes:
    """The message that asks for one tenant's collection."""
    return json.dumps({"tenant": tenant}).encode()


def tenant_of(body: bytes) -> str:
    """The tenant a message asks for; ``ValueError`` for anything else (it would fail every
    time, so it ends in the poison queue, where ``status`` shows it)."""
    try:
        document: Any = json.loads(body)
        tenant = str(document["tenant"]).lower()
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"not a tenant message: {body[:200]!r}") from None
    if not is_tenant_id(tenant):
        raise ValueError(f"not a tenant id: {tenant!r}")
    return tenant


def _client(target: QueueTarget, name: str) -> QueueClient:
    # Base64, as the Functions host reads and writes queue messages by default.
    codec: dict[str, Any] = {
        "message_encode_policy": BinaryBase64EncodePolicy(),
        "message_decode_policy": BinaryBase64DecodePolicy(),
    }
    if target.connection_string is not None:
        return QueueClient.from_connection_string(target.connection_string, name, **codec)
    assert target.queue_service_uri is not None
    credential = credential_factory(target.client_id)()
    return QueueClient(target.queue_service_uri, name, credential=credential, **codec)


def _target(settings: Settings) -> QueueTarget:
    if settings.queue is None:
        raise ConfigError(
            "AzureWebJobsStorage__queueServiceUri",
            None,
            "the Functions host storage's queue endpoint (or AzureWebJobsStorage, a connection "
            "string): COLLECTOR_TENANTS spreads the tenants over a queue there",
        )
    return settings.queue


async def enqueue_tenants(settings: Settings, tenants: tuple[str, ...] | None = None) -> int:
    """Queue one message per tenant (default: every one of ``COLLECTOR_TENANTS``); return
    how many were queued."""
    chosen = settings.tenants if tenants is None else tenants
    async with _client(_target(settings), QUEUE) as queue:
        with contextlib.suppress(ResourceExistsError):
            await queue.create_queue()
        for tenant in chosen:
            await queue.send_message(tenant_message(tenant))
    return len(chosen)


async def poisoned(settings: Settings) -> Counter[str]:
    """Tenants whose messages the host gave up on (the first 32 messages of the poison
    queue, which is all Azure Storage lets one peek return), with how many each."""
    found: Counter[str] = Counter()
    if settings.queue is None:
        return found
    async with _client(settings.queue, POISON) as queue:
        try:
            messages = await queue.peek_messages(max_messages=32)
        except ResourceNotFoundError:
            return found
        for message in messages:
            try:
                found[tenant_of(message.content)] += 1
            except ValueError:
                found["(not a tenant message)"] += 1
    return found
