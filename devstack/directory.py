"""A local stand-in for Entra ID's token endpoint in multi-tenant mode.

One multi-tenant app registration whose only credential is a federated identity credential
trusting one user-assigned managed identity: a customer tenant issues a Graph token to the app
when the client assertion is a token the local managed-identity endpoint issued to that
identity for ``api://AzureADTokenExchange``, and only when the tenant has consented. Served
over HTTPS (azure-identity accepts no other authority) with the devstack's certificate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from aiohttp import web

from .identity import TokenAuthority

EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Directory:
    """The multi-tenant app, the identity its federated credential trusts, and the tenants."""

    authority: TokenAuthority
    app_client_id: str
    trusted_principal: str
    """Object (principal) id of the user-assigned managed identity the federated credential
    trusts: its subject, as Entra ID matches it."""
    consented: set[str] = field(default_factory=set)
    """Tenants whose administrator granted the app its permission."""
    known: set[str] = field(default_factory=set)
    """Tenants that exist (consented or not)."""
    issued: dict[str, int] = field(default_factory=dict)
    """Graph tokens issued, per tenant."""

    def app(self) -> web.Application:
        """The token endpoint: ``POST /{tenant}/oauth2/v2.0/token``."""
        application = web.Application()
        application.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        return application

    async def _token(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"].lower()
        form = await request.post()
        if tenant not in self.known:
            return _refusal(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        client_id = str(form.get("client_id", ""))
        if client_id != self.app_client_id:
            return _refusal(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the "
                f"directory '{tenant}'.",
            )
        assertion = str(form.get("client_assertion", ""))
        issued = self.authority.lookup(assertion)
        problem = (
            "the assertion type is not a JWT bearer"
            if form.get("client_assertion_type") != ASSERTION_TYPE
            else self.authority.problem(assertion, EXCHANGE_AUDIENCE)
            or (
                None
                if issued is not None and issued.object_id == self.trusted_principal
                else "its subject is not the identity the federated credential trusts"
            )
        )
        if problem:
            return _refusal(
                401,
                "invalid_client",
                700213,
                f"No matching federated identity record found for presented assertion: {problem}.",
            )
        if tenant not in self.consented:
            return _refusal(
                400,
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with ID "
                f"'{self.app_client_id}'. Send an interactive authorization request for this "
                "user and resource.",
            )
        scope = str(form.get("scope", ""))
        if not scope.endswith("/.default"):
            return _refusal(400, "invalid_scope", 1002012, f"The scope '{scope}' is not valid.")
        token, info = self.authority.issue(
            scope.removesuffix("/.default"), self.app_client_id, tenant
        )
        self.issued[tenant] = self.issued.get(tenant, 0) + 1
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": int(info.expires_at - info.issued_at),
                "ext_expires_in": int(info.expires_at - info.issued_at),
                "access_token": token,
            }
        )


def _refusal(status: int, error: str, code: int, message: str) -> web.Response:
    """An Entra ID error answer: ``AADSTS<code>`` leads the description, as in Azure."""
    return web.json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {message} Trace ID: {uuid.uuid4()}",
            "error_codes": [code],
        },
        status=status,
    )
