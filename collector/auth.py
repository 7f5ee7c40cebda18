"""Access tokens from azure-identity: managed identity in Azure, developer sign-in locally."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

CredentialFactory = Callable[[], AsyncTokenCredential]


def in_azure(env: Mapping[str, str]) -> bool:
    """True where the host provides a managed identity endpoint (App Service, Functions)."""
    return bool(env.get("IDENTITY_ENDPOINT") and env.get("IDENTITY_HEADER")) or bool(
        env.get("MSI_ENDPOINT")
    )


def credential_factory(
    client_id: str | None, env: Mapping[str, str] | None = None
) -> CredentialFactory:
    """Return a factory of the credential to use here.

    In Azure: ``ManagedIdentityCredential`` (user-assigned when ``client_id`` is given).
    Elsewhere: ``DefaultAzureCredential``, so ``az login`` works for local runs.
    """
    environ = os.environ if env is None else env
    if in_azure(environ):
        return lambda: ManagedIdentityCredential(client_id=client_id)
    return lambda: DefaultAzureCredential(
        managed_identity_client_id=client_id, exclude_interactive_browser_credential=True
    )


class TokenProvider:
    """Bearer tokens for one scope, with a forced refresh after a 401.

    azure-identity caches tokens and renews them before they expire. A 401 means the
    cached token was revoked early, so ``refresh`` replaces the credential (and its cache).
    """

    def __init__(self, factory: CredentialFactory, scope: str) -> None:
        self._factory = factory
        self._scope = scope
        self._credential: AsyncTokenCredential | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        """Return a valid access token (from the credential's cache when possible)."""
        async with self._lock:
            return await self._token()

    async def refresh(self, rejected: str) -> str:
        """Return a newly issued token after Graph rejected ``rejected``."""
        async with self._lock:
            current = await self._token()
            if current != rejected:
                return current  # another request already refreshed it
            await self._close()
            return await self._token()

    async def _token(self) -> str:
        if self._credential is None:
            self._credential = self._factory()
        return (await self._credential.get_token(self._scope)).token

    async def close(self) -> None:
        """Close the credential's transport."""
        async with self._lock:
            await self._close()

    async def _close(self) -> None:
        if self._credential is not None:
            credential, self._credential = self._credential, None
            await credential.close()
