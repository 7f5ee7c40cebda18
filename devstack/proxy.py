"""A counting reverse proxy in front of Azurite, so tests can stop the collector at an exact
storage write (before it reaches storage, or after storage did it but before the collector
hears back)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web
from yarl import URL

WRITE_METHODS = frozenset({"PUT", "DELETE", "POST"})
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


class CountingProxy:
    """Forwards every request to ``target``; calls ``on_write(n, phase, path)`` for the n-th
    write.

    ``phase`` is ``"before"`` (not yet forwarded) or ``"after"`` (storage answered, the
    answer not yet relayed). When the hook returns True the connection is cut there: the
    write never reaches storage (before) or its answer never reaches the client (after).
    """

    def __init__(
        self, target: str, on_write: Callable[[int, str, str], bool] | None = None
    ) -> None:
        self.target = target.rstrip("/")
        self.on_write = on_write
        self.writes = 0
        self._session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward one request."""
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        write = request.method in WRITE_METHODS
        number = 0
        if write:
            self.writes += 1
            number = self.writes
            self._maybe_cut(request, number, "before")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method,
            URL(f"{self.target}{request.rel_url.raw_path_qs}", encoded=True),
            headers=headers,
            data=body or None,
            allow_redirects=False,
            # The storage signature covers Content-Type: never let aiohttp add one.
            skip_auto_headers=("Content-Type", "User-Agent", "Accept-Encoding"),
        ) as upstream:
            payload = await upstream.read()
            if write:
                self._maybe_cut(request, number, "after")
            relayed = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=upstream.status, headers=relayed, body=payload)

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

        app.on_cleanup.append(close)
        return app
