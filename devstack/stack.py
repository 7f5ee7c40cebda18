"""The whole local stack: Graph simulator + managed-identity endpoint (one background
thread's event loop) and Azurite (a child process), all on 127.0.0.1 and free ports."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import tempfile
import threading
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from .azurite import Azurite
from .directory import Directory
from .graph_simulator import GraphSimulator
from .identity import TokenAuthority, identity_app, principal_of
from .synthetic import Tenant
from .tls import self_signed_certificate

T = TypeVar("T")


class ServerThread:
    """Runs aiohttp applications on 127.0.0.1 in a daemon thread with its own event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="devstack", daemon=True)
        self._runners: list[web.AppRunner] = []
        self._thread.start()

    def serve(self, app: web.Application, tls: ssl.SSLContext | None = None) -> int:
        """Start serving ``app`` on a free port (HTTPS with ``tls``) and return the port."""
        return self._call(self._serve(app, tls))

    async def _serve(self, app: web.Application, tls: ssl.SSLContext | None) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        self._runners.append(runner)
        server = site._server  # the bound port is only known after start()
        assert isinstance(server, asyncio.base_events.Server)
        return int(server.sockets[0].getsockname()[1])

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=30)

    def stop(self) -> None:
        """Stop every server and the thread."""

        async def cleanup() -> None:
            for runner in self._runners:
                await runner.cleanup()

        self._call(cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class GraphStack:
    """Graph simulator and identity endpoint for one tenant."""

    def __init__(self, tenant: Tenant | None = None, page_size: int = 1000) -> None:
        self.authority = TokenAuthority()
        self.identity_header = secrets.token_urlsafe(16)
        self.simulator = GraphSimulator(tenant or Tenant(), self.authority, page_size)
        self._servers = ServerThread()
        graph_port = self._servers.serve(self.simulator.app())
        identity_port = self._servers.serve(identity_app(self.authority, self.identity_header))
        self.graph_url = f"http://127.0.0.1:{graph_port}"
        self.simulator.base_url = self.graph_url
        self.identity_endpoint = f"http://127.0.0.1:{identity_port}/msi/token"
        self.directory: Directory | None = None
        """The multi-tenant app's token endpoint, once ``add_directory`` started it."""
        self._directory_env: dict[str, str] = {}
        self._certificates: tempfile.TemporaryDirectory[str] | None = None

    def serve(self, app: web.Application) -> int:
        """Serve another application (e.g. a test proxy) on this stack's thread; return its port."""
        return self._servers.serve(app)

    def add_directory(
        self,
        app_client_id: str,
        identity_client_id: str,
        tenants: Mapping[str, Tenant],
        consented: Iterable[str],
    ) -> Directory:
        """Serve ``tenants`` (besides the home tenant) behind a local Entra ID token endpoint
        for the multi-tenant app ``app_client_id``, whose federated credential trusts the
        managed identity ``identity_client_id``; ``consented``: the tenants that granted it.
        ``env()`` then points azure-identity at it (HTTPS, trusted via ``SSL_CERT_FILE``)."""
        for tenant_id, tenant in tenants.items():
            self.simulator.tenants[tenant_id] = tenant
        self.directory = Directory(
            self.authority,
            app_client_id,
            principal_of(identity_client_id),
            set(consented),
            set(tenants),
        )
        self._certificates = tempfile.TemporaryDirectory(prefix="devstack-tls-")
        cert, key = self_signed_certificate(Path(self._certificates.name))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        port = self._servers.serve(self.directory.app(), tls)
        self._directory_env = {
            "AZURE_AUTHORITY_HOST": f"https://127.0.0.1:{port}",
            "SSL_CERT_FILE": str(cert),
        }
        return self.directory

    @property
    def tenant(self) -> Tenant:
        """The simulated tenant whose rows the simulator serves."""
        return self.simulator.tenant

    def env(self) -> dict[str, str]:
        """Settings that point the collector and azure-identity at this stack."""
        return {
            "GRAPH_ENDPOINT": self.graph_url,
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            **self._directory_env,
        }

    def stop(self) -> None:
        """Stop every server."""
        self._servers.stop()
        if self._certificates is not None:
            self._certificates.cleanup()


class LocalStack:
    """Graph simulator, identity endpoint and Azurite's blob and queue services together
    (context manager): the queue is the Functions host's, for multi-tenant fan-out."""

    def __init__(self, tenant: Tenant | None = None) -> None:
        self.azurite = Azurite()
        self.queues = Azurite(service="queue")
        self.graph: GraphStack | None = None
        self._tenant = tenant

    def __enter__(self) -> LocalStack:
        self.azurite.start()
        try:
            self.queues.start()
            self.graph = GraphStack(self._tenant)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.graph is not None:
            self.graph.stop()
        self.queues.stop()
        self.azurite.stop()

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Every setting the collector needs to run against this stack."""
        assert self.graph is not None
        return {
            **self.graph.env(),
            "COLLECTOR_STORAGE": self.azurite.connection_string,
            "AzureWebJobsStorage": self.queues.connection_string,
            **(extra or {}),
        }
