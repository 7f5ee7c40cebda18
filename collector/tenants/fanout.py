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
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from ..core.auth import credential_factory
from ..core.errors import ConfigError
from ..core.settings import QueueTarget, Settings, is_tenant_id

log = logging.getLogger("collector")

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


@asynccontextmanager
async def _open(target: QueueTarget, name: str) -> AsyncIterator[QueueClient]:
    """A client of queue ``name`` (its credential closed with it)."""
    # Base64, as the Functions host reads and writes queue messages by default.
    codec: dict[str, Any] = {
        "message_encode_policy": BinaryBase64EncodePolicy(),
        "message_decode_policy": BinaryBase64DecodePolicy(),
    }
    if target.connection_string is not None:
        async with QueueClient.from_connection_string(
            target.connection_string, name, **codec
        ) as client:
            yield client
        return
    assert target.queue_service_uri is not None
    async with (
        credential_factory(target.client_id)() as credential,
        QueueClient(target.queue_service_uri, name, credential=credential, **codec) as client,
    ):
        yield client


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
    async with _open(_target(settings), QUEUE) as queue:
        with contextlib.suppress(ResourceExistsError):
            await queue.create_queue()
        for tenant in chosen:
            await queue.send_message(tenant_message(tenant))
    return len(chosen)


async def poisoned(settings: Settings) -> dict[str, list[datetime]] | None:
    """When the host gave up on each tenant's messages (the first 32 messages of the poison
    queue: all Azure Storage lets one peek return); None when it cannot be read (logged)."""
    found: dict[str, list[datetime]] = defaultdict(list)
    if settings.queue is None:
        return found
    try:
        async with _open(settings.queue, POISON) as queue:
            for message in await queue.peek_messages(max_messages=32):
                try:
                    tenant = tenant_of(message.content)
                except ValueError:
                    tenant = "(not a tenant message)"
                found[tenant].append(message.inserted_on or datetime.now(UTC))
    except ResourceNotFoundError:
        return found
    except (AzureError, ValueError) as exc:
        log.warning("the poison queue %s was not checked: %s", POISON, exc)
        return None
    return found
