"""A local managed-identity endpoint speaking App Service's protocol (api-version 2019-08-01).

The real ``azure-identity`` library gets its tokens here when ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER`` point at it, exactly as on App Service and Azure Functions.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class IssuedToken:
    """What the authority remembers about a token it issued."""

    resource: str
    client_id: str | None
    issued_at: float
    expires_at: float


class TokenAuthority:
    """Issues opaque bearer tokens and decides whether one is valid for an audience."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        self._tokens: dict[str, IssuedToken] = {}
        self._revoked_before = 0.0
        self._lock = threading.Lock()
        self.issued = 0

    def issue(self, resource: str, client_id: str | None) -> tuple[str, IssuedToken]:
        """Mint a token for ``resource``."""
        now = time.time()
        token = "simtoken-" + secrets.token_urlsafe(24)
        info = IssuedToken(resource.rstrip("/"), client_id, now, now + self.lifetime)
        with self._lock:
            self._tokens[token] = info
            self.issued += 1
        return token, info

    def revoke_all(self) -> None:
        """Make every token issued so far invalid (Graph then answers 401)."""
        with self._lock:
            self._revoked_before = time.time()

    def problem(self, token: str, audience: str) -> str | None:
        """Return why ``token`` is not valid for ``audience``, or None when it is."""
        with self._lock:
            info = self._tokens.get(token)
            revoked_before = self._revoked_before
        if info is None:
            return "the token was not issued by this tenant"
        if info.issued_at <= revoked_before:
            return "the token was revoked"
        if info.expires_at <= time.time():
            return "the token has expired"
        if info.resource != audience.rstrip("/"):
            return f"the token's audience {info.resource} is not {audience}"
        return None


def identity_app(authority: TokenAuthority, header_secret: str) -> web.Application:
    """Return the aiohttp application of the managed-identity endpoint (path ``/msi/token``)."""

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != header_secret:
            return web.json_response(
                {
                    "error": "invalid_request",
                    "error_description": "X-IDENTITY-HEADER is missing or wrong",
                },
                status=400,
            )
        if request.query.get("api-version") != "2019-08-01":
            return web.json_response(
                {"error": "invalid_request", "error_description": "unsupported api-version"},
                status=400,
            )
        resource = request.query.get("resource")
        if not resource:
            return web.json_response(
                {"error": "invalid_request", "error_description": "resource is required"},
                status=400,
            )
        client_id = request.query.get("client_id")
        value, info = authority.issue(resource, client_id)
        return web.json_response(
            {
                "access_token": value,
                "expires_on": str(int(info.expires_at)),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id or "00000000-0000-0000-0000-000000000000",
            }
        )

    app = web.Application()
    app.router.add_get("/msi/token", token)
    return app
