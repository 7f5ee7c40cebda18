"""A reverse proxy in front of Azurite that counts every request as Azure Storage bills it.

Each request is named after the REST operation it is (``PutBlock``, ``ListBlobs``,
``GetMessages``…, from the method, ``restype`` and ``comp`` as the Storage REST API defines
them) and put in the billing category Azure's "Map each REST operation to a price" table
gives a standard general-purpose v2 account: ``write``, ``read``, ``list`` (list and create
container), ``other`` or ``free`` (deletes). Queue operations are counted by name under
``queue``. Failed requests are counted too: Azure bills every authenticated request, also
those that fail. Request bodies are summed per first path segment (``sms``, ``_state``…),
so a caller can tell data from state.

``benchmarks/cost.py`` puts one in front of the archive's Azurite and one in front of the
host's queue service.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from .proxy import relay

_BLOB_PUT = {
    "block": ("PutBlock", "write"),
    "blocklist": ("PutBlockList", "write"),
    "appendblock": ("AppendBlock", "write"),
    "metadata": ("SetBlobMetadata", "other"),
    "properties": ("SetBlobProperties", "other"),
    "lease": ("LeaseBlob", "other"),
    "tags": ("SetBlobTags", "other"),
    "tier": ("SetBlobTier", "write"),
    "snapshot": ("SnapshotBlob", "other"),
}
_BLOB_GET = {
    "metadata": ("GetBlobMetadata", "other"),
    "blocklist": ("GetBlockList", "other"),
    "tags": ("GetBlobTags", "other"),
}
_CONTAINER = {
    ("PUT", ""): ("CreateContainer", "list"),
    ("GET", "list"): ("ListBlobs", "list"),
    ("GET", ""): ("GetContainerProperties", "other"),
    ("HEAD", ""): ("GetContainerProperties", "other"),
    ("DELETE", ""): ("DeleteContainer", "free"),
}


def blob_operation(method: str, path: str, query: dict[str, str]) -> tuple[str, str]:
    """The Blob REST operation a request is and its billing category (standard GPv2)."""
    comp, restype = query.get("comp", ""), query.get("restype", "")
    if restype == "container":
        if comp in ("metadata", "acl", "lease"):
            return f"{'Set' if method == 'PUT' else 'Get'}Container{comp.capitalize()}", "other"
        return _CONTAINER.get((method, comp), (f"{method} container {comp}", "other"))
    if restype == "service" or (comp == "list" and len(_segments(path)) <= 1):
        return ("ListContainers", "list") if comp == "list" else (f"{comp} service", "other")
    if method == "PUT":
        return _BLOB_PUT.get(comp, ("PutBlob", "write") if not comp else (f"PUT {comp}", "other"))
    if method == "GET":
        return _BLOB_GET.get(comp, ("GetBlob", "read") if not comp else (f"GET {comp}", "other"))
    if method == "HEAD":
        return "GetBlobProperties", "other"
    if method == "DELETE":
        return "DeleteBlob", "free"
    return f"{method} {comp}", "other"


def queue_operation(method: str, path: str, query: dict[str, str]) -> tuple[str, str]:
    """The Queue REST operation a request is (Queue Storage bills them per 10,000 in two
    classes; both at one list price in the regions priced in docs/cost.md)."""
    parts = _segments(path)
    if len(parts) >= 3 and parts[2] == "messages":
        if len(parts) >= 4:  # /account/queue/messages/<id>
            return ("UpdateMessage" if method == "PUT" else "DeleteMessage"), "queue"
        if method == "POST":
            return "PutMessage", "queue"
        if method == "GET":
            return ("PeekMessages" if query.get("peekonly") else "GetMessages"), "queue"
        return "ClearMessages", "queue"
    if query.get("comp") == "list":
        return "ListQueues", "queue"
    if query.get("comp") == "metadata":
        return ("GetQueueMetadata" if method in ("GET", "HEAD") else "SetQueueMetadata"), "queue"
    return {"PUT": "CreateQueue", "DELETE": "DeleteQueue"}.get(method, f"{method} queue"), "queue"


def _segments(path: str) -> list[str]:
    return [part for part in unquote(path).split("/") if part]


class MeteringProxy:
    """Forwards every request to ``target`` (an Azurite service) and counts it."""

    def __init__(self, target: str, service: str = "blob") -> None:
        self.target = target.rstrip("/")
        self._classify = queue_operation if service == "queue" else blob_operation
        self.operations: Counter[tuple[str, str]] = Counter()
        """Requests per (category, operation)."""
        self.statuses: Counter[str] = Counter()
        """Requests per answer class (``2xx``, ``404``, ``409``…)."""
        self.folders: Counter[str] = Counter()
        """Requests per first path segment below the container (``sms``, ``_state``…;
        ``(container)`` for requests on the container or account itself)."""
        self.writes: Counter[str] = Counter()
        """Requests billed as writes, per first path segment below the container."""
        self.body_bytes: Counter[str] = Counter()
        """Request body bytes per first path segment below the container (what was sent to
        be stored: data folders, ``_state``, ``_manifests``)."""
        self.response_bytes = 0
        """Response body bytes of every request (what was read back)."""
        self._session: aiohttp.ClientSession | None = None

    def snapshot(self) -> dict[str, Counter[str]]:
        """Copies of the counters, to subtract one from a later one."""
        return {
            "operations": Counter({f"{c}:{o}": n for (c, o), n in self.operations.items()}),
            "statuses": Counter(self.statuses),
            "folders": Counter(self.folders),
            "writes": Counter(self.writes),
            "body_bytes": Counter(self.body_bytes),
            "response_bytes": Counter({"all": self.response_bytes}),
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Count ``request`` and forward it."""
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        operation, category = self._classify(request.method, request.path, dict(request.query))
        self.operations[(category, operation)] += 1
        body = await request.read()
        parts = _segments(request.path)
        folder = parts[2] if len(parts) > 2 else "(container)"
        self.folders[folder] += 1
        if category == "write":
            self.writes[folder] += 1
        if body:
            self.body_bytes[folder] += len(body)
        answer = await relay(self._session, self.target, request, body)
        assert isinstance(answer.body, bytes)
        self.response_bytes += len(answer.body)
        status = answer.status
        self.statuses["2xx" if 200 <= status < 300 else str(status)] += 1
        return answer

    def app(self) -> web.Application:
        """Return the aiohttp application of the proxy."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)

        async def close(_: web.Application) -> None:
            if self._session is not None:
                await self._session.close()

        app.on_cleanup.append(close)
        return app
