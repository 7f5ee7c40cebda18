"""Access tokens from azure-identity: managed identity in Azure, developer sign-in locally."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Mapping

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity import ManagedIdentityCredential as BlockingManagedIdentityCredential
from azure.identity.aio import (
    ClientAssertionCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)

CredentialFactory = Callable[[], AsyncTokenCredential]

TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
"""What a managed identity's token must be for to serve as a federated credential's assertion
(public cloud; Flex Consumption, and so this app, runs nowhere else)."""
DEFAULT_AUTHORITY_HOST = "login.microsoftonline.com"


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


def tenant_credential_factory(
    tenant: str, app_client_id: str, identity_client_id: str | None
) -> CredentialFactory:
    """Credentials for a customer ``tenant``, with no secret anywhere: the multi-tenant app
    ``app_client_id`` signs in there with the managed identity's token as its client
    assertion, which the app's federated identity credential trusts."""
    # Blocking on purpose: ClientAssertionCredential calls its assertion function without
    # awaiting it. It runs only when a tenant's Graph token is due, and the identity's own
    # token then comes from the process-wide credential's cache (one endpoint call a day).
    identity = _blocking_identity(
        identity_client_id, os.environ.get("IDENTITY_ENDPOINT"), os.environ.get("IDENTITY_HEADER")
    )

    def assertion() -> str:
        token: str = identity.get_token(TOKEN_EXCHANGE_SCOPE).token
        return token

    return lambda: ClientAssertionCredential(tenant, app_client_id, assertion)


def authority_url(env: Mapping[str, str]) -> str:
    """Entra ID's authority, as azure-identity takes it from ``AZURE_AUTHORITY_HOST``."""
    host = env.get("AZURE_AUTHORITY_HOST", "").strip() or DEFAULT_AUTHORITY_HOST
    return (host if "://" in host else "https://" + host).rstrip("/")


@functools.cache
def _blocking_identity(
    client_id: str | None, endpoint: str | None, header: str | None
) -> BlockingManagedIdentityCredential:
    """One managed-identity credential per process and identity, so its token cache lasts
    (``endpoint`` and ``header``, which it reads from the environment, key it too)."""
    return BlockingManagedIdentityCredential(client_id=client_id)


def consent_url(tenant: str, app_client_id: str, authority: str) -> str:
    """The link a customer tenant's administrator opens to grant the app its permission."""
    return f"{authority}/{tenant}/adminconsent?client_id={app_client_id}"


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
