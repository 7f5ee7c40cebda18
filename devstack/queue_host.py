"""What the Functions host does for ``collect_tenant``'s queue trigger, for local runs and
tests: ``python -m devstack.queue_host`` is one worker (run several, as the platform runs
several instances).

Like the host, a worker receives a message and keeps it invisible while the function runs
(renewing its visibility), deletes it when the function returns, makes it visible again
after ``--retry-seconds`` when the function raises, and moves it to the poison queue once it
has been delivered ``--max-dequeue`` times. A worker that dies leaves its message to
reappear after ``--visibility-seconds``. Settings come from the environment, as in Azure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage as TriggerMessage
from azure.storage.queue import (
    BinaryBase64DecodePolicy,
    BinaryBase64EncodePolicy,
    QueueClient,
    QueueMessage,
)

from collector.tenants.fanout import POISON, QUEUE

log = logging.getLogger("devstack.queue_host")


def _queue(name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        os.environ["AzureWebJobsStorage"],  # noqa: SIM112 (the host's name for it)
        name,
        message_encode_policy=BinaryBase64EncodePolicy(),
        message_decode_policy=BinaryBase64DecodePolicy(),
    )


class _Renewal:
    """Keeps one message invisible while the function runs, as the host does."""

    def __init__(self, queue: QueueClient, message: QueueMessage, seconds: float) -> None:
        self._queue, self._seconds = queue, seconds
        self._receipt = message.pop_receipt
        self._id = message.id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self._seconds / 3):
            with self._lock:
                self._receipt = self._queue.update_message(
                    self._id, self._receipt, visibility_timeout=round(self._seconds)
                ).pop_receipt

    def finish(self, visible_after: float | None) -> None:
        """Stop renewing; delete the message (None) or show it again after that long."""
        self._stop.set()
        self._thread.join()
        with self._lock:
            if visible_after is None:
                self._queue.delete_message(self._id, self._receipt)
            else:
                self._queue.update_message(
                    self._id, self._receipt, visibility_timeout=round(visible_after)
                )


def trigger_message(
    body: bytes, message_id: str | None = None, dequeue_count: int | None = 1
) -> TriggerMessage:
    """The message a queue-triggered function receives, as the host hands it over."""
    message: TriggerMessage = TriggerMessage(  # type: ignore[no-untyped-call]
        id=message_id, body=body, dequeue_count=dequeue_count
    )
    return message


def work(
    visibility: float, retry: float, max_dequeue: int, idle_exit: float
) -> tuple[int, int, float]:
    """Serve messages until the queue has been empty for ``idle_exit`` seconds; return how
    many invocations ran, how many of them failed, and when the last one ended
    (``time.time()``; 0: none)."""
    import function_app  # the app as the host loads it, settings from the environment

    function: Any = next(
        f for f in function_app.app.get_functions() if f.get_function_name() == "collect_tenant"
    ).get_user_function()
    queue, poison = _queue(QUEUE), _queue(POISON)
    invocations = failures = 0
    last_end = 0.0
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_exit:
        message = next(iter(queue.receive_messages(visibility_timeout=round(visibility))), None)
        if message is None:
            time.sleep(0.2)
            continue
        if (message.dequeue_count or 0) > max_dequeue:
            with contextlib.suppress(ResourceExistsError):
                poison.create_queue()
            poison.send_message(message.content)
            queue.delete_message(message)
            log.warning(
                "message %s moved to %s after %d deliveries", message.id, POISON, max_dequeue
            )
            continue
        renewal = _Renewal(queue, message, visibility)
        invocations += 1
        try:
            asyncio.run(
                function(trigger_message(message.content, message.id, message.dequeue_count))
            )
        except Exception as exc:
            log.warning("invocation failed (delivery %d): %s", message.dequeue_count, exc)
            failures += 1
            renewal.finish(retry)
        else:
            renewal.finish(None)
        idle_since = time.monotonic()
        last_end = time.time()
    return invocations, failures, last_end


def _host_settings() -> dict[str, Any]:
    """``host.json``'s queue settings: the worker's defaults, as the host's."""
    host = json.loads((Path(__file__).resolve().parent.parent / "host.json").read_text())
    queues: dict[str, Any] = host["extensions"]["queues"]
    return queues


def main() -> None:
    """Run one worker (see the module's docstring)."""
    queues = _host_settings()
    h, m, s = (int(part) for part in str(queues["visibilityTimeout"]).split(":"))
    parser = argparse.ArgumentParser(prog="python -m devstack.queue_host")
    parser.add_argument("--visibility-seconds", type=float, default=60.0)
    parser.add_argument("--retry-seconds", type=float, default=h * 3600 + m * 60 + s)
    parser.add_argument("--max-dequeue", type=int, default=int(queues["maxDequeueCount"]))
    parser.add_argument("--idle-exit", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    count, failures, last_end = work(
        args.visibility_seconds, args.retry_seconds, args.max_dequeue, args.idle_exit
    )
    print(f"invocations={count}")
    print(f"failures={failures}")
    print(f"last_end={last_end:.3f}")
    print(f"peak_rss_mb={_peak_rss_mb():.1f}")


def _peak_rss_mb() -> float:
    """This process's peak resident memory (Linux: VmHWM; elsewhere ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
