"""A reverse proxy in front of Azurite that makes the archive container immutable (WORM) for
data blobs and tells what readers would see.

- **Immutability**: a data blob (any blob whose name does not start with ``_``) that exists
  can be neither overwritten (Put Blob or Put Block List without ``If-None-Match: *``, Set
  Blob Metadata or Properties) nor deleted: 409 ``BlobImmutableDueToPolicy``. That is
  stricter than Azure's version-level retention policy, which lets an overwrite through as a
  new version, because the archive contract allows none. A create-only Put Blob or Put Block
  List of an existing blob goes to storage, which refuses it as Azure does (409
  ``BlobAlreadyExists``). Batch requests are not inspected: the collector sends none.
- **Events**: every data blob created is recorded with its content, as an Event Grid
  subscriber ingesting ``BlobCreated`` events (ADX, Fabric Eventhouse) would receive it.
- **Kill points**: ``on_write(n, phase, path)`` is called for the n-th write, ``"before"`` it
  is forwarded and ``"after"`` storage answered; returning True cuts the connection there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient
from yarl import URL

WRITE_METHODS = frozenset({"PUT", "DELETE", "POST"})
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})
_REPLACING = frozenset({"", "blocklist", "metadata", "properties"})
"""``comp`` values of a PUT that change a blob that exists (``""``: Put Blob)."""


@dataclass(frozen=True)
class BlobCreated:
    """A data blob as an event-driven reader receives it when it is created."""

    container: str
    name: str
    content: bytes


class ImmutableArchiveProxy:
    """Forwards every request to Azurite; see the module docstring for what it adds."""

    def __init__(
        self,
        target: str,
        connection_string: str,
        on_write: Callable[[int, str, str], bool] | None = None,
        immutable: bool = True,
    ) -> None:
        self.target = target.rstrip("/")
        self.on_write = on_write
        self.immutable = immutable
        self.writes = 0
        self.bytes_written = 0
        """Bytes of the request bodies of every write (what storage was sent to store)."""
        self.created: list[BlobCreated] = []
        self.refused: list[str] = []
        """Overwrites and deletes of data blobs refused (the collector must make none)."""
        self._connection_string = connection_string
        self._session: aiohttp.ClientSession | None = None
        self._service: BlobServiceClient | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward one request."""
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
            self._service = BlobServiceClient.from_connection_string(self._connection_string)
        write = request.method in WRITE_METHODS
        number = 0
        if write:
            self.writes += 1
            number = self.writes
            self._maybe_cut(request, number, "before")
        blob = _data_blob(request.path)
        comp = request.query.get("comp", "")
        create_only = comp in ("", "blocklist") and request.headers.get("If-None-Match") == "*"
        replacing = (
            self.immutable
            and blob is not None
            and (
                request.method == "DELETE"
                or (request.method == "PUT" and comp in _REPLACING and not create_only)
            )
        )
        if replacing and blob is not None and await self._exists(*blob):
            self.refused.append(f"{request.method} {comp or 'blob'} {blob[1]}")
            return _immutable_error()
        body = await request.read()
        if write:
            self.bytes_written += len(body)
        answer = await relay(self._session, self.target, request, body)
        created = request.method == "PUT" and comp in ("", "blocklist") and answer.status == 201
        if created and blob is not None:
            self.created.append(BlobCreated(*blob, await self._content(*blob)))
        if write:
            self._maybe_cut(request, number, "after")
        return answer

    async def _exists(self, container: str, name: str) -> bool:
        assert self._service is not None
        try:
            await self._service.get_blob_client(container, name).get_blob_properties()
        except ResourceNotFoundError:
            return False
        return True

    async def _content(self, container: str, name: str) -> bytes:
        assert self._service is not None
        downloader = await self._service.get_blob_client(container, name).download_blob()
        return await downloader.readall()

    def _maybe_cut(self, request: web.Request, number: int, phase: str) -> None:
        if self.on_write is not None and self.on_write(number, phase, request.path):
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError(f"cut at write {number} ({phase})")

    def app(self) -> web.Application:
        """Return the aiohttp application of the proxy."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)

        async def close(_: web.Application) -> None:
            if self._session is not None:
                await self._session.close()
            if self._service is not None:
                await self._service.close()

        app.on_cleanup.append(close)
        return app


def _data_blob(path: str) -> tuple[str, str] | None:
    """``(container, blob)`` of a request for a data blob: ``/<account>/<container>/<blob>``
    with a blob name whose first character is not ``_``."""
    parts = unquote(path).lstrip("/").split("/", 2)
    if len(parts) < 3 or not parts[2] or parts[2].startswith("_"):
        return None
    return parts[1], parts[2]


def _immutable_error() -> web.Response:
    message = "This operation is not permitted as the blob is immutable due to a policy."
    return web.Response(
        status=409,
        headers={"x-ms-error-code": "BlobImmutableDueToPolicy"},
        content_type="application/xml",
        text=(
            '<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobImmutableDueToPolicy</Code>'
            f"<Message>{message}</Message></Error>"
        ),
    )


async def relay(
    session: aiohttp.ClientSession, target: str, request: web.Request, body: bytes
) -> web.Response:
    """Send ``request`` (its ``body`` read already) on to ``target`` unchanged, and return
    the answer to relay."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    async with session.request(
        request.method,
        URL(f"{target}{request.rel_url.raw_path_qs}", encoded=True),
        headers=headers,
        data=body or None,
        allow_redirects=False,
        # The storage signature covers Content-Type: never let aiohttp add one.
        skip_auto_headers=("Content-Type", "User-Agent", "Accept-Encoding"),
    ) as upstream:
        payload = await upstream.read()
        relayed = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        return web.Response(status=upstream.status, headers=relayed, body=payload)
